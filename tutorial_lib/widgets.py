"""ipywidgets explorers for the notebooks: move a slider, see the cost model (and measurements) move.

Each builder returns a widget (a ``VBox`` subclass) to display; nothing is shown on import, and
``import tutorial_lib`` never imports this module (the CLI and the GPU machine have no ipywidgets).

- ``cost_explorer()``: T, B, n_kv_head, attention backend, window, MLP kind and ratio, dtype ->
  predicted FLOP and time shares per component and the training-memory breakdown; "Measure now"
  times, profiles and memory-accounts one training step here (progress bar) and shows it beside
  the prediction, and calibrates later predictions on this device.
- ``decision_tree()``: sequence length, device, goal -> the changes to make first, with payoffs.
- ``gqa_explorer()``, ``flash_explorer()``, ``window_explorer()``: the lesson explorers.

Every explorer keeps its controls in ``.controls`` (name -> widget), its last computed result in
``.result`` (from ``tutorial_lib.explore`` / ``tutorial_lib.decision``: plain data), the text in
``.readout`` (HTML) and the figure in ``.image`` (PNG), so tests drive them by setting
``explorer.controls[name].value`` -- no browser needed. A bad combination (e.g. a window with a
backend that ignores it) shows its ValueError in the readout instead of raising.
"""
from __future__ import annotations

import html
import io
from typing import Dict, List, Optional

import ipywidgets as W
from matplotlib.figure import Figure

from tutorial_lib import decision, explore
from tutorial_lib.config import ATTN_BACKENDS, PRESETS
from tutorial_lib.measure.memory import fmt_bytes

POW2_T = [2 ** i for i in range(5, 15)]  # 32 .. 16384
# SelectionSlider options cannot hold None: 0 stands for "full" / "default" / "T/4"
WINDOWS = [("full", 0)] + [(str(2 ** i), 2 ** i) for i in range(4, 13)]  # 16 .. 4096
RATIOS = [("default", 0.0), ("2", 2.0), ("8/3", 8 / 3), ("3", 3.0), ("3.5", 3.5), ("4", 4.0),
          ("6", 6.0)]
DTYPES = ["float32", "bfloat16", "float16"]
_STYLE = {"description_width": "130px"}
MEMORY_COLORS = {"parameters": "#1f77b4", "gradients": "#aec7e8", "optimizer state": "#c5b0d5",
                 "embedding": "#8c8c8c", "attention": "#d62728", "attention scores/probs": "#ff9896",
                 "mlp": "#ff7f0e", "norms": "#2ca02c", "residual stream": "#17becf",
                 "head + loss": "#9467bd", "other": "#bcbd22"}

# the last measurement per (device name, dtype): "Measure now" anywhere calibrates every explorer
_CALIBRATIONS: Dict[tuple, explore.Calibration] = {}


def calibration_for(device_name: str, dtype: str, docs=None) -> Optional[explore.Calibration]:
    """This session's last measurement on the device in dtype, else the newest results file's."""
    c = _CALIBRATIONS.get((device_name, dtype))
    if c is None and docs:
        c = explore.calibration_from_results(docs, device_name, dtype)
    return c


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
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
    """Controls on the left, figure on the right, a readout below; ``update()`` on every change."""

    css = "tl-explorer"

    def __init__(self, controls: Dict[str, W.Widget], extra: Optional[List[W.Widget]] = None):
        self.controls = controls
        self.readout = W.HTML()
        self.readout.add_class("tl-readout")
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto"))
        self.image.add_class("tl-figure")
        self.result = None
        self.error: Optional[str] = None
        self.n_updates = 0
        left = W.VBox(list(controls.values()), layout=W.Layout(min_width="400px"))
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

    # subclasses: compute(**values) -> result; render(result) -> html; figure(result) -> Figure
    def compute(self, **values):
        raise NotImplementedError

    def render(self, result) -> str:
        return html.escape(str(result))

    def figure(self, result) -> Figure:
        raise NotImplementedError


# ---- the cost explorer ------------------------------------------------------------------------
class CostExplorer(Explorer):
    css = "tl-cost-explorer"

    def __init__(self, preset: str = "gpt2_small", seq_len: int = 512, batch_size: int = 4,
                 dtype: Optional[str] = None, results=None, device=None):
        from tutorial_lib import settings

        self.device = settings.get_device(device)
        self.device_name = settings.device_name(self.device)
        self.docs = explore.load_all_results() if results is None else list(results)
        self.measurement: Optional[dict] = None
        dtype = dtype or settings.dtype_name(settings.default_dtype(self.device))
        n_head = PRESETS[preset].n_head
        controls = {
            "preset": _dropdown(list(PRESETS), preset, "model", "preset"),
            "seq_len": _slider(POW2_T, seq_len, "sequence length T", "seq-len"),
            "batch_size": _intslider(batch_size, 1, 64, "batch B", "batch"),
            "n_kv_head": _dropdown(_kv_options(n_head), n_head, "K/V heads", "kv-heads"),
            "attn_backend": _dropdown(list(ATTN_BACKENDS), "sdpa", "attention", "backend"),
            "window": _slider(WINDOWS, 0, "window W", "window"),
            "mlp": _dropdown(["gelu", "swiglu"], "gelu", "MLP kind", "mlp"),
            "mlp_ratio": _slider(RATIOS, 0.0, "MLP ratio", "mlp-ratio"),
            "dtype": _dropdown(DTYPES, dtype, "dtype", "dtype"),
        }
        controls["preset"].observe(self._preset_changed, names="value")
        self.button = W.Button(description="Measure now", icon="play", button_style="primary",
                               tooltip="time, profile and memory-account one training step of this "
                                       "config on this machine")
        self.button.add_class("tl-measure")
        self.progress = W.IntProgress(value=0, min=0, max=3, description="", bar_style="info",
                                      layout=W.Layout(width="260px"))
        self.progress.add_class("tl-progress")
        self.status = W.HTML(f"measures on <b>{html.escape(self.device_name)}</b>")
        self.measured = W.HTML()
        self.measured.add_class("tl-measured")
        self.button.on_click(lambda _b: self.measure())
        super().__init__(controls, [W.HBox([self.button, self.progress, self.status]), self.measured])

    def _preset_changed(self, change):
        n_head = PRESETS[change["new"]].n_head
        kv = self.controls["n_kv_head"]
        with self.hold_trait_notifications():
            kv.options = _kv_options(n_head)
            kv.value = n_head

    def settings(self, **v) -> explore.ExplorerSettings:
        v = v or self.values()
        return explore.ExplorerSettings(
            preset=v["preset"], seq_len=v["seq_len"], batch_size=v["batch_size"],
            n_kv_head=v["n_kv_head"], mlp=v["mlp"], mlp_ratio=v["mlp_ratio"] or None,
            window=v["window"] or None,
            attn_backend=v["attn_backend"], dtype=v["dtype"])

    def compute(self, **v) -> explore.CostPrediction:
        s = self.settings(**v)
        cal = calibration_for(self.device_name, s.dtype, self.docs)
        return explore.predict_cost(s, cal, self.device.type)

    def render(self, p: explore.CostPrediction) -> str:
        big = sorted(p.time_share.items(), key=lambda kv: -kv[1])[:3]
        top = ", ".join(f"{k} {v:.0%}" for k, v in big)
        mem = p.memory["by_kind"]
        return (f"<div><b>{html.escape(p.summary())}</b><br>"
                f"largest predicted time shares: {html.escape(top)}<br>"
                f"memory: params {fmt_bytes(mem['parameters'])}, grads {fmt_bytes(mem['gradients'])}, "
                f"AdamW {fmt_bytes(mem['optimizer state'])}, activations {fmt_bytes(mem['activations'])}"
                f"<br><i>{html.escape(p.basis)}</i></div>")

    def figure(self, p: explore.CostPrediction) -> Figure:
        fig = Figure(figsize=(9.5, 3.8), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
        names = [n for n in explore.DISPLAY_SCOPES
                 if p.flop_share.get(n, 0) > 0.001 or p.time_share.get(n, 0) > 0.001]
        m = self.measurement if (self.measurement and self.measurement["settings"] == p.settings) else None
        y = list(range(len(names)))[::-1]
        h = 0.27 if m else 0.38
        ax1.barh([v + h / 2 for v in y], [p.flop_share.get(n, 0) for n in names], h,
                 color="#1f77b4", label="share of FLOPs")
        ax1.barh([v - h / 2 for v in y], [p.time_share.get(n, 0) for n in names], h,
                 color="#ff7f0e", label="predicted time share" if p.step_ms else "time share (= FLOPs)")
        if m:
            ax1.barh([v - 1.5 * h for v in y], [m["time_share"].get(n, 0) for n in names], h,
                     color="#d62728", label="measured time share")
        ax1.set_yticks(y, names, fontsize=8)
        ax1.legend(fontsize=7, loc="lower right")
        ax1.set_xlabel("share of the training step")
        t = f"predicted {p.step_ms:,.1f} ms/step" if p.step_ms else "not calibrated: press Measure now"
        ax1.set_title(f"{p.settings.preset}, B={p.settings.batch_size}, T={p.settings.seq_len}: {t}",
                      fontsize=9, loc="left")
        bars = [("predicted", p.memory)] + ([("measured", m["memory"])] if m else [])
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
        ax2.set_xlim(0, ax2.get_xlim()[1] * 1.6)
        ax2.legend(fontsize=6, loc="center right")
        ax2.set_title(f"memory, {p.settings.dtype} activations", fontsize=9, loc="left")
        return fig

    def measure(self) -> Optional[dict]:
        """Time (measure_step), profile (profile_step) and memory-account (memory_breakdown) one
        training step of the current config here; calibrate; show it beside the prediction."""
        from tutorial_lib import settings as S
        from tutorial_lib.measure.bench import measure_step
        from tutorial_lib.measure.memory import memory_breakdown
        from tutorial_lib.measure.profile import profile_step

        s = self.settings()
        cfg = s.config()
        prof = S.get_profile(device=self.device)
        before = explore.predict_cost(s, calibration_for(self.device_name, s.dtype, self.docs),
                                      self.device.type)
        self.button.disabled = True
        self.progress.bar_style, self.progress.value = "info", 0
        try:
            self.status.value = "1/3 timing the step (torch.utils.benchmark) ..."
            r = measure_step(cfg, s.batch_size, s.seq_len, mode="train", device=self.device,
                             dtype=s.dtype, min_run_time=prof.min_run_time, warmup=1)
            self.progress.value = 1
            self.status.value = "2/3 profiling components (torch.profiler) ..."
            pr = profile_step(cfg, s.batch_size, s.seq_len, mode="train", device=self.device,
                              dtype=s.dtype, steps=prof.profile_steps, warmup=1)
            self.progress.value = 2
            self.status.value = "3/3 memory (saved-tensor accounting) ..."
            mb = memory_breakdown(cfg, s.batch_size, s.seq_len, device=self.device, dtype=s.dtype)
            self.progress.value = 3
        except Exception as e:  # OOM, a backend without backward here, ...: shown, not raised
            self.progress.bar_style = "danger"
            self.status.value = "failed"
            self.measured.value = (f"<b style='color:#b00'>measurement failed: "
                                   f"{html.escape(type(e).__name__)}: {html.escape(str(e)[:300])}</b>")
            return None
        finally:
            self.button.disabled = False
        scope_ms = explore.profile_scope_ms(pr.rows, r.median_ms)
        _CALIBRATIONS[(self.device_name, s.dtype)] = explore.Calibration.from_measurement(
            s, r.median_ms, str(self.device), self.device_name, scope_ms)
        total = sum(scope_ms.values())
        acts = mb.activations_by_group()
        self.measurement = {
            "settings": s, "step_ms": r.median_ms, "iqr_ms": r.iqr_ms, "tokens_per_s": r.tokens_per_s,
            "time_share": {k: v / total for k, v in scope_ms.items()} if total else {},
            "predicted_before_ms": before.step_ms, "flop_share": before.flop_share,
            "memory": {"by_kind": mb.by_kind(), "activations_by_group": acts,
                       "total": mb.total_bytes},
            "memory_predicted": before.memory["total"], "device_name": self.device_name}
        self.progress.bar_style = "success"
        self.status.value = f"measured on <b>{html.escape(self.device_name)}</b>"
        self.measured.value = self.render_measurement(self.measurement)
        self.update()
        return self.measurement

    @staticmethod
    def render_measurement(m: dict) -> str:
        s = m["settings"]
        pb = m["predicted_before_ms"]
        pred = (f"{pb:,.1f} ms predicted before this run (ratio measured/predicted "
                f"{m['step_ms'] / pb:.2f})" if pb else "no prediction before (nothing to scale by)")
        shares = sorted(m["time_share"].items(), key=lambda kv: -kv[1])[:4]
        sh = ", ".join(f"{k} {v:.0%} of time vs {m['flop_share'].get(k, 0):.0%} of FLOPs"
                       for k, v in shares)
        return (f"<div class='tl-measured-text'><b>measured on {html.escape(m['device_name'])}</b>: "
                f"{html.escape(s.describe())}: <b>{m['step_ms']:,.1f} ms/step</b> "
                f"(IQR {m['iqr_ms']:,.1f} ms), {m['tokens_per_s']:,.0f} tokens/s; {html.escape(pred)}."
                f"<br>components: {html.escape(sh)}.<br>memory: {fmt_bytes(m['memory']['total'])} "
                f"measured (params + grads + AdamW + saved activations) vs "
                f"{fmt_bytes(m['memory_predicted'])} predicted.</div>")


def cost_explorer(**kwargs) -> CostExplorer:
    """The cost explorer (see ``CostExplorer``): ``cost_explorer(seq_len=1024)``."""
    return CostExplorer(**kwargs)


# ---- the decision tree ------------------------------------------------------------------------
class DecisionTree(Explorer):
    css = "tl-decision-tree"

    def __init__(self, seq_len: int = 512, device: Optional[str] = None, goal: str = "speed",
                 results=None):
        from tutorial_lib import settings

        self.docs = explore.load_all_results() if results is None else list(results)
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
        q = "".join(f"<li>{html.escape(x)}</li>" for x in r.quality)
        seed = "<br>".join(html.escape(x) for x in r.seed)
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in r.notes)
        return (f"<div><b>Do first, for {r.goal} at T={r.seq_len} on {r.device}:</b>"
                f"<ol class='tl-steps'>{items or '<li>nothing beats the baseline here</li>'}</ol>"
                f"<b>Little or no gain here:</b><ul>{rest}</ul><b>Quality (not speed):</b><ul>{q}</ul>"
                f"<b>The seed's tree says:</b><br>{seed}<ul>{notes}</ul></div>")

    def figure(self, r: decision.Recommendation) -> Figure:
        ps = [p for p in r.steps + r.no_gain if p.value is not None]
        fig = Figure(figsize=(6.5, 0.45 * len(ps) + 1.2), layout="constrained")
        ax = fig.subplots()
        y = list(range(len(ps)))[::-1]
        ax.barh(y, [p.value for p in ps], color=["#2ca02c" if p.measured else "#9edae5" for p in ps],
                hatch=None)
        for yi, p in zip(y, ps):
            ax.text(p.value, yi, f" {p.value:.2f}x {'measured' if p.measured else 'analytic'}",
                    va="center", fontsize=8)
        ax.axvline(1.0, color="grey", lw=1, ls=":")
        ax.set_yticks(y, [p.title for p in ps], fontsize=8)
        ax.set_xlim(0, max([p.value for p in ps] + [1.0]) * 1.45)
        ax.set_xlabel({"speed": "step speedup", "memory": "memory reduction",
                       "decoding": "decoding speedup"}[r.goal] + " vs the seed's baseline (x)")
        ax.set_title(f"T={r.seq_len}, {r.device}, goal: {r.goal}", fontsize=9, loc="left")
        return fig


def decision_tree(**kwargs) -> DecisionTree:
    """The decision tree (see ``DecisionTree``): ``decision_tree(seq_len=2048, goal="memory")``."""
    return DecisionTree(**kwargs)


from tutorial_lib.lesson_widgets import (  # noqa: E402,F401  (the lesson explorers)
    FlashExplorer, GQAExplorer, WindowExplorer, flash_explorer, gqa_explorer, window_explorer,
)
