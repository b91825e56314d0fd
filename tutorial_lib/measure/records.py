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
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import torch

from tutorial_lib import settings
from tutorial_lib.files import atomic_write_text
from tutorial_lib.measure.allocator import allocator_settings

SCHEMA_VERSION = 1


def stamp(device=None, dtype=None, **extra) -> Dict[str, Any]:
    """Where and when a measurement was taken: device, device name, dtype, torch, python, date,
    and the CPU allocator's settings (``measure.allocator.allocator_settings``: huge pages, malloc
    variables, threads) -- a CPU step's time depends on them."""
    dev, dt = settings.resolve(device, dtype)
    meta = {
        "device": str(dev),
        "device_name": settings.device_name(dev),
        "dtype": settings.dtype_name(dt),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if dev.type == "cuda" else None,
        "driver": cuda_driver_version() if dev.type == "cuda" else None,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "allocator": allocator_settings(),
        "profile": settings.profile_name(device=dev),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    meta.update(extra)
    return meta


def cuda_driver_version() -> Optional[str]:
    """The NVIDIA driver's version (from nvidia-smi), or None where it cannot be read."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


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
    doc = {"schema_version": SCHEMA_VERSION,
           "meta": {**stamp(device, dtype), **(meta or {})},
           "rows": [to_row(r) for r in rows]}
    return atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")


def save_document(path: Union[str, Path], doc: Dict[str, Any]) -> Path:
    """Write an already-assembled results document (``schema_version``, ``meta``, ``rows``, ...)."""
    if not isinstance(doc, dict) or "rows" not in doc or "meta" not in doc:
        raise ValueError("save_document: doc needs 'meta' and 'rows'")
    doc = {"schema_version": doc.get("schema_version", SCHEMA_VERSION), **doc}
    return atomic_write_text(path, json.dumps(_jsonable(doc), indent=1, allow_nan=False) + "\n")


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


# ---- where results live ------------------------------------------------------------------------
RESULTS_ENV = "TUTORIAL_RESULTS_DIR"


def results_dir() -> Path:
    """$TUTORIAL_RESULTS_DIR, else the repository's results/ (next to tutorial_lib), else ./results."""
    env = os.environ.get(RESULTS_ENV)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2] / "results"
    return repo if repo.is_dir() else Path.cwd() / "results"


def load_all(directory: Optional[Union[str, Path]] = None) -> List[Dict[str, Any]]:
    """Every results file in ``directory`` (default ``results_dir()``), newest first; files that
    are not results are skipped. Each doc gets ``_path``."""
    d = Path(directory) if directory is not None else results_dir()
    docs = []
    for p in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            doc = load_results(p)
        except (ValueError, OSError):
            continue
        doc["_path"] = str(p)
        docs.append(doc)
    docs.sort(key=lambda x: str(x["meta"].get("date", "")), reverse=True)
    return docs


def device_kind(device: str) -> str:
    """'cuda:0' -> 'cuda'."""
    return str(device).split(":")[0]


def measured_rows(kind: str, docs: Optional[List[Dict[str, Any]]] = None,
                  device: Optional[str] = None) -> List[tuple]:
    """(row, meta) of ``kind`` from results measured on ``device``'s kind (any, when None),
    newest file first, failed rows left out."""
    docs = load_all() if docs is None else docs
    out = []
    for d in docs:
        if device is None or device_kind(d["meta"].get("device", "")) == device_kind(device):
            out += [(r, d["meta"]) for r in d["rows"] if r.get("kind") == kind and not r.get("error")]
    return out
