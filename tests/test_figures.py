"""Figures as a learner reads them at the notebook's width: every legend off the data (and off
the x axis it sits under), every text at 8 pt or more, and points that coincide still visible.

Each figure is drawn with Agg and its artists' boxes compared in pixels -- what a reader would
see overlap, overlaps here."""
from __future__ import annotations

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from tutorial_lib.lessons import common, gqa, lm_head, profile
from tutorial_lib.lessons.roofline import roofline_figure
from tutorial_lib.lessons.sliding_window import window_work_figure
from tutorial_lib.measure.ceilings import Ceilings
from tutorial_lib.train import TrainHistory

W_ = pytest.importorskip("ipywidgets")
from tutorial_lib import widgets


def drawn(fig):
    FigureCanvasAgg(fig).draw()
    return fig, fig.canvas.get_renderer()


def legends_off_the_data(fig) -> None:
    """Every legend of ``fig`` (axes' and figure's) lies inside the figure and overlaps no axes'
    data area and no x axis (ticks, tick labels, label)."""
    fig, r = drawn(fig)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    assert legends, "no legend drawn"
    page = fig.bbox
    for leg in legends:
        box = leg.get_window_extent(r)
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, (
            "legend outside the figure", box, page)
        for ax in fig.axes:
            area = ax.get_window_extent(r)
            assert not box.overlaps(area), ("legend over the data", [t.get_text() for t in leg.get_texts()])
            xaxis = ax.xaxis.get_tightbbox(r)
            if xaxis is not None and xaxis.width > 0:
                assert not box.overlaps(xaxis), ("legend over an x axis", [t.get_text() for t in leg.get_texts()])


def fonts_at_least_8pt(fig) -> None:
    fig, _ = drawn(fig)
    small = [(t.get_text(), t.get_fontsize()) for t in fig.findobj(Text)
             if t.get_text().strip() and t.get_visible() and t.get_fontsize() < 8]
    assert not small, small


def _history(loss):
    return TrainHistory(model={}, config={}, optimizer="adamw", device="cpu", dtype="float32", world_size=1,
                        n_params=1, tokens_per_step=1, val_steps=[0, 10, 20], val_loss=list(loss),
                        val_wall_s=[0.0, 1.0, 2.0])


def _ceilings():
    return Ceilings(device="cpu", device_name="a CPU", dtype="float32", peak_flops=1e11, bandwidth=2e10,
                    overhead_s=5e-6)


def _decode_rows():
    rows = []
    for attn, h, speed in (("MHA", 12, 1.0), ("GQA-4", 4, 1.4), ("MQA", 1, 1.8)):
        for ctx in (128, 1024, 8192):
            rows.append(gqa.DecodeResult(attention=attn, n_kv_head=h, context=ctx, batch_size=1, new_tokens=8,
                                         device="cpu", device_name="a CPU", dtype="float32", preset="gpt2_mini",
                                         cache_bytes=2 * 4 * h * ctx * 32 * 4, ms_per_step=10 / speed,
                                         tokens_per_s=100 * speed))
    return rows


def _head_rows():
    rows = []
    for impl, chunk in (("full", None), ("chunked", 64), ("chunked", 256)):
        rows.append(lm_head.HeadPoint(impl=impl, tokens=1024, n_embd=64, vocab=1000, chunk=chunk, device="cpu",
                                      device_name="a CPU", dtype="float32", logits_bytes=4 * 1024 * 1000,
                                      saved_bytes=4 * 1024 * (1000 if chunk is None else 1), median_ms=5.0,
                                      min_ms=4.5, max_ms=5.5))
    return rows


FIGURES = {
    "cost explorer": lambda: (lambda ex: ex.figure(ex.result))(widgets.cost_explorer(results=[], device="cpu")),
    "gqa explorer": lambda: (lambda ex: ex.figure(ex.result))(widgets.gqa_explorer(results=[])),
    "flash explorer": lambda: (lambda ex: ex.figure(ex.result))(widgets.flash_explorer(results=[])),
    "window explorer": lambda: (lambda ex: ex.figure(ex.result))(widgets.window_explorer()),
    "loss curves": lambda: common.loss_curves({"MHA": [_history((5.0, 4.0, 3.5)), _history((5.1, 4.1, 3.4))],
                                              "GQA-4 (a long label)": _history((5.0, 4.2, 3.6))}),
    "log-log scaling": lambda: common.loglog_scaling({"eager": ([256, 512, 1024], [1.0, 4.0, 16.0]),
                                                     "sdpa": ([256, 512, 1024], [0.5, 1.0, 2.0])}),
    "decode": lambda: gqa.decode_figure(_decode_rows()),
    "head sweep": lambda: lm_head.sweep_figure(_head_rows(), "chunk"),
    "head payoff": lambda: lm_head.payoff_figure([
        {"variant": "full", "median_ms": 10.0, "head_loss_bytes": 8 * 2**20, "activations_bytes": 20 * 2**20},
        {"variant": "chunked", "median_ms": 9.0, "speedup": 1.1, "speedup_min": 1.0, "speedup_max": 1.2,
         "head_loss_bytes": 2**20, "activations_bytes": 13 * 2**20}]),
    "flop vs time": lambda: profile.flop_vs_time({"mlp": 0.6, "attention": 0.3, "lm_head": 0.1},
                                                 {"mlp": 0.4, "attention": 0.3, "lm_head": 0.3}),
    "roofline": lambda: roofline_figure([{"scope": "mlp.up", "phase": "forward", "intensity": 50.0,
                                          "achieved_flops": 5e10, "bound": "compute", "measured_ms": 2.0,
                                          "predicted_ms": 1.5}], _ceilings(), title="a roofline"),
    "window work": lambda: window_work_figure(24, 6),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_legends_sit_off_the_data(name):
    legends_off_the_data(FIGURES[name]())


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_text_is_at_least_8pt(name):
    fonts_at_least_8pt(FIGURES[name]())


def test_explorer_figures_are_drawn_at_a_readable_dpi():
    assert widgets.FIGURE_DPI >= 100


def test_coinciding_sdpa_and_tiled_points_both_show():
    """sdpa and the tiled kernel keep the same bytes: their measured points coincide, and each must
    stay visible -- different markers, the one drawn later smaller than the one under it."""
    doc = {"meta": {"device": "cpu", "device_name": "a CPU", "dtype": "float32"}, "rows": [
        {"kind": "flash_vs_T", "backend": b, "seq_len": T, "batch_size": 1, "n_head": 12,
         "saved_bytes": (4 * 12 * T if b != "eager" else 4 * 12 * T * T)} for b in ("eager", "sdpa", "tiled")
        for T in (256, 512)]}
    f = widgets.flash_explorer(results=[doc])
    assert {m["backend"] for m in f.result["measured"]} == {"eager", "sdpa", "tiled"}
    fig = f.figure(f.result)
    lines = {ln.get_label().split(":")[0]: ln for ln in fig.axes[0].get_lines()
             if ln.get_label().startswith(("sdpa:", "tiled:"))}
    sdpa, tiled = lines["sdpa"], lines["tiled"]
    assert list(sdpa.get_xdata()) == list(tiled.get_xdata()) and list(sdpa.get_ydata()) == list(tiled.get_ydata())
    assert sdpa.get_marker() != tiled.get_marker()
    later, earlier = (tiled, sdpa) if fig.axes[0].get_lines().index(tiled) > fig.axes[0].get_lines().index(sdpa) \
        else (sdpa, tiled)
    assert later.get_markersize() < earlier.get_markersize()  # the top one sits inside the one below
    assert later.get_markerfacecolor() == "none"


def test_roofline_points_near_the_ridge_are_numbered_and_named_in_a_key():
    """Points crowded near the ridge once carried their names and piled up unreadably: each
    labelled point carries a number in the axes, and the key beside the axes names it, clear of
    the legend and of the data."""
    c = _ceilings()
    scopes = ["attention.qkv", "attention.core", "attention.out", "mlp.up", "mlp.down", "lm_head", "loss", "norm"]
    points = [{"scope": s, "phase": ph, "intensity": c.ridge * (1 + 0.02 * i), "achieved_flops": 2e10 * (1 + 0.01 * i),
               "bound": "memory", "measured_ms": 1.0, "predicted_ms": 1.0}
              for i, (s, ph) in enumerate((s, ph) for s in scopes for ph in ("forward", "backward"))]
    fig, r = drawn(roofline_figure(points, c, title="crowded"))
    ax = fig.axes[0]
    numbers = [t for t in ax.texts if t.get_text().strip().isdigit()]
    assert [int(t.get_text()) for t in numbers] == list(range(1, len(points) + 1))
    key = next(t for t in ax.texts if t.get_text().startswith("labelled points"))
    lines = key.get_text().splitlines()[1:]
    assert [ln.split()[0] for ln in lines] == [str(i) for i in range(1, len(points) + 1)]
    assert all(f"{p['scope']} {p['phase'][:3]}" in ln for p, ln in zip(points, lines))
    box = key.get_window_extent(r)
    assert not box.overlaps(ax.get_legend().get_window_extent(r)) and not box.overlaps(ax.get_window_extent(r))
    assert box.x1 <= fig.bbox.x1 + 1 and box.y0 >= fig.bbox.y0 - 1
