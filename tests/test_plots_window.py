"""Figures of the window lesson and the closing notebook: what they draw matches the library."""
import numpy as np
import pytest
from matplotlib.figure import Figure

from tutorial_lib import plots_window as PW
from tutorial_lib.measure.flops import local_pairs, visible_pairs


@pytest.mark.parametrize("T, W", [(24, 6), (64, 16), (40, 8), (100, 100), (130, 2)])
def test_work_grid_matches_the_schedule_and_the_mask(T, W):
    local = PW.work_grid(T, W, "local")
    used = int((local == PW.USED).sum())
    assert used == visible_pairs(T, W)  # every visible pair is computed, none is lost
    b = max(1, min(64, W // 2))
    if W >= T or (T - W) % b == 0:  # no padding: the figure counts what the kernels are charged
        assert int((local != PW.SKIPPED).sum()) == (local_pairs(T, W, "cpu") if W < T else T * (T + 1) // 2)
    band = PW.work_grid(T, W, "band_mask")
    assert (band != PW.SKIPPED).all() and int((band == PW.USED).sum()) == used
    causal = PW.work_grid(T, None, "causal")
    assert int((causal == PW.USED).sum()) == visible_pairs(T)


def test_work_grid_bad_input():
    with pytest.raises(ValueError, match="impl='nope'"):
        PW.work_grid(8, 2, "nope")
    with pytest.raises(ValueError, match="needs a window"):
        PW.work_grid(8, None, "local")


def test_figures_are_figures():
    assert isinstance(PW.window_work_figure(16, 4), Figure)
    assert isinstance(PW.receptive_field_figure(3, 4, 20), Figure)
    f = PW.decision_tree_figure([("GQA-4", 1.1), ("3x MLP", None)], [("window", 2.0)], "T=256", "T=1024")
    texts = [t.get_text() for t in f.axes[0].texts]
    assert any("GQA-4: 1.10× step" in t for t in texts) and any("not measured" in t for t in texts)


def test_loss_curves():
    class H:
        val_steps, val_loss, val_wall_s = [0, 5], [10.0, 8.0], [0.0, 1.0]
    f = PW.loss_curves({"a": H, "b": H}, title="t")
    assert len(f.axes) == 2 and len(f.axes[0].lines) == 2
    assert np.allclose(f.axes[1].lines[0].get_xdata(), [0.0, 1.0])
