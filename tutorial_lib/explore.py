"""The computations behind the explorer widgets: plain functions, no ipywidgets, no display.

``tutorial_lib.widgets`` only wires sliders to these; everything a slider changes is computed here
from the measuring kit (``measure.flops.cost_table``, ``gqa.kv_cache_bytes``, ``window``), so it
can be tested and printed without a browser.

- ``predict_cost(ExplorerSettings, calibration)``: per-component FLOP shares, predicted time
  shares and step time, and the training-memory breakdown of one GPT step.
- ``Calibration``: the last measurement on this device (a "Measure now" run, or a results file
  from ``python -m tutorial_lib bench``) that turns FLOPs into milliseconds.
- ``recommend(seq_len, device, goal)``: the decision tree -- which change to make first, with its
  payoff measured on this kind of device when ``results/*.json`` has it, else the analytic one.
- ``gqa_point``, ``flash_point``, ``window_point``: what the lesson explorers show.

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
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from tutorial_lib.config import GPTConfig, get_config

# ---- the cost explorer -----------------------------------------------------------------------
DISPLAY_SCOPES = ("embedding", "attention.qkv", "attention.rope", "attention.core", "attention.out",
                  "mlp.up", "mlp.act", "mlp.down", "norm", "lm_head", "loss", "other", "optimizer")
MEMORY_GROUPS = ("embedding", "attention", "attention scores/probs", "mlp", "norms",
                 "residual stream", "head + loss")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_COMPONENT_MEMORY_GROUP = {
    "embedding": "embedding", "attention.qkv": "attention", "attention.rope": "attention",
    "attention.av": "attention", "attention.out": "attention", "mlp.up": "mlp", "mlp.act": "mlp",
    "mlp.down": "mlp", "norm": "norms", "residual": "residual stream", "lm_head": "head + loss",
    "loss": "head + loss"}
ADAMW_STATE_BYTES_PER_PARAM = 8  # exp_avg + exp_avg_sq, fp32


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
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"ExplorerSettings.dtype={self.dtype!r} is not one of {list(DTYPE_BYTES)}")
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

    def replace(self, **changes) -> "ExplorerSettings":
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        return f"{self.config().describe()}; B={self.batch_size}, T={self.seq_len}, {self.dtype}"


def kernel_skips_masked(config: GPTConfig) -> bool:
    """Does this backend's kernel skip fully-masked tiles (work ~ visible pairs)? SDPA's fused
    causal path and flex's block mask do; a band mask passed to SDPA and eager do not; tiled and
    local are charged their real schedule by the cost model already."""
    if config.attn_backend == "flex":
        return True
    return config.attn_backend == "sdpa" and config.window is None


def scope_work(config: GPTConfig, batch_size: int, seq_len: int, device_type: str = "cpu") -> Dict[str, float]:
    """Work per profiler scope for one training step: matmul FLOPs (fwd + bwd, as the kernel does
    them) + 3 x the elementwise estimate; "optimizer" is the parameter count (AdamW's work is
    per parameter). Units differ per scope; only ratios within a scope are used for time."""
    from tutorial_lib.measure import flops as F

    causal = kernel_skips_masked(config)
    out: Dict[str, float] = {s: 0.0 for s in DISPLAY_SCOPES}
    params = 0
    for r in F.cost_table(config, batch_size, seq_len, device_type=device_type):
        mm = (r.fwd_flops_causal + r.bwd_flops_causal) if causal else (r.fwd_flops + r.bwd_flops)
        out[r.scope or "other"] += mm + 3 * r.fwd_other_flops
        params += r.params
    out["optimizer"] = float(params)
    return out


def flop_breakdown(config: GPTConfig, batch_size: int, seq_len: int, device_type: str = "cpu") -> Dict[str, float]:
    """FLOPs (matmul + elementwise estimate) of forward + backward per scope, no optimizer."""
    w = scope_work(config, batch_size, seq_len, device_type)
    w.pop("optimizer")
    return w


def predict_memory(config: GPTConfig, batch_size: int, seq_len: int, dtype: str = "float32") -> Dict[str, object]:
    """Training-step memory from the analytic model: bytes by kind, activations by group."""
    from tutorial_lib.measure import flops as F

    e = DTYPE_BYTES[dtype]
    rows = F.cost_table(config, batch_size, seq_len, bytes_per_element=e)
    params = sum(r.params for r in rows)
    acts = {g: 0 for g in MEMORY_GROUPS}
    for r in rows:
        if r.name in ("attention.scores", "attention.softmax"):
            g = "attention scores/probs" if config.attn_backend == "eager" else "attention"
        else:
            g = _COMPONENT_MEMORY_GROUP[r.name]
        acts[g] += r.act_bytes
    kinds = {"parameters": 4 * params, "gradients": 4 * params,
             "optimizer state": ADAMW_STATE_BYTES_PER_PARAM * params, "activations": sum(acts.values())}
    return {"by_kind": kinds, "activations_by_group": acts, "total": sum(kinds.values()),
            "params": params}


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
                   global_rate=_model_work(work) / step_ms, scope_rates=rates,
                   scope_ms=dict(scope_ms or {}))


def _model_work(work: Dict[str, float]) -> float:
    return sum(v for k, v in work.items() if k != "optimizer")


def profile_scope_ms(profile_rows: List[dict], step_ms: float) -> Dict[str, float]:
    """A ProfileResult's rows -> ms per display scope, rescaled so they add up to ``step_ms``
    (profiling slows every op; its shares are what we keep)."""
    from tutorial_lib import scopes
    from tutorial_lib.measure.profile import GRAD_ACC

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
        from tutorial_lib.measure.memory import fmt_bytes

        t = f"{self.step_ms:,.1f} ms/step" if self.step_ms is not None else "no time (not calibrated)"
        return (f"{self.settings.describe()}: {self.total_flops / 1e12:,.3f} TFLOP fwd+bwd, {t}, "
                f"training memory {fmt_bytes(self.memory['total'])}")


def predict_cost(settings: ExplorerSettings, calibration: Optional[Calibration] = None,
                 device_type: str = "cpu") -> CostPrediction:
    """Shares of FLOPs and (predicted) time per scope, and memory, for ``settings``."""
    cfg = settings.config()
    work = scope_work(cfg, settings.batch_size, settings.seq_len, device_type)
    flops = {k: v for k, v in work.items() if k != "optimizer"}
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


# ---- results files ---------------------------------------------------------------------------
RESULTS_ENV = "TUTORIAL_RESULTS_DIR"


def results_dir() -> Path:
    """$TUTORIAL_RESULTS_DIR, else the repository's results/ (next to tutorial_lib), else ./results."""
    env = os.environ.get(RESULTS_ENV)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[1] / "results"
    return repo if repo.is_dir() else Path.cwd() / "results"


def load_all_results(directory: Optional[Path] = None) -> List[dict]:
    """Every readable results file (``measure.records`` format) in ``directory``, newest first;
    files that are not results are skipped (each doc gets ``_path``)."""
    from tutorial_lib.measure.records import load_results

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
    return str(device).split(":")[0]


def _label_changes(label: str) -> Dict[str, object]:
    """'gpt2_small n_kv_head=4 attn_backend=eager' (a bench label) -> {'n_kv_head': 4, ...}."""
    out: Dict[str, object] = {}
    for tok in str(label).split()[1:]:
        k, sep, v = tok.partition("=")
        if not sep:
            continue
        for conv in (int, float):
            try:
                out[k] = conv(v)
                break
            except ValueError:
                pass
        else:
            out[k] = None if v == "None" else v
    return out


def _step_points(doc: dict, dtype: str):
    """(ExplorerSettings, median ms) of every measured training step in a results doc that says
    what it measured: ``bench`` rows (kind "step", mode "train") and the guide suite's
    before/after rows (their variants' config changes are in ``suite.BEFORE_AFTER``)."""
    keys = {"n_kv_head", "mlp", "mlp_ratio", "window", "attn_backend"}
    for r in doc["rows"]:
        if r.get("kind") == "step" and r.get("mode") == "train" and r.get("median_ms") \
                and r.get("dtype") == dtype and not r.get("error"):
            ch = {k: v for k, v in _label_changes(r.get("label", "")).items() if k in keys}
            ch.setdefault("attn_backend", r.get("attn_backend") or "sdpa")
            try:
                yield ExplorerSettings(preset=r["preset"], seq_len=r["seq_len"],
                                       batch_size=r["batch_size"], dtype=dtype, **ch), r["median_ms"]
            except (ValueError, KeyError, TypeError):
                continue
    sizes = (doc.get("sections", {}).get("before_after", {}) or {}).get("sizes") or {}
    if doc["meta"].get("dtype") != dtype or not sizes:
        return
    try:
        from tutorial_lib.suite import BEFORE_AFTER
    except ImportError:
        return
    known = dict(BEFORE_AFTER)
    for r in doc["rows"]:
        if r.get("kind") == "before_after" and r.get("variant") in known and r.get("ms_per_step"):
            try:
                yield ExplorerSettings(preset=sizes["model"], seq_len=sizes["T"], batch_size=sizes["B"],
                                       dtype=dtype, **known[r["variant"]]), r["ms_per_step"]
            except (ValueError, KeyError, TypeError):
                continue


def calibration_from_results(docs: List[dict], device_name: str, dtype: str) -> Optional[Calibration]:
    """A whole-step calibration from the newest results file measured on ``device_name`` in
    ``dtype``: the median of work / time over its measured training steps."""
    for doc in docs:
        meta = doc["meta"]
        if meta.get("device_name") != device_name:
            continue
        dev = device_kind(meta.get("device", "cpu"))
        rates = []
        for s, ms in _step_points(doc, dtype):
            w = _model_work(scope_work(s.config(), s.batch_size, s.seq_len, dev))
            rates.append((w / ms, ms, s.describe()))
        if rates:
            rates.sort()
            mid = rates[len(rates) // 2]
            return Calibration(source=f"{len(rates)} measured step(s) in {Path(doc['_path']).name}",
                               device=meta.get("device", ""), device_name=device_name, dtype=dtype,
                               label=mid[2], step_ms=mid[1], global_rate=mid[0])
    return None


# ---- lesson explorers --------------------------------------------------------------------------
def _measured_rows(kind: str, docs: Optional[List[dict]], device: Optional[str]) -> List[Tuple[dict, dict]]:
    """(row, meta) of ``kind`` from results measured on this kind of device, newest file first."""
    if docs is None:
        docs = load_all_results()
    out = []
    for d in docs:
        if device is None or device_kind(d["meta"].get("device", "")) == device_kind(device):
            out += [(r, d["meta"]) for r in d["rows"] if r.get("kind") == kind and not r.get("error")]
    return out


def gqa_point(n_kv_head: int, context: int, batch_size: int = 1, dtype: str = "bfloat16",
              preset: str = "gpt2_small", docs: Optional[List[dict]] = None,
              device: Optional[str] = None) -> Dict[str, object]:
    """KV-cache bytes and decoding cost of GPT-2 small with ``n_kv_head`` K/V heads.

    ``decode_speedup_analytic``: MHA's bytes read per new token / this one's (all weights + the
    cache: decoding one token is memory-bound). ``measured``: tokens/s rows for this n_kv_head
    from results files of this device kind (any context), if there are any.
    """
    from tutorial_lib.decision import decode_bytes_per_token
    from tutorial_lib.gqa import kv_cache_bytes

    base = get_config(preset, block_size=max(1024, context))
    cfg = base.replace(n_kv_head=n_kv_head)  # raises ValueError when it does not divide n_head
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype={dtype!r} is not one of {list(DTYPE_BYTES)}")
    cache, cache_mha = (kv_cache_bytes(c, batch_size, context, dtype) for c in (cfg, base))
    read, read_mha = (decode_bytes_per_token(c, context, dtype) for c in (cfg, base))
    label = "MHA" if cfg.kv_heads == cfg.n_head else ("MQA" if cfg.kv_heads == 1 else f"GQA-{cfg.kv_heads}")
    measured = [{"context": r.get("context"), "tokens_per_s": r.get("tokens_per_s"),
                 "speedup_vs_MHA": r.get("speedup_vs_MHA"), "device_name": m.get("device_name")}
                for r, m in _measured_rows("gqa_decode", docs, device) if r.get("variant") == label]
    return {"label": label, "n_kv_head": cfg.kv_heads, "n_head": cfg.n_head, "context": context,
            "batch_size": batch_size, "dtype": dtype, "cache_bytes": cache, "cache_bytes_mha": cache_mha,
            "cache_ratio": cache / cache_mha, "bytes_per_token": read,
            "decode_speedup_analytic": read_mha / read, "measured": measured}


def flash_point(seq_len: int, batch_size: int = 1, dtype: str = "float32", preset: str = "gpt2_small",
                docs: Optional[List[dict]] = None, device: Optional[str] = None) -> Dict[str, object]:
    """Attention memory at length T: what eager attention writes (scores, probabilities) vs a
    flash kernel (one logsumexp per query), per layer and for the whole training step."""
    e = DTYPE_BYTES[dtype]
    cfg = get_config(preset, block_size=max(1024, seq_len))
    out = {"seq_len": seq_len, "batch_size": batch_size, "dtype": dtype, "n_head": cfg.n_head}
    from tutorial_lib.measure import flops as F
    for backend in ("eager", "sdpa"):
        c = cfg.replace(attn_backend=backend)
        rows = F.cost_table(c, batch_size, seq_len, bytes_per_element=e)
        att = sum(r.act_bytes for r in rows if r.name in ("attention.scores", "attention.softmax"))
        out[f"{backend}_attention_bytes_per_layer"] = att // cfg.n_layer
        out[f"{backend}_training_bytes"] = predict_memory(c, batch_size, seq_len, dtype)["total"]
    out["attention_ratio"] = out["eager_attention_bytes_per_layer"] / out["sdpa_attention_bytes_per_layer"]
    out["training_ratio"] = out["eager_training_bytes"] / out["sdpa_training_bytes"]
    out["measured"] = [{"backend": r.get("backend"), "seq_len": r.get("seq_len"),
                        "saved_bytes": r.get("saved_bytes"), "device_name": m.get("device_name"),
                        "batch_size": r.get("batch_size"), "n_head": r.get("n_head")}
                       for r, m in _measured_rows("flash_vs_T", docs, device) if r.get("saved_bytes")]
    return out


def mask_density(seq_len: int, window: Optional[int], grid: int = 64):
    """(grid, grid) array: the fraction of each block of the (T, T) mask a query may see --
    an honest thumbnail of a mask too big to draw element by element."""
    import numpy as np

    g = min(grid, seq_len)
    edges = np.linspace(0, seq_len, g + 1).astype(int)
    q = np.arange(seq_len)
    lo = np.zeros(seq_len, dtype=np.int64) if window is None else np.maximum(0, q - window + 1)
    out = np.zeros((g, g))
    for j in range(g):
        k0, k1 = edges[j], edges[j + 1]
        n = np.clip(np.minimum(q, k1 - 1) - np.maximum(lo, k0) + 1, 0, None)  # visible keys per query
        for i in range(g):
            q0, q1 = edges[i], edges[i + 1]
            out[i, j] = n[q0:q1].sum() / ((q1 - q0) * (k1 - k0))
    return out


def window_point(window: Optional[int], seq_len: int, n_layer: int = 12, n_head: int = 12,
                 head_dim: int = 64, batch_size: int = 1) -> Dict[str, object]:
    """A sliding window W at length T: visible pairs, attention FLOPs vs full causal, receptive
    field through ``n_layer`` layers (``window=None``: full causal)."""
    from tutorial_lib.measure.flops import visible_pairs
    from tutorial_lib.window import receptive_field, window_flops

    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len={seq_len!r} must be a positive integer")
    if window is not None and (not isinstance(window, int) or window < 1):
        raise ValueError(f"window={window!r} must be None or a positive integer")
    full = window_flops(seq_len, None, head_dim, n_head, batch_size) * n_layer
    win = window_flops(seq_len, window, head_dim, n_head, batch_size) * n_layer
    return {"window": window, "seq_len": seq_len, "pairs": visible_pairs(seq_len, window),
            "pairs_full": visible_pairs(seq_len), "flops": win, "flops_full": full,
            "flop_ratio": full / win, "receptive_field": receptive_field(n_layer, window),
            "n_layer": n_layer}


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
