"""The roofline lesson (09) as functions: the machine's ceilings, every component of a training
step placed under them, how the earlier lessons move a point, and predictions checked against
every measurement on record.

- ``lesson_ceilings`` / ``lesson_probes``: ``measure.ceilings`` at the size profile's sizes.
- ``profile_points``: time one training step in the same rounds as the ceilings' probes, profile
  it per component (``measure.profile``), scale the per-component times to the step's measured
  time, and put each (component, phase) on the roofline (``measure.roofline.roofline_points``:
  intensity from the cost model, achieved FLOP/s measured).
- ``roofline_figure``: the log-log picture (roofs, ridge point, the points, recorded GPU points).
- ``attention_moves`` / ``decode_points``: eager -> flash (bytes removed), a sliding window (FLOPs
  and bytes removed), GQA at decoding time (K/V bytes removed), as points.
- ``step_checks``: whole training steps predicted and measured in the same rounds as the ceilings
  (``measure.roofline.check_steps``); roofline and FLOP-only errors, median of the rounds with
  their range. ``add_predictions``: predictions beside notebook 07's measured rows.
- ``recorded_steps`` / ``training_histories`` / ``prediction_errors``: every step time on record
  (``results/*.json`` and the training histories in ``results/*/``) beside a prediction from
  ceilings recorded elsewhere in the same file (or a datasheet): a cross-check across sections of a
  run, not a same-round measurement -- the tables say so.
- ``roofline_time`` / ``check_roofline_time``: the exercise and its checker.
"""
from __future__ import annotations

import datetime as _dt
import math
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from matplotlib.figure import Figure

from tutorial_lib import attention, settings
from tutorial_lib.lessons.all_together import SUITE_VARIANTS
from tutorial_lib.lessons.common import CheckResult, call_checked
from tutorial_lib.measure import ceilings as ceil
from tutorial_lib.measure import records, roofline
from tutorial_lib.measure.ceilings import Ceilings
from tutorial_lib.measure.profile import GRAD_ACC, OTHER_BWD, OTHER_FWD, profile_step
from tutorial_lib.measure.roofline import StepCheck, error, median_range
from tutorial_lib.measure.timing import SWEEP_ERRORS, error_text, time_fn
from tutorial_lib.measure.traffic import count_call
from tutorial_lib.measure.validate import check_history
from tutorial_lib.model import GPTConfig, get_config
from tutorial_lib.sizes import Roofline, get_sizes

GROUP_COLORS = {"embedding": "#8c8c8c", "attention": "#d62728", "mlp": "#ff7f0e", "norm": "#2ca02c",
                "lm_head": "#1f77b4", "loss": "#9467bd", "other": "#bcbd22", "optimizer": "#e377c2"}
PHASE_MARKERS = {"forward": "o", "backward": "^", "optimizer": "s"}
GOAL = 0.25  # the goal: roofline predictions within +-25 % of the measured step on a CPU


def _sizes(device) -> Roofline:
    return get_sizes(device=settings.resolve(device)[0]).roofline


# ---- the ceilings ------------------------------------------------------------------------------
def lesson_probes(device=None, sizes: Optional[Roofline] = None, dtype=None) -> List[ceil.Probe]:
    """The ceilings' probes at the size profile's sizes (``sizes.Roofline``)."""
    s = sizes or _sizes(device)
    return ceil.probes(device, dtype, s.mm_sizes, s.stream_bytes, s.first_touch_sizes)


def lesson_ceilings(device=None, sizes: Optional[Roofline] = None, dtype=None, progress: bool = True
                    ) -> Ceilings:
    """The device's ceilings at the size profile's sizes, ``sizes.rounds`` rounds."""
    s = sizes or _sizes(device)
    return ceil.measure_ceilings(device, dtype, s.mm_sizes, s.stream_bytes, s.first_touch_sizes,
                                 s.min_run_time, s.rounds, progress)


UNITS = {"peak_flops": (1e9, "GFLOP/s", ",.1f"), "bandwidth": (1e9, "GB/s", ",.2f"),
         "fill_bandwidth": (1e9, "GB/s", ",.2f"), "first_touch_bandwidth": (1e9, "GB/s", ",.2f"),
         "overhead_s": (1e-6, "µs/op", ",.2f")}


def ceiling_rows(c: Ceilings) -> List[dict]:
    """The probes behind a ``Ceilings``, one printable row each: what it ran, its rate (median over
    the rounds, with min–max) and whether that ceiling is unstable."""
    by_probe: Dict[str, List[dict]] = {}
    for d in c.details:
        if "rate" in d:
            by_probe.setdefault(d["what"], []).append(d)
        elif "source" in d:
            by_probe.setdefault("datasheet", []).append(d)
    out = []
    for what, ds in by_probe.items():
        if what == "datasheet":
            out.append({"measurement": "datasheet", "rate": ds[0]["source"], "range": "", "unstable": ""})
            continue
        scale, unit, fmt = UNITS[ds[0]["ceiling"]]
        med, lo, hi = median_range([d["rate"] / scale for d in ds])
        out.append({"measurement": what, "ceiling": ds[0]["ceiling"], "rate": f"{format(med, fmt)} {unit}",
                    "range": f"{format(lo, fmt)}–{format(hi, fmt)}" if len(ds) > 1 else "",
                    "unstable": "unstable" if ds[0]["ceiling"] in c.unstable() else ""})
    return out


# ---- a training step on the roofline ----------------------------------------------------------
def profile_ms(rows: Sequence[dict], step_ms: Optional[float] = None) -> Dict[Tuple[str, str], float]:
    """A ``ProfileResult``'s rows -> ms per (scope, phase) of the traffic model: the profiler's
    "other" rows and grad accumulation become "other", AdamW "optimizer". With ``step_ms`` the
    times are rescaled to add up to it (profiling slows every operator; its shares are kept)."""
    out: Dict[Tuple[str, str], float] = {}
    for r in rows:
        s, phase = r["scope"], r["phase"]
        if phase == "optimizer":
            key = ("optimizer", "optimizer")
        elif s in (OTHER_FWD, OTHER_BWD, GRAD_ACC):
            key = ("other", phase)
        else:
            key = (s, phase)
        out[key] = out.get(key, 0.0) + r["ms"]
    total = sum(out.values())
    if step_ms and total:
        out = {k: v * step_ms / total for k, v in out.items()}
    return out


def profile_points(config: GPTConfig, batch_size: int, seq_len: int, probes: Sequence[ceil.Probe], device=None,
                   dtype=None, steps: Optional[int] = None, min_run_time: Optional[float] = None,
                   rounds: int = 3) -> dict:
    """Time one training step in the same rounds as the ceilings' ``probes`` (``roofline.check_steps``),
    profile it per component (``profile_step``), and place every (component, phase) on the roofline
    of those rounds' ceilings. Returns {"points", "check" (the step's row: measured and predicted ms,
    the per-round error), "ceilings", "profile" (ProfileResult), "prediction" (StepPrediction),
    "measured_ms" per (scope, phase)}."""
    dev, dt = settings.resolve(device, dtype)
    res = roofline.check_steps([StepCheck("profiled step", config, batch_size, seq_len)], probes, dev, dt,
                               rounds, min_run_time, progress=False)
    row, c = res["rows"][0], res["ceilings"]
    if row["error"]:
        raise RuntimeError(row["error"])
    prof = profile_step(config, batch_size, seq_len, mode="train", device=dev, dtype=dt, steps=steps, warmup=1)
    measured = profile_ms(prof.rows, row["measured_ms"])
    pred = roofline.predict_step(config, batch_size, seq_len, c, dtype=settings.dtype_name(dt), device_type=dev.type)
    return {"points": roofline.roofline_points(pred.rows, measured, c), "check": row, "ceilings": c,
            "profile": prof, "prediction": pred, "measured_ms": measured}


def _group(scope: str) -> str:
    return scope.split(".")[0]


def _roofs(ax, c: Ceilings, x_lo: float, x_hi: float, label_prefix: str = "", style: str = "-",
           color: str = "k"):
    xs = [x_lo, x_hi]
    ridge = c.ridge
    pts = sorted(set(xs + [ridge]))
    ax.plot(pts, [min(c.peak_flops, x * c.bandwidth) for x in pts], style, color=color, lw=1.5,
            label=f"{label_prefix}roof: {c.peak_flops / 1e9:,.0f} GFLOP/s, {c.bandwidth / 1e9:,.1f} GB/s")
    if c.first_touch_bandwidth and c.fresh_alloc_bytes:
        ax.plot(xs, [x * c.first_touch_bandwidth for x in xs], ":", color=color, lw=1,
                label=f"{label_prefix}first-touch roof: {c.first_touch_bandwidth / 1e9:,.2f} GB/s "
                      f"(outputs >= {c.fresh_alloc_bytes / 2**20:.0f} MiB)")
    ax.axvline(ridge, color=color, lw=0.6, ls="--", alpha=0.5)
    ax.text(ridge, c.peak_flops * 1.15, f" ridge {ridge:,.3g} FLOP/B", fontsize=8, color=color)


def roofline_figure(points: Sequence[dict], ceilings: Ceilings, title: str = "",
                    recorded: Sequence[Tuple[str, Sequence[dict], Ceilings]] = (),
                    extra: Sequence[dict] = (), label_min_share: float = 0.02,
                    ylabel: str = "achieved FLOP/s (measured)") -> Figure:
    """Arithmetic intensity (FLOP/byte, x) against achieved FLOP/s (y), log-log: the roofs of
    ``ceilings``, one point per (component, phase) (colour: component group, marker: phase; the
    components with at least ``label_min_share`` of the step are labelled), ``recorded`` point sets
    of other devices (hollow, with their own roofs) and ``extra`` points (e.g. the lesson moves:
    dicts with intensity, achieved_flops, label, and optionally an ``arrow_to`` index). Labelled
    points carry a number, and the key beside the axes names them: near the ridge the points crowd,
    and a number stays legible where a name would pile onto its neighbours."""
    fig = Figure(figsize=(10, 6.2), layout="constrained")
    ax = fig.subplots()
    key = []
    xs = [p["intensity"] for p in points] + [p["intensity"] for p in extra]
    for _, pts, _ in recorded:
        xs += [p["intensity"] for p in pts]
    x_lo = min(xs + [ceilings.ridge]) / 4 if xs else ceilings.ridge / 100
    x_hi = max(xs + [ceilings.ridge]) * 4 if xs else ceilings.ridge * 100
    _roofs(ax, ceilings, x_lo, x_hi, f"{ceilings.device_name.split(' (')[0]} ({ceilings.source}) ")
    total = sum(p["measured_ms"] for p in points) or 1.0
    for p in points:
        g = _group(p["scope"])
        ax.scatter(p["intensity"], p["achieved_flops"], s=30 + 400 * p["measured_ms"] / total,
                   color=GROUP_COLORS.get(g, "#7f7f7f"), marker=PHASE_MARKERS.get(p["phase"], "o"),
                   edgecolor="k", linewidth=0.4, alpha=0.85, zorder=3)
        if p["measured_ms"] / total >= label_min_share:
            key.append(f"{len(key) + 1}  {p['scope']} {p['phase'][:3]} ({p['measured_ms'] / total:.0%})")
            ax.annotate(str(len(key)), (p["intensity"], p["achieved_flops"]), fontsize=8, fontweight="bold",
                        xytext=(5, 4 if len(key) % 2 else -11), textcoords="offset points")
    for i, (label, pts, c) in enumerate(recorded):
        col = ["#1f3f8f", "#7f2f8f", "#2f7f5f"][i % 3]
        _roofs(ax, c, x_lo, x_hi, f"{label} ", style="--", color=col)
        for p in pts:
            ax.scatter(p["intensity"], p["achieved_flops"], s=40, facecolors="none", edgecolors=col,
                       marker=PHASE_MARKERS.get(p["phase"], "o"), zorder=3)
    for i, p in enumerate(extra):
        ax.scatter(p["intensity"], p["achieved_flops"], s=70, marker="*", color="k", zorder=4)
        ax.annotate(p["label"], (p["intensity"], p["achieved_flops"]), fontsize=8, xytext=(5, -10),
                    textcoords="offset points")
        j = p.get("arrow_to")
        if j is not None:
            q = extra[j]
            ax.annotate("", (q["intensity"], q["achieved_flops"]), (p["intensity"], p["achieved_flops"]),
                        arrowprops={"arrowstyle": "->", "color": "k", "lw": 0.8})
    if points:  # the key to the component points' colours and markers
        for g, col in GROUP_COLORS.items():
            ax.scatter([], [], color=col, label=g, s=25)
        for ph, m in PHASE_MARKERS.items():
            ax.scatter([], [], color="grey", marker=m, label=ph, s=25)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved; matmul FLOPs, or the elementwise estimate)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)
    if key:  # the numbered points, named beside the axes (below the legend)
        ax.text(1.01, 0.0, "labelled points\n" + "\n".join(key), transform=ax.transAxes, fontsize=8,
                va="bottom", ha="left", family="monospace")
    ax.set_title(title, fontsize=9)
    return fig


def figure_title(what: str, device_name: str, dtype: str, sizes: str) -> str:
    """Device, dtype, sizes and today's date: every figure of the lesson carries them."""
    day = _dt.date.today().isoformat()
    return f"{what} -- {device_name}, {dtype}, {sizes}, {day}"


# ---- how the earlier lessons move a point -------------------------------------------------------
def _core_flops(backend: str, B: int, H: int, T: int, D: int, window: Optional[int], device_type: str
                ) -> int:
    """Matmul FLOPs of one attention core forward + backward as the backend computes them."""
    b = attention.get(backend)
    pf = 2 * B * H * D * b.computed_pairs(T, window, 64, device_type)
    return 2 * pf + b.bwd_matmuls() * pf


def attention_moves(seq_len: int, window: int, batch_size: int = 1, n_head: int = 12, head_dim: int = 64,
                    device=None, dtype=None, min_run_time: Optional[float] = None) -> List[dict]:
    """The attention core alone, forward + backward, for eager (T x T materialised), sdpa (fused:
    the T x T never reaches memory) and local (a sliding window of ``window``: fewer pairs, so fewer
    FLOPs *and* bytes): FLOPs as the kernel computes them, bytes and kernels counted from the
    dispatched operators (``measure.traffic.count_call``), time measured. One row per backend."""
    dev, dt = settings.resolve(device, dtype)
    B, H, T, D = batch_size, n_head, seq_len, head_dim
    g = torch.Generator().manual_seed(0)
    out = []
    for backend, W in (("eager", None), ("sdpa", None), ("local", window)):
        row = {"backend": backend, "window": W, "seq_len": T, "batch_size": B, "n_head": H, "head_dim": D}
        try:
            q, k, v = (torch.randn(B, H, T, D, generator=g).to(dev, dt).requires_grad_() for _ in range(3))

            def core(q, k, v, backend=backend, W=W):
                return attention.attention_core(q, k, v, backend, W, training=True)

            traffic = count_call(core, q, k, v)

            def step():
                for t in (q, k, v):
                    t.grad = None
                core(q, k, v).backward(torch.ones(B, H, T, D, device=dev, dtype=dt))

            t = time_fn(step, dev, min_run_time=min_run_time, warmup=1)
            fl = _core_flops(backend, B, H, T, D, W, dev.type)
            nbytes = sum(x.bytes for x in traffic.values())
            row.update(flops=fl, bytes=nbytes, kernels=sum(x.kernels for x in traffic.values()),
                       ms=t.median_ms, intensity=fl / nbytes, achieved_flops=fl / (t.median_ms / 1e3),
                       error=None)
        except SWEEP_ERRORS as e:
            row["error"] = error_text(e)
        out.append(row)
    return out


def decode_points(config: GPTConfig, context: int, kv_heads: Sequence[int], batch_size: int = 1,
                  dtype: str = "bfloat16") -> List[dict]:
    """The attention core of one decoding step (one new token per sequence, all layers) against a
    KV cache of ``context`` tokens, per number of K/V heads: its FLOPs (q.K^T and P.V over the
    cache) and the bytes it must read (the cache, plus q and the output). GQA keeps the FLOPs and
    divides the cache's bytes by H / n_kv_head: the point moves right, by that factor."""
    e = settings.dtype_bytes(dtype)
    out = []
    for h in kv_heads:
        c = config.replace(n_kv_head=h)
        B, H, D, L = batch_size, c.n_head, c.head_dim, c.n_layer
        fl = L * 2 * (2 * B * H * D * context)
        nbytes = L * e * (2 * B * h * context * D + 2 * B * H * D)
        out.append({"n_kv_head": h, "context": context, "flops": fl, "bytes": nbytes, "intensity": fl / nbytes,
                    "label": "MHA" if h == c.n_head else ("MQA" if h == 1 else f"GQA-{h}")})
    return out


def predicted_point(flops: float, nbytes: float, ceilings: Ceilings, label: str) -> dict:
    """A point the model places at its roof: intensity, attainable FLOP/s, predicted ms."""
    x = flops / nbytes
    t = max(flops / ceilings.peak_flops, nbytes / ceilings.bandwidth)
    return {"label": label, "intensity": x, "achieved_flops": flops / t, "predicted_ms": t * 1e3}


# ---- whole steps: predicted, then measured ------------------------------------------------------
def check_row(config: GPTConfig, batch_size: int, seq_len: int, ceilings: Ceilings,
              measured_ms: Optional[float], dtype: str, source: str, optimizer: bool = True,
              grad_clip: bool = False, label: Optional[str] = None) -> dict:
    """One prediction beside one measurement: roofline and FLOP-only ms and their errors."""
    p = roofline.predict_step(config, batch_size, seq_len, ceilings, dtype=dtype, optimizer=optimizer,
                       grad_clip=grad_clip, device_type=str(ceilings.device).split(":")[0])
    row = {"source": source, "variant": label or config.describe().split(": ", 1)[-1],
           "model": config.name, "B": batch_size, "T": seq_len, "dtype": dtype,
           "device_name": ceilings.device_name, "ceilings": ceilings.source,
           "measured_ms": measured_ms, "roofline_ms": p.total_ms, "roofline_error": error(p.total_ms, measured_ms),
           "flop_only_ms": p.flop_only_ms, "flop_only_error": error(p.flop_only_ms, measured_ms),
           "kernels": p.kernels, "overhead_ms": p.overhead_ms()}
    if ceilings.overhead_s == 0 and measured_ms:
        o = roofline.inferred_overhead(p, measured_ms)
        row["inferred_overhead_us"] = None if o is None else o * 1e6
    return row


def step_checks(checks: Sequence[Tuple[str, int, int]], probes: Sequence[ceil.Probe], device=None, dtype=None,
                min_run_time: Optional[float] = None, rounds: int = 3, progress: bool = True,
                backends: Sequence[str] = ("sdpa",)) -> dict:
    """Each (preset, B, T) with each backend: a training step (fwd + bwd + AdamW) predicted and
    measured in the same rounds as the ceilings' ``probes`` (``measure.roofline.check_steps``).
    Returns {"rows", "ceilings"}; a step that fails is an error row."""
    todo = [StepCheck(f"{p} B={B} T={T} {be}", get_config(p, attn_backend=be), B, T)
            for p, B, T in checks for be in backends]
    return roofline.check_steps(todo, probes, device, dtype, rounds, min_run_time, progress)


def add_predictions(rows: List[dict], variants: Dict[str, Tuple[GPTConfig, bool]], batch_size: int,
                    seq_len: int, ceilings: Ceilings, dtype: Optional[str] = None) -> List[dict]:
    """Rows of ``measure`` with the roofline model's prediction beside the measurement:
    ``predicted_ms`` and ``predicted_speedup`` (over the first variant), ``flop_only_speedup`` (the
    matmul-FLOP ratio), ``prediction_error`` (predicted / measured - 1). A compiled variant gets none
    (the model describes eager kernels; compiling fuses them)."""
    dt = dtype or ceilings.dtype
    dev = str(ceilings.device).split(":")[0]
    preds = {label: (None if comp else roofline.predict_step(cfg, batch_size, seq_len, ceilings, dtype=dt,
                                                     device_type=dev))
             for label, (cfg, comp) in variants.items()}
    base = preds[next(iter(variants))]
    out = []
    for r in rows:
        p = preds.get(r["variant"])
        r = dict(r, predicted_ms=None, predicted_speedup=None, flop_only_speedup=None, prediction_error=None)
        if p is not None and base is not None:
            r.update(predicted_ms=p.total_ms, predicted_speedup=base.total_ms / p.total_ms,
                     flop_only_speedup=base.flop_only_ms / p.flop_only_ms)
            if r.get("median_ms"):
                r["prediction_error"] = p.total_ms / r["median_ms"] - 1
        out.append(r)
    return out


# ---- every step time on record ------------------------------------------------------------------
# Old results files (before rows carried ``config_fields``): the GPTConfig changes behind each
# section's variant labels, on the suite's model.
LEGACY_VARIANTS = {
    "before_after": dict(SUITE_VARIANTS),
    "flash_model": {"eager": {"attn_backend": "eager"}, "sdpa": {"attn_backend": "sdpa"}},
    "mlp": {"GELU 4x": {}, "GELU 3x": {"mlp_ratio": 3.0}},
    "swiglu": {"GELU 4x": {}, "SwiGLU 8/3x": {"mlp": "swiglu"}, "SwiGLU 3x": {"mlp": "swiglu", "mlp_ratio": 3.0}},
}


def recorded_steps(doc: dict) -> List[dict]:
    """Every measured training step (fwd + bwd + AdamW) in a results document: its config, B, T,
    dtype and ms. Rows that carry ``config_fields`` say it themselves; older rows of the suite's
    step sections are read from their labels and the section's sizes."""
    meta = doc.get("meta", {})
    sections = doc.get("sections", {})
    dtype = meta.get("dtype", "float32")
    out = []
    for r in doc.get("rows", []):
        kind = r.get("kind")
        if r.get("error") or r.get("mode", "train") != "train":
            continue
        ms = r.get("median_ms") or r.get("ms_per_step")
        if not ms:
            continue
        sizes = (sections.get(kind) or {}).get("sizes") or {}
        B, T = r.get("batch_size") or sizes.get("B"), r.get("seq_len") or sizes.get("T")
        cfg = None
        try:
            if r.get("config_fields"):
                cfg = GPTConfig(**r["config_fields"])
            elif kind in LEGACY_VARIANTS or kind == "gqa_train":
                base = get_config(str(sizes.get("model", "")).split(" ")[0])
                if kind == "gqa_train" and r.get("n_kv_head"):
                    cfg = base.replace(n_kv_head=r["n_kv_head"])
                elif r.get("variant") in LEGACY_VARIANTS.get(kind, {}):
                    cfg = base.replace(**LEGACY_VARIANTS[kind][r["variant"]])
        except (ValueError, TypeError):
            cfg = None
        if cfg is None or not B or not T:
            continue
        out.append({"kind": kind, "variant": r.get("variant") or r.get("label") or cfg.name, "config": cfg,
                    "B": int(B), "T": int(T), "dtype": r.get("dtype") or dtype, "ms": float(ms)})
    return out


def training_histories(results_dir: Optional[Path] = None) -> List[dict]:
    """The training runs on record (``results/<folder>/*.json`` written by ``python -m tutorial_lib
    train``): config, B, T, dtype, device, median step and optimizer ms, optimizer name."""
    d = Path(results_dir) if results_dir is not None else records.results_dir()
    out = []
    for f in sorted(d.glob("*/*.json")) if d.is_dir() else []:
        try:
            h = check_history(records.read_json(f), f)  # a broken file is skipped
            sm = h["summary"]
            cfg = GPTConfig(**h["model"])
        except (ValueError, KeyError, TypeError, OSError):
            continue
        out.append({"path": f"{f.parent.name}/{f.name}", "config": cfg, "B": sm["batch_size"],
                    "T": sm["seq_len"], "dtype": sm["dtype"], "device": sm.get("device", ""),
                    "device_name": sm.get("device_name") or h.get("device_name") or sm.get("device"),
                    "optimizer": h.get("optimizer", sm.get("optimizer")), "step_ms": sm["median_step_ms"],
                    "optimizer_ms": sm.get("median_optimizer_ms"),
                    "grad_clip": bool((h.get("config") or {}).get("grad_clip"))})
    return out


def prediction_errors(docs: Sequence[dict], runs: Sequence[dict], live: Optional[Ceilings] = None
                      ) -> List[dict]:
    """The roofline's and the FLOP-only prediction beside every step time on record: each
    results file's training steps (fwd + bwd + AdamW) and each training history (fwd + bwd +
    gradient clipping: the step minus its optimizer time, recorded separately), predicted from
    ceilings of the same device (measured, else the datasheet's; rows without say so)."""
    out = []
    for doc in docs:
        meta = doc.get("meta", {})
        name, dev = meta.get("device_name", "?"), meta.get("device", "cpu")
        src = Path(doc.get("_path", "results.json")).name
        for s in recorded_steps(doc):
            c = ceil.ceilings_for(name, s["dtype"], docs, live, dev)
            label = f"{s['variant']}"
            if c is None:
                out.append({"source": f"{src}: {s['kind']}", "variant": label, "model": s["config"].name,
                            "B": s["B"], "T": s["T"], "dtype": s["dtype"], "device_name": name,
                            "measured_ms": s["ms"], "ceilings": "none on record for this device"})
                continue
            out.append(check_row(s["config"], s["B"], s["T"], c, s["ms"], s["dtype"], f"{src}: {s['kind']}",
                                 label=label))
    for h in runs:
        c = ceil.ceilings_for(h["device_name"], h["dtype"], docs, live, h["device"])
        measured = h["step_ms"] - (h["optimizer_ms"] or 0.0)
        label = f"{h['config'].describe().split(': ', 1)[-1]}, {h['optimizer']}"
        if c is None:
            out.append({"source": h["path"], "variant": label, "model": h["config"].name, "B": h["B"], "T": h["T"],
                        "dtype": h["dtype"], "device_name": h["device_name"], "measured_ms": measured,
                        "ceilings": "none on record for this device"})
            continue
        row = check_row(h["config"], h["B"], h["T"], c, measured, h["dtype"], h["path"], optimizer=False,
                        grad_clip=h["grad_clip"], label=label + " (fwd+bwd+clip)")
        out.append(row)
        if h["optimizer"] == "adamw" and h.get("optimizer_ms"):
            p = roofline.predict_step(h["config"], h["B"], h["T"], c, dtype=h["dtype"], device_type="cuda")
            opt = p.phase_ms("optimizer")
            out.append({"source": h["path"], "variant": label + " (optimizer step)", "model": h["config"].name,
                        "B": h["B"], "T": h["T"], "dtype": h["dtype"], "device_name": c.device_name,
                        "ceilings": c.source, "measured_ms": h["optimizer_ms"], "roofline_ms": opt,
                        "roofline_error": error(opt, h["optimizer_ms"]), "part": "optimizer",
                        "flop_only_ms": None, "flop_only_error": None})  # AdamW has no matmul FLOPs
    return out


def error_summary(rows: Sequence[dict]) -> List[dict]:
    """Per device and ceilings source: how many steps, the median |error| of the roofline and of
    the FLOP-only prediction, and how many roofline errors are within the +-25 % goal (training
    steps only: optimizer-only rows, which FLOPs cannot predict at all, are left out)."""
    groups: Dict[tuple, List[dict]] = {}
    for r in rows:
        if r.get("roofline_error") is None or r.get("flop_only_error") is None or r.get("part"):
            continue
        groups.setdefault((r["device_name"], r["ceilings"]), []).append(r)
    out = []
    for (name, src), rs in groups.items():
        out.append({"device_name": name, "ceilings": src, "steps": len(rs),
                    "roofline_median_abs_error": statistics.median(abs(r["roofline_error"]) for r in rs),
                    "flop_only_median_abs_error": statistics.median(abs(r["flop_only_error"]) for r in rs),
                    "roofline_within_25pct": sum(abs(r["roofline_error"]) <= GOAL for r in rs)})
    return out


def format_error(x: Optional[float]) -> str:
    return "—" if x is None else f"{x:+.0%}"


# ---- exercise ----------------------------------------------------------------------------------
def roofline_time(flops: float, nbytes: float, peak_flops: float, bandwidth: float) -> float:
    """Seconds a kernel needs at least: the longer of its compute time and its memory time."""
    return max(flops / peak_flops, nbytes / bandwidth)


def check_roofline_time(fn) -> CheckResult:
    """Check ``fn(flops, nbytes, peak_flops, bandwidth)`` -> seconds against ``roofline_time`` on a
    compute-bound, a memory-bound and a ridge-point case; names the usual slips."""
    name = "roofline_time"
    cases = [(2e12, 1e9, 100e12, 2e12), (1e9, 4e9, 100e12, 2e12), (5e9, 1e9, 10e12, 2e12),
             (3e11, 6e8, 150e9, 20e9)]
    for fl, nb, peak, bw in cases:
        got, err = call_checked(name, fn, fl, nb, peak, bw)
        if err is not None:
            return err
        want = roofline_time(fl, nb, peak, bw)
        if not isinstance(got, (int, float)) or not math.isfinite(got):
            return CheckResult(name, False, f"expected a number of seconds, got {got!r}")
        if math.isclose(got, want, rel_tol=1e-9):
            continue
        if math.isclose(got, fl / peak + nb / bw, rel_tol=1e-9):
            return CheckResult(name, False, "you added the compute and the memory time; a kernel overlaps "
                                            "them -- the roofline takes the larger")
        if math.isclose(got, min(fl / peak, nb / bw), rel_tol=1e-9):
            return CheckResult(name, False, "that is the shorter of the two; the kernel cannot finish before "
                                            "both its FLOPs and its bytes are through: take the larger")
        if math.isclose(got, want * 1e3, rel_tol=1e-9):
            return CheckResult(name, False, "that is milliseconds; return seconds")
        return CheckResult(name, False, f"({fl:.3g} FLOPs, {nb:.3g} bytes, peak {peak:.3g} FLOP/s, "
                                        f"{bw:.3g} B/s): got {got!r}, expected {want:.4g} s")
    return CheckResult(name, True, f"all {len(cases)} cases match max(FLOPs / peak, bytes / bandwidth)",
                       len(cases))
