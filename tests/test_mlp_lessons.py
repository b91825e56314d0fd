"""tutorial_lib.mlp_lessons (notebooks 04/05): costs against built models, timing rows, curves at
equal steps / equal time, recorded GPU histories, and the exercise checkers."""
import math

import pytest
import torch

from tutorial_lib import mlp_lessons as L
from tutorial_lib.config import get_config
from tutorial_lib.model import GPT
from tutorial_lib.optim import newton_schulz_flops
from tutorial_lib.train import TrainHistory


def _history(val_steps, val_loss, step_s, name="m"):
    n = val_steps[-1]
    wall = [step_s * s for s in val_steps]
    return TrainHistory(model={"name": name}, config={"batch_size": 2, "seq_len": 4}, optimizer="adamw",
                        device="cpu", dtype="float32", world_size=1, n_params=1, tokens_per_step=8,
                        steps=list(range(1, n + 1)), train_loss=[1.0] * n, lr=[1.0] * n,
                        grad_norm=[1.0] * n, step_time_s=[step_s] * n, optimizer_time_s=[step_s / 2] * n,
                        val_steps=val_steps, val_loss=val_loss, val_wall_s=wall)


@pytest.mark.parametrize("variants", [L.VARIANTS_04, L.VARIANTS_05])
def test_cost_rows_match_built_models(variants):
    base = get_config("tiny", n_embd=96, n_head=4)
    configs = L.mlp_variants(base, variants)
    rows = L.cost_rows(configs, batch_size=2, seq_len=16)
    for r, (label, cfg) in zip(rows, configs.items()):
        model = GPT(cfg)
        assert r["params"] == model.num_params(), label
        assert r["mlp_params"] == sum(p.numel() for b in model.blocks for p in b.mlp.parameters())
    assert rows[0]["params_ratio"] == 1.0 and 0 < rows[0]["mlp_flop_share"] < 1


def test_mlp_params_with_bias():
    cfg = get_config("tiny", bias=True, mlp="swiglu")
    assert L.mlp_params(cfg) == sum(p.numel() for p in GPT(cfg).blocks[0].mlp.parameters())


def test_gpt2_small_numbers_the_notebooks_print():
    rows = {r["variant"]: r for r in L.cost_rows(L.mlp_variants(get_config("gpt2_small"), L.VARIANTS_05))}
    assert rows["SwiGLU 8/3x"]["mlp_params"] == rows["GELU 4x"]["mlp_params"]  # param-matched, exactly
    three = L.cost_rows(L.mlp_variants(get_config("gpt2_small"), L.VARIANTS_04))[1]
    assert three["mlp_params_ratio"] == 0.75
    assert 0.85 < three["params_ratio"] < 0.9  # the whole model loses far less than 25 %


def test_equal_steps_and_equal_time():
    fast = _history([0, 5, 10], [10.0, 6.0, 5.0], step_s=1.0, name="fast")
    slow = _history([0, 5, 10], [10.0, 5.5, 4.5], step_s=2.0, name="slow")
    steps = {r["run"]: r for r in L.at_equal_steps({"fast": fast, "slow": slow})}
    assert steps["slow"]["val_loss"] < steps["fast"]["val_loss"]  # better per step...
    t = {r["run"]: r for r in L.at_equal_time({"fast": fast, "slow": slow})}
    assert t["fast"]["seconds"] == t["slow"]["seconds"] == 10.0
    assert t["fast"]["steps_done"] == 10 and t["slow"]["steps_done"] == 5
    assert t["fast"]["val_loss"] < t["slow"]["val_loss"]  # ...worse per second
    # between validation points the curve is read linearly, as it is plotted
    assert fast.val_loss_at_time(2.5) == pytest.approx(8.0)
    assert fast.steps_at_time(2.5) == pytest.approx(2.5)
    assert slow.val_loss_at_time(-1) == 10.0 and slow.val_loss_at_time(1e9) == 4.5
    fig = L.curves_figure({"fast": fast, "slow": slow}, title="x")
    assert len(fig.axes) == 2


def test_epochs():
    from tutorial_lib import data

    h = _history([0, 10], [1.0, 1.0], 1.0)
    assert L.epochs(h) == pytest.approx(10 * 8 / len(data.get_split("train")))


def test_recorded_gpu_histories_load():
    names = {"GELU 4x": "train_gpu_gelu4_adamw", "GELU 4x + Muon": "train_gpu_gelu4_muon"}
    runs = L.load_histories("train_h200_1000", names)
    if not runs:
        pytest.skip("no recorded GPU runs in this checkout")
    for h in runs.values():
        assert h.device.startswith("cuda") and h.dtype == "bfloat16" and len(h.steps) == 1000
        assert h.val_steps[0] == 0 and h.val_steps[-1] == 1000
        assert all(math.isfinite(v) for v in h.val_loss)
    assert L.load_histories("train_h200_1000", {"x": "no_such_file"}) == {}


def test_measure_variants_and_mlp_alone_on_tiny():
    configs = L.mlp_variants(get_config("tiny"), L.VARIANTS_04)
    rows = L.measure_variants(configs, 1, 16, rounds=1, min_run_time=0.01, device="cpu")
    assert [r["variant"] for r in rows] == list(configs)
    assert all(r["error"] is None and r["median_ms"] > 0 for r in rows)
    assert rows[0]["speedup"] == 1.0
    # exact memory: the 3x model has fewer parameters, so fewer parameter bytes
    assert rows[1]["memory_by_kind"]["parameters"] < rows[0]["memory_by_kind"]["parameters"]
    alone = L.mlp_alone_timing(configs, tokens=16, rounds=1, min_run_time=0.01, device="cpu")
    assert alone[0]["speedup"] == 1.0 and alone[1]["hidden"] == 192


def test_lesson_sizes():
    assert L.LessonSizes.for_profile("smoke").train_preset == "tiny"
    cpu = L.LessonSizes.for_profile("cpu")
    assert cpu.train_seq == 64 and cpu.train_config().steps == cpu.train_steps
    assert L.LessonSizes.for_profile("gpu").step_preset == "gpt2_small"


# ---- exercise checkers: the right answer passes, typical mistakes are named --------------------
def test_check_swiglu_hidden():
    assert L.check_swiglu_hidden(lambda C, r: round(2 * r * C / 3)).passed
    bad = L.check_swiglu_hidden(lambda C, r: r * C)
    assert not bad.passed and "three matrices" in bad.message
    todo = L.check_swiglu_hidden(lambda C, r: (_ for _ in ()).throw(NotImplementedError))
    assert not todo.passed and "not implemented" in todo.message


def test_check_amdahl():
    assert L.check_amdahl(lambda s, k: 1 / ((1 - s) + s / k)).passed
    bad = L.check_amdahl(lambda s, k: 1 + s * (k - 1))
    assert not bad.passed and "add up the *times*" in bad.message


def test_check_newton_schulz_flops():
    assert L.check_newton_schulz_flops(newton_schulz_flops).passed
    bad = L.check_newton_schulz_flops(lambda r, c, k: newton_schulz_flops(r, c, k) // k)
    assert not bad.passed and "ns_steps" in bad.message
    tall = L.check_newton_schulz_flops(
        lambda r, c, k: k * (4 * max(r, c) ** 2 * min(r, c) + 2 * max(r, c) ** 3))
    assert not tall.passed and "transposes" in tall.message


def test_figures_return_figures():
    fig = L.mlp_figure(L.mlp_variants(get_config("gpt2_small"), L.VARIANTS_05))
    assert len(fig.axes) == 3
    assert "4.72M" in fig.axes[0].get_title() and "4.72M" in fig.axes[1].get_title()
