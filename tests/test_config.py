"""GPTConfig: presets, derived sizes, and a ValueError naming the field and the value for bad input."""
import dataclasses
import re

import pytest

from tutorial_lib.model import PRESETS, GPTConfig, get_config


def _both(*parts):
    """A regex that needs every part (escaped), in any order."""
    return "".join(f"(?=.*{re.escape(p)})" for p in parts)


# ---- bad input: each names the field and the value --------------------------------------------
BAD = [
    # (changes, strings the message must contain)
    (dict(n_embd=100, n_head=12), ["n_embd", "100", "n_head", "12"]),
    (dict(n_embd=768, n_head=7), ["n_embd", "768", "n_head", "7"]),
    (dict(n_head=12, n_kv_head=5), ["n_head", "12", "n_kv_head", "5"]),
    (dict(n_head=4, n_embd=64, n_kv_head=3), ["n_head", "4", "n_kv_head", "3"]),
    (dict(n_kv_head=0), ["n_kv_head", "0"]),
    (dict(window=0), ["window", "0"]),
    (dict(window=-3), ["window", "-3"]),
    (dict(window=2.5), ["window", "2.5"]),
    (dict(mlp="relu"), ["mlp", "'relu'"]),
    (dict(norm="batchnorm"), ["norm", "'batchnorm'"]),
    (dict(pos="alibi"), ["pos", "'alibi'"]),
    (dict(attn_backend="flash3"), ["attn_backend", "'flash3'"]),
    (dict(attn_backend="Eager"), ["attn_backend", "'Eager'"]),
    (dict(gelu_approx="erf"), ["gelu_approx", "'erf'"]),
    (dict(mlp_ratio=0), ["mlp_ratio", "0"]),
    (dict(mlp_ratio=-1.5), ["mlp_ratio", "-1.5"]),
    (dict(mlp="swiglu", mlp_ratio=0.0), ["mlp_ratio", "0.0"]),
    (dict(mlp_ratio=float("nan")), ["mlp_ratio", "nan"]),
    (dict(attn_backend="local", window=None), ["local", "window"]),
    (dict(n_layer=0), ["n_layer", "0"]),
    (dict(block_size=-1), ["block_size", "-1"]),
    (dict(tile_size=0), ["tile_size", "0"]),
    (dict(dropout=1.0), ["dropout", "1.0"]),
    (dict(pad_vocab_multiple=0), ["pad_vocab_multiple", "0"]),
    (dict(n_embd=36, n_head=4), ["head_dim", "9"]),  # RoPE needs an even head_dim
]


@pytest.mark.parametrize("changes, needles", BAD, ids=[repr(c) for c, _ in BAD])
def test_bad_config_raises_valueerror_naming_field_and_value(changes, needles):
    with pytest.raises(ValueError, match=_both(*needles)):
        GPTConfig(**changes)


@pytest.mark.parametrize("changes, needles", BAD[:18], ids=[repr(c) for c, _ in BAD[:18]])
def test_replace_and_get_config_validate_too(changes, needles):
    with pytest.raises(ValueError, match=_both(*needles)):
        PRESETS["gpt2_small"].replace(**changes)
    with pytest.raises(ValueError, match=_both(*needles)):
        get_config("gpt2_small", **changes)


def test_unknown_preset_and_unknown_field():
    with pytest.raises(ValueError, match=_both("preset", "'gpt5'")):
        get_config("gpt5")
    with pytest.raises(ValueError, match=_both("n_heads")):
        PRESETS["tiny"].replace(n_heads=8)


def test_config_is_frozen():
    cfg = get_config("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_head = 8


# ---- presets: the values the issue specifies --------------------------------------------------
def test_gpt2_small_is_the_seed_baseline():
    c = get_config("gpt2_small")
    assert (c.n_layer, c.n_head, c.n_embd, c.vocab_size, c.block_size) == (12, 12, 768, 50257, 1024)
    assert (c.pos, c.norm, c.mlp, c.ratio, c.kv_heads, c.bias) == ("rope", "rmsnorm", "gelu", 4.0, 12, False)
    assert c.mlp_hidden == 3072 and c.window is None and c.tie_embeddings


def test_gpt2_classic_fields():
    c = get_config("gpt2_classic")
    assert (c.n_layer, c.n_head, c.n_embd, c.vocab_size, c.block_size) == (12, 12, 768, 50257, 1024)
    assert (c.pos, c.norm, c.bias, c.gelu_approx, c.tie_embeddings) == ("learned", "layernorm", True, "tanh", True)


def test_small_presets_are_small():
    for name in ("gpt2_mini", "tiny"):
        c = get_config(name)
        assert c.n_layer <= 4 and c.n_embd <= 384


# ---- derived sizes against hand-computed values ----------------------------------------------
@pytest.mark.parametrize("n_head, n_kv_head, kv_heads, n_rep", [
    (12, None, 12, 1), (12, 12, 12, 1), (12, 4, 4, 3), (12, 2, 2, 6), (12, 1, 1, 12), (4, 2, 2, 2)])
def test_kv_heads_and_group_size(n_head, n_kv_head, kv_heads, n_rep):
    c = GPTConfig(n_head=n_head, n_kv_head=n_kv_head, n_embd=n_head * 16)
    assert (c.kv_heads, c.n_rep, c.head_dim) == (kv_heads, n_rep, 16)


@pytest.mark.parametrize("mlp, ratio, hidden", [
    ("gelu", None, 3072), ("gelu", 3, 2304), ("gelu", 3.0, 2304), ("swiglu", None, 2048),
    ("swiglu", 3, 2304), ("gelu", 0.5, 384)])
def test_mlp_hidden(mlp, ratio, hidden):
    assert GPTConfig(mlp=mlp, mlp_ratio=ratio).mlp_hidden == hidden


@pytest.mark.parametrize("vocab, multiple, padded", [
    (50257, None, 50257), (50257, 64, 50304), (50257, 1, 50257), (50304, 64, 50304), (100, 64, 128)])
def test_padded_vocab(vocab, multiple, padded):
    assert GPTConfig(vocab_size=vocab, pad_vocab_multiple=multiple).padded_vocab_size == padded


def test_window_bounds_accepted():
    assert GPTConfig(window=1).window == 1
    assert GPTConfig(window=10**6).window == 10**6
    assert GPTConfig(attn_backend="local", window=64).attn_backend == "local"


def test_replace_returns_a_validated_copy_and_keeps_the_original():
    base = get_config("gpt2_small")
    gqa = base.replace(n_kv_head=4)
    assert gqa.kv_heads == 4 and base.kv_heads == 12 and gqa.n_layer == base.n_layer
