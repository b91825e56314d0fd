"""tutorial_lib.lessons.flash_attention: the online-softmax walkthrough against plain maths, the attention
sweep's memory against analytic byte counts, error rows, slopes, figures, whole-model comparison."""
import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from tutorial_lib.lessons import flash_attention as fl
from tutorial_lib.measure import timing
from tutorial_lib.model import get_config


# ---- online softmax walkthrough --------------------------------------------------------------
@pytest.mark.parametrize("tile", [1, 2, 4, 6, 10])
def test_walkthrough_matches_plain_softmax(tile):
    s, v = fl.WORKED_SCORES, fl.WORKED_VALUES
    r = fl.online_softmax_walkthrough(s, v, tile)
    z = [math.exp(x - max(s)) for x in s]
    ref = sum(zi * vi for zi, vi in zip(z, v)) / sum(z)
    assert r["reference"] == pytest.approx(ref, abs=1e-12)
    assert r["final"] == pytest.approx(ref, abs=1e-12) and r["abs_error"] < 1e-12
    assert r["probs"] == pytest.approx([zi / sum(z) for zi in z], abs=1e-12)
    assert len(r["steps"]) == math.ceil(len(s) / tile)
    for st in r["steps"]:  # the running state after each tile, from its definition
        seen = s[:st["keys"][1] + 1]
        m = max(seen)
        assert st["m_new"] == m
        assert st["l"] == pytest.approx(sum(math.exp(x - m) for x in seen), abs=1e-12)
        assert st["acc"] == pytest.approx(sum(math.exp(x - m) * vv for x, vv in zip(seen, v)), abs=1e-12)
        if math.isfinite(st["m_old"]):
            assert st["alpha"] == pytest.approx(math.exp(st["m_old"] - st["m_new"]))


def test_walkthrough_text_and_bad_input():
    text = fl.format_walkthrough(fl.online_softmax_walkthrough())
    lines = text.splitlines()
    assert len(lines) == 1 + 3 + 1 and "-inf" in lines[1] and lines[-1].endswith("True")
    with pytest.raises(ValueError, match="same length"):
        fl.online_softmax_walkthrough((1.0, 2.0), (1.0,))
    with pytest.raises(ValueError, match="tile=0"):
        fl.online_softmax_walkthrough(tile=0)


# ---- attention sweep -------------------------------------------------------------------------
B, H, D = 1, 2, 8
TS = [16, 32, 64]


@pytest.fixture(scope="module")
def rows():
    return fl.attention_sweep(TS, backends=["eager", "tiled", "sdpa", "flex"], batch_size=B,
                              n_head=H, head_dim=D, device="cpu", min_run_time=0.01, tile=16)


def test_sweep_memory_is_analytic(rows):
    by = {(r.backend, r.seq_len): r for r in rows}
    for T in TS:
        eager, tiled, sdpa = by["eager", T], by["tiled", T], by["sdpa", T]
        assert eager.ok and tiled.ok and sdpa.ok
        assert eager.scores_bytes == B * H * T * T * 4
        # eager keeps at least one (B, H, T, T) probability matrix; flash keeps out + logsumexp
        assert eager.saved_bytes >= eager.scores_bytes
        assert tiled.saved_bytes == B * H * T * D * 4 + B * H * T * 4
        assert sdpa.saved_bytes <= 2 * tiled.saved_bytes
        assert eager.median_ms > 0 and tiled.median_ms > 0
        # the CPU allocator's peak (torch.profiler memory events): eager holds a T x T matrix at once
        assert eager.peak_bytes >= eager.scores_bytes and sdpa.peak_bytes > 0
        assert eager.device == "cpu" and eager.dtype == "float32"
    slopes = fl.loglog_slopes(rows)
    assert slopes["eager"] == pytest.approx(2.0, abs=0.15)
    assert slopes["tiled"] == pytest.approx(1.0, abs=0.05)
    assert slopes["sdpa"] == pytest.approx(1.0, abs=0.1)


def test_sweep_records_unsupported_and_carries_on(rows):
    flex = [r for r in rows if r.backend == "flex"]
    assert len(flex) == len(TS) and len(rows) == 4 * len(TS)
    if flex[0].error is not None:  # CPU: no flex backward -> an error row, not an exception
        assert "flex" in flex[0].error and flex[0].saved_bytes is None
    assert math.isnan(fl.loglog_slopes(flex)["flex"]) or flex[0].ok


def test_sweep_records_oom(monkeypatch):
    real = fl._qkv

    def qkv(B, H, T, D, device, dtype, seed=0):
        if T > 16:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return real(B, H, T, D, device, dtype, seed)

    monkeypatch.setattr(fl, "_qkv", qkv)
    rows = fl.attention_sweep([16, 32], backends=["eager", "sdpa"], batch_size=1, n_head=1,
                              head_dim=4, measure_time=False)
    assert [(r.backend, r.seq_len, r.ok) for r in rows] == [
        ("eager", 16, True), ("eager", 32, False), ("sdpa", 16, True), ("sdpa", 32, False)]
    assert "OutOfMemoryError" in rows[1].error and rows[0].median_ms is None


def test_sweep_forward_mode_and_bad_input():
    rows = fl.attention_sweep([8], backends=["sdpa"], n_head=1, head_dim=4, mode="fwd",
                              min_run_time=0.01)
    assert rows[0].ok and rows[0].saved_bytes is None and rows[0].median_ms > 0
    with pytest.raises(ValueError, match="backend='local'"):
        fl.attention_sweep([8], backends=["local"])
    with pytest.raises(ValueError, match="backend='fast'"):
        fl.attention_sweep([8], backends=["fast"])
    with pytest.raises(ValueError, match="seq_len 0"):
        fl.attention_sweep([0])
    with pytest.raises(ValueError, match="empty"):
        fl.attention_sweep([])
    with pytest.raises(ValueError, match="mode='bwd'"):
        fl.attention_sweep([8], mode="bwd")
    with pytest.raises(ValueError, match="n_head=0"):
        fl.attention_sweep([8], n_head=0)


def _fake(backend, T, value):
    return fl.AttentionPoint(backend=backend, seq_len=T, batch_size=1, n_head=1, head_dim=1,
                             device="cpu", device_name="x", dtype="float32", mode="fwdbwd",
                             scores_bytes=T * T, saved_bytes=value, median_ms=float(value))


def test_loglog_slopes_on_known_powers():
    rows = [_fake("quad", T, 3 * T ** 2) for T in (8, 16, 64)] + \
           [_fake("lin", T, 5 * T) for T in (8, 16, 64)] + [_fake("one", 8, 1)]
    s = fl.loglog_slopes(rows)
    assert s["quad"] == pytest.approx(2.0) and s["lin"] == pytest.approx(1.0)
    assert math.isnan(s["one"])
    assert fl.loglog_slopes(rows, "median_ms", last=2)["quad"] == pytest.approx(2.0)


def test_sweep_figure(rows):
    fig = fl.sweep_figure(rows, "saved_bytes")
    ax = fig.get_axes()[0]
    labels = [ln.get_label() for ln in ax.get_lines() if "slope" in ln.get_label()]
    assert len(labels) == 3 and labels[0].startswith("eager (slope 2.")
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    has_flex_error = any(not r.ok for r in rows)
    assert any("not measured" in t.get_text() for t in fig.texts) == has_flex_error
    fl.sweep_figure(rows, "median_ms")
    with pytest.raises(ValueError, match="value='bytes'"):
        fl.sweep_figure(rows, "bytes")


# ---- whole model -----------------------------------------------------------------------------
def test_sweep_times_the_backends_in_interleaved_rounds(monkeypatch):
    """At each T the backends alternate round by round (eager, sdpa, eager, sdpa, ...), so load that
    comes and goes slows both; a noisy backend gets more rounds; speedups are per-round ratios."""
    real, calls = timing.time_fn, []

    def spy(fn, device, **kw):
        calls.append(fn)
        return real(fn, device, **kw)

    monkeypatch.setattr(timing, "time_fn", spy)  # timing.time_rounds times them
    rows = fl.attention_sweep([16], backends=["eager", "sdpa"], batch_size=1, n_head=1, head_dim=4,
                              min_run_time=0.001, rounds=3, measure_peak=False)
    eager, sdpa = rows
    n = len(eager.times_ms)
    assert n == len(sdpa.times_ms) and 3 <= n <= 6 and len(calls) == 2 * n
    assert all(calls[i] is calls[i % 2] for i in range(len(calls))) and calls[0] is not calls[1]  # alternating
    assert eager.speedup == 1.0 and sdpa.speedup_min <= sdpa.speedup <= sdpa.speedup_max
    ratios = sorted(e / s for e, s in zip(eager.times_ms, sdpa.times_ms))
    assert sdpa.speedup == pytest.approx(ratios[len(ratios) // 2] if n % 2 else
                                         (ratios[n // 2 - 1] + ratios[n // 2]) / 2)
    assert eager.median_ms == pytest.approx(sorted(eager.times_ms)[n // 2] if n % 2 else
                                            sum(sorted(eager.times_ms)[n // 2 - 1:n // 2 + 1]) / 2)
    with pytest.raises(ValueError, match="rounds=0"):
        fl.attention_sweep([16], backends=["eager"], rounds=0)


def test_a_noisy_backend_is_re_measured_and_flagged(monkeypatch):
    """Rounds that keep disagreeing (here: every other call 3x slower) are re-measured up to twice
    as many, and the row says noisy."""
    real, n = timing.time_fn, [0]

    def jumpy(fn, device, **kw):
        t = real(fn, device, **kw)
        n[0] += 1
        if n[0] % 4 in (1, 2):  # the whole round slows down: ratios stay steady, times do not
            t.median_ms *= 3
        return t

    monkeypatch.setattr(timing, "time_fn", jumpy)
    eager, sdpa = fl.attention_sweep([16], backends=["eager", "sdpa"], batch_size=1, n_head=1, head_dim=4,
                                     min_run_time=0.001, rounds=2, measure_peak=False)
    assert len(eager.times_ms) == 4 and eager.noisy and eager.spread > 0.5  # [3a, a, 3a, a]: spread ~1


def test_model_backend_comparison():
    cfg = get_config("tiny", vocab_size=512, n_layer=1)
    rows = fl.model_backend_comparison(cfg, 2, 32, min_run_time=0.01)
    eager, sdpa = rows
    assert eager["backend"] == "eager" and sdpa["backend"] == "sdpa"
    assert eager["error"] is None and sdpa["error"] is None
    # eager keeps (B, H, T, T) probabilities per layer; SDPA keeps none
    assert eager["scores_bytes"] >= 2 * cfg.n_head * 32 * 32 * 4 * cfg.n_layer
    assert sdpa["scores_bytes"] == 0
    assert eager["activations_bytes"] > sdpa["activations_bytes"]
    assert eager["params_bytes"] == sdpa["params_bytes"]
    assert eager["median_ms"] > 0 and sdpa["tokens_per_s"] > 0
    # timed in the same interleaved rounds: a paired speedup with its range
    assert eager["rounds"] == sdpa["rounds"] >= 3 and eager["speedup"] == 1.0
    assert sdpa["speedup_min"] <= sdpa["speedup"] <= sdpa["speedup_max"]
    bad = fl.model_backend_comparison(cfg.replace(block_size=32), 1, 16, backends=["flex"],
                                      measure_time=False)
    if bad[0]["error"] is not None:  # CPU: flex cannot train
        assert "flex" in bad[0]["error"]


# ---- the tiling picture ----------------------------------------------------------------------
@pytest.mark.parametrize("T,tile,window", [(100, 32, None), (128, 32, None), (256, 32, 40), (64, 64, None)])
def test_tile_grid_matches_the_pairs_the_kernel_computes(T, tile, window):
    from tutorial_lib.attention.flash_tiled import tiled_pairs

    grid = fl.tile_grid(T, tile, window)
    n = math.ceil(T / tile)
    size = [min(tile, T - i * tile) for i in range(n)]
    computed = sum(size[i] * size[j] for i in range(n) for j in range(n) if grid[i][j] != "skipped")
    assert computed == tiled_pairs(T, tile, window)
    for i in range(n):  # causal: nothing above the diagonal; the diagonal is always masked
        assert all(grid[i][j] == "skipped" for j in range(i + 1, n))
        assert grid[i][i] == "masked" or size[i] == 1
    if window is None:
        assert all(grid[i][j] == "full" for i in range(n) for j in range(i))


def test_tiling_figure():
    fig = fl.tiling_figure(256, 64)
    a1, a2 = fig.get_axes()
    assert "256x256" in a1.get_title() and "(6)" in a2.get_title() and "(4)" in a2.get_title()
    with pytest.raises(ValueError, match="tile=0"):
        fl.tile_grid(16, 0)


def test_flash_point_formula():
    r = fl.flash_point(1024, batch_size=2, dtype="float32", docs=[])
    H = 12
    # exact, as autograd keeps them: the probabilities (B, H, T, T) fp32 and the (T, T) bool mask
    assert r["eager_attention_bytes_per_layer"] == 2 * H * 1024 * 1024 * 4 + 1024 * 1024
    assert r["sdpa_attention_bytes_per_layer"] == 2 * H * 1024 * 4  # one logsumexp per query
    assert r["training_ratio"] > 1
