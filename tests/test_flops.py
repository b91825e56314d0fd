"""The analytic model's FLOPs (``measure.cost``, convention "counted") vs PyTorch's FlopCounterMode
(exact), its parameter formulas vs the real model, and the datasheet table."""
import pytest
import torch

from tutorial_lib.attention import flash_tiled
from tutorial_lib.attention import reference as ref
from tutorial_lib.lessons import profile as profile_lesson
from tutorial_lib.measure import cost, flops
from tutorial_lib.model import GPT, GPTConfig, get_config

BASE = GPTConfig(n_layer=2, n_head=4, n_embd=64, vocab_size=1000, block_size=64, name="t")
VARIANTS = {
    "mha_sdpa": BASE,
    "eager": BASE.replace(attn_backend="eager"),
    "gqa2": BASE.replace(n_kv_head=2),
    "mqa": BASE.replace(n_kv_head=1),
    "gqa2_eager": BASE.replace(n_kv_head=2, attn_backend="eager"),
    "mlp3x": BASE.replace(mlp_ratio=3.0),
    "swiglu_8/3": BASE.replace(mlp="swiglu"),
    "swiglu_3x": BASE.replace(mlp="swiglu", mlp_ratio=3.0),
    "window_sdpa": BASE.replace(window=7),
    "window_eager": BASE.replace(window=7, attn_backend="eager"),
    "tiled": BASE.replace(attn_backend="tiled", tile_size=8),
    "tiled_window": BASE.replace(attn_backend="tiled", tile_size=8, window=7),
    "learned_layernorm_bias": BASE.replace(pos="learned", norm="layernorm", bias=True, gelu_approx="tanh"),
    "rmsnorm_learned": BASE.replace(pos="learned"),
    "layernorm_nobias": BASE.replace(norm="layernorm"),
    "vocab_pad64": BASE.replace(pad_vocab_multiple=64),
    "untied": BASE.replace(tie_embeddings=False),
    "gqa_swiglu_window": BASE.replace(n_kv_head=2, mlp="swiglu", mlp_ratio=3.0, window=5),
    # activation checkpointing: the counter sees the forward that backward runs again
    "checkpoint_block": BASE.replace(checkpoint="block"),
    "checkpoint_attention_eager": BASE.replace(checkpoint="attention", attn_backend="eager"),
    "checkpoint_mlp_every2": BASE.replace(checkpoint="mlp", checkpoint_every=2, mlp="swiglu", bias=True),
}
B, T = 2, 20  # T not a multiple of the tile (8) or the window (7)


def counted(cfg, B, T, phase):
    return cost.flops_by_scope(cfg, B, T, phase, "counted")


def by_kind(per_scope):
    """The counter's split: attention kernels (the core) against the linear layers' mm/addmm."""
    att = per_scope.get("attention.core", 0)
    return {"linear": sum(per_scope.values()) - att, "attention": att}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_analytic_matches_flop_counter_exactly(name):
    cfg = VARIANTS[name]
    got = flops.count_flops(cfg, B, T)
    fwd, bwd = counted(cfg, B, T, "forward"), counted(cfg, B, T, "backward")
    assert got["fwd"] == sum(fwd.values()) == cost.step_flops(cfg, B, T, "fwd", "counted")
    assert got["bwd"] == sum(bwd.values()) == cost.step_flops(cfg, B, T, "bwd", "counted")
    assert got["fwd_by_component"] == fwd
    assert got["fwd_by_kind"] == by_kind(fwd)
    assert got["bwd_by_kind"] == by_kind(bwd)


@pytest.mark.parametrize("window", [1, 7, 20, 64])
def test_local_backend_matches_counter(window):
    """The local (O(T*W)) backend's schedule as window.py runs it on CPU; update
    flops.local_pairs with window.py."""
    cfg = BASE.replace(attn_backend="local", window=window)
    got = flops.count_flops(cfg, B, T)
    assert (got["fwd"], got["bwd"]) == (sum(counted(cfg, B, T, "forward").values()),
                                        sum(counted(cfg, B, T, "backward").values()))


def test_gpt2_small_at_real_size_matches_counter():
    cfg = get_config("gpt2_small")
    got = flops.count_flops(cfg, 1, 64)
    assert (got["fwd"], got["bwd"]) == (cost.step_flops(cfg, 1, 64, "fwd", "counted"),
                                        cost.step_flops(cfg, 1, 64, "bwd", "counted"))


def test_the_three_conventions_differ_only_in_the_attention_core():
    """counted (full T x T) >= computed (what the kernel does) >= visible (what a query sees), and
    outside the attention core the three are the same FLOPs."""
    for cfg in (BASE, BASE.replace(attn_backend="eager"), BASE.replace(window=7), VARIANTS["tiled_window"]):
        per = {c: cost.flops_by_scope(cfg, B, T, None, c) for c in cost.CONVENTIONS}
        core = {c: per[c].pop("attention.core") for c in per}
        assert per["counted"] == per["computed"] == per["visible"]
        assert core["counted"] >= core["computed"] >= core["visible"] > 0
    vis = cost.flops_by_scope(BASE, B, T, "forward", "visible")["attention.core"]
    assert vis == 2 * 2 * B * BASE.n_head * BASE.head_dim * ref.visible_pairs(T) * BASE.n_layer


def test_counter_needs_our_cpu_flash_formulas():
    """Without the registered formulas the CPU flash kernel is invisible to the counter."""
    from torch.utils.flop_counter import FlopCounterMode
    q = torch.randn(1, 2, 16, 8)
    with FlopCounterMode(display=False) as plain:
        torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
    with flops.flop_counter() as ours:
        torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
    assert plain.get_total_flops() == 0
    assert ours.get_total_flops() == 2 * 2 * 1 * 2 * 16 * 16 * 8  # 2 products x 2*B*H*T*T*D  # full T x T


@pytest.mark.parametrize("name", list(VARIANTS))
def test_param_formula_matches_model(name):
    cfg = VARIANTS[name]
    assert cost.num_params(cfg) == GPT(cfg).num_params()
    assert cost.param_sizes(cfg) == [p.numel() for p in GPT(cfg).parameters()]


def test_gpt2_classic_parameter_count():
    assert cost.num_params(get_config("gpt2_classic")) == 124_439_808


def test_causal_counts_visible_pairs():
    assert ref.visible_pairs(4) == 10 and ref.visible_pairs(10, 3) == 3 + 3 + 3 * 7 + 0
    assert ref.visible_pairs(5, 5) == ref.visible_pairs(5)
    brute = sum(1 for i in range(13) for j in range(13) if j <= i and i - j < 4)
    assert ref.visible_pairs(13, 4) == brute
    # the tiled backend computes whole tiles: between the visible pairs and T^2
    assert ref.visible_pairs(100) < flash_tiled.tiled_pairs(100, 16) < 100 * 100


def test_gpt2_small_shares_the_notebook_states():
    """LM head ~29 % of forward FLOPs; MLP ~60 % and QK^T + AV ~10 % of a block (B=4, T=512)."""
    fwd = counted(get_config("gpt2_small"), 4, 512, "forward")
    assert cost.shares(fwd)["lm_head"] == pytest.approx(0.2903, abs=0.0001)
    block = {k: v for k, v in fwd.items() if k.startswith(("attention", "mlp"))}
    mlp = sum(v for k, v in block.items() if k.startswith("mlp"))
    assert mlp / sum(block.values()) == pytest.approx(0.60, abs=0.02)
    assert block["attention.core"] / sum(block.values()) == pytest.approx(0.10, abs=0.01)


def test_rule_of_thumb_is_close_at_short_length():
    cfg = get_config("gpt2_small")
    r = cost.rule_of_thumb_flops(cfg, 1, 64)
    assert cost.step_flops(cfg, 1, 64, "fwd", "counted") == pytest.approx(r["fwd"], rel=0.02)  # T^2 small at T=64


def test_exercise_checker():
    assert profile_lesson.check_attention_score_flops(2 * 4 * 12 * 512 * 512 * 64).startswith("✓")
    assert "2 FLOPs" in profile_lesson.check_attention_score_flops(4 * 12 * 512 * 512 * 64)
    causal = profile_lesson.attention_score_flops(4, 512, 12, 64, causal=True)
    assert "causal" in profile_lesson.check_attention_score_flops(causal)
    assert profile_lesson.check_attention_score_flops("lots").startswith("✗")


def test_mfu_peak_table():
    assert flops.peak_flops("NVIDIA H200", "bfloat16") == 989e12
    assert flops.peak_flops("NVIDIA A100-SXM4-80GB", torch.bfloat16) == 312e12
    assert flops.peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert flops.peak_flops("AMD EPYC (2 cores)", "float32") is None
    assert flops.mfu(494.5e12, "NVIDIA H100 80GB HBM3", "bfloat16") == pytest.approx(0.5)
    assert flops.mfu(1e12, "some cpu") is None


def test_bad_inputs():
    with pytest.raises(ValueError, match="seq_len=0"):
        cost.flops_by_scope(BASE, 1, 0)
    with pytest.raises(ValueError, match="mode='both'"):
        cost.step_flops(BASE, 1, 8, mode="both")
    with pytest.raises(ValueError, match="convention='causal'"):
        cost.flops_by_scope(BASE, 1, 8, convention="causal")
    with pytest.raises(ValueError, match="phase='optimizer'"):
        cost.flops_by_scope(BASE, 1, 8, phase="optimizer")


def test_every_sdpa_kernel_formula_counts_gqa_as_its_query_heads():
    """GQA (fewer K/V heads) is counted as every query head's two T x T products on every SDPA
    kernel -- the CUDA ones included, which a GPU run dispatches to and which torch 2.11's own
    formulas refuse ("query/key/value shapes are incompatible")."""
    B, H, Hkv, T, D = 2, 8, 2, 16, 32
    q, kv = (B, H, T, D), (B, Hkv, T, D)
    formulas = flops.sdpa_formulas()
    names = {str(op).split(".")[-1] for op in formulas}
    assert {"_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
            "_scaled_dot_product_flash_attention_backward"} <= names
    from torch.utils.flop_counter import sdpa_backward_flop_count

    mha_bwd = sdpa_backward_flop_count(q, q, q, q)  # torch's own formula, where K/V have every head
    assert mha_bwd > 4 * B * H * T * T * D
    for op, fn in formulas.items():
        if str(op).endswith("_backward"):
            assert fn(q, q, kv, kv) == fn(q, q, q, q) == mha_bwd, op
        else:
            assert fn(q, kv, kv) == fn(q, q, q) == 4 * B * H * T * T * D, op
