"""The seed's decision tree, recomputed: what to change first for a sequence length, device and goal.

``recommend(seq_len, device, goal)`` scores each change against the seed's baseline (GPT-2 small:
MHA, GELU 4x, eager attention) and orders them by payoff:

- ``speed``: training-step speedup; ``memory``: training-memory reduction; ``decoding``:
  KV-cache decoding speedup (tokens/s). Every payoff is base / variant (> 1 = better).
  Activation checkpointing and gradient accumulation (notebook 12) serve the memory goal only:
  they trade time for memory, and their note says how much.
- *measured* when a results file (``results/*.json`` from ``python -m tutorial_lib bench
  --suite guide``) was recorded on this kind of device and holds that change -- stamped with where
  and at which sizes, which need not be your sequence length;
- else *analytic*, and labelled so: speed = the roofline model's step-time ratio
  (``measure.roofline.predict_step``: FLOPs, bytes and kernel launches against the ceilings of
  that kind of device -- measured ones from a results file, else for a GPU the datasheet of the
  GPU on record, ``REFERENCE_GPU``; a CPU without recorded ceilings falls back to the FLOP ratio,
  labelled so), memory = ``explore.predict_memory``, decoding = bytes read per new token (all
  weights + the KV cache at context T; a window caps the cache at W), the memory-bound assumption.

The seed's own answer (``claims`` keys ``tree.*``) is returned beside ours.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from tutorial_lib import claims
from tutorial_lib.lessons import explorer as explore
from tutorial_lib.lessons import lm_head
from tutorial_lib.lessons.gqa import decode_bytes_per_token
from tutorial_lib.measure import cost, records, roofline
from tutorial_lib.measure.ceilings import Ceilings, ceilings_for
from tutorial_lib.model import get_config
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
    # the memory budget (notebook 12): trade time for memory; never a speed-up
    Change("checkpoint", "Activation checkpointing (every block)", "(not in the seed's tree)", goals=("memory",)),
    Change("accumulate", f"Gradient accumulation ({ACCUMULATION} micro-batches)", "(not in the seed's tree)",
           goals=("memory",)),
)
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
    if key == "checkpoint":
        return base.replace(checkpoint="block")
    if key == "accumulate":  # the same model; the step runs in micro-batches (``accumulation``)
        return base
    if key == "window":
        W = window or max(16, seq_len // 4)
        # CPU trains windows with the local O(T*W) kernel; CUDA with flex's block-sparse mask
        return base.replace(window=W, attn_backend="local" if device == "cpu" else "flex")
    raise ValueError(f"change={key!r} is not one of {[c.key for c in CHANGES]}")


@dataclass
class Payoff:
    key: str
    title: str
    value: Optional[float]  # base / variant, > 1 = better; None: not applicable here
    source: str  # "measured on ... (sizes)" or "analytic (...)"
    measured: bool
    note: str = ""

    def describe(self, goal: str) -> str:
        what = {"speed": "faster step", "memory": "less training memory",
                "decoding": "faster decoding"}[goal]
        v = "n/a" if self.value is None else f"{self.value:.2f}x {what}"
        return f"{self.title}: {v} [{self.source}]" + (f" -- {self.note}" if self.note else "")


@dataclass
class Recommendation:
    seq_len: int
    device: str
    goal: str
    steps: List[Payoff]  # recommended, best first
    no_gain: List[Payoff]  # payoff below GAIN_THRESHOLD (or n/a)
    quality: List[str]  # quality-only changes (SwiGLU, Muon): measured val-loss deltas if any
    seed: List[str]  # the seed's tree for this T
    notes: List[str] = field(default_factory=list)

    def lines(self) -> List[str]:
        out = [f"T={self.seq_len}, device={self.device}, goal={self.goal}:"]
        out += [f"  {i}. {p.describe(self.goal)}" for i, p in enumerate(self.steps, 1)]
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
                    window: Optional[int] = None, ceilings: Optional[Ceilings] = None) -> float:
    """base / variant for ``goal`` from the analytic model (see the module docstring); speed uses
    the roofline model on ``ceilings``, or the FLOP ratio without them."""
    base = change_config("baseline", seq_len, device)
    var = change_config(key, seq_len, device, window)
    dt = _dtype(device)
    if goal == "speed" and ceilings is not None:
        w = [roofline.predict_step(c, batch_size, seq_len, ceilings, dtype=dt, device_type=device).total_ms
             for c in (base, var)]
    elif goal == "speed":
        w = [explore.model_work(explore.scope_work(c, batch_size, seq_len, device)) for c in (base, var)]
    elif goal == "memory":
        k = ACCUMULATION if key == "accumulate" and batch_size % ACCUMULATION == 0 else 1
        w = [explore.predict_memory(c, batch_size, seq_len, dt, g)["total"] for c, g in ((base, 1), (var, k))]
    elif goal == "decoding":
        w = [decode_bytes_per_token(c, seq_len, dt) for c in (base, var)]
    else:
        raise ValueError(f"goal={goal!r} is not one of {list(GOALS)}")
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


def measured_payoff(change: Change, goal: str, seq_len: int, docs: Sequence[dict]):
    """(value, source) from the newest results doc that has this change for this goal, measured
    within a factor of 2 of ``seq_len``; None when there is none."""
    for doc in docs:
        where = doc["meta"].get("device_name", doc["meta"].get("device", "?"))
        for kind, prefix in change.measured_as:
            rows = _find(doc, kind, prefix)
            if not rows:
                continue
            first = next(b for b in doc["rows"] if b.get("kind") == kind)  # the section's baseline
            T = (doc.get("sections", {}).get(kind, {}).get("sizes") or {}).get("T")
            if goal == "speed" and kind != "gqa_decode" and _near(T, seq_len) and rows[0].get("speedup"):
                return rows[0]["speedup"], f"measured on {where} ({kind}: {_sizes(doc, kind)})"
            if (goal == "memory" and kind != "gqa_decode" and _near(T, seq_len)
                    and first.get("peak_mem_MiB") and rows[0].get("peak_mem_MiB")):
                return (first["peak_mem_MiB"] / rows[0]["peak_mem_MiB"],
                        f"measured peak on {where} ({kind}: {_sizes(doc, kind)})")
            if goal == "decoding" and kind == "gqa_decode":
                r = min(rows, key=lambda r: abs(r.get("context", 0) - seq_len))
                if r.get("speedup_vs_MHA") and _near(r.get("context"), seq_len):
                    return (r["speedup_vs_MHA"],
                            f"measured on {where} at context {r['context']} ({_sizes(doc, kind)})")
    return None


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
    for ch in (c for c in CHANGES if goal in c.goals):
        if ch.key == "window" and (window or max(16, seq_len // 4)) >= seq_len:
            payoffs.append(Payoff(ch.key, ch.title, None, "n/a", False, "a window >= T is full attention"))
            continue
        title = ch.title + (f" (W={window or max(16, seq_len // 4)})" if ch.key == "window" else "")
        m = measured_payoff(ch, goal, seq_len, docs)
        if m is not None:
            payoffs.append(Payoff(ch.key, title, float(m[0]), m[1], True))
        else:
            v = analytic_payoff(ch.key, seq_len, device, goal, batch_size, window, ceilings)
            payoffs.append(Payoff(ch.key, title, v, analytic_basis(goal, ceilings, device), False,
                                  memory_trade(ch.key, seq_len, batch_size)))
    good = sorted((p for p in payoffs if p.value is not None and p.value >= GAIN_THRESHOLD),
                  key=lambda p: -p.value)
    rest = [p for p in payoffs if p not in good]
    if device == "cpu":
        notes.append("on CPU, flex attention has no backward: train windows with the local kernel")
    if not docs:
        where = "among the results given" if results is not None else (
            f"in {results_dir or records.results_dir()}")
        notes.append(f"no {device} step measurements on record {where}: every payoff here is a prediction "
                     "of the cost model, not a measurement")
    return Recommendation(seq_len, device, goal, good, rest, quality_notes(docs, device, results_dir),
                          seed_tree(seq_len), notes)
