"""The explorer playground (99) as plain functions: the cost explorer's predictions, no widgets.

``tutorial_lib.widgets`` only wires sliders to these; everything a slider changes is computed here
from the measuring kit (``measure.flops.cost_table``), so it can be tested and printed without a
browser.

- ``predict_cost(ExplorerSettings, calibration)``: per-component FLOP shares, predicted time
  shares and step time, and the training-memory breakdown of one GPT step.
- ``Calibration``: the last measurement on this device (a "Measure now" run, or a results file
  from ``python -m tutorial_lib bench``) that turns FLOPs into milliseconds.
- ``calibration_from_results``: the same from a results file measured on this device.
- ``crossover_seq_len`` / ``check_crossover``: the playground's exercise.

The lesson explorers' numbers live in their lessons (``gqa.gqa_point``,
``flash_attention.flash_point``, ``sliding_window.window_point``); the decision tree in
``lessons.decision``.

How time is predicted. Each profiler scope gets a *work* number from the analytic model: matmul
FLOPs of forward + backward as the kernel does them (full T x T for eager attention and for a
band mask; the causal half for SDPA/flex without a window, whose kernels skip masked tiles) plus
the elementwise estimate (x3: forward and backward). Without a measurement the predicted time
share is the work share -- the compute-bound assumption, and it is labelled so. With one, each
scope's measured milliseconds give it a rate (work per ms) at the measured config; a new config's
time per scope is its work / that rate (scopes the measurement did not see use the whole step's
rate). Memory: parameters, gradients (fp32), AdamW's two fp32 moments, and the activations the
analytic model says forward writes, at the compute dtype's element size.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from tutorial_lib import scopes
from tutorial_lib.measure import flops as F
from tutorial_lib.measure import records
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
                            window=self.window, attn_backend=backend,
                            block_size=max(base.block_size, self.seq_len))

    @classmethod
    def from_config(cls, cfg: GPTConfig, seq_len: int, batch_size: int, dtype: str) -> "ExplorerSettings":
        """The settings of a measured config (its preset's other fields must be the preset's)."""
        return cls(preset=cfg.name, seq_len=seq_len, batch_size=batch_size, n_kv_head=cfg.n_kv_head,
                   mlp=cfg.mlp, mlp_ratio=cfg.mlp_ratio, window=cfg.window,
                   attn_backend=cfg.attn_backend, dtype=dtype)

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
    """One measured training step on this device: turns analytic work into milliseconds."""
    source: str  # "measured now" or the results file it came from
    device: str
    device_name: str
    dtype: str
    label: str  # what was measured (config, B, T)
    step_ms: float  # measured ms per training step
    global_rate: float  # total work / step_ms (work of the measured config)
    scope_rates: Dict[str, float] = field(default_factory=dict)  # per scope: work / measured ms
    scope_ms: Dict[str, float] = field(default_factory=dict)  # measured ms per scope, if profiled

    @classmethod
    def from_measurement(cls, settings: ExplorerSettings, step_ms: float, device: str,
                         device_name: str, scope_ms: Optional[Dict[str, float]] = None,
                         source: str = "measured now") -> "Calibration":
        """From a measured step time and (optionally) the measured ms per scope."""
        if not step_ms or step_ms <= 0:
            raise ValueError(f"step_ms={step_ms!r} must be > 0")
        cfg = settings.config()
        work = scope_work(cfg, settings.batch_size, settings.seq_len, device.split(":")[0])
        rates = {}
        for s, ms in (scope_ms or {}).items():
            if ms > 0 and work.get(s, 0) > 0:
                rates[s] = work[s] / ms
        return cls(source=source, device=device, device_name=device_name, dtype=settings.dtype,
                   label=settings.describe(), step_ms=step_ms,
                   global_rate=model_work(work) / step_ms, scope_rates=rates,
                   scope_ms=dict(scope_ms or {}))


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
    time_ms: Optional[Dict[str, float]]  # per scope (incl. optimizer), None without calibration
    time_share: Dict[str, float]
    step_ms: Optional[float]
    basis: str  # how time was predicted, said in words
    memory: Dict[str, object]

    @property
    def total_flops(self) -> float:
        return sum(self.flops.values())

    def summary(self) -> str:
        """One line: sizes, FLOPs, predicted time and memory -- printed numbers come from here."""

        t = f"{self.step_ms:,.1f} ms/step" if self.step_ms is not None else "no time (not calibrated)"
        return (f"{self.settings.describe()}: {self.total_flops / 1e12:,.3f} TFLOP fwd+bwd, {t}, "
                f"training memory {fmt_bytes(self.memory['total'])}")


def predict_cost(settings: ExplorerSettings, calibration: Optional[Calibration] = None,
                 device_type: str = "cpu") -> CostPrediction:
    """Shares of FLOPs and (predicted) time per scope, and memory, for ``settings``."""
    cfg = settings.config()
    work = scope_work(cfg, settings.batch_size, settings.seq_len, device_type)
    flops = flop_breakdown(cfg, settings.batch_size, settings.seq_len, device_type)
    total = sum(flops.values())
    flop_share = {k: v / total for k, v in flops.items()}
    if calibration is None or calibration.dtype != settings.dtype:
        why = "no measurement on this device yet" if calibration is None else (
            f"the last measurement was in {calibration.dtype}, not {settings.dtype}")
        time_ms, step_ms = None, None
        time_share = dict(flop_share)
        basis = f"time share = FLOP share (compute-bound assumption; {why})"
    else:
        time_ms = {}
        for s, w in work.items():
            if not w:
                continue
            rate = calibration.scope_rates.get(s)
            if rate:
                time_ms[s] = w / rate
            elif s != "optimizer" or not calibration.scope_rates:
                time_ms[s] = w / calibration.global_rate if s != "optimizer" else 0.0
        step_ms = sum(time_ms.values())
        time_share = {k: v / step_ms for k, v in time_ms.items()} if step_ms else {}
        per = "per-component rates" if calibration.scope_rates else "one rate for the whole step"
        basis = (f"scaled by {calibration.source} on {calibration.device_name} ({per}, measured "
                 f"at {calibration.label}: {calibration.step_ms:,.1f} ms/step)")
    mem = predict_memory(cfg, settings.batch_size, settings.seq_len, settings.dtype)
    return CostPrediction(settings, cfg.describe(), flops, flop_share, time_ms, time_share,
                          step_ms, basis, mem)


# ---- "Measure now": how long it would take, and a reduced size when that is too long -----------
MEASURE_BUDGET_S = 20.0  # "Measure now" should answer within this on a laptop
MEASURE_STEP_EQUIVALENTS = 7  # steps one measurement runs: warm-up + 3 timed + profiled + memory + setup
ASSUMED_MATMUL_EFFICIENCY = 0.5  # before any measurement: a step reaches ~half the matmul peak
MIN_MEASURED_SEQ = 64


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
        t = (f"about {self.step_ms / 1e3:,.1f} s per step" if self.step_ms is not None else "time unknown")
        head = f"{self.requested.describe()}: {t}, {mem}"
        if self.action == "refuse":
            return (f"{head}. Not measured: the step needs more memory than this machine has free; "
                    f"lower B or T, or use a smaller model.")
        if self.action == "reduced":
            full_s = self.seconds * self.scale
            return (f"{head}. Measuring it would take ~{full_s:,.0f} s, above the {self.budget_s:.0f} s "
                    f"bound: measuring {self.measured.describe()} instead (~{self.seconds:,.0f} s); its "
                    f"per-component rates calibrate the cost model, which scales the time to the requested "
                    f"size (~{self.scale:.2f}x here).")
        return f"{head}. Measuring it takes ~{self.seconds:,.0f} s." if self.seconds else f"{head}."


def _step_work(s: ExplorerSettings, device_type: str) -> float:
    return model_work(scope_work(s.config(), s.batch_size, s.seq_len, device_type))


ADAMW_BYTES_PER_PARAM = 28  # AdamW reads weight, grad and two moments, writes weight and moments (fp32)


def predict_step_ms(settings: ExplorerSettings, calibration: Optional[Calibration] = None,
                    matmul_flops_per_s: Optional[float] = None, memory_bytes_per_s: Optional[float] = None,
                    device_type: str = "cpu") -> tuple:
    """(ms per training step, basis) for ``settings``.

    From a calibration when there is one for its dtype (``predict_cost``). Else from quick
    machine numbers: forward+backward FLOPs at ``ASSUMED_MATMUL_EFFICIENCY`` of a measured matmul
    peak, plus AdamW's bytes (``ADAMW_BYTES_PER_PARAM`` per parameter) at a measured copy
    bandwidth -- the optimizer's cost does not shrink with B or T. Else (None, why).
    """
    if calibration is not None and calibration.dtype == settings.dtype:
        p = predict_cost(settings, calibration, device_type)
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
        return ms, basis + ": no step measured on this device yet"
    return None, "no calibration and no matmul peak: time unknown"


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
                     memory_bytes_per_s: Optional[float] = None) -> MeasurementPlan:
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
        return predict_step_ms(s, calibration, matmul_flops_per_s, memory_bytes_per_s, device_type)

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


# ---- calibration from results files ------------------------------------------------------------
def _step_points(doc: dict, dtype: str):
    """(ExplorerSettings, median ms) of every measured training step in a results doc: rows that
    carry the measured model's ``config_fields`` (``bench`` rows, the suite's step comparisons)."""
    for r in doc["rows"]:
        fields, ms = r.get("config_fields"), r.get("median_ms") or r.get("ms_per_step")
        if not fields or not ms or r.get("error") or r.get("mode", "train") != "train":
            continue
        if (r.get("dtype") or doc["meta"].get("dtype")) != dtype:
            continue
        try:
            cfg = GPTConfig(**fields)
            yield ExplorerSettings.from_config(cfg, r["seq_len"], r["batch_size"], dtype), ms
        except (ValueError, KeyError, TypeError):
            continue


def calibration_from_results(docs: List[dict], device_name: str, dtype: str) -> Optional[Calibration]:
    """A whole-step calibration from the newest results file measured on ``device_name`` in
    ``dtype``: the median of work / time over its measured training steps."""
    for doc in docs:
        meta = doc["meta"]
        if meta.get("device_name") != device_name:
            continue
        dev = records.device_kind(meta.get("device", "cpu"))
        rates = []
        for s, ms in _step_points(doc, dtype):
            w = model_work(scope_work(s.config(), s.batch_size, s.seq_len, dev))
            rates.append((w / ms, ms, s.describe()))
        if rates:
            rates.sort()
            mid = rates[len(rates) // 2]
            return Calibration(source=f"{len(rates)} measured step(s) in {Path(doc['_path']).name}",
                               device=meta.get("device", ""), device_name=device_name, dtype=dtype,
                               label=mid[2], step_ms=mid[1], global_rate=mid[0])
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
