"""The window lesson's measuring functions and exercise checkers (tutorial_lib.window_lessons)."""
import dataclasses
import math

import pytest
import torch

from tutorial_lib import window_lessons as WL
from tutorial_lib.attention import causal_mask
from tutorial_lib.measure.flops import visible_pairs


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_sizes_for_every_profile():
    for name in ("smoke", "cpu", "gpu"):
        s = WL.WindowSizes.for_profile(name)
        assert s.profile == name and s.window >= 1 and list(s.seq_lens) == sorted(s.seq_lens)
        assert all(T > s.window for T in s.seq_lens[1:])
    with pytest.raises(ValueError, match="'nope'"):
        WL.WindowSizes.for_profile("nope")


def test_sweep_rows_memory_and_flex_on_cpu():
    rows = WL.window_sweep([32, 64], window=8, batch_size=1, n_head=2, head_dim=8, device="cpu",
                           min_run_time=0.001, rounds=2)
    by = {(r.impl, r.seq_len): r for r in rows}
    assert {r.impl for r in rows} >= {"causal", "band_mask", "local", "local_sdpa"}
    for impl in ("causal", "band_mask", "local", "local_sdpa"):
        for T in (32, 64):
            r = by[(impl, T)]
            assert r.ok and len(r.round_ms) == 2 and r.median_ms > 0, (impl, T, r.error)
            assert r.visible_pairs == visible_pairs(T, 8)
    # a (T, T) bool band mask is kept for backward: at least T*T bytes more than plain causal
    assert by[("band_mask", 64)].saved_bytes - by[("causal", 64)].saved_bytes >= 64 * 64
    # the local path keeps O(T): the same as causal when T - W is a multiple of the block
    assert by[("local", 64)].saved_bytes == by[("causal", 64)].saved_bytes
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
    # one round: the paired ratio is the ratio of the two times
    assert math.isclose(r["speedup"], r["full_ms"] / r["window_ms"])


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


def test_quality_runs_same_seed_same_batches():
    s = dataclasses.replace(WL.WindowSizes.for_profile("smoke"), quality_steps=4, eval_every=2,
                            eval_batches=1)
    runs = WL.quality_runs(s, device="cpu")
    full, win = runs["full"], runs[f"window W={s.quality_window}"]
    assert full.val_steps == win.val_steps == [0, 2, 4]
    # the same initial weights: before training, the window barely changes the loss (~ln 50257)
    assert abs(full.val_loss[0] - win.val_loss[0]) < 0.05
    assert win.model["attn_backend"] == "local" and win.model["window"] == s.quality_window
    assert full.model["window"] is None
