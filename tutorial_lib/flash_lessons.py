"""What the flash-attention lesson measures: the online softmax by hand, attention memory and time
vs sequence length for each backend, and the whole model with eager vs fused attention.

- ``online_softmax_walkthrough()``: one query, a handful of keys, tiles of two -- every running
  max ``m``, normaliser ``l`` and unnormalised output ``acc`` printed, then checked against the
  plain softmax (``format_walkthrough`` turns it into a table).
- ``attention_sweep(seq_lens)``: for eager / tiled / sdpa / flex, the bytes autograd keeps for
  backward (every device) and the CUDA peak (CUDA), plus forward+backward time, at each T. A
  backend that is unsupported here (flex has no CPU backward) or runs out of memory becomes a row
  with ``error`` set and the sweep carries on.
- ``loglog_slopes(rows)``: the fitted exponent of memory or time in T, per backend.
- ``model_backend_comparison(config, B, T)``: a whole GPT training step, eager vs sdpa: time, saved
  activations by component, CUDA peak.
"""
from __future__ import annotations

import dataclasses
import gc
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

WORKED_SCORES = (2.0, 1.0, 3.0, 0.5, 4.0, 1.5)  # one query's scores against six keys
WORKED_VALUES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)  # each key's value (head_dim 1, so it prints)
LESSON_BACKENDS = ("eager", "tiled", "sdpa", "flex")


# ---- the online softmax, by hand -------------------------------------------------------------
def online_softmax_walkthrough(scores: Sequence[float] = WORKED_SCORES,
                               values: Sequence[float] = WORKED_VALUES, tile: int = 2) -> dict:
    """Run ``flash.online_softmax_update`` over one query's keys, ``tile`` keys at a time (float64).

    Returns {"steps": [one dict per tile: keys, scores, m_old, m_new, alpha = exp(m_old - m_new),
    l, acc, out = acc / l], "probs": softmax(scores), "reference": softmax(scores) . values,
    "final": the last out, "abs_error": |final - reference|}.
    """
    from tutorial_lib.flash import online_softmax_update

    if len(scores) != len(values) or not scores:
        raise ValueError(f"scores ({len(scores)}) and values ({len(values)}) must be non-empty and "
                         "the same length")
    if not isinstance(tile, int) or tile < 1:
        raise ValueError(f"tile={tile!r} must be a positive integer")
    s = torch.tensor(scores, dtype=torch.float64).view(1, -1)
    v = torch.tensor(values, dtype=torch.float64).view(-1, 1)
    m = torch.full((1, 1), float("-inf"), dtype=torch.float64)
    l = torch.zeros(1, 1, dtype=torch.float64)
    acc = torch.zeros(1, 1, dtype=torch.float64)
    steps = []
    for i, k0 in enumerate(range(0, s.shape[1], tile)):
        k1 = min(k0 + tile, s.shape[1])
        m_old = m.item()
        m, l, acc = online_softmax_update(m, l, acc, s[:, k0:k1], v[k0:k1])
        steps.append({"tile": i, "keys": (k0, k1 - 1), "scores": tuple(scores[k0:k1]),
                      "m_old": m_old, "m_new": m.item(),
                      "alpha": math.exp(m_old - m.item()) if math.isfinite(m_old) else 0.0,
                      "l": l.item(), "acc": acc.item(), "out": (acc / l).item()})
    probs = torch.softmax(s, dim=-1)
    ref = (probs @ v).item()
    return {"steps": steps, "probs": tuple(probs.view(-1).tolist()), "reference": ref,
            "final": steps[-1]["out"], "abs_error": abs(steps[-1]["out"] - ref)}


def format_walkthrough(result: dict, digits: int = 4) -> str:
    """The walkthrough as a fixed-width table (what the notebook prints)."""
    f = f"{{:.{digits}f}}"
    lines = [f"{'tile':>4} {'keys':>6} {'scores':>12} {'m_old':>7} {'m_new':>7} {'alpha':>8} "
             f"{'l':>8} {'acc':>9} {'acc/l':>8}"]
    for st in result["steps"]:
        sc = ",".join(f"{x:g}" for x in st["scores"])
        m_old = "-inf" if not math.isfinite(st["m_old"]) else f"{st['m_old']:g}"
        lines.append(f"{st['tile']:>4} {st['keys'][0]:>3}-{st['keys'][1]:<2} {sc:>12} {m_old:>7} "
                     f"{st['m_new']:>7g} {f.format(st['alpha']):>8} {f.format(st['l']):>8} "
                     f"{f.format(st['acc']):>9} {f.format(st['out']):>8}")
    lines.append(f"softmax(scores) . values = {f.format(result['reference'])}   "
                 f"online result = {f.format(result['final'])}   "
                 f"|difference| < 1e-12: {result['abs_error'] < 1e-12}")
    return "\n".join(lines)


# ---- attention alone: memory and time vs T ---------------------------------------------------
@dataclass
class AttentionPoint:
    """One backend at one sequence length. Bytes and milliseconds; ``error`` instead on failure."""
    backend: str
    seq_len: int
    batch_size: int
    n_head: int
    head_dim: int
    device: str
    device_name: str
    dtype: str
    mode: str  # "fwdbwd" (timed forward + backward) or "fwd"
    scores_bytes: int  # one materialised (B, H, T, T) score matrix in this dtype: the eager cost
    saved_bytes: Optional[int] = None  # tensors autograd keeps for backward (inputs excluded)
    peak_bytes: Optional[int] = None  # CUDA: max allocated above the inputs during fwd+bwd
    median_ms: Optional[float] = None
    iqr_ms: Optional[float] = None
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_backends(device=None) -> tuple:
    """eager, tiled, sdpa, and flex where this PyTorch has it (CPU rows record its missing backward)."""
    from tutorial_lib.attention import has_flex_attention

    return LESSON_BACKENDS if has_flex_attention() else LESSON_BACKENDS[:3]


def _qkv(B, H, T, D, device, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g).to(device=device, dtype=dtype).requires_grad_()
            for _ in range(3)]


def _fwdbwd(backend, q, k, v, tile):
    from tutorial_lib.attention import attention_core

    def run():
        for t in (q, k, v):
            t.grad = None
        out = attention_core(q, k, v, backend, tile=tile)
        out.backward(torch.ones_like(out))
    return run


def _fwd(backend, q, k, v, tile):
    from tutorial_lib.attention import attention_core

    def run():
        with torch.no_grad():
            attention_core(q, k, v, backend, tile=tile)
    return run


def _cuda_peak(fn, dev) -> int:
    from tutorial_lib import settings

    settings.synchronize(dev)
    base = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    fn()
    settings.synchronize(dev)
    return int(torch.cuda.max_memory_allocated(dev) - base)


def attention_sweep(seq_lens: Sequence[int], backends: Optional[Sequence[str]] = None,
                    batch_size: int = 1, n_head: int = 12, head_dim: int = 64, device=None,
                    dtype=None, mode: str = "fwdbwd", measure_time: bool = True,
                    min_run_time: Optional[float] = None, tile: int = 64,
                    progress: bool = False) -> List[AttentionPoint]:
    """Memory and time of causal attention alone, (B, H, T, D) inputs, per backend and T.

    Memory: ``saved_bytes`` -- what autograd keeps for backward, measured with
    ``saved_tensors_hooks`` (``measure.memory.saved_bytes``; q, k, v themselves excluded) -- on
    every device; on CUDA also the allocator's peak above the inputs over one forward+backward.
    Time: ``measure.bench.time_fn`` of forward+backward (``mode="fwdbwd"``) or forward.
    dtype: None = bf16 on CUDA, fp32 elsewhere (inputs are created in it; no autocast).
    """
    from tutorial_lib import settings
    from tutorial_lib.attention import attention_core
    from tutorial_lib.config import ATTN_BACKENDS
    from tutorial_lib.measure.bench import SWEEP_ERRORS, error_text, free_memory, time_fn
    from tutorial_lib.measure.memory import saved_bytes

    Ts = list(seq_lens)
    if not Ts:
        raise ValueError("seq_lens is empty")
    for T in Ts:
        if not isinstance(T, int) or isinstance(T, bool) or T < 1:
            raise ValueError(f"seq_len {T!r} must be a positive integer")
    for nm, val in (("batch_size", batch_size), ("n_head", n_head), ("head_dim", head_dim), ("tile", tile)):
        if not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise ValueError(f"{nm}={val!r} must be a positive integer")
    if mode not in ("fwdbwd", "fwd"):
        raise ValueError(f"mode={mode!r} is not one of ['fwdbwd', 'fwd']")
    backends = list(backends) if backends is not None else list(default_backends())
    for b in backends:
        if b not in ATTN_BACKENDS or b == "local":
            raise ValueError(f"backend={b!r} is not one of {list(LESSON_BACKENDS)}")
    dev = settings.get_device(device) if not isinstance(device, torch.device) else device
    dt = settings.parse_dtype(dtype) if dtype is not None else settings.default_dtype(dev)
    esize = torch.empty((), dtype=dt).element_size()
    name = settings.device_name(dev)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(backends) * len(Ts), desc="attention sweep", leave=False)
    rows = []
    for b in backends:
        for T in Ts:
            row = AttentionPoint(backend=b, seq_len=T, batch_size=batch_size, n_head=n_head,
                                 head_dim=head_dim, device=str(dev), device_name=name,
                                 dtype=settings.dtype_name(dt), mode=mode,
                                 scores_bytes=batch_size * n_head * T * T * esize)
            q = k = v = None
            try:
                q, k, v = _qkv(batch_size, n_head, T, head_dim, dev, dt)
                if mode == "fwdbwd":
                    row.saved_bytes = int(saved_bytes(attention_core, q, k, v, b, tile=tile))
                run = _fwdbwd(b, q, k, v, tile) if mode == "fwdbwd" else _fwd(b, q, k, v, tile)
                if dev.type == "cuda":
                    run()  # warm-up (flex compiles here), then the measured peak
                    row.peak_bytes = _cuda_peak(run, dev)
                if measure_time:
                    tm = time_fn(run, dev, min_run_time=min_run_time, warmup=1, min_measurements=3)
                    row.median_ms, row.iqr_ms = tm.median_ms, tm.iqr_ms
            except SWEEP_ERRORS as e:
                row.error = error_text(e)
            finally:
                del q, k, v
                free_memory(dev)
            rows.append(row)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return rows


def loglog_slopes(rows: Sequence[AttentionPoint], value: str = "saved_bytes",
                  last: Optional[int] = None) -> Dict[str, float]:
    """Per backend, the fitted exponent of ``value`` in T (``plots.fit_loglog_slope`` over its
    successful rows; ``last``: only the largest-T points): ~2 quadratic, ~1 linear. NaN with fewer
    than two usable points."""
    from tutorial_lib.plots import fit_loglog_slope

    out: Dict[str, float] = {}
    for b in dict.fromkeys(r.backend for r in rows):
        pts = [(r.seq_len, getattr(r, value)) for r in rows if r.backend == b and r.ok]
        try:
            out[b] = fit_loglog_slope([p[0] for p in pts], [p[1] for p in pts], last=last)[0]
        except ValueError:
            out[b] = float("nan")
    return out


_UNITS = {"saved_bytes": ("MiB kept for backward", 2 ** 20), "peak_bytes": ("CUDA peak above inputs, MiB", 2 ** 20),
          "median_ms": ("ms per forward+backward", 1.0), "scores_bytes": ("MiB", 2 ** 20)}


def sweep_figure(rows: Sequence[AttentionPoint], value: str = "saved_bytes", title: str = ""):
    """``plots.loglog_scaling`` of ``value`` (saved_bytes, peak_bytes or median_ms) vs T, one line
    per backend with its fitted slope; failed points are named under the axes. Returns a Figure."""
    from tutorial_lib.plots import loglog_scaling

    if value not in _UNITS:
        raise ValueError(f"value={value!r} is not one of {list(_UNITS)}")
    label, scale = _UNITS[value]
    series = {}
    for b in dict.fromkeys(r.backend for r in rows):
        pts = [(r.seq_len, getattr(r, value) / scale) for r in rows
               if r.backend == b and r.ok and getattr(r, value)]
        if pts:
            series[b] = ([p[0] for p in pts], [p[1] for p in pts])
    r0 = rows[0] if rows else None
    stamp = (f"{r0.device_name}, {r0.dtype}, B={r0.batch_size} H={r0.n_head} D={r0.head_dim}"
             if r0 else "")
    fig = loglog_scaling(series, ylabel=label, title=title or stamp)
    failed = sorted({f"{r.backend}: {r.error.split(':')[0]}" for r in rows if not r.ok})
    if failed:
        fig.text(0.01, 0.005, "not measured -- " + "; ".join(failed), fontsize=7, va="bottom")
    return fig


# ---- the whole model -------------------------------------------------------------------------
def model_backend_comparison(config, batch_size: int, seq_len: int,
                             backends: Sequence[str] = ("eager", "sdpa"), device=None, dtype=None,
                             min_run_time: Optional[float] = None, measure_time: bool = True) -> List[dict]:
    """A GPT training step (AdamW) with each attention backend: step time (``measure_step``) and
    memory (``memory_breakdown``: saved activations by component everywhere, peak on CUDA).
    One dict per backend; an OOM or unsupported backend is a row with ``error``."""
    from tutorial_lib import settings
    from tutorial_lib.measure.bench import (SWEEP_ERRORS, error_text, free_memory, measure_step,
                                            resolve_config)
    from tutorial_lib.measure.memory import memory_breakdown

    cfg = resolve_config(config)
    dev = settings.get_device(device) if not isinstance(device, torch.device) else device
    dt = settings.parse_dtype(dtype) if dtype is not None else settings.default_dtype(dev)
    rows = []
    for b in backends:
        c = cfg.replace(attn_backend=b)
        row = {"backend": b, "preset": cfg.name, "batch_size": batch_size, "seq_len": seq_len,
               "device": str(dev), "device_name": settings.device_name(dev),
               "dtype": settings.dtype_name(dt), "median_ms": None, "tokens_per_s": None,
               "activations_bytes": None, "scores_bytes": None, "total_bytes": None,
               "peak_bytes": None, "error": None}
        try:
            mem = memory_breakdown(c, batch_size, seq_len, device=dev, dtype=dt)
            row.update(activations_bytes=mem.activations_bytes,
                       scores_bytes=mem.activations_by_component.get("attention.scores", 0),
                       total_bytes=mem.total_bytes, peak_bytes=mem.peak_bytes,
                       params_bytes=mem.params_bytes, grads_bytes=mem.grads_bytes,
                       optimizer_bytes=mem.optimizer_bytes,
                       activations_by_group=mem.activations_by_group())
            del mem
            gc.collect()
            if measure_time:
                st = measure_step(c, batch_size, seq_len, mode="train", device=dev, dtype=dt,
                                  min_run_time=min_run_time)
                row.update(median_ms=st.median_ms, iqr_ms=st.iqr_ms, tokens_per_s=st.tokens_per_s)
                if st.peak_mem_bytes is not None:
                    row["timed_peak_bytes"] = st.peak_mem_bytes
        except SWEEP_ERRORS as e:
            row["error"] = error_text(e)
        finally:
            free_memory(dev)
        rows.append(row)
    return rows


# ---- the picture -----------------------------------------------------------------------------
def tile_grid(T: int, tile: int, window: Optional[int] = None) -> List[List[str]]:
    """For each (query tile, key tile): "full" (computed, no mask), "masked" (computed, partly
    masked: the diagonal or the window's edge) or "skipped" (never computed) -- exactly what
    ``flash.tiled_attention_forward`` does."""
    from tutorial_lib.flash import _key_range, _tile_mask

    if not isinstance(T, int) or T < 1 or not isinstance(tile, int) or tile < 1:
        raise ValueError(f"T={T!r} and tile={tile!r} must be positive integers")
    n = math.ceil(T / tile)
    grid = [["skipped"] * n for _ in range(n)]
    for qi, q0 in enumerate(range(0, T, tile)):
        q1 = min(q0 + tile, T)
        for k0 in _key_range(q0, q1, T, tile, window):
            k1 = min(k0 + tile, T)
            grid[qi][k0 // tile] = "full" if _tile_mask(q0, q1, k0, k1, window, "cpu") is None else "masked"
    return grid


def tiling_figure(T: int = 512, tile: int = 64, window: Optional[int] = None):
    """Left: the (T, T) score matrix eager attention materialises. Right: the tiles the tiled
    kernel visits -- only a (tile, tile) block exists at a time; tiles above the diagonal are
    skipped. Returns a Figure."""
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    grid = tile_grid(T, tile, window)
    code = {"skipped": 0, "masked": 1, "full": 2}
    arr = np.array([[code[c] for c in row] for row in grid])
    fig = Figure(figsize=(9, 4.2))
    a1, a2 = fig.subplots(1, 2)
    qi = np.arange(T)[:, None]
    kj = np.arange(T)[None, :]
    causal = (kj <= qi) & ((qi - kj < window) if window else True)
    a1.imshow(causal, cmap=ListedColormap(["#eeeeee", "#d62728"]), interpolation="nearest")
    a1.set_title(f"eager: a full {T}x{T} score matrix per head\n(red = used, grey = masked but "
                 "still computed and stored)", fontsize=8)
    a2.imshow(arr, cmap=ListedColormap(["#eeeeee", "#ff7f0e", "#2ca02c"]), vmin=0, vmax=2,
              interpolation="nearest")
    counts = {k: sum(row.count(k) for row in grid) for k in code}
    a2.set_title(f"tiled: {tile}x{tile} tiles, one at a time\ngreen = computed ({counts['full']}), "
                 f"orange = computed with mask ({counts['masked']}), grey = skipped ({counts['skipped']})",
                 fontsize=8)
    for ax, lab in ((a1, "key position"), (a2, "key tile")):
        ax.set_xlabel(lab)
    a1.set_ylabel("query position")
    a2.set_ylabel("query tile")
    fig.tight_layout()
    return fig
