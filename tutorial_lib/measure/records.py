"""Result records: JSON files stamped with a schema version, the device, dtype, torch version and date.

A results file is ``{"schema_version": N, "meta": {...stamp...}, "rows": [ {...}, ... ]}``. Rows are
plain dicts (dataclasses such as ``StepResult`` are converted with ``dataclasses.asdict``), so any
later lesson can add its own kinds of rows; give each row a ``"kind"`` (e.g. "step", "breakdown",
"attention_sweep") so readers can pick theirs with ``rows_of_kind``.

Bump ``SCHEMA_VERSION`` (defined in ``measure.validate``) when a field changes meaning;
``load_results`` refuses newer files and reports the version it found (after mamf-finder's
``benchmark_version``).

Reading is one loader for every consumer (``report``, the notebooks, the widgets): ``read_json``
names the file it failed on, ``file_kind`` tells a results file from a training history or a
Chrome trace, ``check_results`` (``measure.validate``: types, finite values, times and bytes >= 0,
``meta``, the shape of rows and sections, the nesting depth) refuses a bad document naming the
field, and ``scan`` / ``load_all`` walk a folder with them.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import torch

from tutorial_lib import settings
from tutorial_lib.files import atomic_write_text
from tutorial_lib.measure.allocator import allocator_settings
from tutorial_lib.measure.validate import SCHEMA_VERSION, check_results


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
    return save_document(path, doc)


def save_document(path: Union[str, Path], doc: Dict[str, Any]) -> Path:
    """Write an already-assembled results document (``schema_version``, ``meta``, ``rows``, ...),
    atomically, after checking it is one ``load_results`` will read back."""
    if not isinstance(doc, dict) or "rows" not in doc or "meta" not in doc:
        raise ValueError("save_document: doc needs 'meta' and 'rows'")
    doc = _jsonable({"schema_version": doc.get("schema_version", SCHEMA_VERSION), **doc})
    check_results(doc, f"save_document({str(path)!r})")
    return atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")


# ---- reading: one loader for `report`, the notebooks and the widgets ---------------------------
RESULTS = "results"  # {"schema_version", "meta", "rows": [{"kind": ..., ...}], "sections"?}
TRAIN_HISTORY = "train_history"  # ``train.TrainHistory.save`` (``python -m tutorial_lib train --out``)
CHROME_TRACE = "chrome_trace"  # ``python -m tutorial_lib profile --trace``
FILE_KINDS = {RESULTS: "a results file", TRAIN_HISTORY: "a training history (train --out)",
              CHROME_TRACE: "a Chrome trace (profile --trace)", None: "JSON of no kind this library writes"}


def read_json(path: Union[str, Path]) -> Any:
    """The JSON in ``path``; ValueError naming the file when it cannot be read or parsed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file, so not JSON") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        return json.loads(text)
    except ValueError as e:  # JSONDecodeError, or an integer of more than 4,300 digits
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply to be read (a results file has at most "
                         "a few levels)") from None


def file_kind(doc: Any) -> Optional[str]:
    """What a parsed JSON file is: RESULTS, TRAIN_HISTORY, CHROME_TRACE, or None (none of these).

    Results files and histories say so (``schema_version`` + ``rows``; ``kind`` "train_history",
    or, in files written before histories carried it, ``train_loss`` + ``val_loss``); a Chrome
    trace is an object with ``traceEvents`` or a list of events with a phase ``ph``."""
    if isinstance(doc, dict):
        if doc.get("kind") == TRAIN_HISTORY or ("train_loss" in doc and "val_loss" in doc):
            return TRAIN_HISTORY
        if "traceEvents" in doc:
            return CHROME_TRACE
        if "schema_version" in doc or "rows" in doc:
            return RESULTS
    elif isinstance(doc, list) and doc and all(isinstance(e, dict) and "ph" in e for e in doc[:10]):
        return CHROME_TRACE
    return None


def load_results(path: Union[str, Path]) -> Dict[str, Any]:
    """Read and check a results file (``check_results``); ValueError naming the file otherwise."""
    doc = read_json(path)
    kind = file_kind(doc)
    if kind not in (RESULTS, None):
        raise ValueError(f"{path}: {FILE_KINDS[kind]}, not a results file")
    return check_results(doc, path)


@dataclass
class Scan:
    """What ``scan`` found in a folder: results documents (each with ``_path``), training
    histories as (path, parsed JSON), and one line per file it skipped and why."""

    results: List[Dict[str, Any]] = field(default_factory=list)
    histories: List[Tuple[Path, Any]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def scan(directory: Union[str, Path], strict: bool = True) -> Scan:
    """Every ``*.json`` in ``directory`` (not its subfolders), sorted by name, by kind.

    Files of another kind (a Chrome trace, JSON this library does not write) are skipped with a
    note. A file that is broken -- not JSON, or a results file that fails ``check_results`` --
    raises ValueError naming it when ``strict``, else is skipped with a note."""
    out = Scan()
    for p in sorted(Path(directory).glob("*.json")):
        try:
            doc = read_json(p)
            kind = file_kind(doc)
            if kind == RESULTS:
                out.results.append({**check_results(doc, p), "_path": str(p)})
            elif kind == TRAIN_HISTORY:
                out.histories.append((p, doc))
            else:
                out.notes.append(f"{p}: skipped, {FILE_KINDS[kind]}")
        except ValueError as e:
            if strict:
                raise
            out.notes.append(f"skipped: {e}")
    return out


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


def load_all(directory: Optional[Union[str, Path]] = None, strict: bool = False) -> List[Dict[str, Any]]:
    """Every results file in ``directory`` (default ``results_dir()``), newest first, each with
    ``_path`` (``scan``). Other kinds of file are left out; a broken one raises when ``strict``,
    else is left out with a warning that names it. A missing folder holds no results."""
    d = Path(directory) if directory is not None else results_dir()
    if not d.is_dir():
        return []
    found = scan(d, strict=strict)
    for note in found.notes:
        if note.startswith("skipped:"):
            warnings.warn(note, RuntimeWarning, stacklevel=2)
    return sorted(found.results, key=lambda x: str(x["meta"].get("date", "")), reverse=True)


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
