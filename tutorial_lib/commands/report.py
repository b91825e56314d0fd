"""``python -m tutorial_lib report``: rewrite OPTIMIZATION_GUIDE.md's tables from results/*.json."""
from __future__ import annotations

import sys
from pathlib import Path

from tutorial_lib.guide.report import regenerate

HELP = "Regenerate the tables inside OPTIMIZATION_GUIDE.md from results/*.json."

ROOT = Path(__file__).resolve().parents[2]


def add_arguments(p):
    p.add_argument("--guide", type=Path, default=ROOT / "OPTIMIZATION_GUIDE.md", help="the guide to rewrite")
    p.add_argument("--results", type=Path, default=ROOT / "results", help="folder of results/*.json")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when the guide differs from what report would write")


def run(args) -> int:

    if not args.guide.exists():
        print(f"report: --guide {args.guide} does not exist", file=sys.stderr)
        return 2
    old, new = regenerate(args.guide, args.results)
    if args.check:
        if old != new:
            print(f"{args.guide} is out of date: run `python -m tutorial_lib report`", file=sys.stderr)
            return 1
        print(f"{args.guide} matches {args.results}/*.json")
        return 0
    if old != new:
        args.guide.write_text(new)
        print(f"rewrote the tables in {args.guide}")
    else:
        print(f"{args.guide} already up to date")
    return 0
