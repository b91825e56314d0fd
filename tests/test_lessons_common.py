"""tutorial_lib.lessons.common: interleaved A/B timing, quality runs over seeds and their verdicts,
loss curves."""
import pytest

from tutorial_lib.lessons import common as C
from tutorial_lib.lessons.mlp_expansion import VARIANTS_04, mlp_variants
from tutorial_lib.measure import timing
from tutorial_lib.model import get_config
from tutorial_lib.sizes import Quality
from tutorial_lib.train import TrainHistory

TINY_Q = Quality(preset="tiny", batch=2, seq_len=16, steps=4, eval_every=2, eval_batches=1, window=4,
                 seeds=(0, 1))


def _history(val_steps, val_loss, step_s, name="m"):
    n = val_steps[-1]
    wall = [step_s * s for s in val_steps]
    return TrainHistory(model={"name": name}, config={"batch_size": 2, "seq_len": 4}, optimizer="adamw",
                        device="cpu", dtype="float32", world_size=1, n_params=1, tokens_per_step=8,
                        steps=list(range(1, n + 1)), train_loss=[1.0] * n, lr=[1.0] * n,
                        grad_norm=[1.0] * n, step_time_s=[step_s] * n, optimizer_time_s=[step_s / 2] * n,
                        val_steps=val_steps, val_loss=val_loss, val_wall_s=wall)


def test_measure_variants_on_tiny():
    configs = mlp_variants(get_config("tiny"), VARIANTS_04)
    rows = C.measure_variants(configs, 1, 16, rounds=2, min_run_time=0.01, device="cpu")
    assert [r["variant"] for r in rows] == list(configs)
    assert all(r["error"] is None and r["median_ms"] > 0 and 2 <= len(r["times_ms"]) <= 4 for r in rows)
    assert rows[0]["speedup"] == 1.0 and rows[1]["speedup_min"] <= rows[1]["speedup"] <= rows[1]["speedup_max"]
    # exact memory: the 3x model has fewer parameters, so fewer parameter bytes
    assert rows[1]["memory_by_kind"]["parameters"] < rows[0]["memory_by_kind"]["parameters"]


def test_quality_runs_one_history_per_seed_and_errors_as_text():
    base = get_config("tiny")
    runs = C.quality_runs({"base": base, "muon": (base, "muon"), "again": (base, "adamw"),
                           "flex": base.replace(attn_backend="flex")}, TINY_Q)  # no CPU backward
    assert [len(v) for v in runs.values()] == [2, 2, 2, 2]
    assert all(isinstance(e, str) and "cannot train on CPU" in e for e in runs["flex"])
    assert "cannot train on CPU" in C.quality_table(runs)[-1]["error"]
    h0, h1 = runs["base"]
    assert isinstance(h0, TrainHistory) and h0.config["seed"] == 0 and h1.config["seed"] == 1
    assert h0.val_loss != h1.val_loss  # another seed: another init and other batches
    assert runs["again"][0].val_loss == h0.val_loss  # the same seed is bit-identical on CPU
    assert runs["muon"][0].optimizer == "muon"


def test_quality_table_says_too_short_to_tell_unless_two_sd_apart():
    def runs(*finals):
        return [_history([0, 10], [10.0, f], 1.0) for f in finals]

    rows = {r["variant"]: r for r in C.quality_table({
        "base": runs(5.0, 5.2, 4.9),
        "clearly better": runs(4.5, 4.7, 4.4),  # -0.5 on every seed: sd 0
        "noisy": runs(4.8, 5.5, 4.7),  # mean -0.033, sd of the differences 0.25
        "one seed": runs(4.0),
    })}
    assert rows["base"]["verdict"] is None and rows["base"]["val_loss"] == pytest.approx(5.0333, abs=1e-4)
    assert rows["clearly better"]["vs_baseline"] == pytest.approx(-0.5)
    assert rows["clearly better"]["verdict"] == "lower"
    assert rows["noisy"]["verdict"] == C.TOO_SHORT
    assert rows["one seed"]["verdict"] == C.TOO_SHORT and rows["one seed"]["vs_baseline_sd"] is None
    assert rows["noisy"]["val_loss_sd"] == pytest.approx(0.4359, abs=1e-4)


def test_loss_curves_draw_mean_and_band():
    fast = [_history([0, 5, 10], [10.0, 6.0, 5.0], step_s=1.0), _history([0, 5, 10], [10.0, 6.2, 5.1], 1.0)]
    fig = C.loss_curves({"fast": fast, "single": fast[0], "failed": ["RuntimeError: x"]}, title="t")
    a1, a2 = fig.axes
    assert [ln.get_label() for ln in a1.get_lines()] == ["fast (2 seeds)", "single"]
    assert len(a1.collections) == 1  # the min-max band of the run with seeds


def test_quality_table_leaves_a_diverged_run_out_and_names_it():
    """Before: a diverged run's final_val_loss was its last validation *before* it diverged (often
    the untrained model's), averaged in as if it had finished."""
    diverged = _history([0, 10], [10.0, 9.0], 1.0)
    diverged.diverged, diverged.diverged_at_step = True, 7
    diverged.config["seed"] = 1
    rows = {r["variant"]: r for r in C.quality_table({
        "base": [_history([0, 10], [10.0, 5.0], 1.0), _history([0, 10], [10.0, 5.2], 1.0)],
        "hot lr": [_history([0, 10], [10.0, 4.0], 1.0), diverged],
    })}
    assert rows["hot lr"]["seeds"] == 1 and rows["hot lr"]["val_loss"] == pytest.approx(4.0)
    assert rows["hot lr"]["error"] == "seed 1 diverged at step 7"
    assert rows["hot lr"]["vs_baseline"] == pytest.approx(-1.0)  # paired with seed 0 only


def test_a_compiled_variant_is_compiled_and_timed_in_the_same_rounds(monkeypatch):
    seen = {}
    real = C.prepare_step

    def spy(cfg, *a, compile=False, **k):
        seen[cfg.mlp_ratio] = compile
        return real(cfg, *a, compile=False, **k)  # the compile flag is what is under test, not inductor

    monkeypatch.setattr(C, "prepare_step", spy)
    configs = mlp_variants(get_config("tiny"), VARIANTS_04)
    rows = C.measure_variants(configs, 1, 16, rounds=2, min_run_time=0.01, device="cpu", memory=False,
                              compiled=["GELU 3x"])
    assert seen == {4.0: False, 3.0: True}
    assert [r["compile"] for r in rows] == [False, True] and all(2 <= len(r["times_ms"]) <= 4 for r in rows)


def test_noisy_rounds_are_re_measured_and_flagged(monkeypatch):
    """A variant whose rounds disagree gets more rounds; if they still disagree, the row says noisy."""
    ticks = iter([10.0, 10.0, 10.0, 30.0] + [10.0, 30.0] * 10)  # the second variant jumps about

    class FakeTiming:
        def __init__(self, ms):
            self.median_ms = ms

    monkeypatch.setattr(timing, "time_fn", lambda *a, **k: FakeTiming(next(ticks)))
    configs = mlp_variants(get_config("tiny"), VARIANTS_04)
    rows = C.measure_variants(configs, 1, 16, rounds=2, max_rounds=4, device="cpu", memory=False)
    assert [len(r["times_ms"]) for r in rows] == [4, 4]  # 2 rounds, then 2 more while it disagreed
    assert not rows[0]["noisy"] and rows[1]["noisy"] and rows[1]["spread"] == pytest.approx(20 / 30)  # 10,30,30,30
    note = C.noise_note(rows)
    assert "GELU 3x" in note and "quieter machine" in note and "its range" in note
    assert C.noise_note(rows[:1]) == ""
    assert timing.spread_of([10.0]) == 0.0
