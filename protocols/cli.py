"""Sub-command dispatch shared by every package's `python -m <package>`.

Each sub-command lives in its own module and is imported only when chosen, so
`python -m firmware run` never pays for importing dlib, and a module can own its
own argparse parser. CPython only: MicroPython never runs a CLI.
"""

import importlib
import sys


def dispatch(prog, commands, argv=None):
    """Run `commands[argv[0]].main(argv[1:])`; commands maps name -> (module, help)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        width = max(len(name) for name in commands)
        lines = ["usage: %s {%s} ..." % (prog, ",".join(commands)), ""]
        lines += ["  %s  %s" % (name.ljust(width), helptext) for name, (_, helptext) in commands.items()]
        out = sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
        print("\n".join(lines), file=out)
        if argv and argv[0] not in ("-h", "--help"):
            print("%s: unknown command %r" % (prog, argv[0]), file=sys.stderr)
        return 0 if out is sys.stdout else 2
    module = importlib.import_module(commands[argv[0]][0])
    return module.main(argv[1:], prog="%s %s" % (prog, argv[0]))
