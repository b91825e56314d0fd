"""The seed's decision tree, recomputed: what to change first for a sequence length, device and goal.

``recommend(seq_len, device, goal)`` scores each change against the seed's baseline (GPT-2 small:
MHA, GELU 4x, eager attention) and orders them by payoff:

- ``speed``: training-step speedup; ``memory``: training-memory reduction; ``decoding``:
  KV-cache decoding speedup (tokens/s). Every payoff is base / variant (> 1 = better).
  Activation checkpointing and gradient accumulation (notebook 12) serve the memory goal only:
  they trade time for memory, and their note says how much.
- *measured* when a results file (``results/*.json`` from ``python -m tutorial_lib bench
  --suite guide``) was recorded on this kind of device and holds that change within a factor of 2
  of T: one source per payoff -- the measurement at the nearest setting, then the one with the
  most rounds -- named with its file, section, model, B, T and rounds, so 07, 08, 99 and the guide
  quote the same number. A measured speedup carries its range, its rounds and its analytic
  ceiling (``measure.roofline.speedup_ceiling``) and is judged by ``tutorial_lib.speedups``;
- else *analytic*, and labelled so: speed = the roofline model's step-time ratio
  (``measure.roofline.predict_step``: FLOPs, bytes and kernel launches against the ceilings of
  that kind of device -- measured ones from a results file, else for a GPU the datasheet of the
  GPU on record, ``REFERENCE_GPU``; a CPU without recorded ceilings falls back to the FLOP ratio,
  labelled so), memory = ``explore.predict_memory``, decoding = bytes read per new token (all
  weights + the KV cache at context T; a window caps the cache at W), the memory-bound assumption.

Ranked by evidence (``speedups.tier``): gains measured in every round first, then gains measured
above their ceiling (capped at it), then predictions, then what the measurements cannot tell
(within noise, too few rounds), then losses -- so a change whose range spans 1.0 never ranks
above one whose whole range is above 1.0, whatever its median.

The changes include the speed ladder's levers (notebook 11): bf16 autocast, torch.compile, the
vocabulary padded to 50,304 and fused AdamW -- the same model, run differently
(``runtime.StepSettings``; ``change_step``). Measured ones come from the suite's ``speed_ladder``
rows (each over the ladder's rung below); where the cost model has no answer (compile's fusion, a
CPU's bf16 speed, a lever the CUDA baseline already has) the payoff is "n/a" and says why
(``not_modelled``).

The seed's own answer (``claims`` keys ``tree.*``) is returned beside ours.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tutorial_lib import claims, speedups
from tutorial_lib.lessons import explorer as explore
from tutorial_lib.lessons import lm_head
from tutorial_lib.lessons.gqa import decode_bytes_per_token, decode_ceiling
from tutorial_lib.measure import cost, records, roofline
from tutorial_lib.measure.ceilings import Ceilings, ceilings_for, doc_ceilings
from tutorial_lib.model import GPTConfig, get_config
from tutorial_lib.runtime import StepSettings
from tutorial_lib.speedups import Speedup
from tutorial_lib.train import TrainHistory

GOALS = ("speed", "memory", "decoding")
DEVICES = ("cpu", "cuda")
BASELINE = {"attn_backend": "eager"}  # GPT-2 small, MHA, GELU 4x, eager attention
ACCUMULATION = 4  # micro-batches of the "accumulate" change (the batch of 4: one sequence each)
GAIN_THRESHOLD = 1.02  # payoffs below this are listed as "little or no gain"
REFERENCE_GPU = "NVIDIA H200"  # the GPU of the training runs on record (results/train_h200_*)


@dataclass(frozen=True)
class Change:
    key: str
    title: str
    seed_name: str  # what the seed's tree calls it
    # results rows that measure it: (kind, variant label prefix)
    measured_as: tuple = ()
    goals: tuple = GOALS  # the goals it serves (checkpointing and accumulation: memory only)


CHANGES = (
    Change("gqa", "GQA-4 (4 K/V heads for 12 Q heads)", "GQA",
           (("before_after", "+ GQA-4"), ("gqa_train", "GQA-4"), ("gqa_decode", "GQA-4"))),
    Change("flash", "Flash attention (fused SDPA)", "Flash",
           (("before_after", "+ SDPA"), ("flash_model", "sdpa"))),
    Change("mlp3", "MLP 4x -> 3x", "3× MLP", (("before_after", "+ MLP 3x"), ("mlp", "GELU 3x"))),
    Change("window", "Sliding-window attention", "Sliding Window", ()),
    Change("swiglu", "SwiGLU 8/3x (param-matched)", "SwiGLU", (("swiglu", "SwiGLU 8/3x"),)),
    Change("chunked_loss", "Chunked loss (no full logits)", "(not in the seed's tree)",
           (("lm_head", lm_head.CHUNKED), ("before_after", "+ chunked loss"))),
    # the speed ladder's levers (notebook 11): the same model, run differently (runtime.StepSettings)
    Change("bf16", "bf16 autocast", "(not in the seed's tree)", (("speed_ladder", "+ bf16 autocast"),)),
    Change("compile", "torch.compile", "(not in the seed's tree)", (("speed_ladder", "+ torch.compile"),)),
    Change("vocab_pad", "Vocabulary padded to 50,304 (masked)", "(not in the seed's tree)",
           (("speed_ladder", "+ vocab padded"),)),
    Change("fused_adamw", "Fused AdamW", "(not in the seed's tree)", (("speed_ladder", "+ fused AdamW"),)),
    # the memory budget (notebook 12): trade time for memory; never a speed-up
    Change("checkpoint", "Activation checkpointing (every block)", "(not in the seed's tree)", goals=("memory",)),
    Change("accumulate", f"Gradient accumulation ({ACCUMULATION} micro-batches)", "(not in the seed's tree)",
           goals=("memory",)),
)
RUN_CHANGES = {"bf16": {"dtype": "bfloat16"}, "compile": {"compile": "default"}, "fused_adamw": {"adamw": "fused"}}
QUALITY_ONLY = (("swiglu", "SwiGLU 8/3x"), ("muon", "Muon"))


def change_config(key: str, seq_len: int, device: str, window: Optional[int] = None):
    """The baseline config with one change applied (window: W = ``window`` or T/4, at least 16)."""
    base = get_config("gpt2_small", block_size=max(1024, seq_len), **BASELINE)
    if key == "baseline":
        return base
    if key == "gqa":
        return base.replace(n_kv_head=4)
    if key == "flash":
        return base.replace(attn_backend="sdpa")
    if key == "mlp3":
        return base.replace(mlp_ratio=3.0)
    if key == "swiglu":
        return base.replace(mlp="swiglu")
    if key == "chunked_loss":
        return base.replace(loss_impl=lm_head.DEFAULT_IMPL)
    if key == "vocab_pad":
        return base.replace(pad_vocab_multiple=64, mask_vocab_padding=True)
    if key == "checkpoint":
        return base.replace(checkpoint="block")
    if key == "accumulate":  # the same model; the step runs in micro-batches (``accumulation``)
        return base
    if key in RUN_CHANGES:  # the same model: the change is in how it runs (change_step)
        return base
    if key == "window":
        W = window or max(16, seq_len // 4)
        # CPU trains windows with the local O(T*W) kernel; CUDA with flex's block-sparse mask
        return base.replace(window=W, attn_backend="local" if device == "cpu" else "flex")
    raise ValueError(f"change={key!r} is not one of {[c.key for c in CHANGES]}")


def change_step(key: str, device: str) -> StepSettings:
    """How the step runs with change ``key`` on ``device`` (the baseline: bf16 autocast and fused
    AdamW on CUDA, fp32 and AdamW's for-loop on a CPU)."""
    base = StepSettings(dtype=_dtype(device), adamw="fused" if device == "cuda" else "for-loop")
    return base.replace(**RUN_CHANGES.get(key, {}))


def not_modelled(key: str, device: str, goal: str) -> Optional[str]:
    """Why the cost model gives no payoff for change ``key`` here, or None when it does."""
    if key == "bf16" and device == "cuda":
        return "the baseline runs in bf16 autocast on CUDA already"
    if key == "fused_adamw" and device == "cuda":
        return "the baseline's AdamW is fused on CUDA already"
    if key == "compile":
        return "torch.compile's fusion is not in the cost model: only a measurement says (notebook 11)"
    if key == "bf16" and goal == "speed":
        return ("a CPU's bf16 speed depends on its instructions (AMX, AVX-512 BF16 or none): only a measurement "
                "says (notebook 11)")
    if key == "fused_adamw" and goal == "decoding":
        return "decoding runs no optimizer"
    if key == "bf16" and goal == "decoding":
        return ("autocast keeps the weights in fp32 and casts them on every call: decoding reads no fewer bytes "
                "(storing the weights in bf16 is another change)")
    return None


@dataclass
class Payoff:
    key: str
    title: str
    value: Optional[float]  # base / variant, > 1 = better; None: not applicable here
    source: str  # "measured on ... (file: section, model, B, T, rounds)" or "analytic (...)"
    measured: bool
    note: str = ""
    speedup: Optional[Speedup] = None  # a measured speed or decoding payoff: range, rounds, ceiling
    ceiling: Optional[float] = None  # the analytic ceiling at the asked setting (speed, decoding)

    @property
    def evidence(self) -> str:
        """The verdict of a measured speedup (``speedups.VERDICTS``), "predicted" for an analytic
        payoff, "exact" for a measured memory payoff (byte counts carry no noise), "n/a"."""
        if self.value is None:
            return speedups.NA
        if self.speedup is not None:
            return self.speedup.verdict
        return "exact" if self.measured else "predicted"

    def rank_key(self):
        """Best first: by the evidence tier, then by the gain it can be trusted for."""
        if self.speedup is not None:
            return self.speedup.rank_key()
        if self.value is None:
            return speedups.TIERS[speedups.NA], 0.0
        return (0 if self.measured else speedups.TIERS["predicted"]), -self.value

    def describe(self, goal: str) -> str:
        """One line: the payoff (a measured speedup in ``speedups``' printed form, a prediction
        labelled so, with its ceiling) and where it comes from. ``goal`` names the unit."""
        if self.value is None:
            v = "n/a"
        elif self.speedup is not None:
            v = self.speedup.text()
        else:
            unit = {"speed": "", "memory": " less memory", "decoding": ""}[goal]
            how = "measured" if self.measured else "predicted"
            ceiling = f", ceiling {self.ceiling:.2f}×" if self.ceiling is not None else ""
            v = f"{self.value:.2f}×{unit} {how}{ceiling}"
        return f"{self.title}: {v} [{self.source}]" + (f" -- {self.note}" if self.note else "")


@dataclass
class Recommendation:
    seq_len: int
    device: str
    goal: str
    steps: List[Payoff]  # recommended, best first by evidence
    no_gain: List[Payoff]  # slower, predicted below GAIN_THRESHOLD, or n/a
    quality: List[str]  # quality-only changes (SwiGLU, Muon): measured val-loss deltas if any
    seed: List[str]  # the seed's tree for this T
    notes: List[str] = field(default_factory=list)
    undecided: List[Payoff] = field(default_factory=list)  # measured, but within noise / too few rounds

    def payoff(self, key: str) -> Optional[Payoff]:
        """The payoff of change ``key`` (one of ``CHANGES``), wherever it ranked."""
        return next((p for p in self.steps + self.undecided + self.no_gain if p.key == key), None)

    def lines(self) -> List[str]:
        what = {"speed": "training-step speedup", "memory": "training-memory reduction",
                "decoding": "decoding speedup"}[self.goal]
        out = [f"T={self.seq_len}, device={self.device}, goal={self.goal} ({what}, baseline / change):"]
        out += [f"  {i}. {p.describe(self.goal)}" for i, p in enumerate(self.steps, 1)]
        if self.undecided:
            out.append("  measured, but the rounds cannot tell: "
                       + "; ".join(p.describe(self.goal) for p in self.undecided))
        if self.no_gain:
            out.append("  little or no gain here: " + "; ".join(p.describe(self.goal) for p in self.no_gain))
        out += [f"  quality: {q}" for q in self.quality]
        out.append("  the seed says: " + " | ".join(self.seed))
        out += [f"  note: {n}" for n in self.notes]
        return out


def seed_tree(seq_len: int) -> List[str]:
    """The seed's recommendation for this T, in its own words."""

    keys = ["tree.short" if seq_len < 512 else "tree.long", "tree.swiglu", "tree.optimizer"]
    return [claims.get(k).text for k in keys]


# ---- analytic payoffs -------------------------------------------------------------------------
def _dtype(device: str) -> str:
    return "bfloat16" if device == "cuda" else "float32"


def analytic_payoff(key: str, seq_len: int, device: str, goal: str, batch_size: int = 4,
                    window: Optional[int] = None, ceilings: Optional[Ceilings] = None) -> Optional[float]:
    """base / variant for ``goal`` from the analytic model (see the module docstring); speed uses
    the roofline model on ``ceilings``, or the FLOP ratio without them. None where the model has no
    answer (``not_modelled``)."""
    if goal not in GOALS:
        raise ValueError(f"goal={goal!r} is not one of {list(GOALS)}")
    if not_modelled(key, device, goal):
        return None
    base = change_config("baseline", seq_len, device)
    var = change_config(key, seq_len, device, window)
    steps = [change_step("baseline", device), change_step(key, device)]
    dts = [s.dtype for s in steps]
    if goal == "speed" and ceilings is not None:
        w = [roofline.predict_step(c, batch_size, seq_len, ceilings, dtype=s.dtype, device_type=device,
                                   adamw=s.adamw).total_ms for c, s in zip((base, var), steps)]
    elif goal == "speed":
        w = [explore.model_work(explore.scope_work(c, batch_size, seq_len, device)) for c in (base, var)]
    elif goal == "memory":
        k = ACCUMULATION if key == "accumulate" and batch_size % ACCUMULATION == 0 else 1
        w = [explore.predict_memory(c, batch_size, seq_len, dt, g)["total"]
             for c, dt, g in zip((base, var), dts, (1, k))]
    else:
        w = [decode_bytes_per_token(c, seq_len, dt) for c, dt in zip((base, var), dts)]
    return w[0] / w[1]


def memory_trade(key: str, seq_len: int, batch_size: int = 4) -> str:
    """What trading time for memory costs (notebook 12), for the note beside its memory payoff."""
    if key == "checkpoint":
        base = change_config("baseline", seq_len, "cpu")
        fl = [sum(cost.flops_by_scope(c, batch_size, seq_len, None).values())
              for c in (base, change_config("checkpoint", seq_len, "cpu"))]
        return f"recomputes each block's forward in backward: {fl[1] / fl[0] - 1:.0%} more FLOPs per step"
    if key == "accumulate":
        return (f"the same FLOPs in {ACCUMULATION} smaller forward and backward passes, at the speed of the "
                "smaller matmuls")
    return ""


def analytic_basis(goal: str, ceilings: Optional[Ceilings], device: str) -> str:
    """How an analytic payoff was computed, in words."""
    if goal != "speed":
        return _ANALYTIC_BASIS[goal]
    if ceilings is None:
        return f"analytic: FLOP ratio (compute-bound; no ceilings on record for {device})"
    return (f"analytic: roofline step-time ratio on {ceilings.device_name.split(' (')[0]} "
            f"({ceilings.source} ceilings)")


_ANALYTIC_BASIS = {"memory": "analytic: params + grads + AdamW + activations",
                   "decoding": "analytic: bytes read per new token (memory-bound)"}


# ---- measured payoffs -------------------------------------------------------------------------
def _sizes(doc: dict, kind: str) -> str:
    s = doc.get("sections", {}).get(kind, {}).get("sizes") or {}
    return ", ".join(f"{k}={v}" for k, v in s.items())


def _find(doc: dict, kind: str, prefix: str) -> List[dict]:
    return [r for r in doc["rows"] if r.get("kind") == kind and str(r.get("variant", "")).startswith(prefix)
            and not r.get("error")]


def _near(measured_T, seq_len: int) -> bool:
    """A measurement counts for T when it was taken within a factor of 2 of it."""
    try:
        return measured_T is None or int(measured_T) / 2 <= seq_len <= 2 * int(measured_T)
    except (TypeError, ValueError):
        return True


def _distance(measured_T, seq_len: int) -> float:
    try:
        return abs(math.log2(int(measured_T) / seq_len))
    except (TypeError, ValueError, ZeroDivisionError):
        return math.inf


def section_rounds(row: dict, section: dict) -> Optional[int]:
    """The interleaved rounds behind a recorded speedup: the row's own count (``rounds``, its
    ``times_ms``), else the section's timing note ("5 interleaved rounds")."""
    if isinstance(row.get("rounds"), int):
        return row["rounds"]
    if isinstance(row.get("times_ms"), list):
        return len(row["times_ms"])
    sizes = section.get("sizes") or {}
    m = re.search(r"(\d+) interleaved rounds", str(sizes.get("timing", "")))
    if m:
        return int(m.group(1))
    return sizes["rounds"] if isinstance(sizes.get("rounds"), int) else None


SPEEDUP_KEYS = ("speedup", "speedup_vs_MHA", "speedup_vs_causal")


def recorded_speedups(doc: dict, kind: str) -> List[Optional[Speedup]]:
    """Every row of section ``kind`` of a results doc as a ``Speedup`` (its range, its rounds, its
    ceiling where the rows carry configs), None for a row without one and for a baseline row (a
    speedup of exactly 1 over itself), in the order of the rows -- the guide prints these."""
    section = doc.get("sections", {}).get(kind, {})
    rows = [r for r in doc["rows"] if r.get("kind") == kind]
    base = rows[0] if rows else {}
    out: List[Optional[Speedup]] = []
    for r in rows:
        key = next((k for k in SPEEDUP_KEYS if r.get(k) is not None), None)
        if key is None or r is base and r[key] == 1.0 or (
                r[key] == 1.0 and r.get("speedup_range") in ("1.00–1.00", None) and r.get("speedup_min", 1.0) == 1.0
                and r.get("speedup_max", 1.0) == 1.0):
            out.append(None)
            continue
        # a ladder rung is timed over the rung below it, in how the step runs: no config's ceiling
        ceiling = recorded_ceiling(doc, base, r) if key == "speedup" and kind != "speed_ladder" else None
        out.append(Speedup.from_row(r, section_rounds(r, section), ceiling, key=key))
    return out


def _config(row: dict) -> Optional[GPTConfig]:
    try:
        return GPTConfig(**row["config_fields"]) if row.get("config_fields") else None
    except (TypeError, ValueError):
        return None


def recorded_ceiling(doc: dict, base_row: dict, row: dict) -> Optional[float]:
    """The analytic ceiling of a recorded speedup at its own setting (``roofline.speedup_ceiling``
    on the file's ceilings), from the configs the rows carry; None where they carry none."""
    base, var = _config(base_row), _config(row)
    B, T = row.get("batch_size"), row.get("seq_len")
    if base is None or var is None or not isinstance(B, int) or not isinstance(T, int):
        return None
    kind = records.device_kind(doc["meta"].get("device", "cpu"))
    dtype = doc["meta"].get("dtype", "float32")
    return roofline.speedup_ceiling(base, var, B, T, dtype, kind, doc_ceilings(doc))


def _where(doc: dict) -> str:
    name = doc["meta"].get("device_name", doc["meta"].get("device", "?"))
    return f"{name}, {Path(doc['_path']).name}" if doc.get("_path") else name


def measured_payoff(change: Change, goal: str, seq_len: int, docs: Sequence[dict]) -> Optional[Payoff]:
    """The one measurement that stands for ``change`` at ``seq_len``: among the results docs' rows
    of this change within a factor of 2 of T, the one at the nearest setting, then with the most
    rounds (then the first file and section); named with where and at which sizes. None when no
    row qualifies. Speed and decoding payoffs carry their range, rounds and ceiling."""
    found = []
    for d, doc in enumerate(docs):
        for k, (kind, prefix) in enumerate(change.measured_as):
            rows = _find(doc, kind, prefix)
            if not rows or (goal == "decoding") != (kind == "gqa_decode"):
                continue
            section = doc.get("sections", {}).get(kind, {})
            sizes = section.get("sizes") or {}
            first = next(b for b in doc["rows"] if b.get("kind") == kind)  # the section's baseline
            rounds = section_rounds(rows[0], section)
            order = (d, k)
            if goal == "decoding":
                r = min(rows, key=lambda r: abs(r.get("context", 0) - seq_len))
                if r.get("speedup_vs_MHA") is None or not _near(r.get("context"), seq_len):
                    continue
                ceiling = _decode_ceiling(sizes, prefix, r.get("context"), doc["meta"].get("dtype", "float32"))
                sp = Speedup.from_row(r, rounds, ceiling, key="speedup_vs_MHA",
                                      source=f"measured on {_where(doc)}: {kind}, {sizes.get('model', '?')}, "
                                             f"B={sizes.get('B', '?')}, context {r['context']}, "
                                             f"{rounds if rounds is not None else '?'} rounds")
                found.append(((_distance(r.get("context"), seq_len), -(rounds or 0), order),
                              Payoff(change.key, change.title, sp.value, sp.source, True, speedup=sp)))
                continue
            row = rows[0]
            T = row.get("seq_len", sizes.get("T"))
            if not _near(T, seq_len):
                continue
            model = (row.get("config_fields") or {}).get("name", sizes.get("model", "?"))
            named = (f"measured on {_where(doc)}: {kind}, {model}, B={row.get('batch_size', sizes.get('B', '?'))}, "
                     f"T={T}")
            if goal == "speed" and row.get("speedup") is not None:
                # a ladder rung is timed over the rung below it, in how the step runs: the configs'
                # ceiling does not describe it
                ladder = kind == "speed_ladder"
                sp = Speedup.from_row(row, rounds, None if ladder else recorded_ceiling(doc, first, row),
                                      source=f"{named}, {rounds if rounds is not None else '?'} rounds"
                                             + (", over the ladder's rung below" if ladder else ""))
                found.append(((_distance(T, seq_len), -(rounds or 0), order),
                              Payoff(change.key, change.title, sp.value, sp.source, True, speedup=sp)))
            elif goal == "memory" and first.get("peak_mem_MiB") and row.get("peak_mem_MiB"):
                found.append(((_distance(T, seq_len), 0, order),
                              Payoff(change.key, change.title, first["peak_mem_MiB"] / row["peak_mem_MiB"],
                                     f"{named} (peak memory)", True)))
    return min(found, key=lambda f: f[0])[1] if found else None


def _decode_ceiling(sizes: dict, prefix: str, context, dtype: str) -> Optional[float]:
    """``gqa.decode_ceiling`` of a recorded decoding row: MHA against the variant its label names."""
    m = re.search(r"GQA-(\d+)|MQA", prefix)
    try:
        base = get_config(sizes.get("model", "gpt2_small"), block_size=max(1024, int(context)))
    except (ValueError, TypeError):
        return None
    if m is None:
        return None
    var = base.replace(n_kv_head=1 if m.group(1) is None else int(m.group(1)))
    B = sizes.get("B", 1) if isinstance(sizes.get("B", 1), int) else 1
    return decode_ceiling(base, var, B, int(context), dtype)


# recorded training runs (``train --out results/<folder>/...``) that answer the quality questions:
# (label, the variant's history file stem, the baseline's)
RECORDED_QUALITY = (("SwiGLU 8/3x", "train_gpu_swiglu83_adamw", "train_gpu_gelu4_adamw"),
                    ("Muon", "train_gpu_gelu4_muon", "train_gpu_gelu4_adamw"))


def recorded_training_notes(device: Optional[str], directory: Optional[Path] = None) -> List[str]:
    """What recorded training runs on this kind of device (``None``: any device) say about SwiGLU
    and Muon: the variant beside the baseline after the same steps (last and best validation
    loss). One run each: a single seed, so a difference is a reading, not a verdict."""
    d = Path(directory) if directory is not None else records.results_dir()
    out = []
    for folder in sorted(p for p in d.glob("train_*") if p.is_dir()) if d.is_dir() else []:
        for label, var, base in RECORDED_QUALITY:
            try:
                v, b = (TrainHistory.load(folder / f"{name}.json") for name in (var, base))
            except (ValueError, OSError):
                continue
            if (device is not None and records.device_kind(v.device) != device) or v.diverged or b.diverged:
                continue
            out.append(f"{label}: recorded in {folder.name}/ on {v.device_name} ({v.model.get('name')}, "
                       f"B={v.config['batch_size']}, T={v.config['seq_len']}, {len(v.steps)} steps, one seed): "
                       f"validation loss {v.final_val_loss - b.final_val_loss:+.3f} at the last step and "
                       f"{min(v.val_loss) - min(b.val_loss):+.3f} at the best vs the baseline")
    return out


def quality_notes(docs: Sequence[dict], device: Optional[str] = None,
                  directory: Optional[Path] = None) -> List[str]:
    """Quality-only changes (SwiGLU, Muon): the guide suite's quality rows (mean ± sd over seeds,
    with a verdict) where a results file has them, and the recorded training runs on ``device``."""
    out = []
    recorded = recorded_training_notes(device, directory) if device else []
    # a validation loss does not depend on where it was trained: runs on other devices count too
    elsewhere = recorded_training_notes(None, directory) if device else []
    recorded += [n for n in elsewhere if n not in recorded and not any(
        n.split(":")[0] == r.split(":")[0] for r in recorded)]
    for key, prefix in QUALITY_ONLY:
        for doc in docs:
            rows = _find(doc, "quality", prefix)
            if rows and rows[0].get("vs_baseline") is not None:
                r = rows[0]
                sd = f" ± {r['vs_baseline_sd']:.3f}" if r.get("vs_baseline_sd") is not None else ""
                out.append(f"{r['variant']}: validation loss {r['vs_baseline']:+.3f}{sd} vs the baseline "
                           f"over {r.get('seeds', 1)} seed(s), {r.get('verdict') or 'too short to tell'} "
                           f"({_sizes(doc, 'quality')}, {doc['meta'].get('device_name', '?')})")
                break
        else:
            if not any(n.startswith(prefix) for n in recorded):
                out.append(f"{prefix}: no quality run on record for this device (python -m tutorial_lib bench "
                           f"--suite guide); the seed claims it learns faster")
    return out + recorded


def recommend(seq_len: int, device: str = "cpu", goal: str = "speed", batch_size: int = 4,
              window: Optional[int] = None, results: Optional[Sequence[dict]] = None,
              results_dir: Optional[Path] = None) -> Recommendation:
    """The changes worth making for (T, device, goal), best first, with their payoffs."""
    if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
        raise ValueError(f"seq_len={seq_len!r} must be a positive integer")
    if device not in DEVICES:
        raise ValueError(f"device={device!r} is not one of {list(DEVICES)}")
    if goal not in GOALS:
        raise ValueError(f"goal={goal!r} is not one of {list(GOALS)}")
    docs = list(results) if results is not None else records.load_all(results_dir)
    docs = [d for d in docs if records.device_kind(d["meta"].get("device", "")) == device
            and d.get("kind") != "cuda_tests"]  # the CUDA tests' summary measures no step
    # per kind of device: ceilings recorded on any machine of that kind (the payoff is a ratio of
    # two predictions on the same ceilings), else the reference GPU's datasheet
    ceilings = (ceilings_for(REFERENCE_GPU if device == "cuda" else "", _dtype(device), docs, device_type=device,
                             any_of_kind=True) if goal == "speed" else None)
    notes = []
    payoffs = []
    dt = _dtype(device)
    for ch in (c for c in CHANGES if goal in c.goals):
        if ch.key == "window" and (window or max(16, seq_len // 4)) >= seq_len:
            payoffs.append(Payoff(ch.key, ch.title, None, "n/a", False, "a window >= T is full attention"))
            continue
        title = ch.title + (f" (W={window or max(16, seq_len // 4)})" if ch.key == "window" else "")
        m = measured_payoff(ch, goal, seq_len, docs)
        if m is not None:
            m.title = title
            payoffs.append(m)
            continue
        v = analytic_payoff(ch.key, seq_len, device, goal, batch_size, window, ceilings)
        why = not_modelled(ch.key, device, goal)
        ceiling = None
        if goal == "speed" and ch.key not in RUN_CHANGES:  # a run change's ceiling is not a config's
            ceiling = roofline.speedup_ceiling(change_config("baseline", seq_len, device),
                                               change_config(ch.key, seq_len, device, window),
                                               batch_size, seq_len, dt, device, ceilings)
        basis = "analytic: no payoff" if why else analytic_basis(goal, ceilings, device)
        payoffs.append(Payoff(ch.key, title, v, basis, False, why or memory_trade(ch.key, seq_len, batch_size),
                              ceiling=ceiling))
    ranked = sorted(payoffs, key=Payoff.rank_key)
    undecided = [p for p in ranked if p.evidence in (speedups.WITHIN_NOISE, speedups.NO_VERDICT)]
    good = [p for p in ranked if p not in undecided and p.value is not None
            and (p.evidence in (speedups.FASTER, "exact", "predicted")
                 or (p.evidence == speedups.ABOVE_CEILING and speedups.tier(p.evidence, p.speedup.low) == 1))
            and (p.evidence not in ("exact", "predicted") or p.value >= GAIN_THRESHOLD)]
    rest = [p for p in ranked if p not in good and p not in undecided]
    if device == "cpu":
        notes.append("on CPU, flex attention has no backward: train windows with the local kernel")
    if not docs:
        where = "among the results given" if results is not None else (
            f"in {results_dir or records.results_dir()}")
        notes.append(f"no {device} step measurements on record {where}: every payoff here is a prediction "
                     "of the cost model, not a measurement")
    return Recommendation(seq_len, device, goal, good, rest, quality_notes(docs, device, results_dir),
                          seed_tree(seq_len), notes, undecided)


# ---- the figure ---------------------------------------------------------------------------------
def draw_payoffs(ax, rec: Recommendation, title: str = "") -> None:
    """One recommendation on ``ax``, best first from the top: a measured payoff as its median with
    the per-round range as a bar, coloured by its verdict (``speedups.COLOURS``); a prediction as an
    open marker; the analytic ceiling as a tick. The dotted line is no change (1.0)."""
    ps = [p for p in rec.steps + rec.undecided + rec.no_gain if p.value is not None]
    y = list(range(len(ps)))[::-1]
    top = max([1.0] + [p.value for p in ps] + [p.speedup.high for p in ps if p.speedup and p.speedup.high]
              + [c for c in (p.speedup.ceiling if p.speedup else p.ceiling for p in ps) if c])
    for yi, p in zip(y, ps):
        sp = p.speedup
        if sp is not None:
            colour = sp.colour
            if sp.low is not None and sp.high is not None:
                ax.plot([sp.low, sp.high], [yi, yi], color=colour, lw=5, alpha=0.45, solid_capstyle="butt")
            ax.plot(p.value, yi, "o", color=colour, ms=7)
            label = f" {sp.short()} {sp.verdict_words().split(':')[0]}"
        else:
            colour = "#1f77b4" if not p.measured else speedups.COLOURS[speedups.FASTER]
            ax.plot(p.value, yi, "o", mfc="white", mec=colour, ms=7, mew=1.5)
            label = f" {p.value:.2f}× {'measured' if p.measured else 'predicted'}"
        ceiling = sp.ceiling if sp is not None else p.ceiling
        if ceiling:
            ax.plot(ceiling, yi, marker="|", color="black", ms=12, mew=1.5)
        ax.text(max(p.value, sp.high if sp is not None and sp.high else p.value, ceiling or 0), yi, label,
                va="center", fontsize=8)
    ax.axvline(1.0, color="grey", lw=1, ls=":")
    ax.set_yticks(y, [p.title for p in ps], fontsize=8)
    ax.set_ylim(-0.7, len(ps) - 0.3)
    ax.set_xlim(min([0.8] + [p.speedup.low for p in ps if p.speedup and p.speedup.low]) * 0.95, top * 1.6)
    ax.set_xlabel({"speed": "training-step speedup", "memory": "memory reduction",
                   "decoding": "decoding speedup"}[rec.goal] + " vs the seed's baseline (×)", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(title or f"T={rec.seq_len}, {rec.device}, goal: {rec.goal}", fontsize=9, loc="left")


def legend_handles():
    """Legend entries for ``draw_payoffs``: each verdict's colour, a prediction, the ceiling."""
    out = [Line2D([], [], color=speedups.COLOURS[v], marker="o", lw=5, alpha=0.8, label=speedups.LEGEND[v])
           for v in (speedups.FASTER, speedups.ABOVE_CEILING, speedups.WITHIN_NOISE, speedups.NO_VERDICT,
                     speedups.SLOWER)]
    out.append(Line2D([], [], color="#1f77b4", marker="o", mfc="white", lw=0, label="predicted (cost model)"))
    out.append(Line2D([], [], color="black", marker="|", lw=0, ms=10, label="analytic ceiling"))
    return out


def payoff_figure(rec: Recommendation, title: str = ""):
    """``draw_payoffs`` as a figure with its legend under the axes."""
    n = len([p for p in rec.steps + rec.undecided + rec.no_gain if p.value is not None])
    fig = Figure(figsize=(7.5, 0.42 * n + 2.2), layout="constrained")
    ax = fig.subplots()
    draw_payoffs(ax, rec, title)
    fig.legend(handles=legend_handles(), loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return fig


def branches(short_seq: int, long_seq: int, device: str, results=None) -> Dict[str, Recommendation]:
    """The seed's two branches (T < 512, T >= 512) answered for speed at a short and a long T from
    the recorded evidence (``results``: documents; default: every file in results/): the same
    payoffs, from the same single measurement each, as the guide's decision table."""
    kind = device if device in DEVICES else "cpu"
    return {"short": recommend(short_seq, kind, "speed", results=results),
            "long": recommend(long_seq, kind, "speed", results=results)}


def branches_figure(tree: Dict[str, Recommendation], title: str = "") -> Figure:
    """``branches`` side by side (``draw_payoffs``): ranked by evidence, each measured payoff with
    its per-round range in its verdict's colour, predictions open, ceilings ticked."""
    n = max(len([p for p in r.steps + r.undecided + r.no_gain if p.value is not None]) for r in tree.values())
    fig = Figure(figsize=(11, 0.42 * n + 2.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, rec in zip(axes, tree.values()):
        seed = "T < 512" if rec.seq_len < 512 else "T ≥ 512"
        draw_payoffs(ax, rec, f"the seed's {seed} branch: T={rec.seq_len}, {rec.device}")
    fig.legend(handles=legend_handles(), loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
