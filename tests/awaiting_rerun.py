"""Notebooks whose stored outputs predate a change to what they print, and wait for the lead's
re-execution at the cpu profile on a quiet machine (the stored outputs must come from that run).

Each entry is the stored first code cell's execution start: re-executing the notebook changes it,
and then the tests that skip it here check it -- and ``test_the_waiting_list_holds_only_notebooks_
still_waiting`` fails until its entry is removed. Nothing stays on this list by accident."""
import json
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

AWAITING_RERUN = {  # issue 23: the one printing path, 07's rewrite, the map in 01
    "01_profile.ipynb": "2026-12-01T06:03:05.329731Z",
    "02_gqa.ipynb": "2026-12-01T05:44:23.234191Z",
    "03_flash_attention.ipynb": "2026-12-01T05:58:47.890063Z",
    "04_mlp_expansion.ipynb": "2026-12-01T07:13:31.699836Z",
    "05_swiglu.ipynb": "2026-12-01T07:21:09.241106Z",
    "06_sliding_window.ipynb": "2026-12-01T06:05:04.791880Z",
    "07_all_together.ipynb": "2026-12-01T08:35:03.680337Z",
    "08_lm_head.ipynb": "2026-12-01T08:18:41.819224Z",
}


def first_execution(book: dict):
    for cell in book["cells"]:
        ex = cell.get("metadata", {}).get("execution", {})
        if ex.get("iopub.execute_input"):
            return ex["iopub.execute_input"]
    return None


def waiting(name: str, book: dict = None) -> bool:
    """True while notebook ``name`` (e.g. "07_all_together.ipynb") still holds the outputs listed."""
    if name not in AWAITING_RERUN:
        return False
    book = book if book is not None else json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    return first_execution(book) == AWAITING_RERUN[name]
