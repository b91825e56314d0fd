"""The project's own code paths, measured: how fast and how steady (the guide's ``own_paths``).

Each function measures one thing the lessons rely on, before and after a fix, and returns rows:

- ``window_memory``: the local sliding-window path's allocator peak against full causal SDPA vs T
  (and its log-log slope), with the old one-call backward as the "before" -- the kernel returns K/V
  gradients per overlapping window, (W-1)/b times the size of dK, which the backward now folds
  back chunk by chunk.
- ``mask_paths``: SDPA with a window, its mask built on every call through an int64 T x T
  difference (before) against the cached additive mask (after): time and peak.
- ``allocator_ab``: huge pages, and glibc keeping freed memory, each off and on
  (``measure.allocator.huge_page_ab``), in fresh processes.
- ``step_mfu``: a forward+backward's FLOPs (FlopCounterMode) over its time, as a fraction of the
  matmul peak timed in the same rounds (on CUDA also of the spec sheet's peak): the median of the
  per-round MFUs, with their range.
- ``same_config_spread``: one configuration measured in several sections of a suite run: the
  spread of its times, which says how far apart two absolute numbers may be and still agree.

Timings interleave the variants in rounds (each ratio taken within one round) and say device,
dtype and sizes; peaks come from the allocator (``measure.memory.peak_bytes``).
"""
from __future__ import annotations

import statistics
from typing import Callable, Dict, List, Sequence

import torch
import torch.nn.functional as F

from tutorial_lib import settings
from tutorial_lib.attention import reference, sliding_window
from tutorial_lib.lessons.common import attention_runner, fit_loglog_slope
from tutorial_lib.measure import ceilings, flops
from tutorial_lib.measure.allocator import huge_page_ab
from tutorial_lib.measure.memory import peak_bytes
from tutorial_lib.measure.roofline import median_range
from tutorial_lib.measure.timing import SWEEP_ERRORS, error_text, paired_speedup, prepare_step, time_rounds
from tutorial_lib.model import GPTConfig, get_config

WINDOW_IMPLS = {
    "causal SDPA (full T x T, is_causal)": "causal",
    "local, chunked backward (now)": "local",
    "local, one backward call (before)": "local_one_call",
}


# ---- 1. the local window's peak vs causal SDPA -------------------------------------------------
def _window_fn(impl: str, window: int) -> Callable:
    if impl == "causal":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if impl == "local":
        return lambda q, k, v: sliding_window.local_window_attention(q, k, v, window)
    if impl == "local_one_call":  # every block in one backward call: the per-window dK/dV all at once
        return lambda q, k, v: sliding_window.local_window_attention(q, k, v, window, backward_chunk_blocks=2**30)
    raise ValueError(f"impl={impl!r} is not one of {list(WINDOW_IMPLS.values())}")


def window_memory(seq_lens: Sequence[int], window: int, batch: int = 1, n_head: int = 12,
                  head_dim: int = 64, device=None, dtype=None, rounds: int = 3,
                  min_run_time: float = 0.3) -> Dict[str, list]:
    """Allocator peak and time of one forward+backward of the attention core vs T: causal SDPA,
    the local path now, and the local path with its old one-call backward.

    Returns {"rows": one per (impl, T) with peak_MB (MB = 10^6 bytes, above the inputs), ms and
    speedup_vs_causal (median of per-round ratios, range beside it), "summary": one per impl with
    the log-log slope of the peak over T and, at the largest T, its peak over causal SDPA's}.
    """
    dev, dt = settings.resolve(device, dtype)
    rows, peaks = [], {}
    for T in seq_lens:
        g = torch.Generator().manual_seed(T)
        q, k, v = (torch.randn(batch, n_head, T, head_dim, generator=g).to(dev, dt).requires_grad_()
                   for _ in range(3))
        runs, pts = {}, {}
        for label, impl in WINDOW_IMPLS.items():
            row = {"impl": label, "seq_len": T, "window": window, "peak_MB": None, "ms": None,
                   "speedup_vs_causal": None, "error": None}
            pts[label] = row
            rows.append(row)
            try:
                run = attention_runner(_window_fn(impl, window), q, k, v)
                run()  # warm-up: cached masks, thread pools, the allocator's first pages
                for t in (q, k, v):
                    t.grad = None
                p = peak_bytes(run, dev)
                row["peak_MB"] = None if p is None else p / 1e6
                peaks[(label, T)] = p
                runs[label] = run
            except SWEEP_ERRORS as e:
                row["error"] = error_text(e)
        times, failed = time_rounds(runs, dev, rounds, min_run_time)  # interleaved, noisy rounds re-measured
        base = times.get(next(iter(WINDOW_IMPLS)), [])
        for label, ts in times.items():
            if label in failed:
                pts[label]["error"] = failed[label]
            elif ts:
                med, lo, hi = paired_speedup(base, ts)
                pts[label].update(ms=statistics.median(ts), speedup_vs_causal=med,
                                  speedup_range=None if lo is None else f"{lo:.2f}–{hi:.2f}")
        del q, k, v, runs
    summary = []
    causal = next(iter(WINDOW_IMPLS))
    T_max = max(seq_lens)
    for label in WINDOW_IMPLS:
        pts = [(T, peaks.get((label, T))) for T in seq_lens]
        try:
            slope = fit_loglog_slope([p[0] for p in pts], [p[1] for p in pts])[0]
        except ValueError:
            slope = None
        at, c = peaks.get((label, T_max)), peaks.get((causal, T_max))
        summary.append({"impl": label, "peak_slope": slope, "T": T_max,
                        "peak_vs_causal": None if not (at and c) else at / c})
    return {"rows": rows, "summary": summary}


# ---- 2. SDPA with a window: the mask ----------------------------------------------------------
def mask_paths(seq_len: int, window: int, batch: int = 1, n_head: int = 12, head_dim: int = 64,
               device=None, dtype=None, rounds: int = 3, min_run_time: float = 0.3) -> List[dict]:
    """The ``sdpa`` backend with a window, one forward+backward, with its mask built per call the
    old way (``causal_mask_by_difference``: an int64 T x T difference, then a bool mask that SDPA
    converts to float) against the cached additive mask (``reference.sdpa_attention``); and the
    additive mask the backend builds on a cache miss, before (a bool mask, then a float one filled
    through it) and now (``reference.additive_mask``: straight into the float tensor), beside the
    bool mask alone, which eager attention uses and sdpa does not. Rows: path, ms (median over
    interleaved rounds), speedup vs the first row of its group, peak_MB (allocator, above the inputs)."""
    dev, dt = settings.resolve(device, dtype)
    T = seq_len
    g = torch.Generator().manual_seed(T)
    q, k, v = (torch.randn(batch, n_head, T, head_dim, generator=g).to(dev, dt).requires_grad_()
               for _ in range(3))
    groups = {
        "attention fwd+bwd": {
            "mask built per call, int64 difference (before)": attention_runner(
                lambda q, k, v: F.scaled_dot_product_attention(
                    q, k, v, attn_mask=reference.causal_mask_by_difference(T, T, window, device=q.device)), q, k, v),
            "cached additive mask, sdpa backend (now)": attention_runner(
                lambda q, k, v: reference.sdpa_attention(q, k, v, window=window), q, k, v),
        },
        "sdpa's mask on a cache miss": {
            "bool mask, then zeros + masked_fill (before)": lambda: torch.zeros(T, T, device=dev, dtype=dt)
            .masked_fill_(~reference.causal_mask(T, T, window, device=dev), float("-inf")),
            "written straight into the float mask (now)": lambda: reference.additive_mask(
                T, T, window, device=dev, dtype=dt),
            "bool mask alone (what eager attention builds; not sdpa's)": lambda: reference.causal_mask(
                T, T, window, device=dev),
        },
    }
    rows = []
    for group, runs in groups.items():
        peaks = {}
        for name, run in runs.items():
            run()  # warm-up; the cached mask is built here
            for t in (q, k, v):
                t.grad = None
            peaks[name] = peak_bytes(run, dev)
        times, failed = time_rounds(runs, dev, rounds, min_run_time)  # interleaved, noisy rounds re-measured
        base = next(iter(times.values()))
        for name, ts in times.items():
            med, lo, hi = paired_speedup(base, ts) if name not in failed else (None, None, None)
            rows.append({"what": group, "path": name, "seq_len": T, "window": window,
                         "ms": statistics.median(ts) if ts and name not in failed else None, "speedup": med,
                         "speedup_range": None if lo is None else f"{lo:.2f}–{hi:.2f}",
                         "peak_MB": None if peaks[name] is None else peaks[name] / 1e6,
                         "error": failed.get(name)})
    return rows


# ---- 3. the allocator: huge pages and kept memory, each off and on ------------------------------
def allocator_ab(attention_seq: int, preset: str, batch: int, seq_len: int, rounds: int = 3,
                 reps: int = 3, settings: Sequence[str] = ("huge_pages", "keep_freed")) -> List[dict]:
    """``huge_page_ab`` of each allocator setting (huge pages; glibc keeping freed memory) for
    eager attention (B=1, 12 heads, D=64, fwd+bwd) and for a model step (``preset`` at batch x
    seq_len, fwd+bwd+AdamW): one row each, times without and with the setting, the speedup (median
    of per-round ratios, range), and the fill rate of a fresh 64 MiB tensor without and with it
    beside an already-written one (the cost of first-touch page faults)."""
    rows = []
    for setting in settings:
        for workload, kw in (("eager_attention", {"seq_len": attention_seq, "batch": 1}),
                             ("train_step", {"seq_len": seq_len, "batch": batch, "preset": preset})):
            try:
                r = huge_page_ab(workload, rounds=rounds, reps=reps, setting=setting, **kw)
            except (RuntimeError, OSError, ValueError) as e:
                rows.append({"setting": setting, "workload": workload, "error": error_text(e)})
                continue
            what = (f"eager attention fwd+bwd, T={attention_seq}" if workload == "eager_attention"
                    else f"{preset} training step, B={batch}, T={seq_len}")
            rows.append({"setting": setting, "workload": what, "threads": r["threads"], "off_ms": r["off_ms"],
                         "on_ms": r["on_ms"], "speedup": r["speedup"],
                         "speedup_range": f"{r['speedup_min']:.2f}–{r['speedup_max']:.2f}",
                         "fresh_fill_GBps_off": r["fresh_GBps_off"], "fresh_fill_GBps_on": r["fresh_GBps_on"],
                         "touched_fill_GBps": r["touched_GBps_off"], "huge_pages_in_use": r["huge_pages_in_use"],
                         "system_thp": r["system_thp"], "rounds": rounds})
    return rows


# ---- 4. step MFU against the peak measured in the same rounds ------------------------------------
def step_mfu(preset: str, batch: int, seq_len: int, variants: Dict[str, dict], device=None, dtype=None,
             rounds: int = 3, min_run_time: float = 0.3, peak_sizes: Sequence[int] = (2048, 3072, 4096),
             compile_variants: Sequence[str] = ()) -> Dict[str, object]:
    """Forward+backward of ``preset`` per variant ({label: GPTConfig changes}): FLOPs counted by
    FlopCounterMode, time, achieved FLOP/s, and MFU against the matmul peak **measured in the same
    rounds** (``ceilings.matmul_probes`` at ``peak_sizes``, timed in turn with the steps): each
    round's MFU divides that round's step by that round's peak (``ceilings.rule``: the best size),
    and the row gives the median over the rounds with min–max. On CUDA also / the spec sheet's peak.
    ``compile_variants``: labels run under torch.compile (compiled in the untimed first call).
    Returns {"rows", "peak": {median_TFLOPs, range_TFLOPs, per_round_TFLOPs, spec_TFLOPs, source}}."""
    dev, dt = settings.resolve(device, dtype)
    spec = flops.peak_flops(settings.device_name(dev), dt) if dev.type == "cuda" else None
    probes = ceilings.matmul_probes(dev, dt, peak_sizes)
    base = get_config(preset)
    steps, rows = {}, {}
    for label, changes in variants.items():
        cfg = base.replace(**changes)
        row = {"variant": label, "preset": preset, "batch_size": batch, "seq_len": seq_len,
               "dtype": settings.dtype_name(dt), "error": None}
        rows[label] = row
        try:
            counted = flops.count_flops(cfg, batch, seq_len, backward=True, device="cpu")
            row["GFLOP"] = (counted["fwd"] + counted["bwd"]) / 1e9
            _, steps[label], _, _ = prepare_step(cfg, batch, seq_len, "fwdbwd", dev, dt,
                                                 compile=label in compile_variants)
            steps[label]()
        except SWEEP_ERRORS as e:
            row["error"] = error_text(e)
            steps.pop(label, None)
    times, failed = time_rounds({**{p.label: p.run for p in probes}, **steps}, dev, rounds, min_run_time)
    n = min(len(times[p.label]) for p in probes)
    peaks = [ceilings.rule("peak_flops", [p.rate(times[p.label][i]) for p in probes]) for i in range(n)]
    first = times[next(iter(steps))] if steps else []
    for label in steps:
        row, ts = rows[label], times[label]
        if label in failed:
            row["error"] = failed[label]
            continue
        mfu = median_range([row["GFLOP"] * 1e9 / (t / 1e3) / pk for t, pk in zip(ts, peaks)])
        med, lo, hi = paired_speedup(first, ts)
        achieved = row["GFLOP"] * 1e9 / (statistics.median(ts) / 1e3)
        row.update(ms=statistics.median(ts), rounds=len(ts), speedup=med,
                   speedup_range=None if lo is None else f"{lo:.2f}–{hi:.2f}", achieved_TFLOPs=achieved / 1e12,
                   MFU_measured_peak=mfu[0], MFU_min=mfu[1], MFU_max=mfu[2],
                   MFU_range=f"{mfu[1]:.2f}–{mfu[2]:.2f}", MFU_spec=None if spec is None else achieved / spec)
    pk = median_range(peaks)
    return {"rows": list(rows.values()),
            "peak": {"median_TFLOPs": pk[0] / 1e12, "range_TFLOPs": [pk[1] / 1e12, pk[2] / 1e12],
                     "per_round_TFLOPs": [x / 1e12 for x in peaks],
                     "spec_TFLOPs": None if spec is None else spec / 1e12,
                     "source": f"torch.mm {settings.dtype_name(dt)}, the best of n = "
                               + ", ".join(map(str, peak_sizes)) + ", timed in the same rounds as the steps"}}


# ---- 5. one configuration in several sections ---------------------------------------------------
def _same_model(fields, config: GPTConfig) -> bool:
    """Whether a row's ``config_fields`` describe ``config``'s model (``n_kv_head`` None and
    n_head, say, are the same attention)."""
    if not fields:
        return False
    try:
        return GPTConfig(**fields).describe() == config.describe()
    except (TypeError, ValueError):
        return False


def same_config_spread(rows: Sequence[dict], config: GPTConfig, batch: int, seq_len: int,
                       time_key: str = "ms_per_step") -> Dict[str, object]:
    """Every row (of any section) that timed ``config``'s model at (batch, seq_len): its section
    (``kind``), label and time; and the spread, max / min - 1 (0.1 = 10 % apart)."""
    hits = [{"section": r.get("kind"), "variant": r.get("variant"), "ms": r.get(time_key)}
            for r in rows if r.get("batch_size") == batch and r.get("seq_len") == seq_len
            and r.get(time_key) and not r.get("error") and _same_model(r.get("config_fields"), config)]
    ms = [h["ms"] for h in hits]
    spread = (max(ms) / min(ms) - 1) if len(ms) >= 2 else None
    return {"rows": hits, "spread": spread, "n": len(hits)}
