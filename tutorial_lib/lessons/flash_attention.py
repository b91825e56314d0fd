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
- ``tile_grid`` / ``tiling_figure``: which tiles the tiled kernel computes, skips or masks.
- ``flash_point``: what the flash explorer shows for one T (analytic bytes, and recorded ones).
- ``check_online_softmax_update``: the exercise's checker.
"""
from __future__ import annotations

import dataclasses
import gc
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from tutorial_lib import attention, settings
from tutorial_lib.attention import attention_core
from tutorial_lib.attention.flash_tiled import key_tiles, online_softmax_update, tile_mask
from tutorial_lib.lessons.common import (
    CheckResult,
    call_checked,
    fit_loglog_slope,
    loglog_scaling,
    measure_variants,
    slopes_by,
)
from tutorial_lib.measure import cost, records
from tutorial_lib.measure.memory import memory_breakdown, peak_bytes, saved_bytes
from tutorial_lib.measure.roofline import attention_core_ceiling, speedup_ceiling
from tutorial_lib.measure.timing import (
    NOISY,
    SWEEP_ERRORS,
    error_text,
    free_memory,
    paired_speedup,
    progress_bar,
    resolve_config,
    spread_of,
    time_rounds,
)
from tutorial_lib.model import get_config
from tutorial_lib.speedups import Speedup

WORKED_SCORES = (2.0, 1.0, 3.0, 0.5, 4.0, 1.5)  # one query's scores against six keys
WORKED_VALUES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)  # each key's value (head_dim 1, so it prints)
LESSON_BACKENDS = ("eager", "tiled", "sdpa", "flex")


# ---- the online softmax, by hand -------------------------------------------------------------
def online_softmax_walkthrough(scores: Sequence[float] = WORKED_SCORES,
                               values: Sequence[float] = WORKED_VALUES, tile: int = 2) -> dict:
    """Run ``attention.flash_tiled.online_softmax_update`` over one query's keys, ``tile`` keys at a time (float64).

    Returns {"steps": [one dict per tile: keys, scores, m_old, m_new, alpha = exp(m_old - m_new),
    l, acc, out = acc / l], "probs": softmax(scores), "reference": softmax(scores) . values,
    "final": the last out, "abs_error": |final - reference|}.
    """

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
    peak_bytes: Optional[int] = None  # allocator peak above the inputs over one call (CPU and CUDA)
    median_ms: Optional[float] = None  # median over the interleaved rounds
    iqr_ms: Optional[float] = None  # interquartile range of the rounds' times
    times_ms: List[float] = dataclasses.field(default_factory=list)  # one per round
    spread: Optional[float] = None  # (max - min) / median of times_ms: above NOISY, the machine was busy
    noisy: bool = False
    speedup: Optional[float] = None  # vs the first backend at this T: median of per-round ratios ...
    speedup_min: Optional[float] = None  # ... and their range
    speedup_max: Optional[float] = None
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_backends(device=None) -> tuple:
    """eager, tiled, sdpa, and flex where this PyTorch has it (CPU rows record its missing backward)."""
    return tuple(b for b in LESSON_BACKENDS if attention.get(b).available())


def _qkv(B, H, T, D, device, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g).to(device=device, dtype=dtype).requires_grad_()
            for _ in range(3)]


def _fwdbwd(backend, q, k, v, tile):

    def run():
        for t in (q, k, v):
            t.grad = None
        out = attention_core(q, k, v, backend, tile=tile)
        out.backward(torch.ones_like(out))
    return run


def _fwd(backend, q, k, v, tile):

    def run():
        with torch.no_grad():
            attention_core(q, k, v, backend, tile=tile)
    return run


def attention_sweep(seq_lens: Sequence[int], backends: Optional[Sequence[str]] = None,
                    batch_size: int = 1, n_head: int = 12, head_dim: int = 64, device=None,
                    dtype=None, mode: str = "fwdbwd", measure_time: bool = True, measure_peak: bool = True,
                    min_run_time: Optional[float] = None, tile: int = 64, rounds: int = 3,
                    progress: bool = False) -> List[AttentionPoint]:
    """Memory and time of causal attention alone, (B, H, T, D) inputs, per backend and T.

    Memory: ``saved_bytes`` -- what autograd keeps for backward, measured with
    ``saved_tensors_hooks`` (``measure.memory.saved_bytes``; q, k, v themselves excluded) -- on
    every device; and the allocator's peak above the inputs over one call (``measure.memory.peak_bytes``:
    CUDA's max_memory_allocated, on CPU torch.profiler's memory events), temporaries included.
    Time: ``measure.timing.time_fn`` of forward+backward (``mode="fwdbwd"``) or forward, the
    backends at one T timed in ``rounds`` interleaved rounds (load that comes and goes slows them
    alike); while a backend's rounds spread more than ``timing.NOISY``, up to twice as many rounds
    (a row still that spread says ``noisy``). ``speedup``: the first backend's time / this one's,
    median of the per-round ratios, with their range.
    dtype: None = bf16 on CUDA, fp32 elsewhere (inputs are created in it; no autocast).
    """

    Ts = list(seq_lens)
    if not Ts:
        raise ValueError("seq_lens is empty")
    for T in Ts:
        if not isinstance(T, int) or isinstance(T, bool) or T < 1:
            raise ValueError(f"seq_len {T!r} must be a positive integer")
    for nm, val in (("batch_size", batch_size), ("n_head", n_head), ("head_dim", head_dim), ("tile", tile),
                    ("rounds", rounds)):
        if not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise ValueError(f"{nm}={val!r} must be a positive integer")
    if mode not in ("fwdbwd", "fwd"):
        raise ValueError(f"mode={mode!r} is not one of ['fwdbwd', 'fwd']")
    backends = list(backends) if backends is not None else list(default_backends())
    for b in backends:
        if b not in attention.names() or attention.get(b).needs_window:
            raise ValueError(f"backend={b!r} is not one of {list(LESSON_BACKENDS)}")
    dev, dt = settings.resolve(device, dtype)
    esize = torch.empty((), dtype=dt).element_size()
    name = settings.device_name(dev)
    bar = progress_bar(len(backends) * len(Ts), "attention sweep", progress)
    rows = []
    for T in Ts:
        here = [AttentionPoint(backend=b, seq_len=T, batch_size=batch_size, n_head=n_head, head_dim=head_dim,
                               device=str(dev), device_name=name, dtype=settings.dtype_name(dt), mode=mode,
                               scores_bytes=batch_size * n_head * T * T * esize) for b in backends]
        runs = {}
        q = k = v = None
        try:
            q, k, v = _qkv(batch_size, n_head, T, head_dim, dev, dt)
            for row in here:  # memory, backend by backend (bytes do not depend on the load)
                try:
                    if mode == "fwdbwd":
                        row.saved_bytes = int(saved_bytes(attention_core, q, k, v, row.backend, tile=tile))
                    run = _fwdbwd(row.backend, q, k, v, tile) if mode == "fwdbwd" else _fwd(row.backend, q, k, v,
                                                                                          tile)
                    run()  # warm-up (flex compiles here)
                    if measure_peak:
                        for t in (q, k, v):  # gradients made before the profile would be freed unseen
                            t.grad = None
                        row.peak_bytes = peak_bytes(run, dev)
                    runs[row.backend] = run
                except SWEEP_ERRORS as e:
                    row.error = error_text(e)
                    free_memory(dev)
            if measure_time and runs:
                _time_interleaved(here, runs, dev, min_run_time, rounds)
        except SWEEP_ERRORS as e:  # the inputs themselves did not fit
            for row in here:
                row.error = row.error or error_text(e)
        finally:
            runs.clear()
            del q, k, v
            free_memory(dev)
        rows += here
        if bar is not None:
            bar.update(len(here))
    if bar is not None:
        bar.close()
    return [r for b in backends for r in rows if r.backend == b]  # backend by backend, as before


def _time_interleaved(rows: List[AttentionPoint], runs: Dict[str, Callable], dev, min_run_time, rounds: int):
    """Time ``runs`` (one per row's backend) in interleaved rounds (``timing.time_rounds``); fill
    the rows' times, spread and per-round speedups over the first backend."""
    timed = [r for r in rows if r.backend in runs]
    times, failed = time_rounds({r.backend: runs[r.backend] for r in timed}, dev, rounds, min_run_time)
    base = timed[0] if timed and timed[0].backend not in failed else None
    for r in timed:
        r.times_ms = times[r.backend]
        if r.backend in failed:
            r.error = failed[r.backend]
            continue
        if not r.times_ms:
            continue
        r.median_ms = float(np.median(r.times_ms))
        q = np.percentile(r.times_ms, [25, 75])
        r.iqr_ms = float(q[1] - q[0])
        r.spread = spread_of(r.times_ms)
        r.noisy = r.spread > NOISY
        if base is not None:
            r.speedup, r.speedup_min, r.speedup_max = paired_speedup(base.times_ms, r.times_ms)


def loglog_slopes(rows: Sequence[AttentionPoint], value: str = "saved_bytes",
                  last: Optional[int] = None) -> Dict[str, float]:
    """Per backend, the fitted exponent of ``value`` in T (``common.slopes_by`` over its
    successful rows; ``last``: only the largest-T points): ~2 quadratic, ~1 linear. NaN with fewer
    than two usable points."""
    return slopes_by(rows, "backend", value, last)


def point_speedup(row: AttentionPoint, base: str = "eager") -> Optional[Speedup]:
    """A sweep row's speedup over ``base`` at its T (per-round ratios: ``attention_sweep`` times the
    backends in the same rounds) as a ``speedups.Speedup``, with the attention core's analytic
    ceiling (``measure.roofline.attention_core_ceiling``); None for the base row or a failed one."""
    if not row.ok or row.speedup is None or row.backend == base:
        return None
    cfgs = [get_config("gpt2_small", n_layer=1, n_head=row.n_head, n_embd=row.n_head * row.head_dim,
                       block_size=max(1024, row.seq_len), attn_backend=b) for b in (base, row.backend)]
    try:
        ceiling = attention_core_ceiling(*cfgs, row.batch_size, row.seq_len, row.dtype, row.device.split(":")[0],
                                         backward=row.mode == "fwdbwd")
    except (ValueError, TypeError):  # a backend the cost model has no kernels for
        ceiling = None
    return Speedup(row.speedup, row.speedup_min, row.speedup_max, len(row.times_ms), ceiling)


def round_slopes(rows: Sequence[AttentionPoint], value_last: int = 3) -> Dict[str, List[float]]:
    """Per backend, the time exponent fitted separately in each interleaved round (each round's
    times of the ``value_last`` largest T): their spread is how much of a fitted slope is noise."""
    out: Dict[str, List[float]] = {}
    for b in dict.fromkeys(r.backend for r in rows):
        pts = [r for r in rows if r.backend == b and r.ok and r.times_ms]
        n = min((len(r.times_ms) for r in pts), default=0)
        fits = []
        for i in range(n):
            try:
                fits.append(fit_loglog_slope([r.seq_len for r in pts], [r.times_ms[i] for r in pts],
                                             last=value_last)[0])
            except ValueError:
                pass
        out[b] = fits
    return out


def flop_slope(rows: Sequence[AttentionPoint], backend: str, last: int = 3) -> Optional[float]:
    """The exponent in T of the attention core's FLOPs (forward + backward, as the kernels compute
    them: ``cost.attention_core_kernels``) over the sweep's ``last`` largest T: the compute a claim
    such as "Same O(n²)" is about, without the machine's noise."""
    pts = sorted({r.seq_len for r in rows if r.backend == backend})[-last:]
    r0 = next((r for r in rows if r.backend == backend), None)
    if r0 is None or len(pts) < 2:
        return None
    flops = []
    for T in pts:
        c = get_config("gpt2_small", n_layer=1, n_head=r0.n_head, n_embd=r0.n_head * r0.head_dim,
                       block_size=max(1024, T), attn_backend=backend)
        fwd, bwd, _ = cost.attention_core_kernels(c, r0.batch_size, T, settings.dtype_bytes(r0.dtype), "cpu")
        flops.append(sum(k.count * k.flops for k in fwd + bwd))
    return fit_loglog_slope(pts, flops)[0]


def recorded_vs_eager(device: Optional[str] = None, results_dir=None) -> Optional[dict]:
    """The guide suite's recorded ``flash_vs_T`` speedups over eager (``results/*.json``; the first
    file of this kind of device, None: any): {"where": the file and device, "speedups": {(backend,
    T): speedups.Speedup}} -- another run, to set beside this one. None when none is on record."""
    for doc in records.load_all(results_dir):
        if device is not None and records.device_kind(doc["meta"].get("device", "")) != device:
            continue
        rows = [r for r in doc["rows"] if r.get("kind") == "flash_vs_T" and not r.get("error")]
        if rows:
            where = (f"{doc.get('_path', 'results/').split('/')[-1]} ({doc['meta'].get('device_name', '?')}, "
                     f"{str(doc['meta'].get('date', '?'))[:10]})")
            return {"where": where, "speedups": {(r["backend"], r["seq_len"]): Speedup.from_row(r) for r in rows
                                                  if r["backend"] != "eager" and r.get("speedup") is not None}}
    return None


def step_speedup(rows: List[dict], config) -> Optional[Speedup]:
    """``model_backend_comparison``'s second backend over the first as a ``speedups.Speedup``, with
    the training step's analytic ceiling (``measure.roofline.speedup_ceiling``)."""
    base, r = rows[0], rows[1]
    if base.get("error") or r.get("error") or r.get("speedup") is None:
        return None
    cfg = resolve_config(config)
    ceiling = speedup_ceiling(cfg.replace(attn_backend=base["backend"]), cfg.replace(attn_backend=r["backend"]),
                              r["batch_size"], r["seq_len"], r["dtype"], r["device"].split(":")[0])
    return Speedup.from_row(r, ceiling=ceiling)


_UNITS = {"saved_bytes": ("MiB kept for backward", 2 ** 20), "peak_bytes": ("peak above inputs, MiB", 2 ** 20),
          "median_ms": ("ms per forward+backward", 1.0), "scores_bytes": ("MiB", 2 ** 20)}


def sweep_figure(rows: Sequence[AttentionPoint], value: str = "saved_bytes", title: str = ""):
    """``common.loglog_scaling`` of ``value`` (saved_bytes, peak_bytes or median_ms) vs T, one line
    per backend with its fitted slope; failed points are named under the axes. Returns a Figure."""

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
        fig.text(0.01, 0.005, "not measured -- " + "; ".join(failed), fontsize=8, va="bottom")
    return fig


# ---- the whole model -------------------------------------------------------------------------
def model_backend_comparison(config, batch_size: int, seq_len: int,
                             backends: Sequence[str] = ("eager", "sdpa"), device=None, dtype=None,
                             min_run_time: Optional[float] = None, measure_time: bool = True,
                             rounds: int = 3) -> List[dict]:
    """A GPT training step (AdamW) with each attention backend: step time, the backends timed in
    ``rounds`` interleaved rounds (``common.measure_variants``: median, per-round ``speedup`` over
    the first backend with its range, ``noisy`` rows re-measured), and memory
    (``memory_breakdown``: saved activations by component everywhere, peak on CUDA).
    One dict per backend; an OOM or unsupported backend is a row with ``error``."""

    cfg = resolve_config(config)
    dev, dt = settings.resolve(device, dtype)
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
        except SWEEP_ERRORS as e:
            row["error"] = error_text(e)
        finally:
            free_memory(dev)
        rows.append(row)
    if measure_time:
        ok = {r["backend"]: cfg.replace(attn_backend=r["backend"]) for r in rows if not r["error"]}
        timed = {t["variant"]: t for t in measure_variants(ok, batch_size, seq_len, rounds=rounds,
                                                            min_run_time=min_run_time, device=dev, dtype=dt,
                                                            memory=False)} if ok else {}
        for r in rows:
            t = timed.get(r["backend"])
            if t is None:
                continue
            if t["error"]:
                r["error"] = t["error"]
                continue
            r.update({k: t.get(k) for k in ("median_ms", "tokens_per_s", "times_ms", "spread", "noisy",
                                             "speedup", "speedup_min", "speedup_max")})
            r["rounds"] = len(t["times_ms"])
    return rows


# ---- the picture -----------------------------------------------------------------------------
def tile_grid(T: int, tile: int, window: Optional[int] = None) -> List[List[str]]:
    """For each (query tile, key tile): "full" (computed, no mask), "masked" (computed, partly
    masked: the diagonal or the window's edge) or "skipped" (never computed) -- exactly what
    ``attention.flash_tiled.tiled_attention_forward`` does."""

    if not isinstance(T, int) or T < 1 or not isinstance(tile, int) or tile < 1:
        raise ValueError(f"T={T!r} and tile={tile!r} must be positive integers")
    n = math.ceil(T / tile)
    grid = [["skipped"] * n for _ in range(n)]
    for qi, q0 in enumerate(range(0, T, tile)):
        q1 = min(q0 + tile, T)
        for k0 in key_tiles(q0, q1, T, tile, window):
            k1 = min(k0 + tile, T)
            grid[qi][k0 // tile] = "full" if tile_mask(q0, q1, k0, k1, window, "cpu") is None else "masked"
    return grid


def tiling_figure(T: int = 512, tile: int = 64, window: Optional[int] = None):
    """Left: the (T, T) score matrix eager attention materialises. Right: the tiles the tiled
    kernel visits -- only a (tile, tile) block exists at a time; tiles above the diagonal are
    skipped. Returns a Figure."""

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


# ---- the explorer's numbers -------------------------------------------------------------------
def flash_point(seq_len: int, batch_size: int = 1, dtype: str = "float32", preset: str = "gpt2_small",
                docs: Optional[List[dict]] = None, device: Optional[str] = None) -> Dict[str, object]:
    """Attention memory at length T, exact: what eager attention keeps for backward beyond q, k, v
    and its output (the probabilities and the bool mask, ``cost.activation_bytes``' "attention.scores")
    vs a flash kernel (one fp32 logsumexp per query and head), per layer; and the whole training
    step's memory (``cost.training_memory``)."""
    if dtype not in settings.DTYPE_NAMES:
        raise ValueError(f"dtype={dtype!r} is not one of {list(settings.DTYPE_NAMES)}")
    cfg = get_config(preset, block_size=max(1024, seq_len))
    out = {"seq_len": seq_len, "batch_size": batch_size, "dtype": dtype, "n_head": cfg.n_head}
    for backend in ("eager", "sdpa"):
        c = cfg.replace(attn_backend=backend)
        out[f"{backend}_training_bytes"] = cost.training_memory(c, batch_size, seq_len, dtype)["total"]
    scores = cost.activation_bytes(cfg.replace(attn_backend="eager"), batch_size, seq_len, dtype)["attention.scores"]
    out["eager_attention_bytes_per_layer"] = scores // cfg.n_layer
    out["sdpa_attention_bytes_per_layer"] = 4 * batch_size * cfg.n_head * seq_len  # the logsumexp
    out["attention_ratio"] = out["eager_attention_bytes_per_layer"] / out["sdpa_attention_bytes_per_layer"]
    out["training_ratio"] = out["eager_training_bytes"] / out["sdpa_training_bytes"]
    out["measured"] = [{"backend": r.get("backend"), "seq_len": r.get("seq_len"),
                        "saved_bytes": r.get("saved_bytes"), "device_name": m.get("device_name"),
                        "batch_size": r.get("batch_size"), "n_head": r.get("n_head")}
                       for r, m in records.measured_rows("flash_vs_T", docs, device) if r.get("saved_bytes")]
    return out


# ---- exercise ----------------------------------------------------------------------------------
# ---- online softmax ------------------------------------------------------------------------
def _softmax_cases():
    """(scores (B, H, Tq, Tk), v (B, H, Tk, D), tile) cases, float64."""
    g = torch.Generator().manual_seed(0)
    B, H, Tq, Tk, D = 2, 3, 5, 12, 4
    s = torch.randn(B, H, Tq, Tk, generator=g, dtype=torch.float64) * 3
    v = torch.randn(B, H, Tk, D, generator=g, dtype=torch.float64)
    causal = s.clone()
    causal[..., 0, 1:] = float("-inf")  # query 0 sees only key 0 ...
    causal[..., 1, :4] = float("-inf")  # ... query 1's whole first tile is masked
    rising = torch.arange(Tk, dtype=torch.float64).expand(B, H, Tq, Tk) * 2.0  # max grows every tile
    big = s + 1000.0  # exp(1000) overflows: the max must be subtracted
    return [("random scores", s, v, 4), ("a fully masked first tile", causal, v, 4),
            ("a maximum that grows with every tile", rising, v, 4),
            ("large scores (1000 + noise)", big, v, 3)]


def _run_tiles(fn, scores, v, tile):
    """Drive fn over the key tiles; returns the list of states after each tile."""
    B, H, Tq, Tk = scores.shape
    m = torch.full((B, H, Tq, 1), float("-inf"), dtype=scores.dtype)
    l = torch.zeros((B, H, Tq, 1), dtype=scores.dtype)
    acc = torch.zeros((B, H, Tq, v.shape[-1]), dtype=scores.dtype)
    states = []
    for k0 in range(0, Tk, tile):
        out = fn(m, l, acc, scores[..., k0:k0 + tile].clone(), v[..., k0:k0 + tile, :].clone())
        if not (isinstance(out, (tuple, list)) and len(out) == 3):
            raise TypeError(f"it must return (m, l, acc); it returned {type(out).__name__}"
                            + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))
        m, l, acc = out
        states.append((m, l, acc))
    return states


def _variant(kind):
    """Typical wrong versions of the update, to name the mistake a learner's output matches."""
    def fn(m, l, acc, scores, v_tile):
        m_new = torch.maximum(m, scores.amax(dim=-1, keepdim=True))
        m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        m_old = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        p = torch.exp(scores - (m_old if kind == "p_old_max" else m_safe))
        alpha = torch.exp(m - m_safe)
        if kind == "p_old_max":
            alpha = torch.ones_like(alpha)
        l_new = (l if kind == "no_alpha_l" else alpha * l) + p.sum(-1, keepdim=True)
        acc_new = (acc if kind == "no_alpha_acc" else alpha * acc) + p @ v_tile
        if kind == "normalised_acc":
            acc_new = acc_new / l_new
        return m_new, l_new, acc_new
    return fn


_HINTS = {
    "no_alpha_acc": "acc is not rescaled: when the running max grows from m to m_new, multiply the "
                    "old acc by alpha = exp(m - m_new) before adding p @ v_tile",
    "no_alpha_l": "l is not rescaled: multiply the old l by alpha = exp(m - m_new) before adding "
                  "this tile's p.sum(-1)",
    "p_old_max": "this tile's p must use the *new* max (p = exp(scores - m_new)), and the old "
                 "l and acc are then rescaled by exp(m - m_new)",
    "normalised_acc": "acc must stay unnormalised (the running sum of p @ v); divide by l only once, "
                      "after the last tile",
}


def check_online_softmax_update(fn: Callable) -> CheckResult:
    """Check ``fn(m, l, acc, scores, v_tile) -> (m_new, l_new, acc_new)`` for one key tile.

    m, l: running row max and normaliser (..., Tq, 1), starting at -inf and 0; acc: the
    unnormalised output (..., Tq, D) starting at 0; masked scores are -inf. After the last tile,
    acc / l must equal softmax(scores) @ v. Compared step by step with
    ``attention.flash_tiled.online_softmax_update`` on random, masked, growing and huge scores.
    """
    ref_fn = online_softmax_update
    name = "online_softmax_update"
    cases = _softmax_cases()
    runs = []
    # pass 1: the answer acc / l after the last tile, on every case
    for i, (label, scores, v, tile) in enumerate(cases):
        states, err = call_checked(name, _run_tiles, fn, scores, v, tile)
        if err is not None:
            err.message = err.message.replace("your function raised TypeError: it must", "it must")
            return err
        ref_states = _run_tiles(ref_fn, scores, v, tile)
        runs.append((label, states, ref_states))
        want = torch.softmax(scores, dim=-1) @ v
        m, l, acc = states[-1]
        if not all(isinstance(t, torch.Tensor) for t in (m, l, acc)):
            return CheckResult(name, False, "m, l and acc must be tensors", i)
        for nm, a, b in zip(("m", "l", "acc"), (m, l, acc), ref_states[-1]):
            if tuple(a.shape) != tuple(b.shape):
                return CheckResult(name, False, f"with {label}: {nm} has shape {tuple(a.shape)}, "
                                   f"expected {tuple(b.shape)} (keep the trailing size-1 axis of m and l)", i)
        out = acc / l
        if not torch.isfinite(out).all():
            if "masked" in label:
                msg = (f"with {label}: NaN/inf in the output. A row whose tile is all -inf has "
                       "m_new = -inf and exp(-inf - (-inf)) = nan: subtract 0 instead of a "
                       "non-finite max (torch.where(torch.isfinite(m_new), m_new, 0)).")
            elif "large" in label:
                msg = (f"with {label}: the output overflowed (inf/NaN). exp(1000) does not fit in "
                       "a float: subtract the running max before exp.")
            else:
                msg = f"with {label}: NaN/inf in the output"
            return CheckResult(name, False, msg, i)
        if torch.allclose(out, want, rtol=1e-9, atol=1e-9):
            continue
        for kind, hint in _HINTS.items():
            vs = _run_tiles(_variant(kind), scores, v, tile)[-1]
            if all(torch.allclose(x, y, rtol=1e-9, atol=1e-9) for x, y in zip((m, l, acc), vs)):
                return CheckResult(name, False, f"with {label}: {hint}.", i)
        err_max = (out - want).abs().max().item()
        return CheckResult(name, False, f"with {label}: acc / l after the last tile differs from "
                           f"softmax(scores) @ v by up to {err_max:.3g}", i)
    # pass 2: the running state after every tile (the contract the tiled kernel relies on)
    for i, (label, states, ref_states) in enumerate(runs):
        for step, (got, ref) in enumerate(zip(states, ref_states)):
            ok = [torch.allclose(x, y, rtol=1e-9, atol=1e-12, equal_nan=True) for x, y in zip(got, ref)]
            if not all(ok):
                bad = [nm for nm, o in zip(("m", "l", "acc"), ok) if not o]
                return CheckResult(name, False, (
                    f"with {label}: the final output is right, but after tile {step} "
                    f"{', '.join(bad)} differ(s) from the reference: keep m = running max, "
                    "l = running sum of exp(score - m), acc = running sum of exp(score - m) v"), i)
    return CheckResult(name, True, f"all {len(cases)} cases ({', '.join(c[0] for c in cases)}) "
                       "match softmax(scores) @ v and the library's step-by-step state.", len(cases))
