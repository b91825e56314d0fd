"""The sliding-window lesson (06) as functions: the cost-vs-T sweep, the whole-model payoff, the
figures, the explorer's numbers and the exercises' checkers (sizes: ``sizes.Window``).

- ``window_sweep``: time (and memory kept for backward) of the attention core vs T at a fixed
  window, for full causal SDPA, SDPA with a band mask, the blocked local path (fast CPU version
  and the plain-SDPA version) and FlexAttention. Implementations are timed *interleaved*, in
  rounds, so a busy machine slows all of them alike; ``speedups`` takes per-round ratios.
- ``work_grid`` / ``window_work_figure`` / ``receptive_field_figure``: which scores each
  implementation computes, and how far back stacked windowed layers see.
- ``window_point`` / ``mask_density``: what the window explorer shows.
- ``sweep_speedups`` / ``core_ceiling``: each implementation's per-round speedup over full causal
  SDPA as a ``speedups.Speedup``, with the attention core's analytic ceiling where the cost model
  describes the implementation.
- ``model_payoff``: a whole GPT training step with and without the window, at several T, each
  speedup with its range, rounds and ceiling (``measure.roofline.speedup_ceiling``).
- ``check_window_mask``, ``check_visible_pairs``: checkers for the exercises.
"""
from __future__ import annotations

import dataclasses
import statistics
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from tutorial_lib import settings
from tutorial_lib.attention import sliding_window as kernels
from tutorial_lib.attention.flex import flex_attention, has_flex_attention
from tutorial_lib.attention.reference import causal_mask, visible_pairs
from tutorial_lib.lessons.common import (
    CheckResult,
    attention_runner,
    call_checked,
    fit_loglog_slope,
    measure_variants,
    slopes_by,
)
from tutorial_lib.measure.memory import peak_bytes, saved_bytes
from tutorial_lib.measure.roofline import attention_core_ceiling, speedup_ceiling
from tutorial_lib.measure.timing import (
    SWEEP_ERRORS,
    error_text,
    free_memory,
    paired_speedup,
    progress_bar,
    resolve_config,
    time_rounds,
)
from tutorial_lib.model import GPTConfig
from tutorial_lib.sizes import get_sizes
from tutorial_lib.speedups import Speedup

IMPLS = ("causal", "band_mask", "local", "local_sdpa", "flex")
IMPL_LABELS = {
    "causal": "full causal SDPA (is_causal)",
    "band_mask": "SDPA + (T, T) band mask",
    "local": "local: blocked, CPU flash kernel + lse merge",
    "local_sdpa": "local_sdpa: blocked, plain SDPA calls",
    "flex": "FlexAttention + sliding-window block mask",
}


# ---- the sweep -------------------------------------------------------------------------------
@dataclass
class WindowPoint:
    """One implementation at one T. Times in ms (median over rounds), memory in bytes."""
    impl: str
    seq_len: int
    window: int
    batch_size: int
    n_head: int
    n_kv_head: int
    head_dim: int
    device: str
    device_name: str
    dtype: str
    mode: str  # "fwdbwd" or "fwd"
    visible_pairs: int  # (query, key) pairs the window lets through, per head and sequence
    median_ms: Optional[float] = None
    iqr_ms: Optional[float] = None
    round_ms: List[float] = field(default_factory=list)  # each round's median, in round order
    saved_bytes: Optional[int] = None  # kept for backward (inputs excluded); fwdbwd only
    peak_bytes: Optional[int] = None  # allocator peak above the inputs, one fwd(+bwd) (CPU and CUDA)
    error: Optional[str] = None
    kind: str = "window_curve"

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def attention_fn(impl: str, window: int) -> Callable:
    """fn(q, k, v) for one implementation (all take (B, H, T, D) and (B, Hkv, T, D))."""


    if impl == "causal":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                              enable_gqa=q.shape[1] != k.shape[1])
    if impl == "band_mask":
        return lambda q, k, v: kernels.band_mask_attention(q, k, v, window)
    if impl == "local":
        return lambda q, k, v: kernels.local_window_attention(q, k, v, window)
    if impl == "local_sdpa":
        return lambda q, k, v: kernels.local_window_attention_sdpa(q, k, v, window)
    if impl == "flex":
        def flex(q, k, v):
            with warnings.catch_warnings():  # "called without torch.compile()" on CPU: we know
                warnings.simplefilter("ignore", UserWarning)
                return flex_attention(q, k, v, window)
        return flex
    raise ValueError(f"impl={impl!r} is not one of {list(IMPLS)}")


def window_sweep(seq_lens: Sequence[int], window: int, impls: Optional[Sequence[str]] = None,
                 batch_size: int = 1, n_head: int = 12, n_kv_head: Optional[int] = None,
                 head_dim: int = 64, device=None, dtype=None, mode: str = "fwdbwd",
                 min_run_time: Optional[float] = None, rounds: int = 3, measure_memory: bool = True,
                 measure_time: bool = True, progress: bool = False) -> List[WindowPoint]:
    """Time and memory of the attention core vs T at a fixed window, per implementation.

    For every T, all implementations are timed in turn, ``rounds`` times (interleaved), each
    timing a ``measure.timing.time_fn`` (torch.utils.benchmark, median of blocks); the point's
    ``median_ms`` is the median of its rounds. Memory: bytes autograd keeps for backward
    (``measure.memory.saved_bytes``, ``mode="fwdbwd"``) and the allocator's peak over one call
    above the inputs (``measure.memory.peak_bytes``: CUDA's max_memory_allocated, on CPU
    torch.profiler's memory events), which counts the temporaries too. FlexAttention
    has no CPU backward: on CPU its fwdbwd rows carry that error (time it with ``mode="fwd"``).
    Failures (OOM, unsupported) become rows with ``error``; the sweep goes on.
    ``measure_time=False``: memory only (deterministic for given sizes on a given torch build).
    """
    impls = list(impls) if impls is not None else [i for i in IMPLS if i != "flex" or has_flex_attention()]
    for i in impls:
        if i not in IMPLS:
            raise ValueError(f"impl={i!r} is not one of {list(IMPLS)}")
    if mode not in ("fwdbwd", "fwd"):
        raise ValueError(f"mode={mode!r} is not one of ['fwdbwd', 'fwd']")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window={window!r} must be an integer >= 1")
    Ts = list(seq_lens)
    if not Ts or any(not isinstance(T, int) or isinstance(T, bool) or T < 1 for T in Ts):
        raise ValueError(f"seq_lens={seq_lens!r} must be a non-empty list of positive integers")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds={rounds!r} must be an integer >= 1")
    if not measure_time:
        rounds = 0
    Hkv = n_head if n_kv_head is None else n_kv_head
    if n_head % Hkv:
        raise ValueError(f"n_head={n_head} is not a multiple of n_kv_head={n_kv_head}")
    dev, dt = settings.resolve(device, dtype)
    if min_run_time is None:
        min_run_time = get_sizes(device=dev).window.min_run_time
    name = settings.device_name(dev)
    bar = progress_bar(len(Ts) * len(impls) * max(rounds, 1), "window sweep", progress)
    rows: List[WindowPoint] = []
    for T in Ts:
        g = torch.Generator().manual_seed(T)
        grad = mode == "fwdbwd"  # forward-only inputs do not require grad (flex on CPU insists)
        q = torch.randn(batch_size, n_head, T, head_dim, generator=g).to(dev, dt).requires_grad_(grad)
        k, v = (torch.randn(batch_size, Hkv, T, head_dim, generator=g).to(dev, dt).requires_grad_(grad)
                for _ in range(2))
        pts, runs = {}, {}
        for impl in impls:
            p = WindowPoint(impl, T, window, batch_size, n_head, Hkv, head_dim, str(dev), name,
                            settings.dtype_name(dt), mode, visible_pairs(T, window))
            pts[impl] = p
            fn = attention_fn(impl, window)
            try:
                if impl == "flex" and mode == "fwdbwd" and dev.type == "cpu":
                    raise NotImplementedError("flex_attention has no CPU backward in PyTorch "
                                              "(forward only: time it with mode='fwd')")
                run = attention_runner(fn, q, k, v, mode)
                if measure_time or measure_memory:
                    run()  # warm-up (flex compiles on CUDA here; cached masks, thread pools)
                if mode == "fwdbwd" and measure_memory:
                    p.saved_bytes = int(saved_bytes(fn, q, k, v))
                if measure_memory:
                    for t in (q, k, v):  # a gradient made before the measurement is freed unseen
                        t.grad = None
                    p.peak_bytes = peak_bytes(run, dev)
                runs[impl] = run
            except SWEEP_ERRORS as e:
                p.error = error_text(e)
                if bar is not None:
                    bar.update(max(rounds, 1))
        # interleaved rounds (``timing.time_rounds``): more while a point's rounds disagree
        times, failed = time_rounds(runs, dev, rounds, min_run_time, bar=bar, warmup=0) if rounds else ({}, {})
        for impl, ts in times.items():
            pts[impl].round_ms = ts
            if impl in failed:
                pts[impl].error = failed[impl]
        for p in pts.values():
            if p.error is None and p.round_ms:
                p.median_ms = statistics.median(p.round_ms)
                qs = sorted(p.round_ms)
                p.iqr_ms = qs[(3 * len(qs)) // 4] - qs[len(qs) // 4] if len(qs) > 1 else 0.0
            rows.append(p)
            if bar is not None and not rounds and p.error is None:
                bar.update(1)
        del q, k, v, runs
        free_memory(dev)
    if bar is not None:
        bar.close()
    return rows


def speedups(rows: Sequence[WindowPoint], base: str = "causal") -> Dict[str, Dict[int, float]]:
    """{impl: {T: speedup over ``base``}}: the median over rounds of base_ms / impl_ms, each ratio
    taken within one round (both timed back to back), so machine load cancels out."""
    by = {(r.impl, r.seq_len): r for r in rows if r.ok and r.round_ms}
    out: Dict[str, Dict[int, float]] = {}
    for (impl, T), r in by.items():
        b = by.get((base, T))
        if b is None:
            continue
        med = paired_speedup(b.round_ms, r.round_ms)[0]
        if med is not None:
            out.setdefault(impl, {})[T] = med
    return out


# the attention backend (``attention`` registry) whose kernels the cost model uses for an implementation;
# local_sdpa (many plain SDPA calls) has no entry of its own
CORE_BACKENDS = {"causal": ("sdpa", False), "band_mask": ("sdpa", True), "local": ("local", True),
                 "flex": ("flex", True)}


def core_ceiling(impl: str, base: str, seq_len: int, window: int, batch_size: int, n_head: int, head_dim: int,
                 dtype: str = "float32", device_type: str = "cpu", mode: str = "fwdbwd") -> Optional[float]:
    """The most ``impl`` can speed up the attention core over ``base`` by the cost model
    (``measure.roofline.attention_core_ceiling``, one layer; forward only for mode "fwd"). None
    where the cost model has no kernels for one of them."""
    if impl not in CORE_BACKENDS or base not in CORE_BACKENDS:
        return None
    cfgs = []
    for name in (base, impl):
        backend, windowed = CORE_BACKENDS[name]
        cfgs.append(GPTConfig(n_layer=1, n_head=n_head, n_embd=n_head * head_dim, block_size=max(1024, seq_len),
                              attn_backend=backend, window=window if windowed else None, pos="learned"))
    return attention_core_ceiling(*cfgs, batch_size, seq_len, dtype, device_type, backward=mode == "fwdbwd")


def sweep_speedups(rows: Sequence[WindowPoint], base: str = "causal") -> Dict[str, Dict[int, Speedup]]:
    """{impl: {T: speedup over ``base``}} as ``speedups.Speedup``s: per-round ratios (both timed in
    the same rounds), their range and rounds, and the attention core's ceiling (``core_ceiling``)."""
    by = {(r.impl, r.seq_len): r for r in rows if r.ok and r.round_ms}
    out: Dict[str, Dict[int, Speedup]] = {}
    for (impl, T), r in by.items():
        b = by.get((base, T))
        if b is None or impl == base:
            continue
        ceiling = core_ceiling(impl, base, T, r.window, r.batch_size, r.n_head, r.head_dim, r.dtype,
                               r.device.split(":")[0], r.mode)
        out.setdefault(impl, {})[T] = Speedup.from_times(b.round_ms, r.round_ms, ceiling)
    return out


def slopes(rows: Sequence[WindowPoint], value: str = "median_ms", last: Optional[int] = 2
           ) -> Dict[str, float]:
    """Fitted log-log exponent of ``value`` in T per implementation (``common.slopes_by``);
    ``last``: fit the largest-T points only (the regime T >> W). NaN when it cannot be fitted."""
    return slopes_by(rows, "impl", value, last)


def round_slopes(rows: Sequence[WindowPoint], last: Optional[int] = 2) -> Dict[str, List[float]]:
    """The time exponent fitted separately for each interleaved round (each round's times of the
    largest-T points): its spread says how much of a fitted slope is noise."""
    out: Dict[str, List[float]] = {}
    for impl in dict.fromkeys(r.impl for r in rows):
        pts = [r for r in rows if r.impl == impl and r.ok and r.round_ms]
        n = min((len(r.round_ms) for r in pts), default=0)
        fits = []
        for i in range(n):
            try:
                fits.append(fit_loglog_slope([r.seq_len for r in pts], [r.round_ms[i] for r in pts], last=last)[0])
            except ValueError:
                pass
        out[impl] = fits
    return out


# ---- quality and whole-model payoff ------------------------------------------------------------
def model_payoff(preset: str, seq_lens: Sequence[int], window: int, batch_size: int = 1,
                 device=None, min_run_time: Optional[float] = None, rounds: int = 3) -> List[dict]:
    """A whole GPT training step (fwd + bwd + AdamW) with full causal SDPA vs the local window,
    at each T: ms/step and the speedup the window buys -- the two timed interleaved, in rounds,
    with per-round ratios (``common.measure_variants``) -- as a ``speedups.Speedup`` with its range,
    rounds and analytic ceiling (``measure.roofline.speedup_ceiling``); errors become rows."""

    rows = []
    for T in seq_lens:
        cfg = resolve_config(preset)
        cfg = cfg.replace(block_size=max(cfg.block_size, T))
        full, win = cfg.replace(attn_backend="sdpa", window=None), cfg.replace(attn_backend="local", window=window)
        res = measure_variants({"full": full, "window": win}, batch_size, T, rounds=rounds,
                               min_run_time=min_run_time, device=device, memory=False)
        f, w = res
        ok = not f.get("error") and not w.get("error")
        sp = None
        if ok:
            sp = Speedup.from_row(w, ceiling=speedup_ceiling(full, win, batch_size, T, w.get("dtype", "float32"),
                                                             str(w.get("device", "cpu")).split(":")[0]))
        rows.append({"preset": cfg.name, "seq_len": T, "window": window, "batch_size": batch_size,
                     "full_ms": f.get("median_ms"), "window_ms": w.get("median_ms"),
                     "speedup": sp.value if sp else None, "speedup_of": sp,
                     "device_name": f.get("device_name") or w.get("device_name"),
                     "error": None if ok else (f.get("error") or w.get("error"))})
    return rows


# ---- figures ---------------------------------------------------------------------------------
# cell states of a work grid
SKIPPED, MASKED, USED = 0, 1, 2
_CMAP = ListedColormap(["#ffffff", "#f4a6a6", "#1f77b4"])


def _visible(T: int, W: Optional[int]) -> np.ndarray:
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    ok = j <= i
    return ok & (i - j < W) if W is not None else ok


def work_grid(T: int, window: Optional[int], impl: str, block: Optional[int] = None) -> np.ndarray:
    """(T, T) grid of SKIPPED / MASKED (computed, then thrown away) / USED per (query, key).

    impl: "causal" (a causal kernel: the lower triangle, tiles ignored), "band_mask" (every score
    is computed, the mask throws most away), "local" (``window.local_window_attention``'s CPU
    schedule: the first W queries causally, then blocks of b queries x (b + W - 1) keys).
    """
    vis = _visible(T, window)
    grid = np.full((T, T), SKIPPED, dtype=int)
    if impl == "causal":
        grid[_visible(T, None)] = MASKED
    elif impl == "band_mask":
        grid[:, :] = MASKED
    elif impl == "local":
        if window is None:
            raise ValueError("work_grid: impl='local' needs a window")
        W = window
        if W >= T:
            grid[_visible(T, None)] = MASKED
        else:
            grid[:W, :W] = MASKED  # one causal W x W call (the kernel computes the whole tile)
            b = kernels.block_for(W, block) if block else kernels.block_for(W)
            for q0 in range(W, T, b):
                q1 = min(q0 + b, T)
                grid[q0:q1, q0 - W + 1:q0] = MASKED  # the W-1 keys before the block
                grid[q0:q1, q0:min(q0 + b, T)] = MASKED  # the block itself
    else:
        raise ValueError(f"impl={impl!r} is not one of ['causal', 'band_mask', 'local']")
    grid[vis & (grid == MASKED)] = USED
    return grid


def window_work_figure(T: int = 24, window: int = 6, block: Optional[int] = None) -> Figure:
    """Three panels: full causal, a band mask on full attention, the blocked local path."""
    panels = [("full causal, no window", work_grid(T, None, "causal")),
              (f"band mask, W={window}: all T×T computed", work_grid(T, window, "band_mask")),
              (f"local, W={window}: blocks only", work_grid(T, window, "local", block))]
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (title, g) in zip(axes, panels):
        ax.imshow(g, cmap=_CMAP, vmin=0, vmax=2, interpolation="nearest")
        computed = int((g != SKIPPED).sum())
        used = int((g == USED).sum())
        ax.set_title(f"{title}\ncomputed {computed}, used {used} of {T * T}", fontsize=9)
        ax.set_xlabel("key position j")
        ax.set_ylabel("query position i")
        ax.set_xticks(range(0, T, max(1, T // 6)))
        ax.set_yticks(range(0, T, max(1, T // 6)))
    fig.legend(handles=[Patch(color=_CMAP(2), label="computed and used"),
                        Patch(color=_CMAP(1), label="computed, then masked"),
                        Patch(facecolor="white", edgecolor="grey", label="never computed")],
               loc="outside lower center", ncol=3, fontsize=8)
    return fig


def receptive_field_figure(n_layer: int, window: int, T: int) -> Figure:
    """Which input positions the last position's output can depend on, layer by layer."""
    fig = Figure(figsize=(9, 0.45 * n_layer + 1.6), layout="constrained")
    ax = fig.subplots()
    last = T - 1
    for depth in range(1, n_layer + 1):
        rf = kernels.receptive_field(depth, window)
        lo = max(0, last - rf + 1)
        ax.add_patch(Rectangle((lo - 0.5, depth - 0.4), last - lo + 1, 0.8, color="#1f77b4",
                               alpha=0.35 + 0.5 * depth / n_layer))
        ax.text(lo - 1, depth, f"{min(rf, T)} tokens", ha="right", va="center", fontsize=8)
    ax.axvline(last, color="k", lw=1)
    ax.set_xlim(-0.5 - T * 0.12, T - 0.5)
    ax.set_ylim(0.4, n_layer + 0.6)
    ax.set_yticks(range(1, n_layer + 1), [f"after layer {d}" for d in range(1, n_layer + 1)], fontsize=8)
    ax.set_xlabel("input position (the last position, on the right, is the query)")
    ax.set_title(f"Receptive field of the last token: window W={window}, each layer reaches W-1 = "
                 f"{window - 1} further back", fontsize=9)
    return fig


# ---- the explorer's numbers -------------------------------------------------------------------
def mask_density(seq_len: int, window: Optional[int], grid: int = 64):
    """(grid, grid) array: the fraction of each block of the (T, T) mask a query may see --
    an honest thumbnail of a mask too big to draw element by element."""

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

    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len={seq_len!r} must be a positive integer")
    if window is not None and (not isinstance(window, int) or window < 1):
        raise ValueError(f"window={window!r} must be None or a positive integer")
    full = kernels.window_flops(seq_len, None, head_dim, n_head, batch_size) * n_layer
    win = kernels.window_flops(seq_len, window, head_dim, n_head, batch_size) * n_layer
    return {"window": window, "seq_len": seq_len, "pairs": visible_pairs(seq_len, window),
            "pairs_full": visible_pairs(seq_len), "flops": win, "flops_full": full,
            "flop_ratio": full / win, "receptive_field": kernels.receptive_field(n_layer, window),
            "n_layer": n_layer}


# ---- exercises ---------------------------------------------------------------------------------
def check_window_mask(fn: Callable) -> "object":
    """Check ``fn(T, W)`` -> (T, T) bool mask, True where query i may see key j (j <= i, i-j < W)."""

    name = "window_mask"
    cases = [(1, 1), (5, 1), (6, 2), (7, 3), (8, 8), (9, 20)]
    for T, W in cases:
        got, err = call_checked(name, fn, T, W)
        if err is not None:
            return err
        want = causal_mask(T, T, W)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != (T, T):
            return CheckResult(name, False, f"fn({T}, {W}) should return a ({T}, {T}) tensor, got "
                               f"{getattr(got, 'shape', type(got).__name__)}")
        got = got.bool()
        if torch.equal(got, want):
            continue
        if torch.equal(got, want.T):
            return CheckResult(name, False, f"T={T}, W={W}: transposed -- rows are queries, columns keys")
        if torch.equal(got, causal_mask(T, T, W + 1)):
            return CheckResult(name, False, f"T={T}, W={W}: one key too many -- a window of W holds the "
                               "query itself and W-1 keys before it")
        if torch.equal(got, causal_mask(T, T)):
            return CheckResult(name, False, f"T={T}, W={W}: that is plain causal -- the window is missing")
        i, j = (got != want).nonzero()[0].tolist()
        return CheckResult(name, False, f"T={T}, W={W}: entry (query {i}, key {j}) should be "
                           f"{bool(want[i, j])}")
    return CheckResult(name, True, f"all {len(cases)} cases match", len(cases))


def check_visible_pairs(fn: Callable) -> "object":
    """Check ``fn(T, W)`` -> number of (query, key) pairs a causal window W lets through."""

    name = "visible_pairs"
    cases = [(1, 1), (10, 1), (10, 3), (10, 10), (10, 50), (4096, 256)]
    for T, W in cases:
        got, err = call_checked(name, fn, T, W)
        if err is not None:
            return err
        want = visible_pairs(T, W)
        if got == want:
            continue
        if got == T * W:
            return CheckResult(name, False, f"T={T}, W={W}: {got} counts W keys for every query; the "
                               f"first W-1 queries have fewer keys before them")
        if got == T * (T + 1) // 2:
            return CheckResult(name, False, f"T={T}, W={W}: {got} is full causal -- apply the window")
        return CheckResult(name, False, f"T={T}, W={W}: got {got}, expected {want}")
    return CheckResult(name, True, f"all {len(cases)} cases match", len(cases))
