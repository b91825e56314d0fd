"""The roofline: why time is not FLOPs -- a training step's time predicted from its kernels.

A kernel cannot run faster than the machine's arithmetic allows, nor faster than its memory can
feed it: its time is at least ``max(FLOPs / peak FLOP/s, bytes / bandwidth)`` (Williams, Waterman
and Patterson, "Roofline", CACM 2009). Its *arithmetic intensity* FLOPs / bytes says which roof
it sits under: below the ridge point peak / bandwidth it is memory-bound, above it compute-bound.
Eager PyTorch adds a fixed cost per operator (Python, the dispatcher, a kernel launch), and on a
CPU a kernel that writes memory the OS has not mapped yet pays page faults, so

    predicted time = sum over kernels of  max(FLOPs / peak, bytes / bandwidth) + first touch + overhead

The kernels come from the one analytic model (``measure.cost.step_kernels``), the four numbers from
the machine's ceilings (``measure.ceilings``). A kernel is labelled by the larger of its compute and
its memory time (``cost.Kernel.bound``); first touch and overhead are shown as terms of their own.

- ``predict_step``: every kernel's time, summed per component, beside the FLOP-only prediction
  (all matmul FLOPs at the peak, nothing else).
- ``check_steps``: whole steps predicted and measured **in the same rounds**: each round times the
  ceilings' probes and the steps in turn, predicts each step from that round's ceilings, and the
  error is the median of the per-round errors with their min–max -- never a prediction from one
  minute divided by a measurement from another (this machine's speed drifts that much).
- ``roofline_points``: one point per (component, phase) on the roofline, measured time beside the
  prediction; ``inferred_overhead``: the per-operator cost a measurement implies.
- ``speedup_ceiling`` / ``attention_core_ceiling``: the most a change can speed a step (or the
  attention core alone) up by its analytic cost -- the ceiling every printed speedup is judged
  against (``tutorial_lib.speedups``).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from tutorial_lib import settings
from tutorial_lib.measure import ceilings as ceil
from tutorial_lib.measure.ceilings import Ceilings
from tutorial_lib.measure.cost import Component, Kernel, attention_core_kernels, step_kernels
from tutorial_lib.measure.timing import SWEEP_ERRORS, error_text, prepare_step, progress_bar, time_rounds
from tutorial_lib.model import GPTConfig


# ---- a kernel's time on a machine --------------------------------------------------------------
def compute_seconds(k: Kernel, c: Ceilings) -> float:
    """Its matmul FLOPs at the rate a matmul of its shape reaches (``Ceilings.matmul_rate``)."""
    return k.flops / c.matmul_rate(k.shape) if k.flops else 0.0


def memory_seconds(k: Kernel, c: Ceilings) -> float:
    return (k.read + k.write) / c.bandwidth


def roof_seconds(k: Kernel, c: Ceilings) -> float:
    """One launch's time under the roofs of ``c``: the longer of its compute and its memory time
    (a kernel overlaps the two), without first touch or per-operator overhead."""
    return max(compute_seconds(k, c), memory_seconds(k, c))


def kernel_bound(k: Kernel, c: Ceilings) -> str:
    """"compute" or "memory": whichever of the two roofs takes longer (first touch and the
    per-operator overhead are terms of their own, never a tiebreaker)."""
    return "compute" if k.flops and compute_seconds(k, c) >= memory_seconds(k, c) else "memory"


def fault_seconds(k: Kernel, c: Ceilings) -> float:
    """One launch's extra time for page faults: its fresh bytes at ``Ceilings.fault_s_per_byte``."""
    return k.fresh_bytes(c.fresh_alloc_bytes) * c.fault_s_per_byte


def kernel_seconds(k: Kernel, c: Ceilings) -> float:
    """A kernel's launches on ``c``: on a CPU each runs after its operator's overhead; on a GPU the
    CPU queues launches ahead of the kernels, so a launch costs the longer of the two."""
    t = roof_seconds(k, c) + fault_seconds(k, c)
    return k.count * (max(t, c.overhead_s) if c.async_launch else t + c.overhead_s)


def parts(comp: Component, c: Ceilings) -> Dict[str, float]:
    """A component's predicted seconds split four ways: "compute" (kernels under the FLOP roof),
    "memory" (under the bandwidth roof), "first touch" (page faults) and "overhead" (per operator;
    on a GPU only where a launch takes longer than its kernel)."""
    out = {"compute": 0.0, "memory": 0.0, "first touch": 0.0, "overhead": 0.0}
    for k in comp.kernels:
        roof, fault = roof_seconds(k, c), fault_seconds(k, c)
        if c.async_launch and c.overhead_s > roof + fault:
            out["overhead"] += k.count * c.overhead_s
            continue
        out[kernel_bound(k, c)] += k.count * roof
        out["first touch"] += k.count * fault
        if not c.async_launch:
            out["overhead"] += k.count * c.overhead_s
    return out


def bound(comp: Component, c: Ceilings) -> str:
    """What most of a component's predicted time is: "compute", "memory" or "overhead" (first
    touch is shown beside it, ``parts``, and never decides the label)."""
    p = parts(comp, c)
    p.pop("first touch")
    return max(p, key=p.get)


def component_seconds(comp: Component, c: Ceilings) -> float:
    return sum(kernel_seconds(k, c) for k in comp.kernels)


# ---- predictions --------------------------------------------------------------------------------
@dataclass
class StepPrediction:
    """A training step's predicted time from the roofline model, and the FLOP-only prediction."""
    label: str
    ceilings: Ceilings
    ms: Dict[Tuple[str, str], float]  # (scope, phase) -> predicted ms
    flop_only_ms: float  # every matmul FLOP at the peak, nothing else
    kernels: int
    bytes: int
    flops: int
    roof_ms: float = 0.0  # the same kernels under the roofs alone: no first touch, no overhead
    first_touch_ms: float = 0.0  # the page faults' share of the prediction (CPU)
    rows: List[Component] = field(default_factory=list, repr=False)  # the cost model's components

    @property
    def total_ms(self) -> float:
        return sum(self.ms.values())

    def phase_ms(self, phase: str) -> float:
        return sum(v for (s, p), v in self.ms.items() if p == phase)

    def scope_ms(self) -> Dict[str, float]:
        out: Dict[str, float] = {}
        for (s, _), v in self.ms.items():
            out[s] = out.get(s, 0.0) + v
        return out

    def overhead_ms(self) -> float:
        """Per-operator overhead in the prediction (on a GPU, only where it exceeds the kernel)."""
        return self.total_ms - self.roof_ms - self.first_touch_ms


def predict_step(config: GPTConfig, batch_size: int, seq_len: int, ceilings: Ceilings, dtype=None,
                 optimizer: bool = True, grad_clip: bool = False, device_type: Optional[str] = None,
                 adamw: str = "auto", grad_accum: int = 1) -> StepPrediction:
    """Predicted time of one training step (forward + loss, backward, AdamW in implementation
    ``adamw``) on ``ceilings``. A TF32 step is a float32 step on ceilings measured with TF32;
    ``grad_accum``: the batch in that many micro-batches (``accumulate.accumulate_gradients``)."""
    dtype = dtype or ceilings.dtype
    if dtype == "tf32":
        dtype = "float32"
    dev = device_type or str(ceilings.device).split(":")[0]
    rows = step_kernels(config, batch_size, seq_len, dtype, dev, optimizer, grad_clip, adamw, grad_accum=grad_accum)
    ms = {(r.scope, r.phase): component_seconds(r, ceilings) * 1e3 for r in rows}
    fl = sum(r.flops for r in rows)
    split = [parts(r, ceilings) for r in rows]
    micro = f" in {grad_accum} micro-batches" if grad_accum > 1 else ""
    return StepPrediction(label=f"{config.name}, B={batch_size}{micro}, T={seq_len}, {settings.dtype_name(dtype)}",
                          ceilings=ceilings, ms=ms, flop_only_ms=fl / ceilings.peak_flops * 1e3,
                          kernels=sum(r.n_kernels for r in rows), bytes=sum(r.bytes for r in rows), flops=fl,
                          roof_ms=sum(p["compute"] + p["memory"] for p in split) * 1e3,
                          first_touch_ms=sum(p["first touch"] for p in split) * 1e3, rows=rows)


def speedup_ceiling(base: GPTConfig, variant: GPTConfig, batch_size: int, seq_len: int, dtype="float32",
                    device_type: str = "cpu", ceilings: Optional[Ceilings] = None) -> float:
    """The most ``variant`` can speed up a training step of ``base`` by the cost model: the largest
    of the ratios base / variant of the step's matmul FLOPs, its bytes moved and its kernel
    launches, and on ``ceilings`` of the roofline's predicted times (which weigh in the CPU's
    first-touch page faults as well).

    A step's time is roughly a sum of those terms; a sum shrinks by no more than its most-shrunk
    term (the mediant inequality), so a measured speedup above this is noise, or a different kernel
    ran than the one the cost model describes -- not a gain the change can deliver."""
    rows = [step_kernels(c, batch_size, seq_len, dtype, device_type) for c in (base, variant)]
    totals = [(sum(r.flops for r in rs), sum(r.bytes for r in rs), sum(r.n_kernels for r in rs)) for rs in rows]
    ratios = [b / v for b, v in zip(*totals) if b and v]
    if ceilings is not None:
        t = [predict_step(c, batch_size, seq_len, ceilings, dtype=dtype, device_type=device_type).total_ms
             for c in (base, variant)]
        ratios.append(t[0] / t[1])
    return max(ratios)


def attention_core_ceiling(base: GPTConfig, variant: GPTConfig, batch_size: int, seq_len: int,
                           dtype="float32", device_type: str = "cpu", backward: bool = True) -> float:
    """``speedup_ceiling`` of the attention core alone (``cost.attention_core_kernels``: forward, and
    backward unless ``backward`` is False): the largest of the ratios of its FLOPs, bytes and
    launches, base / variant -- the most one attention implementation can gain over another."""
    totals = []
    for c in (base, variant):
        fwd, bwd, _ = attention_core_kernels(c, batch_size, seq_len, settings.dtype_bytes(dtype), device_type)
        ks = fwd + (bwd if backward else [])
        totals.append((sum(k.count * k.flops for k in ks), sum(k.count * (k.read + k.write) for k in ks),
                       sum(k.count for k in ks)))
    return max(b / v for b, v in zip(*totals) if b and v)


def inferred_overhead(prediction: StepPrediction, measured_ms: float, phases=None) -> Optional[float]:
    """The per-operator overhead (seconds) that would make ``prediction`` match ``measured_ms``
    (over ``phases``, default all): what the roofs leave unexplained, spread over the launches.
    None when the roofs alone already predict more than was measured. An inference, not a
    measurement: say so wherever it is shown."""
    c = prediction.ceilings
    ks = [k for r in prediction.rows if phases is None or r.phase in phases for k in r.kernels]

    def busy(k) -> float:  # one launch's time under the roofs, page faults included
        return roof_seconds(k, c) + fault_seconds(k, c)
    if sum(k.count * busy(k) for k in ks) * 1e3 >= measured_ms:
        return None
    launches = max(1, sum(k.count for k in ks))
    lo, hi = 0.0, measured_ms / 1e3 / launches
    if not c.async_launch:
        return hi - sum(k.count * busy(k) for k in ks) / launches
    for _ in range(60):  # on a GPU the time is sum(max(roof, o)): monotone in o, bisect
        mid = (lo + hi) / 2
        t = sum(k.count * max(busy(k), mid) for k in ks) * 1e3
        lo, hi = (mid, hi) if t < measured_ms else (lo, mid)
    return (lo + hi) / 2


def roofline_points(rows: List[Component], measured_ms: Dict[Tuple[str, str], float],
                    ceilings: Ceilings, min_ms: float = 0.0) -> List[dict]:
    """One point per (scope, phase) that has FLOPs and a measured time: arithmetic intensity (x),
    achieved FLOP/s (y), the attainable roof at that intensity, and the predicted time beside the
    measured one. FLOPs are ``Component.roofline_flops``: matmul FLOPs, or the elementwise
    estimate where there are none, so memory-bound components (norms, the loss) have a place too."""
    out = []
    for r in rows:
        ms = measured_ms.get((r.scope, r.phase))
        fl = r.roofline_flops
        if not ms or ms <= min_ms or not fl or not r.bytes:
            continue
        x = fl / r.bytes
        out.append({"scope": r.scope, "phase": r.phase, "intensity": x, "achieved_flops": fl / (ms / 1e3),
                    "roof_flops": min(ceilings.peak_flops, x * ceilings.bandwidth),
                    "measured_ms": ms, "predicted_ms": component_seconds(r, ceilings) * 1e3,
                    "first_touch_ms": parts(r, ceilings)["first touch"] * 1e3,
                    "bound": bound(r, ceilings), "flops": fl, "bytes": r.bytes, "kernels": r.n_kernels,
                    "exact": r.exact})
    return out


# ---- predicted and measured in the same rounds -------------------------------------------------
def error(predicted: Optional[float], measured: Optional[float]) -> Optional[float]:
    """predicted / measured - 1 (+0.2 = the prediction is 20 % too slow); None without both."""
    return None if not predicted or not measured else predicted / measured - 1


def median_range(values: Sequence[float]) -> Tuple[Optional[float], Optional[float], Optional[float]]:
    """(median, min, max) of per-round values; (None, None, None) for none."""
    vs = [v for v in values if v is not None]
    return (statistics.median(vs), min(vs), max(vs)) if vs else (None, None, None)


@dataclass(frozen=True)
class StepCheck:
    """One step to predict and measure: its config, sizes and label (``model``: an already built
    model of ``config`` to time, so that a caller that also profiles it builds it once;
    ``grad_accum``: the batch of ``batch_size`` sequences in that many micro-batches)."""
    label: str
    config: GPTConfig
    batch_size: int
    seq_len: int
    model: Optional[object] = field(default=None, compare=False, repr=False)
    adamw: str = "auto"  # how the step runs (runtime.StepSettings): AdamW's kernels, which the model
    compile: Optional[str] = None  # knows, and a torch.compile mode, which it does not (eager kernels)
    grad_accum: int = 1


def check_steps(checks: Sequence[StepCheck], probes: Sequence[ceil.Probe], device=None, dtype=None,
                rounds: int = 3, min_run_time: Optional[float] = None, progress: bool = True) -> dict:
    """Training steps (fwd + bwd + AdamW) predicted and measured in the same rounds.

    Each round times every probe of the machine's ceilings and every step once, in turn
    (``timing.time_rounds``: load that comes and goes meets them alike). Each step is predicted
    from *that round's* ceilings (``ceilings.from_round``), so every per-round error compares a
    prediction and a measurement of the same minute. Returns {"rows": one per check -- measured
    and predicted ms (medians), ``roofline_error`` and ``flop_only_error`` (medians of the
    per-round errors) with ``*_min`` / ``*_max``, the kernels and the prediction's parts, and each
    round's measured and predicted ms (``measured_rounds_ms``, ``roofline_rounds_ms``: ratios
    between two steps come from these, round by round) -- or an error row; "ceilings": the rounds'
    ceilings combined (``ceilings.combine``)}."""
    dev, dt = settings.resolve(device, dtype)
    steps, rows = {}, {}
    for c in checks:
        rows[c.label] = {"model": c.config.name, "variant": c.label, "config": c.config.describe(),
                         "config_fields": c.config.to_dict(), "B": c.batch_size, "T": c.seq_len,
                         "grad_accum": c.grad_accum, "dtype": settings.dtype_name(dt), "rounds": 0, "error": None}
        try:
            steps[c.label] = prepare_step(c.config, c.batch_size, c.seq_len, "train", dev, dt, c.compile,
                                          model=c.model, adamw=c.adamw, grad_accum=c.grad_accum)[1]
        except SWEEP_ERRORS as e:
            rows[c.label]["error"] = error_text(e)
    runs = {**{p.label: p.run for p in probes}, **steps}
    bar = progress_bar(rounds * len(runs), "rounds", progress)
    times, failed = time_rounds(runs, dev, rounds, min_run_time, max_rounds=rounds, bar=bar)
    if bar is not None:
        bar.close()
    lost = [p.label for p in probes if p.label in failed]
    if lost:
        raise RuntimeError(f"ceilings: probe(s) failed: {'; '.join(f'{k}: {failed[k]}' for k in lost)}")
    per_round = [ceil.from_round(probes, {p.label: times[p.label][i] for p in probes}, dev, dt)
                 for i in range(rounds)]
    for c in checks:
        row = rows[c.label]
        if c.label in failed:
            row["error"] = failed[c.label]
        if row["error"]:
            continue
        preds = [predict_step(c.config, c.batch_size, c.seq_len, cr, dtype=settings.dtype_name(dt),
                              device_type=dev.type, adamw=c.adamw, grad_accum=c.grad_accum) for cr in per_round]
        measured = times[c.label]
        roof = median_range([error(p.total_ms, m) for p, m in zip(preds, measured)])
        flop = median_range([error(p.flop_only_ms, m) for p, m in zip(preds, measured)])
        mid = preds[len(preds) // 2]
        row.update(rounds=len(measured), measured_ms=statistics.median(measured),
                   measured_ms_min=min(measured), measured_ms_max=max(measured),
                   roofline_ms=statistics.median(p.total_ms for p in preds),
                   flop_only_ms=statistics.median(p.flop_only_ms for p in preds),
                   roofline_error=roof[0], roofline_error_min=roof[1], roofline_error_max=roof[2],
                   flop_only_error=flop[0], flop_only_error_min=flop[1], flop_only_error_max=flop[2],
                   kernels=mid.kernels, first_touch_ms=statistics.median(p.first_touch_ms for p in preds),
                   overhead_ms=statistics.median(p.overhead_ms() for p in preds),
                   measured_rounds_ms=list(measured), roofline_rounds_ms=[p.total_ms for p in preds])
    return {"rows": list(rows.values()), "ceilings": ceil.combine(per_round)}
