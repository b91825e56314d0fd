"""ipywidgets explorers for the notebooks: move a slider, see the cost model (and measurements) move.

Each builder returns a widget (a ``VBox`` subclass) to display; nothing is shown on import, and
``import tutorial_lib`` never imports this module (the CLI and the GPU machine have no ipywidgets).

- ``cost_explorer()``: T, B, n_kv_head, attention backend, window, MLP kind and ratio, dtype,
  AdamW's kernels, torch.compile ->
  predicted FLOP and time shares per component (the roofline model on this device's ceilings)
  and the training-memory breakdown; "Measure now" first shows its plan (time and memory), then
  times the ceilings and one training step here in the same rounds, profiles and memory-accounts
  it (progress bar), shows it beside the roofline model's same-round prediction, and scales later
  predictions of comparable work on this device.
- ``decision_tree()``: sequence length, device, goal -> the changes to make first, with payoffs.
- ``budget_explorer(planner)``: a memory budget -> the fastest plan that fits (micro-batches,
  checkpointing, the loss, the attention backend, the dtype) and its predicted peak, part by part.
- ``gqa_explorer()``, ``flash_explorer()``, ``window_explorer()``: the lesson explorers.

Every explorer keeps its controls in ``.controls`` (name -> widget), its last computed result in
``.result`` (from ``tutorial_lib.lessons.explorer`` / ``tutorial_lib.lessons.decision``: plain data), the text in
``.readout`` (HTML) and the figure in ``.image`` (PNG), so tests drive them by setting
``explorer.controls[name].value`` -- no browser needed. A bad combination (e.g. a window with a
backend that ignores it) shows its ValueError in the readout instead of raising.
"""
from __future__ import annotations

import base64
import html
import io
import time
from typing import Dict, List, Optional

import ipywidgets as W
import numpy as np
from matplotlib.figure import Figure

from tutorial_lib import attention, settings
from tutorial_lib.lessons import decision, memory_budget
from tutorial_lib.lessons import explorer as explore
from tutorial_lib.lessons.common import LEGEND, legend_below, legend_beside  # noqa: F401  (LEGEND: the style, for notebooks)
from tutorial_lib.lessons.flash_attention import flash_point
from tutorial_lib.lessons.gqa import (
    DecodePlan,
    decode_speedup,
    gqa_point,
    kv_cache_bytes,
    measure_decode,
    plan_decode,
    random_fill_rate,
)
from tutorial_lib.lessons.sliding_window import mask_density, window_point
from tutorial_lib.loss import LOSS_IMPLS
from tutorial_lib.measure import records
from tutorial_lib.measure.ceilings import Ceilings, ceilings_for, quick_ceilings
from tutorial_lib.measure.memory import available_bytes, fmt_bytes
from tutorial_lib.model import CHECKPOINT_POLICIES, PRESETS, get_config
from tutorial_lib.runtime import ADAMW_IMPLS, COMPILE_MODES
from tutorial_lib.sizes import get_sizes

POW2_T = [2 ** i for i in range(5, 15)]  # 32 .. 16384
# SelectionSlider options cannot hold None: 0 stands for "full" / "default" / "T/4"
WINDOWS = [("full", 0)] + [(str(2 ** i), 2 ** i) for i in range(4, 13)]  # 16 .. 4096
RATIOS = [("default", 0.0), ("2", 2.0), ("8/3", 8 / 3), ("3", 3.0), ("3.5", 3.5), ("4", 4.0),
          ("6", 6.0)]
DTYPES = ["float32", "bfloat16", "float16"]
ACCUMULATIONS = [1, 2, 4, 8, 16]  # micro-batches per step (gradient accumulation)
_STYLE = {"description_width": "130px"}
FIGURE_DPI = 100  # a figure's pixels: at the notebook's width, text of 8 pt and more reads
MEMORY_COLORS = {"parameters": "#1f77b4", "gradients": "#aec7e8", "optimizer state": "#c5b0d5",
                 "embedding": "#8c8c8c", "attention": "#d62728", "attention scores/probs": "#ff9896",
                 "mlp": "#ff7f0e", "norms": "#2ca02c", "residual stream": "#17becf",
                 "head + loss": "#9467bd", "other": "#bcbd22"}

def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI)
    return buf.getvalue()


def _slider(options, value, description, name):
    s = W.SelectionSlider(options=options, value=value, description=description,
                          continuous_update=False, style=_STYLE, layout=W.Layout(width="380px"))
    s.add_class(f"tl-{name}")
    return s


def _dropdown(options, value, description, name):
    d = W.Dropdown(options=options, value=value, description=description, style=_STYLE,
                   layout=W.Layout(width="380px"))
    d.add_class(f"tl-{name}")
    return d


def _intslider(value, lo, hi, description, name):
    s = W.IntSlider(value=value, min=lo, max=hi, description=description, continuous_update=False,
                    style=_STYLE, layout=W.Layout(width="380px"))
    s.add_class(f"tl-{name}")
    return s


def _kv_options(n_head: int):
    return [(("MHA" if h == n_head else "MQA" if h == 1 else f"GQA-{h}") + f" ({h})", h)
            for h in range(n_head, 0, -1) if n_head % h == 0]


class Explorer(W.VBox):
    """Controls on the left, figure on the right, a readout below; ``update()`` on every change.

    The sliders named in ``typed`` also take a typed value (an ``IntText`` beside them, in
    ``.texts``): a value between the slider's steps is added to the slider; one out of range is
    refused in ``.note``. Displayed, an explorer also carries a static copy of its figure and
    readout (``text/html`` and ``image/png`` beside the widget view), so a stored notebook shows
    the figure where no live widget can be drawn (no kernel, an untrusted notebook, GitHub)."""

    css = "tl-explorer"
    typed: tuple = ()  # names of SelectionSlider controls that also accept a typed value
    typed_max = 1 << 16

    def __init__(self, controls: Dict[str, W.Widget], extra: Optional[List[W.Widget]] = None):
        self.controls = controls
        self.readout = W.HTML()
        self.readout.add_class("tl-readout")
        self.note = W.HTML()  # what happened to a typed value
        self.note.add_class("tl-note")
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto"))
        self.image.add_class("tl-figure")
        self.result = None
        self.error: Optional[str] = None
        self.n_updates = 0
        self.quiet = False
        self.texts: Dict[str, W.IntText] = {}
        rows = []
        for name, c in controls.items():
            if name in self.typed:
                t = W.IntText(value=c.value, continuous_update=False, layout=W.Layout(width="80px"),
                              tooltip=f"type a value for {c.description}")
                t.add_class(f"tl-typed-{name.replace('_', '-')}")
                t.observe(lambda change, name=name: self.typed_value(name, change["new"]), names="value")
                self.texts[name] = t
                rows.append(W.HBox([c, t]))
            else:
                rows.append(c)
        left = W.VBox(rows + [self.note], layout=W.Layout(min_width="480px"))
        top = W.HBox([left, self.image], layout=W.Layout(flex_flow="row wrap"))  # figure wraps below
        super().__init__([top, self.readout] + list(extra or []))
        self.add_class("tl-explorer")
        self.add_class(self.css)
        for c in controls.values():
            c.observe(self._changed, names="value")
        self.update()

    def values(self) -> dict:
        return {k: c.value for k, c in self.controls.items()}

    def _changed(self, change=None):
        if self.quiet:  # a slider's options are being replaced (``typed_value``): not a user's move
            return
        for name, t in self.texts.items():  # a slider move shows in its text box
            t.value = self.controls[name].value
        self.update()

    def typed_value(self, name: str, value: int) -> None:
        """A value typed beside slider ``name``: one of its steps moves it there; another value
        in range becomes a new step; anything else is refused in ``.note`` (the slider stays)."""
        s = self.controls[name]
        if value == s.value:
            return
        pairs = [o if isinstance(o, tuple) else (str(o), o) for o in s.options]
        lo = 0 if pairs[0][1] == 0 else 1  # 0 = "full" on the window sliders
        if not isinstance(value, int) or not lo <= value <= self.typed_max:
            self.note.value = (f"<b style='color:#b00'>{html.escape(s.description)} = {value} is out of "
                               f"range: type {lo}..{self.typed_max}</b>")
            self.texts[name].value = s.value
            return
        if value in [v for _, v in pairs]:
            self.note.value = ""
            s.value = value
            return
        pairs = sorted(pairs + [(str(value), value)], key=lambda p: p[1])
        self.note.value = (f"<i>{html.escape(s.description)} = {value} is not one of the slider's "
                           f"steps: added to it</i>")
        # New options reset a selection slider to its first step: that interim value is not redrawn
        # (one redraw, at the typed value), and the page gets options and value in one message.
        drawn = self.n_updates
        with s.hold_sync():
            self.quiet = True
            try:
                s.options = pairs if isinstance(s.options[0], tuple) else [v for _, v in pairs]
            finally:
                self.quiet = False
            s.value = value
        if self.n_updates == drawn:  # the new first step: the reset already landed on it, unseen
            self.update()

    def update(self) -> None:
        """Recompute from the controls and redraw; a ValueError lands in the readout."""
        self.n_updates += 1
        try:
            self.result = self.compute(**self.values())
            self.error = None
        except ValueError as e:
            self.error = str(e)
            self.readout.value = f"<b style='color:#b00'>cannot compute: {html.escape(str(e))}</b>"
            return
        self.readout.value = self.render(self.result)
        self.image.value = _png(self.figure(self.result))

    def _repr_mimebundle_(self, **kwargs):
        """The live widget view, plus its current figure and readout as ``text/html`` and
        ``image/png``: what a stored notebook shows where the widget cannot be drawn."""
        data = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = (f"{type(self).__name__}: an interactive explorer; run the notebook to use "
                              f"its controls")
        if self.image.value:
            png = base64.b64encode(self.image.value).decode("ascii")
            data["image/png"] = png
            data["text/html"] = (f"<div class='tl-fallback'><img src='data:image/png;base64,{png}' "
                                 f"alt='{html.escape(type(self).__name__)} figure'/>{self.readout.value}"
                                 f"<p><i>A stored picture of the explorer's default state: run the "
                                 f"notebook to move its controls.</i></p></div>")
        return data

    # subclasses: compute(**values) -> result; render(result) -> html; figure(result) -> Figure
    def compute(self, **values):
        raise NotImplementedError

    def render(self, result) -> str:
        return html.escape(str(result))

    def figure(self, result) -> Figure:
        raise NotImplementedError


# ---- the cost explorer ------------------------------------------------------------------------
class CostExplorer(Explorer):
    """The cost explorer. "Measure now" first shows the plan -- predicted time and memory, and
    whether a reduced size is measured instead (``plan()``) -- and turns into a "Measure (~N s)"
    button; the second press measures. Settings whose predicted memory exceeds what this machine
    has free disable the button and say so. ``measure()`` (code, tests) plans and measures at once."""
    css = "tl-cost-explorer"
    typed = ("seq_len", "window")

    def __init__(self, preset: str = "gpt2_small", seq_len: int = 512, batch_size: int = 4,
                 dtype: Optional[str] = None, results=None, device=None,
                 session: Optional[explore.ExplorerSession] = None):
        """``session``: what this machine's explorers share (ceilings, calibrations); a new one
        unless given."""
        self.session = session or explore.ExplorerSession(device, results)
        self.device, self.device_name = self.session.device, self.session.device_name
        self.docs = self.session.docs
        self.measurement: Optional[explore.Measurement] = None
        dtype = dtype or settings.dtype_name(settings.default_dtype(self.device))
        n_head = PRESETS[preset].n_head
        controls = {
            "preset": _dropdown(list(PRESETS), preset, "model", "preset"),
            "seq_len": _slider(POW2_T, seq_len, "sequence length T", "seq-len"),
            "batch_size": _intslider(batch_size, 1, 64, "batch B", "batch"),
            "n_kv_head": _dropdown(_kv_options(n_head), n_head, "K/V heads", "kv-heads"),
            "attn_backend": _dropdown(attention.names(), "sdpa", "attention", "backend"),
            "window": _slider(WINDOWS, 0, "window W", "window"),
            "mlp": _dropdown(["gelu", "swiglu"], "gelu", "MLP kind", "mlp"),
            "mlp_ratio": _slider(RATIOS, 0.0, "MLP ratio", "mlp-ratio"),
            "dtype": _dropdown(DTYPES, dtype, "dtype", "dtype"),
            "loss_impl": _dropdown(list(LOSS_IMPLS), "full", "LM head + loss", "loss"),
            "adamw": _dropdown(list(ADAMW_IMPLS), "auto", "AdamW kernels", "adamw"),
            "compile": _dropdown([("eager", "")] + [(m, m) for m in COMPILE_MODES], "", "torch.compile",
                                 "compile"),
            # the memory budget (notebook 12): recompute in backward, micro-batches per step
            "checkpoint": _dropdown(list(CHECKPOINT_POLICIES), "none", "checkpointing", "checkpoint"),
            "grad_accum": _dropdown(ACCUMULATIONS, 1, "micro-batches", "grad-accum"),
        }
        controls["preset"].observe(self._preset_changed, names="value")
        self.button = W.Button(description="Measure now", icon="play", button_style="primary",
                               tooltip="time, profile and memory-account one training step of this "
                                       "config on this machine",
                               layout=W.Layout(width="auto", min_width="160px"))  # "Measure (~N s)" fits whole
        self.button.add_class("tl-measure")
        # hidden until a measurement starts: a notebook executed headless stores no empty bar
        self.progress = W.IntProgress(value=0, min=0, max=4, description="", bar_style="info",
                                      layout=W.Layout(width="260px", visibility="hidden"))
        self.progress.add_class("tl-progress")
        self.status = W.HTML(f"measures on <b>{html.escape(self.device_name)}</b>")
        self.plan_note = W.HTML()  # the plan, shown before anything is measured
        self.plan_note.add_class("tl-plan-note")
        self.measured = W.HTML()
        self.measured.add_class("tl-measured")
        self.pending: Optional[explore.MeasurementPlan] = None  # shown, waiting for the confirm press
        self.measuring = False
        self.button.on_click(lambda _b: self.press())
        super().__init__(controls, [W.HBox([self.button, self.progress, self.status]), self.plan_note,
                                    self.measured])

    def _preset_changed(self, change):
        n_head = PRESETS[change["new"]].n_head
        kv = self.controls["n_kv_head"]
        with self.hold_trait_notifications():
            kv.options = _kv_options(n_head)
            kv.value = n_head

    def update(self) -> None:
        """Redraw; a settings change also drops a plan waiting for confirmation and a measured
        text that belongs to other settings, and disables "Measure now" where the predicted
        memory does not fit."""
        super().update()
        if self.measuring:
            return
        self.pending = None
        self.plan_note.value = ""  # the plan goes first, so no confirm-less button shows a stale plan
        self.button.description, self.button.button_style = "Measure now", "primary"
        self.button.remove_class("tl-confirm")
        if self.measurement is not None and self.error is None and self.measurement.settings != self.result.settings:
            self.measured.value = ""
        refusal = None if self.error is not None else self.session.memory_refusal(self.result)
        self.button.disabled = refusal is not None
        if refusal:
            self.plan_note.value = f"<b class='tl-refused' style='color:#b00'>{html.escape(refusal)}</b>"

    def press(self) -> None:
        """The button: the first press shows the plan and asks to confirm; the second measures."""
        if self.pending is None:
            self.propose()
        else:
            self.measure(self.pending)

    def propose(self) -> explore.MeasurementPlan:
        """Show what "Measure now" would do -- predicted time and memory, a reduced size or a
        refusal -- and turn the button into the confirmation (nothing is measured yet)."""
        plan = self.plan()
        if plan.action == "refuse":
            self.plan_note.value = f"<b class='tl-refused' style='color:#b00'>{html.escape(plan.message())}</b>"
            self.button.disabled = True
            return plan
        self.pending = plan
        self.plan_note.value = f"<i class='tl-plan'>before measuring: {html.escape(plan.message())}</i>"
        secs = f"~{explore.seconds_text(plan.total_seconds)}" if plan.total_seconds is not None else "time ?"
        self.button.description = f"Measure ({secs})"
        self.button.tooltip = ("measure a reduced size and scale it: " if plan.action == "reduced" else
                               "measure: ") + plan.message()
        self.button.button_style = "warning"
        self.button.add_class("tl-confirm")
        return plan

    def settings(self, **v) -> explore.ExplorerSettings:
        v = v or self.values()
        return explore.ExplorerSettings(
            preset=v["preset"], seq_len=v["seq_len"], batch_size=v["batch_size"],
            n_kv_head=v["n_kv_head"], mlp=v["mlp"], mlp_ratio=v["mlp_ratio"] or None,
            window=v["window"] or None,
            attn_backend=v["attn_backend"], dtype=v["dtype"], loss_impl=v["loss_impl"],
            adamw=v.get("adamw", "auto"), compile=v.get("compile") or None,
            checkpoint=v["checkpoint"], grad_accum=v["grad_accum"])

    def compute(self, **v) -> explore.CostPrediction:
        return self.session.predict(self.settings(**v))

    def render(self, p: explore.CostPrediction) -> str:
        big = sorted(p.time_share.items(), key=lambda kv: -kv[1])[:3]
        top = ", ".join(f"{k} {v:.0%}" for k, v in big)
        mem = p.memory["by_kind"]
        return (f"<div><b>{html.escape(p.summary())}</b><br>"
                f"largest predicted time shares: {html.escape(top)}<br>"
                f"memory: params {fmt_bytes(mem['parameters'])}, grads {fmt_bytes(mem['gradients'])}, "
                f"AdamW {fmt_bytes(mem['optimizer state'])}, activations {fmt_bytes(mem['activations'])}; "
                f"predicted peak {fmt_bytes(p.memory['peak'])} (at its {html.escape(p.memory['peak_at'])})"
                f"<br><i>{html.escape(p.basis)}</i></div>")

    def figure(self, p: explore.CostPrediction) -> Figure:
        fig = Figure(figsize=(9.5, 3.8), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
        names = [n for n in explore.DISPLAY_SCOPES
                 if p.flop_share.get(n, 0) > 0.001 or p.time_share.get(n, 0) > 0.001]
        m = self.measurement if (self.measurement and self.measurement.settings == p.settings) else None
        y = list(range(len(names)))[::-1]
        h = 0.27 if m else 0.38
        ax1.barh([v + h / 2 for v in y], [p.flop_share.get(n, 0) for n in names], h,
                 color="#1f77b4", label="share of FLOPs")
        ax1.barh([v - h / 2 for v in y], [p.time_share.get(n, 0) for n in names], h,
                 color="#ff7f0e", label="predicted time share" if p.step_ms else "time share (= FLOPs)")
        if m:
            ax1.barh([v - 1.5 * h for v in y], [m.time_share.get(n, 0) for n in names], h,
                     color="#d62728", label="measured time share")
        ax1.set_yticks(y, names, fontsize=8)
        legend_below(ax1, ncol=3)
        ax1.set_xlabel("share of the training step")
        t = f"predicted {p.step_ms:,.1f} ms/step" if p.step_ms else "no ceilings yet: press Measure now"
        ax1.set_title(f"{p.settings.preset}, B={p.settings.batch_size}, T={p.settings.seq_len}: {t}",
                      fontsize=9, loc="left")
        bars = [("predicted", p.memory)] + ([("measured", m.memory)] if m else [])
        for i, (label, mem) in enumerate(bars):
            left = 0.0
            parts = [(k, v) for k, v in mem["by_kind"].items() if k != "activations"]
            parts += [(f"act: {g}", v) for g, v in mem["activations_by_group"].items() if v]
            for k, v in parts:
                ax2.barh(i, v / 2**20, left=left, color=MEMORY_COLORS.get(k.replace("act: ", ""), "#7f7f7f"),
                         edgecolor="white", linewidth=0.5, label=k if i == 0 else None)
                left += v / 2**20
            ax2.text(left, i, f" {left:,.0f} MiB", va="center", fontsize=8)
        ax2.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
        ax2.set_xlabel("MiB (training step)")
        ax2.set_xlim(0, ax2.get_xlim()[1] * 1.35)  # room for the total's label
        legend_beside(ax2)
        ax2.set_title(f"memory, {p.settings.dtype} activations", fontsize=9, loc="left")
        return fig

    measure_budget_s = explore.MEASURE_BUDGET_S  # "Measure now" answers within about this

    def plan(self) -> explore.MeasurementPlan:
        """How "Measure now" will measure the current settings (``ExplorerSession.plan``):
        predicted time (setup included) and memory first; a reduced size, scaled back, when measuring
        the requested one would take longer than ``measure_budget_s``; a refusal when it cannot fit."""
        return self.session.plan(self.settings(), self.measure_budget_s)

    def measure(self, plan: Optional[explore.MeasurementPlan] = None) -> Optional[explore.Measurement]:
        """Carry out ``plan`` (made now unless given) with ``ExplorerSession.measure``, the progress
        bar following its stages; show the result beside the prediction, and the plan's time
        estimate beside the time it took."""
        s = self.settings()
        if plan is None or plan.requested != s:
            plan = self.plan()
        self.pending = None
        if plan.action == "refuse":
            self.plan_note.value = f"<b class='tl-refused' style='color:#b00'>{html.escape(plan.message())}</b>"
            self.progress.bar_style = "danger"
            self.measured.value = f"<b style='color:#b00'>{html.escape(plan.message())}</b>"
            return None
        self.plan_note.value = ""  # the plan is carried out: its note gives way to the result
        self.measuring = True
        self.button.disabled = True
        self.button.description = "measuring ..."
        self.progress.bar_style, self.progress.value = "info", 0
        self.progress.layout.visibility = "visible"
        self.measured.value = ""

        def stage(i: int, what: str):
            self.progress.value = i
            self.status.value = f"{i}/4 {html.escape(what)} ..."
        try:
            m = self.session.measure(plan, stage)
        except Exception as e:  # OOM, a backend without backward here, ...: shown, not raised
            self.progress.bar_style = "danger"
            self.status.value = "failed"
            self.measured.value = (f"<b style='color:#b00'>measurement failed: "
                                   f"{html.escape(type(e).__name__)}: {html.escape(str(e)[:300])}</b>")
            return None
        finally:
            self.measuring = False
            self.button.disabled = False
            self.button.description, self.button.button_style = "Measure now", "primary"
            self.button.remove_class("tl-confirm")
        self.measurement = m
        self.progress.bar_style = "success"
        self.status.value = f"measured on <b>{html.escape(self.device_name)}</b>"
        self.measured.value = self.render_measurement(m)
        self.update()  # redraw with the calibration (the same settings: the measured text stays)
        return m

    @staticmethod
    def render_measurement(m: explore.Measurement) -> str:
        s, b, row = m.settings, m.before, m.check
        at = f" at the measured size, {m.measured.describe()}" if m.plan.action == "reduced" else ""
        model = ""
        if row.get("roofline_ms"):
            model = (f"<br><span class='tl-model-error'>the roofline model, on the ceilings timed in the same "
                     f"rounds, said {row['roofline_ms']:,.1f} ms{html.escape(at)}: "
                     f"{html.escape(explore.error_words(row))} off the measured step; FLOPs alone said "
                     f"{row['flop_only_ms']:,.1f} ms, {html.escape(explore.error_words(row, 'flop_only'))}</span>")
        before = (f"{b.step_ms:,.1f} ms/step shown before this run" if b.step_ms else
                  "no time shown before this run (no ceilings yet)")
        shares = sorted(m.time_share.items(), key=lambda kv: -kv[1])[:4]
        sh = ", ".join(f"{k} {v:.0%} of time vs {b.flop_share.get(k, 0):.0%} of FLOPs" for k, v in shares)
        scaled = ""
        if m.plan.action == "reduced":
            scaled = (f"<br><i class='tl-scaled'>measured at a reduced size, {html.escape(m.measured.describe())}: "
                      f"{m.measured_step_ms:,.1f} ms/step, scaled to these settings by {m.scale:.2f}x through the "
                      f"cost model calibrated on it (each component's measured rate applied to the requested "
                      f"size's work); activations scaled by the cost model's exact ratio</i>")
        est = m.plan.total_seconds
        took = (f"<br><span class='tl-took'>this measurement took {explore.seconds_text(m.seconds)}"
                + (f" (the plan said ~{explore.seconds_text(est)})" if est else "") + "</span>")
        lo, hi = m.range_ms
        return (f"<div class='tl-measured-text'><b>measured on {html.escape(m.device_name)}</b>: "
                f"{html.escape(s.describe())}: <b>{m.step_ms:,.1f} ms/step</b> (median of "
                f"{row.get('rounds', 1)} rounds, {lo:,.1f}-{hi:,.1f}), {m.tokens_per_s:,.0f} tokens/s; "
                f"{html.escape(before)}.{model}"
                f"<br>components: {html.escape(sh)}.<br>memory: {fmt_bytes(m.memory['total'])} "
                f"measured (params + grads + AdamW + saved activations) vs "
                f"{fmt_bytes(b.memory['total'])} predicted.{scaled}{took}</div>")


def cost_explorer(**kwargs) -> CostExplorer:
    """The cost explorer (see ``CostExplorer``): ``cost_explorer(seq_len=1024)``."""
    return CostExplorer(**kwargs)


# ---- the decision tree ------------------------------------------------------------------------
class DecisionTree(Explorer):
    css = "tl-decision-tree"
    typed = ("seq_len", "window")

    def __init__(self, seq_len: int = 512, device: Optional[str] = None, goal: str = "speed",
                 results=None):

        self.docs = records.load_all() if results is None else list(results)
        device = device or settings.get_device().type
        device = device if device in decision.DEVICES else "cpu"
        controls = {
            "seq_len": _slider(POW2_T, seq_len, "sequence length T", "tree-seq-len"),
            "device": _dropdown(list(decision.DEVICES), device, "device", "tree-device"),
            "goal": _dropdown(list(decision.GOALS), goal, "goal", "tree-goal"),
            "window": _slider([("T/4", 0)] + WINDOWS[1:], 0, "window W", "tree-window"),
        }
        super().__init__(controls)

    def compute(self, seq_len, device, goal, window) -> decision.Recommendation:
        return decision.recommend(seq_len, device, goal, window=window or None, results=self.docs)

    def render(self, r: decision.Recommendation) -> str:
        items = "".join(f"<li>{html.escape(p.describe(r.goal))}</li>" for p in r.steps)
        rest = "".join(f"<li>{html.escape(p.describe(r.goal))}</li>" for p in r.no_gain)
        undecided = "".join(f"<li>{html.escape(p.describe(r.goal))}</li>" for p in r.undecided)
        q = "".join(f"<li>{html.escape(x)}</li>" for x in r.quality)
        seed = "<br>".join(html.escape(x) for x in r.seed)
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in r.notes)
        return (f"<div><b>Do first, for {r.goal} at T={r.seq_len} on {r.device}:</b>"
                f"<ol class='tl-steps'>{items or '<li>nothing beats the baseline here</li>'}</ol>"
                + (f"<b>Measured, but the rounds cannot tell:</b><ul>{undecided}</ul>" if undecided else "")
                + f"<b>Little or no gain here:</b><ul>{rest}</ul><b>Quality (not speed):</b><ul>{q}</ul>"
                f"<b>The seed's tree says:</b><br>{seed}<ul>{notes}</ul></div>")

    def figure(self, r: decision.Recommendation) -> Figure:
        return decision.payoff_figure(r)


def decision_tree(**kwargs) -> DecisionTree:
    """The decision tree (see ``DecisionTree``): ``decision_tree(seq_len=2048, goal="memory")``."""
    return DecisionTree(**kwargs)


# ---- the lesson explorers ----------------------------------------------------------------------
CONTEXTS = [2 ** i for i in range(7, 16)]  # 128 .. 32768


def _device():
    dev = settings.get_device()
    return dev, settings.device_name(dev)


# ---- GQA: n_kv_head vs KV-cache bytes and decode speed -----------------------------------------
class GQAExplorer(Explorer):
    """KV-cache bytes and decoding cost vs n_kv_head, context and batch. "Measure decode" first
    shows its plan (``gqa.plan_decode``: predicted step times, seconds and memory) and turns into a
    "Measure (~N s)" button; the second press measures (``measure()``: code and tests measure at
    once). A plan whose models and caches cannot fit in memory is refused."""
    css = "tl-gqa-explorer"
    typed = ("context",)

    def __init__(self, n_kv_head: int = 4, context: int = 1024, batch_size: int = 1,
                 dtype: str = "bfloat16", preset: str = "gpt2_small", results=None,
                 measure_config=None, measure_tokens: Optional[int] = None):
        """``measure_config`` / ``measure_tokens``: the model and new tokens "Measure decode"
        times (default: the profile's -- gpt2_mini under smoke, else ``preset`` -- and its
        ``decode_tokens``)."""

        self.preset = preset
        self.measure_config, self.measure_tokens = measure_config, measure_tokens
        self.docs = records.load_all() if results is None else list(results)
        self.device, self.device_name = _device()
        self.decode_rows = []  # measured here with "Measure decode"
        self.measured_for: Optional[dict] = None  # the control values decode_rows were measured at
        self.pending: Optional[DecodePlan] = None  # shown, waiting for the confirm press
        self.quick: Optional[Ceilings] = None  # quick ceilings for a plan, measured once
        self.fill_rate: Optional[float] = None  # random numbers per second, measured once
        self.correction = None  # (measured / predicted step, why) of the last decoding measured here
        n_head = get_config(preset).n_head
        controls = {
            "n_kv_head": _dropdown(_kv_options(n_head), n_kv_head, "K/V heads", "gqa-kv"),
            "context": _slider(CONTEXTS, context, "context tokens", "gqa-context"),
            "batch_size": _intslider(batch_size, 1, 64, "batch (sequences)", "gqa-batch"),
            "dtype": _dropdown(DTYPES, dtype, "cache dtype", "gqa-dtype"),
        }
        self.button = W.Button(description="Measure decode", icon="play", button_style="primary",
                               tooltip="time greedy KV-cache decoding here for MHA and this n_kv_head",
                               layout=W.Layout(width="auto", min_width="160px"))
        self.button.add_class("tl-measure")
        self.progress = W.IntProgress(value=0, min=0, max=2,  # hidden until "Measure decode" starts
                                      layout=W.Layout(width="200px", visibility="hidden"))
        self.progress.add_class("tl-progress")
        self.plan_note = W.HTML()  # the plan, shown before anything is measured
        self.plan_note.add_class("tl-plan-note")
        self.measured = W.HTML()
        self.measured.add_class("tl-measured")
        self.measuring = False
        self.button.on_click(lambda _b: self.press())
        super().__init__(controls, [W.HBox([self.button, self.progress]), self.plan_note, self.measured])

    def update(self) -> None:
        """Redraw; a settings change drops a plan waiting for confirmation and clears a measured
        text that belongs to other settings."""
        super().update()
        if self.measuring:
            return
        self.pending = None
        self.plan_note.value = ""
        self.button.description, self.button.button_style, self.button.disabled = "Measure decode", "primary", False
        self.button.remove_class("tl-confirm")
        if self.measured_for is not None and self.measured_for != self.values():
            self.measured.value, self.measured_for = "", None

    def compute(self, n_kv_head, context, batch_size, dtype):
        return gqa_point(n_kv_head, context, batch_size, dtype, self.preset, self.docs,
                                 str(self.device))

    def render(self, r) -> str:
        meas = "; ".join(f"context {m['context']}: {m['tokens_per_s']:,.0f} tokens/s "
                         f"(over MHA: {m['speedup_of'].text()}) on {m['device_name']}"
                         for m in r["measured"] if m.get("tokens_per_s") and m.get("speedup_vs_MHA"))
        B = r["batch_size"]
        share = "shared by the batch's " + f"{B} sequences" if B > 1 else "for its one sequence"
        return (f"<div><b>{r['label']}</b> ({r['n_kv_head']} K/V heads for {r['n_head']} query heads), "
                f"{B} x {r['context']:,} tokens, {r['dtype']}: KV cache "
                f"<b>{fmt_bytes(r['cache_bytes'])}</b> vs MHA {fmt_bytes(r['cache_bytes_mha'])} "
                f"({r['cache_ratio']:.3g}x).<br>Each decoding step reads {fmt_bytes(r['bytes_per_step'])}: the "
                f"weights ({fmt_bytes(r['weight_bytes'])}) once, {share}, and every sequence's cache; "
                f"{fmt_bytes(r['bytes_per_token'])} per new token. Analytic decode speed "
                f"<b>{r['decode_speedup_analytic']:.2f}x MHA</b> (memory-bound assumption).<br>"
                f"measured (results files): {html.escape(meas) or 'none yet'}</div>")

    def figure(self, r) -> Figure:

        fig = Figure(figsize=(9, 3.8), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
        base = get_config(self.preset)
        for label, h in _kv_options(base.n_head):
            cfg = base.replace(n_kv_head=h)
            ys = [kv_cache_bytes(cfg, r["batch_size"], c, r["dtype"]) / 2**20 for c in CONTEXTS]
            cur = h == r["n_kv_head"]
            ax1.plot(CONTEXTS, ys, "-" if cur else ":", lw=2.5 if cur else 1, label=label)
        ax1.plot([r["context"]], [r["cache_bytes"] / 2**20], "ko")
        ax1.set_xscale("log", base=2)
        ax1.set_yscale("log")
        ax1.set_xlabel("context tokens")
        ax1.set_ylabel("KV cache (MiB)")
        legend_below(ax1, ncol=3)
        ax1.set_title(f"KV cache, batch {r['batch_size']}, {r['dtype']}", fontsize=9, loc="left")
        mha = gqa_point(base.n_head, r["context"], r["batch_size"], r["dtype"], self.preset, [])
        for i, (lab, p) in enumerate((("MHA", mha), (r["label"], r))):
            w = p["weight_bytes"] / p["batch_size"]
            ax2.barh(i, w / 2**20, color="#1f77b4", label="weights / batch" if i == 0 else None)
            ax2.barh(i, p["cache_bytes"] / p["batch_size"] / 2**20, left=w / 2**20, color="#d62728",
                     label="KV cache (one sequence)" if i == 0 else None)
        ax2.set_yticks([0, 1], ["MHA", r["label"]])
        ax2.set_xlabel("MiB read per new token")
        legend_below(ax2, ncol=2)
        ax2.set_title(f"decoding, batch {r['batch_size']}: {r['decode_speedup_analytic']:.2f}x MHA (analytic)",
                      fontsize=9, loc="left")
        return fig

    def measure_setup(self):
        """(config, new tokens, dtype, rounds, min_run_time) that "Measure decode" uses here."""
        prof = get_sizes(device=self.device)
        cfg = self.measure_config or get_config("gpt2_mini" if prof.name == "smoke" else self.preset)
        tokens = self.measure_tokens or prof.decode.new_tokens
        dtype = self.values()["dtype"] if self.device.type == "cuda" else "float32"
        return cfg, tokens, dtype, prof.step.rounds, prof.step.min_run_time

    def plan(self) -> DecodePlan:
        """What "Measure decode" will do at the current settings (``gqa.plan_decode``), on this
        device's recorded ceilings, else quick ones (measured once, a fraction of a second)."""
        cfg, tokens, dtype, rounds, mrt = self.measure_setup()
        v = self.values()
        if cfg.n_head % v["n_kv_head"]:
            raise ValueError(f"n_kv_head={v['n_kv_head']} does not divide n_head={cfg.n_head} of {cfg.name}")
        c = ceilings_for(self.device_name, dtype, self.docs, None, self.device.type)
        if c is None:
            self.quick = self.quick or quick_ceilings(self.device, dtype)
            c = self.quick
        self.fill_rate = self.fill_rate or random_fill_rate()
        return plan_decode(cfg, v["context"], [cfg.n_head, v["n_kv_head"]], v["batch_size"], tokens, dtype,
                           rounds, mrt, c, available_bytes(self.device), self.fill_rate, self.correction)

    def press(self) -> None:
        """The button: the first press shows the plan and asks to confirm; the second measures."""
        if self.pending is None:
            self.propose()
        else:
            self.measure(self.pending)

    def propose(self) -> DecodePlan:
        plan = self.plan()
        if plan.action == "refuse":
            self.plan_note.value = f"<b class='tl-refused' style='color:#b00'>{html.escape(plan.message())}</b>"
            self.button.disabled = True
            return plan
        self.pending = plan
        self.plan_note.value = f"<i class='tl-plan'>before measuring: {html.escape(plan.message())}</i>"
        self.button.description = f"Measure (~{explore.seconds_text(plan.seconds)})"
        self.button.tooltip = "measure: " + plan.message()
        self.button.button_style = "warning"
        self.button.add_class("tl-confirm")
        return plan

    def measure(self, plan: Optional[DecodePlan] = None):
        """Time greedy decoding (``gqa.measure_decode``) for MHA and the chosen n_kv_head at the
        chosen context and batch, on this profile's lesson model, as ``plan`` (made now unless
        given) says; the rows land in ``decode_rows``, the time it took beside the plan's."""
        v = self.values()
        if plan is None or (plan.context, plan.batch_size, plan.kv_heads[-1]) != (
                v["context"], v["batch_size"], v["n_kv_head"]):
            plan = self.plan()
        self.pending = None
        if plan.action == "refuse":
            self.plan_note.value = f"<b class='tl-refused' style='color:#b00'>{html.escape(plan.message())}</b>"
            return []
        cfg = plan.config
        self.plan_note.value = ""  # the plan is carried out: its note gives way to the result
        self.measuring = True
        self.button.disabled, self.button.description = True, "measuring ..."
        self.progress.value, self.progress.bar_style = 0, "info"
        self.progress.layout.visibility = "visible"
        t0 = time.perf_counter()
        rows = []
        try:  # the heads timed in interleaved rounds: load that comes and goes slows both alike
            rows = measure_decode(cfg, [plan.context], kv_heads=plan.kv_heads, batch_size=plan.batch_size,
                                  new_tokens=plan.new_tokens, device=self.device, dtype=plan.dtype,
                                  min_run_time=plan.min_run_time, rounds=plan.rounds)
        finally:
            self.measuring = False
            self.button.disabled = False
            self.button.description, self.button.button_style = "Measure decode", "primary"
            self.button.remove_class("tl-confirm")
        took = time.perf_counter() - t0
        self.progress.value, self.progress.bar_style = self.progress.max, "success"
        self.decode_rows, self.measured_for = rows, v
        ratios = sorted(r.ms_per_step / plan.step_ms[r.n_kv_head] for r in rows if r.ok and r.ms_per_step)
        if ratios:  # the next plan's steps, corrected by how far this one was off
            self.correction = (ratios[len(ratios) // 2] * (self.correction[0] if self.correction else 1.0),
                               f"measured / predicted decoding here (context {plan.context}, batch {plan.batch_size})")
        parts = []
        for r in rows:
            if r.ok:
                parts.append(f"{r.attention}: {r.tokens_per_s:,.0f} tokens/s ({r.ms_per_step:.2f} ms per step "
                             f"vs ~{plan.step_ms[r.n_kv_head]:,.2f} predicted, over MHA: "
                             + ("baseline" if r.n_kv_head == cfg.n_head else decode_speedup(r, cfg).text())
                             + f"), cache {fmt_bytes(r.cache_bytes)}")
            else:
                parts.append(f"{r.attention}: {r.error}")
        rounds = f"{plan.rounds} interleaved round" + ("s" if plan.rounds != 1 else "")
        self.measured.value = (f"<div><b>measured on {html.escape(self.device_name)}</b> "
                               f"({html.escape(cfg.describe())}, {plan.dtype}, batch {plan.batch_size}, "
                               f"context {plan.context}, {plan.new_tokens} new tokens, {rounds}): "
                               f"{html.escape('; '.join(parts))}<br><span class='tl-took'>this measurement "
                               f"took {explore.seconds_text(took)} (the plan said "
                               f"~{explore.seconds_text(plan.seconds)})</span></div>")
        return rows


def gqa_explorer(**kwargs) -> GQAExplorer:
    """KV-cache bytes and decode speed vs n_kv_head: ``gqa_explorer(context=2048)``."""
    return GQAExplorer(**kwargs)


# ---- flash: T vs attention memory ---------------------------------------------------------------
FLASH_MARKERS = (("eager", "#d62728", "o", 7), ("sdpa", "#1f77b4", "s", 10), ("tiled", "#2ca02c", "x", 6))


class FlashExplorer(Explorer):
    css = "tl-flash-explorer"
    typed = ("seq_len",)

    def __init__(self, seq_len: int = 1024, batch_size: int = 1, dtype: str = "float32", results=None):
        self.docs = records.load_all() if results is None else list(results)
        self.device, self.device_name = _device()
        controls = {
            "seq_len": _slider(CONTEXTS[:-1], seq_len, "sequence length T", "flash-seq-len"),
            "batch_size": _intslider(batch_size, 1, 64, "batch B", "flash-batch"),
            "dtype": _dropdown(DTYPES, dtype, "dtype", "flash-dtype"),
        }
        super().__init__(controls)

    def compute(self, seq_len, batch_size, dtype):
        return flash_point(seq_len, batch_size, dtype, docs=self.docs, device=str(self.device))

    def render(self, r) -> str:
        return (f"<div>T={r['seq_len']:,}, B={r['batch_size']}, {r['n_head']} heads, {r['dtype']}: "
                f"eager attention writes <b>{fmt_bytes(r['eager_attention_bytes_per_layer'])}</b> per layer "
                f"(scores and probabilities, T x T per head); a flash kernel keeps "
                f"<b>{fmt_bytes(r['sdpa_attention_bytes_per_layer'])}</b> (one logsumexp per query): "
                f"{r['attention_ratio']:,.0f}x less.<br>Whole training step (GPT-2 small): "
                f"{fmt_bytes(r['eager_training_bytes'])} eager vs {fmt_bytes(r['sdpa_training_bytes'])} "
                f"flash ({r['training_ratio']:.2f}x).</div>")

    def figure(self, r) -> Figure:
        fig = Figure(figsize=(6.5, 3.6), layout="constrained")
        ax = fig.subplots()
        Ts = CONTEXTS[:-1]
        pts = [flash_point(T, r["batch_size"], r["dtype"], docs=[]) for T in Ts]
        ax.plot(Ts, [p["eager_attention_bytes_per_layer"] / 2**20 for p in pts], "-", color="#d62728",
                label="eager: scores + probs (analytic, ~T^2)")
        ax.plot(Ts, [p["sdpa_attention_bytes_per_layer"] / 2**20 for p in pts], "-", color="#1f77b4",
                label="flash: logsumexp (analytic, ~T)")
        # sdpa and the tiled kernel keep the same bytes: a large open square and a small cross
        # inside it, so that neither hides the other where they coincide
        for b, col, marker, size in FLASH_MARKERS:
            ms = [m for m in r["measured"] if m["backend"] == b]
            if ms:
                ax.plot([m["seq_len"] for m in ms], [m["saved_bytes"] / 2**20 for m in ms], marker, ms=size,
                        color=col, mfc="none", mew=1.5, ls="none", label=f"{b}: saved for backward (measured, "
                        f"B={ms[0]['batch_size']} H={ms[0]['n_head']}, whole core)")
        ax.plot([r["seq_len"]] * 2, [r["sdpa_attention_bytes_per_layer"] / 2**20,
                                     r["eager_attention_bytes_per_layer"] / 2**20], "k--o", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("MiB per layer")
        legend_below(ax, ncol=2)
        ax.set_title(f"attention memory per layer, B={r['batch_size']}, {r['dtype']}: "
                     f"{r['attention_ratio']:,.0f}x at T={r['seq_len']}", fontsize=9, loc="left")
        return fig


def flash_explorer(**kwargs) -> FlashExplorer:
    """Attention memory vs T, eager vs flash: ``flash_explorer(seq_len=4096)``."""
    return FlashExplorer(**kwargs)


# ---- sliding window: W vs mask and cost ---------------------------------------------------------
class WindowExplorer(Explorer):
    css = "tl-window-explorer"
    typed = ("window", "seq_len")

    def __init__(self, window: Optional[int] = 256, seq_len: int = 2048, n_layer: int = 12):
        window = window or 0  # 0 = full causal on the slider
        controls = {
            "window": _slider(WINDOWS, window, "window W", "win-window"),
            "seq_len": _slider(POW2_T, seq_len, "sequence length T", "win-seq-len"),
            "n_layer": _intslider(n_layer, 1, 48, "layers", "win-layers"),
        }
        super().__init__(controls)

    def compute(self, window, seq_len, n_layer):
        r = window_point(window or None, seq_len, n_layer)
        r["mask"] = mask_density(seq_len, window or None, grid=64)
        return r

    def render(self, r) -> str:
        W_ = "full causal" if r["window"] is None else f"W={r['window']}"
        rf = "unbounded" if r["receptive_field"] is None else f"{r['receptive_field']:,} positions"
        return (f"<div>T={r['seq_len']:,}, {W_}: {r['pairs']:,} visible (query, key) pairs vs "
                f"{r['pairs_full']:,} causal: attention FLOPs {r['flop_ratio']:.2f}x fewer "
                f"(only if the kernel skips what the mask hides -- a band mask on SDPA does not).<br>"
                f"Receptive field after {r['n_layer']} layers: {rf}.</div>")

    def figure(self, r) -> Figure:
        fig = Figure(figsize=(9, 3.5), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
        T = r["seq_len"]
        ax1.imshow(r["mask"], cmap="Blues", vmin=0, vmax=1, extent=(0, T, T, 0), interpolation="nearest")
        ax1.set_xlabel("key position")
        ax1.set_ylabel("query position")
        ax1.set_title(f"mask, T={T}, " + ("full causal" if r["window"] is None else f"W={r['window']}")
                      + " (shade: visible fraction)", fontsize=9, loc="left")
        Ts = np.array(POW2_T)
        full = [window_point(None, int(t), r["n_layer"])["flops"] for t in Ts]
        win = [window_point(r["window"], int(t), r["n_layer"])["flops"] for t in Ts]
        ax2.plot(Ts, full, "-", color="#d62728", label="full causal (~T^2)")
        ax2.plot(Ts, win, "-", color="#1f77b4", label="window (~T*W once T >> W)")
        ax2.plot([T], [r["flops"]], "ko")
        ax2.set_xscale("log", base=2)
        ax2.set_yscale("log")
        ax2.set_xlabel("sequence length T")
        ax2.set_ylabel(f"attention FLOPs, {r['n_layer']} layers, fwd")
        legend_below(ax2, ncol=2)
        ax2.set_title(f"{r['flop_ratio']:.2f}x fewer FLOPs at T={T}", fontsize=9, loc="left")
        return fig


def window_explorer(**kwargs) -> WindowExplorer:
    """The mask and attention cost vs W and T: ``window_explorer(window=128, seq_len=4096)``."""
    return WindowExplorer(**kwargs)


# ---- the memory budget: a budget -> the fastest plan that fits ------------------------------------
class BudgetExplorer(Explorer):
    """A budget slider over a ``lessons.memory_budget.Planner`` (every plan predicted once): the
    fastest plan whose predicted peak fits, the next ones, and the peak as bars beside the budget.
    A budget below the floor (parameters + gradients + AdamW state) says so in the readout."""
    css = "tl-budget-explorer"
    typed = ("budget_mib",)

    def __init__(self, planner: memory_budget.Planner, budget_mib: Optional[int] = None, steps: int = 40):
        self.planner = planner
        lo = int(planner.floor_bytes // 2**20) + 1
        hi = int(max(p.peak_bytes for p in planner.plans) * 1.15 // 2**20) + 1
        options = sorted({int(round(lo * (hi / lo) ** (i / (steps - 1)))) for i in range(steps)})
        budget_mib = budget_mib if budget_mib is not None else options[len(options) // 2]
        if budget_mib not in options:
            options = sorted(options + [int(budget_mib)])
        self.typed_max = max(options) * 4
        controls = {"budget_mib": _slider(options, int(budget_mib), "budget (MiB)", "budget")}
        super().__init__(controls)

    def compute(self, budget_mib) -> memory_budget.Choice:
        return self.planner.choose(int(budget_mib) * 2**20)

    def render(self, c: memory_budget.Choice) -> str:
        rows = "".join(f"<li>{html.escape(p.describe())}: {p.tokens_per_s:,.0f} tokens/s, peak "
                       f"{fmt_bytes(p.peak_bytes)}</li>" for p in c.ranked[1:4])
        more = f"<br>next fastest that fit:<ol start='2'>{rows}</ol>" if rows else ""
        basis = ", ".join(f"{dt}: {cl.device_name} ({cl.source})" for dt, cl in self.planner.ceilings.items())
        return (f"<div><b>{html.escape(c.message())}</b>{more}<i>time: the roofline model on the ceilings of "
                f"{html.escape(basis)}; peak: measure.peak (the floor, {fmt_bytes(c.floor_bytes)}, is "
                f"parameters + gradients + AdamW state)</i></div>")

    def figure(self, c: memory_budget.Choice) -> Figure:
        return memory_budget.plan_figure(self.planner, c)


def budget_explorer(planner: memory_budget.Planner, **kwargs) -> BudgetExplorer:
    """The memory budget's explorer over ``planner``: ``budget_explorer(planner, budget_mib=900)``."""
    return BudgetExplorer(planner, **kwargs)
