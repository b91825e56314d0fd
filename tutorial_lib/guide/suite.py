"""The guide suite: every measurement OPTIMIZATION_GUIDE.md and the notebooks cite, in one run.

``python -m tutorial_lib bench --suite guide --out results/<device>.json`` runs each section below
and writes one results file (``measure.records`` format: stamped ``meta``, ``rows`` with a ``kind``
per section, and ``sections`` with each table's columns, sizes and notes). ``report`` turns it into
the guide's tables. A section that fails (OOM, an unsupported backend, a missing feature) is
recorded with its error and the suite goes on.

Sizes come from ``sizes.get_sizes(profile)`` (its ``suite``, ``seed``, ``decode`` and ``quality``
sections): the seed's own setting on a GPU (GPT-2 small, B=4, T=512, bf16 autocast), a smaller one
on a CPU, toy sizes for the smoke profile used by tests.
Budget: about 8 minutes on one H200, about 20 on a 2-core CPU.
"""
from __future__ import annotations

import gc
import os
import time
import traceback
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from tutorial_lib import settings
from tutorial_lib.claims import CLAIMS, Setting, claimed, compare
from tutorial_lib.files import check_writable
from tutorial_lib.guide.plan import priority_order
from tutorial_lib.lessons import all_together, lm_head, memory_budget, own_paths, speed_ladder
from tutorial_lib.lessons import roofline as roofline_lesson
from tutorial_lib.lessons import triton_flash as triton_lesson
from tutorial_lib.lessons.common import (
    QUALITY_AFTER,
    QUALITY_BASELINE,
    fit_loglog_slope,
    measure_variants,
    quality_runs,
    quality_table,
)
from tutorial_lib.lessons.flash_attention import attention_sweep, loglog_slopes, model_backend_comparison
from tutorial_lib.lessons.gqa import measure_decode
from tutorial_lib.lessons.sliding_window import window_sweep
from tutorial_lib.lessons.swiglu import time_optimizer_step
from tutorial_lib.measure import ceilings as ceil
from tutorial_lib.measure import cost, profile
from tutorial_lib.measure.allocator import allocator_settings
from tutorial_lib.measure.records import SCHEMA_VERSION, save_document, stamp, to_row
from tutorial_lib.measure.timing import SWEEP_ERRORS, error_row, error_text, measure_step
from tutorial_lib.model import GPT, GPTConfig, get_config
from tutorial_lib.optim import OptimizerSpec, muon_available
from tutorial_lib.sizes import Quality, Sizes, get_sizes

SUITES = ("guide",)


def _loadavg() -> Optional[float]:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


class Suite:
    """Collects rows and section metadata; each section runs under its own error guard."""

    def __init__(self, sizes: Sizes, device: torch.device, progress: bool = True):
        self.sizes, self.device, self.progress = sizes, device, progress
        self.dtype = settings.default_dtype(device)
        self.rows: List[dict] = []
        self.sections: Dict[str, dict] = {}

    def add(self, kind: str, rows, columns=None, sizes=None, note=None):
        for r in rows:
            d = r.to_dict() if hasattr(r, "to_dict") else dict(r)
            d["kind"] = kind
            self.rows.append(d)
        meta = self.sections.setdefault(kind, {})
        if columns:
            meta["columns"] = list(columns)
        if sizes:
            meta["sizes"] = dict(sizes)
        if note:
            meta["note"] = note

    def run(self, name: str, fn: Callable[["Suite"], None]):
        t0 = time.perf_counter()
        load0 = _loadavg()
        if self.progress:
            print(f"[suite] {name} ...", flush=True)
        try:
            fn(self)
        except Exception as e:  # recorded, and the suite goes on
            self.sections.setdefault(name, {})["error"] = error_text(e, 400)
            if self.progress:
                traceback.print_exc()
        finally:
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        dt = time.perf_counter() - t0
        sec = self.sections.setdefault(name, {})
        sec["seconds"] = round(dt, 1)
        if load0 is not None:  # how busy the machine was: the report flags timings taken under load
            sec["load"] = {"start": load0, "end": _loadavg(), "cores": os.cpu_count(),
                           "threads": torch.get_num_threads()}
        if self.progress:
            print(f"[suite] {name}: {dt:.1f} s", flush=True)

    # shared helpers ------------------------------------------------------------------------
    def step(self, cfg: GPTConfig, label: str, mode: str = "train", compile: bool = False,
             batch: Optional[int] = None, seq_len: Optional[int] = None):
        """A measured step as a row; an error row instead of raising."""

        s = self.sizes.suite
        B, T = batch or s.batch, seq_len or s.seq_len
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            r = measure_step(cfg, B, T, mode=mode, device=self.device, compile=compile,
                             min_run_time=s.min_run_time, label=label)
        except SWEEP_ERRORS as e:
            r = error_row(cfg, B, T, mode, self.device, None, compile, e, label=label)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return r

    def base_config(self) -> GPTConfig:
        return get_config(self.sizes.suite.preset)


def _variants(S: "Suite", configs: dict, memory: bool = False, compiled=()) -> List[dict]:
    """Training steps of several variants timed in interleaved rounds (``common.measure_variants``):
    each speedup is the median of per-round ratios, so load that comes and goes cancels."""
    s = S.sizes.suite
    if S.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(S.device)
    rows = measure_variants(configs, s.batch, s.seq_len, rounds=s.rounds, min_run_time=s.min_run_time,
                            device=S.device, memory=memory, compiled=compiled)
    out = []
    for r in rows:
        mem = r.get("memory_bytes")
        out.append({"variant": r["variant"], "config_fields": configs[r["variant"]].to_dict(),
                    "batch_size": s.batch, "seq_len": s.seq_len, "ms_per_step": r.get("median_ms"),
                    "speedup": r.get("speedup"), "tokens_per_s": r.get("tokens_per_s"),
                    "speedup_min": r.get("speedup_min"), "speedup_max": r.get("speedup_max"),
                    "speedup_range": (f"{r['speedup_min']:.2f}–{r['speedup_max']:.2f}"
                                      if r.get("speedup_min") is not None else None),
                    "rounds": len(r.get("times_ms") or []) or None,  # the speedup rules need the count
                    "params_M": r["params"] / 1e6 if r.get("params") else None,
                    "step_memory_MiB": None if mem is None else mem / 2**20,
                    "peak_mem_MiB": None if r.get("peak_bytes") is None else r["peak_bytes"] / 2**20,
                    "spread": r.get("spread"), "noisy": r.get("noisy"), "error": r.get("error")})
    return out


def _ratio(a, b):
    return None if (a is None or b is None or b == 0) else a / b


# ---- sections ------------------------------------------------------------------------------
def sec_breakdown(S: Suite):

    s = S.sizes.seed
    res = profile.profile_step(get_config(s.preset).replace(attn_backend="eager"), s.batch,
                         s.seq_len, device=S.device, steps=2, warmup=1)
    S.add("breakdown", res.component_rows(),
          columns=["component", "time_ms", "time_share", "flop_share"],
          sizes={"model": s.preset + " (eager attention)", "B": s.batch, "T": s.seq_len,
                 "step": "fwd+bwd+AdamW", "time": res.time_source},
          note="time_share is of the whole step (optimizer included); flop_share is the component's "
               "share of the step's matmul FLOPs (cost model). Elementwise work has no matmul FLOPs: "
               "where its time share is large, memory traffic and per-op overhead are the cost.")


def sec_speed_ladder(S: Suite):
    """The speed ladder (notebook 11): every rung's training step, each dtype's matmul peak and the
    roofline's probes timed in the same interleaved rounds (``lessons.speed_ladder.measure_ladder``)."""
    s = S.sizes.ladder
    res = speed_ladder.measure_ladder(s, S.sizes.roofline, S.device)
    prec = speed_ladder.device_precision(S.device)
    sizes = {"model": s.preset, "B": s.batch, "T": s.seq_len, "step": "fwd+bwd+AdamW", "rounds": res["rounds"],
             "precision": f"{prec['model']}: {prec['summary']}"}
    S.add("speed_ladder", speed_ladder.record_rows(res), columns=speed_ladder.RECORD_COLUMNS, sizes=sizes,
          note="Each rung adds one lever to the rungs below it that ran (a row 'instead of ...' stands beside "
               "the rung it names, built on the same rungs). speedup: over the rung below, the median of per-round "
               "ratios (range: min–max); roofline_expected: the same ratio of the roofline model's predictions on "
               "the ceilings measured in the same rounds (eager kernels: compile's fusion is not in the model). "
               "MFU: the step's forward+backward FLOPs (visible pairs) per second over the matmul peak of the "
               "rung's dtype timed in the same round. compile_s: the first call less one step, with "
               "torch.compile's on-disk caches emptied (a cold compile; a rung reusing what the rung below "
               "compiled pays only what is new); payback_steps: compile_s / the time a step saves. 'everything "
               "together': the last rung against the first.")
    S.add("speed_ladder.peaks", speed_ladder.peak_rows(res), columns=["dtype", "peak_TFLOPs", "peak_TFLOPs_min",
                                                                     "peak_TFLOPs_max", "vs_float32", "measured"],
          sizes={"mm": "x".join(str(n) for n in s.peak_sizes), "rounds": res["rounds"]},
          note="torch.mm of n x n matrices per dtype, the best size per round, timed in the ladder's rounds.")


def sec_gqa_train(S: Suite):
    s, cfg0 = S.sizes.suite, S.base_config()
    heads = sorted({h for h in (cfg0.n_head, 4, 2, 1) if cfg0.n_head % h == 0}, reverse=True)
    label = lambda h: "MHA" if h == cfg0.n_head else ("MQA" if h == 1 else f"GQA-{h}")  # noqa: E731
    configs = {label(h): cfg0.replace(n_kv_head=h) for h in heads}
    rows = _variants(S, configs)
    base_fl = cost.step_flops(cfg0, s.batch, s.seq_len)
    where = Setting(model=s.preset, batch=s.batch, seq_len=s.seq_len, device=S.device.type)
    for h, r in zip(heads, rows):
        flops_ratio = cost.step_flops(configs[label(h)], s.batch, s.seq_len) / base_fl
        r.update(n_kv_head=h, flops_vs_MHA=flops_ratio, flop_ceiling=1 / flops_ratio)
        if h != cfg0.n_head and f"gqa.speedup.kv{h}" in CLAIMS:
            spread = (r["speedup_min"], r["speedup_max"]) if r.get("speedup_min") is not None else None
            c = compare(f"gqa.speedup.kv{h}", r.get("speedup"), where=where, spread=spread, ceiling=1 / flops_ratio,
                        rounds=r.get("rounds"))
            r.update(claimed_speedup=c["claimed"], verdict=c["verdict"])
    S.add("gqa_train", rows,
          columns=["variant", "n_kv_head", "params_M", "flops_vs_MHA", "flop_ceiling", "ms_per_step", "speedup",
                   "speedup_range", "claimed_speedup", "verdict", "tokens_per_s", "error"],
          sizes={"model": s.preset, "B": s.batch, "T": s.seq_len, "step": "fwd+bwd+AdamW",
                 "timing": f"{s.rounds} interleaved rounds, speedup = median per-round ratio (range: min–max)"})


def sec_gqa_decode(S: Suite):
    s, cfg0 = S.sizes.suite, S.base_config()
    heads = sorted({h for h in (cfg0.n_head, 4, 1) if cfg0.n_head % h == 0}, reverse=True)
    d = S.sizes.decode
    rows = measure_decode(cfg0, d.contexts, kv_heads=heads, batch_size=d.batch,
                          new_tokens=d.new_tokens, device=S.device,
                          dtype="bfloat16" if S.device.type == "cuda" else "float32",
                          min_run_time=s.min_run_time, rounds=s.rounds)
    out = []
    for r in rows:  # heads[0] is MHA: speedup_vs_first is against MHA, per interleaved round
        out.append({"variant": r.attention, "context": r.context, "cache_MiB": r.cache_bytes / 2**20,
                    "ms_per_token": r.ms_per_step, "tokens_per_s": r.tokens_per_s,
                    "speedup_vs_MHA": r.speedup_vs_first,
                    "speedup_range": (f"{r.speedup_min:.2f}–{r.speedup_max:.2f}" if r.speedup_min is not None
                                      else None), "error": r.error})
    S.add("gqa_decode", out,
          columns=["variant", "context", "cache_MiB", "ms_per_token", "tokens_per_s",
                   "speedup_vs_MHA", "speedup_range", "error"],
          sizes={"model": s.preset, "B": d.batch, "new tokens": d.new_tokens,
                 "timing": f"{s.rounds} interleaved rounds, speedup = median per-round ratio (range: min–max)"})


def sec_flash_vs_T(S: Suite):
    s = S.sizes.suite
    backends = ["eager", "tiled", "sdpa"] + (["flex"] if S.device.type == "cuda" else [])
    rows = attention_sweep(s.attn_seqs, backends, batch_size=s.attn_batch, n_head=s.attn_heads,
                           head_dim=64, device=S.device, min_run_time=s.min_run_time, rounds=s.rounds)
    S.add("flash_vs_T", rows, columns=["backend", "seq_len", "median_ms", "speedup", "speedup_min", "speedup_max",
                                       "noisy", "saved_bytes", "peak_bytes", "scores_bytes", "error"],
          sizes={"B": s.attn_batch, "H": s.attn_heads, "D": 64, "work": "attention core fwd+bwd",
                 "timing": f"the backends at each T in {s.rounds} interleaved rounds; speedup = eager's time / "
                           "this one's, median per-round ratio (min–max)"})
    S.add("attention_vs_T", attention_slope_rows(rows, get_config("gpt2_small"), batch=4),
          columns=["what", "T_range", "time_slope", "memory_slope", "flops_slope", "claimed_slope"],
          sizes={"B": s.attn_batch, "H": s.attn_heads, "D": 64, "fit": f"log-log, last {SLOPE_POINTS} lengths"},
          note="A slope of 2 is quadratic in T (2x longer = 4x more), 1 is linear. Time slopes fit the "
               "longest lengths, where fixed per-call overheads no longer hide the growth. The seed's "
               "'2x longer sequences = 4x more compute' holds for the attention core's T x T products; "
               "the whole model's FLOPs grow far slower, since its linear layers grow only 2x.")


SLOPE_POINTS = 3  # fit the exponents over this many of the longest lengths


def attention_slope_rows(rows, cfg: GPTConfig, batch: int) -> List[dict]:
    """How attention cost grows with T: per backend, the fitted log-log exponent of time and of
    bytes kept for backward (``flash_attention.loglog_slopes`` over ``attention_sweep`` rows), then the
    cost model's exponent for the FLOPs of a whole training step of ``cfg`` over the same lengths."""

    t_slope = loglog_slopes(rows, "median_ms", last=SLOPE_POINTS)
    m_slope = loglog_slopes(rows, "saved_bytes", last=SLOPE_POINTS)
    out = []
    for b in t_slope:
        seqs = sorted(r.seq_len for r in rows if r.backend == b and r.ok)[-SLOPE_POINTS:]
        out.append({"what": f"attention core, {b}", "T_range": f"{seqs[0]}-{seqs[-1]}" if seqs else None,
                    "time_slope": _finite(t_slope[b]), "memory_slope": _finite(m_slope[b]),
                    "claimed_slope": claimed("seq.quadratic") if b == "eager" else (
                        claimed("seq.flash") if b == "sdpa" else None)})
    seqs = sorted({r.seq_len for r in rows})[-SLOPE_POINTS:]
    if len(seqs) >= 2:
        big = cfg.replace(block_size=max(cfg.block_size, seqs[-1]))
        step = [cost.step_flops(big, batch, T) for T in seqs]
        rng = f"{seqs[0]}-{seqs[-1]}"
        out.append({"what": f"whole {cfg.name} training step FLOPs (cost model, B={batch})", "T_range": rng,
                    "flops_slope": fit_loglog_slope(seqs, step)[0], "claimed_slope": claimed("seq.quadratic")})
    return out


def _finite(x):
    return None if x is None or x != x else x


def sec_memory(S: Suite):
    """Parameters, gradients, AdamW state and saved activations of one training step, eager vs SDPA
    attention, beside the seed's "Memory Usage Breakdown" (MB = 10^6 bytes)."""

    s = S.sizes.seed
    cfg = get_config(s.preset)
    eager, sdpa = model_backend_comparison(cfg, s.batch, s.seq_len, ("eager", "sdpa"),
                                           device=S.device, measure_time=False)
    S.add("memory", memory_rows(eager, sdpa, cfg.n_layer, cuda=S.device.type == "cuda"),
          columns=["quantity", "seed_eager_MB", "eager_MB", "seed_flash_MB", "sdpa_MB", "error"],
          sizes={"model": s.preset, "B": s.batch, "T": s.seq_len,
                 "step": "fwd+bwd+AdamW", "MB": "10^6 bytes"},
          note="Byte counts are exact (every tensor autograd saves, seen through saved_tensors_hooks, each "
               "storage once) and do not depend on the machine's load. 'total' is the seed's sum; the "
               "allocator's real peak differs (activations are freed as gradients appear), and is measured "
               "on CUDA only. The seed's 8.5 GB peak is from its results table, for the baseline.")


def memory_rows(eager: dict, sdpa: dict, n_layer: int, cuda: bool) -> List[dict]:
    """The memory table: one row per quantity, the seed's claims beside eager and SDPA measurements
    (rows of ``flash_lessons.model_backend_comparison``; an errored backend leaves its column empty)."""

    def mb(r, key, per_layer=False, group=None):
        if r.get("error"):
            return None
        v = r.get("activations_by_group", {}).get(group, 0) if group else r.get(key)
        return None if v is None else v / 1e6 / (n_layer if per_layer else 1)

    spec = [  # quantity, value getter args, seed eager key, seed flash key
        ("parameters", ("params_bytes",), {}, "mem.params", None),
        ("gradients", ("grads_bytes",), {}, "mem.grads", None),
        ("optimizer state (AdamW)", ("optimizer_bytes",), {}, "mem.optimizer", None),
        ("activations saved for backward", ("activations_bytes",), {}, "mem.activations", "mem.flash.activations"),
        ("  attention scores/probs, per layer", (None,), {"per_layer": True, "group": "attention scores/probs"},
         "mem.attention_per_layer", None),
        ("  MLP, per layer", (None,), {"per_layer": True, "group": "mlp"}, "mem.mlp_per_layer", None),
        ("  residual stream, per layer", (None,), {"per_layer": True, "group": "residual stream"},
         "mem.residual_per_layer", None),
        ("total (params + grads + state + activations)", ("total_bytes",), {}, "mem.total", "mem.flash.total"),
    ]
    rows = []
    for q, args, kw, ce, cf in spec:
        scale = 1e3 if q.startswith("total") else 1.0  # the seed gives totals in GB
        rows.append({"quantity": q, "seed_eager_MB": claimed(ce) * scale if ce else None,
                     "eager_MB": mb(eager, *args, **kw), "seed_flash_MB": claimed(cf) * scale if cf else None,
                     "sdpa_MB": mb(sdpa, *args, **kw)})
    if cuda:
        rows.append({"quantity": "CUDA allocator peak over the step",
                     "seed_eager_MB": claimed("results.peak_mem.before") * 1e3,
                     "eager_MB": mb(eager, "peak_bytes"), "sdpa_MB": mb(sdpa, "peak_bytes")})
    errors = "; ".join(f"{r['backend']}: {r['error']}" for r in (eager, sdpa) if r.get("error"))
    if errors:
        rows[0]["error"] = errors
    return rows


def sec_flash_model(S: Suite):
    s, cfg0 = S.sizes.suite, S.base_config()
    rows = _variants(S, {be: cfg0.replace(attn_backend=be) for be in ("eager", "sdpa")}, memory=True)
    S.add("flash_model", rows,
          columns=["variant", "ms_per_step", "speedup", "speedup_range", "tokens_per_s", "step_memory_MiB",
                   "peak_mem_MiB", "error"],
          sizes={"model": s.preset, "B": s.batch, "T": s.seq_len,
                 "memory": "params + grads + AdamW + saved activations, exact",
                 "timing": f"{s.rounds} interleaved rounds, speedup = median per-round ratio (range: min–max)"})


def _mlp_like(S: Suite, kind: str, variants, base_key: str):

    s, cfg0 = S.sizes.suite, S.base_config()
    configs = {label: cfg0.replace(**kw) for label, kw in variants}
    rows = _variants(S, configs)
    base_fl = cost.step_flops(cfg0, s.batch, s.seq_len)
    for (label, _), r in zip(variants, rows):
        r[base_key] = cost.step_flops(configs[label], s.batch, s.seq_len) / base_fl
    S.add(kind, rows, columns=["variant", "params_M", base_key, "ms_per_step", "speedup",
                               "speedup_range", "tokens_per_s", "error"],
          sizes={"model": s.preset, "B": s.batch, "T": s.seq_len, "step": "fwd+bwd+AdamW",
                 "timing": f"{s.rounds} interleaved rounds, speedup = median per-round ratio (range: min–max)"})


def sec_mlp(S: Suite):
    _mlp_like(S, "mlp", (("GELU 4x", {}), ("GELU 3x", {"mlp_ratio": 3.0})), "flops_vs_4x")


def sec_swiglu(S: Suite):
    _mlp_like(S, "swiglu", (("GELU 4x", {}), ("SwiGLU 8/3x", {"mlp": "swiglu"}),
                            ("SwiGLU 3x", {"mlp": "swiglu", "mlp_ratio": 3.0})), "flops_vs_gelu")


def sec_window_curve(S: Suite):
    s = S.sizes.suite
    rows = window_sweep(s.window_seqs, window=s.window, batch_size=1, n_head=s.attn_heads,
                        head_dim=64, device=S.device, min_run_time=s.min_run_time)
    S.add("window_curve", rows, columns=["impl", "seq_len", "visible_pairs", "median_ms", "saved_bytes",
                                         "peak_bytes", "error"],
          sizes={"W": s.window, "B": 1, "H": s.attn_heads, "D": 64, "work": "attention core fwd+bwd"})


def sec_optimizer(S: Suite):
    s = S.sizes.suite
    torch.manual_seed(0)
    model = GPT(get_config(s.preset)).to(S.device)
    rows = []
    for name in ("adamw", "muon"):
        if name == "muon" and not muon_available():
            rows.append({"optimizer": name, "error": "torch.optim.Muon is not in this torch"})
            continue
        r = time_optimizer_step(model, OptimizerSpec(name), min_run_time=s.min_run_time)
        rows.append({"optimizer": name, "ms_per_update": r["median_s"] * 1e3,
                     "state_MiB": r["state_bytes"] / 2**20})
    del model
    S.add("optimizer", rows, columns=["optimizer", "ms_per_update", "state_MiB", "error"],
          sizes={"model": s.preset, "work": "optimizer.step() alone"})


def quality_variants(q: Quality) -> Dict[str, Tuple[GPTConfig, str]]:
    """{label: (config, optimizer)}: every lesson's change alone, Muon, and the combination."""
    base = get_config(q.preset)
    return {
        QUALITY_BASELINE: (base, "adamw"),
        "GQA-4": (base.replace(n_kv_head=4), "adamw"),
        "MQA": (base.replace(n_kv_head=1), "adamw"),
        "MLP 3x": (base.replace(mlp_ratio=3.0), "adamw"),
        "SwiGLU 8/3x": (base.replace(mlp="swiglu"), "adamw"),
        f"window W={q.window}": (base.replace(window=q.window), "adamw"),
        "Muon": (base, "muon"),
        # the seed's "after" (GQA + flash + 3x MLP: flash computes the same function as eager)
        QUALITY_AFTER: (base.replace(n_kv_head=4, mlp_ratio=3.0), "adamw"),
        "GQA-4 + 3x MLP + SwiGLU": (base.replace(n_kv_head=4, mlp="swiglu", mlp_ratio=3.0), "adamw"),
    }


def sec_quality(S: Suite):
    q = S.sizes.quality
    variants = quality_variants(q)
    runs = quality_runs(variants, q, device=S.device)
    rows = quality_table(runs)
    for r in rows:
        cfg, opt = variants[r["variant"]]
        r.update(optimizer=opt, params_M=cost.num_params(cfg) / 1e6)
    S.add("quality", rows, columns=["variant", "optimizer", "params_M", "seeds", "val_loss", "val_loss_sd",
                                    "vs_baseline", "vs_baseline_sd", "verdict", "ms_per_step", "error"],
          sizes={"model": q.preset, "B": q.batch, "T": q.seq_len, "steps": q.steps,
                 "seeds": len(q.seeds), "window": q.window, "data": "Shakespeare (bundled)"},
          note="val_loss is the mean over seeds (sd beside it); vs_baseline is the mean of the per-seed "
               "differences to the baseline (the same seed sees the same batches), and the verdict says "
               "'too short to tell' unless that mean is at least two of its standard deviations from 0.")


# the same variants as notebook 07 (``all_together``): the seed's baseline, each change alone, its "after"
BEFORE_AFTER = all_together.SUITE_VARIANTS


def expected_results_rows(before: dict, after: dict, where: Setting) -> List[dict]:
    """The seed's "Expected Results" table: each claimed cell beside the measured one (rows of
    ``before_after``, measured at ``where``: a verdict only at the seed's own setting), plus the
    arithmetic that shows its rows disagree with each other."""
    tokens = 4 * 512  # the seed's setting (B=4, T=512), whatever this run measured
    spread = ((after["speedup_min"], after["speedup_max"]) if after.get("speedup_min") is not None else None)
    rows = [
        compare("results.tokens_per_s.before", before.get("tokens_per_s"), where=where),
        compare("results.tokens_per_s.after", after.get("tokens_per_s"), where=where),
        compare("results.tokens_per_s.gain", after.get("speedup"), where=where, spread=spread,
                rounds=after.get("rounds")),
        compare("results.step_ms.before", before.get("ms_per_step"), where=where),
        compare("results.step_ms.after", after.get("ms_per_step"), where=where),
    ]
    implied = tokens / (claimed("results.step_ms.before") / 1e3)
    rows.append({"claim": "5,000 tokens/s at 51 ms per step", "claimed": claimed("results.tokens_per_s.before"),
                 "measured": implied, "ratio": implied / claimed("results.tokens_per_s.before"),
                 "verdict": "inconsistent",
                 "note": f"{tokens:,} tokens per step (the seed's B=4, T=512) in 51 ms is {implied:,.0f} tokens/s"})
    return [{k: r.get(k) for k in ("claim", "claimed", "measured", "ratio", "verdict", "why", "note")}
            for r in rows]


def sec_before_after(S: Suite):
    s, cfg0 = S.sizes.suite, S.base_config()
    variants = list(BEFORE_AFTER)
    if s.seq_len >= 512:
        variants.append(("... + window W=" + str(s.window) + " (local)",
                         {"attn_backend": "local", "window": s.window, "n_kv_head": 4,
                          "mlp": "swiglu", "mlp_ratio": 3.0}))
    configs = {label: cfg0.replace(**ch) for label, ch in variants}
    compiled = []
    if s.compile:  # the seed's "after" under torch.compile, in the same interleaved rounds
        compiled = ["GQA-4 + SDPA + 3x + torch.compile"]
        configs[compiled[0]] = cfg0.replace(**all_together.AFTER)
    rows = _variants(S, configs, compiled=compiled)
    S.add("before_after", rows, columns=["variant", "ms_per_step", "speedup", "speedup_range",
                                         "tokens_per_s", "error"],
          sizes={"model": s.preset, "B": s.batch, "T": s.seq_len, "step": "fwd+bwd+AdamW",
                 "timing": f"{s.rounds} interleaved rounds, speedup = median per-round ratio (range: min–max)"})
    before, after = rows[0], rows[4]
    where = Setting(model=s.preset, batch=s.batch, seq_len=s.seq_len, device=S.device.type)
    S.add("expected_results", expected_results_rows(before, after, where),
          columns=["claim", "claimed", "measured", "ratio", "verdict", "why", "note"],
          sizes={"model": s.preset, "B": s.batch, "T": s.seq_len})


OWN_PATHS_KINDS = ("own_paths.window", "own_paths.window_slope", "own_paths.mask", "own_paths.allocator",
                   "own_paths.consistency", "own_paths.mfu")


def sec_own_paths(S: Suite):
    """The project's own paths (``lessons.own_paths``): the local window's peak vs causal SDPA,
    the windowed mask before/after, huge pages off/on, one configuration across sections, and
    a forward+backward's MFU against the matmul peak timed in the same rounds."""
    o, cpu = S.sizes.own_paths, S.device.type == "cpu"
    attn = {"B": 1, "H": o.n_head, "D": o.head_dim, "W": o.window, "work": "attention core fwd+bwd"}

    def part(kind, fn):  # each part under its own guard and load reading
        load0 = _loadavg()
        try:
            fn()
        except Exception as e:  # recorded; the other parts still run
            S.sections.setdefault(kind, {})["error"] = error_text(e, 400)
        if load0 is not None:
            S.sections.setdefault(kind, {})["load"] = {"start": load0, "end": _loadavg(), "cores": os.cpu_count(),
                                                       "threads": torch.get_num_threads()}

    def window():
        res = own_paths.window_memory(o.window_seqs, o.window, n_head=o.n_head, head_dim=o.head_dim,
                               device=S.device, rounds=o.rounds, min_run_time=o.min_run_time)
        S.add("own_paths.window", res["rows"],
              columns=["impl", "seq_len", "peak_MB", "ms", "speedup_vs_causal", "speedup_range", "error"],
              sizes={**attn, "timing": f"{o.rounds} interleaved rounds"},
              note="peak_MB: the allocator's peak over one forward+backward above the inputs "
                   "(CPU: torch.profiler's memory events; CUDA: max_memory_allocated), MB = 10^6 "
                   "bytes. speedup_vs_causal: median of per-round ratios (interleaved rounds).")
        S.add("own_paths.window_slope", res["summary"], columns=["impl", "peak_slope", "T", "peak_vs_causal"],
              sizes={**attn, "T": list(o.window_seqs), "fit": "log-log over every T"},
              note="peak_slope 1 = the peak grows linearly with T. Goal for the local path: peak_vs_causal <= 1 "
                   "at the largest T and peak_slope <= 1.05.")

    def mask():
        rows = own_paths.mask_paths(o.mask_seq, o.window, n_head=o.n_head, head_dim=o.head_dim, device=S.device,
                             rounds=o.rounds, min_run_time=o.min_run_time)
        S.add("own_paths.mask", rows, columns=["what", "path", "ms", "speedup", "speedup_range", "peak_MB"],
              sizes={**attn, "T": o.mask_seq, "timing": f"{o.rounds} interleaved rounds"},
              note="Every layer of every step of a windowed model with the sdpa backend asks for this mask. "
                   "speedup: against the first row of its group, median of per-round ratios.")

    def allocator():
        if not cpu:
            S.add("own_paths.allocator", [{"workload": "huge pages are a CPU allocator setting",
                                           "error": f"not measured on {S.device.type}"}])
            return
        rows = own_paths.allocator_ab(o.ab_attention_seq, S.sizes.suite.preset, S.sizes.suite.batch,
                               S.sizes.suite.seq_len, rounds=o.ab_rounds)
        S.add("own_paths.allocator", rows,
              columns=["setting", "workload", "off_ms", "on_ms", "speedup", "speedup_range", "fresh_fill_GBps_off",
                       "fresh_fill_GBps_on", "touched_fill_GBps", "huge_pages_in_use", "system_thp", "error"],
              sizes={"processes": "fresh Python per measurement, the setting's variable 0 / 1 (huge_pages: "
                                  "THP_MEM_ALLOC_ENABLE; keep_freed: TUTORIAL_KEEP_FREED_MEMORY)",
                     "rounds": o.ab_rounds, "threads": torch.get_num_threads()},
              note="speedup = time with the setting off / on, median of per-round ratios (the two processes of a "
                   "round run back to back); the other setting stays on. fill: GB/s writing a fresh 64 MiB "
                   "tensor without and with the setting vs one already written. tutorial_lib turns both on "
                   "unless their variables are set before Python starts.")

    def consistency():
        cfg0, s = S.base_config(), S.sizes.suite
        S.add("own_paths.consistency_step", _variants(S, {"own_paths (again)": cfg0}))
        spread = own_paths.same_config_spread(S.rows, cfg0, s.batch, s.seq_len)
        S.add("own_paths.consistency", spread["rows"] + [{"section": "spread (max / min - 1)",
                                                          "ms": None, "spread": spread["spread"]}],
              columns=["section", "variant", "ms", "spread"],
              sizes={"model": s.preset, "B": s.batch, "T": s.seq_len, "step": "fwd+bwd+AdamW",
                     "config": cfg0.describe()},
              note="The same configuration timed in different sections of this run, each by interleaved rounds "
                   "(median). Goal: spread <= 0.10. Compare the load average each section ran under.")

    def mfu():
        variants = {"eager": {"attn_backend": "eager"}, "sdpa": {"attn_backend": "sdpa"}}
        compiled = ()
        if S.sizes.suite.compile:
            variants["sdpa + torch.compile"] = {"attn_backend": "sdpa"}
            compiled = ("sdpa + torch.compile",)
        res = own_paths.step_mfu(o.mfu_preset, o.mfu_batch, o.mfu_seq, variants, device=S.device,
                                 rounds=o.rounds, min_run_time=o.min_run_time, peak_sizes=o.peak_sizes,
                                 compile_variants=compiled)
        pk = res["peak"]
        hp = allocator_settings()["huge_pages_requested"] if cpu else None
        for r in res["rows"]:
            r.update(huge_pages=hp)
        S.add("own_paths.mfu", res["rows"],
              columns=["variant", "GFLOP", "ms", "achieved_TFLOPs", "MFU_measured_peak", "MFU_range", "MFU_spec",
                       "speedup", "speedup_range", "rounds", "huge_pages", "error"],
              sizes={"model": o.mfu_preset, "B": o.mfu_batch, "T": o.mfu_seq, "work": "forward+backward",
                     "timing": f"{o.rounds} interleaved rounds",
                     "peak": pk["source"], "peak_TFLOPs": (f"{pk['median_TFLOPs']:.3f} (rounds "
                                                           f"{pk['range_TFLOPs'][0]:.3f}–{pk['range_TFLOPs'][1]:.3f})"),
                     "spec_TFLOPs": pk["spec_TFLOPs"]},
              note="GFLOP: FlopCounterMode's count of one forward+backward. MFU_measured_peak: in every round the "
                   "matmul peak is timed beside the steps, and that round's MFU = the step's achieved FLOP/s / "
                   "that round's peak; the median over the rounds, with MFU_range their min–max. A ratio of a "
                   "step and a peak timed minutes apart is not a measurement on a machine whose speed drifts. "
                   "MFU_spec = achieved / the GPU's spec sheet (none for a CPU).")

    part("own_paths.window", window)
    part("own_paths.mask", mask)
    part("own_paths.allocator", allocator)
    part("own_paths.consistency", consistency)
    part("own_paths.mfu", mfu)
def sec_lm_head(S: Suite):
    """The LM head and the loss (notebook 08) at the seed's setting: the exact bytes saved for
    backward and the step time with the full logits and with the chunked loss; the head + loss
    alone, with GPT-2's vocabulary and nanoGPT's padded 50,304; and the profiled share of the head
    (and the loss) beside the seed's "LM Head (5-8%)"."""

    s = S.sizes.lm_head
    mib = lambda v: None if v is None else v / 2**20  # noqa: E731
    rows = []
    for r in lm_head.step_payoff(s, device=S.device):
        # the step is timed at s.timed_batch (the row's batch_size); its bytes are counted at s.batch
        rows.append({"variant": r["variant"], "config_fields": r["config_fields"], "batch_size": s.timed_batch,
                     "memory_batch_size": s.batch,
                     "seq_len": s.seq_len, "activations_MiB": mib(r.get("activations_bytes")),
                     "head_loss_MiB": mib(r.get("head_loss_bytes")),
                     "saved_vs_full_MiB": mib(r.get("saved_vs_full_bytes")),
                     "ms_per_step": r.get("median_ms"), "speedup": r.get("speedup"),
                     "speedup_min": r.get("speedup_min"), "speedup_max": r.get("speedup_max"),
                     "speedup_range": (f"{r['speedup_min']:.2f}–{r['speedup_max']:.2f}"
                                       if r.get("speedup_min") is not None else None),
                     "rounds": len(r.get("times_ms") or []) or None,
                     "tokens_per_s": r.get("tokens_per_s"), "peak_mem_MiB": mib(r.get("peak_bytes")),
                     "error": r.get("error")})
    sizes = {"model": s.preset, "B": s.timed_batch, "memory B": s.batch, "T": s.seq_len, "loss_chunk": s.chunk,
             "step": "fwd+bwd+AdamW",
             "timing": f"{s.rounds} interleaved rounds, speedup = median per-round ratio (range: min–max)"}
    S.add("lm_head", rows, columns=["variant", "activations_MiB", "head_loss_MiB", "saved_vs_full_MiB",
                                    "ms_per_step", "speedup", "speedup_range", "tokens_per_s",
                                    "peak_mem_MiB", "error"], sizes=sizes,
          note="activations_MiB: every tensor saved for backward during one step, counted exactly "
               "(saved_tensors_hooks, each storage once; a weight-gradient buffer made in the forward "
               "counts as saved); head_loss_MiB is the part the head and the loss save. Byte counts "
               "do not depend on the machine's load; times do. peak_mem_MiB: CUDA allocator peak.")
    points = [dict(impl=i, tokens=s.tokens, n_embd=s.n_embd, vocab=V, chunk=s.chunk)
              for V in (50257, 50304) for i in ("full", "chunked")]
    alone = lm_head.head_loss_sweep(points, rounds=s.sweep_rounds, min_run_time=s.min_run_time, device=S.device)
    S.add("lm_head_alone", [{"variant": r.label, "vocab": r.vocab, "tokens": r.tokens, "n_embd": r.n_embd,
                             "ms_fwd_bwd": r.median_ms, "ms_range": (f"{r.min_ms:.1f}–{r.max_ms:.1f}"
                                                                     if r.min_ms is not None else None),
                             "saved_MiB": mib(r.saved_bytes), "logits_MiB": mib(r.logits_bytes),
                             "peak_MiB": mib(r.peak_bytes), "error": r.error} for r in alone],
          columns=["variant", "vocab", "ms_fwd_bwd", "ms_range", "saved_MiB", "logits_MiB", "peak_MiB", "error"],
          sizes={"tokens N": s.tokens, "C": s.n_embd, "loss_chunk": s.chunk,
                 "work": "hidden -> loss -> gradients of hidden and weight",
                 "timing": f"{s.sweep_rounds} interleaved rounds (range: min–max over the rounds)"},
          note="50,257 is GPT-2's vocabulary; 50,304 is nanoGPT's padding to a multiple of 64 (the padded "
               "rows enter the softmax, as in the model). logits_MiB is one (N, V) logits tensor: what the "
               "full path makes and the chunked paths never do.")
    prof = profile.profile_step(get_config(s.preset), s.batch, s.seq_len, device=S.device, steps=1, warmup=1)
    S.add("lm_head_claim", lm_head.share_rows(prof),
          columns=["measured", "claim", "claimed_low", "claimed_high", "share", "verdict", "note"],
          sizes={"model": s.preset, "B": s.batch, "T": s.seq_len, "loss": "full logits",
                 "time": prof.time_source},
          note="Shares of the profiled time (torch.profiler with the model's named scopes), full-logits "
               "path: the head is the lm_head matmul, the loss its log-softmax and NLL.")


def sec_triton_flash(S: Suite):
    """The Triton kernel (lesson 10) against SDPA and flex at the seed's heads and at long T: on
    CUDA only -- the interpreter's times on a CPU are not performance."""
    if S.device.type != "cuda":
        S.add("triton_flash", [], note="Timed on a CUDA device only (the interpreter's times are not performance).")
        return
    rows = triton_lesson.time_kernels(min_run_time=S.sizes.suite.min_run_time)
    S.add("triton_flash", rows, columns=["backend", "mode", "B", "H", "T", "D", "median_ms", "min_ms", "max_ms",
                                         "tflops", "max_abs_diff_vs_sdpa", "error"],
          sizes={"dtype": "bfloat16", "causal": True, "timing": "interleaved rounds, median (min-max)"},
          note="TFLOP/s over the visible (query, key) pairs; max_abs_diff_vs_sdpa is the largest difference "
               "of the output from SDPA's on the same inputs.")


def sec_roofline(S: Suite):
    """Whole training steps predicted and measured in the same rounds as the machine's ceilings
    (each round's steps predicted from that round's ceilings), the ceilings those rounds measured,
    and one step's components placed on the roofline (time from the profiler, FLOPs and bytes from
    the cost model)."""
    r = S.sizes.roofline
    probes = roofline_lesson.lesson_probes(S.device, r)
    res = roofline_lesson.step_checks(r.checks, probes, S.device, min_run_time=r.min_run_time, rounds=r.rounds,
                                      progress=False, backends=r.backends)
    c = res["ceilings"]
    S.add("ceilings", [c.to_row()],
          columns=["device_name", "dtype", "peak_TFLOPs", "bandwidth_GBs", "first_touch_GBs", "overhead_us",
                   "ridge", "rounds", "unstable", "threads"],
          sizes={"mm": "x".join(str(n) for n in r.mm_sizes), "stream": f"{r.stream_bytes // 2**20} MiB",
                 "first touch": ", ".join(f"{n // 2**20} MiB" for n in r.first_touch_sizes) or "n/a",
                 "rounds": r.rounds},
          note="Each ceiling is the median over the rounds of the roofline check below (its probes timed in turn "
               "with the steps); `unstable` names those whose rounds spread more than 25 %. peak: the best "
               "torch.mm FLOP/s over the sizes; bandwidth: the best of copy and add into warm buffers "
               "(STREAM-style); first touch (CPU): allocating and writing a tensor of at least 32 MiB, which "
               "glibc maps fresh every time unless the process keeps freed memory (tutorial_lib does: then it "
               "runs at about the warm rate); the model charges its extra time over a warm fill as a term of its "
               "own; overhead: one tiny eager op. Ridge = peak / bandwidth, in FLOP per byte.")
    S.add("ceiling_runs", [dict(d) for d in c.details])
    S.add("roofline", res["rows"],
          columns=["model", "variant", "B", "T", "dtype", "rounds", "measured_ms", "roofline_ms", "roofline_error",
                   "roofline_error_min", "roofline_error_max", "flop_only_ms", "flop_only_error", "kernels",
                   "first_touch_ms", "overhead_ms", "error"],
          sizes={"steps": "fwd+bwd+AdamW", "checks": "; ".join(f"{p} B={b} T={t}" for p, b, t in r.checks),
                 "rounds": r.rounds},
          note="Every round times the ceilings' probes and the steps in turn, and predicts each step from that "
               "round's ceilings: error = predicted / measured - 1 per round, the median with its min–max. "
               "The roofline sums, over every kernel the eager step launches, max(FLOPs / peak, bytes / "
               "bandwidth), the first-touch term and the per-op overhead; FLOP-only is every matmul FLOP at "
               "the peak.")
    pp = roofline_lesson.profile_points(get_config(r.preset), r.batch, r.seq_len, probes, S.device,
                                        min_run_time=r.min_run_time, steps=S.sizes.step.profile_steps,
                                        rounds=r.rounds)
    S.add("roofline_points", pp["points"],
          columns=["scope", "phase", "intensity", "achieved_flops", "measured_ms", "predicted_ms", "first_touch_ms",
                   "bound"],
          sizes={"model": r.preset, "B": r.batch, "T": r.seq_len, "step_ms": pp["check"]["measured_ms"],
                 "time": pp["profile"].time_source + ", scaled to the measured step",
                 "ceilings": "measured in the same rounds as the step"})


def sec_memory_budget(S: Suite):
    """The memory budget (notebook 12): each activation-checkpointing policy's kept bytes (exact),
    time and peak; tokens/s against the micro-batch; and the planner's choice for each of the size
    profile's budgets, its peak and its step time measured beside the prediction (time in the same
    rounds as the ceilings' probes)."""
    s = S.sizes.memory_budget
    probes = {dt: roofline_lesson.lesson_probes(S.device, S.sizes.roofline, dt) for dt in s.dtypes}
    pol = memory_budget.policy_study(s, probes[s.dtypes[0]], S.device)
    sizes = {"model": s.preset, "B": s.batch, "T": s.seq_len, "dtype": s.dtypes[0], "step": "fwd+bwd+AdamW",
             "timing": f"{s.rounds} rounds, the ceilings' probes and the steps in turn"}
    S.add("memory_budget_policies", pol["rows"], sizes=sizes,
          columns=["policy", "saved_predicted_MiB", "saved_measured_MiB", "saved_exact", "recompute_GFLOP",
                   "measured_ms", "predicted_ms", "time_ratio", "time_ratio_min", "time_ratio_max", "predicted_ratio",
                   "peak_predicted_MiB", "peak_measured_MiB", "peak_error", "error"],
          note="saved: the bytes autograd keeps for backward, predicted by the cost model and counted by the "
               "saved-tensor hooks (exact: equal per component). recompute_GFLOP: the forward matmuls backward runs "
               "again. time_ratio: the step's time over the step without checkpointing, per round (median, min–max), "
               "beside the ratio predicted from each round's ceilings. peak: the allocator's (CPU: torch.profiler's "
               "memory events; CUDA: max_memory_allocated) above nothing: the model, AdamW's state and the batch "
               "included.")
    micro = memory_budget.micro_batch_study(s, probes[s.dtypes[0]], S.device)
    S.add("memory_budget_micro", [{"micro_batch": r["micro_batch"], "grad_accum": r["grad_accum"],
                                   "measured_ms": r.get("measured_ms"), "predicted_ms": r.get("roofline_ms"),
                                   "time_error": r.get("roofline_error"), "tokens_per_s": r.get("tokens_per_s"),
                                   "predicted_tokens_per_s": r.get("predicted_tokens_per_s"),
                                   "predicted_peak_MiB": r["predicted_peak_bytes"] / 2**20, "error": r.get("error")}
                                  for r in micro["rows"]],
          sizes={"model": s.preset, "sequences per step": s.micro_step_batch, "T": s.seq_len, "dtype": s.dtypes[0]},
          columns=["micro_batch", "grad_accum", "measured_ms", "predicted_ms", "time_error", "tokens_per_s",
                   "predicted_tokens_per_s", "predicted_peak_MiB", "error"],
          note="The same sequences per optimizer step in micro-batches of each size (gradient accumulation): a "
               "smaller micro-batch holds fewer activations, and runs smaller matmuls and more operators per token.")
    ceilings = {s.dtypes[0]: pol["ceilings"]}
    for dt in s.dtypes[1:]:
        ceilings[dt] = ceil.measure_ceilings(S.device, dt, S.sizes.roofline.mm_sizes, S.sizes.roofline.stream_bytes,
                                             S.sizes.roofline.first_touch_sizes, s.min_run_time, s.rounds,
                                             progress=False)
    bud = memory_budget.budget_study(s, ceilings, probes.__getitem__, S.device)
    mib = lambda v: None if v is None else v / 2**20  # noqa: E731
    S.add("memory_budget", [{"budget_MiB": r["budget_bytes"] / 2**20, "plan": r.get("plan"),
                             "predicted_peak_MiB": mib(r.get("predicted_peak_bytes")),
                             "measured_peak_MiB": mib(r.get("measured_peak_bytes")), "peak_error": r.get("peak_error"),
                             "fits": r.get("fits"), "predicted_ms": r.get("roofline_ms"),
                             "measured_ms": r.get("measured_ms"), "time_error": r.get("time_error"),
                             "time_error_range": (f"{r['time_error_min']:+.2f}–{r['time_error_max']:+.2f}"
                                                  if r.get("time_error_min") is not None else None),
                             "predicted_tokens_per_s": r.get("predicted_tokens_per_s"), "error": r.get("error")}
                            for r in bud["rows"]],
          sizes={"model": s.preset, "tokens per step": s.tokens_per_step, "T": s.seq_len,
                 "dtypes": ", ".join(s.dtypes), "plans": len(bud["planner"].plans),
                 "floor_MiB": round(bud["planner"].floor_bytes / 2**20, 1),
                 "timing": f"{s.rounds} rounds, the ceilings' probes and the plan's step in turn"},
          columns=["budget_MiB", "plan", "predicted_peak_MiB", "measured_peak_MiB", "peak_error", "fits",
                   "predicted_ms", "measured_ms", "time_error", "time_error_range", "predicted_tokens_per_s", "error"],
          note="For each budget the planner takes the plan (micro-batch and accumulation, activation checkpointing, "
               "the loss, the attention backend, the dtype) with the most predicted tokens/s whose predicted peak "
               "fits. "
               "Peak: predicted by measure.peak, measured by the allocator over one step. Time: predicted from the "
               "ceilings measured in the same rounds as the step (error = predicted / measured - 1, median of the "
               "rounds with its range). Goals: peak within 10 %, time within 25 %.")


# In priority order: the seed's own setting first (a time-boxed run, e.g. on a lent GPU, keeps the
# most important sections), then the curves and the lessons beyond it, quality (the longest) last.
SECTIONS = {
    "before_after": sec_before_after,
    "breakdown": sec_breakdown,
    "speed_ladder": sec_speed_ladder,  # the levers practitioners pull first, at the seed's setting on a GPU
    "memory": sec_memory,
    "roofline": sec_roofline,
    "gqa_train": sec_gqa_train,
    "flash_model": sec_flash_model,
    "mlp": sec_mlp,
    "swiglu": sec_swiglu,
    "lm_head": sec_lm_head,
    "memory_budget": sec_memory_budget,
    "triton_flash": sec_triton_flash,
    "flash_vs_T": sec_flash_vs_T,
    "gqa_decode": sec_gqa_decode,
    "window_curve": sec_window_curve,
    "optimizer": sec_optimizer,
    "own_paths": sec_own_paths,
    "quality": sec_quality,
}


def run_suite(name: str = "guide", profile: Optional[str] = None, device=None,
              only: Optional[List[str]] = None, progress: bool = True, out=None,
              budget_s: Optional[float] = None, priority: Optional[Sequence[str]] = None,
              predicted: Optional[Dict[str, Tuple[float, str]]] = None) -> dict:
    """Run the suite's sections in order; return the results document (``meta``, ``rows``,
    ``sections``).

    ``out``: write the document there after every section (atomically), so a run that is killed
    keeps every section it finished. ``budget_s``: once that many seconds have passed, the
    remaining sections are not started; each is recorded as not run (a section already running
    finishes). ``SECTIONS`` is ordered by priority: the seed's own setting first; ``priority``
    (e.g. ``plan.PRIORITY``) puts the sections it names first (``plan.priority_order``).
    ``predicted``: {section: (seconds, source)} (``plan.predict_seconds``); with a budget, a
    section predicted to take longer than the time left is skipped in advance and recorded as
    skipped, with the prediction, and the next one is tried.

    SIGINT (Ctrl-C; ``timeout -s INT`` at the device run's deadline) stops the suite: the section
    running is recorded as stopped (the rows it had added stay, marked incomplete by its
    ``interrupted``), the rest as not run, ``meta.stopped`` says why, and the document is written
    and returned (no exception): what was measured is kept.
    """
    if name not in SUITES:
        raise ValueError(f"suite={name!r} is not one of {list(SUITES)}")
    if budget_s is not None and not budget_s > 0:
        raise ValueError(f"budget_s={budget_s!r} must be > 0 seconds")
    dev = settings.resolve(device)[0]
    sizes = get_sizes(profile, device=dev)
    names = list(SECTIONS) if not only else list(only)
    for n in names:
        if n not in SECTIONS:
            raise ValueError(f"section={n!r} is not one of {list(SECTIONS)}")
    if priority is not None:
        names = priority_order(names, priority)
    predicted = dict(predicted or {})
    for n, p in predicted.items():
        if not (isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], (int, float)) and p[0] >= 0):
            raise ValueError(f"predicted[{n!r}]={p!r} must be (seconds >= 0, source)")
    if out is not None:
        check_writable(out)
    S = Suite(sizes, dev, progress)
    t0 = time.perf_counter()
    stopped: Optional[str] = None

    def document() -> dict:
        meta = stamp(dev, None, suite=name, profile=sizes.name, sizes=sizes.to_dict(),
                     seconds=round(time.perf_counter() - t0, 1), budget_s=budget_s, order=names,
                     sections_run=[n for n in names if n in S.sections and not S.sections[n].get("not_run")
                                   and not S.sections[n].get("interrupted")],
                     stopped=stopped)
        return {"schema_version": SCHEMA_VERSION, "meta": meta,
                "rows": [to_row(r) for r in S.rows], "sections": S.sections}

    def say(text: str):
        if progress:
            print(f"[suite] {text}", flush=True)

    def stop(i: int, running: Optional[str], started: float, n_rows: int):
        """SIGINT arrived while names[i] was current: record it and everything after it."""
        nonlocal stopped
        if running is not None:
            took, added = time.perf_counter() - started, len(S.rows) - n_rows
            S.sections.setdefault(running, {}).update(
                interrupted=True, seconds=round(took, 1),
                error=f"stopped by SIGINT (the run's deadline or Ctrl-C) {took:.0f} s into this section, "
                      "before it finished" + (f"; the {added} row(s) it had added are kept, incomplete"
                                              if added else ""))
            say(f"{running}: stopped by SIGINT after {took:.1f} s; writing what was measured")
        where = f"in section {running!r}" if running else "between sections"
        stopped = f"SIGINT after {time.perf_counter() - t0:.0f} s, {where}"
        for m in names[i:]:
            if m not in S.sections:
                S.sections[m] = {"not_run": True, "error": f"not run: the suite was stopped by SIGINT {where}"}

    for i, n in enumerate(names):
        running, started, n_rows = None, time.perf_counter(), len(S.rows)
        try:
            spent = time.perf_counter() - t0
            if budget_s is not None and spent >= budget_s:
                S.sections[n] = {"not_run": True,
                                 "error": f"not run: the suite's time budget ({budget_s:.0f} s) was spent"}
                say(f"{n}: not run (budget of {budget_s:.0f} s spent)")
                continue
            if budget_s is not None and n in predicted and predicted[n][0] > budget_s - spent:
                secs, source = predicted[n]
                S.sections[n] = {"not_run": True, "skipped": True, "predicted_s": round(secs, 1),
                                 "error": f"skipped in advance: predicted {secs:.0f} s ({source}), but only "
                                          f"{budget_s - spent:.0f} s of the suite's time budget "
                                          f"({budget_s:.0f} s) were left"}
                say(f"{n}: skipped (predicted {secs:.0f} s, {budget_s - spent:.0f} s left)")
            else:
                running = n
                S.run(n, SECTIONS[n])
                running = None
            if out is not None:
                save_document(out, document())
        except KeyboardInterrupt:
            stop(i, running, started, n_rows)
            break
    doc = document()
    if out is not None:
        save_document(out, doc)
    return doc
