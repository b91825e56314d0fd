"""What a results file or a training history may hold: one validator for every reader.

``records.load_results`` and ``records.scan`` (so ``report``, the notebooks' recorded tables and the
widgets) read results files through ``check_results``; ``train.TrainHistory.from_dict`` reads
training histories through ``check_history``. A file that fails is refused with a ValueError that
names the file, the field and the value (``results/cpu.json: rows[3] (kind 'mlp').ms_per_step=-2.0
is negative; a time cannot be``), before anything is rendered or rewritten.

What is checked, everywhere in a file:

- the nesting depth (at most ``MAX_DEPTH`` levels; real files have 6), so no reader recurses
  without end;
- every number is finite: JSON has no NaN or Infinity, and ``1e400`` parses as inf. A measurement
  that failed is not a NaN: its row carries an ``error`` text and ``null`` where the numbers would be;
- fields are checked by their names, the names the suite writes (``field_rule``): times, bytes,
  counts and rates (``median_ms``, ``peak_bytes``, ``seq_len``, ``tokens_per_s``, ...) are numbers
  >= 0, or null; other numeric fields (``roofline_error``, ``vs_baseline``, ...) are numbers of
  either sign; labels (``variant``, ``error``, ``*_range``, ...) are text. Only a series
  (``round_ms``, ``times_ms``) holds a list, checked number by number. Fields no rule names may
  hold any JSON.

And per part of a results file (``schema_version``, ``meta``, ``rows``, ``sections``):

- ``meta`` names the device (``device``, ``device_name``), ``dtype``, ``torch`` and ``date``:
  every caption shows them;
- every row has a ``kind`` and at least one value or an ``error`` (a row of dashes is no result);
  the rows of the device run's CUDA tests (``kind`` "cuda_tests") hold whatever each test
  recorded, shown as text, so only their ``error`` is held to a rule there;
- a section is an object: ``columns`` a list of names, ``sizes`` an object of values or lists of
  values, ``note`` and ``error`` text, ``not_run`` true or false, ``seconds`` >= 0 and ``load`` an
  object of numbers >= 0.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple, Union

SCHEMA_VERSION = 1  # of results files; bump it when a field changes meaning
MAX_DEPTH = 20  # levels of nested objects and lists a file may have (results files have 6)

Source = Union[str, Path]

# ---- rules by field name -------------------------------------------------------------------------
TEXT = "text"  # a string (or null)
NONNEGATIVE = "a number >= 0"  # times, bytes, counts, rates, ratios of positive quantities
NUMBER = "a number"  # either sign: errors, slopes, differences, losses

TEXT_FIELDS = {"kind", "error", "variant", "impl", "backend", "component", "quantity", "claim", "verdict",
               "optimizer", "note", "why", "what", "phase", "scope", "bound", "label", "section"}
COUNT_FIELDS = {"B", "T", "H", "D", "W", "n", "batch", "batch_size", "seq_len", "head_dim", "vocab", "window",
                "context", "tokens", "kernels", "elements", "rounds", "seeds", "steps", "visible_pairs",
                "threads", "interop_threads", "cores", "params", "world_size", "tokens_per_step", "exitstatus"}
NONNEGATIVE_NAME = re.compile(r"""
      (^|_)(ms|us|ns|s|sec|seconds)$            # times: median_ms, overhead_s, tokens_per_s, wall_s
    | ^(ms|seconds)_                            # ms_per_step, ms_fwd_bwd, seconds_per_op
    | (^|_)(bytes|KB|MB|GB|KiB|MiB|GiB|kib|GBs|GBps|M|GFLOP|TFLOP|TFLOPs|flops|FLOPs)$  # sizes, FLOPs
    | ^n_                                       # n_head, n_kv_head, n_params, n_runs
    | ^(speedup|peak|bandwidth|first_touch|achieved|roof|intensity|ridge)|^(share|spread)$  # rates, ratios
    | (^|_)(MFU|mfu)(_|$)                       # MFU_spec, matmul_mfu
    | _(share|vs_[A-Za-z0-9]+)$                 # time_share, flops_vs_MHA, peak_vs_causal
""", re.VERBOSE)
SERIES_FIELDS = {"times_ms", "round_ms", "measured_rounds_ms", "roofline_rounds_ms"}  # lists of numbers (one per
# run or round); other fields hold one
SIGNED_SUFFIX = re.compile(r"_(error|slope)$")  # roofline_error, peak_slope: either sign, whatever the prefix
NUMBER_NAME = re.compile(r"_sd$|^(vs_|ratio$|claimed|flop_ceiling|lr$|grad_norm)|(^|_)loss$")


def field_rule(name: str) -> Optional[str]:
    """TEXT, NONNEGATIVE, NUMBER, or None (no rule: any JSON) for a field called ``name``."""
    if name in TEXT_FIELDS or name.endswith("_range"):
        return TEXT
    name = re.sub(r"_(on|off)$", "", name)  # an A/B pair: fresh_fill_GBps_off, fresh_fill_GBps_on
    name = re.sub(r"_(min|max|median)$", "", name)  # a range's end has its quantity's sign: roofline_error_min
    if SIGNED_SUFFIX.search(name):
        return NUMBER
    if name in COUNT_FIELDS or NONNEGATIVE_NAME.search(name):
        return NONNEGATIVE
    if NUMBER_NAME.search(name):
        return NUMBER
    return None


# ---- small checks ---------------------------------------------------------------------------------
def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)``, shortened for an error message."""
    r = repr(value)
    return r if len(r) <= limit else r[:limit - 5] + " ...)"


def is_number(v: Any) -> bool:
    """An int or a float, not a bool (True is an int to Python, not a measurement)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def walk(value: Any, where: str = "") -> Iterator[Tuple[str, Any, int]]:
    """(where, value, depth) for ``value`` and everything nested in it, without recursion (a file
    nested 100,000 levels deep must not exhaust the stack of the check meant to refuse it)."""
    stack = [(where, value, 0)]
    while stack:
        w, v, depth = stack.pop()
        yield w, v, depth
        if isinstance(v, dict):
            stack.extend((f"{w}.{k}" if w else str(k), x, depth + 1) for k, x in reversed(list(v.items())))
        elif isinstance(v, list):
            stack.extend((f"{w}[{i}]", x, depth + 1) for i, x in reversed(list(enumerate(v))))


NOT_FINITE = ("is not a finite number; a failed measurement is recorded as null with an 'error' text, "
              "never as NaN or inf")


def sound(doc: Any) -> bool:
    """True when ``doc`` nests at most ``MAX_DEPTH`` levels and every float in it is finite: the
    fast pass over a whole file (a training history holds thousands of numbers); ``check_depth``
    and ``check_finite`` walk again to name the place only when it is False."""
    stack, isfinite = [(doc, 0)], math.isfinite
    while stack:
        v, depth = stack.pop()
        if type(v) is float:
            if not isfinite(v):
                return False
            continue
        if not isinstance(v, (dict, list)):
            continue
        items = v.values() if isinstance(v, dict) else v
        if depth >= MAX_DEPTH and items:
            return False
        for x in items:
            if type(x) is float:
                if not isfinite(x):
                    return False
            elif isinstance(x, (dict, list)):
                stack.append((x, depth + 1))
    return True


def check_depth(doc: Any, source: Source) -> None:
    """At most ``MAX_DEPTH`` levels of nesting in ``doc`` (a slow walk that names the place: run it
    when ``sound`` is False)."""
    for where, _, depth in walk(doc):
        if depth > MAX_DEPTH:
            raise ValueError(f"{source}: {where} is nested {depth} levels deep; a file of this library has "
                             f"at most {MAX_DEPTH}")


def check_finite(doc: Any, source: Source) -> None:
    """Every number in ``doc`` finite, in fields no rule names too (a slow walk that names the
    place: run it when ``sound`` is False)."""
    for where, v, _ in walk(doc):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{source}: {where or 'the file'}={v!r} {NOT_FINITE}")


def check_value(value: Any, rule: Optional[str], where: str, source: Source, series: bool = False) -> None:
    """``value`` follows ``rule`` (``field_rule``); a ``series`` (``SERIES_FIELDS``) is a list of
    such values, checked one by one."""
    if rule is None or value is None:
        return
    if rule == TEXT:
        if not isinstance(value, str):
            raise ValueError(f"{source}: {where}={shown(value)} must be text, not {type(value).__name__}")
        return
    if series and isinstance(value, list):
        if all(type(v) is float or type(v) is int for v in value) and all(map(math.isfinite, value)) \
                and (rule != NONNEGATIVE or not value or min(value) >= 0):
            return  # the common case, in one pass per test
        for i, v in enumerate(value):
            if v is None or isinstance(v, (list, dict)):
                raise ValueError(f"{source}: {where}[{i}]={shown(v)} must be {rule}")
            check_value(v, rule, f"{where}[{i}]", source)
        return
    if not is_number(value):
        raise ValueError(f"{source}: {where}={shown(value)} must be {rule}, not {type(value).__name__} "
                         "(it would be printed as if it were one)")
    if not math.isfinite(value):
        raise ValueError(f"{source}: {where}={value!r} {NOT_FINITE}")
    if rule == NONNEGATIVE and value < 0:
        raise ValueError(f"{source}: {where}={value!r} is negative; a time, a size, a count or a rate "
                         "cannot be")


def check_fields(obj: Dict[str, Any], where: str, source: Source) -> None:
    """Every field of ``obj`` by its name's rule (``field_rule``)."""
    for name, value in obj.items():
        check_value(value, field_rule(str(name)), f"{where}.{name}" if where else str(name), source,
                    series=name in SERIES_FIELDS)


def check_int(v: Any, where: str, source: Source, lo: int = 0) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise ValueError(f"{source}: {where}={shown(v)} must be an integer >= {lo}")


def check_text(v: Any, where: str, source: Source, optional: bool = False) -> None:
    if optional and v is None:
        return
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{source}: {where}={shown(v)} must be {'null or ' if optional else ''}non-empty text")


# ---- results files ------------------------------------------------------------------------------
META_REQUIRED = {  # what every caption shows: "Recorded on **device_name**, dtype, torch ..., date"
    "device": "the device type ('cpu', 'cuda:0')",
    "device_name": "the hardware ('NVIDIA H200', a CPU model)",
    "dtype": "the compute dtype ('float32', 'bfloat16')",
    "torch": "the PyTorch version",
    "date": "when it was recorded (ISO 8601, '2026-12-01T05:33:22+00:00')",
}
META_TEXT = ("profile", "python", "suite", "command", "size_profile", "cuda", "driver")
DEVICE = re.compile(r"^[a-z]+(:\d+)?$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def check_meta(meta: Any, source: Source) -> None:
    if not isinstance(meta, dict):
        raise ValueError(f"{source}: 'meta' must be an object, not {type(meta).__name__}")
    missing = [k for k in META_REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"{source}: meta has no {', '.join(repr(k) for k in missing)} ("
                         + "; ".join(f"{k}: {META_REQUIRED[k]}" for k in missing)
                         + "): every table's caption names them")
    for k in META_REQUIRED:
        check_text(meta[k], f"meta.{k}", source)
    if not DEVICE.match(meta["device"]):
        raise ValueError(f"{source}: meta.device={shown(meta['device'])} is not a device name ('cpu', "
                         "'cuda', 'cuda:0', 'mps')")
    if not DATE.match(meta["date"]):
        raise ValueError(f"{source}: meta.date={shown(meta['date'])} is not an ISO 8601 date "
                         "('2026-12-01T05:33:22+00:00')")
    for k in META_TEXT:
        check_text(meta.get(k), f"meta.{k}", source, optional=True)
    for k in ("sizes", "allocator"):
        if meta.get(k) is not None and not isinstance(meta[k], dict):
            raise ValueError(f"{source}: meta.{k}={shown(meta[k])} must be an object")
    if meta.get("sections_run") is not None and not (
            isinstance(meta["sections_run"], list) and all(isinstance(s, str) for s in meta["sections_run"])):
        raise ValueError(f"{source}: meta.sections_run={shown(meta['sections_run'])} must be a list of "
                         "section names")
    check_fields({k: v for k, v in meta.items() if k not in META_REQUIRED and k not in META_TEXT}, "meta", source)


def check_section(name: str, sec: Any, source: Source) -> None:
    where = f"sections[{name!r}]"
    if not isinstance(sec, dict):
        raise ValueError(f"{source}: {where} must be an object, not {type(sec).__name__} ('sections' "
                         "must map a section name to an object)")
    cols = sec.get("columns")
    if cols is not None and not (isinstance(cols, list) and all(isinstance(c, str) and c for c in cols)):
        raise ValueError(f"{source}: {where}.columns={shown(cols)} must be a list of column names")
    sizes = sec.get("sizes")
    if sizes is not None:
        if not isinstance(sizes, dict):
            raise ValueError(f"{source}: {where}.sizes={shown(sizes)} must be an object "
                             "({'B': 4, 'T': 512, ...}), not " + type(sizes).__name__)
        for k, v in sizes.items():
            values = v if isinstance(v, list) else [v]
            if not all(x is None or isinstance(x, (str, int, float)) for x in values):
                raise ValueError(f"{source}: {where}.sizes.{k}={shown(v)} must be a value or a list of values")
    for k in ("note", "error"):
        if sec.get(k) is not None and not isinstance(sec[k], str):
            raise ValueError(f"{source}: {where}.{k}={shown(sec[k])} must be text")
    if "not_run" in sec and not isinstance(sec["not_run"], bool):
        raise ValueError(f"{source}: {where}.not_run={shown(sec['not_run'])} must be true or false")
    if sec.get("seconds") is not None:
        check_value(sec["seconds"], NONNEGATIVE, f"{where}.seconds", source)
    load = sec.get("load")
    if load is not None:
        if not isinstance(load, dict):
            raise ValueError(f"{source}: {where}.load={shown(load)} must be an object")
        for k in ("start", "end", "cores", "threads"):
            check_value(load.get(k), NONNEGATIVE, f"{where}.load.{k}", source)


def check_row_kind(i: int, row: Any, source: Source) -> None:
    if not isinstance(row, dict):
        raise ValueError(f"{source}: row {i} is a {type(row).__name__}, not an object")
    kind = row.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"{source}: row {i} has no 'kind' (got {kind!r}); every row needs one "
                         "so a reader can tell what it measured")


def check_row(i: int, row: Dict[str, Any], sections: Dict[str, Any], source: Source,
              free_form: bool = False) -> None:
    """A row: its fields by name, and a value or an error. ``free_form`` rows (the device run's CUDA
    tests: whatever each test recorded with ``record_property``, shown as text) are held only to
    a text ``error``, besides the file-wide depth and finite numbers."""
    kind = row["kind"]
    where = f"rows[{i}] (kind {kind!r})"
    check_fields({"error": row.get("error")} if free_form else row, where, source)
    if row.get("error"):
        return  # a failed measurement: its error is its result
    values = [k for k, v in row.items() if k not in ("kind", "error") and v is not None]
    if not values:
        raise ValueError(f"{source}: {where} holds nothing but its kind: a row needs a measured value "
                         "or an 'error' saying why there is none")
    cols = (sections.get(kind) or {}).get("columns") or []
    shown_cols = [c for c in cols if c != "error"]
    if shown_cols and not any(row.get(c) is not None for c in shown_cols):
        raise ValueError(f"{source}: {where} has none of its table's columns {shown_cols} and no "
                         "'error': it would be a row of dashes")


def check_results(doc: Any, source: Source = "results") -> Dict[str, Any]:
    """``doc`` when it is a valid results document, else ValueError naming ``source``, the field
    and the value (see the module doc): the schema version, ``meta``, every row, every section,
    every number, the nesting depth."""
    if not isinstance(doc, dict):
        raise ValueError(f"{source}: a results file is a JSON object, not {type(doc).__name__}")
    missing = [k for k in ("schema_version", "meta", "rows") if k not in doc]
    if missing:
        raise ValueError(f"{source}: not a results file (missing {missing}; it needs "
                         "'schema_version', 'meta' and 'rows')")
    v = doc["schema_version"]
    if isinstance(v, int) and not isinstance(v, bool) and v > SCHEMA_VERSION:
        raise ValueError(f"{source}: schema_version={v!r} is newer than this library's "
                         f"{SCHEMA_VERSION}; update tutorial_lib")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{source}: schema_version={v!r} is not a version this library knows "
                         f"(an integer 1..{SCHEMA_VERSION})")
    whole = sound(doc)  # one fast pass; the slow ones below only to name what is wrong
    if not whole:
        check_depth(doc, source)
    if not isinstance(doc["meta"], dict):
        raise ValueError(f"{source}: 'meta' must be an object, not {type(doc['meta']).__name__}")
    if not isinstance(doc["rows"], list):
        raise ValueError(f"{source}: 'rows' must be a list, not {type(doc['rows']).__name__}")
    sections = doc.get("sections", {})
    if not isinstance(sections, dict):
        raise ValueError(f"{source}: 'sections' must map a section name to an object, not "
                         f"{type(sections).__name__}")
    if doc.get("kind") is not None and not isinstance(doc["kind"], str):
        raise ValueError(f"{source}: kind={shown(doc['kind'])} must be text")
    for i, row in enumerate(doc["rows"]):
        check_row_kind(i, row, source)
    for name, sec in sections.items():
        check_section(name, sec, source)
    for i, row in enumerate(doc["rows"]):
        check_row(i, row, sections, source, free_form=doc.get("kind") == "cuda_tests")
    check_meta(doc["meta"], source)
    if not whole:
        check_finite(doc, source)
    return doc


# ---- training histories -------------------------------------------------------------------------
HISTORY_SERIES = {  # per step / per validation: a number (null only in a run that diverged)
    "train_loss": NUMBER, "lr": NONNEGATIVE, "grad_norm": NONNEGATIVE, "step_time_s": NONNEGATIVE,
    "optimizer_time_s": NONNEGATIVE, "val_loss": NUMBER, "val_wall_s": NONNEGATIVE}
HISTORY_STEPS = ("steps", "val_steps")
HISTORY_COUNTS = ("world_size", "n_params", "tokens_per_step")


def check_history(doc: Any, source: Source = "history") -> Dict[str, Any]:
    """``doc`` when it is a valid training history (``train.TrainHistory.to_dict``'s fields), else
    ValueError naming ``source`` and the field: depth and finite numbers, every series a list of
    numbers of its sign (null only when the run ``diverged``), steps integers, the per-step and
    per-validation series of one length each, the stored summary by its fields' names."""
    if not isinstance(doc, dict):
        raise ValueError(f"{source}: a training history is a JSON object, not {type(doc).__name__}")
    whole = sound(doc)
    if not whole:
        check_depth(doc, source)
    diverged = doc.get("diverged", False)
    if not isinstance(diverged, bool):
        raise ValueError(f"{source}: diverged={shown(diverged)} must be true or false")
    for key, rule in HISTORY_SERIES.items():
        series = doc.get(key, [])
        if not isinstance(series, list):
            raise ValueError(f"{source}: {key}={shown(series)} must be a list")
        if None not in series:
            check_value(series, rule, key, source, series=True)
            continue
        for i, v in enumerate(series):
            if v is None and not diverged:
                raise ValueError(f"{source}: {key}[{i}] is null in a run that did not diverge; a null "
                                 "stands for a non-finite value, which stops a run as diverged")
            check_value(v, rule, f"{key}[{i}]", source)
    for key in HISTORY_STEPS:
        series = doc.get(key, [])
        if not isinstance(series, list):
            raise ValueError(f"{source}: {key}={shown(series)} must be a list")
        if not all(type(v) is int and v >= 0 for v in series):
            for i, v in enumerate(series):
                check_int(v, f"{key}[{i}]", source)
    for key in HISTORY_COUNTS:
        if key in doc:
            check_int(doc[key], key, source, lo=1)
    for group in (("steps", "train_loss", "step_time_s"), ("val_steps", "val_loss", "val_wall_s")):
        lengths = {k: len(doc[k]) for k in group if isinstance(doc.get(k), list)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{source}: {', '.join(group)} must be of one length (one entry per "
                             f"{'step' if group[0] == 'steps' else 'validation'}); got {lengths}")
    for key in ("model", "config"):
        if key in doc and not isinstance(doc[key], dict):
            raise ValueError(f"{source}: {key}={shown(doc[key])} must be an object")
    for key in ("optimizer", "device", "dtype"):
        if key in doc:
            check_text(doc[key], key, source)
    for key in ("device_name", "torch_version"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise ValueError(f"{source}: {key}={shown(doc[key])} must be text")
    summary = doc.get("summary")
    if summary is not None:
        if not isinstance(summary, dict):
            raise ValueError(f"{source}: summary={shown(summary)} must be an object")
        check_fields(summary, "summary", source)
    if not whole:
        check_finite(doc, source)
    return doc
