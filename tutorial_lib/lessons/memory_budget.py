"""The memory-budget lesson (12): activation checkpointing, gradient accumulation, and the fastest
plan that fits a memory budget.

Sizes: ``sizes.MemoryBudget``. The implementations are the model's (``GPTConfig.checkpoint``,
``model.recompute``: ``torch.utils.checkpoint``) and ``accumulate.accumulate_gradients``; every
prediction is the one cost model's: the bytes kept for backward (``measure.cost.activation_bytes``),
the kernels run again (``measure.cost.step_kernels``) and so the time (``measure.roofline``), and the
allocator's peak (``measure.peak``). This module measures them, and plans with them.

- ``POLICIES`` / ``policy_config``: what a block recomputes in backward, as config changes.
- ``saved_rows``: per policy, the bytes kept for backward, predicted and measured exactly.
- ``step_rows``: training steps (per policy, or per micro-batch size) predicted and measured in the
  same rounds as the ceilings' probes (``measure.roofline.check_steps``); the recompute's cost as
  the per-round ratio to the step without it, measured beside predicted.
- ``peak_rows``: the allocator's peak of each step, predicted beside measured.
- ``gradient_difference``: accumulated micro-batches against the whole batch (float64).
- ``Plan`` / ``Planner``: every combination of micro-batch, checkpointing, loss, attention backend
  and dtype for a number of tokens per step, predicted once; ``Planner.choose(budget)`` is the
  fastest that fits, ``budget_checks`` measures the choices.
- ``policy_figure``, ``micro_batch_figure``, ``plan_figure``: the pictures.
- ``check_accumulation``: the exercise's checker.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from matplotlib.figure import Figure

from tutorial_lib import attention, settings, speedups
from tutorial_lib.accumulate import accumulate_gradients
from tutorial_lib.lessons.common import CheckResult, call_checked
from tutorial_lib.loss import LOSS_IMPLS
from tutorial_lib.measure import ceilings as ceil
from tutorial_lib.measure import cost, roofline
from tutorial_lib.measure.ceilings import Ceilings
from tutorial_lib.measure.memory import fmt_bytes, memory_breakdown
from tutorial_lib.measure.peak import MOMENTS, StepPeak, measured_step_peak, step_peak
from tutorial_lib.measure.roofline import StepCheck, median_range
from tutorial_lib.measure.timing import SWEEP_ERRORS, error_text, free_memory
from tutorial_lib.model import GPT, GPTConfig, get_config
from tutorial_lib.sizes import MemoryBudget
from tutorial_lib.speedups import Speedup

MiB, GiB = 2**20, 2**30
# what each block recomputes in backward, as GPTConfig changes; "block every 2": half the blocks
POLICIES = {"none": {"checkpoint": "none"}, "attention": {"checkpoint": "attention"},
            "mlp": {"checkpoint": "mlp"}, "block": {"checkpoint": "block"},
            "block every 2": {"checkpoint": "block", "checkpoint_every": 2}}
TIME_GOAL = 0.25  # the goals: predicted step time within 25 %, predicted peak within 10 %
PEAK_GOAL = 0.10


def mib(n: Optional[float]) -> Optional[float]:
    return None if n is None else n / MiB


def policy_config(config: GPTConfig, policy: str) -> GPTConfig:
    """``config`` with the checkpointing ``policy`` (a key of ``POLICIES``)."""
    if policy not in POLICIES:
        raise ValueError(f"policy={policy!r} is not one of {list(POLICIES)}")
    return config.replace(**{"checkpoint_every": 1, **POLICIES[policy]})


# ---- what is kept, and what runs again ---------------------------------------------------------------
def saved_rows(config: GPTConfig, batch_size: int, seq_len: int, policies: Sequence[str] = tuple(POLICIES),
               device="cpu", dtype=None) -> List[dict]:
    """Per policy: the bytes kept for backward, predicted (``cost.activation_bytes``) and measured
    (``measure.memory.memory_breakdown``: every tensor the saved-tensor hooks see, once), and the
    forward FLOPs backward runs again (``cost.flops_by_scope``, as the kernels compute them)."""
    dev, dt = settings.resolve(device, dtype)
    name = settings.dtype_name(dt)
    plain = sum(cost.flops_by_scope(config.replace(checkpoint="none"), batch_size, seq_len, "backward").values())
    rows = []
    for p in policies:
        cfg = policy_config(config, p)
        predicted = cost.activation_bytes(cfg, batch_size, seq_len, name)
        mb = memory_breakdown(cfg, batch_size, seq_len, device=dev, dtype=dt)
        again = sum(cost.flops_by_scope(cfg, batch_size, seq_len, "backward").values()) - plain
        rows.append({"policy": p, "predicted_bytes": sum(predicted.values()), "measured_bytes": mb.activations_bytes,
                     "exact": predicted == mb.activations_by_component, "residual_bytes": predicted.get("residual", 0),
                     "recompute_gflop": again / 1e9, "batch_size": batch_size, "seq_len": seq_len, "dtype": name,
                     "device_name": mb.device_name})
        free_memory(dev)
    return rows


def step_rows(checks: Sequence[StepCheck], probes: Sequence[ceil.Probe], device=None, dtype=None, rounds: int = 3,
              min_run_time: Optional[float] = None, baseline: Optional[str] = None) -> dict:
    """Training steps predicted and measured in the same rounds as the ceilings' ``probes``
    (``roofline.check_steps``), each row with tokens per second (measured, predicted) and -- against
    ``baseline`` (a check's label, default the first) -- the per-round ratio of the step's time to
    the baseline's, measured and predicted: median with min–max. Returns {"rows", "ceilings"}."""
    res = roofline.check_steps(checks, probes, device, dtype, rounds, min_run_time, progress=False)
    rows = {r["variant"]: r for r in res["rows"]}
    base = rows.get(baseline or checks[0].label, {})
    for c in checks:
        r = rows[c.label]
        r.update(policy=c.config.checkpoint if c.config.checkpoint_every == 1 else
                 f"{c.config.checkpoint} every {c.config.checkpoint_every}", micro_batch=c.batch_size // c.grad_accum)
        if r.get("error") or base.get("error") or "measured_rounds_ms" not in base:
            continue
        tokens = c.batch_size * c.seq_len
        r["tokens_per_s"] = tokens / (r["measured_ms"] / 1e3)
        r["predicted_tokens_per_s"] = tokens / (r["roofline_ms"] / 1e3)
        for key, series in (("measured", "measured_rounds_ms"), ("predicted", "roofline_rounds_ms")):
            ratio = median_range([a / b for a, b in zip(r[series], base[series])])
            r[f"{key}_ratio"], r[f"{key}_ratio_min"], r[f"{key}_ratio_max"] = ratio
    return {"rows": [rows[c.label] for c in checks], "ceilings": res["ceilings"]}


def peak_rows(steps: Sequence[Tuple[str, GPTConfig, int, int, int]], device=None, dtype=None) -> List[dict]:
    """Per (label, config, batch_size, seq_len, grad_accum): the step's peak memory predicted
    (``measure.peak.step_peak``) and measured (``measure.peak.measured_step_peak``); a step that
    fails (out of memory) is an error row."""
    dev, dt = settings.resolve(device, dtype)
    rows = []
    for label, cfg, B, T, k in steps:
        p = step_peak(cfg, B, T, settings.dtype_name(dt), k, dev.type)
        row = {"variant": label, "predicted_peak_bytes": p.peak_bytes, "at": p.at, "measured_peak_bytes": None,
               "peak_error": None, "error": None}
        try:
            m = measured_step_peak(cfg, B, T, dt, k, dev)
            row.update(measured_peak_bytes=m["peak_bytes"], peak_error=p.peak_bytes / m["peak_bytes"] - 1,
                       source=m["source"])
        except SWEEP_ERRORS as e:
            row["error"] = error_text(e)
        free_memory(dev)
        rows.append(row)
    return rows


# ---- gradient accumulation -------------------------------------------------------------------------
def gradient_difference(config: GPTConfig, batch_size: int, seq_len: int, grad_accum: int,
                        accumulate: Callable = accumulate_gradients, seed: int = 0) -> float:
    """The largest |difference| between the gradients of the whole batch in one pass and the same
    batch in ``grad_accum`` micro-batches (``accumulate(model, x, y, grad_accum)``), in float64:
    0 up to rounding when the accumulation is right."""
    torch.manual_seed(seed)
    model = GPT(config).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, config.vocab_size, (batch_size, seq_len), generator=g)
    y = torch.randint(0, config.vocab_size, (batch_size, seq_len), generator=g)
    model.zero_grad(set_to_none=True)
    model(x, y)[1].backward()
    whole = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    accumulate(model, x, y, grad_accum)
    return max((a - (p.grad if p.grad is not None else torch.zeros_like(a))).abs().max().item()
               for a, p in zip(whole, model.parameters()))


# ---- plans ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)  # a plan is itself: the planner makes each once
class Plan:
    """One way to train ``batch_size`` sequences of ``seq_len`` per optimizer step: the model's
    settings (checkpointing, loss, attention backend), the micro-batches and the dtype, with their
    predicted step time (``roofline.predict_step``) and peak memory (``measure.peak.step_peak``)."""
    config: GPTConfig
    batch_size: int
    seq_len: int
    grad_accum: int
    dtype: str
    step_ms: float
    peak: StepPeak

    @property
    def micro_batch(self) -> int:
        return self.batch_size // self.grad_accum

    @property
    def policy(self) -> str:
        c = self.config
        return c.checkpoint if c.checkpoint_every == 1 or c.checkpoint == "none" else \
            f"{c.checkpoint} every {c.checkpoint_every}"

    @property
    def tokens_per_s(self) -> float:
        return self.batch_size * self.seq_len / (self.step_ms / 1e3)

    @property
    def peak_bytes(self) -> int:
        return self.peak.peak_bytes

    def describe(self) -> str:
        acc = f"{self.grad_accum} micro-batches of {self.micro_batch}" if self.grad_accum > 1 else \
            f"one batch of {self.batch_size}"
        return (f"{acc}, checkpoint {self.policy}, {self.config.loss_impl} loss, {self.config.attn_backend}, "
                f"{self.dtype}")

    def check(self, label: Optional[str] = None) -> StepCheck:
        """The plan as a step to measure (``roofline.check_steps``)."""
        return StepCheck(label or self.describe(), self.config, self.batch_size, self.seq_len,
                         grad_accum=self.grad_accum)

    def row(self) -> dict:
        return {"plan": self.describe(), "micro_batch": self.micro_batch, "grad_accum": self.grad_accum,
                "checkpoint": self.policy, "loss_impl": self.config.loss_impl,
                "attn_backend": self.config.attn_backend, "dtype": self.dtype, "predicted_ms": self.step_ms,
                "predicted_tokens_per_s": self.tokens_per_s, "predicted_peak_bytes": self.peak_bytes,
                "peak_at": self.peak.at}


def plannable_backends(device_type: str = "cpu") -> List[str]:
    """Attention backends a plan may use: trainable on this kind of device without a window, and
    costed exactly by the cost model (their flags say so: eager's scores, a fused kernel)."""
    out = []
    for name in attention.names():
        b = attention.get(name)
        if b.needs_window or not b.available() or not (b.materializes_scores or b.fused):
            continue
        if device_type == "cpu" and not b.supports_backward_on_cpu:
            continue
        out.append(name)
    return out


@dataclass(frozen=True)
class Choice:
    """What ``Planner.choose`` found for a budget: the fitting plans, fastest first (``best``),
    and the plan with the smallest peak (what to say when nothing fits)."""
    budget_bytes: int
    ranked: List[Plan]
    smallest: Plan
    floor_bytes: int

    @property
    def best(self) -> Optional[Plan]:
        return self.ranked[0] if self.ranked else None

    def message(self) -> str:
        if self.best is None:
            return (f"no plan fits {fmt_bytes(self.budget_bytes)}: the smallest predicted peak is "
                    f"{fmt_bytes(self.smallest.peak_bytes)} ({self.smallest.describe()})")
        b = self.best
        return (f"budget {fmt_bytes(self.budget_bytes)}: {b.describe()} -- predicted "
                f"{b.tokens_per_s:,.0f} tokens/s, peak {fmt_bytes(b.peak_bytes)} (at its {b.peak.at}); "
                f"{len(self.ranked)} of the plans fit")


class Planner:
    """Every plan for ``config`` at ``seq_len`` and ``tokens_per_step`` tokens per optimizer step,
    predicted once: micro-batches (divisors of the batch), checkpointing ``POLICIES``, the loss
    (``LOSS_IMPLS``), attention backends (``plannable_backends``) and the dtypes ``ceilings`` has
    (one ``Ceilings`` per dtype: time is predicted on them). ``choose(budget_bytes)`` is then free,
    which is what a budget slider needs."""

    def __init__(self, config: GPTConfig, seq_len: int, tokens_per_step: int, ceilings: Mapping[str, Ceilings],
                 device_type: str = "cpu", micro_batches: Optional[Sequence[int]] = None,
                 policies: Sequence[str] = tuple(POLICIES), loss_impls: Sequence[str] = LOSS_IMPLS,
                 backends: Optional[Sequence[str]] = None):
        for name, v in (("seq_len", seq_len), ("tokens_per_step", tokens_per_step)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} must be a positive integer")
        if tokens_per_step % seq_len:
            raise ValueError(f"tokens_per_step={tokens_per_step} is not a multiple of seq_len={seq_len}: a step "
                             "holds whole sequences")
        if not ceilings:
            raise ValueError("ceilings: no dtype to plan in (give {dtype: Ceilings}, e.g. measured by "
                             "measure.ceilings.measure_ceilings)")
        unknown = [p for p in policies if p not in POLICIES]
        if unknown:
            raise ValueError(f"policies={unknown} are not among {list(POLICIES)}")
        self.config = config.replace(block_size=max(config.block_size, seq_len))
        self.seq_len, self.tokens_per_step, self.device_type = seq_len, tokens_per_step, device_type
        self.batch_size = tokens_per_step // seq_len
        B = self.batch_size
        micro = sorted(m for m in (micro_batches or range(1, B + 1)) if B % m == 0)
        if not micro:
            raise ValueError(f"micro_batches={list(micro_batches)}: none divides the batch of {B} sequences")
        self.ceilings = dict(ceilings)
        self.backends = list(backends or plannable_backends(device_type))
        self.plans: List[Plan] = []
        for m, p, loss, be, dt in itertools.product(micro, policies, loss_impls, self.backends, self.ceilings):
            cfg = policy_config(self.config, p).replace(loss_impl=loss, attn_backend=be)
            k = B // m
            ms = roofline.predict_step(cfg, B, seq_len, self.ceilings[dt], dtype=dt, device_type=device_type,
                                       grad_accum=k).total_ms
            self.plans.append(Plan(cfg, B, seq_len, k, dt, ms, step_peak(cfg, B, seq_len, dt, k, device_type)))
        self.floor_bytes = self.plans[0].peak.floor_bytes

    def choose(self, budget_bytes: int) -> Choice:
        """The plans whose predicted peak fits ``budget_bytes``, fastest (predicted tokens/s) first.
        ValueError, before anything else, for a budget below the floor -- parameters, gradients
        and AdamW's state, which every plan holds."""
        if not isinstance(budget_bytes, (int, float)) or isinstance(budget_bytes, bool) or budget_bytes <= 0:
            raise ValueError(f"budget_bytes={budget_bytes!r} must be a positive number of bytes")
        if budget_bytes < self.floor_bytes:
            raise ValueError(f"budget_bytes={int(budget_bytes):,} ({fmt_bytes(budget_bytes)}) is below the floor of "
                             f"{self.floor_bytes:,} bytes ({fmt_bytes(self.floor_bytes)}): parameters + gradients + "
                             f"AdamW state of {self.config.name}, which no plan avoids")
        fit = sorted((p for p in self.plans if p.peak_bytes <= budget_bytes),
                     key=lambda p: (-p.tokens_per_s, p.peak_bytes))
        return Choice(int(budget_bytes), fit, min(self.plans, key=lambda p: p.peak_bytes), self.floor_bytes)


def budget_checks(planner: Planner, budgets: Sequence[int], probes_for: Callable[[str], Sequence[ceil.Probe]],
                  device=None, rounds: int = 3, min_run_time: Optional[float] = None) -> List[dict]:
    """The planner's choice for each budget, measured: its peak (``peak_rows``) and its step time
    predicted and measured in the same rounds as the ceilings' probes of its dtype
    (``probes_for(dtype)``; ``roofline.check_steps``). One row per budget, with the errors and
    whether each is within its goal (peak ``PEAK_GOAL``, time ``TIME_GOAL``)."""
    dev = settings.resolve(device)[0]
    chosen: Dict[int, Optional[Plan]] = {}
    rows = []
    for b in budgets:
        try:
            chosen[b] = planner.choose(b).best
        except ValueError as e:
            chosen[b] = None
            rows.append({"budget_bytes": b, "plan": None, "error": str(e)})
    plans = list(dict.fromkeys(p for p in chosen.values() if p is not None))
    peaks = {r["variant"]: r for r in peak_rows([(p.describe(), p.config, p.batch_size, p.seq_len, p.grad_accum)
                                                 for p in plans], dev)}
    times: Dict[str, dict] = {}
    for dt in dict.fromkeys(p.dtype for p in plans):
        same = [p for p in plans if p.dtype == dt]
        res = roofline.check_steps([p.check() for p in same], probes_for(dt), dev, dt, rounds, min_run_time,
                                   progress=False)
        times.update({r["variant"]: r for r in res["rows"]})
    for b in budgets:
        p = chosen[b]
        if p is None:
            continue
        pk, t = peaks[p.describe()], times[p.describe()]
        row = {"budget_bytes": b, **p.row(), "measured_peak_bytes": pk["measured_peak_bytes"],
               "peak_error": pk["peak_error"], "measured_ms": t.get("measured_ms"), "roofline_ms": t.get("roofline_ms"),
               "time_error": t.get("roofline_error"), "time_error_min": t.get("roofline_error_min"),
               "time_error_max": t.get("roofline_error_max"), "rounds": t.get("rounds"),
               "error": pk["error"] or t.get("error")}
        row["peak_within_goal"] = None if row["peak_error"] is None else abs(row["peak_error"]) <= PEAK_GOAL
        row["time_within_goal"] = None if row["time_error"] is None else abs(row["time_error"]) <= TIME_GOAL
        row["fits"] = None if row["measured_peak_bytes"] is None else row["measured_peak_bytes"] <= b
        rows.append(row)
    return rows


# ---- the lesson's three studies (the notebook and the guide suite) -------------------------------------
def policy_study(s: MemoryBudget, probes: Sequence[ceil.Probe], device=None, dtype=None) -> dict:
    """Each checkpointing policy of ``s.policies`` on ``s.preset`` at (s.batch, s.seq_len): the bytes kept for
    backward (predicted, measured), the step's time in the same rounds as the ceilings' ``probes``
    (its ratio to no checkpointing, measured and predicted, per round), and its peak (predicted,
    measured). Returns {"saved", "steps", "peaks", "rows" (one merged row per policy), "ceilings"}."""
    dev, dt = settings.resolve(device, dtype or s.dtypes[0])
    cfg, policies = get_config(s.preset), s.policies
    saved = saved_rows(cfg, s.batch, s.seq_len, policies, dev, dt)
    res = step_rows([StepCheck(p, policy_config(cfg, p), s.batch, s.seq_len) for p in policies], probes, dev, dt,
                    s.rounds, s.min_run_time)
    peaks = peak_rows([(p, policy_config(cfg, p), s.batch, s.seq_len, 1) for p in policies], dev, dt)
    rows = []
    for sv, st, pk in zip(saved, res["rows"], peaks):
        rows.append({"policy": sv["policy"], "saved_predicted_MiB": sv["predicted_bytes"] / MiB,
                     "saved_measured_MiB": sv["measured_bytes"] / MiB, "saved_exact": sv["exact"],
                     "recompute_GFLOP": sv["recompute_gflop"], "measured_ms": st.get("measured_ms"),
                     "predicted_ms": st.get("roofline_ms"), "time_ratio": st.get("measured_ratio"),
                     "time_ratio_min": st.get("measured_ratio_min"), "time_ratio_max": st.get("measured_ratio_max"),
                     "predicted_ratio": st.get("predicted_ratio"), "rounds": st.get("rounds"),
                     "peak_predicted_MiB": pk["predicted_peak_bytes"] / MiB,
                     "peak_measured_MiB": mib(pk["measured_peak_bytes"]),
                     "peak_error": pk["peak_error"], "error": st.get("error") or pk["error"]})
    return {"saved": saved, "steps": res["rows"], "peaks": peaks, "rows": rows, "ceilings": res["ceilings"]}


def micro_batch_study(s: MemoryBudget, probes: Sequence[ceil.Probe], device=None, dtype=None) -> dict:
    """``s.micro_step_batch`` sequences per optimizer step as micro-batches of each of
    ``s.micro_batches``: time in the same rounds as the ceilings' ``probes`` (tokens/s measured and
    predicted), and the predicted peak. Returns {"rows", "ceilings"}."""
    dev, dt = settings.resolve(device, dtype or s.dtypes[0])
    cfg, B = get_config(s.preset), s.micro_step_batch
    checks = [StepCheck(f"micro-batch {m}", cfg, B, s.seq_len, grad_accum=B // m) for m in s.micro_batches]
    res = step_rows(checks, probes, dev, dt, s.rounds, s.min_run_time)
    for c, r in zip(checks, res["rows"]):
        r["predicted_peak_bytes"] = step_peak(cfg, B, s.seq_len, settings.dtype_name(dt), c.grad_accum,
                                              dev.type).peak_bytes
    return res


def budget_study(s: MemoryBudget, ceilings_by_dtype: Mapping[str, Ceilings],
                 probes_for: Callable[[str], Sequence[ceil.Probe]], device=None) -> dict:
    """The planner for ``s.tokens_per_step`` tokens of ``s.preset`` per step (time predicted on
    ``ceilings_by_dtype``), and its choice for each of ``s.budgets_mib`` measured (``budget_checks``).
    Returns {"planner", "rows"}."""
    dev = settings.resolve(device)[0]
    planner = Planner(get_config(s.preset), s.seq_len, s.tokens_per_step, ceilings_by_dtype, dev.type)
    rows = budget_checks(planner, [b * MiB for b in s.budgets_mib], probes_for, dev, s.rounds, s.min_run_time)
    return {"planner": planner, "rows": rows}


# ---- figures ---------------------------------------------------------------------------------------
PART_COLORS = {"parameters": "#1f77b4", "optimizer state": "#c5b0d5", "buffers": "#bcbd22", "batch": "#bcbd22",
               "gradients": "#aec7e8", "activations": "#ff7f0e", "loss": "#9467bd", "head's gradient": "#9467bd",
               "recomputed": "#d62728", "mlp": "#2ca02c", "attention": "#2ca02c", "tied sum": "#8c564b",
               "AdamW": "#e377c2"}


def plan_parts(plan_peak: StepPeak) -> List[Tuple[str, int]]:
    """The peak as (part, bytes): what exists before the step, then the terms of the peak moment."""
    at = plan_peak.parts[plan_peak.at]
    return [(k, v) for k, v in plan_peak.resident.items() if v] + [(k, v) for k, v in at.items() if v]


def moments_rows(peaks: Mapping[str, StepPeak]) -> List[dict]:
    """One row per step: what exists before it, each moment's bytes on top, and the peak."""
    rows = []
    for label, p in peaks.items():
        rows.append({"step": label, "resident": p.resident_bytes, **{m: p.moments[m] for m in MOMENTS},
                     "peak": p.peak_bytes, "at": p.at})
    return rows


def moments_figure(peaks: Mapping[str, StepPeak], title: str = "") -> Figure:
    """What a training step holds at each moment (``measure.peak.MOMENTS``), for several ways to
    run it: the resident memory (parameters, AdamW's state, the batch) as the grey base of every bar,
    the moment's own bytes on top; each step's peak is its tallest bar."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax = fig.subplots()
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    width = 0.8 / max(1, len(peaks))
    for i, (label, p) in enumerate(peaks.items()):
        xs = [j + (i - (len(peaks) - 1) / 2) * width for j in range(len(MOMENTS))]
        ax.bar(xs, [p.resident_bytes / GiB] * len(MOMENTS), width, color="#c7c7c7", edgecolor="white")
        ax.bar(xs, [p.moments[m] / GiB for m in MOMENTS], width, bottom=p.resident_bytes / GiB,
               color=colors[i % len(colors)], edgecolor="white", label=f"{label} (peak {p.peak_bytes / GiB:.2f} GiB)")
        j = MOMENTS.index(p.at)
        ax.plot([xs[j]], [p.peak_bytes / GiB], "kv", ms=5)
    ax.set_xticks(range(len(MOMENTS)), MOMENTS, fontsize=8)
    ax.set_ylabel("GiB held (grey: before the step starts)", fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title, fontsize=9, loc="left")
    return fig


def plan_figure(planner: Planner, choice: Choice, title: str = "") -> Figure:
    """Left: every plan, predicted peak against predicted tokens/s, the budget as a line and the
    choice ringed. Right: the chosen plan's (or the smallest) predicted peak, part by part, beside
    the budget and the floor."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax, ax_b = fig.subplots(1, 2, width_ratios=[1.4, 1])
    colors = {"none": "#1f77b4", "attention": "#ff7f0e", "mlp": "#2ca02c", "block": "#d62728",
              "block every 2": "#9467bd"}
    for pol, col in colors.items():
        ps = [p for p in planner.plans if p.policy == pol]
        if ps:
            ax.scatter([p.peak_bytes / MiB for p in ps], [p.tokens_per_s for p in ps], s=14, color=col,
                       alpha=0.7, label=f"checkpoint {pol}")
    ax.axvline(choice.budget_bytes / MiB, color="k", lw=1, ls="--")
    ax.axvline(choice.floor_bytes / MiB, color="#7f7f7f", lw=1, ls=":")
    shown = choice.best or choice.smallest
    ax.scatter([shown.peak_bytes / MiB], [shown.tokens_per_s], s=120, facecolors="none", edgecolors="k", lw=1.5)
    ax.set_xscale("log")
    ax.set_xlabel("predicted peak (MiB, log); dashed: the budget, dotted: the floor", fontsize=9)
    ax.set_ylabel("predicted tokens / s", fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    parts = plan_parts(shown.peak)
    left = 0.0
    for name, v in parts:
        ax_b.barh([0], [v / MiB], left=left, color=PART_COLORS.get(name, "#7f7f7f"), edgecolor="white")
        if v / MiB > 0.06 * shown.peak_bytes / MiB:
            ax_b.text(left + v / MiB / 2, 0, name.replace(" ", "\n"), ha="center", va="center", fontsize=8)
        left += v / MiB
    ax_b.axvline(choice.budget_bytes / MiB, color="k", lw=1, ls="--")
    ax_b.axvline(choice.floor_bytes / MiB, color="#7f7f7f", lw=1, ls=":")
    ax_b.set_yticks([])
    ax_b.set_xlim(0, max(left, choice.budget_bytes / MiB) * 1.08)
    ax_b.set_xlabel(f"MiB at the peak ({shown.peak.at})", fontsize=9)
    ax_b.set_title(("chosen: " if choice.best else "nothing fits; smallest: ") + shown.policy
                   + f" checkpoint, micro-batch {shown.micro_batch}, {shown.config.loss_impl} loss", fontsize=8,
                   loc="left")
    fig.suptitle(title or f"{planner.config.name}, {planner.tokens_per_step:,} tokens per step (T={planner.seq_len}), "
                 f"budget {fmt_bytes(choice.budget_bytes)}", fontsize=10)
    return fig


def policy_figure(saved: Sequence[Mapping], steps: Sequence[Mapping], peaks: Sequence[Mapping], title: str = ""
                  ) -> Figure:
    """Per checkpointing policy: the bytes kept for backward and the step's peak, predicted (bars)
    and measured (markers), left; the step's time relative to no checkpointing, measured per round
    (median, min–max) beside predicted, right."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax_m, ax_t = fig.subplots(1, 2)
    labels = [r["policy"] for r in saved]
    y = list(range(len(labels)))
    peak_by = {r["variant"]: r for r in peaks}
    ax_m.barh([i + 0.2 for i in y], [r["predicted_bytes"] / MiB for r in saved], height=0.4, color="#ff7f0e",
              label="kept for backward: predicted")
    ax_m.plot([r["measured_bytes"] / MiB for r in saved], [i + 0.2 for i in y], "k|", ms=12, label="measured")
    pk = [peak_by.get(lbl, {}) for lbl in labels]
    ax_m.barh([i - 0.2 for i in y], [(p.get("predicted_peak_bytes") or 0) / MiB for p in pk], height=0.4,
              color="#1f77b4", label="peak: predicted")
    ax_m.plot([(p.get("measured_peak_bytes") or 0) / MiB for p in pk], [i - 0.2 for i in y], "kx", ms=7,
              label="peak: measured")
    ax_m.set_yticks(y, labels, fontsize=8)
    ax_m.set_xlabel("MiB", fontsize=9)
    ax_m.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(0.0, -0.18), ncol=2)
    step_by = {r["policy"]: r for r in steps}
    for i, lbl in enumerate(labels):
        r = step_by.get(lbl, {})
        if r.get("measured_ratio") is None:
            continue
        ax_t.errorbar([r["measured_ratio"]], [i], xerr=[[r["measured_ratio"] - r["measured_ratio_min"]],
                                                       [r["measured_ratio_max"] - r["measured_ratio"]]],
                      fmt="o", color="#1f77b4", capsize=3, label="measured (per-round range)" if i == 0 else None)
        ax_t.plot([r["predicted_ratio"]], [i], "D", color="#d62728", mfc="none",
                  label="predicted (same rounds' ceilings)" if i == 0 else None)
    ax_t.axvline(1.0, color="#7f7f7f", lw=1, ls=":")
    ax_t.set_yticks(y, labels, fontsize=8)
    ax_t.set_xlabel("step time / without checkpointing", fontsize=9)
    ax_t.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(0.0, -0.18))
    r0 = saved[0] if saved else {}
    fig.suptitle(title or f"checkpointing policies, B={r0.get('batch_size')}, T={r0.get('seq_len')}, "
                 f"{r0.get('dtype', '')}, {r0.get('device_name', '')}", fontsize=10)
    return fig


def micro_batch_figure(rows: Sequence[Mapping], title: str = "") -> Figure:
    """Tokens per second against the micro-batch at a fixed batch per step: measured (the median
    of the rounds) beside predicted, and the predicted peak on the right axis."""
    fig = Figure(figsize=(7, 3.4), layout="constrained")
    ax = fig.subplots()
    ok = [r for r in rows if not r.get("error") and r.get("tokens_per_s")]
    xs = [r["micro_batch"] for r in ok]
    ax.plot(xs, [r["tokens_per_s"] for r in ok], "o-", color="#1f77b4", label="measured")
    ax.plot(xs, [r["predicted_tokens_per_s"] for r in ok], "D--", color="#d62728", mfc="none", label="predicted")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("micro-batch (sequences); the batch per step is fixed", fontsize=9)
    ax.set_ylabel("tokens / s", fontsize=9)
    ax2 = ax.twinx()
    ax2.plot(xs, [r["predicted_peak_bytes"] / MiB for r in ok], "s:", color="#7f7f7f", label="predicted peak")
    ax2.set_ylabel("predicted peak (MiB)", fontsize=9)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, frameon=False, loc="upper left",
              bbox_to_anchor=(1.12, 1.0))
    ax.set_title(title, fontsize=9, loc="left")
    return fig


# ---- the exercise ----------------------------------------------------------------------------------
def check_accumulation(fn: Callable) -> CheckResult:
    """The exercise: ``fn(model, x, y, k)`` leaves in every ``.grad`` the gradients of the whole
    batch (x, y) while running it as ``k`` micro-batches. Checked in float64 on a small model
    against one pass over the whole batch, for k = 1, 2, 4."""
    name = "gradient accumulation"
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=16, vocab_size=61, block_size=16, name="check")
    worst = 0.0
    for k in (1, 2, 4):
        diff, err = call_checked(name, gradient_difference, cfg, 4, 8, k, fn)
        if err is not None:
            return err
        worst = max(worst, diff)
        if diff > 1e-10:
            hint = ("scale each micro-batch's loss by 1/k before backward" if k > 1 else
                    "with k=1 it must be one ordinary forward and backward")
            return CheckResult(name, False, f"with k={k} the gradients differ from the whole batch's by up to "
                               f"{diff:.3g}: {hint}, and do not zero the gradients between micro-batches", k)
    return CheckResult(name, True, f"k = 1, 2, 4 give the whole batch's gradients (largest difference "
                       f"{worst:.1e}, float64)", 3)


def within(value: Optional[float], goal: float) -> str:
    """A verdict for an error against its goal, in words."""
    if value is None:
        return "not measured"
    return f"{value:+.1%} (within ±{goal:.0%})" if abs(value) <= goal else f"{value:+.1%} (outside ±{goal:.0%})"


def ratio_words(median: Optional[float], lo: Optional[float], hi: Optional[float],
                rounds: Optional[int] = None) -> str:
    """A per-round time ratio (the step with checkpointing / without) as the speedup it is (without /
    with, ``speedups.Speedup``'s printed form and verdict), judged against its ceiling of 1.0:
    checkpointing only adds work, so a step that measures faster is "above the ceiling" -- noise,
    or the allocator and page faults moved -- never a gain."""
    if median is None:
        return "not measured"
    sp = Speedup(1 / median, None if hi is None else 1 / hi, None if lo is None else 1 / lo, rounds, ceiling=1.0)
    more = f" (the step takes {median - 1:.0%} longer)" if sp.verdict == speedups.SLOWER else ""
    return sp.text() + more
