"""The speed ladder (11): precision, torch.compile, a fused optimizer and nice numbers, rung by rung.

Each rung is one lever on top of the rungs below it, at the lesson's setting (``sizes.Ladder``):
fp32 eager (eager attention, GPT-2's 50,257 logits, AdamW's per-tensor loop) -> + TF32 matmuls
(CUDA) -> + bf16 autocast (fp16 with a GradScaler beside it) -> + SDPA -> + torch.compile (other
modes beside it) -> + the vocabulary padded to 50,304 (the padded logits masked: the same loss) ->
+ fused AdamW (foreach beside it); "everything together" is the last rung against the first.
The levers are ``GPTConfig`` fields (the model) and ``runtime.StepSettings`` fields (how it runs).

- ``measure_ladder``: builds every rung -- a lever this device cannot run, or whose first step
  fails, is recorded in its row ("not available here: ...") and left out of the rungs above it --
  then times every rung's training step, each dtype's matmul peak and the roofline's other probes
  **in the same interleaved rounds** (``timing.time_rounds``). Every ratio is a median of per-round
  ratios with its min–max: speedup over the previous rung and over the baseline, MFU against the
  peak of the rung's dtype, the roofline's predicted time (``roofline.predict_step`` on that
  round's ceilings of the rung's dtype) against the measured one. Compile time is timed on its own
  (the first call) with the steps after which it pays back.
- ``precision_rows`` / ``cpu_precision``: what each dtype can hold, and what this CPU has for it.
- ``init_logit_difference``, ``autocast_dtypes``, ``gradient_underflow``, ``chunked_loss_under_autocast``,
  ``padding_difference``, ``precision_runs`` (fp32 and bf16 over seeds, ``common.quality_runs``): the
  numerics, measured.
- ``ladder_table`` / ``waterfall_figure``: the cumulative table and the waterfall, with
  ``PUBLISHED_A100`` (Karpathy's ladder, published figures on other hardware) beside it.
- ``rung_ceiling`` / ``check_rung_ceiling``: the exercise.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch.utils._python_dispatch import TorchDispatchMode

from tutorial_lib import runtime, scopes, settings, speedups
from tutorial_lib.data import random_batch
from tutorial_lib.lessons.common import CheckResult, call_checked, quality_runs
from tutorial_lib.measure import ceilings as ceil
from tutorial_lib.measure import cost, roofline
from tutorial_lib.measure.memory import peak_bytes
from tutorial_lib.measure.roofline import median_range
from tutorial_lib.measure.timing import (
    NOISY,
    SWEEP_ERRORS,
    error_text,
    paired_speedup,
    prepare_step,
    progress_bar,
    spread_of,
    step_settings,
    time_fn,
    time_rounds,
)
from tutorial_lib.measure.traffic import NO_KERNEL
from tutorial_lib.model import GPT, GPTConfig, get_config
from tutorial_lib.runtime import NOT_AVAILABLE, StepSettings
from tutorial_lib.sizes import Ladder, Quality, Roofline
from tutorial_lib.speedups import Speedup
from tutorial_lib.train import TrainConfig, train

# Karpathy, "Let's reproduce GPT-2 (124M)" (video and the build-nanogpt repository, 2024): ms per
# training step of GPT-2 124M on one A100 as each change went in. Published figures, on other
# hardware and at his batch, in his order (compile before flash attention): an anchor, not a verdict.
PUBLISHED_A100 = (("fp32", 1000.0), ("+ TF32", 333.0), ("+ bf16 autocast", 300.0), ("+ torch.compile", 130.0),
                  ("+ flash attention", 96.0), ("+ vocab 50,304", 93.0), ("+ fused AdamW", 90.0))
PUBLISHED_SOURCE = "Karpathy, \"Let's reproduce GPT-2 (124M)\" (2024): GPT-2 124M on one A100"
SLOW_DTYPE = 8.0  # a dtype whose matmuls run this many times slower than fp32 is emulated: not laddered
QUICK_MM = 512  # n of the quick matmul that finds such a dtype before any rung is built


# ---- the rungs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lever:
    """One rung's change: GPTConfig fields and/or StepSettings fields, on top of the rungs below."""
    key: str
    label: str
    model: dict = field(default_factory=dict)  # GPTConfig changes
    step: dict = field(default_factory=dict)  # runtime.StepSettings changes
    beside: Optional[str] = None  # an alternative to this rung (built on what that rung builds on)


def levers(sizes: Ladder) -> List[Lever]:
    """The ladder's levers in order, alternatives right after the rung they stand beside."""
    out = [Lever("fp32", "fp32 eager (baseline)"),
           Lever("tf32", "+ TF32 matmuls", step={"tf32": True}),
           Lever("bf16", "+ bf16 autocast", step={"dtype": "bfloat16"}),
           Lever("fp16", "fp16 autocast + GradScaler (instead of bf16)", step={"dtype": "float16"}, beside="bf16"),
           Lever("sdpa", "+ SDPA (fused attention)", model={"attn_backend": "sdpa"}),
           Lever("compile", "+ torch.compile", step={"compile": "default"})]
    out += [Lever(f"compile:{m}", f"torch.compile mode={m!r} (instead of default)", step={"compile": m},
                  beside="compile") for m in sizes.compile_modes]
    out += [Lever("vocab", "+ vocab padded to 50,304", model={"pad_vocab_multiple": 64, "mask_vocab_padding": True}),
            Lever("fused", "+ fused AdamW", step={"adamw": "fused"}),
            Lever("foreach", "foreach AdamW (instead of fused)", step={"adamw": "foreach"}, beside="fused")]
    return out


def baseline(sizes: Ladder) -> Tuple[GPTConfig, StepSettings]:
    """The first rung: the preset with eager attention, fp32, AdamW's per-tensor loop."""
    base = get_config(sizes.preset)
    return (base.replace(attn_backend="eager", block_size=max(base.block_size, sizes.seq_len)),
            StepSettings(dtype="float32", adamw="for-loop"))


def dtype_key(step: StepSettings, device) -> str:
    """The matmul peak a rung is measured against: "tf32", or its compute dtype's name."""
    return "tf32" if step.tf32 and step.compute_dtype(device) == torch.float32 else settings.dtype_name(
        step.compute_dtype(device))


def matmul_rate(device, dtype: str, n: int = QUICK_MM, min_run_time: float = 0.05) -> float:
    """FLOP/s of one n x n ``torch.mm`` in ``dtype`` ("tf32": float32 with TF32 on), quickly."""
    p = _mm_probes(device, dtype, (n,))[0]
    return p.rate(time_fn(p.run, device, min_run_time=min_run_time, warmup=1, min_measurements=1).median_ms)


def _mm_probes(device, key: str, sizes: Sequence[int]) -> List[ceil.Probe]:
    """``ceilings.matmul_probes`` for a dtype key; TF32's run the float32 matmul with TF32 on."""
    if key != "tf32":
        return ceil.matmul_probes(device, key, sizes)

    def tf32(run):
        def call():
            with runtime.matmul_precision(True):
                return run()
        return call
    return [dataclasses.replace(p, label=p.label + " (TF32)", run=tf32(p.run), size={**p.size, "dtype": "tf32"})
            for p in ceil.matmul_probes(device, "float32", sizes)]


# ---- measuring the ladder ----------------------------------------------------------------------------
def measure_ladder(sizes: Ladder, roof: Roofline, device=None, progress: bool = False) -> dict:
    """Every rung built, then timed with the peaks and probes in the same rounds (module docstring).

    Returns {"rows": one per lever (errors included) plus "everything together", "peaks": {dtype:
    (median, min, max) FLOP/s}, "rounds", "setting"}."""
    dev = settings.resolve(device)[0]
    B, T = sizes.batch, sizes.seq_len
    cfg, st = baseline(sizes)
    quick = {"float32": matmul_rate(dev, "float32")}
    built: Dict[str, Tuple[GPTConfig, StepSettings]] = {}  # key -> what the rung runs
    prev: Dict[str, Optional[str]] = {}  # key -> the rung it is compared with
    rows: Dict[str, dict] = {}
    steps: Dict[str, Callable[[], None]] = {}
    below = {}  # key of a rung -> (config, settings, previous key) it was built on
    last: Optional[str] = None
    bar = progress_bar(len(levers(sizes)), "building rungs", progress)
    for lv in levers(sizes):
        c0, s0, p0 = below[lv.beside] if lv.beside else (cfg, st, last)
        if not lv.beside:
            below[lv.key] = (c0, s0, p0)
        c, s = c0.replace(**lv.model), s0.replace(**lv.step)
        row = rows[lv.key] = {"rung": lv.label, "key": lv.key, "beside": lv.beside, "vs": p0, "error": None,
                              "config": c.describe(), "model_fields": c.to_dict(), "step_settings": s.to_dict(),
                              "dtype": dtype_key(s, dev), "batch_size": B, "seq_len": T}
        row["error"] = _refusal(s, dev, sizes, quick)
        if row["error"] is None:
            try:
                _, step, _, _ = prepare_step(c, B, T, "train", dev, **step_settings(s, dev))
                # the first call compiles (a cold compile: empty on-disk caches), allocates, makes AdamW's state
                with runtime.empty_compile_caches() if s.compile else contextlib.nullcontext():
                    t0 = time.perf_counter()
                    step()
                    settings.synchronize(dev)
                    row["first_call_s"] = time.perf_counter() - t0
                steps[lv.key] = step
            except SWEEP_ERRORS as e:
                row["error"] = error_text(e)
        if row["error"] is None:
            built[lv.key], prev[lv.key] = (c, s), p0
            if not lv.beside:
                cfg, st, last = c, s, lv.key
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    res = _time_and_analyse(sizes, roof, dev, rows, steps, built, prev, last, progress)
    res["quick"] = quick  # dtype -> FLOP/s of the quick probe each rung's dtype was checked with
    return res


def onednn_support(dtype: str) -> Optional[bool]:
    """Whether PyTorch's CPU matmul library (oneDNN) has kernels for ``dtype`` on this CPU (for
    bf16 it needs AVX-512 or better, for fp16 AVX-512 FP16 or AMX-FP16); None where torch does not say."""
    check = {"bfloat16": "_is_mkldnn_bf16_supported", "float16": "_is_mkldnn_fp16_supported"}.get(dtype)
    try:
        return bool(getattr(torch.ops.mkldnn, check)()) if check else True
    except (AttributeError, RuntimeError):
        return None


def _refusal(s: StepSettings, dev, sizes: Ladder, quick: Dict[str, float]) -> Optional[str]:
    """Why a rung is not run here: the device cannot run it; its dtype has no CPU matmul kernels
    (``onednn_support``) or ran ``SLOW_DTYPE`` times slower than fp32 in a quick probe -- PyTorch
    then computes it in a reference loop, and a training step would take minutes; or this size
    profile skips compiling."""
    why = s.unavailable(dev)
    if why:
        return why
    if s.compile and not sizes.compile:
        return "not run at this size profile (sizes.ladder.compile is False: compiling takes minutes)"
    key = settings.dtype_name(s.compute_dtype(dev))
    if key not in quick:
        quick[key] = matmul_rate(dev, key)
    slower = quick["float32"] / quick[key]
    kernels = onednn_support(key) if dev.type == "cpu" else True
    if kernels is False or slower > SLOW_DTYPE:
        return (f"{NOT_AVAILABLE}: this {dev.type} has no {key} matmul kernels, so PyTorch computes {key} "
                f"matmuls in a slow fallback (a quick {QUICK_MM}x{QUICK_MM} matmul: {quick[key] / 1e9:,.2f} GFLOP/s "
                f"against {quick['float32'] / 1e9:,.2f} for float32, and slower still at larger sizes); a training "
                "step would take minutes")
    return None


def _time_and_analyse(sizes: Ladder, roof: Roofline, dev, rows, steps, built, prev, last, progress) -> dict:
    B, T = sizes.batch, sizes.seq_len
    keys = sorted({dtype_key(s, dev) for _, s in built.values()})
    mm = {k: _mm_probes(dev, k, sizes.peak_sizes) for k in keys}
    shared = (ceil.bandwidth_probes(dev, roof.stream_bytes) + ceil.fill_probes(dev, roof.first_touch_sizes)
              + [ceil.overhead_probe(dev)])
    runs = {**{p.label: p.run for ps in mm.values() for p in ps}, **{p.label: p.run for p in shared}, **steps}
    bar = progress_bar(sizes.rounds * len(runs), "rounds", progress)
    times, failed = time_rounds(runs, dev, sizes.rounds, sizes.min_run_time, max_rounds=sizes.rounds, bar=bar)
    if bar is not None:
        bar.close()
    n = min(len(times[p.label]) for ps in mm.values() for p in ps + shared)
    per_round = {k: [ceil.from_round(mm[k] + shared, {p.label: times[p.label][i] for p in mm[k] + shared}, dev,
                                     "float32" if k == "tf32" else k) for i in range(n)] for k in keys}
    base = "fp32" if "fp32" in steps and "fp32" not in failed else None
    for key, step in steps.items():
        row = rows[key]
        if key in failed:
            row["error"] = failed[key]
            continue
        c, s = built[key]
        _analyse(row, times, key, prev.get(key), base, c, s, per_round[dtype_key(s, dev)], dev, B, T, sizes)
        row["peak_mem_bytes"] = _peak(step, dev)
    preds = {k: rows[k].pop("_preds") for k in steps if "_preds" in rows[k]}
    for k, ps in preds.items():  # what the roofline expects of the lever: previous / this, per round
        if prev.get(k) in preds:
            rows[k]["predicted_speedup_prev"] = statistics.median(a / b for a, b in zip(preds[prev[k]], ps))
    out = [rows[k] for k in rows]
    if base and last and last != base and not rows[last].get("error"):
        out.append(together_row(rows, base, last, times))
    peaks = {k: median_range([c.peak_flops for c in per_round[k]]) for k in keys}
    return {"rows": out, "peaks": peaks, "rounds": n,
            "setting": {"model": sizes.preset, "B": B, "T": T, "device": str(dev),
                        "device_name": settings.device_name(dev), "step": "fwd+bwd+AdamW"}}


def _analyse(row, times, key, prev_key, base, c: GPTConfig, s: StepSettings, ceilings: List[ceil.Ceilings], dev,
             B, T, sizes: Ladder) -> None:
    """Fill one rung's row from the rounds: time, speedups, MFU, roofline, compile payback."""
    ts = times[key]
    ms = statistics.median(ts)
    row.update(ms=ms, ms_min=min(ts), ms_max=max(ts), rounds=len(ts), times_ms=list(ts),
               tokens_per_s=B * T / (ms / 1e3), spread=spread_of(ts), noisy=spread_of(ts) > NOISY)
    for name, other in (("prev", prev_key), ("base", base)):
        if other and other in times and other != key:
            med, lo, hi = paired_speedup(times[other], ts)
            row.update({f"speedup_{name}": med, f"speedup_{name}_min": lo, f"speedup_{name}_max": hi})
    if row.get("speedup_prev") is not None:
        row["verdict"] = rung_speedup(row, "prev").verdict_words()
    dt = settings.dtype_name(s.compute_dtype(dev))
    impl = s.adamw_impl(dev)
    flops = cost.step_flops(c, B, T, "fwdbwd", "visible", dev.type)
    mfu = median_range([flops / (t / 1e3) / cr.peak_flops for t, cr in zip(ts, ceilings)])
    preds = [roofline.predict_step(c, B, T, cr, dtype=dt, device_type=dev.type, adamw=impl) for cr in ceilings]
    frac = median_range([p.total_ms / t for p, t in zip(preds, ts)])
    row.update(gflop=flops / 1e9, mfu=mfu[0], mfu_min=mfu[1], mfu_max=mfu[2],
               roofline_ms=statistics.median(p.total_ms for p in preds), roofline_vs_measured=frac[0],
               roofline_vs_measured_min=frac[1], roofline_vs_measured_max=frac[2],
               roofline_note="eager kernels (compile's fusion is not in the model)" if s.compile else None,
               peak_TFLOPs=statistics.median(cr.peak_flops for cr in ceilings) / 1e12)
    if s.compile and row.get("first_call_s") is not None and prev_key in times:
        row.update(compile_payback(row["first_call_s"], ts, times[prev_key]))
        if not key.startswith("compile"):  # what this rung compiled anew; the payback is the compile rung's
            row.update(saved_ms_per_step=None, payback_steps=None, payback_steps_min=None, payback_steps_max=None)
    row["_preds"] = [p.total_ms for p in preds]


def compile_payback(first_call_s: float, compiled_ms: Sequence[float], eager_ms: Sequence[float]) -> dict:
    """Compile time (the first call, with empty compile caches, less one steady step; a rung that
    reuses what a rung below it compiled in this process pays only what is new to it) and the steps
    after which it pays back:
    compile seconds / seconds saved per step (the eager rung's time less the compiled one's, per
    round: median and range). None where the compiled step is not faster in the median."""
    compile_s = max(0.0, first_call_s - statistics.median(compiled_ms) / 1e3)
    saved = median_range([(e - c) / 1e3 for e, c in zip(eager_ms, compiled_ms)])
    out = {"compile_s": compile_s, "saved_ms_per_step": None if saved[0] is None else saved[0] * 1e3,
           "payback_steps": None, "payback_steps_min": None, "payback_steps_max": None}
    if saved[0] is not None and saved[0] > 0:
        out["payback_steps"] = compile_s / saved[0]
        out["payback_steps_min"] = compile_s / saved[2]
        out["payback_steps_max"] = compile_s / saved[1] if saved[1] > 0 else None  # None: never, in some round
    return out


def together_row(rows: Dict[str, dict], base: str, last: str, times) -> dict:
    """"everything together": the last rung against the baseline, per round, and the product of
    the rungs' median speedups beside it (a check: a ladder's steps multiply)."""
    med, lo, hi = paired_speedup(times[base], times[last])
    path = [r for r in rows.values() if not r.get("beside") and not r.get("error") and r.get("speedup_prev")]
    product = math.prod(r["speedup_prev"] for r in path)
    r = rows[last]
    return {"rung": "everything together", "key": "together", "beside": None, "vs": base, "error": None,
            "config": r["config"], "model_fields": r["model_fields"], "step_settings": r["step_settings"],
            "dtype": r["dtype"], "batch_size": r["batch_size"], "seq_len": r["seq_len"], "ms": r["ms"],
            "ms_min": r["ms_min"], "ms_max": r["ms_max"], "tokens_per_s": r["tokens_per_s"],
            "speedup_base": med, "speedup_base_min": lo, "speedup_base_max": hi, "rounds": len(times[base]),
            "verdict": Speedup(med, lo, hi, len(times[base])).verdict_words(), "rungs_product": product,
            "mfu": r.get("mfu"),
            "mfu_min": r.get("mfu_min"), "mfu_max": r.get("mfu_max"), "peak_mem_bytes": r.get("peak_mem_bytes")}


def _peak(step, dev) -> Optional[int]:
    """The allocator's peak over one step (bytes above what was held before it), or None."""
    try:
        return peak_bytes(step, dev)
    except SWEEP_ERRORS:
        return None


# ---- precision: what each dtype holds, and what this machine has for it ------------------------------
def precision_rows() -> List[dict]:
    """Bits, range and resolution of fp32, TF32 (inside a tensor-core matmul), bf16 and fp16, from
    ``torch.finfo`` (TF32: fp32's exponent with fp16's 10 mantissa bits)."""
    rows = []
    for name, dt in (("float32", torch.float32), ("tf32", None), ("bfloat16", torch.bfloat16),
                     ("float16", torch.float16)):
        f = torch.finfo(dt or torch.float32)
        mant = 10 if dt is None else round(-math.log2(f.eps))
        eps = 2.0 ** -mant
        rows.append({"dtype": name, "bits": 19 if dt is None else f.bits, "exponent_bits": 8 if dt is None else
                     f.bits - 1 - mant, "mantissa_bits": mant, "max": f.max, "smallest_normal": f.smallest_normal,
                     "smallest_subnormal": None if dt is None else f.smallest_normal * f.eps, "eps": eps})
    return rows


CPU_UNITS = (  # /proc/cpuinfo flag (x86 "flags", Arm "Features") -> dtype, what it does for a matmul
    ("amx_bf16", "bfloat16", "AMX: bf16 matrix multiplies in tile units"),
    ("avx512_bf16", "bfloat16", "AVX-512 BF16: bf16 pairs dot-multiplied into fp32 (VDPBF16PS)"),
    ("bf16", "bfloat16", "Arm BF16: BFDOT / BFMMLA dot products"),
    ("amx_fp16", "float16", "AMX-FP16: fp16 matrix multiplies in tile units"),
    ("avx512_fp16", "float16", "AVX-512 FP16: fp16 vector arithmetic"),
    ("fphp", "float16", "Arm FP16: fp16 arithmetic"),
)


def cpu_precision(cpuinfo: Optional[str] = None) -> dict:
    """This CPU's model, its low-precision flags and what they mean for matmuls (``CPU_UNITS``), and
    the kind of CPU it is for bf16: "AMX", "bf16 dot-product instructions" or "no bf16 instructions".
    ``cpuinfo``: the text of /proc/cpuinfo (read when None; empty where there is none)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    fields: Dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    units = [{"flag": f, "dtype": d, "what": w} for f, d, w in CPU_UNITS if f in flags]
    has = {u["flag"] for u in units}
    kind = ("AMX" if "amx_bf16" in has else "bf16 dot-product instructions" if has & {"avx512_bf16", "bf16"}
            else "no bf16 instructions")
    meaning = {"AMX": "bf16 matmuls run in tile units: several times the fp32 peak",
               "bf16 dot-product instructions": "bf16 matmuls use dot-product instructions: up to about twice "
                                                "the fp32 peak, not AMX's several times",
               "no bf16 instructions": "bf16 is converted to fp32 to compute: expect no gain, often a loss"}[kind]
    fp16 = [u["flag"] for u in units if u["dtype"] == "float16"]
    return {"model": fields.get("model name") or settings.cpu_model(), "vendor": fields.get("vendor_id", ""),
            "flags": sorted(has), "units": units, "kind": kind,
            "summary": f"{kind}: {meaning}; fp16: " + (f"{', '.join(fp16)}" if fp16 else
                                                        "no fp16 instructions (fp16 matmuls are converted: slow)"),
            "torch_capability": torch.backends.cpu.get_cpu_capability()}


def device_precision(device=None) -> dict:
    """What ``device`` has for low precision: on a CPU ``cpu_precision``; on CUDA the GPU's name,
    compute capability, and whether it has TF32 and bf16."""
    dev = settings.resolve(device)[0]
    if dev.type != "cuda":
        return {"device": str(dev), **cpu_precision()}
    cap = torch.cuda.get_device_capability(dev)
    return {"device": str(dev), "model": torch.cuda.get_device_name(dev), "capability": f"{cap[0]}.{cap[1]}",
            "tf32": cap[0] >= 8, "bf16": torch.cuda.is_bf16_supported(),
            "summary": f"compute capability {cap[0]}.{cap[1]}: " + ("TF32 and bf16 tensor cores" if cap[0] >= 8
                                                                   else "no TF32, fp16 tensor cores only")}


# ---- numerics --------------------------------------------------------------------------------------
def init_logit_difference(config: GPTConfig, batch_size: int, seq_len: int, device=None, dtype="bfloat16",
                          seed: int = 0) -> dict:
    """One model at initialisation, one batch, forward in fp32 and under autocast ``dtype``: the
    largest logit difference (and beside it the largest logit), the mean one, the loss in both and
    how often the two agree on the most likely next token."""
    dev, dt = settings.resolve(device, dtype)
    torch.manual_seed(seed)
    model = GPT(config).to(dev).eval()
    idx, tgt = random_batch(config.vocab_size, batch_size, seq_len, dev, seed)
    with torch.no_grad():
        ref, loss_ref = model(idx, tgt)
        with settings.autocast(dev, dt):
            low, loss_low = model(idx, tgt)
    V = config.vocab_size
    ref, low = ref[..., :V].float(), low[..., :V].float()
    diff = (low - ref).abs()
    return {"dtype": settings.dtype_name(dt), "device_name": settings.device_name(dev),
            "max_abs_logit": float(ref.abs().max()), "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()), "loss_fp32": float(loss_ref), "loss_low": float(loss_low),
            "loss_diff": float(loss_low) - float(loss_ref),
            "argmax_agree": float((low.argmax(-1) == ref.argmax(-1)).float().mean())}


class _OutputDtypes(TorchDispatchMode):
    """Counts every operator a forward dispatches by (scope, operator, output dtype)."""

    def __init__(self):
        super().__init__()
        self.seen: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        outs = [t for t in (out if isinstance(out, (tuple, list)) else [out])
                if isinstance(t, torch.Tensor) and t.is_floating_point()]
        if outs and name not in NO_KERNEL:
            self.seen[(scopes.current() or "other", name, settings.dtype_name(outs[0].dtype))] += 1
        return out


def autocast_dtypes(config: GPTConfig, batch_size: int, seq_len: int, device=None, dtype="bfloat16") -> List[dict]:
    """Which dtype each operator of one forward (with loss) computes in under autocast ``dtype``:
    one row per (scope, operator, output dtype) with its number of calls, as dispatched (after
    autocast's casts, which appear as ``_to_copy``)."""
    dev, dt = settings.resolve(device, dtype)
    torch.manual_seed(0)
    model = GPT(config).to(dev)
    idx, tgt = random_batch(config.vocab_size, batch_size, seq_len, dev, 0)
    counter = _OutputDtypes()
    with scopes.enabled(model, record=False), settings.autocast(dev, dt), counter:
        model(idx, tgt)
    return [{"scope": s, "op": op, "dtype": d, "calls": n} for (s, op, d), n in sorted(counter.seen.items())]


def gradient_underflow(config: GPTConfig, batch_size: int, seq_len: int, device=None, seed: int = 0,
                       scale: float = 2.0 ** 16) -> List[dict]:
    """How small a training step's gradients are: one fp32 forward+backward, the gradients of every
    Linear layer's output (what flows between layers, and what fp16 autocast would hold in fp16),
    against each dtype's smallest subnormal (below it: 0) and smallest normal (below it: fewer
    significant bits), unscaled and multiplied by ``scale`` (the GradScaler's first scale)."""
    dev = settings.resolve(device)[0]
    torch.manual_seed(seed)
    model = GPT(config).to(dev)
    idx, tgt = random_batch(config.vocab_size, batch_size, seq_len, dev, seed)
    grads: List[torch.Tensor] = []

    def keep(module, inputs, output):
        if output.requires_grad:
            output.register_hook(lambda g: grads.append(g.detach().abs().flatten().float()))
    hooks = [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        model(idx, tgt)[1].backward()
    finally:
        for h in hooks:
            h.remove()
    g = torch.cat(grads)
    g = g[g > 0]
    rows = []
    for name, dt in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        f = torch.finfo(dt)
        tiny = f.smallest_normal * f.eps  # the smallest subnormal
        for s in (1.0, scale):
            x = g * s
            rows.append({"dtype": name, "loss_scale": s, "entries": int(g.numel()),
                         "to_zero": float((x < tiny).float().mean()),
                         "subnormal": float(((x >= tiny) & (x < f.smallest_normal)).float().mean()),
                         "overflow": float((x > f.max).float().mean()), "smallest": float(g.min()),
                         "largest": float(g.max())})
    return rows


def chunked_loss_under_autocast(config: GPTConfig, batch_size: int, seq_len: int, device=None,
                                dtype="bfloat16", chunk: int = 256) -> List[dict]:
    """The loss of one batch with the full logits in fp32, and under autocast ``dtype`` with the
    full logits and with the chunked loss (lesson 08), its difference to fp32, and what each keeps
    for backward (``cost.activation_bytes``: exact)."""
    dev, dt = settings.resolve(device, dtype)
    torch.manual_seed(0)
    full = GPT(config).to(dev)
    idx, tgt = random_batch(config.vocab_size, batch_size, seq_len, dev, 0)
    rows = []
    for label, impl, d in (("full logits, fp32", "full", torch.float32), (f"full logits, {dtype}", "full", dt),
                           (f"chunked, {dtype}", "chunked", dt)):
        cfg = config.replace(loss_impl=impl, loss_chunk=chunk)
        model = GPT(cfg).to(dev)
        model.load_state_dict(full.state_dict())
        with torch.no_grad(), settings.autocast(dev, d):
            loss = float(model(idx, tgt)[1])
        saved = cost.activation_bytes(cfg, batch_size, seq_len, settings.dtype_name(d))
        rows.append({"variant": label, "loss": loss, "saved_bytes": sum(saved.values()),
                     "head_loss_saved_bytes": saved.get("loss", 0) + saved.get("lm_head", 0)})
    for r in rows:
        r["vs_fp32"] = r["loss"] - rows[0]["loss"]
    return rows


def precision_runs(quality: Quality, steps: int, device=None, progress: bool = False) -> Dict[str, List[object]]:
    """The same short training run in fp32 and under bf16 autocast, for every seed of ``quality``
    at its B and T, ``steps`` steps each (``common.quality_runs``: same seeds, same batches):
    {"fp32": [histories], "bf16 autocast": [histories]} for ``quality_table`` and ``loss_curves``."""
    q = dataclasses.replace(quality, steps=steps, eval_every=max(1, steps // 4))
    return {**quality_runs({"fp32": get_config(q.preset)}, q, device=device, progress=progress, dtype="float32"),
            **quality_runs({"bf16 autocast": get_config(q.preset)}, q, device=device, progress=progress,
                           dtype="bfloat16")}


def _copy_into(dst: GPT, src: GPT) -> None:
    """``src``'s weights into ``dst``, whose vocabulary may be padded: the real rows copied, the
    padded rows left as they were initialised."""
    with torch.no_grad():
        for (name, p), q in zip(dst.named_parameters(), src.parameters()):
            p[tuple(slice(0, n) for n in q.shape)].copy_(q)


def padded_mass(model: GPT, idx: torch.Tensor) -> float:
    """The softmax's mean probability on the padded logits (token ids >= vocab_size)."""
    with torch.no_grad():
        logits, _ = model(idx)
        return float(torch.softmax(logits.float(), -1)[..., model.config.vocab_size:].sum(-1).mean())


def padding_difference(config: GPTConfig, batch_size: int, seq_len: int, steps: int, device=None,
                       seed: int = 0) -> dict:
    """The vocabulary padded to a multiple of 64 with and without the mask, against the unpadded
    model with the same weights: the loss at initialisation (masked: the same; unmasked: the padded
    logits enter the softmax, nanoGPT's way) and the probability mass on the padded logits, at
    initialisation and after ``steps`` steps of training the unmasked model (``train.train``)."""
    dev = settings.resolve(device)[0]
    torch.manual_seed(seed)
    plain = GPT(config).to(dev)
    idx, tgt = random_batch(config.vocab_size, batch_size, seq_len, dev, seed)
    out = {"vocab": config.vocab_size}
    for label, mask in (("masked", True), ("unmasked", False)):
        torch.manual_seed(seed)
        padded = GPT(config.replace(pad_vocab_multiple=64, mask_vocab_padding=mask)).to(dev)
        _copy_into(padded, plain)
        with torch.no_grad():
            diff = float(padded(idx, tgt)[1]) - float(plain(idx, tgt)[1])
        out[f"{label}_loss_diff"] = diff
        out["padded_vocab"] = padded.config.padded_vocab_size
        if not mask:
            out["mass_at_init"] = padded_mass(padded, idx)
            h = train(padded, TrainConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, eval_every=steps,
                                          eval_batches=1, warmup_steps=max(1, steps // 10), seed=seed,
                                          device=str(dev), progress=False))
            out.update(mass_after=padded_mass(padded, idx), steps=len(h.steps))
    return out


# ---- the table, the waterfall, the summary ------------------------------------------------------------
def _rng(lo, hi, fmt="{:.2f}") -> Optional[str]:
    return None if lo is None or hi is None else f"{fmt.format(lo)}–{fmt.format(hi)}"


def _with_range(v, lo, hi, fmt: str) -> Optional[str]:
    """"1.93 (1.90–1.96)": a median with its range over the rounds."""
    if v is None:
        return None
    return fmt.format(v) + ("" if lo is None or hi is None else f" ({fmt.format(lo)}–{fmt.format(hi)})")


def rung_speedup(row: dict, over: str) -> Speedup:
    """A rung's speedup over the rung below (``over="prev"``) or over the baseline (``"base"``):
    the median of its per-round ratios, their range and the rounds (``speedups.Speedup``; no ceiling:
    the cost model does not describe compile's fusion or a CPU's bf16 units)."""
    return Speedup(row.get(f"speedup_{over}"), row.get(f"speedup_{over}_min"), row.get(f"speedup_{over}_max"),
                   row.get("rounds"))


def ladder_table(rows: Sequence[dict]) -> List[dict]:
    """One printable row per rung, each number the median over the rounds with its range: ms per
    step, tokens/s, peak memory, speedup over the rung below (``x prev``) with what the roofline
    expected of it (``model``), speedup over the baseline (``x base``), MFU against the peak of the
    rung's dtype. A rung that did not run says "not run" (``summary_lines`` says why)."""
    out = []
    for r in rows:
        if r.get("error"):
            out.append({"rung": r["rung"], "dtype": "not run"})
            continue
        out.append({"rung": r["rung"], "dtype": r.get("dtype"),
                    "ms": _with_range(r.get("ms"), r.get("ms_min"), r.get("ms_max"), "{:,.1f}"),
                    "tokens/s": r.get("tokens_per_s"),
                    "peak MiB": None if r.get("peak_mem_bytes") is None else r["peak_mem_bytes"] / 2**20,
                    "x prev": rung_speedup(r, "prev").text() if r.get("speedup_prev") is not None else None,
                    "model": r.get("predicted_speedup_prev"),
                    "x base": rung_speedup(r, "base").text() if r.get("speedup_base") is not None else None,
                    "MFU": _with_range(r.get("mfu"), r.get("mfu_min"), r.get("mfu_max"), "{:.1%}")})
    return out


COLORS = {"baseline": "#1f77b4", "faster": "#2ca02c", "slower": "#d62728", "noise": "#9e9e9e", "total": "#444444"}


def _waterfall(ax, steps: Sequence[Tuple[str, float, str, str]], total: Optional[Tuple[str, float, str]]) -> None:
    """Bars from each level to the next (label, ms, colour key, annotation), then the total from 0."""
    prev = None
    for i, (label, ms, kind, note) in enumerate(steps):
        lo, hi = (0.0, ms) if prev is None else (min(prev, ms), max(prev, ms))
        ax.bar(i, hi - lo, bottom=lo, color=COLORS[kind], width=0.7)
        if note:
            ax.text(i, hi, note, ha="center", va="bottom", fontsize=8)
        if prev is not None:
            ax.plot([i - 1 - 0.35, i + 0.35], [prev, prev], ":", color="grey", lw=0.8)
        prev = ms
    labels = [s[0] for s in steps]
    if total is not None:
        ax.bar(len(steps), total[1], color=COLORS["total"], width=0.7)
        ax.text(len(steps), total[1], total[2], ha="center", va="bottom", fontsize=8)
        labels.append(total[0])
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("ms per training step", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.12)


def waterfall_figure(result: dict, title: str = "") -> Figure:
    """Left: this machine's ladder, each rung's bar from the previous rung's time to its own
    (green: faster in every round, red: slower in every round, grey: within noise), then
    "everything together" from zero. Right: ``PUBLISHED_A100``, labelled as published figures."""
    rows = [r for r in result["rows"] if not r.get("beside") and not r.get("error") and r.get("ms")]
    steps = []
    for r in rows:
        if r["key"] == "together":
            continue
        if r.get("speedup_prev") is None:
            steps.append((r["rung"], r["ms"], "baseline", f"{r['ms']:,.0f} ms"))
            continue
        kind = {speedups.FASTER: "faster", speedups.SLOWER: "slower"}.get(rung_speedup(r, "prev").verdict, "noise")
        steps.append((r["rung"], r["ms"], kind, f"x{r['speedup_prev']:.2f}"))
    together = next((r for r in rows if r["key"] == "together"), None)
    total = (("everything together", together["ms"], f"x{together['speedup_base']:.2f}") if together else None)
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    _waterfall(ax1, steps, total)
    s = result.get("setting", {})
    ax1.set_title(title or f"measured here: {s.get('model')}, B={s.get('B')}, T={s.get('T')}, "
                  f"{str(s.get('device_name', '')).split(' (')[0]}", fontsize=9, loc="left")
    pub = [(label, ms, "baseline" if i == 0 else "faster",
            f"{ms:,.0f} ms" if i == 0 else f"x{PUBLISHED_A100[i - 1][1] / ms:.2f}")
           for i, (label, ms) in enumerate(PUBLISHED_A100)]
    _waterfall(ax2, pub, ("everything together", PUBLISHED_A100[-1][1],
                          f"x{PUBLISHED_A100[0][1] / PUBLISHED_A100[-1][1]:.1f}"))
    ax2.set_title("published (other hardware): Karpathy, GPT-2 124M, one A100", fontsize=9, loc="left")
    kinds = (("baseline", "baseline"), ("faster", "faster, every round"), ("slower", "slower, every round"),
             ("noise", "within noise"), ("total", "everything together"))
    handles = [Patch(color=COLORS[k], label=t) for k, t in kinds]
    fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=8, frameon=False)
    return fig


GOAL = 1.5  # on a CPU with AMX or AVX-512 BF16, at the cpu profile: the last rung >= 1.5x the fp32 baseline


def summary_lines(result: dict, goal: Optional[float] = None) -> List[str]:
    """The ladder in sentences, numbers from ``result``: each rung's speedup in words (or why it did
    not run), the total, and with ``goal`` whether the last rung reached that many times the
    baseline in the median and in every round (``GOAL``: the lesson's cpu setting)."""
    out = []
    for r in result["rows"]:
        if r.get("error"):
            out.append(f"- {r['rung']}: {r['error']}")
        elif r["key"] == "together":
            line = (f"- everything together, over the fp32 eager baseline: {rung_speedup(r, 'base').text()} (the "
                    f"rungs' medians multiply to {r['rungs_product']:.2f})")
            if goal is not None:
                met = ("met in every round" if r["speedup_base_min"] >= goal else
                       "met in the median only" if r["speedup_base"] >= goal else "not met")
                line += f"; the {goal:g}x goal: {met}"
            out.append(line)
        elif r.get("mfu_max") is not None and r["mfu_max"] > 1 and r["key"] != "together":
            out.append(f"- {r['rung']}: an MFU above 100% in some round ({r['mfu_max']:.0%}): the peak probe ran slow "
                       "in that round (the machine was busy); this rung's numbers are noise")
        if r.get("speedup_prev") is not None and not r.get("error") and r["key"] != "together":
            expected = r.get("predicted_speedup_prev")
            out.append(f"- {r['rung']}, over the rung below: {rung_speedup(r, 'prev').text()}; the roofline "
                       "expected " + ("n/a" if expected is None else f"{expected:.2f}x"))
    return out


# ---- exercise --------------------------------------------------------------------------------------
def rung_ceiling(step_ms: float, matmul_share: float, peak_ratio: float) -> float:
    """A precision rung's best step time if only the matmuls speed up, by ``peak_ratio`` (the new
    dtype's matmul peak over the old one's), and the rest of the step stays as it was (Amdahl)."""
    return step_ms * ((1.0 - matmul_share) + matmul_share / peak_ratio)


def check_rung_ceiling(fn) -> CheckResult:
    """Check ``fn(step_ms, matmul_share, peak_ratio)`` against ``rung_ceiling``; names the usual slips."""
    name = "rung_ceiling"
    cases = [(1000.0, 0.6, 2.0), (250.0, 0.9, 5.3), (80.0, 0.25, 1.5), (40.0, 1.0, 3.0), (12.0, 0.0, 4.0)]
    for ms, share, ratio in cases:
        got, err = call_checked(name, fn, ms, share, ratio)
        if err is not None:
            return err
        want = rung_ceiling(ms, share, ratio)
        if not isinstance(got, (int, float)) or isinstance(got, bool) or not math.isfinite(got):
            return CheckResult(name, False, f"expected a step time in ms, got {got!r}")
        if math.isclose(got, want, rel_tol=1e-9):
            continue
        if math.isclose(got, ms / ratio, rel_tol=1e-9):
            return CheckResult(name, False, "that speeds up the whole step by the peak ratio; only the matmul "
                                            "share runs at the new peak -- the rest of the step stays as it was")
        if math.isclose(got, ms * ((1 - share) + share * ratio), rel_tol=1e-9):
            return CheckResult(name, False, "the matmul share got slower: a higher peak divides its time")
        if math.isclose(got, ms / want * ms, rel_tol=1e-9) or math.isclose(got, ms / want, rel_tol=1e-9):
            return CheckResult(name, False, "that is a speedup; return the step time in ms")
        return CheckResult(name, False, f"(step {ms} ms, matmul share {share}, peak ratio {ratio}): got {got!r}, "
                                        f"expected {want:.4g} ms")
    return CheckResult(name, True, f"all {len(cases)} cases match step_ms x ((1 - share) + share / ratio)",
                       len(cases))


# ---- recorded: the guide suite's rows ------------------------------------------------------------------
RECORD_COLUMNS = ["variant", "dtype", "ms_per_step", "ms_range", "tokens_per_s", "peak_MiB", "speedup",
                  "speedup_range", "roofline_expected", "speedup_vs_baseline", "vs_baseline_range", "MFU",
                  "MFU_range", "roofline_ms", "compile_s", "payback_steps", "verdict", "error"]


def record_rows(result: dict) -> List[dict]:
    """``measure_ladder``'s rows as the guide suite records them: ``variant`` the rung, ``speedup``
    over the rung below (so the decision tree reads each lever's own payoff), ranges as text."""
    out = []
    for r in result["rows"]:
        out.append({"variant": r["rung"], "key": r["key"], "beside": r.get("beside"), "dtype": r.get("dtype"),
                    "config": r.get("config"), "model_fields": r.get("model_fields"),
                    "step_settings": r.get("step_settings"), "batch_size": r.get("batch_size"),
                    "seq_len": r.get("seq_len"), "ms_per_step": r.get("ms"),
                    "ms_range": _rng(r.get("ms_min"), r.get("ms_max"), "{:,.1f}"),
                    "tokens_per_s": r.get("tokens_per_s"),
                    "peak_MiB": None if r.get("peak_mem_bytes") is None else r["peak_mem_bytes"] / 2**20,
                    "speedup": r.get("speedup_prev"), "speedup_min": r.get("speedup_prev_min"),
                    "speedup_max": r.get("speedup_prev_max"),
                    "speedup_range": _rng(r.get("speedup_prev_min"), r.get("speedup_prev_max")),
                    "roofline_expected": r.get("predicted_speedup_prev"),
                    "speedup_vs_baseline": r.get("speedup_base"), "vs_baseline_min": r.get("speedup_base_min"),
                    "vs_baseline_max": r.get("speedup_base_max"),
                    "vs_baseline_range": _rng(r.get("speedup_base_min"), r.get("speedup_base_max")),
                    "MFU": r.get("mfu"), "MFU_range": _rng(r.get("mfu_min"), r.get("mfu_max"), "{:.1%}"),
                    "roofline_ms": r.get("roofline_ms"), "compile_s": r.get("compile_s"),
                    "payback_steps": r.get("payback_steps"), "rungs_product": r.get("rungs_product"),
                    "spread": r.get("spread"), "noisy": r.get("noisy"), "verdict": r.get("verdict"),
                    "error": r.get("error")})
    return out


def peak_rows(result: dict) -> List[dict]:
    """Each dtype's matmul peak, TFLOP/s: measured in the ladder's rounds (median and range) for the
    dtypes of the rungs that ran; for a dtype whose rung did not run (fp16 on a CPU without fp16
    kernels), the quick probe that checked it, said so."""
    peaks, quick = result["peaks"], result.get("quick", {})
    rows = [{"dtype": k, "peak_TFLOPs": v[0] / 1e12, "peak_TFLOPs_min": v[1] / 1e12, "peak_TFLOPs_max": v[2] / 1e12,
             "vs_float32": v[0] / peaks["float32"][0] if "float32" in peaks else None,
             "measured": "in the ladder's rounds"} for k, v in peaks.items()]
    for k, rate in quick.items():
        if k not in peaks:
            rows.append({"dtype": k, "peak_TFLOPs": rate / 1e12, "peak_TFLOPs_min": None, "peak_TFLOPs_max": None,
                         "vs_float32": rate / quick["float32"] if quick.get("float32") else None,
                         "measured": f"one quick {QUICK_MM}x{QUICK_MM} probe (its rung did not run)"})
    return rows


def published_rows() -> List[dict]:
    """``PUBLISHED_A100`` as a table: ms per step and the speedup each change claims over the one
    before (published figures: claims, with no rounds to judge them by)."""
    return [{"rung": label, "ms_per_step": ms, "claimed_speedup": None if i == 0 else PUBLISHED_A100[i - 1][1] / ms,
             "vs_fp32": PUBLISHED_A100[0][1] / ms} for i, (label, ms) in enumerate(PUBLISHED_A100)]
