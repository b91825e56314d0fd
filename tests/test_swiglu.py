"""tutorial_lib.lessons.swiglu (notebook 05): curves at equal steps / equal time, recorded GPU
histories, the optimizer's own cost, and the exercise checkers."""
import math

import pytest

from tutorial_lib import data
from tutorial_lib.lessons import swiglu as L
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


def test_epochs():
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


def test_check_swiglu_hidden():
    assert L.check_swiglu_hidden(lambda C, r: round(2 * r * C / 3)).passed
    bad = L.check_swiglu_hidden(lambda C, r: r * C)
    assert not bad.passed and "three matrices" in bad.message
    todo = L.check_swiglu_hidden(lambda C, r: (_ for _ in ()).throw(NotImplementedError))
    assert not todo.passed and "not implemented" in todo.message


def test_check_newton_schulz_flops():
    assert L.check_newton_schulz_flops(newton_schulz_flops).passed
    bad = L.check_newton_schulz_flops(lambda r, c, k: newton_schulz_flops(r, c, k) // k)
    assert not bad.passed and "ns_steps" in bad.message
    tall = L.check_newton_schulz_flops(
        lambda r, c, k: k * (4 * max(r, c) ** 2 * min(r, c) + 2 * max(r, c) ** 3))
    assert not tall.passed and "transposes" in tall.message
