"""How long each notebook takes, for the learner's map (``tutorial_lib.notebook_map``).

    python scripts/time_notebooks.py                 # run every notebook at the smoke profile, in a copy
    python scripts/time_notebooks.py 02_gqa 07_all_together
    python scripts/time_notebooks.py --readme        # only rewrite README.md's map from what is recorded

Each notebook is executed (nbconvert's ExecutePreprocessor, the notebook's own kernel) in a temporary
copy -- the committed outputs are the cpu profile's and stay as they are -- and its time is read from
the copy's execution timestamps, the same way the cpu times are read from the stored outputs. The
times go to ``notebooks/smoke_times.json`` with the machine, its load and the date; then README.md's
``<!-- map -->`` block is rewritten from ``notebook_map.map_markdown``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor

from tutorial_lib import notebook_map, settings
from tutorial_lib.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- map -->\n)(.*?)(<!-- /map -->)", re.DOTALL)


def run_smoke(stem: str, timeout: int = 1800) -> float:
    """Execute notebooks/<stem>.ipynb at the smoke profile in a temporary folder; its seconds."""
    src = notebook_map.NOTEBOOKS / f"{stem}.ipynb"
    if not src.is_file():
        raise ValueError(f"notebook={stem!r}: no {src}")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / src.name
        shutil.copy(src, copy)
        book = nbformat.read(copy, as_version=4)
        os.environ["TUTORIAL_PROFILE"] = "smoke"
        ExecutePreprocessor(timeout=timeout, kernel_name="python3",
                            record_timing=True).preprocess(book, {"metadata": {"path": tmp}})
    seconds = notebook_map.stored_seconds(json.loads(nbformat.writes(book)))
    if seconds is None:
        raise RuntimeError(f"{stem}: the executed copy carries no execution timestamps")
    return seconds


def rewrite_readme() -> bool:
    text = README.read_text(encoding="utf-8")
    if not BLOCK.search(text):
        raise ValueError(f"{README}: no <!-- map --> ... <!-- /map --> block")
    new = BLOCK.sub(lambda m: m.group(1) + notebook_map.map_markdown() + m.group(3), text)
    if new != text:
        atomic_write_text(README, new)
    return new != text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stems", nargs="*", help="notebooks to time (default: all)")
    ap.add_argument("--readme", action="store_true", help="only rewrite README.md's map")
    args = ap.parse_args(argv)
    known = [lesson.stem for lesson in notebook_map.LESSONS]
    unknown = [s for s in args.stems if s not in known]
    if unknown:
        ap.error(f"stems={unknown} are not among {known}")
    if not args.readme:
        path = notebook_map.NOTEBOOKS / notebook_map.SMOKE_TIMES
        doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"notebooks": {}}
        for stem in args.stems or known:
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            seconds = run_smoke(stem)
            doc["notebooks"][stem] = {"seconds": round(seconds, 1), "load_before": load,
                                      "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
            print(f"{stem}: {seconds:.1f} s at the smoke profile")
        doc["machine"] = settings.device_name(settings.get_device())
        doc["cores"] = os.cpu_count()
        doc["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS")  # as `make test` runs them: 1
        atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print("README.md's map " + ("rewritten" if rewrite_readme() else "unchanged"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
