"""The firmware's frozen modules: the terminal's code compiled into the
MicroPython image (`make ... FROZEN_MANIFEST=.../firmware/mcu/manifest.py`),
so its bytecode runs from flash and the heap holds only what the terminal
makes at run time. main.py stays a file on the board's filesystem, where
boot runs it (docs/mcu.md, "Memory and size").

umqtt.simple comes from micropython-lib (`require`), or from the directory
named by $UMQTT_LIB (what scripts/test.sh fetched, for a unix build here).
Paths are relative to this file: the build runs it from its own folder."""

import os

freeze(".", tuple(sorted(name for name in os.listdir(".")
                         if name.endswith(".py") and name not in ("main.py", "manifest.py"))))
package("protocols", base_path="../..")
if os.environ.get("UMQTT_LIB"):
    package("umqtt", base_path=os.environ["UMQTT_LIB"])
else:
    require("umqtt.simple")
