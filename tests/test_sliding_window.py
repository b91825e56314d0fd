"""The window lesson (tutorial_lib.lessons.sliding_window): the sweep, the payoff, the figures, the
explorer's numbers and the exercise checkers."""
import math

import pytest
from matplotlib.figure import Figure

from tutorial_lib import speedups
from tutorial_lib.attention.reference import causal_mask, visible_pairs
from tutorial_lib.attention.sliding_window import local_pairs
from tutorial_lib.lessons import sliding_window as WL
from tutorial_lib.lessons.common import quality_runs
from tutorial_lib.model import get_config
from tutorial_lib.sizes import get_sizes

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_sizes_for_every_profile():
    for name in ("smoke", "cpu", "gpu"):
        s = get_sizes(name).window
        assert s.window >= 1 and list(s.seq_lens) == sorted(s.seq_lens)
        assert all(T > s.window for T in s.seq_lens[1:])


def test_sweep_rows_memory_and_flex_on_cpu():
    rows = WL.window_sweep([32, 64], window=8, batch_size=1, n_head=2, head_dim=8, device="cpu",
                           min_run_time=0.001, rounds=2)
    by = {(r.impl, r.seq_len): r for r in rows}
    assert {r.impl for r in rows} >= {"causal", "band_mask", "local", "local_sdpa"}
    for impl in ("causal", "band_mask", "local", "local_sdpa"):
        for T in (32, 64):
            r = by[(impl, T)]
            # 2 interleaved rounds, more (up to 4) while tiny timings disagree; the same for every impl
            assert r.ok and 2 <= len(r.round_ms) <= 4 and r.median_ms > 0, (impl, T, r.error)
            assert len(r.round_ms) == len(by[("causal", T)].round_ms)
            assert r.visible_pairs == visible_pairs(T, 8)
    # a (T, T) bool band mask is kept for backward: at least T*T bytes more than plain causal
    assert by[("band_mask", 64)].saved_bytes - by[("causal", 64)].saved_bytes >= 64 * 64
    # the local path keeps O(T): the same as causal when T - W is a multiple of the block
    assert by[("local", 64)].saved_bytes == by[("causal", 64)].saved_bytes
    # the CPU allocator's peak is measured too; the band mask path builds a (T, T) mask in the call
    assert all(r.peak_bytes > 0 for r in rows if r.ok)
    assert by[("band_mask", 64)].peak_bytes >= 64 * 64
    if ("flex", 32) in by:
        assert not by[("flex", 32)].ok and "backward" in by[("flex", 32)].error
        fwd = WL.window_sweep([32], window=8, impls=["flex", "causal"], n_head=2, head_dim=8,
                              device="cpu", mode="fwd", min_run_time=0.001, rounds=1)
        assert all(r.ok and r.saved_bytes is None for r in fwd)


def test_sweep_bad_input():
    with pytest.raises(ValueError, match="impl='nope'"):
        WL.window_sweep([8], 4, impls=["nope"])
    with pytest.raises(ValueError, match="window=0"):
        WL.window_sweep([8], 0)
    with pytest.raises(ValueError, match="seq_lens"):
        WL.window_sweep([], 4)
    with pytest.raises(ValueError, match="mode='bwd'"):
        WL.window_sweep([8], 4, mode="bwd")


def _pt(impl, T, rounds, saved=None):
    return WL.WindowPoint(impl, T, 4, 1, 1, 1, 8, "cpu", "cpu", "float32", "fwdbwd", 0,
                          median_ms=sorted(rounds)[len(rounds) // 2], round_ms=list(rounds),
                          saved_bytes=saved)


def test_speedups_pair_rounds_and_slopes_fit_powers():
    # round 2 ran on a busy machine: both slowed down 3x, the paired ratio stays 4
    rows = [_pt("causal", 100, [8.0, 24.0, 8.0]), _pt("local", 100, [2.0, 6.0, 2.0])]
    assert WL.speedups(rows) == {"causal": {100: 1.0}, "local": {100: 4.0}}
    rows = [_pt("causal", T, [T * T / 1e3]) for T in (64, 128, 256)] + \
           [_pt("local", T, [T / 10]) for T in (64, 128, 256)]
    s = WL.slopes(rows)
    assert math.isclose(s["causal"], 2.0) and math.isclose(s["local"], 1.0)
    assert math.isnan(WL.slopes([_pt("x", 64, [1.0])])["x"])


def test_model_payoff_rows():
    rows = WL.model_payoff("tiny", [64], window=16, device="cpu", min_run_time=0.01, rounds=1)
    (r,) = rows
    assert r["error"] is None and r["full_ms"] > 0 and r["window_ms"] > 0
    # one round: the paired ratio is the ratio of the two times -- and no verdict
    assert math.isclose(r["speedup"], r["full_ms"] / r["window_ms"])
    assert r["speedup_of"].rounds == 1 and r["speedup_of"].verdict == speedups.NO_VERDICT
    assert r["speedup_of"].ceiling is not None


def test_sweep_speedups_carry_rounds_range_and_the_core_ceiling():
    rows = [_pt("causal", 100, [8.0, 24.0, 9.0]), _pt("local", 100, [2.0, 6.0, 2.0])]
    (sp,) = WL.sweep_speedups(rows)["local"].values()
    assert sp.rounds == 3 and (sp.low, sp.high) == (4.0, 4.5) and sp.value == 4.0
    # the band mask computes every score that full causal attention skips: it can never be faster
    assert WL.core_ceiling("band_mask", "causal", 1024, 128, 1, 12, 64) <= 1.0 + 1e-9
    # the local path skips all but ~T x W of the T^2/2 causal pairs: at long T its FLOPs shrink by about
    # (T / 2) / W, an independent count of what a window of W lets through
    T, W = 4096, 128
    assert WL.core_ceiling("local", "causal", T, W, 1, 12, 64) >= 0.5 * (T / 2) / W
    assert WL.core_ceiling("local_sdpa", "causal", T, W, 1, 12, 64) is None  # not in the cost model


# ---- checkers: the right answer passes, each typical mistake is named ----------------------------
def test_check_window_mask():
    assert WL.check_window_mask(lambda T, W: causal_mask(T, T, W)).passed
    r = WL.check_window_mask(lambda T, W: causal_mask(T, T, W + 1))
    assert not r.passed and "one key too many" in r.message
    r = WL.check_window_mask(lambda T, W: causal_mask(T, T, W).T)
    assert not r.passed and "transposed" in r.message
    r = WL.check_window_mask(lambda T, W: causal_mask(T, T))
    assert not r.passed and "plain causal" in r.message

    def todo(T, W):
        raise NotImplementedError
    assert "not implemented" in WL.check_window_mask(todo).message


def test_check_visible_pairs():
    def right(T, W):
        return sum(min(i + 1, W) for i in range(T))
    assert WL.check_visible_pairs(right).passed
    r = WL.check_visible_pairs(lambda T, W: T * W)
    assert not r.passed and "first W-1 queries" in r.message
    r = WL.check_visible_pairs(lambda T, W: T * (T + 1) // 2)
    assert not r.passed and "full causal" in r.message


def test_window_quality_run_starts_from_the_same_weights():
    q = get_sizes("smoke").quality
    base = get_config(q.preset)
    runs = quality_runs({"full": base, "window": base.replace(attn_backend="local", window=q.window)},
                        q, seeds=(0,), steps=4, eval_every=2, eval_batches=1, device="cpu")
    full, win = runs["full"][0], runs["window"][0]
    assert full.val_steps == win.val_steps == [0, 2, 4]
    # the same initial weights: before training, the window barely changes the loss (~ln 50257)
    assert abs(full.val_loss[0] - win.val_loss[0]) < 0.05
    assert win.model["attn_backend"] == "local" and win.model["window"] == q.window
    assert full.model["window"] is None


# ---- figures: what they draw matches the library -------------------------------------------------
@pytest.mark.parametrize("T, W", [(24, 6), (64, 16), (40, 8), (100, 100), (130, 2)])
def test_work_grid_matches_the_schedule_and_the_mask(T, W):
    local = WL.work_grid(T, W, "local")
    used = int((local == WL.USED).sum())
    assert used == visible_pairs(T, W)  # every visible pair is computed, none is lost
    b = max(1, min(64, W // 2))
    if W >= T or (T - W) % b == 0:  # no padding: the figure counts what the kernels are charged
        assert int((local != WL.SKIPPED).sum()) == (local_pairs(T, W, "cpu") if W < T else T * (T + 1) // 2)
    band = WL.work_grid(T, W, "band_mask")
    assert (band != WL.SKIPPED).all() and int((band == WL.USED).sum()) == used
    causal = WL.work_grid(T, None, "causal")
    assert int((causal == WL.USED).sum()) == visible_pairs(T)


def test_work_grid_bad_input():
    with pytest.raises(ValueError, match="impl='nope'"):
        WL.work_grid(8, 2, "nope")
    with pytest.raises(ValueError, match="needs a window"):
        WL.work_grid(8, None, "local")


def test_figures_are_figures():
    assert isinstance(WL.window_work_figure(16, 4), Figure)
    assert isinstance(WL.receptive_field_figure(3, 4, 20), Figure)


@pytest.mark.parametrize("T,W", [(16, 4), (16, None), (13, 5)])
def test_mask_density_is_the_mask_when_the_grid_is_fine(T, W):
    dens = WL.mask_density(T, W, grid=64)
    ref = causal_mask(T, T, W).float().numpy()
    assert (dens == ref).all()


def test_mask_density_keeps_the_number_of_visible_pairs():
    from tutorial_lib.attention.reference import visible_pairs
    T, W, g = 1024, 100, 64
    dens = WL.mask_density(T, W, grid=g)
    assert dens.sum() * (T // g) ** 2 == pytest.approx(visible_pairs(T, W))


def test_window_point_against_a_brute_force_count():
    r = WL.window_point(8, 40, n_layer=3)
    assert r["pairs"] == int(causal_mask(40, 40, 8).sum())
    assert r["pairs_full"] == int(causal_mask(40, 40).sum())
    assert r["receptive_field"] == 3 * 7 + 1
    assert r["flop_ratio"] == pytest.approx(r["pairs_full"] / r["pairs"])
    assert WL.window_point(None, 40)["flop_ratio"] == 1.0
    with pytest.raises(ValueError, match="window"):
        WL.window_point(0, 40)
