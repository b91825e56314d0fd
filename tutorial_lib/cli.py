"""``python -m tutorial_lib COMMAND``: the tutorial's command line.

Each command lives in its own module exposing ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``; a new command is one module and one line in ``COMMANDS``. Nothing here
needs the notebook stack (Jupyter, ipywidgets).
"""
from __future__ import annotations

import argparse
import sys

from tutorial_lib.commands import bench, profile, report, train

COMMANDS = {
    "profile": profile,  # where a GPT-2 step's time and memory go
    "bench": bench,  # timed measurements -> results/NAME.json
    "train": train,  # short seeded training runs (torchrun-ready)
    "report": report,  # regenerate OPTIMIZATION_GUIDE.md tables
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tutorial_lib",
        description="Measure where GPT-2 training time and memory go, and what each optimisation buys.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in COMMANDS.items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
