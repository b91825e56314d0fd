"""One module per command of ``python -m tutorial_lib`` (see cli.py), plus the argument types they
share: options are checked when they are parsed, before any work starts, and a bad one gets
argparse's ``error:`` line under the command's own usage."""
from __future__ import annotations

import argparse
import math

from tutorial_lib.files import check_writable


def output_file(text: str) -> str:
    """An ``--out``-style path that can be written as a file (``files.check_writable``): not a
    folder, not under a regular file, in a writable folder."""
    try:
        check_writable(text, what=None)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def positive_float(text: str) -> float:
    """A finite number > 0 (``--min-run-time``): 0, negatives, nan and inf are refused."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return v
