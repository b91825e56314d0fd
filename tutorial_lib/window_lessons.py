"""The sliding-window lesson (notebook 06) as functions: sizes, the cost-vs-T sweep, quality runs,
whole-model payoff, and the exercises' checkers.

- ``WindowSizes.for_profile``: every size 06 measures at, per size profile (smoke / cpu / gpu).
- ``window_sweep``: time (and memory kept for backward) of the attention core vs T at a fixed
  window, for full causal SDPA, SDPA with a band mask, the blocked local path (fast CPU version
  and the plain-SDPA version) and FlexAttention. Implementations are timed *interleaved*, in
  rounds, so a busy machine slows all of them alike; ``speedups`` takes per-round ratios.
- ``quality_runs``: validation loss after N steps, window vs full attention (``train.train``).
- ``model_payoff``: a whole GPT training step with and without the window, at several T.
- ``check_window_mask``, ``check_visible_pairs``: checkers for the exercises.
"""
from __future__ import annotations

import dataclasses
import statistics
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

IMPLS = ("causal", "band_mask", "local", "local_sdpa", "flex")
IMPL_LABELS = {
    "causal": "full causal SDPA (is_causal)",
    "band_mask": "SDPA + (T, T) band mask",
    "local": "local: blocked, CPU flash kernel + lse merge",
    "local_sdpa": "local_sdpa: blocked, plain SDPA calls",
    "flex": "FlexAttention + sliding-window block mask",
}


# ---- sizes -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowSizes:
    profile: str
    window: int  # W of the cost-vs-T sweep
    seq_lens: Tuple[int, ...]  # T of the sweep (the largest is the headline comparison)
    n_head: int
    head_dim: int
    batch: int
    rounds: int  # interleaved timing rounds per T
    min_run_time: float  # seconds per timing (per implementation, per round)
    payoff_preset: str  # whole-model training step with and without the window
    payoff_seqs: Tuple[int, ...]
    payoff_window: int
    payoff_batch: int
    quality_preset: str  # validation loss after N steps, window vs full
    quality_batch: int
    quality_seq_len: int
    quality_window: int
    quality_steps: int
    eval_every: int
    eval_batches: int

    @classmethod
    def for_profile(cls, name: Optional[str] = None) -> "WindowSizes":
        from tutorial_lib.settings import get_profile

        p = get_profile(name).name
        if p == "smoke":  # CI: seconds
            return cls(p, 32, (256, 512, 1024), 4, 32, 1, 1, 0.01, "tiny", (128,), 32, 1,
                       "tiny", 2, 64, 16, 6, 3, 1)
        if p == "cpu":  # a few minutes on 2 quiet cores
            return cls(p, 256, (512, 1024, 2048, 4096), 12, 64, 1, 3, 0.3, "gpt2_small", (512, 1024),
                       128, 1, "gpt2_mini", 4, 128, 32, 40, 20, 4)
        return cls(p, 256, (1024, 2048, 4096, 8192, 16384), 12, 64, 4, 3, 0.3, "gpt2_small",
                   (1024, 2048, 4096), 256, 4, "gpt2_small", 16, 1024, 256, 300, 50, 10)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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
    peak_bytes: Optional[int] = None  # CUDA: allocator peak above the inputs, one fwd(+bwd)
    error: Optional[str] = None
    kind: str = "window_curve"

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def attention_fn(impl: str, window: int) -> Callable:
    """fn(q, k, v) for one implementation (all take (B, H, T, D) and (B, Hkv, T, D))."""
    import torch.nn.functional as F

    from tutorial_lib import attention as A
    from tutorial_lib import window as Wn

    if impl == "causal":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                              enable_gqa=q.shape[1] != k.shape[1])
    if impl == "band_mask":
        return lambda q, k, v: Wn.band_mask_attention(q, k, v, window)
    if impl == "local":
        return lambda q, k, v: Wn.local_window_attention(q, k, v, window)
    if impl == "local_sdpa":
        return lambda q, k, v: Wn.local_window_attention_sdpa(q, k, v, window)
    if impl == "flex":
        def flex(q, k, v):
            with warnings.catch_warnings():  # "called without torch.compile()" on CPU: we know
                warnings.simplefilter("ignore", UserWarning)
                return A.flex_attention(q, k, v, window)
        return flex
    raise ValueError(f"impl={impl!r} is not one of {list(IMPLS)}")


def _runner(fn, q, k, v, mode):
    if mode == "fwd":
        def run():
            with torch.no_grad():
                fn(q, k, v)
        return run
    g = torch.ones(q.shape, device=q.device, dtype=q.dtype)

    def run():
        for t in (q, k, v):
            t.grad = None
        fn(q, k, v).backward(g)
    return run


def window_sweep(seq_lens: Sequence[int], window: int, impls: Optional[Sequence[str]] = None,
                 batch_size: int = 1, n_head: int = 12, n_kv_head: Optional[int] = None,
                 head_dim: int = 64, device=None, dtype=None, mode: str = "fwdbwd",
                 min_run_time: Optional[float] = None, rounds: int = 3, measure_memory: bool = True,
                 measure_time: bool = True, progress: bool = False) -> List[WindowPoint]:
    """Time and memory of the attention core vs T at a fixed window, per implementation.

    For every T, all implementations are timed in turn, ``rounds`` times (interleaved), each
    timing a ``measure.bench.time_fn`` (torch.utils.benchmark, median of blocks); the point's
    ``median_ms`` is the median of its rounds. Memory (``mode="fwdbwd"``): bytes autograd keeps
    for backward (``measure.memory.saved_bytes``), and on CUDA the allocator's peak. FlexAttention
    has no CPU backward: on CPU its fwdbwd rows carry that error (time it with ``mode="fwd"``).
    Failures (OOM, unsupported) become rows with ``error``; the sweep goes on.
    ``measure_time=False``: memory only (deterministic for given sizes on a given torch build).
    """
    from tutorial_lib import settings
    from tutorial_lib.attention import has_flex_attention
    from tutorial_lib.measure.bench import SWEEP_ERRORS, error_text, free_memory, time_fn
    from tutorial_lib.measure.flops import visible_pairs
    from tutorial_lib.measure.memory import saved_bytes

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
    dev = settings.get_device(device) if not isinstance(device, torch.device) else device
    dt = settings.parse_dtype(dtype) if dtype is not None else settings.default_dtype(dev)
    if min_run_time is None:
        min_run_time = settings.get_profile(device=dev).min_run_time
    name = settings.device_name(dev)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(Ts) * len(impls) * max(rounds, 1), desc="window sweep", leave=False)
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
                run = _runner(fn, q, k, v, mode)
                if measure_time or dev.type == "cuda":
                    run()  # warm-up (flex compiles on CUDA here)
                if mode == "fwdbwd" and measure_memory:
                    p.saved_bytes = int(saved_bytes(fn, q, k, v))
                if dev.type == "cuda":
                    settings.synchronize(dev)
                    base = torch.cuda.memory_allocated(dev)
                    torch.cuda.reset_peak_memory_stats(dev)
                    run()
                    settings.synchronize(dev)
                    p.peak_bytes = int(torch.cuda.max_memory_allocated(dev) - base)
                runs[impl] = run
            except SWEEP_ERRORS as e:
                p.error = error_text(e)
                if bar is not None:
                    bar.update(max(rounds, 1))
        for _ in range(rounds):
            for impl, run in runs.items():
                p = pts[impl]
                if p.error is not None:
                    continue
                try:
                    tm = time_fn(run, dev, min_run_time=min_run_time, warmup=0, min_measurements=3)
                    p.round_ms.append(tm.median_ms)
                except SWEEP_ERRORS as e:
                    p.error = error_text(e)
                if bar is not None:
                    bar.update(1)
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
        ratios = [x / y for x, y in zip(b.round_ms, r.round_ms) if y > 0]
        if ratios:
            out.setdefault(impl, {})[T] = statistics.median(ratios)
    return out


def slopes(rows: Sequence[WindowPoint], value: str = "median_ms", last: Optional[int] = 2
           ) -> Dict[str, float]:
    """Fitted log-log exponent of ``value`` in T per implementation (``plots.fit_loglog_slope``);
    ``last``: fit the largest-T points only (the regime T >> W). NaN when it cannot be fitted."""
    from tutorial_lib.plots import fit_loglog_slope

    out: Dict[str, float] = {}
    for impl in dict.fromkeys(r.impl for r in rows):
        pts = [(r.seq_len, getattr(r, value)) for r in rows if r.impl == impl and r.ok]
        try:
            out[impl] = fit_loglog_slope([p[0] for p in pts], [p[1] for p in pts], last=last)[0]
        except ValueError:
            out[impl] = float("nan")
    return out


# ---- quality and whole-model payoff ------------------------------------------------------------
def quality_runs(sizes: WindowSizes, progress: bool = False, device=None) -> Dict[str, "object"]:
    """Validation loss after N steps: full causal attention vs a sliding window.

    Same seed, same batches (``train.train``); the window run uses the ``local`` backend.
    Returns {"full": TrainHistory, "window W=...": TrainHistory}.
    """
    from tutorial_lib.config import get_config
    from tutorial_lib.train import TrainConfig, train

    s = sizes
    tc = TrainConfig(steps=s.quality_steps, batch_size=s.quality_batch, seq_len=s.quality_seq_len,
                     eval_every=s.eval_every, eval_batches=s.eval_batches, progress=progress,
                     warmup_steps=max(1, s.quality_steps // 10),
                     device=None if device is None else str(device))
    base = get_config(s.quality_preset)
    base = base.replace(block_size=max(base.block_size, s.quality_seq_len))
    return {"full": train(base.replace(attn_backend="sdpa", window=None), tc),
            f"window W={s.quality_window}": train(base.replace(attn_backend="local",
                                                               window=s.quality_window), tc)}


def model_payoff(preset: str, seq_lens: Sequence[int], window: int, batch_size: int = 1,
                 device=None, min_run_time: Optional[float] = None, rounds: int = 2) -> List[dict]:
    """A whole GPT training step (fwd + bwd + AdamW) with full causal SDPA vs the local window,
    at each T: ms/step and the speedup the window buys -- the two timed interleaved, in rounds,
    with per-round ratios (``mlp_lessons.measure_variants``); errors become rows."""
    from tutorial_lib.measure.bench import resolve_config
    from tutorial_lib.mlp_lessons import measure_variants

    rows = []
    for T in seq_lens:
        cfg = resolve_config(preset)
        cfg = cfg.replace(block_size=max(cfg.block_size, T))
        res = measure_variants({"full": cfg.replace(attn_backend="sdpa", window=None),
                                "window": cfg.replace(attn_backend="local", window=window)},
                               batch_size, T, rounds=rounds, min_run_time=min_run_time,
                               device=device, memory=False)
        f, w = res
        ok = not f.get("error") and not w.get("error")
        rows.append({"preset": cfg.name, "seq_len": T, "window": window, "batch_size": batch_size,
                     "full_ms": f.get("median_ms"), "window_ms": w.get("median_ms"),
                     "speedup": w.get("speedup") if ok else None,
                     "device_name": f.get("device_name") or w.get("device_name"),
                     "error": None if ok else (f.get("error") or w.get("error"))})
    return rows


# ---- exercises ---------------------------------------------------------------------------------
def check_window_mask(fn: Callable) -> "object":
    """Check ``fn(T, W)`` -> (T, T) bool mask, True where query i may see key j (j <= i, i-j < W)."""
    from tutorial_lib.attention import causal_mask
    from tutorial_lib.exercises import CheckResult, _call

    name = "window_mask"
    cases = [(1, 1), (5, 1), (6, 2), (7, 3), (8, 8), (9, 20)]
    for T, W in cases:
        got, err = _call(name, fn, T, W)
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
    from tutorial_lib.exercises import CheckResult, _call
    from tutorial_lib.measure.flops import visible_pairs

    name = "visible_pairs"
    cases = [(1, 1), (10, 1), (10, 3), (10, 10), (10, 50), (4096, 256)]
    for T, W in cases:
        got, err = _call(name, fn, T, W)
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
