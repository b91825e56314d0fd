"""The explorer playground (99) as plain functions: the cost explorer's predictions, no widgets.

``tutorial_lib.widgets`` only wires sliders to these; everything a slider changes is computed here
from the measuring kit (``measure.flops.cost_table``), so it can be tested and printed without a
browser.

- ``predict_cost(ExplorerSettings, calibration, device_type, ceilings)``: per-component FLOP shares,
  predicted time per component and per step, and the training-memory breakdown of one GPT step.
- ``Calibration`` / ``comparable``: a measured step (a "Measure now" run, or a results file from
  ``python -m tutorial_lib bench``) and the rule for when it may scale a prediction.
- ``calibration_from_results`` / ``ceilings_from_results``: the same from results files measured
  on this device.
- ``crossover_seq_len`` / ``check_crossover``: the playground's exercise.

The lesson explorers' numbers live in their lessons (``gqa.gqa_point``,
``flash_attention.flash_point``, ``sliding_window.window_point``); the decision tree in
``lessons.decision``.

How time is predicted. The roofline model (``measure.roofline``, notebook 09): every kernel the
eager step launches takes max(FLOPs / peak, bytes / bandwidth) plus a per-operator overhead, on
*ceilings* of this device -- measured (``measure_ceilings``: "Measure now" measures them once, the
guide suite records them) or, for a GPU, its datasheet ("spec"). Without ceilings the time share
shown is the FLOP share, labelled as the compute-bound assumption it is. A measured step scales the
prediction only when it is comparable work: the same model preset and dtype, and tokens per step
within a factor of 2 (``SIZE_CLASS``); then each component is scaled by its own measured /
predicted ratio at the measured settings, and ``basis`` names the measurement and how far apart
the sizes are. Memory: parameters, gradients (fp32), AdamW's two fp32 moments, and the activations
the analytic model says forward writes, at the compute dtype's element size.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from tutorial_lib import scopes
from tutorial_lib.lessons.roofline import ceilings_for, recorded_steps
from tutorial_lib.measure import flops as F
from tutorial_lib.measure import roofline as R
from tutorial_lib.measure.memory import fmt_bytes
from tutorial_lib.measure.profile import GRAD_ACC
from tutorial_lib.model import GPTConfig, get_config
from tutorial_lib.settings import DTYPE_NAMES, dtype_bytes

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

    def __post_init__(self):
        for name in ("seq_len", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ExplorerSettings.{name}={v!r} must be a positive integer")
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"ExplorerSettings.dtype={self.dtype!r} is not one of {list(DTYPE_NAMES)}")
        self.config()  # validates the rest (GPTConfig raises ValueError naming the field)

    def config(self) -> GPTConfig:
        """The GPTConfig these settings describe (block_size raised to seq_len if needed)."""
        base = get_config(self.preset)
        backend = self.attn_backend
        if backend == "local" and self.window is None:
            backend = "sdpa"  # a local window of the full length is plain causal attention
        return base.replace(n_kv_head=self.n_kv_head, mlp=self.mlp, mlp_ratio=self.mlp_ratio,
                            window=self.window, attn_backend=backend, loss_impl=self.loss_impl,
                            block_size=max(base.block_size, self.seq_len))

    @classmethod
    def from_config(cls, cfg: GPTConfig, seq_len: int, batch_size: int, dtype: str) -> "ExplorerSettings":
        """The settings of a measured config (its preset's other fields must be the preset's)."""
        return cls(preset=cfg.name, seq_len=seq_len, batch_size=batch_size, n_kv_head=cfg.n_kv_head,
                   mlp=cfg.mlp, mlp_ratio=cfg.mlp_ratio, window=cfg.window,
                   attn_backend=cfg.attn_backend, dtype=dtype, loss_impl=cfg.loss_impl)

    def replace(self, **changes) -> "ExplorerSettings":
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        return f"{self.config().describe()}; B={self.batch_size}, T={self.seq_len}, {self.dtype}"


def scope_work(config: GPTConfig, batch_size: int, seq_len: int, device_type: str = "cpu") -> Dict[str, float]:
    """Work per profiler scope for one training step: matmul FLOPs (fwd + bwd, as the kernel does
    them) + 3 x the elementwise estimate; "optimizer" is the parameter count (AdamW's work is
    per parameter), and the embedding adds its table's size (its backward writes a dense
    (vocab, n_embd) gradient every step). Units differ per scope; only ratios within a scope
    are used for time."""
    out = flop_breakdown(config, batch_size, seq_len, device_type)
    out["embedding"] += config.padded_vocab_size * config.n_embd
    out["optimizer"] = float(F.num_params(config))
    return out


def flop_breakdown(config: GPTConfig, batch_size: int, seq_len: int, device_type: str = "cpu") -> Dict[str, float]:
    """FLOPs (matmul + elementwise estimate) of forward + backward per scope, no optimizer."""
    out: Dict[str, float] = {s: 0.0 for s in DISPLAY_SCOPES if s != "optimizer"}
    for r in F.cost_table(config, batch_size, seq_len, device_type=device_type):
        out[r.scope or "other"] += r.fwd_flops_work + r.bwd_flops_work + 3 * r.fwd_other_flops
    return out


def predict_memory(config: GPTConfig, batch_size: int, seq_len: int, dtype: str = "float32") -> Dict[str, object]:
    """Training-step memory from the cost model (``measure.flops.training_memory``), every
    activation group present (zero where this config has none)."""
    mem = F.training_memory(config, batch_size, seq_len, dtype_bytes(dtype))
    mem["activations_by_group"] = {g: mem["activations_by_group"].get(g, 0) for g in MEMORY_GROUPS}
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

    @property
    def label(self) -> str:
        return self.settings.describe()

    @classmethod
    def from_measurement(cls, settings: ExplorerSettings, step_ms: float, device: str,
                         device_name: str, scope_ms: Optional[Dict[str, float]] = None,
                         source: str = "measured now") -> "Calibration":
        """From a measured step time and (optionally) the measured ms per display scope."""
        if not step_ms or step_ms <= 0:
            raise ValueError(f"step_ms={step_ms!r} must be > 0")
        return cls(source=source, device=device, device_name=device_name, dtype=settings.dtype,
                   settings=settings, step_ms=float(step_ms), scope_ms=dict(scope_ms or {}))


SIZE_CLASS = 2.0  # a measurement scales predictions for tokens per step within this factor of its own


def tokens_apart(a: ExplorerSettings, b: ExplorerSettings) -> float:
    """How far apart two settings' tokens per step are, as a factor >= 1."""
    ta, tb = a.batch_size * a.seq_len, b.batch_size * b.seq_len
    return max(ta, tb) / min(ta, tb)


def comparable(measured: ExplorerSettings, wanted: ExplorerSettings) -> Optional[str]:
    """None when a measurement of ``measured`` may scale a prediction for ``wanted``: the same model
    preset and dtype, and tokens per step within ``SIZE_CLASS`` (the same size class); else why not.
    (One measurement of ``tiny`` once re-scaled GPT-2 small's prediction sevenfold: never again.)"""
    if measured.preset != wanted.preset:
        return f"it measured {measured.preset}, not {wanted.preset}"
    if measured.dtype != wanted.dtype:
        return f"it ran in {measured.dtype}, not {wanted.dtype}"
    f = tokens_apart(measured, wanted)
    if f > SIZE_CLASS:
        return f"its tokens per step are {f:,.1f}x apart from these (more than {SIZE_CLASS:g}x)"
    return None


def roofline_scope_ms(prediction: R.StepPrediction) -> Dict[str, float]:
    """A roofline prediction's ms per display scope (forward + backward; AdamW as "optimizer")."""
    out: Dict[str, float] = {}
    for (scope, _), ms in prediction.ms.items():
        key = scope if scope in DISPLAY_SCOPES else "other"
        out[key] = out.get(key, 0.0) + ms
    return out


def scale_factors(calibration: Calibration, ceilings: R.Ceilings, device_type: str) -> Dict[str, float]:
    """measured / predicted at the calibration's own settings, per display scope that both the
    profile and the model have ("step": the whole step, for the rest)."""
    s = calibration.settings
    pred = R.predict_step(s.config(), s.batch_size, s.seq_len, ceilings, dtype=s.dtype, device_type=device_type)
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
                 device_type: str = "cpu", ceilings: Optional[R.Ceilings] = None,
                 across_sizes: bool = False) -> CostPrediction:
    """Shares of FLOPs and predicted time per scope, and memory, for ``settings``.

    Time comes from the roofline model (``measure.roofline.predict_step``) on ``ceilings`` -- this
    device's, measured, or a GPU's datasheet. A ``calibration`` of *comparable* work (same model,
    dtype and size class, see ``comparable``) then scales each component by measured / predicted
    at its own settings; anything else leaves the prediction unscaled, and ``basis`` says why.
    ``across_sizes=True`` scales by a calibration of the same model at another B and T too ("Measure
    now" measuring a reduced size of the requested step)."""
    cfg = settings.config()
    flops = flop_breakdown(cfg, settings.batch_size, settings.seq_len, device_type)
    total = sum(flops.values())
    flop_share = {k: v / total for k, v in flops.items()}
    mem = predict_memory(cfg, settings.batch_size, settings.seq_len, settings.dtype)
    if ceilings is None or ceilings.dtype not in (settings.dtype, "tf32" if settings.dtype == "float32" else ""):
        why = ("no ceilings for this device yet (Measure now measures them; so does "
               "python -m tutorial_lib bench --suite guide)" if ceilings is None else
               f"the ceilings were measured in {ceilings.dtype}, not {settings.dtype}")
        return CostPrediction(settings, cfg.describe(), flops, flop_share, None, dict(flop_share), None,
                              f"time share = FLOP share (compute-bound assumption; {why})", mem)
    pred = R.predict_step(cfg, settings.batch_size, settings.seq_len, ceilings, dtype=settings.dtype,
                          device_type=device_type)
    time_ms = roofline_scope_ms(pred)
    where = f"{ceilings.device_name} ({ceilings.source} ceilings)"
    basis = f"roofline model on {where}"
    scaled_by = None
    why_not = None
    if calibration is not None:
        why_not = comparable(calibration.settings, settings)
        if across_sizes and why_not is not None and calibration.settings.replace(
                batch_size=settings.batch_size, seq_len=settings.seq_len, window=settings.window) == settings:
            why_not = None  # the same model at another size: the per-component rates carry over
        if why_not is None:
            f = scale_factors(calibration, ceilings, device_type)
            time_ms = {k: v * f.get(k, f["step"]) for k, v in time_ms.items()}
            per = "per component" if len(f) > 1 else "one factor for the step"
            scaled_by = (f"{calibration.source}: {calibration.label}, {calibration.step_ms:,.1f} ms/step measured "
                         f"vs {calibration.step_ms / f['step']:,.1f} predicted")
            basis += (f", scaled {per} by {scaled_by} (tokens per step "
                      f"{tokens_apart(calibration.settings, settings):,.2g}x apart)")
        else:
            basis += f"; not scaled by {calibration.source} ({calibration.label}): {why_not}"
    step_ms = sum(time_ms.values())
    time_share = {k: v / step_ms for k, v in time_ms.items()} if step_ms else {}
    return CostPrediction(settings, cfg.describe(), flops, flop_share, time_ms, time_share, step_ms, basis, mem,
                          roofline_ms=pred.total_ms, flop_only_ms=pred.flop_only_ms, scaled_by=scaled_by)


# ---- "Measure now": how long it would take, and a reduced size when that is too long -----------
MEASURE_BUDGET_S = 20.0  # "Measure now" should answer within this on a laptop
MEASURE_STEP_EQUIVALENTS = 7  # steps one measurement runs: warm-up + 3 timed + profiled + memory + setup
ASSUMED_MATMUL_EFFICIENCY = 0.5  # before any measurement: a step reaches ~half the matmul peak
MIN_MEASURED_SEQ = 64


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
        if self.action == "reduced":
            full_s = self.seconds * self.scale
            return (f"{head}. Measuring it would take ~{seconds_text(full_s)}, above the {self.budget_s:.0f} s "
                    f"bound: measuring {self.measured.describe()} instead (~{seconds_text(self.seconds)}); its "
                    f"per-component rates calibrate the cost model, which scales the time to the requested "
                    f"size (~{self.scale:.2f}x here).")
        return f"{head}. Measuring it takes ~{seconds_text(self.seconds)}." if self.seconds else f"{head}."


ADAMW_BYTES_PER_PARAM = 28  # AdamW reads weight, grad and two moments, writes weight and moments (fp32)


def predict_step_ms(settings: ExplorerSettings, calibration: Optional[Calibration] = None,
                    matmul_flops_per_s: Optional[float] = None, memory_bytes_per_s: Optional[float] = None,
                    device_type: str = "cpu", ceilings: Optional[R.Ceilings] = None) -> tuple:
    """(ms per training step, basis) for ``settings``.

    From the roofline model when this device's ``ceilings`` are known (``predict_cost``, scaled
    by ``calibration`` when it measured comparable work). Else from quick machine numbers:
    forward+backward FLOPs at ``ASSUMED_MATMUL_EFFICIENCY`` of a measured matmul peak, plus AdamW's
    bytes (``ADAMW_BYTES_PER_PARAM`` per parameter) at a measured copy bandwidth -- the optimizer's
    cost does not shrink with B or T. Else (None, why).
    """
    if ceilings is not None:
        p = predict_cost(settings, calibration, device_type, ceilings)
        if p.step_ms is not None:
            return p.step_ms, p.basis
    if matmul_flops_per_s:
        cfg = settings.config()
        fl = F.model_flops(cfg, settings.batch_size, settings.seq_len, mode="fwdbwd", causal=True,
                           device_type=device_type)
        ms = fl / (ASSUMED_MATMUL_EFFICIENCY * matmul_flops_per_s) * 1e3
        basis = (f"FLOPs at {ASSUMED_MATMUL_EFFICIENCY:.0%} of a measured matmul peak "
                 f"({matmul_flops_per_s / 1e9:,.0f} GFLOP/s)")
        if memory_bytes_per_s:
            ms += F.num_params(cfg) * ADAMW_BYTES_PER_PARAM / memory_bytes_per_s * 1e3
            basis += f", AdamW's bytes at a measured {memory_bytes_per_s / 1e9:,.1f} GB/s"
        return ms, basis + ": no ceilings measured on this device yet"
    return None, "no ceilings and no matmul peak: time unknown"


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
        out.append(s.replace(batch_size=B, seq_len=T, window=w))


def plan_measurement(settings: ExplorerSettings, calibration: Optional[Calibration] = None,
                     matmul_flops_per_s: Optional[float] = None, device_type: str = "cpu",
                     available: Optional[int] = None, budget_s: float = MEASURE_BUDGET_S,
                     steps: int = MEASURE_STEP_EQUIVALENTS,
                     memory_bytes_per_s: Optional[float] = None,
                     ceilings: Optional[R.Ceilings] = None) -> MeasurementPlan:
    """Decide how "Measure now" measures ``settings`` within ``budget_s`` seconds.

    The measurement runs about ``steps`` training steps; at the predicted step time
    (``predict_step_ms``) that is its wall time. Within the budget: measure as asked. Above it:
    the largest of ``reduced_sizes`` that fits (else the smallest); its measurement calibrates
    the cost model, which then predicts the requested size (``scale`` = predicted requested /
    predicted measured step) -- said in ``message()``. When the requested step's predicted memory
    (``predict_memory``) exceeds ``available`` bytes: refuse.
    """
    if not budget_s > 0:
        raise ValueError(f"budget_s={budget_s!r} must be > 0")
    mem = int(predict_memory(settings.config(), settings.batch_size, settings.seq_len, settings.dtype)["total"])

    def step_ms(s):
        return predict_step_ms(s, calibration, matmul_flops_per_s, memory_bytes_per_s, device_type, ceilings)

    full_ms, basis = step_ms(settings)
    plan = MeasurementPlan(settings, settings, "measure", 1.0, full_ms,
                           None if full_ms is None else steps * full_ms / 1e3, budget_s, mem, available, basis)
    if available is not None and mem > available:
        plan.action = "refuse"
        return plan
    if plan.seconds is None or plan.seconds <= budget_s:
        return plan
    candidates = reduced_sizes(settings)
    if not candidates:
        return plan
    for c in candidates:
        c_ms = step_ms(c)[0]
        if steps * c_ms / 1e3 <= budget_s:
            break
    plan.action, plan.measured, plan.scale = "reduced", c, full_ms / c_ms
    plan.seconds = steps * c_ms / 1e3
    return plan


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


def ceilings_from_results(docs: List[dict], device_name: str, device_type: str, dtype: str
                          ) -> Optional[R.Ceilings]:
    """This device's measured ceilings from the newest results file that has them, else (a GPU)
    its datasheet's, else None."""
    return ceilings_for(device_name, dtype, docs, device=device_type)


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
