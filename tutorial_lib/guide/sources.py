"""Which results files the guide's tables are made of, and files that record the same thing twice.

``report`` (``guide.report.regenerate``) and the notebooks' recorded tables (``guide.report.recorded``)
read every ``results/*.json`` through ``measure.records``; these two questions are the guide's own:

- ``is_guide_record``: only a run of the guide's suite or the device run's CUDA tests feeds a table.
  A ``profile --out-json`` file (a toy model's rows) once added a row to the roofline calibration.
- ``duplicates``: a copy of ``cpu.json`` once doubled every CPU table with no note.
"""
from __future__ import annotations

from typing import Any, Dict, List


def is_guide_record(doc: Dict[str, Any]) -> bool:
    """Whether a results document is one the guide's tables are made of: a run of the guide's suite
    (``bench --suite``: ``meta.suite``) or the device run's CUDA tests (``kind`` "cuda_tests").
    Other results files (``profile --out-json``, a ``bench`` grid) measure whatever their command
    line asked for, often a toy model: they never feed a table."""
    return bool(doc.get("meta", {}).get("suite")) or doc.get("kind") == "cuda_tests"


def what_it_records(doc: Dict[str, Any]) -> List[str]:
    """The tables a guide record feeds: its section names (or "cuda_tests")."""
    if doc.get("kind") == "cuda_tests":
        return ["cuda_tests"]
    return sorted(doc.get("sections", {}))


def duplicates(docs: List[Dict[str, Any]]) -> List[str]:
    """One line per pair of results documents that record the same sections on the same device
    and dtype (a copy of ``cpu.json``, a re-run kept beside the first): every table they share
    would show the device twice. Documents carry ``_path`` (``records.scan``)."""
    out = []
    for i, a in enumerate(docs):
        for b in docs[i + 1:]:
            same = all(a["meta"].get(k) == b["meta"].get(k) for k in ("device_name", "dtype"))
            shared = sorted(set(what_it_records(a)) & set(what_it_records(b)))
            if same and shared:
                listed = ", ".join(shared[:6]) + (f" and {len(shared) - 6} more" if len(shared) > 6 else "")
                out.append(f"{a.get('_path', '?')} and {b.get('_path', '?')} both record {listed} on "
                           f"{a['meta'].get('device_name')} in {a['meta'].get('dtype')}")
    return out
