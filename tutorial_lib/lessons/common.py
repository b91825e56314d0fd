"""What every lesson shares: exercise checks, interleaved A/B timing, quality runs with seeds,
loss curves, log-log fits, tables and the notebooks' first-cell environment.

- ``CheckResult`` / ``call_checked``: an exercise checker runs a learner's function against the
  library's reference on several cases and says *what* is wrong; it never raises on a wrong
  answer, so a notebook cell that checks an unfinished exercise still runs to the end.
- ``measure_variants``: training steps of several configs, timed in interleaved rounds.
- ``quality_runs`` / ``quality_table`` / ``loss_curves``: the same short training run for several
  variants and seeds, their mean and spread, and a verdict that says when runs are too short to
  tell variants apart.
- ``fit_loglog_slope`` / ``loglog_scaling``: how a cost grows with T.
- ``show_source``, ``env_summary``, ``format_rows``: notebook helpers (no IPython needed).

Each lesson's own measurements, figures and checkers live in its module (``lessons.gqa`` ...).
"""
from __future__ import annotations

import html
import inspect
import os
import platform
import statistics
import textwrap
from dataclasses import dataclass
from typing import (
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np
import torch
from matplotlib.figure import Figure

from tutorial_lib import claims, settings
from tutorial_lib.files import atomic_path
from tutorial_lib.measure import records
from tutorial_lib.measure.ceilings import Ceilings
from tutorial_lib.measure.memory import memory_breakdown
from tutorial_lib.measure.roofline import speedup_ceiling
from tutorial_lib.measure.timing import (
    NOISY,
    SWEEP_ERRORS,
    error_text,
    paired_speedup,
    prepare_step,
    progress_bar,
    spread_of,
    time_rounds,
)
from tutorial_lib.model import GPTConfig
from tutorial_lib.sizes import Quality
from tutorial_lib.speedups import Speedup
from tutorial_lib.train import TrainConfig, TrainHistory, train

# ---- figures that read at the notebook's width --------------------------------------------------
LEGEND = {"fontsize": 8, "frameon": False}  # every legend: 8 pt, no frame, and off the data
X_AXIS_PT = 36  # an x axis's height under the axes: ticks, tick labels (log exponents too), its label


def legend_below(ax, ncol: int = 2, **kw):
    """``ax``'s legend under its x axis (ticks and label), centred: off the data whatever the data.
    The gap is in points (``X_AXIS_PT``), as the axis is, so it clears the axis at any figure size."""
    opts = {**LEGEND, **kw}
    return ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol,
                     borderaxespad=X_AXIS_PT / opts["fontsize"], **opts)


def legend_beside(ax, **kw):
    """``ax``'s legend to the right of its axes, top-aligned: off the data whatever the data."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **{**LEGEND, **kw})


@dataclass
class CheckResult:
    """The verdict of a checker: ``passed`` and a message that says what to fix."""
    exercise: str
    passed: bool
    message: str
    cases: int = 0  # cases that were run

    def __str__(self) -> str:
        mark = "PASSED" if self.passed else "NOT YET"
        return f"[{mark}] {self.exercise}: {self.message}"

    __repr__ = __str__

    def __bool__(self) -> bool:
        return self.passed

    def raise_if_failed(self) -> "CheckResult":
        if not self.passed:
            raise AssertionError(str(self))
        return self


def call_checked(exercise: str, fn: Callable, *args):
    """fn(*args) -> (value, None) or (None, CheckResult describing the exception)."""
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, CheckResult(exercise, False, "not implemented yet (the function raised "
                                 "NotImplementedError) -- replace the `raise` with your code.")
    except Exception as e:  # a learner's bug: report it, don't crash the notebook
        return None, CheckResult(exercise, False, f"your function raised {type(e).__name__}: {e}")




# ---- A vs B: training steps timed in interleaved rounds -----------------------------------------
def noise_note(rows: Sequence[dict], key: str = "variant") -> str:
    """A line naming the rows whose rounds disagreed beyond ``NOISY`` even after re-measuring
    ("" when none did): their numbers are not to be trusted -- re-run on a quiet machine."""
    noisy = [f"{r[key]} ({r['spread']:.0%})" for r in rows if r.get("noisy")]
    return (f"noisy: the rounds of {', '.join(noisy)} spread more than {NOISY:.0%} even after re-measuring, "
            "so their times are uncertain by that much; a speedup (per-round ratios) holds only as far as its "
            "range. Re-run on a quieter machine to narrow them") if noisy else ""


def row_speedup(row: dict, base: GPTConfig, variant: GPTConfig, ceilings: Optional[Ceilings] = None) -> Speedup:
    """A ``measure_variants`` row's speedup over ``base`` as a ``speedups.Speedup``: the median of its
    per-round ratios, their range, its rounds, and the analytic ceiling of the change at the row's
    batch, length, dtype and device (``measure.roofline.speedup_ceiling``, on ``ceilings`` where
    given). Print it with ``.text()``: the one form every printed speedup takes."""
    ceiling = speedup_ceiling(base, variant, row["batch_size"], row["seq_len"], row.get("dtype", "float32"),
                              str(row.get("device", "cpu")).split(":")[0], ceilings)
    return Speedup.from_row(row, ceiling=ceiling)


def attention_runner(fn: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     mode: str = "fwdbwd") -> Callable[[], None]:
    """A no-argument call of attention ``fn(q, k, v)`` to time or profile: ``mode="fwd"`` runs the
    forward under no_grad; ``"fwdbwd"`` also back-propagates a ones gradient, clearing the inputs'
    gradients first so that repeated calls do the same work."""
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


def measure_variants(configs: Mapping[str, GPTConfig], batch_size: int, seq_len: int, rounds: int = 3,
                     min_run_time: Optional[float] = None, device=None, dtype=None,
                     memory: bool = True, progress: bool = False, compiled: Sequence[str] = (),
                     max_rounds: Optional[int] = None) -> List[dict]:
    """Training step (fwd + bwd + AdamW) per variant, timed in ``rounds`` interleaved rounds.

    Outliers are caught: while a variant's rounds spread more than ``NOISY`` (max - min over the
    median), more rounds are timed, up to ``max_rounds`` (default twice ``rounds``); a row still
    that spread carries ``noisy=True`` (``noise_note`` says so in words).

    ``compiled``: labels whose model runs under ``torch.compile``; the compilation happens in the
    untimed first call, so a compiled variant is timed in the same rounds as the eager ones.

    ``speedup`` is the median over rounds of (base time / variant time) within the same round, so
    load that comes and goes slows both sides of each ratio alike; ``speedup_min``/``speedup_max``
    are the spread of those per-round ratios. ``memory`` adds the exact breakdown of one step
    (``measure.memory.memory_breakdown``). Failures (OOM, ...) become rows with ``error`` set.
    """
    dev = settings.resolve(device)[0]
    steps, rows = {}, {}
    for label, cfg in configs.items():
        try:
            model, step, _, dt = prepare_step(cfg, batch_size, seq_len, "train", dev, dtype,
                                              compile=label in compiled)
            steps[label] = step
            rows[label] = {"variant": label, "preset": cfg.name, "params": model.num_params(),
                           "batch_size": batch_size, "seq_len": seq_len, "device": str(dev),
                           "device_name": settings.device_name(dev), "dtype": settings.dtype_name(dt),
                           "compile": label in compiled, "times_ms": [], "error": None}
        except SWEEP_ERRORS as e:
            rows[label] = {"variant": label, "error": error_text(e)}
    labels = list(steps)
    for label in labels:  # one untimed call each first: allocations, thread pools, caches
        try:
            steps[label]()
        except SWEEP_ERRORS as e:
            rows[label]["error"] = error_text(e)
    bar = progress_bar(rounds * len(labels), "timing", progress)
    timed, failed = time_rounds({label: steps[label] for label in labels if not rows[label]["error"]}, dev,
                                rounds, min_run_time, max_rounds, bar)
    if bar is not None:
        bar.close()
    for label, ts in timed.items():
        rows[label]["times_ms"] = ts
        if label in failed:
            rows[label]["error"] = failed[label]
    steps.clear()
    base = labels[0] if labels else None
    for label, r in rows.items():
        if r["error"]:
            continue
        r["median_ms"] = statistics.median(r["times_ms"])
        r["tokens_per_s"] = batch_size * seq_len / (r["median_ms"] / 1e3)
        r["spread"] = spread_of(r["times_ms"])
        r["noisy"] = r["spread"] > NOISY
        if base and not rows[base]["error"]:  # the spread over rounds, beside the median
            r["speedup"], r["speedup_min"], r["speedup_max"] = paired_speedup(rows[base]["times_ms"], r["times_ms"])
        if memory:
            try:
                mb = memory_breakdown(configs[label], batch_size, seq_len, device=dev, dtype=dtype)
                r["memory_bytes"] = mb.total_bytes
                r["memory_by_kind"] = mb.by_kind()
                r["peak_bytes"] = mb.peak_bytes
            except SWEEP_ERRORS as e:
                r["memory_error"] = error_text(e)
    return [rows[k] for k in configs]


# ---- quality: the same short run for several variants and seeds ---------------------------------
Variant = Union[GPTConfig, Tuple[GPTConfig, str]]  # a config, or (config, optimizer name)


def quality_runs(variants: Mapping[str, Variant], sizes: Quality, seeds: Optional[Sequence[int]] = None,
                 device=None, progress: bool = False, **train_changes) -> Dict[str, List[object]]:
    """``train.train`` for every variant and seed: same seeds, batches and validation batches.

    ``variants`` maps a label to a GPTConfig or to (GPTConfig, optimizer). Returns {label: [one
    TrainHistory per seed, or the error text of a run that failed (e.g. an optimizer this torch
    lacks)]}. ``train_changes`` override TrainConfig fields.
    """
    seeds = tuple(sizes.seeds if seeds is None else seeds)
    base = TrainConfig(**{**sizes.train_kwargs(), "progress": False,
                          "device": None if device is None else str(device), **train_changes})
    out: Dict[str, List[object]] = {}
    bar = progress_bar(len(variants) * len(seeds), "training", progress)
    for label, v in variants.items():
        cfg, opt = v if isinstance(v, tuple) else (v, base.optimizer)
        cfg = cfg.replace(block_size=max(cfg.block_size, sizes.seq_len))
        runs = []
        for seed in seeds:
            try:
                runs.append(train(cfg, base.replace(optimizer=opt, seed=seed)))
            except (ValueError, *SWEEP_ERRORS) as e:
                runs.append(error_text(e))
            if bar is not None:
                bar.update(1)
        out[label] = runs
    if bar is not None:
        bar.close()
    return out


TOO_SHORT = "too short to tell"


# the guide suite's quality rows that stand for the seed's "before" and "after" (``guide.suite.quality_variants``)
QUALITY_BASELINE, QUALITY_AFTER = "baseline (MHA, GELU 4x)", "GQA-4 + 3x MLP (the seed's 'after')"


@dataclass
class RecordedQuality:
    """The guide suite's recorded quality runs of one results file: {variant: row}, where they were
    recorded (in words), and their setting (for ``claims.compare``)."""
    rows: Dict[str, dict]
    caption: str
    setting: Optional[claims.Setting]


def recorded_quality(device: Optional[str] = None, results_dir=None) -> RecordedQuality:
    """The quality section (``results/*.json``) of the first results file recorded on this kind of
    device (``device``: "cpu" / "cuda"; None: any): the rows as {variant label: row}, a caption
    (device, date, sizes) and the setting. Empty rows when none is on record."""
    for doc in records.load_all(results_dir):
        if device is not None and records.device_kind(doc["meta"].get("device", "")) != device:
            continue
        rows = {r["variant"]: r for r in doc["rows"] if r.get("kind") == "quality" and not r.get("error")}
        if rows:
            sizes = doc.get("sections", {}).get("quality", {}).get("sizes") or {}
            meta = doc["meta"]
            caption = (f"recorded on {meta.get('device_name', '?')} ({str(meta.get('date', '?'))[:10]}, "
                       + ", ".join(f"{k}={v}" for k, v in sizes.items()) + ")")
            setting = claims.Setting(model=sizes.get("model"), batch=sizes.get("B"), seq_len=sizes.get("T"),
                                     steps=sizes.get("steps"), device=records.device_kind(meta.get("device", "")))
            return RecordedQuality(rows, caption, setting)
    return RecordedQuality({}, "none on record", None)



def _finished(h) -> bool:
    """A run that trained to the end: a history that did not diverge (not an error text)."""
    return isinstance(h, TrainHistory) and not h.diverged


def quality_table(runs: Mapping[str, List[object]], baseline: Optional[str] = None) -> List[dict]:
    """One row per variant: final validation loss, mean ± sd over seeds, and its difference to
    ``baseline`` (default: the first variant) paired by seed (the same seed sees the same batches).

    ``verdict``: "lower" / "higher" when the mean paired difference is at least two of its
    standard deviations away from 0, else "too short to tell" (and always with one seed: one
    run says nothing about its own noise). A run that failed or diverged is left out of the
    means and named in ``error``.
    """
    baseline = baseline or next(iter(runs))
    base = {i: h for i, h in enumerate(runs[baseline]) if _finished(h)}
    rows = []
    for label, hs in runs.items():
        ok = [(i, h) for i, h in enumerate(hs) if _finished(h)]
        losses = [h.final_val_loss for _, h in ok]
        failed = [h if isinstance(h, str) else f"seed {h.config.get('seed')} {h.divergence()}"
                  for h in hs if not _finished(h)]
        row = {"variant": label, "seeds": len(ok), "val_loss": statistics.mean(losses) if losses else None,
               "val_loss_sd": statistics.stdev(losses) if len(losses) > 1 else None,
               "vs_baseline": None, "vs_baseline_sd": None, "verdict": None,
               "error": "; ".join(failed) or None}
        if losses:
            row["ms_per_step"] = statistics.median(1e3 * h.median_step_s for _, h in ok)
            row["steps"] = ok[0][1].val_steps[-1]
        diffs = [h.final_val_loss - base[i].final_val_loss for i, h in ok if i in base]
        if label != baseline and diffs:
            mean = statistics.mean(diffs)
            sd = statistics.stdev(diffs) if len(diffs) > 1 else None
            row.update(vs_baseline=mean, vs_baseline_sd=sd)
            row["verdict"] = (TOO_SHORT if sd is None or abs(mean) < 2 * sd
                              else ("lower" if mean < 0 else "higher"))
        rows.append(row)
    return rows


def format_quality(rows: Sequence[dict], baseline_label: str = "baseline") -> str:
    """``quality_table`` rows as a plain-text table: loss as mean ± sd over seeds, the paired
    difference to the baseline with its sd, and the verdict."""
    def pm(mean, sd, sign=""):
        if mean is None:
            return None
        return f"{mean:{sign}.3f}" + (f" ± {sd:.3f}" if sd is not None else "")

    return format_rows([{"variant": r["variant"], "seeds": r["seeds"],
                         "val loss": pm(r["val_loss"], r["val_loss_sd"]),
                         "vs baseline": pm(r["vs_baseline"], r["vs_baseline_sd"], "+"),
                         "verdict": r["verdict"] or baseline_label if not r.get("error") else r["error"],
                         "ms/step": r.get("ms_per_step")} for r in rows],
                       formats={"ms/step": "{:,.1f}"})


def loss_curves(runs: Mapping[str, Union[TrainHistory, Sequence[object]]], title: str = "") -> Figure:
    """Validation loss vs optimizer steps (left) and vs training seconds (right), one line per
    variant: the mean over its seeds, with the min-max band when there are several."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    lows, highs = [], []
    for label, hs in runs.items():
        hs = [h for h in ([hs] if isinstance(hs, TrainHistory) else hs) if isinstance(h, TrainHistory)]
        if not hs:
            continue
        n = min(len(h.val_loss) for h in hs)
        loss = np.array([h.val_loss[:n] for h in hs])
        steps = hs[0].val_steps[:n]
        secs = np.mean([h.val_wall_s[:n] for h in hs], axis=0)
        lab = label + (f" ({len(hs)} seeds)" if len(hs) > 1 else "")
        for ax, x in ((ax1, steps), (ax2, secs)):
            line, = ax.plot(x, loss.mean(0), "o-", ms=3, label=lab)
            if len(hs) > 1:
                ax.fill_between(x, loss.min(0), loss.max(0), color=line.get_color(), alpha=0.2)
        lows.append(loss.min())
        highs.append(loss[:, 1].max() if n > 1 else loss[:, 0].max())
    ax1.set_xlabel("optimizer steps (equal tokens)")
    ax2.set_xlabel("training seconds (evaluation excluded)")
    ax1.set_ylabel("validation loss (nats/token)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    legend_below(ax1, ncol=2)
    if lows:
        lo, hi = min(lows), max(highs)
        ax1.set_ylim(lo - 0.1 * (hi - lo + 1e-6), hi + 0.05 * (hi - lo + 1e-6))
    ax1.set_title("at equal steps", fontsize=9)
    ax2.set_title("at equal wall time", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# ---- growth with T --------------------------------------------------------------------------------
def fit_loglog_slope(x: Sequence[float], y: Sequence[float], last: Optional[int] = None
                     ) -> Tuple[float, float]:
    """Least-squares slope and intercept of log(y) vs log(x): y ≈ e^b · x^slope.

    ``last``: fit only the last n points (the large-T regime). Points with a missing, zero or
    negative y (failed measurements) are skipped. Needs two usable points.
    """
    pts = [(float(a), float(b)) for a, b in zip(x, y)
           if a is not None and b is not None and np.isfinite(b) and a > 0 and b > 0]
    if last is not None:
        pts = pts[-last:]
    if len(pts) < 2:
        raise ValueError(f"fit_loglog_slope needs >= 2 positive points, got {len(pts)}")
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    slope, intercept = np.polyfit(lx, ly, 1)
    return float(slope), float(intercept)


def slopes_by(rows: Sequence, key: str, value: str, last: Optional[int] = None) -> Dict[str, float]:
    """Per group of ``rows`` (their attribute ``key``: a backend, an implementation), the fitted
    log-log exponent of attribute ``value`` in ``seq_len`` over the group's successful rows
    (``fit_loglog_slope``; ``last``: the largest-T points only): ~2 quadratic, ~1 linear; NaN with
    fewer than two usable points."""
    out: Dict[str, float] = {}
    for group in dict.fromkeys(getattr(r, key) for r in rows):
        pts = [(r.seq_len, getattr(r, value)) for r in rows if getattr(r, key) == group and r.ok]
        try:
            out[group] = fit_loglog_slope([p[0] for p in pts], [p[1] for p in pts], last=last)[0]
        except ValueError:
            out[group] = float("nan")
    return out


def loglog_scaling(series: Mapping[str, Tuple[Sequence[float], Sequence[float]]],
                   xlabel: str = "sequence length T", ylabel: str = "time (ms)",
                   title: str = "", fit_last: Optional[int] = None,
                   reference_slopes: Sequence[float] = (1.0, 2.0)) -> Figure:
    """Log-log curves {label: (x, y)} with each fitted slope in the legend, plus dotted slope
    guides (slope 1 = linear, 2 = quadratic) through the first curve's first point."""
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    first = None
    for label, (x, y) in series.items():
        pts = [(a, b) for a, b in zip(x, y) if b is not None and np.isfinite(b) and b > 0]
        if not pts:
            continue
        xs, ys = zip(*pts)
        try:
            slope, _ = fit_loglog_slope(xs, ys, last=fit_last)
            lab = f"{label} (slope {slope:.2f})"
        except ValueError:
            lab = label
        ax.plot(xs, ys, "o-", label=lab)
        first = first or (xs[0], ys[0], xs[-1])
    if first:
        x0, y0, x1 = first
        xx = np.array([x0, x1])
        for s in reference_slopes:
            ax.plot(xx, y0 * (xx / x0) ** s, ":", color="grey", lw=1)
            ax.text(x1, y0 * (x1 / x0) ** s, f" slope {s:g}", color="grey", fontsize=8, va="center")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    legend_below(ax, ncol=2)
    return fig


def save_figure(fig: Figure, path: str, dpi: int = 120) -> str:
    """Save a figure atomically (folders created); returns the path."""
    fmt = os.path.splitext(str(path))[1].lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=fmt)
    return str(path)


# ---- notebook helpers (no IPython needed) --------------------------------------------------------
class Source:
    """Source code of a library object; shows highlighted in Jupyter, plain as text."""

    def __init__(self, code: str, name: str, path: str, line: int):
        self.code, self.name, self.path, self.line = code, name, path, line

    def __str__(self) -> str:
        return self.code

    def __repr__(self) -> str:
        return f"# {self.name}  ({self.path}:{self.line})\n{self.code}"

    def _repr_html_(self) -> str:
        try:  # pygments comes with Jupyter, which is the only place this method runs
            from pygments import highlight  # optional: Jupyter's
            from pygments.formatters import HtmlFormatter  # optional: Jupyter's
            from pygments.lexers import PythonLexer  # optional: Jupyter's
        except ImportError:  # pragma: no cover
            return f"<pre>{html.escape(self.code)}</pre>"
        fmt = HtmlFormatter(noclasses=True, style="default")
        return (f"<div style='font-size:85%'><b>{self.name}</b> "
                f"<code>{self.path}:{self.line}</code>{highlight(self.code, PythonLexer(), fmt)}</div>")


def show_source(obj, lines: Optional[slice] = None) -> Source:
    """The source of a function/class/method from the library, highlighted in a notebook.

    ``lines`` selects part of it (e.g. ``slice(0, 30)``). Returns a ``Source`` (display it by
    making it the cell's last expression, or ``print`` it for plain text).
    """
    try:
        code = inspect.getsource(obj)
        file = inspect.getsourcefile(obj) or "?"
        _, line = inspect.getsourcelines(obj)
    except (TypeError, OSError) as e:
        raise ValueError(f"show_source: no source for {obj!r} ({e})") from None
    code = textwrap.dedent(code)
    if lines is not None:
        code = "\n".join(code.splitlines()[lines])
    mod = getattr(obj, "__module__", "") or ""
    rel = mod.replace(".", "/") + ".py" if mod.startswith("tutorial_lib") else file
    name = f"{mod}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"
    return Source(code.rstrip() + "\n", name, rel, line)


def env_summary(device=None) -> str:
    """Device, its name, torch version, size profile and dtype: a notebook's first printed lines."""
    env = settings.describe_environment(device)
    return "\n".join([
        f"device        : {env['device']} ({env['device_name']})",
        f"torch         : {env['torch']}  (python {platform.python_version()})",
        f"size profile  : {env['profile']}  (set TUTORIAL_PROFILE=smoke|cpu|gpu to change)",
        f"compute dtype : {env['dtype']}{' autocast' if env['dtype'] != 'float32' else ''}",
        f"threads       : {torch.get_num_threads()}",
    ] + load_lines(env["device"], torch.get_num_threads()))


def load_lines(device: str, threads: int, load: Optional[float] = None, cores: Optional[int] = None) -> list:
    """On a CPU: the 1-minute load average, and a warning when other processes already keep the
    cores busy -- then every timing below is noisy, and small multi-threaded (elementwise) ops
    suffer most, because their threads wait for each other on oversubscribed cores."""
    if not str(device).startswith("cpu"):
        return []
    try:
        load = os.getloadavg()[0] if load is None else load
    except (AttributeError, OSError):
        return []
    cores = cores or os.cpu_count() or 1
    out = [f"load average  : {load:.1f} on {cores} cores (last minute, before this notebook's work)"]
    if settings.cpu_oversubscribed(load, cores):
        out.append(f"WARNING: more work than cores in the last minute; if other processes are still "
                   f"running, CPU timings here will be noisy and elementwise ops with {threads} threads "
                   f"inflated. Stop them, or torch.set_num_threads(1), before trusting a time.")
    return out


def format_rows(rows: Iterable[Mapping], columns: Optional[Sequence[str]] = None,
                formats: Optional[Mapping[str, str]] = None, headers: Optional[Mapping[str, str]] = None
                ) -> str:
    """A plain-text table of dict rows; ``formats`` maps a column to a format spec ("{:,.1f}")."""
    rows = list(rows)
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    formats, headers = formats or {}, headers or {}

    def cell(r, c):
        v = r.get(c)
        if v is None:
            return "—"
        f = formats.get(c)
        if f:
            try:
                return f.format(v)
            except (ValueError, TypeError):
                return str(v)
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    body = [[cell(r, c) for c in columns] for r in rows]
    head = [headers.get(c, c) for c in columns]
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) for i in range(len(columns))]

    def line(vals):
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(vals, widths)))

    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(b) for b in body])
