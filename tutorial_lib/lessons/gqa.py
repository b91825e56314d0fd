"""Grouped-query attention (GQA) and multi-query attention (MQA): conversion, costs, decoding speed.

References: Shazeer 2019, "Fast Transformer Decoding: One Write-Head is All You Need" (MQA);
Ainslie et al. 2023, "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head
Checkpoints" (GQA and *uptraining*: start a GQA model from an MHA checkpoint by mean-pooling the
key and value heads of each group, then train a little).

In this library GQA is one config field: ``GPTConfig.n_kv_head`` (None or ``n_head`` = MHA,
1 = MQA, anything in between = GQA). This module holds what the lesson needs around it:

- ``attention_label(config)``: "MHA" / "GQA-4" / "MQA".
- ``pool_kv_heads`` and ``mha_to_gqa(model, n_kv_head)``: the paper's uptraining start (the
  uptraining itself is ``train.train(converted_model, ...)``).
- ``kv_cache_bytes(config, batch, length)``: analytic KV-cache size (what ``KVCache`` allocates).
- ``attention_params`` and ``gqa_cost_table``: parameters, FLOPs and cache bytes per n_kv_head.
- ``measure_training(config, kv_heads, B, T)``: step time, speedup and memory per n_kv_head.
- ``measure_decode(config, context_lengths)``: tokens/s of KV-cache decoding, with cache bytes.
- ``head_grouping_figure(config)``: the seed's MHA-vs-GQA picture, drawn from configs.
- ``gqa_point``: what the GQA explorer shows for one setting (cache bytes, analytic decode speed).
- ``check_repeat_kv``, ``check_kv_cache_bytes``: the exercises' checkers.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import matplotlib
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from tutorial_lib import settings
from tutorial_lib.lessons.common import CheckResult, call_checked, legend_below, measure_variants
from tutorial_lib.measure import cost, records
from tutorial_lib.measure.ceilings import Ceilings
from tutorial_lib.measure.timing import (
    INIT_S_PER_PARAM,
    SWEEP_ERRORS,
    error_text,
    free_memory,
    progress_bar,
    rounds_seconds,
    time_fn,
)
from tutorial_lib.model import GPT, GPTConfig, KVCache, get_config
from tutorial_lib.speedups import Speedup

GQA_KV_HEADS = (12, 4, 2, 1)  # the seed's table: MHA, GQA-4, GQA-2, MQA for 12 query heads


def attention_label(config: GPTConfig) -> str:
    """'MHA' (n_kv_head == n_head), 'MQA' (one K/V head) or 'GQA-<n_kv_head>'."""
    if config.kv_heads == config.n_head:
        return "MHA"
    if config.kv_heads == 1:
        return "MQA"
    return f"GQA-{config.kv_heads}"


def _check_kv_heads(config: GPTConfig, n_kv_head) -> None:
    if not isinstance(n_kv_head, int) or isinstance(n_kv_head, bool) or n_kv_head < 1:
        raise ValueError(f"n_kv_head={n_kv_head!r} must be a positive integer")
    if config.n_head % n_kv_head:
        raise ValueError(f"n_kv_head={n_kv_head} must divide n_head={config.n_head}")


# ---- MHA -> GQA by mean-pooling (the GQA paper's uptraining start) -------------------------------
def pool_kv_heads(weight: torch.Tensor, n_kv_head: int, new_kv_head: int) -> torch.Tensor:
    """Mean-pool groups of K/V heads of a projection's weight (or bias).

    ``weight`` is (n_kv_head * head_dim, ...) -- a ``k_proj``/``v_proj`` weight (out, in) or bias
    (out,). Heads [g*r, (g+1)*r) with r = n_kv_head // new_kv_head become head g: the same
    grouping ``repeat_kv`` uses, so query head h keeps attending to the mean of the heads its
    group owned. Returns (new_kv_head * head_dim, ...).
    """
    if new_kv_head < 1 or n_kv_head % new_kv_head:
        raise ValueError(f"new_kv_head={new_kv_head} must divide n_kv_head={n_kv_head}")
    if weight.shape[0] % n_kv_head:
        raise ValueError(f"weight rows {weight.shape[0]} are not a multiple of n_kv_head={n_kv_head}")
    head_dim = weight.shape[0] // n_kv_head
    rest = weight.shape[1:]
    w = weight.reshape(new_kv_head, n_kv_head // new_kv_head, head_dim, *rest)
    return w.mean(dim=1).reshape(new_kv_head * head_dim, *rest)


def mha_to_gqa(model, n_kv_head: int):
    """A new GPT with ``n_kv_head`` K/V heads, built from ``model`` (MHA or GQA with more heads).

    Every weight is copied; each group's key and value projections are replaced by the mean of the
    group's heads (Ainslie et al. 2023, section 2.1). ``n_kv_head`` equal to the model's own count
    gives an exact copy. The source model is not changed.
    """

    cfg = model.config
    _check_kv_heads(cfg, n_kv_head)
    if cfg.kv_heads % n_kv_head:
        raise ValueError(f"n_kv_head={n_kv_head} must divide the model's n_kv_head={cfg.kv_heads} "
                         "(heads can be pooled, not split)")
    new = GPT(cfg.replace(n_kv_head=None if n_kv_head == cfg.n_head else n_kv_head))
    p = next(model.parameters())
    new = new.to(device=p.device, dtype=p.dtype)
    state = {}
    for name, t in model.state_dict().items():
        if ".attn.k_proj." in name or ".attn.v_proj." in name:
            t = pool_kv_heads(t, cfg.kv_heads, n_kv_head)
        state[name] = t
    new.load_state_dict(state)
    new.train(model.training)
    return new


# ---- analytic sizes --------------------------------------------------------------------------
def kv_cache_bytes(config: GPTConfig, batch_size: int, seq_len: int, dtype="float32") -> int:
    """Bytes of keys + values cached for ``batch_size`` sequences of ``seq_len`` tokens.

    2 (K and V) x n_layer x batch x n_kv_head x seq_len x head_dim x bytes per element -- exactly
    what ``KVCache(config, batch_size, seq_len, dtype=...)`` allocates.
    """
    for name, v in (("batch_size", batch_size), ("seq_len", seq_len)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    return (2 * config.n_layer * batch_size * config.kv_heads * seq_len * config.head_dim
            * settings.dtype_bytes(dtype))


def attention_params(config: GPTConfig) -> dict:
    """Parameters of one attention layer's projections: q, k, v, o and their total."""
    C, D, b = config.n_embd, config.head_dim, int(config.bias)
    q = C * config.n_head * D + b * config.n_head * D
    k = C * config.kv_heads * D + b * config.kv_heads * D
    o = config.n_head * D * C + b * C
    return {"q": q, "k": k, "v": k, "o": o, "total": q + 2 * k + o}


def gqa_cost_table(config: GPTConfig, kv_heads: Sequence[int] = GQA_KV_HEADS, batch_size: int = 4,
                   seq_len: int = 512, dtype="bfloat16") -> List[dict]:
    """Analytic parameters, training FLOPs and KV-cache bytes of ``config`` for each n_kv_head.

    FLOPs are one forward+backward of the whole model at (batch_size, seq_len), visible pairs only,
    from ``tutorial_lib.measure.cost``; ``attn_proj_flops`` is the q/k/v/o share of them. Ratios are
    against the first entry (normally MHA).
    """

    rows = []
    for h in kv_heads:
        _check_kv_heads(config, h)
        cfg = config.replace(n_kv_head=h)
        table = cost.flops_by_scope(cfg, batch_size, seq_len, None, "visible")
        total = sum(table.values())
        proj = table["attention.qkv"] + table["attention.out"]
        rows.append({
            "attention": attention_label(cfg), "n_kv_head": h, "n_rep": cfg.n_rep,
            "params": cost.num_params(cfg), "attn_params_per_layer": attention_params(cfg)["total"],
            "train_flops": total, "attn_proj_flops": proj,
            "kv_cache_bytes": kv_cache_bytes(cfg, batch_size, seq_len, dtype),
            "batch_size": batch_size, "seq_len": seq_len, "dtype": str(dtype)})
    base = rows[0]
    for r in rows:
        r["params_ratio"] = r["params"] / base["params"]
        r["flops_ratio"] = r["train_flops"] / base["train_flops"]
        r["kv_cache_ratio"] = r["kv_cache_bytes"] / base["kv_cache_bytes"]
    return rows


def kv_head_choices(config: GPTConfig, wanted: Sequence[int] = GQA_KV_HEADS) -> List[int]:
    """The n_kv_head values of ``wanted`` (plus n_head itself) that divide ``config.n_head``, largest
    first: (12, 4, 2, 1) for GPT-2 small, (4, 2, 1) for a 4-head model."""
    hs = {config.n_head} | {h for h in wanted if 1 <= h <= config.n_head and config.n_head % h == 0}
    return sorted(hs, reverse=True)


def quality_kv_heads(config: GPTConfig) -> List[int]:
    """MHA, one GQA in between, and MQA: (12, 4, 1) for 12 heads, (4, 2, 1) for 4 heads."""
    H = config.n_head
    mid = H // 3 if H % 3 == 0 and H > 3 else H // 2
    return sorted({H, max(mid, 1), 1}, reverse=True)


# ---- measured: a training step per n_kv_head ---------------------------------------------------
def measure_training(config: GPTConfig, kv_heads: Sequence[int], batch_size: int, seq_len: int,
                     device=None, dtype=None, min_run_time: Optional[float] = None, rounds: int = 3,
                     memory: bool = True) -> List[dict]:
    """A full training step (AdamW) for each n_kv_head, timed in interleaved rounds
    (``common.measure_variants``): ms per step, and the speedup against the first entry as the
    median of per-round ratios with their range (``speedup_min`` / ``speedup_max``). Memory
    (``memory_breakdown``): params + grads + optimizer state + saved activations, exact on every
    device; the allocator's peak on CUDA. Errors become rows."""
    for h in kv_heads:
        _check_kv_heads(config, h)
    dev, dt = settings.resolve(device, dtype)
    configs = {attention_label(config.replace(n_kv_head=h)): config.replace(n_kv_head=h) for h in kv_heads}
    rows = []
    for h, r in zip(kv_heads, measure_variants(configs, batch_size, seq_len, rounds=rounds,
                                               min_run_time=min_run_time, device=dev, dtype=dt,
                                               memory=memory)):
        kinds = r.get("memory_by_kind") or {}
        times = r.get("times_ms") or []
        rows.append({"attention": r["variant"], "n_kv_head": h, "preset": config.name, "batch_size": batch_size,
                     "seq_len": seq_len, "device": str(dev), "device_name": settings.device_name(dev),
                     "dtype": settings.dtype_name(dt), "median_ms": r.get("median_ms"),
                     "range_ms": (min(times), max(times)) if times else None, "rounds": len(times),
                     "tokens_per_s": r.get("tokens_per_s"), "speedup": r.get("speedup"),
                     "speedup_min": r.get("speedup_min"), "speedup_max": r.get("speedup_max"),
                     "spread": r.get("spread"), "noisy": r.get("noisy"),
                     "params": r.get("params"), "activations_bytes": kinds.get("activations"),
                     "total_bytes": r.get("memory_bytes"), "peak_bytes": r.get("peak_bytes"),
                     "error": r.get("error") or r.get("memory_error")})
    return rows


# ---- measured: decoding with a KV cache ------------------------------------------------------
@dataclass
class DecodeResult:
    """Greedy decoding of ``new_tokens`` tokens after a ``context``-token prompt, per sequence."""
    attention: str  # MHA / GQA-4 / MQA
    n_kv_head: int
    context: int  # tokens already in the cache when timing starts
    batch_size: int
    new_tokens: int
    device: str
    device_name: str
    dtype: str  # weights and cache dtype
    preset: str
    cache_bytes: Optional[int] = None  # analytic K+V bytes at context + new_tokens (= KVCache.nbytes)
    ms_per_step: Optional[float] = None  # median time of one decoding step (batch_size tokens)
    tokens_per_s: Optional[float] = None  # batch_size / ms_per_step
    iqr_ms: Optional[float] = None
    round_ms: List[float] = dataclasses.field(default_factory=list)  # ms per step, each interleaved round
    speedup_vs_first: Optional[float] = None  # median per-round ratio against the first n_kv_head's time
    speedup_min: Optional[float] = None  # the range of those per-round ratios
    speedup_max: Optional[float] = None
    peak_mem_bytes: Optional[int] = None  # CUDA only
    error: Optional[str] = None  # OOM / unsupported, recorded instead of numbers

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PREFILLS = ("random", "model")
def greedy_decoder(model, prompt: torch.Tensor, new_tokens: int, prefill: str = "model"):
    """Fill a fresh KVCache with a (B, context) prompt; return ``decode()`` and the cache.

    ``prefill="model"`` runs the model on the prompt (what generation does). ``"random"`` writes
    random keys and values for the prompt's positions instead -- decoding costs exactly the same
    (no operation depends on the values), and a long context costs nothing to set up.
    Each ``decode()`` call rewinds the cache to the prompt and runs ``new_tokens`` single-token
    steps, greedily, returning the (B, new_tokens + 1) tokens chosen -- the first from the
    prompt's last position, then one per step (with "model" prefill: ``model.generate``'s tokens).
    """

    if prefill not in PREFILLS:
        raise ValueError(f"prefill={prefill!r} is not one of {list(PREFILLS)}")
    cfg = model.config
    B, context = prompt.shape
    p = next(model.parameters())
    cache = KVCache(cfg, B, context + new_tokens, device=p.device, dtype=p.dtype)
    with torch.inference_mode():
        if prefill == "model":
            logits, _ = model(prompt, kv_cache=cache)
            first = logits[:, -1:, :cfg.vocab_size].argmax(-1)
        else:
            g = torch.Generator().manual_seed(0)
            for t in (cache.k, cache.v):
                t[..., :context, :] = torch.randn(t[..., :context, :].shape, generator=g).to(t)
            cache.length = context
            first = prompt[:, -1:]

    def decode():
        with torch.inference_mode():
            cache.length = context  # rewind: each call decodes the same positions
            toks = [first]
            for _ in range(new_tokens):
                out, _ = model(toks[-1], kv_cache=cache)
                toks.append(out[:, -1:, :cfg.vocab_size].argmax(-1))
            return torch.cat(toks, dim=1)

    return decode, cache


def _decoder(cfg: GPTConfig, context: int, batch_size: int, new_tokens: int, dev, dt, seed: int,
             prefill: str = "random"):
    """A model of ``cfg`` (random weights: speed does not depend on them) and its decode() call."""
    torch.manual_seed(seed)
    model = GPT(cfg).to(device=dev, dtype=dt).eval()
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, cfg.vocab_size, (batch_size, context), generator=g).to(dev)
    decode, cache = greedy_decoder(model, prompt, new_tokens, prefill)
    return decode, cache


def measure_decode(config: GPTConfig, context_lengths: Iterable[int], kv_heads: Optional[Sequence[int]] = None,
                   batch_size: int = 1, new_tokens: int = 16, device=None, dtype="float32",
                   min_run_time: Optional[float] = None, seed: int = 0, prefill: str = "random",
                   rounds: int = 3, progress: bool = False) -> List[DecodeResult]:
    """Greedy KV-cache decoding speed for each (n_kv_head, context length).

    Per context, every n_kv_head gets a model with random weights (speed does not depend on them)
    and a ``context``-token ``KVCache`` -- filled with random keys/values (``prefill="random"``,
    the default: decoding time does not depend on them, and long contexts cost nothing to set up)
    or by running the model on a random prompt (``"model"``). Then ``new_tokens`` single-token
    steps are timed for each n_kv_head in turn, ``rounds`` times (interleaved, ``time_fn``; the
    cache is rewound before each call): ``ms_per_step`` is the median over rounds, and
    ``speedup_vs_first`` the median of the per-round ratios against the first n_kv_head, with
    their range. Weights and cache are in ``dtype``. ``kv_heads`` defaults to the config's own.
    An OOM or unsupported point becomes a row with ``error`` set.
    """
    contexts = list(context_lengths)
    for c in contexts:
        if not isinstance(c, int) or isinstance(c, bool) or c < 1:
            raise ValueError(f"context length {c!r} must be a positive integer")
    if not contexts:
        raise ValueError("context_lengths is empty")
    for name, v in (("batch_size", batch_size), ("new_tokens", new_tokens), ("rounds", rounds)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    if prefill not in PREFILLS:
        raise ValueError(f"prefill={prefill!r} is not one of {list(PREFILLS)}")
    heads = list(kv_heads) if kv_heads is not None else [config.kv_heads]
    for h in heads:
        _check_kv_heads(config, h)
    dev = settings.resolve(device)[0]
    dt = settings.parse_dtype(dtype)
    need = max(contexts) + new_tokens
    base = config if config.block_size >= need else config.replace(block_size=need)
    name = settings.device_name(dev)
    bar = progress_bar(len(heads) * len(contexts) * rounds, "decoding", progress)
    out = {}
    for c in contexts:
        rows, calls = {}, {}
        for h in heads:
            cfg = base.replace(n_kv_head=h)
            row = DecodeResult(attention=attention_label(cfg), n_kv_head=h, context=c,
                               batch_size=batch_size, new_tokens=new_tokens, device=str(dev),
                               device_name=name, dtype=settings.dtype_name(dt), preset=config.name,
                               cache_bytes=kv_cache_bytes(cfg, batch_size, c + new_tokens, dt))
            rows[h] = row
            try:
                decode, cache = _decoder(cfg, c, batch_size, new_tokens, dev, dt, seed, prefill)
                assert cache.nbytes == row.cache_bytes, (cache.nbytes, row.cache_bytes)
                calls[h] = decode
            except SWEEP_ERRORS as e:
                row.error = error_text(e)
        for i in range(rounds):
            for h, decode in list(calls.items()):
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(dev)
                try:  # warm once: later rounds are warm, their sizing call warms again (timing.time_rounds)
                    tm = time_fn(decode, dev, min_run_time=min_run_time, warmup=2 if i == 0 else 0,
                                 min_measurements=3)
                    rows[h].round_ms.append(tm.median_ms / new_tokens)
                    rows[h].iqr_ms = tm.iqr_ms / new_tokens
                    rows[h].peak_mem_bytes = tm.peak_mem_bytes
                except SWEEP_ERRORS as e:
                    rows[h].error = error_text(e)
                    del calls[h]
                if bar is not None:
                    bar.update(1)
        calls.clear()
        free_memory(dev)
        first = rows[heads[0]]
        for row in rows.values():
            if row.ok and row.round_ms:
                row.ms_per_step = statistics.median(row.round_ms)
                row.tokens_per_s = batch_size * 1e3 / row.ms_per_step
                if first.ok and len(first.round_ms) == len(row.round_ms):
                    ratios = [f / t for f, t in zip(first.round_ms, row.round_ms)]
                    row.speedup_vs_first = statistics.median(ratios)
                    row.speedup_min, row.speedup_max = min(ratios), max(ratios)
        out[c] = rows
    if bar is not None:
        bar.close()
    return [out[c][h] for h in heads for c in contexts]


# ---- "Measure decode": what it will take, said before it runs ----------------------------------
def predict_decode_step_ms(cfg: GPTConfig, context: int, batch_size: int, dtype: str, ceilings: Ceilings) -> float:
    """One decoding step of ``batch_size`` sequences on ``ceilings``: its bytes (the weights once +
    the caches, ``decode_bytes_per_step``) at the bandwidth, or its matmul FLOPs at the peak if
    that is longer, and one operator overhead per kernel of a one-token forward pass
    (``cost.step_kernels`` at T=1, the loss left out) -- added on a CPU, overlapping on a GPU."""
    rows = [r for r in cost.step_kernels(cfg, batch_size, 1, dtype, str(ceilings.device).split(":")[0],
                                         optimizer=False)
            if r.phase == "forward" and r.scope != "loss"]
    flops = sum(r.flops for r in rows)
    busy = max(decode_bytes_per_step(cfg, context, dtype, batch_size) / ceilings.bandwidth, flops / ceilings.peak_flops)
    launch = sum(r.n_kernels for r in rows) * ceilings.overhead_s
    return (max(busy, launch) if ceilings.async_launch else busy + launch) * 1e3


@dataclass
class DecodePlan:
    """What ``measure_decode`` will do for one context -- build a model and a filled cache per
    n_kv_head, then time ``new_tokens`` steps of each in ``rounds`` interleaved rounds -- with its
    predicted step times, wall time and memory; ``action`` "refuse" when the memory does not fit."""
    config: GPTConfig
    kv_heads: List[int]
    context: int
    batch_size: int
    new_tokens: int
    dtype: str
    rounds: int
    min_run_time: float
    step_ms: Dict[int, float]  # predicted ms per decoding step, per n_kv_head
    seconds: float  # predicted wall time of all of it
    memory_bytes: int  # weights + filled caches held at once, + one random fill
    available_bytes: Optional[int]
    basis: str

    @property
    def action(self) -> str:
        return "refuse" if self.available_bytes is not None and self.memory_bytes > self.available_bytes else "measure"

    def message(self) -> str:
        heads = " and ".join(attention_label(self.config.replace(n_kv_head=h)) for h in self.kv_heads)
        steps = ", ".join(f"{attention_label(self.config.replace(n_kv_head=h))} ~{ms:,.2f} ms"
                          for h, ms in self.step_ms.items())
        mem = (f"{self.memory_bytes / 2**20:,.0f} MiB of weights and caches"
               + (f" of {self.available_bytes / 2**20:,.0f} MiB available" if self.available_bytes else ""))
        head = (f"{self.config.name}, {heads}, batch {self.batch_size}, context {self.context:,}, "
                f"{self.new_tokens} new tokens, {self.dtype}: {mem}")
        if self.action == "refuse":
            return f"{head}. Not measured: it does not fit; lower the batch or the context."
        rounds = f"{self.rounds} interleaved round" + ("s" if self.rounds != 1 else "")
        return (f"{head}; predicted {steps} per step ({self.basis}). Measuring takes ~{self.seconds:,.1f} s: "
                f"the models and caches, then {rounds} of each.")


def random_fill_rate(n: int = 1 << 20) -> float:
    """Random numbers per second ``torch.randn`` makes here (``measure_decode`` fills its caches
    with them, on the CPU): ``n`` of them timed briefly."""
    return n / (time_fn(lambda: torch.randn(n), "cpu", min_run_time=0.02, warmup=1).median_ms / 1e3)


def plan_decode(config: GPTConfig, context: int, kv_heads: Sequence[int], batch_size: int, new_tokens: int,
                dtype: str, rounds: int, min_run_time: float, ceilings: Ceilings,
                available: Optional[int] = None, fill_numbers_per_s: Optional[float] = None,
                correction: Optional[Tuple[float, str]] = None) -> DecodePlan:
    """Predict ``measure_decode(config, [context], kv_heads, ...)``: per n_kv_head a model
    (``INIT_S_PER_PARAM``) and a cache filled with random numbers (at ``fill_numbers_per_s``, when
    given), then ``rounds`` timings of ``new_tokens`` steps each (``timing.rounds_seconds`` at
    ``predict_decode_step_ms``). Memory: every model and filled cache at once, plus the float32
    random numbers of one K or V cache. ``correction`` = (factor, why): the predicted steps times
    ``factor`` -- measured / predicted of the last decoding measured here. Bad sizes raise
    ValueError naming the field."""
    for name, v in (("context", context), ("batch_size", batch_size), ("new_tokens", new_tokens), ("rounds", rounds)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    heads = list(dict.fromkeys(kv_heads))
    for h in heads:
        _check_kv_heads(config, h)
    e = settings.dtype_bytes(dtype)
    cfgs = {h: config.replace(n_kv_head=h, block_size=max(config.block_size, context + new_tokens)) for h in heads}
    caches = {h: kv_cache_bytes(c, batch_size, context + new_tokens, dtype) for h, c in cfgs.items()}
    factor = correction[0] if correction else 1.0
    step_ms = {h: factor * predict_decode_step_ms(c, context, batch_size, dtype, ceilings) for h, c in cfgs.items()}
    seconds = 0.0
    for h, c in cfgs.items():
        seconds += cost.num_params(c) * INIT_S_PER_PARAM
        if fill_numbers_per_s:
            seconds += caches[h] / e * context / (context + new_tokens) / fill_numbers_per_s
        seconds += rounds_seconds(new_tokens * step_ms[h] / 1e3, min_run_time, rounds, warmup=2, min_measurements=3)
    memory = sum(cost.num_params(c) * e + caches[h] for h, c in cfgs.items()) + max(caches.values()) // e * 4 // 2
    basis = (f"{ceilings.source} ceilings of {ceilings.device_name}: bytes at {ceilings.bandwidth / 1e9:,.1f} GB/s, "
             f"{ceilings.overhead_s * 1e6:,.1f} µs per operator")
    if correction:
        basis += f"; x{factor:.2f}: {correction[1]}"
    return DecodePlan(config, heads, context, batch_size, new_tokens, settings.dtype_name(dtype), rounds,
                      min_run_time, step_ms, seconds, int(memory), available, basis)


def max_context_tokens(config: GPTConfig, budget_bytes: int, dtype="bfloat16") -> int:
    """How many cached tokens (summed over the batch) fit in ``budget_bytes`` of KV cache."""
    per_token = kv_cache_bytes(config, 1, 1, dtype)
    return int(budget_bytes // per_token)


# ---- the picture -----------------------------------------------------------------------------
def head_grouping_figure(configs: Sequence[GPTConfig], title: Optional[str] = None):
    """The seed's MHA-vs-GQA diagram drawn from configs: query heads (left) wired to the K/V head
    their group shares (right), one panel per config. Returns a matplotlib Figure."""

    configs = list(configs)
    if not configs:
        raise ValueError("configs is empty")
    fig = Figure(figsize=(3.2 * len(configs), 0.32 * configs[0].n_head + 1.6))
    axes = fig.subplots(1, len(configs), squeeze=False)
    cmap = matplotlib.colormaps["tab20"]
    for ax, cfg in zip(axes[0], configs):
        H, Hkv, r = cfg.n_head, cfg.kv_heads, cfg.n_rep
        for h in range(H):
            g = h // r
            y = H - 1 - h
            color = cmap(g % 20)
            ax.add_patch(FancyBboxPatch((0, y - 0.35), 1.0, 0.7, boxstyle="round,pad=0.02",
                                        fc=color, ec="k", lw=0.6))
            ax.text(0.5, y, f"Q{h + 1}", ha="center", va="center", fontsize=8)
            ky = (H - 1) - (g + 0.5) * H / Hkv + 0.5
            ax.plot([1.0, 2.0], [y, ky], color=color, lw=0.8)
        for g in range(Hkv):
            ky = (H - 1) - (g + 0.5) * H / Hkv + 0.5
            hgt = max(0.7, H / Hkv - 0.3)
            ax.add_patch(FancyBboxPatch((2.0, ky - hgt / 2), 1.2, hgt, boxstyle="round,pad=0.02",
                                        fc=cmap(g % 20), ec="k", lw=0.6))
            ax.text(2.6, ky, f"K{g + 1}\nV{g + 1}", ha="center", va="center", fontsize=8)
        ax.set_xlim(-0.2, 3.4)
        ax.set_ylim(-1, H)
        ax.axis("off")
        ax.set_title(f"{attention_label(cfg)}\n{H} Q heads, {Hkv} K/V heads", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def decode_figure(rows: Sequence[DecodeResult]):
    """Two panels from ``measure_decode`` rows: tokens/s vs context and KV-cache MiB vs context,
    one line per n_kv_head. Failed points are left out (and named in the title)."""

    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty")
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    a1, a2 = fig.subplots(1, 2)
    for label in dict.fromkeys(r.attention for r in rows):
        pts = [r for r in rows if r.attention == label]
        ok = [r for r in pts if r.ok]
        a1.plot([r.context for r in ok], [r.tokens_per_s for r in ok], "o-", label=label)
        a2.plot([r.context for r in pts], [r.cache_bytes / 2 ** 20 for r in pts], "o-", label=label)
    r0 = rows[0]
    for ax, yl in ((a1, "tokens / s (higher is better)"), (a2, "KV cache, MiB")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context length (tokens already cached)")
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
        legend_below(ax, ncol=4)
    a2.set_yscale("log")
    failed = sum(not r.ok for r in rows)
    fig.suptitle(f"KV-cache decoding: {r0.preset}, batch {r0.batch_size}, {r0.new_tokens} new tokens, "
                 f"{r0.dtype}, {r0.device_name}" + (f" ({failed} points failed)" if failed else ""),
                 fontsize=9)
    return fig


# ---- the explorer's numbers -------------------------------------------------------------------
def decode_bytes_per_step(cfg: GPTConfig, context: int, dtype: str, batch_size: int = 1) -> int:
    """Bytes one decoding step reads for ``batch_size`` sequences: every weight once (the batch
    shares them) + each sequence's whole KV cache (capped at W)."""
    e = settings.dtype_bytes(dtype)
    ctx = min(context, cfg.window) if cfg.window else context
    return cost.num_params(cfg) * e + kv_cache_bytes(cfg, batch_size, ctx, dtype)


def decode_bytes_per_token(cfg: GPTConfig, context: int, dtype: str, batch_size: int = 1) -> float:
    """Bytes read per new token: a decoding step's bytes over its ``batch_size`` new tokens (the
    weights' share shrinks with the batch; each sequence's cache does not)."""
    return decode_bytes_per_step(cfg, context, dtype, batch_size) / batch_size


def decode_ceiling(base: GPTConfig, variant: GPTConfig, batch_size: int, context: int, dtype: str) -> float:
    """The most ``variant`` can speed up decoding over ``base``: one decoding step reads every weight
    once and the batch's whole KV cache (capped at a window), so a memory-bound step speeds up by at
    most the ratio of the bytes it reads -- the ceiling a measured decoding speedup is judged by."""
    e = settings.dtype_bytes(dtype)

    def read(c):
        ctx = min(context, c.window) if c.window else context
        return cost.num_params(c) * e + kv_cache_bytes(c, batch_size, ctx, dtype)
    return read(base) / read(variant)


def decode_speedup(row: "DecodeResult", base: GPTConfig) -> Speedup:
    """A decoding row's tokens/s over the first n_kv_head's (``measure_decode``) as a
    ``speedups.Speedup``: the median of the per-round ratios, their range, the rounds, and
    ``decode_ceiling`` at the row's batch and context -- print it with ``.text()``."""
    variant = base.replace(n_kv_head=row.n_kv_head)
    ceiling = decode_ceiling(base.replace(n_kv_head=None), variant, row.batch_size, row.context, row.dtype)
    return Speedup(row.speedup_vs_first, row.speedup_min, row.speedup_max, len(row.round_ms), ceiling)


def gqa_point(n_kv_head: int, context: int, batch_size: int = 1, dtype: str = "bfloat16",
              preset: str = "gpt2_small", docs: Optional[List[dict]] = None,
              device: Optional[str] = None) -> Dict[str, object]:
    """KV-cache bytes and decoding cost of ``preset`` with ``n_kv_head`` K/V heads.

    ``decode_speedup_analytic``: MHA's bytes read per decoding step / this one's (the weights once
    + the caches of all ``batch_size`` sequences: decoding is memory-bound), so it grows with the
    batch as the caches outweigh the weights. ``measured``: tokens/s rows for this n_kv_head from
    results files of this device kind (any context), if there are any.
    """
    base = get_config(preset, block_size=max(1024, context))
    cfg = base.replace(n_kv_head=n_kv_head)  # raises ValueError when it does not divide n_head
    if dtype not in settings.DTYPE_NAMES:
        raise ValueError(f"dtype={dtype!r} is not one of {list(settings.DTYPE_NAMES)}")
    cache, cache_mha = (kv_cache_bytes(c, batch_size, context, dtype) for c in (cfg, base))
    read, read_mha = (decode_bytes_per_step(c, context, dtype, batch_size) for c in (cfg, base))
    label = attention_label(cfg)
    measured = [{"context": r.get("context"), "tokens_per_s": r.get("tokens_per_s"),
                 "speedup_vs_MHA": r.get("speedup_vs_MHA"), "device_name": m.get("device_name"),
                 "speedup_of": Speedup.from_row(r, key="speedup_vs_MHA")}  # the one printed form
                for r, m in records.measured_rows("gqa_decode", docs, device) if r.get("variant") == label]
    return {"label": label, "n_kv_head": cfg.kv_heads, "n_head": cfg.n_head, "context": context,
            "batch_size": batch_size, "dtype": dtype, "cache_bytes": cache, "cache_bytes_mha": cache_mha,
            "cache_ratio": cache / cache_mha, "bytes_per_step": read, "bytes_per_token": read / batch_size,
            "weight_bytes": read - kv_cache_bytes(cfg, batch_size, min(context, cfg.window or context), dtype),
            "decode_speedup_analytic": read_mha / read, "measured": measured}


# ---- exercises -------------------------------------------------------------------------------
# ---- repeat_kv ---------------------------------------------------------------------------
def check_repeat_kv(fn: Callable) -> CheckResult:
    """Check ``fn(x, n_rep)``: (B, n_kv_head, T, D) -> (B, n_kv_head * n_rep, T, D), query head h
    served by K/V head h // n_rep -- the same as ``torch.repeat_interleave(x, n_rep, dim=1)``."""
    name = "repeat_kv"
    cases = [((2, 4, 5, 3), 3), ((1, 1, 7, 2), 12), ((2, 3, 4, 6), 2), ((1, 2, 3, 4), 1)]
    g = torch.Generator().manual_seed(0)
    for i, (shape, n_rep) in enumerate(cases):
        x = torch.randn(shape, generator=g)
        x_before = x.clone()
        out, err = call_checked(name, fn, x, n_rep)
        if err is not None:
            return err
        where = f"for x of shape {tuple(shape)} and n_rep={n_rep}"
        if not isinstance(out, torch.Tensor):
            return CheckResult(name, False, f"{where} it returned {type(out).__name__}, not a tensor", i)
        if not torch.equal(x, x_before):
            return CheckResult(name, False, f"{where} it changed its input in place; return a new tensor", i)
        B, H, T, D = shape
        want = (B, H * n_rep, T, D)
        if tuple(out.shape) != want:
            hint = ""
            if out.numel() == x.numel() * n_rep:
                hint = " -- right number of elements, wrong axis: repeat the head axis (dim 1)"
            return CheckResult(name, False, f"{where} the shape is {tuple(out.shape)}, expected {want}{hint}", i)
        ref = torch.repeat_interleave(x, n_rep, dim=1)
        if torch.equal(out, ref):
            continue
        if torch.equal(out, x.repeat(1, n_rep, 1, 1)):
            return CheckResult(name, False, (
                f"{where} the heads come out tiled (K1 K2 .. K1 K2 ..) -- that is x.repeat(...). "
                "Query heads of one group sit next to each other: query head h must use K/V head "
                "h // n_rep (K1 K1 K1 K2 K2 K2 ..), like torch.repeat_interleave(x, n_rep, dim=1)."), i)
        bad = [h for h in range(H * n_rep) if not torch.equal(out[:, h], ref[:, h])]
        return CheckResult(name, False, f"{where} query head(s) {bad[:6]} get the wrong K/V head "
                           f"(query head h should get K/V head h // n_rep)", i)
    return CheckResult(name, True, f"all {len(cases)} cases match torch.repeat_interleave(x, n_rep, dim=1).",
                       len(cases))


# ---- KV-cache bytes --------------------------------------------------------------------------
def check_kv_cache_bytes(fn: Callable) -> CheckResult:
    """Check ``fn(config, batch_size, seq_len, bytes_per_element)`` against ``gqa.kv_cache_bytes``."""
    name = "kv_cache_bytes"
    base = get_config("gpt2_small")
    cases = [(base, 1, 1024, 2), (base.replace(n_kv_head=4), 8, 512, 2),
             (base.replace(n_kv_head=1), 3, 100, 4), (get_config("gpt2_mini", n_kv_head=2), 2, 77, 4)]
    dtypes = {2: "bfloat16", 4: "float32"}
    for i, (cfg, B, T, nb) in enumerate(cases):
        got, err = call_checked(name, fn, cfg, B, T, nb)
        if err is not None:
            return err
        want = kv_cache_bytes(cfg, B, T, dtypes[nb])
        if got == want:
            continue
        where = (f"for {cfg.n_layer} layers, n_head={cfg.n_head}, n_kv_head={cfg.kv_heads}, "
                 f"head_dim={cfg.head_dim}, batch={B}, seq_len={T}, {nb} bytes/element")
        msg = f"{where} you return {got!r}, expected {want:,}"
        if isinstance(got, (int, float)) and got:
            r = want / got
            if cfg.kv_heads != cfg.n_head and math.isclose(got * cfg.kv_heads / cfg.n_head, want):
                msg += " -- the cache holds n_kv_head heads, not n_head: that is GQA's saving"
            hints = [(2.0, "keys AND values are both cached"),
                     (float(cfg.n_layer), "every layer has its own cache (n_layer)"),
                     (float(nb), "multiply by the bytes per element")]
            found = [h for k, h in hints if math.isclose(r, k)]
            if found:
                msg += f" -- off by {r:g}x: " + ", or ".join(found)
        return CheckResult(name, False, msg, i)
    return CheckResult(name, True, f"all {len(cases)} cases match lessons.gqa.kv_cache_bytes.", len(cases))


