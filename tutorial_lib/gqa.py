"""Grouped-query attention (GQA) and multi-query attention (MQA): conversion, costs, decoding speed.

References: Shazeer 2019, "Fast Transformer Decoding: One Write-Head is All You Need" (MQA);
Ainslie et al. 2023, "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head
Checkpoints" (GQA and *uptraining*: start a GQA model from an MHA checkpoint by mean-pooling the
key and value heads of each group, then train a little).

In this library GQA is one config field: ``GPTConfig.n_kv_head`` (None or ``n_head`` = MHA,
1 = MQA, anything in between = GQA). This module holds what the lesson needs around it:

- ``attention_label(config)``: "MHA" / "GQA-4" / "MQA".
- ``pool_kv_heads`` and ``mha_to_gqa(model, n_kv_head)``: the paper's uptraining start;
  ``continue_training`` / ``val_loss`` for the uptraining itself.
- ``kv_cache_bytes(config, batch, length)``: analytic KV-cache size (what ``KVCache`` allocates).
- ``attention_params`` and ``gqa_cost_table``: parameters, FLOPs and cache bytes per n_kv_head.
- ``measure_training(config, kv_heads, B, T)``: step time, speedup and memory per n_kv_head.
- ``measure_decode(config, context_lengths)``: tokens/s of KV-cache decoding, with cache bytes.
- ``head_grouping_figure(config)``: the seed's MHA-vs-GQA picture, drawn from configs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

import torch

from tutorial_lib.config import GPTConfig

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
    from tutorial_lib.model import GPT

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


# ---- a little training for the converted model (the paper's "uptraining") ----------------------
def _val_batches(batch_size: int, seq_len: int, eval_batches: int, seed: int, device):
    from tutorial_lib import data

    # the same held-out batches as tutorial_lib.train (its val sampler uses seed + 1)
    s = data.BatchSampler("val", batch_size, seq_len, seed=seed + 1, device=device)
    return [s.next_batch() for _ in range(eval_batches)]


def val_loss(model, batch_size: int = 8, seq_len: int = 128, eval_batches: int = 4, seed: int = 0,
             dtype=None) -> float:
    """Mean loss of ``model`` on fixed validation batches (those ``tutorial_lib.train`` uses for
    the same sizes and seed)."""
    from tutorial_lib import settings
    from tutorial_lib.train import evaluate

    dev = next(model.parameters()).device
    dt = settings.parse_dtype(dtype) if dtype is not None else settings.default_dtype(dev)
    batches = _val_batches(batch_size, seq_len, eval_batches, seed, dev)
    return evaluate(model, batches, lambda: settings.autocast(dev, dt))


def continue_training(model, steps: int, batch_size: int = 8, seq_len: int = 128, lr: float = 3e-3,
                      warmup_steps: Optional[int] = None, eval_batches: int = 4, seed: int = 0,
                      dtype=None) -> dict:
    """Train ``model`` in place for ``steps`` AdamW steps on the corpus (warmup, cosine decay,
    clipping at 1.0); validation loss before and after. For the GQA paper's uptraining: convert
    with ``mha_to_gqa``, then continue for a few percent of the original steps.

    Returns {"val_before", "val_after", "train_loss" (per step), "steps", "seconds"}.
    """
    import time

    from tutorial_lib import data, settings
    from tutorial_lib.measure.bench import make_optimizer
    from tutorial_lib.optim import lr_scale

    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")
    dev = next(model.parameters()).device
    dt = settings.parse_dtype(dtype) if dtype is not None else settings.default_dtype(dev)
    warm = max(1, steps // 10) if warmup_steps is None else warmup_steps
    before = val_loss(model, batch_size, seq_len, eval_batches, seed, dt)
    opt = make_optimizer(model, dev, lr=lr)
    sampler = data.BatchSampler("train", batch_size, seq_len, seed=seed, device=dev)
    model.train()
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * lr_scale(step, steps, warm, "cosine", 0.1)
        x, y = sampler.next_batch()
        with settings.autocast(dev, dt):
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    settings.synchronize(dev)
    seconds = time.perf_counter() - t0
    after = val_loss(model, batch_size, seq_len, eval_batches, seed, dt)
    return {"val_before": before, "val_after": after, "train_loss": losses, "steps": steps,
            "seconds": seconds}


# ---- analytic sizes --------------------------------------------------------------------------
def _bytes_per_element(dtype) -> int:
    from tutorial_lib.settings import parse_dtype

    return torch.empty((), dtype=parse_dtype(dtype)).element_size()


def kv_cache_bytes(config: GPTConfig, batch_size: int, seq_len: int, dtype="float32") -> int:
    """Bytes of keys + values cached for ``batch_size`` sequences of ``seq_len`` tokens.

    2 (K and V) x n_layer x batch x n_kv_head x seq_len x head_dim x bytes per element -- exactly
    what ``KVCache(config, batch_size, seq_len, dtype=...)`` allocates.
    """
    for name, v in (("batch_size", batch_size), ("seq_len", seq_len)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    return (2 * config.n_layer * batch_size * config.kv_heads * seq_len * config.head_dim
            * _bytes_per_element(dtype))


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

    FLOPs are one forward+backward of the whole model at (batch_size, seq_len), causal-aware, from
    ``tutorial_lib.measure.flops``; ``attn_proj_flops`` is the q/k/v/o share of them. Ratios are
    against the first entry (normally MHA).
    """
    from tutorial_lib.measure import flops as F

    rows = []
    for h in kv_heads:
        _check_kv_heads(config, h)
        cfg = config.replace(n_kv_head=h)
        table = F.cost_table(cfg, batch_size, seq_len)
        total = sum(r.fwd_flops_causal + r.bwd_flops_causal for r in table)
        proj = sum(r.fwd_flops + r.bwd_flops for r in table
                   if r.name in ("attention.qkv", "attention.out"))
        rows.append({
            "attention": attention_label(cfg), "n_kv_head": h, "n_rep": cfg.n_rep,
            "params": F.num_params(cfg), "attn_params_per_layer": attention_params(cfg)["total"],
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
                     device=None, dtype=None, min_run_time: Optional[float] = None,
                     memory: bool = True) -> List[dict]:
    """A full training step (AdamW) for each n_kv_head: time (``measure_step``), speedup against
    the first entry, and memory (``memory_breakdown``: params + grads + optimizer state + saved
    activations, exact on every device; the allocator's peak on CUDA). Errors become rows."""
    from tutorial_lib import settings
    from tutorial_lib.measure.bench import SWEEP_ERRORS, error_text, free_memory, measure_step
    from tutorial_lib.measure.memory import memory_breakdown

    for h in kv_heads:
        _check_kv_heads(config, h)
    dev = settings.get_device(device) if not isinstance(device, torch.device) else device
    dt = settings.parse_dtype(dtype) if dtype is not None else settings.default_dtype(dev)
    rows = []
    for h in kv_heads:
        cfg = config.replace(n_kv_head=h)
        row = {"attention": attention_label(cfg), "n_kv_head": h, "preset": config.name,
               "batch_size": batch_size, "seq_len": seq_len, "device": str(dev),
               "device_name": settings.device_name(dev), "dtype": settings.dtype_name(dt),
               "median_ms": None, "iqr_ms": None, "tokens_per_s": None, "speedup": None,
               "params": None, "activations_bytes": None, "total_bytes": None, "peak_bytes": None,
               "error": None}
        try:
            st = measure_step(cfg, batch_size, seq_len, mode="train", device=dev, dtype=dt,
                              min_run_time=min_run_time)
            row.update(median_ms=st.median_ms, iqr_ms=st.iqr_ms, tokens_per_s=st.tokens_per_s,
                       params=st.params, peak_bytes=st.peak_mem_bytes)
            if memory:
                mem = memory_breakdown(cfg, batch_size, seq_len, device=dev, dtype=dt)
                row.update(activations_bytes=mem.activations_bytes, total_bytes=mem.total_bytes)
        except SWEEP_ERRORS as e:
            row["error"] = error_text(e)
        finally:
            free_memory(dev)
        rows.append(row)
    base = rows[0]
    for r in rows:
        if r["median_ms"] and base["median_ms"]:
            r["speedup"] = base["median_ms"] / r["median_ms"]
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
    peak_mem_bytes: Optional[int] = None  # CUDA only
    error: Optional[str] = None  # OOM / unsupported, recorded instead of numbers

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PREFILLS = ("random", "model")
# Decoding sizes per size profile. GQA pays when reading the KV cache costs as much as reading the
# weights: GPT-2 small holds ~124 M weights and 12 x 2 x 768 = 18,432 cached values per token
# (MHA), so the cache matches the weights at batch x context ~ 6,700 tokens. The contexts below
# reach well past that; "random" prefill keeps long contexts cheap (see measure_decode).
DECODE_SIZES = {
    "smoke": {"batch_size": 2, "contexts": (16, 64), "new_tokens": 4},
    "cpu": {"batch_size": 8, "contexts": (128, 512, 2048), "new_tokens": 8},
    "gpu": {"batch_size": 16, "contexts": (512, 2048, 8192), "new_tokens": 32},
}


def greedy_decoder(model, prompt: torch.Tensor, new_tokens: int, prefill: str = "model"):
    """Fill a fresh KVCache with a (B, context) prompt; return ``decode()`` and the cache.

    ``prefill="model"`` runs the model on the prompt (what generation does). ``"random"`` writes
    random keys and values for the prompt's positions instead -- decoding costs exactly the same
    (no operation depends on the values), and a long context costs nothing to set up.
    Each ``decode()`` call rewinds the cache to the prompt and runs ``new_tokens`` single-token
    steps, greedily, returning the (B, new_tokens + 1) tokens chosen -- the first from the
    prompt's last position, then one per step (with "model" prefill: ``model.generate``'s tokens).
    """
    from tutorial_lib.attention import KVCache

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


def _decode_one(cfg: GPTConfig, context: int, batch_size: int, new_tokens: int, dev, dt,
                min_run_time, seed: int, prefill: str = "random"):
    from tutorial_lib.measure.bench import time_fn
    from tutorial_lib.model import GPT

    torch.manual_seed(seed)
    model = GPT(cfg).to(device=dev, dtype=dt).eval()
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, cfg.vocab_size, (batch_size, context), generator=g).to(dev)
    decode, cache = greedy_decoder(model, prompt, new_tokens, prefill)
    tm = time_fn(decode, dev, min_run_time=min_run_time, warmup=2, min_measurements=3)
    nbytes = cache.nbytes
    del model, cache, decode
    return tm, nbytes


def measure_decode(config: GPTConfig, context_lengths: Iterable[int], kv_heads: Optional[Sequence[int]] = None,
                   batch_size: int = 1, new_tokens: int = 16, device=None, dtype="float32",
                   min_run_time: Optional[float] = None, seed: int = 0, prefill: str = "random",
                   progress: bool = False) -> List[DecodeResult]:
    """Greedy KV-cache decoding speed for each (n_kv_head, context length).

    For each point a model with random weights (speed does not depend on them) gets a
    ``context``-token ``KVCache`` -- filled with random keys/values (``prefill="random"``, the
    default: decoding time does not depend on them, and long contexts cost nothing to set up) or
    by running the model on a random prompt (``"model"``) -- then ``new_tokens`` single-token steps are timed
    (``torch.utils.benchmark`` via ``measure.bench.time_fn``, median over blocks; the cache is
    rewound before each call). Weights and cache are in ``dtype``. ``kv_heads`` defaults to the
    config's own. An OOM or unsupported point becomes a row with ``error`` set.
    """
    from tutorial_lib import settings
    from tutorial_lib.measure.bench import SWEEP_ERRORS, error_text, free_memory

    contexts = list(context_lengths)
    for c in contexts:
        if not isinstance(c, int) or isinstance(c, bool) or c < 1:
            raise ValueError(f"context length {c!r} must be a positive integer")
    if not contexts:
        raise ValueError("context_lengths is empty")
    for name, v in (("batch_size", batch_size), ("new_tokens", new_tokens)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    if prefill not in PREFILLS:
        raise ValueError(f"prefill={prefill!r} is not one of {list(PREFILLS)}")
    heads = list(kv_heads) if kv_heads is not None else [config.kv_heads]
    for h in heads:
        _check_kv_heads(config, h)
    dev = settings.get_device(device) if not isinstance(device, torch.device) else device
    dt = settings.parse_dtype(dtype)
    need = max(contexts) + new_tokens
    base = config if config.block_size >= need else config.replace(block_size=need)
    name = settings.device_name(dev)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(heads) * len(contexts), desc="decoding", leave=False)
    rows = []
    for h in heads:
        cfg = base.replace(n_kv_head=h)
        for c in contexts:
            row = DecodeResult(attention=attention_label(cfg), n_kv_head=h, context=c,
                               batch_size=batch_size, new_tokens=new_tokens, device=str(dev),
                               device_name=name, dtype=settings.dtype_name(dt), preset=config.name,
                               cache_bytes=kv_cache_bytes(cfg, batch_size, c + new_tokens, dt))
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            try:
                tm, nbytes = _decode_one(cfg, c, batch_size, new_tokens, dev, dt, min_run_time, seed,
                                         prefill)
                assert nbytes == row.cache_bytes, (nbytes, row.cache_bytes)
                row.ms_per_step = tm.median_ms / new_tokens
                row.iqr_ms = tm.iqr_ms / new_tokens
                row.tokens_per_s = batch_size * 1e3 / row.ms_per_step
                row.peak_mem_bytes = tm.peak_mem_bytes
            except SWEEP_ERRORS as e:
                row.error = error_text(e)
            finally:
                free_memory(dev)
            rows.append(row)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return rows


def max_context_tokens(config: GPTConfig, budget_bytes: int, dtype="bfloat16") -> int:
    """How many cached tokens (summed over the batch) fit in ``budget_bytes`` of KV cache."""
    per_token = kv_cache_bytes(config, 1, 1, dtype)
    return int(budget_bytes // per_token)


# ---- the picture -----------------------------------------------------------------------------
def head_grouping_figure(configs: Sequence[GPTConfig], title: Optional[str] = None):
    """The seed's MHA-vs-GQA diagram drawn from configs: query heads (left) wired to the K/V head
    their group shares (right), one panel per config. Returns a matplotlib Figure."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

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
            ax.text(0.5, y, f"Q{h + 1}", ha="center", va="center", fontsize=7)
            ky = (H - 1) - (g + 0.5) * H / Hkv + 0.5
            ax.plot([1.0, 2.0], [y, ky], color=color, lw=0.8)
        for g in range(Hkv):
            ky = (H - 1) - (g + 0.5) * H / Hkv + 0.5
            hgt = max(0.7, H / Hkv - 0.3)
            ax.add_patch(FancyBboxPatch((2.0, ky - hgt / 2), 1.2, hgt, boxstyle="round,pad=0.02",
                                        fc=cmap(g % 20), ec="k", lw=0.6))
            ax.text(2.6, ky, f"K{g + 1}\nV{g + 1}", ha="center", va="center", fontsize=7)
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
    from matplotlib.figure import Figure

    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty")
    fig = Figure(figsize=(10, 3.8))
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
        ax.legend(fontsize=8)
    a2.set_yscale("log")
    failed = sum(not r.ok for r in rows)
    fig.suptitle(f"KV-cache decoding: {r0.preset}, batch {r0.batch_size}, {r0.new_tokens} new tokens, "
                 f"{r0.dtype}, {r0.device_name}" + (f" ({failed} points failed)" if failed else ""),
                 fontsize=9)
    fig.tight_layout()
    return fig


def val_loss_figure(histories: dict, title: str = ""):
    """Validation loss vs step for {label: TrainHistory (or a dict with val_steps/val_loss)}."""
    from matplotlib.figure import Figure

    if not histories:
        raise ValueError("histories is empty")
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    for label, h in histories.items():
        steps = h["val_steps"] if isinstance(h, dict) else h.val_steps
        loss = h["val_loss"] if isinstance(h, dict) else h.val_loss
        ax.plot(steps, loss, "o-", label=f"{label} (final {loss[-1]:.3f})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
