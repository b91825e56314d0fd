"""Result records: JSON files stamped with a schema version, the device, dtype, torch version and date.

A results file is ``{"schema_version": N, "meta": {...stamp...}, "rows": [ {...}, ... ]}``. Rows are
plain dicts (dataclasses such as ``StepResult`` are converted with ``dataclasses.asdict``), so any
later lesson can add its own kinds of rows; give each row a ``"kind"`` (e.g. "step", "breakdown",
"attention_sweep") so readers can pick theirs with ``rows_of_kind``.

Bump ``SCHEMA_VERSION`` when a field changes meaning; ``load_results`` refuses newer files and
reports the version it found (after mamf-finder's ``benchmark_version``).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import torch

SCHEMA_VERSION = 1


def stamp(device=None, dtype=None, **extra) -> Dict[str, Any]:
    """Where and when a measurement was taken: device, device name, dtype, torch, python, date."""
    from tutorial_lib import settings

    dev = settings.get_device(device) if not isinstance(device, torch.device) else device
    dt = settings.parse_dtype(dtype) if dtype is not None else settings.default_dtype(dev)
    meta = {
        "device": str(dev),
        "device_name": settings.device_name(dev),
        "dtype": settings.dtype_name(dt),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if dev.type == "cuda" else None,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "profile": os.environ.get(settings.PROFILE_ENV) or settings.get_profile(device=dev).name,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    meta.update(extra)
    return meta


def to_row(obj: Any) -> Dict[str, Any]:
    """A JSON-ready dict from a dataclass, an object with ``to_dict`` or a mapping."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        d = dataclasses.asdict(obj)
    elif hasattr(obj, "to_dict"):
        d = obj.to_dict()
    elif isinstance(obj, dict):
        d = dict(obj)
    else:
        raise ValueError(f"cannot turn {type(obj).__name__} into a result row")
    return _jsonable(d)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None  # JSON has no NaN/inf
    if isinstance(x, (torch.dtype, torch.device, Path)):
        return str(x)
    if isinstance(x, torch.Tensor):
        return x.tolist()
    return x


def save_results(path: Union[str, Path], rows: Iterable[Any], meta: Optional[dict] = None,
                 device=None, dtype=None) -> Path:
    """Write rows (dataclasses or dicts) with a stamp to ``path`` (folders created). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"schema_version": SCHEMA_VERSION,
           "meta": {**stamp(device, dtype), **(meta or {})},
           "rows": [to_row(r) for r in rows]}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def save_document(path: Union[str, Path], doc: Dict[str, Any]) -> Path:
    """Write an already-assembled results document (``schema_version``, ``meta``, ``rows``, ...)."""
    if not isinstance(doc, dict) or "rows" not in doc or "meta" not in doc:
        raise ValueError("save_document: doc needs 'meta' and 'rows'")
    doc = {"schema_version": doc.get("schema_version", SCHEMA_VERSION), **doc}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(doc), indent=1) + "\n")
    tmp.replace(path)
    return path


def load_results(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a results file: ``{"schema_version", "meta", "rows"}``; ValueError when it is not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a JSON results file ({e})") from None
    if not isinstance(doc, dict) or "rows" not in doc or "schema_version" not in doc:
        raise ValueError(f"{path}: not a results file (needs 'schema_version' and 'rows')")
    v = doc["schema_version"]
    if not isinstance(v, int) or v > SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version={v!r} is newer than this library's "
                         f"{SCHEMA_VERSION}; update tutorial_lib")
    doc.setdefault("meta", {})
    return doc


def rows_of_kind(doc: Dict[str, Any], kind: str) -> List[Dict[str, Any]]:
    """The rows of a loaded results file whose ``kind`` is ``kind``."""
    return [r for r in doc["rows"] if r.get("kind") == kind]
