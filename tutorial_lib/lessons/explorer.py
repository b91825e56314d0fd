"""The explorer playground (99) as plain functions: the cost explorer's predictions, no widgets.

``tutorial_lib.widgets`` only wires sliders to these; everything a slider changes is computed here
from the one analytic model (``measure.cost``) and the machine's ceilings (``measure.ceilings``), so
it can be tested and printed without a browser.

- ``predict_cost(ExplorerSettings, calibration, device_type, ceilings)``: per-component FLOP shares,
  predicted time per component and per step, and the training-memory breakdown of one GPT step.
  The settings include how the step runs (``runtime.StepSettings``: dtype, AdamW's kernels, which
  the cost model knows, and a torch.compile mode, which only "Measure now" can time).
- ``Calibration`` / ``comparable``: a measured step (a "Measure now" run, or a results file from
  ``python -m tutorial_lib bench``) and the rule for when it may scale a prediction.
- ``calibration_from_results``: the same from results files measured on this device.
- ``crossover_seq_len`` / ``check_crossover``: the playground's exercise.

The lesson explorers' numbers live in their lessons (``gqa.gqa_point``,
``flash_attention.flash_point``, ``sliding_window.window_point``); the decision tree in
``lessons.decision``.

How time is predicted. The roofline model (``measure.roofline``, notebook 09): every kernel the
eager step launches takes max(FLOPs / peak, bytes / bandwidth) plus a per-operator overhead, on
*ceilings* of this device -- measured ("Measure now" times them in the same rounds as its step,
``roofline.check_steps``; the guide suite records them) or, for a GPU, its datasheet ("spec").
Without ceilings the time share shown is the FLOP share, labelled as the compute-bound assumption it
is. A measured step scales the prediction only when it is comparable work: the same model preset and
dtype, and tokens per step within a factor of 2 (``SIZE_CLASS``); then each component is scaled by
its own measured / predicted ratio at the measured settings, and ``basis`` names the measurement and
how far apart the sizes are. Memory: parameters, gradients (fp32), AdamW's two fp32 moments, and the
activations autograd keeps for backward (``measure.cost.activation_bytes``: exact, byte for byte).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from tutorial_lib import scopes
from tutorial_lib.lessons.roofline import recorded_steps
from tutorial_lib.measure import ceilings as ceil
from tutorial_lib.measure import cost, records, roofline
from tutorial_lib.measure.ceilings import Ceilings
from tutorial_lib.measure.memory import available_bytes, fmt_bytes, memory_breakdown
from tutorial_lib.measure.peak import step_peak
from tutorial_lib.measure.profile import GRAD_ACC, profile_step
from tutorial_lib.measure.timing import INIT_S_PER_PARAM, rounds_seconds
from tutorial_lib.model import GPT, GPTConfig, get_config
from tutorial_lib.runtime import StepSettings
from tutorial_lib.settings import DTYPE_NAMES, device_name, get_device
from tutorial_lib.sizes import get_sizes

# ---- the cost explorer -----------------------------------------------------------------------
DISPLAY_SCOPES = ("embedding", "attention.qkv", "attention.rope", "attention.core", "attention.out",
                  "mlp.up", "mlp.act", "mlp.down", "norm", "lm_head", "loss", "other", "optimizer")
MEMORY_GROUPS = ("embedding", "attention", "attention scores/probs", "mlp", "norms",
                 "residual stream", "head + loss")


@dataclass(frozen=True)
class ExplorerSettings:
    """What the cost explorer's controls set. ``window=None``: full causal attention."""
    preset: str = "gpt2_small"
    seq_len: int = 512
    batch_size: int = 4
    n_kv_head: Optional[int] = None
    mlp: str = "gelu"
    mlp_ratio: Optional[float] = None  # None: the kind's default (4 for GELU, 8/3 for SwiGLU)
    window: Optional[int] = None
    attn_backend: str = "sdpa"
    dtype: str = "bfloat16"
    loss_impl: str = "full"  # "chunked" / "chunked_liger": the LM-head lesson's chunked loss
    adamw: str = "auto"  # AdamW's kernels (runtime.StepSettings): "for-loop", "foreach", "fused"
    compile: Optional[str] = None  # a torch.compile mode: measured by "Measure now", not modelled
    # the memory-budget lesson: what each block recomputes in backward, and micro-batches per step
    checkpoint: str = "none"
    grad_accum: int = 1

    def __post_init__(self):
        for name in ("seq_len", "batch_size", "grad_accum"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ExplorerSettings.{name}={v!r} must be a positive integer")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"ExplorerSettings.grad_accum={self.grad_accum} does not divide batch_size="
                             f"{self.batch_size}")
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"ExplorerSettings.dtype={self.dtype!r} is not one of {list(DTYPE_NAMES)}")
        try:
            self.step_settings()  # validates adamw and compile
        except ValueError as e:
            raise ValueError(str(e).replace("StepSettings.", "ExplorerSettings.")) from None
        self.config()  # validates the rest (GPTConfig raises ValueError naming the field)

    def config(self) -> GPTConfig:
        """The GPTConfig these settings describe (block_size raised to seq_len if needed)."""
        base = get_config(self.preset)
        backend = self.attn_backend
        if backend == "local" and self.window is None:
            backend = "sdpa"  # a local window of the full length is plain causal attention
        return base.replace(n_kv_head=self.n_kv_head, mlp=self.mlp, mlp_ratio=self.mlp_ratio,
                            window=self.window, attn_backend=backend, loss_impl=self.loss_impl,
                            checkpoint=self.checkpoint,
                            block_size=max(base.block_size, self.seq_len))

    def step_settings(self) -> StepSettings:
        """How the step runs: the dtype (autocast), AdamW's kernels, torch.compile's mode."""
        return StepSettings(dtype=self.dtype, adamw=self.adamw, compile=self.compile)

    @classmethod
    def from_config(cls, cfg: GPTConfig, seq_len: int, batch_size: int, dtype: str) -> "ExplorerSettings":
        """The settings of a measured config (its preset's other fields must be the preset's)."""
        return cls(preset=cfg.name, seq_len=seq_len, batch_size=batch_size, n_kv_head=cfg.n_kv_head,
                   mlp=cfg.mlp, mlp_ratio=cfg.mlp_ratio, window=cfg.window,
                   attn_backend=cfg.attn_backend, dtype=dtype, loss_impl=cfg.loss_impl,
                   checkpoint=cfg.checkpoint if cfg.checkpoint_every == 1 else "none")

    def replace(self, **changes) -> "ExplorerSettings":
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        run = (f", {self.adamw} AdamW" if self.adamw != "auto" else "") + (
            f", compile ({self.compile})" if self.compile else "")
        micro = f" in {self.grad_accum} micro-batches" if self.grad_accum > 1 else ""
        return f"{self.config().describe()}; B={self.batch_size}{micro}, T={self.seq_len}, {self.dtype}{run}"


def scope_work(config: GPTConfig, batch_size: int, seq_len: int, device_type: str = "cpu") -> Dict[str, float]:
    """Work per profiler scope for one training step: matmul FLOPs (fwd + bwd, as the kernel does
    them) + 3 x the elementwise estimate; "optimizer" is the parameter count (AdamW's work is
    per parameter), and the embedding adds its table's size (its backward writes a dense
    (vocab, n_embd) gradient every step). Units differ per scope; only ratios within a scope
    are used for time."""
    out = flop_breakdown(config, batch_size, seq_len, device_type)
    out["embedding"] += config.padded_vocab_size * config.n_embd
    out["optimizer"] = float(cost.num_params(config))
    return out


def flop_breakdown(config: GPTConfig, batch_size: int, seq_len: int, device_type: str = "cpu") -> Dict[str, float]:
    """FLOPs (matmul + elementwise estimate) of forward + backward per scope, no optimizer."""
    out: Dict[str, float] = {s: 0.0 for s in DISPLAY_SCOPES if s != "optimizer"}
    for scope, fl in cost.flops_by_scope(config, batch_size, seq_len, None, "computed", device_type).items():
        out[scope] += fl
    for scope, fl in cost.elementwise_flops(config, batch_size, seq_len, device_type).items():
        out[scope] += 3 * fl
    return out


def predict_memory(config: GPTConfig, batch_size: int, seq_len: int, dtype: str = "float32",
                   grad_accum: int = 1, device_type: str = "cpu") -> Dict[str, object]:
    """Training-step memory from the cost model (``measure.cost.training_memory``: activations are
    the exact bytes autograd saves, for one micro-batch of ``batch_size / grad_accum``), every
    activation group present (zero where this config has none), and the allocator's predicted
    peak (``measure.peak.step_peak``: "peak", and the moment it happens, "peak_at")."""
    mem = cost.training_memory(config, batch_size // grad_accum, seq_len, dtype)
    mem["activations_by_group"] = {g: mem["activations_by_group"].get(g, 0) for g in MEMORY_GROUPS}
    p = step_peak(config, batch_size, seq_len, dtype, grad_accum, device_type)
    mem.update(peak=p.peak_bytes, peak_at=p.at)
    return mem


@dataclass
class Calibration:
    """One measured training step on this device: it checks the roofline model's prediction and,
    for comparable settings only (``comparable``), scales it component by component."""
    source: str  # "measured now" or the results file it came from
    device: str
    device_name: str
    dtype: str
    settings: ExplorerSettings  # what was measured
    step_ms: float  # measured ms per training step
    scope_ms: Dict[str, float] = field(default_factory=dict)  # measured ms per display scope, if profiled
    planned_for: Optional[ExplorerSettings] = None  # the settings a "Measure now" plan measured it for

    @property
    def label(self) -> str:
        return self.settings.describe()

    @classmethod
    def from_measurement(cls, settings: ExplorerSettings, step_ms: float, device: str,
                         device_name: str, scope_ms: Optional[Dict[str, float]] = None,
                         source: str = "measured now", planned_for: Optional[ExplorerSettings] = None
                         ) -> "Calibration":
        """From a measured step time and (optionally) the measured ms per display scope;
        ``planned_for``: the requested settings when a plan measured a reduced size of them."""
        if not step_ms or step_ms <= 0:
            raise ValueError(f"step_ms={step_ms!r} must be > 0")
        return cls(source=source, device=device, device_name=device_name, dtype=settings.dtype,
                   settings=settings, step_ms=float(step_ms), scope_ms=dict(scope_ms or {}),
                   planned_for=planned_for)


SIZE_CLASS = 2.0  # a measurement scales predictions for tokens per step within this factor of its own


def tokens_apart(a: ExplorerSettings, b: ExplorerSettings) -> float:
    """How far apart two settings' tokens per step are, as a factor >= 1."""
    ta, tb = a.batch_size * a.seq_len, b.batch_size * b.seq_len
    return max(ta, tb) / min(ta, tb)


def applies(calibration: "Calibration", wanted: ExplorerSettings) -> Optional[str]:
    """None when ``calibration`` may scale a prediction for ``wanted``: it was measured for exactly
    these settings (a "Measure now" plan that measured a reduced size of them), or it is
    ``comparable`` work; else why not."""
    if calibration.planned_for == wanted:
        return None
    return comparable(calibration.settings, wanted)


def comparable(measured: ExplorerSettings, wanted: ExplorerSettings) -> Optional[str]:
    """None when a measurement of ``measured`` may scale a prediction for ``wanted``: the same model
    preset and dtype, and tokens per step within ``SIZE_CLASS`` (the same size class); else why not.
    (One measurement of ``tiny`` once re-scaled GPT-2 small's prediction sevenfold: never again.)"""
    if measured.preset != wanted.preset:
        return f"it measured {measured.preset}, not {wanted.preset}"
    if measured.dtype != wanted.dtype:
        return f"it ran in {measured.dtype}, not {wanted.dtype}"
    if (measured.adamw, measured.compile) != (wanted.adamw, wanted.compile):
        return f"it ran with {measured.step_settings().describe()}, not {wanted.step_settings().describe()}"
    f = tokens_apart(measured, wanted)
    if f > SIZE_CLASS:
        return f"its tokens per step are {f:,.1f}x apart from these (more than {SIZE_CLASS:g}x)"
    return None


def roofline_scope_ms(prediction: roofline.StepPrediction) -> Dict[str, float]:
    """A roofline prediction's ms per display scope (forward + backward; AdamW as "optimizer")."""
    out: Dict[str, float] = {}
    for (scope, _), ms in prediction.ms.items():
        key = scope if scope in DISPLAY_SCOPES else "other"
        out[key] = out.get(key, 0.0) + ms
    return out


def scale_factors(calibration: Calibration, ceilings: Ceilings, device_type: str) -> Dict[str, float]:
    """measured / predicted at the calibration's own settings, per display scope that both the
    profile and the model have ("step": the whole step, for the rest)."""
    s = calibration.settings
    pred = roofline.predict_step(s.config(), s.batch_size, s.seq_len, ceilings, dtype=s.dtype, device_type=device_type,
                                 adamw=s.adamw, grad_accum=s.grad_accum)
    out = {"step": calibration.step_ms / pred.total_ms}
    per = roofline_scope_ms(pred)
    for k, ms in calibration.scope_ms.items():
        if ms > 0 and per.get(k, 0) > 0:
            out[k] = ms / per[k]
    return out


def model_work(work: Dict[str, float]) -> float:
    """The forward + backward work of a ``scope_work`` table (the optimizer's is per parameter)."""
    return sum(v for k, v in work.items() if k != "optimizer")


def profile_scope_ms(profile_rows: List[dict], step_ms: float) -> Dict[str, float]:
    """A ProfileResult's rows -> ms per display scope, rescaled so they add up to ``step_ms``
    (profiling slows every op; its shares are what we keep)."""

    total = sum(r["ms"] for r in profile_rows)
    out: Dict[str, float] = {}
    for r in profile_rows:
        s = r["scope"]
        if s in scopes.SCOPE_NAMES:
            key = s
        else:  # AdamW and writing .grad scale with the parameters; the rest is glue
            key = "optimizer" if (s.startswith("optimizer") or s == GRAD_ACC) else "other"
        out[key] = out.get(key, 0.0) + (r["ms"] / total * step_ms if total else 0.0)
    return out


@dataclass
class CostPrediction:
    settings: ExplorerSettings
    config: str
    flops: Dict[str, float]  # per scope, forward + backward (matmul + elementwise estimate)
    flop_share: Dict[str, float]
    time_ms: Optional[Dict[str, float]]  # per scope (incl. optimizer), None without ceilings
    time_share: Dict[str, float]
    step_ms: Optional[float]
    basis: str  # how time was predicted, said in words
    memory: Dict[str, object]
    roofline_ms: Optional[float] = None  # the roofline model's step time before any scaling
    flop_only_ms: Optional[float] = None  # every matmul FLOP at the peak: the FLOP-only prediction
    scaled_by: Optional[str] = None  # the measurement that scaled the prediction, if any

    @property
    def total_flops(self) -> float:
        return sum(self.flops.values())

    def summary(self) -> str:
        """One line: sizes, FLOPs, predicted time and memory -- printed numbers come from here."""

        t = f"{self.step_ms:,.1f} ms/step" if self.step_ms is not None else "no time (no ceilings yet)"
        return (f"{self.settings.describe()}: {self.total_flops / 1e12:,.3f} TFLOP fwd+bwd, {t}, "
                f"training memory {fmt_bytes(self.memory['total'])}")


def predict_cost(settings: ExplorerSettings, calibration: Optional[Calibration] = None,
                 device_type: str = "cpu", ceilings: Optional[Ceilings] = None) -> CostPrediction:
    """Shares of FLOPs and predicted time per scope, and memory, for ``settings``.

    Time comes from the roofline model (``measure.roofline.predict_step``) on ``ceilings`` -- this
    device's, measured, or a GPU's datasheet. A ``calibration`` of *comparable* work (same model,
    dtype and size class, see ``comparable``) then scales each component by measured / predicted
    at its own settings, and so does one that "Measure now" planned for exactly these settings at a
    reduced size (``applies``); anything else leaves the prediction unscaled, and ``basis`` says why."""
    cfg = settings.config()
    flops = flop_breakdown(cfg, settings.batch_size, settings.seq_len, device_type)
    total = sum(flops.values())
    flop_share = {k: v / total for k, v in flops.items()}
    mem = predict_memory(cfg, settings.batch_size, settings.seq_len, settings.dtype, settings.grad_accum, device_type)
    if ceilings is None or ceilings.dtype not in (settings.dtype, "tf32" if settings.dtype == "float32" else ""):
        why = ("no ceilings for this device yet (Measure now measures them; so does "
               "python -m tutorial_lib bench --suite guide)" if ceilings is None else
               f"the ceilings were measured in {ceilings.dtype}, not {settings.dtype}")
        return CostPrediction(settings, cfg.describe(), flops, flop_share, None, dict(flop_share), None,
                              f"time share = FLOP share (compute-bound assumption; {why})", mem)
    pred = roofline.predict_step(cfg, settings.batch_size, settings.seq_len, ceilings, dtype=settings.dtype,
                                 device_type=device_type, adamw=settings.adamw, grad_accum=settings.grad_accum)
    time_ms = roofline_scope_ms(pred)
    where = f"{ceilings.device_name} ({ceilings.source} ceilings)"
    basis = f"roofline model on {where}"
    if settings.compile:
        basis += " (eager kernels: torch.compile's fusion is not in the model; Measure now measures it)"
    scaled_by = None
    why_not = None
    if calibration is not None:
        why_not = applies(calibration, settings)
        if why_not is None:
            f = scale_factors(calibration, ceilings, device_type)
            time_ms = {k: v * f.get(k, f["step"]) for k, v in time_ms.items()}
            per = "per component" if len(f) > 1 else "one factor for the step"
            scaled_by = (f"{calibration.source}: {calibration.label}, {calibration.step_ms:,.1f} ms/step measured "
                         f"vs {calibration.step_ms / f['step']:,.1f} predicted")
            apart = tokens_apart(calibration.settings, settings)
            basis += (f", scaled {per} by {scaled_by} "
                      + (f"(measured at a reduced size for these settings, tokens per step {apart:,.2g}x "
                         "fewer: each component's measured rate applied to this size's work)"
                         if calibration.planned_for == settings and apart > 1 else
                         f"(tokens per step {apart:,.2g}x apart)"))
        else:
            basis += f"; not scaled by {calibration.source} ({calibration.label}): {why_not}"
    step_ms = sum(time_ms.values())
    time_share = {k: v / step_ms for k, v in time_ms.items()} if step_ms else {}
    return CostPrediction(settings, cfg.describe(), flops, flop_share, time_ms, time_share, step_ms, basis, mem,
                          roofline_ms=pred.total_ms, flop_only_ms=pred.flop_only_ms, scaled_by=scaled_by)


# ---- "Measure now": how long it would take, and a reduced size when that is too long -----------
MEASURE_BUDGET_S = 20.0  # "Measure now" should answer within this on a laptop
EXPLORER_ROUNDS = 3  # "Measure now" times the step in turn with the ceilings' probes, 3 rounds
EXPLORER_MIN_RUN_TIME = 0.1  # seconds per timed block, steps and probes
AFTER_ROUNDS_STEPS = 3  # after the rounds: a step under the profiler (~2x slower) and a memory-accounted one
MIN_MEASURED_SEQ = 64


def measurement_seconds(step_ms: float) -> float:
    """Predicted wall seconds of "Measure now"'s work on a step of ``step_ms``: one timing per round
    (``timing.rounds_seconds``: the first round's warm-up and every round's timed blocks), then
    ``AFTER_ROUNDS_STEPS`` steps' worth of profile and memory accounting. The probes beside it and
    the model's build are the plan's setup (``ExplorerSession.setup_seconds``)."""
    step_s = step_ms / 1e3
    return rounds_seconds(step_s, EXPLORER_MIN_RUN_TIME, EXPLORER_ROUNDS) + AFTER_ROUNDS_STEPS * step_s


def seconds_text(seconds: float) -> str:
    """A wall time for a message: whole seconds from 10 s on, one decimal below."""
    return f"{seconds:,.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


@dataclass
class MeasurementPlan:
    """What "Measure now" will do for ``requested``: measure it as it is, measure a smaller
    ``measured`` size and scale the time by the cost model (``scale`` = work requested / work
    measured), or refuse because the requested step cannot fit in this machine's memory."""
    requested: ExplorerSettings
    measured: ExplorerSettings
    action: str  # "measure" | "reduced" | "refuse"
    scale: float  # multiply a time measured at ``measured`` by this to predict ``requested``
    step_ms: Optional[float]  # predicted ms per step at the requested size
    seconds: Optional[float]  # predicted wall time of the whole measurement (at ``measured``)
    budget_s: float
    memory_bytes: int  # predicted training-step memory at the requested size
    available_bytes: Optional[int]  # what this machine can still allocate (None: unknown)
    basis: str  # how the time was predicted
    setup_s: float = 0.0  # predicted seconds beside the step's own: the model's build, the ceilings' probes
    setup: str = ""  # what the setup does, in words

    @property
    def total_seconds(self) -> Optional[float]:
        """Everything the confirm press will do: the setup, then the step's measurements."""
        return None if self.seconds is None else self.setup_s + self.seconds

    def message(self) -> str:
        """What to tell the user before measuring: predicted time and memory, and the decision."""
        mem = (f"predicted memory {fmt_bytes(self.memory_bytes)}"
               + (f" of {fmt_bytes(self.available_bytes)} available" if self.available_bytes else ""))
        t = ("time unknown" if self.step_ms is None else f"about {self.step_ms:,.0f} ms per step"
             if self.step_ms < 1e3 else f"about {self.step_ms / 1e3:,.1f} s per step")
        head = f"{self.requested.describe()}: {t}, {mem}"
        if self.action == "refuse":
            return (f"{head}. Not measured: the step needs more memory than this machine has free; "
                    f"lower B or T, or use a smaller model.")
        setup = (f" (~{seconds_text(self.setup_s)} of it {self.setup}, then ~{seconds_text(self.seconds)} for "
                 "the step's warm-up, timing, profile and memory)" if self.setup_s and self.seconds else "")
        if self.action == "reduced":
            full_s = self.seconds * self.scale
            return (f"{head}. Measuring it would take ~{seconds_text(full_s)}, above the {self.budget_s:.0f} s "
                    f"bound: measuring {self.measured.describe()} instead, ~{seconds_text(self.total_seconds)} in "
                    f"all{setup}; its per-component rates calibrate the cost model, which scales the time to "
                    f"the requested size (~{self.scale:.2f}x here), and the readout says so.")
        return (f"{head}. Measuring it takes ~{seconds_text(self.total_seconds)}{setup}." if self.seconds
                else f"{head}.")


def predict_step_ms(settings: ExplorerSettings, calibration: Optional[Calibration] = None,
                    device_type: str = "cpu", ceilings: Optional[Ceilings] = None) -> tuple:
    """(ms per training step, basis) for ``settings``: the roofline model on ``ceilings`` (this
    device's, or quick ones before any are measured), scaled by ``calibration`` when it applies
    (``predict_cost``); (None, why) without ceilings."""
    if ceilings is None:
        return None, "no ceilings for this device: time unknown"
    p = predict_cost(settings, calibration, device_type, ceilings)
    return p.step_ms, p.basis


def reduced_sizes(s: ExplorerSettings):
    """Smaller versions of ``s``, largest first: the batch down to 1, then T halved down to
    ``MIN_MEASURED_SEQ`` (a window stays below T; the same model, so the cost model scales it)."""
    out = []
    B, T = s.batch_size, s.seq_len
    while True:
        if B > 1:
            B = max(1, B // 2)
        elif T > MIN_MEASURED_SEQ:
            T = max(MIN_MEASURED_SEQ, T // 2)
        else:
            return out
        w = s.window if (s.window is None or s.window < T) else max(1, T // 2)
        out.append(s.replace(batch_size=B, seq_len=T, window=w, grad_accum=math.gcd(B, s.grad_accum)))


def plan_measurement(settings: ExplorerSettings, calibration: Optional[Calibration] = None,
                     device_type: str = "cpu", available: Optional[int] = None,
                     budget_s: float = MEASURE_BUDGET_S, ceilings: Optional[Ceilings] = None,
                     setup_s: float = 0.0, setup: str = "",
                     correction: Optional[Tuple[float, str]] = None) -> MeasurementPlan:
    """Decide how "Measure now" measures ``settings`` within ``budget_s`` seconds.

    At the predicted step time (``predict_step_ms``) the measurement takes ``measurement_seconds``,
    plus ``setup_s`` (the model's build and the ceilings' probes). Within the budget: measure as
    asked. Above it: the largest of ``reduced_sizes`` that fits (else the smallest); its measurement calibrates
    the cost model, which then predicts the requested size (``scale`` = predicted requested /
    predicted measured step) -- said in ``message()``. When the requested step's predicted memory
    (``predict_memory``) exceeds ``available`` bytes: refuse. ``correction`` = (factor, why): a step
    time no ``calibration`` scales is multiplied by ``factor`` -- measured / predicted of the last
    step measured on this machine -- so that a machine slower than its ceilings say gets a longer
    estimate, not a surprise.
    """
    if not budget_s > 0:
        raise ValueError(f"budget_s={budget_s!r} must be > 0")
    mem = int(predict_memory(settings.config(), settings.batch_size, settings.seq_len, settings.dtype,
                             settings.grad_accum, device_type)["total"])

    def step_ms(s):
        ms, why = predict_step_ms(s, calibration, device_type, ceilings)
        if ms is not None and correction and (calibration is None or applies(calibration, s) is not None):
            ms, why = ms * correction[0], f"{why}; x{correction[0]:.2f}: {correction[1]}"
        return ms, why

    full_ms, basis = step_ms(settings)
    plan = MeasurementPlan(settings, settings, "measure", 1.0, full_ms,
                           None if full_ms is None else measurement_seconds(full_ms), budget_s, mem, available,
                           basis, setup_s, setup)
    if available is not None and mem > available:
        plan.action = "refuse"
        return plan
    if plan.seconds is None or plan.total_seconds <= budget_s:
        return plan
    candidates = reduced_sizes(settings)
    if not candidates:
        return plan
    for c in candidates:
        c_ms = step_ms(c)[0]
        if setup_s + measurement_seconds(c_ms) <= budget_s:
            break
    plan.action, plan.measured, plan.scale = "reduced", c, full_ms / c_ms
    plan.seconds = measurement_seconds(c_ms)
    return plan


# ---- the explorer's state on this machine: one object ----------------------------------------------
def explorer_probe_sizes(device) -> Tuple[Tuple[int, ...], int, Tuple[int, ...]]:
    """(matmul sizes, stream bytes, first-touch sizes) "Measure now" measures the ceilings at,
    whatever the size profile. On a CPU: matmuls of 512 and 1024, 64 MiB arrays (past the caches)
    and a 64 MiB fresh fill (past glibc's mmap threshold: the page faults); on a GPU, the gpu
    profile's. At toy sizes a probe measures the caches, not the machine: the smoke profile's
    1 MiB copy ran at cache speed and its 64 x 64 matmul far below the peak, and a first touch
    was never measured, so a tiny model's step was predicted several times too fast."""
    if get_device(device).type == "cpu":
        return (512, 1024), 64 * 2**20, (64 * 2**20,)
    r = get_sizes("gpu").roofline
    return r.mm_sizes, r.stream_bytes, r.first_touch_sizes


@dataclass
class Measurement:
    """What one "Measure now" found, at the requested settings (scaled there by the cost model when
    the plan measured a reduced size), beside the roofline model's prediction from the ceilings
    timed in the same rounds (``check``) and what was shown before it ran (``before``)."""
    settings: ExplorerSettings  # requested
    measured: ExplorerSettings  # what ran
    plan: MeasurementPlan
    step_ms: float  # at the requested settings
    measured_step_ms: float  # at the measured settings: the median over the rounds
    range_ms: Tuple[float, float]  # the rounds' fastest and slowest (at the requested settings)
    scale: float  # step_ms / measured_step_ms
    time_share: Dict[str, float]
    memory: Dict[str, object]  # by_kind, activations_by_group, total (at the requested settings)
    before: "CostPrediction"  # the prediction for the requested settings before this measurement
    device_name: str
    seconds: float  # wall time the whole press took
    check: Dict[str, object] = field(default_factory=dict)  # roofline.check_steps' row for the measured step
    ceilings: Optional[Ceilings] = None  # measured in the same rounds as the step

    @property
    def tokens_per_s(self) -> float:
        return self.settings.batch_size * self.settings.seq_len / (self.step_ms / 1e3)


def error_words(row: Dict[str, object], what: str = "roofline") -> str:
    """A prediction's error from ``roofline.check_steps``' row: median and per-round range."""
    e, lo, hi = (row.get(f"{what}_error{k}") for k in ("", "_min", "_max"))
    if e is None:
        return "no error known"
    rounds = row.get("rounds") or 0
    per = f"per round {lo:+.0%} to {hi:+.0%}, " if rounds > 1 else ""
    return f"{e:+.0%} ({per}{rounds} round{'s' if rounds != 1 else ''})"


class ExplorerSession:
    """What the cost explorer knows about this machine in this session, in one object: the
    ceilings it measured (per dtype), the quick ceilings a first plan uses before any ceilings
    exist, the last measurement per dtype (the calibration that scales later predictions) and how
    far the roofline model was off it. Explorers given the same session share it; nothing lives in
    a module global."""

    def __init__(self, device=None, docs: Optional[List[dict]] = None):
        self.device = get_device(device)
        self.device_name = device_name(self.device)
        self.docs = records.load_all() if docs is None else list(docs)
        self.sizes = get_sizes(device=self.device)
        self.live_ceilings: Dict[str, Ceilings] = {}  # dtype -> measured this session
        self.calibrations: Dict[str, Calibration] = {}  # dtype -> the last measurement
        self.checks: Dict[str, Dict[str, object]] = {}  # dtype -> the last measurement's check_steps row
        self.quick: Dict[str, Ceilings] = {}  # dtype -> ``ceilings.quick_ceilings``

    # -- what is known ------------------------------------------------------------------------
    def ceilings(self, dtype: str) -> Optional[Ceilings]:
        """This session's ceilings in ``dtype``, else the results files' for this device, else (a
        GPU) its datasheet's (``measure.ceilings.ceilings_for``)."""
        return ceil.ceilings_for(self.device_name, dtype, self.docs, self.live_ceilings.get(dtype), self.device.type)

    def calibration(self, s: ExplorerSettings) -> Optional[Calibration]:
        """This session's last measurement in ``s.dtype`` when it applies to ``s`` (``applies``),
        else the results files' comparable step nearest to ``s``."""
        c = self.calibrations.get(s.dtype)
        if c is not None and applies(c, s) is None:
            return c
        return calibration_from_results(self.docs, self.device_name, s.dtype, s) or c

    def predict(self, s: ExplorerSettings) -> "CostPrediction":
        """``predict_cost`` on what this session knows; a roofline prediction that no measurement
        scaled says how far the model was off the last step measured here (same rounds)."""
        p = predict_cost(s, self.calibration(s), self.device.type, self.ceilings(s.dtype))
        row = self.checks.get(s.dtype)
        if p.step_ms is not None and p.scaled_by is None and row is not None:
            p.basis += (f"; unscaled, so read it with the model's error on this machine: "
                        f"{error_words(row)} on {row['label']} (measured now, in the same rounds as the ceilings)")
        return p

    # -- planning --------------------------------------------------------------------------------
    def ceiling_probes(self, dtype: str) -> List[ceil.Probe]:
        return ceil.probes(self.device, dtype, *explorer_probe_sizes(self.device))

    def quick_ceilings(self, dtype: str) -> Ceilings:
        """``ceilings.quick_ceilings`` (a fraction of a second, once per dtype): what a plan made
        before this device's ceilings are measured predicts with, in the same roofline model."""
        if dtype not in self.quick:
            self.quick[dtype] = ceil.quick_ceilings(self.device, dtype)
        return self.quick[dtype]

    def setup_seconds(self, s: ExplorerSettings) -> Tuple[float, str]:
        """Predicted seconds of the press beside the step's own: building the model and timing the
        ceilings' probes in every round (``timing.rounds_seconds`` of each call at the quick
        ceilings' rates)."""
        c = self.ceilings(s.dtype) or self.quick_ceilings(s.dtype)
        flops_s, bytes_s = c.peak_flops, c.bandwidth
        probe_s = 0.0
        for p in self.ceiling_probes(s.dtype):
            call = 1e-4 if p.ceiling == "overhead_s" else p.amount / (flops_s if p.ceiling == "peak_flops" else bytes_s)
            probe_s += rounds_seconds(call, EXPLORER_MIN_RUN_TIME, EXPLORER_ROUNDS)
        secs = cost.num_params(s.config()) * INIT_S_PER_PARAM + probe_s
        return secs, f"building the model and timing this machine's ceilings in each of the {EXPLORER_ROUNDS} rounds"

    def plan(self, s: ExplorerSettings, budget_s: float = MEASURE_BUDGET_S) -> MeasurementPlan:
        """What "Measure now" will do for ``s`` and how long all of it takes (``plan_measurement``
        with the setup included)."""
        c = self.ceilings(s.dtype)
        setup_s, setup = self.setup_seconds(s)
        row = self.checks.get(s.dtype)  # how far the roofline model was off here, last time
        fix = None
        if c is not None and row and row.get("roofline_ms"):
            fix = (row["measured_ms"] / row["roofline_ms"], f"measured / predicted for {row['label']} here")
        return plan_measurement(s, self.calibration(s), self.device.type, available_bytes(self.device),
                                budget_s=budget_s, ceilings=c or self.quick_ceilings(s.dtype),
                                setup_s=setup_s, setup=setup, correction=fix)

    def memory_refusal(self, p: "CostPrediction") -> Optional[str]:
        """Why ``p``'s settings cannot be measured here (predicted memory above what this machine
        has free), or None."""
        need, free = int(p.memory["total"]), available_bytes(self.device)
        if free is None or need <= free:
            return None
        return (f"Not measurable here: predicted memory {fmt_bytes(need)} of {fmt_bytes(free)} available "
                f"on {self.device_name}; lower B or T, or use a smaller model.")

    # -- measuring -------------------------------------------------------------------------------
    def measure(self, plan: MeasurementPlan,
                progress: Optional[Callable[[int, str], None]] = None) -> Measurement:
        """Carry out ``plan``: one model of ``plan.measured``, timed in ``EXPLORER_ROUNDS`` rounds in
        turn with the ceilings' probes (``roofline.check_steps``: the ceilings, the step and the
        roofline model's error all from the same minutes), profiled (``profile_step``) and
        memory-accounted (``memory_breakdown``); calibrate; scale to ``plan.requested`` when the plan
        measured a reduced size. ``progress(i, what)`` is told each of the 4 stages. Raises what
        the step raises."""
        if plan.action == "refuse":
            raise ValueError(f"plan.action='refuse': {plan.message()}")
        say = progress or (lambda i, what: None)
        t0 = time.perf_counter()
        s, m_s = plan.requested, plan.measured
        before = self.predict(s)
        say(0, "building the model")
        cfg = m_s.config()
        model = GPT(cfg)  # one model for the three measurements
        say(1, f"the ceilings and the step, timed in turn ({EXPLORER_ROUNDS} rounds)")
        label = f"{m_s.preset}, B={m_s.batch_size}, T={m_s.seq_len}"
        res = roofline.check_steps([roofline.StepCheck(label, cfg, m_s.batch_size, m_s.seq_len, model=model,
                                                        adamw=m_s.adamw, compile=m_s.compile,
                                                        grad_accum=m_s.grad_accum)],
                                   self.ceiling_probes(m_s.dtype), self.device, m_s.dtype, EXPLORER_ROUNDS,
                                   EXPLORER_MIN_RUN_TIME, progress=False)
        row = dict(res["rows"][0], label=label)
        if row["error"]:
            raise RuntimeError(row["error"])
        self.live_ceilings[s.dtype], self.checks[s.dtype] = res["ceilings"], row
        step_ms = measured_ms = row["measured_ms"]
        micro = m_s.batch_size // m_s.grad_accum  # what one forward and backward runs on
        say(2, "profiling components (torch.profiler)")
        pr = profile_step(cfg, micro, m_s.seq_len, mode="train", device=self.device, dtype=m_s.dtype,
                          steps=1, warmup=0, model=model)  # warm already
        say(3, "memory (saved-tensor accounting)")
        mb = memory_breakdown(cfg, micro, m_s.seq_len, device=self.device, dtype=m_s.dtype, model=model)
        say(4, "done")
        scope_ms = profile_scope_ms(pr.rows, measured_ms)
        cal = Calibration.from_measurement(m_s, measured_ms, str(self.device), self.device_name, scope_ms,
                                           planned_for=s)
        self.calibrations[s.dtype] = cal
        acts, kinds = mb.activations_by_group(), mb.by_kind()
        if plan.action == "reduced":
            # the measured per-component rates applied to the requested size's work (the optimizer's
            # part does not shrink with B and T, so this is not a plain ratio) ...
            step_ms = predict_cost(s, cal, self.device.type, self.live_ceilings[s.dtype]).step_ms
            # ... and the activations by the cost model's exact ratio
            want = predict_memory(s.config(), s.batch_size, s.seq_len, s.dtype, s.grad_accum)
            got = predict_memory(cfg, m_s.batch_size, m_s.seq_len, m_s.dtype, m_s.grad_accum)
            ratio = want["by_kind"]["activations"] / max(1, got["by_kind"]["activations"])
            acts = {k: v * ratio for k, v in acts.items()}
            kinds = {**kinds, "activations": kinds["activations"] * ratio}
        total = sum(scope_ms.values())
        f = step_ms / measured_ms
        return Measurement(settings=s, measured=m_s, plan=plan, step_ms=step_ms, measured_step_ms=measured_ms,
                           range_ms=(row["measured_ms_min"] * f, row["measured_ms_max"] * f), scale=f,
                           time_share={k: v / total for k, v in scope_ms.items()} if total else {},
                           memory={"by_kind": kinds, "activations_by_group": acts, "total": sum(kinds.values())},
                           before=before, device_name=self.device_name, seconds=time.perf_counter() - t0,
                           check=row, ceilings=res["ceilings"])


# ---- calibration and ceilings from results files ------------------------------------------------
def calibration_from_results(docs: List[dict], device_name: str, dtype: str,
                             settings: Optional[ExplorerSettings] = None) -> Optional[Calibration]:
    """The recorded training step on ``device_name`` in ``dtype`` to scale a prediction for
    ``settings`` by: comparable to it (``comparable``), the nearest in tokens per step, newest file
    first. Without ``settings``: the newest file's first step."""
    best = None
    for doc in docs:
        meta = doc["meta"]
        if meta.get("device_name") != device_name:
            continue
        for st in recorded_steps(doc):
            if st["dtype"] != dtype:
                continue
            try:
                es = ExplorerSettings.from_config(st["config"], st["T"], st["B"], dtype)
            except ValueError:
                continue
            if settings is not None and comparable(es, settings) is not None:
                continue
            dist = 1.0 if settings is None else tokens_apart(es, settings)
            if best is None or dist < best[0]:
                best = (dist, Calibration(source=f"{Path(doc.get('_path', 'results.json')).name} ({st['kind']})",
                                          device=meta.get("device", ""), device_name=device_name, dtype=dtype,
                                          settings=es, step_ms=st["ms"]))
        if best is not None:
            return best[1]
    return None


# ---- exercise ----------------------------------------------------------------------------------
def crossover_seq_len(attn_backend: str = "sdpa", preset: str = "gpt2_small", max_pow: int = 20) -> int:
    """The smallest power-of-two T at which the attention core (QK^T, softmax, AV) costs more
    forward+backward FLOPs than the whole MLP (up, activation, down), per the analytic model."""
    for p in range(0, max_pow + 1):
        T = 2 ** p
        cfg = get_config(preset, attn_backend=attn_backend, block_size=max(1024, T))
        f = flop_breakdown(cfg, 1, T)
        if f["attention.core"] > f["mlp.up"] + f["mlp.act"] + f["mlp.down"]:
            return T
    raise ValueError(f"no crossover below T=2**{max_pow} for {preset}/{attn_backend}")


def check_crossover(answer, attn_backend: str = "sdpa") -> str:
    """Check a learner's crossover T (see ``crossover_seq_len``); returns a verdict string."""
    want = crossover_seq_len(attn_backend)
    try:
        got = int(answer)
    except (TypeError, ValueError):
        return f"✗ expected a power of two such as 1024, got {answer!r}"
    if got == want:
        return f"✓ correct: from T={want:,} on, attention's core outweighs the MLP ({attn_backend})"
    if got == crossover_seq_len("eager") and attn_backend != "eager":
        return ("✗ that is the crossover for eager attention, which computes the full T x T; "
                f"{attn_backend} skips the masked half")
    hint = "larger" if got < want else "smaller"
    return f"✗ {got:,} is not it: try a {hint} T (move the explorer's T slider and watch attention.core)"
