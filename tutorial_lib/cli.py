"""``python -m tutorial_lib COMMAND``: the tutorial's command line.

Each command lives in its own module exposing ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``; a new command is one module and one line in ``COMMANDS``. Nothing here
needs the notebook stack (Jupyter, ipywidgets).
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys

from tutorial_lib.commands import bench, profile, report, train

COMMANDS = {
    "profile": profile,  # where a GPT-2 step's time and memory go
    "bench": bench,  # timed measurements -> results/NAME.json
    "train": train,  # short seeded training runs (torchrun-ready)
    "report": report,  # regenerate OPTIMIZATION_GUIDE.md tables
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to an option's help only where it says something: not when the help
    already explains its default, and not for a default of None or a False flag."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False) or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tutorial_lib",
        description="Measure where GPT-2 training time and memory go, and what each optimisation buys.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in COMMANDS.items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP, formatter_class=HelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _parser=p)
    return parser


def main(argv=None) -> int:
    """Run a command; 0 on success, 2 for bad arguments, 1 when a file could not be written."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # under the command's own usage, not the top-level one
        (getattr(args, "_parser", None) or parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    with _sigterm_exits():
        try:
            return int(args._run(args) or 0)
        except OSError as e:  # a failed write: files.atomic_path left the old file whole and named it
            print(f"error: {e}", file=sys.stderr)
            return 1


@contextlib.contextmanager
def _sigterm_exits():
    """SIGTERM (``kill``, a batch scheduler, torchrun stopping its workers) raises SystemExit(143)
    instead of ending the process on the spot, so an atomic write in progress removes its
    temporary file, as it does for Ctrl-C. Only the main thread can set a handler."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
