"""Timing with ``torch.utils.benchmark``: any callable, a GPT training step, and sweeps.

- ``time_fn(fn, device=...)``: median and spread of a callable (Timer.blocked_autorange or
  adaptive_autorange), plus the CUDA peak memory while it ran. Synchronises CUDA only when timing
  on CUDA; a CPU run makes no CUDA call at all.
- ``measure_step(config, batch_size, seq_len, mode=...)``: forward (``"fwd"``), forward+backward
  (``"fwdbwd"``) or a full training step (``"train"``: + AdamW, fused on CUDA) of a GPT built from
  ``config`` -> ``StepResult`` with ms/step, tokens/s, peak memory, analytic FLOPs and MFU.
- ``measure_sweep(points)``: many ``measure_step`` calls with a progress bar; an OOM or an
  unsupported backend becomes a row with ``error`` set, and the sweep carries on.
- ``time_rounds(runs)`` / ``paired_speedup``: several callables timed in interleaved rounds (A, B,
  A, B, ...), and a speedup as the median of per-round ratios with its min–max: load that comes
  and goes slows both sides of each ratio alike.

Every result carries device, device name, dtype and sizes, so a number never travels alone.
"""
from __future__ import annotations

import dataclasses
import gc
import inspect
import math
import statistics
import timeit
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch.utils.benchmark import Timer
from torch.utils.benchmark.utils.common import Measurement
from tqdm.auto import tqdm

from tutorial_lib import runtime, settings
from tutorial_lib.accumulate import accumulate_gradients
from tutorial_lib.data import random_batch
from tutorial_lib.measure import cost, flops
from tutorial_lib.model import GPT, GPTConfig, get_config
from tutorial_lib.sizes import get_sizes

MODES = ("fwd", "fwdbwd", "train")
# Failures a sweep records instead of raising: OOM (a RuntimeError subclass), unsupported
# backends / missing kernels (RuntimeError, NotImplementedError), a compiler that is absent.
SWEEP_ERRORS = (RuntimeError, NotImplementedError, ImportError, AssertionError)


# ---- timing any callable ---------------------------------------------------------------------
@dataclass
class Timing:
    """Timing of one callable: all times in milliseconds per call."""
    median_ms: float
    iqr_ms: float  # interquartile range of the per-call times (the spread)
    mean_ms: float
    min_ms: float
    n_runs: int  # timed calls in total (measurements x calls per measurement)
    n_measurements: int  # blocks the Timer measured (the median is over these)
    device: str
    peak_mem_bytes: Optional[int] = None  # CUDA: max_memory_allocated while timing; None on CPU
    label: str = ""

    @property
    def spread(self) -> float:
        """IQR / median: the relative spread (0.05 = 5 %)."""
        return self.iqr_ms / self.median_ms if self.median_ms else float("nan")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _timer_fn(device: torch.device) -> Callable[[], float]:
    """A clock that waits for the device first: synchronise on CUDA/MPS only."""
    if device.type in ("cuda", "mps"):
        def clock():
            settings.synchronize(device)
            return timeit.default_timer()
        return clock
    return timeit.default_timer


def steady_warmup(fn: Callable[[], object], device=None, min_calls: int = 1, max_calls: int = 6,
                  rtol: float = 0.1, max_s: float = 2.0) -> List[float]:
    """Call ``fn`` until it runs at a steady speed; returns each warm-up call's seconds.

    The first calls of a step are slower than the rest, and not only the first: the allocator
    and the operating system still map fresh pages for buffers the step has not made before (on
    a CPU every first touch of a page is a fault), thread pools start, caches fill. So after
    ``min_calls`` calls it goes on until two consecutive calls agree within ``rtol``, stopping at
    ``max_calls`` calls or once ``max_s`` seconds are spent (a slow step is not warmed forever).
    """
    dev = torch.device(device) if device is not None else settings.get_device()
    clock = _timer_fn(dev)
    times: List[float] = []
    spent = 0.0
    while len(times) < max(0, min_calls) or (
            0 < len(times) < max_calls and spent < max_s
            and not (len(times) >= 2 and abs(times[-1] - times[-2]) <= rtol * min(times[-2:]))):
        t0 = clock()
        fn()
        times.append(clock() - t0)
        spent += times[-1]
    return times


def time_fn(fn: Callable[[], object], device=None, min_run_time: Optional[float] = None,
            adaptive: bool = False, warmup: int = 1, min_measurements: int = 3,
            label: str = "") -> Timing:
    """Time ``fn()`` with ``torch.utils.benchmark.Timer`` on ``device``.

    At least ``warmup`` calls run first (and compile/allocate), then more until two in a row
    agree within 10 % (``steady_warmup``; for at most ~3 x min_run_time more; 0 =
    none at all). ``blocked_autorange(min_run_time)`` then
    measures blocks of calls (``adaptive=True``: ``adaptive_autorange`` until IQR/median < 10 %),
    topped up to ``min_measurements`` blocks so that a slow step still gets a median and a spread.
    The Timer uses all of torch's threads (its default is one). On CUDA the clock synchronises and
    the peak allocated memory over the timed calls is recorded.
    """
    dev = torch.device(device) if device is not None else settings.get_device()
    if min_run_time is None:
        min_run_time = get_sizes(device=dev).step.min_run_time
    if min_run_time <= 0:
        raise ValueError(f"min_run_time={min_run_time!r} must be > 0")
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    if warmup > 0:
        steady_warmup(fn, dev, min_calls=warmup, max_s=max(0.1, 3 * min_run_time))
    settings.synchronize(dev)
    timer = Timer(stmt="fn()", globals={"fn": fn}, timer=_timer_fn(dev),
                  num_threads=torch.get_num_threads(), label=label or "fn")
    if adaptive:
        m = timer.adaptive_autorange(threshold=0.1, min_run_time=min_run_time,
                                     max_run_time=max(10 * min_run_time, 1.0))
    else:
        m = timer.blocked_autorange(min_run_time=min_run_time)
    extra = [timer.timeit(m.number_per_run) for _ in range(min_measurements - len(m.times))]
    if extra:
        m = Measurement.merge([m, *extra])[0]
    times = m.times
    peak = int(torch.cuda.max_memory_allocated(dev)) if cuda else None
    return Timing(median_ms=m.median * 1e3, iqr_ms=m.iqr * 1e3, mean_ms=m.mean * 1e3,
                  min_ms=min(times) * 1e3, n_runs=len(m.raw_times) * m.number_per_run,
                  n_measurements=len(times), device=str(dev), peak_mem_bytes=peak, label=label)


INIT_S_PER_PARAM = 1e-8  # a plan's estimate of building and initialising a model: ~1 s per 100 M parameters (2 cores)


def expected_seconds(call_s: float, min_run_time: float, warmup: int = 1, min_measurements: int = 1) -> float:
    """About how long ``time_fn(fn, min_run_time=..., warmup=..., min_measurements=...)`` takes for a
    call of ``call_s`` seconds: the warm-up (``steady_warmup``: ``warmup`` calls, and a second one to
    agree with while calls are shorter than its cap), one call to size the blocks, and the timed
    blocks (``blocked_autorange`` runs for ``min_run_time``, topped up to ``min_measurements``; one
    in each of ``time_rounds``' rounds). For a plan's time estimate, never a measurement."""
    cap = max(0.1, 3 * min_run_time)  # steady_warmup's max_s, as time_fn sets it
    warm = 0 if warmup <= 0 else warmup if warmup * call_s >= cap else max(warmup, 2)
    return (warm + 1) * call_s + max(min_run_time, max(1, min_measurements) * call_s)


def rounds_seconds(call_s: float, min_run_time: float, rounds: int, warmup: int = 1,
                   min_measurements: int = 1) -> float:
    """About how long ``time_rounds`` takes for one run of ``call_s`` seconds per call over
    ``rounds`` rounds: the first round's timing warms up, the later ones start with the Timer's
    sizing call (``expected_seconds`` with no warm-up)."""
    if rounds <= 0:
        return 0.0
    return (expected_seconds(call_s, min_run_time, warmup, min_measurements)
            + (rounds - 1) * expected_seconds(call_s, min_run_time, 0, min_measurements))


# ---- A vs B: interleaved rounds -----------------------------------------------------------------
NOISY = 0.25  # a spread of a variant's per-round times above this (max - min over the median): noise


def spread_of(times: Sequence[float]) -> float:
    """(max - min) / median of repeated timings of the same thing: 0 for a steady machine."""
    return (max(times) - min(times)) / statistics.median(times) if len(times) > 1 else 0.0


def time_rounds(runs: Mapping[str, Callable[[], object]], device, rounds: int = 3,
                min_run_time: Optional[float] = None, max_rounds: Optional[int] = None,
                bar=None, warmup: int = 1) -> Tuple[Dict[str, List[float]], Dict[str, str]]:
    """Time each of ``runs`` once per round, in turn (A, B, A, B, ...), so load that comes and goes
    slows all of them alike; ``rounds`` rounds, then more -- up to ``max_rounds`` (default twice
    ``rounds``) -- while some run's rounds spread more than ``NOISY``.

    Returns ({name: [median ms of each round]}, {name: error text}); a run that fails (OOM, an
    unsupported backend) is not timed again. ``bar``: a progress bar, one tick per timing;
    ``warmup``: untimed calls before each timing (``measure.timing.time_fn``).

    A round's time is the median of the Timer's blocks within ``min_run_time``, at least one: the
    spread comes from the rounds, so a call slower than ``min_run_time`` is timed once per round
    instead of three times. Only the first round warms up (``warmup`` calls until steady); in the
    later rounds the run is warm already, and the Timer's own sizing call (``blocked_autorange``
    times one call, untimed, before its blocks) is the warm-up after the other runs' turns."""
    max_rounds = 2 * rounds if max_rounds is None else max(max_rounds, rounds)
    times: Dict[str, List[float]] = {name: [] for name in runs}
    errors: Dict[str, str] = {}
    done = 0
    while done < rounds or (done < max_rounds and any(
            name not in errors and spread_of(times[name]) > NOISY for name in runs)):
        done += 1  # past ``rounds`` only while some run's rounds disagree: the machine was busy
        if bar is not None and done > rounds:
            bar.total += len(runs)
        for name, run in runs.items():
            if name in errors:
                continue
            try:
                times[name].append(time_fn(run, device, min_run_time=min_run_time,
                                           warmup=warmup if done == 1 else 0, min_measurements=1).median_ms)
            except SWEEP_ERRORS as e:
                errors[name] = error_text(e)
            if bar is not None:
                bar.update(1)
    return times, errors


def paired_speedup(base: Sequence[float], times: Sequence[float]) -> Tuple[Optional[float], Optional[float],
                                                                          Optional[float]]:
    """The speedup of ``times`` over ``base`` from rounds timed back to back (``time_rounds``):
    (median, min, max) of base / this within each round; (None, None, None) with nothing to pair."""
    ratios = [b / t for b, t in zip(base, times) if t > 0]
    return (statistics.median(ratios), min(ratios), max(ratios)) if ratios else (None, None, None)


# ---- a GPT step ------------------------------------------------------------------------------
@dataclass
class StepResult:
    """One measured GPT step (or an error row from a sweep). Times in ms, memory in bytes."""
    label: str
    preset: str  # config.name
    config: str  # config.describe()
    mode: str  # fwd | fwdbwd | train
    batch_size: int
    seq_len: int
    device: str  # "cpu", "cuda:0", ...
    device_name: str  # hardware label (GPU name, CPU model)
    dtype: str  # compute dtype: "bfloat16" = autocast on fp32 weights
    compile: bool = False
    attn_backend: str = ""
    median_ms: Optional[float] = None
    iqr_ms: Optional[float] = None
    min_ms: Optional[float] = None
    n_runs: Optional[int] = None
    tokens_per_s: Optional[float] = None
    peak_mem_bytes: Optional[int] = None  # CUDA peak allocated during the timed steps; None on CPU
    params: Optional[int] = None
    flops: Optional[float] = None  # analytic FLOPs of the timed work, visible pairs only (measure.cost)
    flops_counter: Optional[float] = None  # the same in FlopCounterMode's convention (full T x T)
    achieved_tflops: Optional[float] = None  # flops / median time, in TFLOP/s
    mfu: Optional[float] = None  # achieved / peak for this GPU and dtype; None on CPU / unknown GPU
    error: Optional[str] = None  # set instead of the numbers when the point failed (OOM, ...)
    config_fields: dict = field(default_factory=dict)  # GPTConfig.to_dict() of the measured model
    step_settings: dict = field(default_factory=dict)  # runtime.StepSettings.to_dict(): how the step ran
    extra: dict = field(default_factory=dict)  # anything a caller wants to stamp on the row
    kind: str = "step"  # row kind in a results file (see records.py)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_config(config: Union[GPTConfig, str], **changes) -> GPTConfig:
    """A GPTConfig from a config or a preset name, with optional field changes."""
    if isinstance(config, str):
        return get_config(config, **changes)
    if not isinstance(config, GPTConfig):
        raise ValueError(f"config={config!r} must be a GPTConfig or a preset name")
    return config.replace(**changes) if changes else config


def check_sizes(config: GPTConfig, batch_size, seq_len, mode) -> None:
    """ValueError naming the field for a bad mode, batch size or length (before anything runs)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {list(MODES)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len={seq_len!r} must be a positive integer")
    if seq_len > config.block_size:
        raise ValueError(f"seq_len={seq_len} exceeds block_size={config.block_size} of {config.name}")


def make_optimizer(model: torch.nn.Module, device, lr: float = 3e-4, weight_decay: float = 0.1,
                   adamw: str = "auto"):
    """AdamW as GPT-2 trainers use it; ``adamw`` picks its implementation (``runtime.StepSettings``:
    "auto" = fused on CUDA (one kernel per step), PyTorch's per-tensor loop elsewhere)."""
    return runtime.make_adamw(model.parameters(), device, adamw, lr=lr, weight_decay=weight_decay)


def build_step(model, idx, targets, mode: str, device, dtype, optimizer=None, scaler=None,
               tf32: bool = False, grad_accum: int = 1) -> Callable[[], None]:
    """The closure ``measure_step`` times; also used by the profiler and memory tools.

    fwd: forward + loss under no_grad; fwdbwd: + backward (grads reset each call);
    train: + optimizer step. Low-precision dtypes run under autocast (weights stay fp32); a
    ``scaler`` (``torch.amp.GradScaler``, for float16) scales the loss before backward and steps
    the optimizer through it; ``tf32`` runs the step's fp32 matmuls in TF32 (CUDA).
    ``grad_accum``: forward and backward in that many micro-batches
    (``accumulate.accumulate_gradients``, which the training loop runs too).
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {list(MODES)}")
    dev = torch.device(device)

    def autocast():
        return settings.autocast(dev, dtype)

    if mode == "fwd":
        def step():
            with torch.no_grad(), runtime.matmul_precision(tf32), autocast():
                model(idx, targets)
        return step

    if mode == "fwdbwd":
        def step():
            model.zero_grad(set_to_none=True)
            with runtime.matmul_precision(tf32):
                accumulate_gradients(model, idx, targets, grad_accum, autocast, scaler=scaler)
        return step

    if optimizer is None:
        raise ValueError("mode='train' needs an optimizer")

    def step():
        optimizer.zero_grad(set_to_none=True)
        with runtime.matmul_precision(tf32):
            accumulate_gradients(model, idx, targets, grad_accum, autocast, scaler=scaler)
            if scaler is None:
                optimizer.step()
            else:  # float16: unscale, skip the step on inf/NaN gradients, adapt the scale
                scaler.step(optimizer)
                scaler.update()
    return step


def prepare_step(config: Union[GPTConfig, str], batch_size: int, seq_len: int, mode: str = "train",
                 device=None, dtype=None, compile: Union[bool, str, None] = False, seed: int = 0, model=None,
                 adamw: str = "auto", tf32: bool = False, grad_accum: int = 1):
    """Build (model, step closure, device, dtype) for one GPT step -- shared by timing, profiling
    and memory tools so that they all measure the same thing.

    ``compile``: False/None (eager), True ("default") or a ``torch.compile`` mode; ``adamw`` and
    ``tf32`` as in ``runtime.StepSettings``, which ``step_settings`` turns into these arguments. A
    setting this device cannot run raises ``runtime.NotAvailable`` (a RuntimeError: a sweep
    records it) before the model is built; float16 steps get a GradScaler. ``grad_accum``: the
    batch of ``batch_size`` sequences in that many micro-batches."""
    cfg = resolve_config(config)
    check_sizes(cfg, batch_size, seq_len, mode)
    if not isinstance(grad_accum, int) or isinstance(grad_accum, bool) or grad_accum < 1 or batch_size % grad_accum:
        raise ValueError(f"grad_accum={grad_accum!r} must be a positive integer that divides batch_size={batch_size}")
    dev, dt = settings.resolve(device, dtype)
    mode_name = "default" if compile is True else (compile or None)
    runtime.StepSettings(dtype=settings.dtype_name(dt), tf32=tf32, compile=mode_name, adamw=adamw).check(dev)
    if model is None:
        torch.manual_seed(seed)
        model = GPT(cfg)
    model = model.to(dev).train()
    run_model = torch.compile(model, mode=mode_name, dynamic=False) if mode_name else model
    idx, targets = random_batch(cfg.vocab_size, batch_size, seq_len, dev, seed)
    opt = make_optimizer(model, dev, adamw=adamw) if mode == "train" else None
    scaler = torch.amp.GradScaler(dev.type) if dt == torch.float16 and mode != "fwd" else None
    return model, build_step(run_model, idx, targets, mode, dev, dt, opt, scaler, tf32, grad_accum), dev, dt


def step_settings(step: runtime.StepSettings, device=None) -> dict:
    """``prepare_step``'s keyword arguments for ``step`` on ``device``: dtype, compile, adamw, tf32."""
    dev = settings.resolve(device)[0]
    return {"dtype": settings.dtype_name(step.compute_dtype(dev)), "compile": step.compile,
            "adamw": step.adamw, "tf32": step.tf32}


def measure_step(config: Union[GPTConfig, str], batch_size: int, seq_len: int, mode: str = "train",
                 device=None, dtype=None, compile: Union[bool, str, None] = False,
                 min_run_time: Optional[float] = None, adaptive: bool = False, warmup: int = 2, seed: int = 0,
                 model=None, label: str = "", adamw: str = "auto", tf32: bool = False,
                 grad_accum: int = 1) -> StepResult:
    """Time one GPT step of ``config`` at (batch_size, seq_len) on ``device``.

    dtype: None = bf16 autocast on CUDA, fp32 on CPU. mode: "fwd" | "fwdbwd" | "train".
    compile, adamw, tf32: how the step runs (``prepare_step``; ``runtime.StepSettings``).
    Returns a StepResult (raises on bad input and on failures; ``measure_sweep`` records them).
    """
    cfg = resolve_config(config)
    model, step, dev, dt = prepare_step(cfg, batch_size, seq_len, mode, device, dtype, compile,
                                        seed, model, adamw, tf32, grad_accum)
    tm = time_fn(step, dev, min_run_time=min_run_time, adaptive=adaptive, warmup=warmup,
                 label=label or cfg.name)
    name = settings.device_name(dev)
    fwd_bwd = "fwd" if mode == "fwd" else "fwdbwd"
    fl = cost.step_flops(cfg, batch_size, seq_len, fwd_bwd, "visible", dev.type)
    fl_counter = cost.step_flops(cfg, batch_size, seq_len, fwd_bwd, "counted", dev.type)
    sec = tm.median_ms / 1e3
    achieved = fl / sec
    res = StepResult(
        label=label or cfg.name, preset=cfg.name, config=cfg.describe(), config_fields=cfg.to_dict(),
        mode=mode,
        batch_size=batch_size, seq_len=seq_len, device=str(dev), device_name=name,
        dtype=settings.dtype_name(dt), compile=bool(compile), attn_backend=cfg.attn_backend,
        step_settings=runtime.StepSettings(dtype=settings.dtype_name(dt), tf32=tf32,
                                           compile="default" if compile is True else (compile or None),
                                           adamw=adamw).to_dict(),
        median_ms=tm.median_ms, iqr_ms=tm.iqr_ms, min_ms=tm.min_ms, n_runs=tm.n_runs,
        tokens_per_s=batch_size * seq_len / sec, peak_mem_bytes=tm.peak_mem_bytes,
        params=model.num_params(), flops=fl, flops_counter=fl_counter,
        achieved_tflops=achieved / 1e12, mfu=flops.mfu(achieved, name, dt) if dev.type == "cuda" else None)
    del model, step
    return res


def free_memory(device) -> None:
    """Release what a finished sweep point held (Python garbage, and CUDA's cached blocks)."""
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def error_text(exc: BaseException, limit: int = 300) -> str:
    """What a sweep row records for a failed point: the exception's type and first line."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"[:limit]


def error_row(config, batch_size, seq_len, mode, device, dtype, compile, exc, label="") -> StepResult:
    """The row a sweep records when a point fails: sizes and stamps kept, numbers None."""
    try:
        cfg = resolve_config(config)
        preset, desc, backend, fields = cfg.name, cfg.describe(), cfg.attn_backend, cfg.to_dict()
    except ValueError:
        preset, desc, backend, fields = str(config), str(config), "", {}
    dev, dt = settings.resolve(device, dtype)
    msg = error_text(exc)
    return StepResult(label=label or preset, preset=preset, config=desc, mode=mode,
                      batch_size=batch_size, seq_len=seq_len, device=str(dev),
                      device_name=settings.device_name(dev), dtype=settings.dtype_name(dt),
                      compile=bool(compile), attn_backend=backend, error=msg, config_fields=fields)


def measure_sweep(points: Iterable[dict], progress: bool = True, desc: str = "measuring",
                  **common) -> List[StepResult]:
    """``measure_step(**common, **point)`` for each point; failures become error rows.

    Example: ``measure_sweep([{"seq_len": T} for T in (128, 256)], config="gpt2_small",
    batch_size=1)``. OOM and unsupported backends (RuntimeError, NotImplementedError, missing
    compiler) are recorded in the row's ``error``; bad input (ValueError) still raises.
    """
    points = list(points)
    rows: List[StepResult] = []
    bar = progress_bar(len(points), desc, progress)
    for p in points:
        kw = {**common, **p}
        unknown = set(kw) - set(inspect.signature(measure_step).parameters)
        if unknown:
            raise ValueError(f"measure_sweep: unknown measure_step argument(s) {sorted(unknown)}")
        try:
            rows.append(measure_step(**kw))
        except ValueError:
            raise
        except SWEEP_ERRORS as e:
            rows.append(error_row(kw.get("config"), kw.get("batch_size"), kw.get("seq_len"),
                                  kw.get("mode", "train"), kw.get("device"), kw.get("dtype"),
                                  kw.get("compile", False), e, kw.get("label", "")))
        finally:
            free_memory(kw.get("device") or settings.get_device())
        if bar is not None:
            bar.update(1)
            r = rows[-1]
            bar.set_postfix_str(f"{r.label} T={r.seq_len}: " +
                                (f"{r.median_ms:.1f} ms" if r.ok else "error"))
    if bar is not None:
        bar.close()
    return rows


def progress_bar(total: int, desc: str, enabled: bool = True):
    """A tqdm bar (notebook-aware when available) that leaves nothing behind, or None.

    In a notebook kernel tqdm draws a widget and stores its first state as text ("0%"); a
    notebook executed headless (nbconvert) would keep that frozen "0%" in its outputs. So there
    the bar is displayed under a display id and blanked when it closes."""
    if not enabled:
        return None
    if not any(c.__module__ == "tqdm.notebook" for c in type.mro(tqdm)):  # a terminal: tqdm's own bar
        return tqdm(total=total, desc=desc, leave=False)
    from IPython.display import display  # reason: only in a notebook kernel, where IPython is there
    bar = tqdm(total=total, desc=desc, leave=False, display=False)
    if bar.disable or not hasattr(bar, "container"):
        return bar
    handle = display(bar.container, display_id=True)
    bar.displayed = True
    close = bar.close

    def close_and_blank():
        close()
        handle.update({"text/plain": ""}, raw=True)  # the stored output: empty, not "0%"
    bar.close = close_and_blank
    return bar


def speedup(base: StepResult, new: StepResult) -> float:
    """base time / new time (>1 = new is faster); nan when either row failed."""
    if not (base.ok and new.ok):
        return math.nan
    return base.median_ms / new.median_ms


