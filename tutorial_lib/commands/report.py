"""``python -m tutorial_lib report``: rewrite OPTIMIZATION_GUIDE.md's tables from results/*.json.

Refuses, and leaves the guide as it is, when the results folder is missing or holds no results
file of the guide's suite, when a file in it is broken (the error names the file and the field),
when two files record the same sections on the same device, when the guide's markers do not pair
up, or when a recorded table would become a placeholder (``--allow-placeholders`` allows that).
Files of another kind (a Chrome trace, ``profile --out-json``'s results, a training history at the
top level) are skipped with one line each on stderr. The guide is rewritten atomically (through a
symbolic link to the file it points to): a failed write leaves the old guide whole.
"""
from __future__ import annotations

import sys
from pathlib import Path

from tutorial_lib.files import atomic_write_text, check_writable
from tutorial_lib.guide.report import regenerate

HELP = "Regenerate the tables inside OPTIMIZATION_GUIDE.md from results/*.json."

ROOT = Path(__file__).resolve().parents[2]


def add_arguments(p):
    p.add_argument("--guide", type=Path, default=ROOT / "OPTIMIZATION_GUIDE.md", help="the guide to rewrite")
    p.add_argument("--results", type=Path, default=ROOT / "results", help="folder of results/*.json")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when the guide differs from what report would write")
    p.add_argument("--allow-placeholders", action="store_true",
                   help="let a block that holds recorded tables become a placeholder when the results "
                        "folder has nothing for it (by default that is refused)")


def run(args) -> int:

    notes: list[str] = []
    try:
        if not args.guide.is_file():
            raise ValueError(f"--guide {args.guide} does not exist")
        if not args.check:
            check_writable(args.guide, "--guide")
        old, new = regenerate(args.guide, args.results, notes, allow_placeholders=args.allow_placeholders)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.check:
        if old != new:
            print(f"{args.guide} is out of date: run `python -m tutorial_lib report`", file=sys.stderr)
            return 1
        print(f"{args.guide} matches {args.results}/*.json")
        return 0
    if old != new:
        atomic_write_text(args.guide, new)
        print(f"rewrote the tables in {args.guide}")
    else:
        print(f"{args.guide} already up to date")
    return 0
