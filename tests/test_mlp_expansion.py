"""tutorial_lib.lessons.mlp_expansion (notebook 04): costs against built models, the MLP timed
alone, the figure, and the exercise checker."""
import pytest

from tutorial_lib.lessons import mlp_expansion as L
from tutorial_lib.lessons.swiglu import VARIANTS_05
from tutorial_lib.model import GPT, get_config


@pytest.mark.parametrize("variants", [L.VARIANTS_04, VARIANTS_05])
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
    rows = {r["variant"]: r for r in L.cost_rows(L.mlp_variants(get_config("gpt2_small"), VARIANTS_05))}
    assert rows["SwiGLU 8/3x"]["mlp_params"] == rows["GELU 4x"]["mlp_params"]  # param-matched, exactly
    three = L.cost_rows(L.mlp_variants(get_config("gpt2_small"), L.VARIANTS_04))[1]
    assert three["mlp_params_ratio"] == 0.75
    assert 0.85 < three["params_ratio"] < 0.9  # the whole model loses far less than 25 %


def test_mlp_alone_on_tiny():
    configs = L.mlp_variants(get_config("tiny"), L.VARIANTS_04)
    alone = L.mlp_alone_timing(configs, tokens=16, rounds=1, min_run_time=0.01, device="cpu")
    assert alone[0]["speedup"] == 1.0 and alone[1]["hidden"] == 192


def test_check_amdahl():
    assert L.check_amdahl(lambda s, k: 1 / ((1 - s) + s / k)).passed
    bad = L.check_amdahl(lambda s, k: 1 + s * (k - 1))
    assert not bad.passed and "add up the *times*" in bad.message


def test_mlp_figure():
    fig = L.mlp_figure(L.mlp_variants(get_config("gpt2_small"), VARIANTS_05))
    assert len(fig.axes) == 3
    assert "4.72M" in fig.axes[0].get_title() and "4.72M" in fig.axes[1].get_title()
