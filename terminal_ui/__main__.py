"""`python -m terminal_ui`: not yet built (see the open issue on the kiosk UI)."""

import sys

if __name__ == "__main__":
    print("terminal_ui: the kiosk UI is not built yet", file=sys.stderr)
    sys.exit(2)
