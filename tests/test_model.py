"""GPT: parameter counts against closed forms, backends and GQA against equivalent models, the KV
cache against full recomputation, errors, scopes."""
import math
import warnings

import pytest
import torch

from tutorial_lib import scopes
from tutorial_lib.model import GPT, GPTConfig, KVCache, get_config

pytestmark = pytest.mark.usefixtures("one_thread")


# a small model for behaviour tests: T = 100 is not a multiple of the tile (32)
SMALL = GPTConfig(n_layer=2, n_head=4, n_embd=32, block_size=128, vocab_size=61, tile_size=32, name="small")
T = 100


def build(cfg, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return GPT(cfg).to(dtype).eval()


def tokens(B, T_, vocab, seed=1):
    return torch.randint(0, vocab, (B, T_), generator=torch.Generator().manual_seed(seed))


def twin(model, cfg):
    """A model built from cfg carrying model's weights (cfg must have the same parameter shapes)."""
    other = GPT(cfg).to(next(model.parameters()).dtype).eval()
    other.load_state_dict(model.state_dict())
    return other


# ---- parameter counts: closed forms written out here --------------------------------------------
def expected_params(*, L, C, H, Hkv, V, hidden, mlp="gelu", norm="rmsnorm", bias=False, learned=False,
                    block=1024, tied=True):
    D = C // H
    b = 1 if bias else 0
    attn = C * H * D + 2 * C * Hkv * D + H * D * C + b * (H * D + 2 * Hkv * D + C)
    if mlp == "gelu":
        ff = 2 * C * hidden + b * (hidden + C)
    else:  # gate and up (C -> hidden), down (hidden -> C)
        ff = 3 * C * hidden + b * (2 * hidden + C)
    nrm = C * (2 if norm == "layernorm" and bias else 1)
    emb = V * C * (1 if tied else 2) + (block * C if learned else 0)
    return emb + L * (attn + ff + 2 * nrm) + nrm


GPT2 = dict(L=12, C=768, H=12, V=50257)
COUNT_CASES = [
    ("gpt2_classic", {}, dict(GPT2, Hkv=12, hidden=3072, norm="layernorm", bias=True, learned=True)),
    ("gpt2_small", {}, dict(GPT2, Hkv=12, hidden=3072)),
    ("gpt2_small", dict(n_kv_head=4), dict(GPT2, Hkv=4, hidden=3072)),
    ("gpt2_small", dict(n_kv_head=2), dict(GPT2, Hkv=2, hidden=3072)),
    ("gpt2_small", dict(n_kv_head=1), dict(GPT2, Hkv=1, hidden=3072)),
    ("gpt2_small", dict(mlp_ratio=3), dict(GPT2, Hkv=12, hidden=2304)),
    ("gpt2_small", dict(mlp="swiglu"), dict(GPT2, Hkv=12, hidden=2048, mlp="swiglu")),
    ("gpt2_small", dict(mlp="swiglu", mlp_ratio=3), dict(GPT2, Hkv=12, hidden=2304, mlp="swiglu")),
    ("gpt2_small", dict(pad_vocab_multiple=64), dict(GPT2, Hkv=12, hidden=3072, V=50304)),
    ("gpt2_small", dict(tie_embeddings=False), dict(GPT2, Hkv=12, hidden=3072, tied=False)),
    ("gpt2_small", dict(norm="layernorm"), dict(GPT2, Hkv=12, hidden=3072, norm="layernorm")),
    ("gpt2_classic", dict(n_kv_head=3, mlp="swiglu", pad_vocab_multiple=128),
     dict(GPT2, Hkv=3, hidden=2048, mlp="swiglu", norm="layernorm", bias=True, learned=True, V=50304)),
    ("gpt2_mini", dict(n_kv_head=4), dict(L=4, C=384, H=12, V=50257, Hkv=4, hidden=1536)),
    ("tiny", {}, dict(L=2, C=64, H=4, V=50257, Hkv=4, hidden=256, block=256)),
]


def meta_model(cfg):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return GPT(cfg)


def test_gpt2_classic_has_124_439_808_parameters():
    assert meta_model(get_config("gpt2_classic")).num_params() == 124_439_808


@pytest.mark.parametrize("preset, changes, formula", COUNT_CASES,
                         ids=[f"{p}-{c}" for p, c, _ in COUNT_CASES])
def test_param_count_matches_closed_form(preset, changes, formula):
    cfg = get_config(preset, **changes)
    assert meta_model(cfg).num_params() == expected_params(**formula)


def test_param_count_relations():
    small = get_config("gpt2_small")
    n = lambda **kw: meta_model(small.replace(**kw)).num_params()  # noqa: E731
    L, C, H, D = 12, 768, 12, 64
    base = n()
    for kv in (4, 2, 1):  # GQA drops (H - Hkv) heads from both k_proj and v_proj
        assert base - n(n_kv_head=kv) == L * 2 * C * D * (H - kv)
    assert n(mlp="swiglu") == base  # 8/3 hidden x 3 matrices == 4 x hidden x 2 matrices
    assert base - n(mlp_ratio=3) == L * 2 * C * C
    assert n(pad_vocab_multiple=64) - base == (50304 - 50257) * C
    classic = meta_model(get_config("gpt2_classic"))
    assert classic.num_params(non_embedding=True) == 124_439_808 - 50257 * 768 - 1024 * 768


def test_real_model_count_equals_meta_count_and_lm_head_is_tied():
    cfg = get_config("tiny")
    m = GPT(cfg)
    assert m.num_params() == meta_model(cfg).num_params() == expected_params(
        L=2, C=64, H=4, Hkv=4, V=50257, hidden=256, block=256)
    assert m.lm_head.weight is m.wte.weight


# ---- backends inside the model: logits, loss and every parameter gradient ------------------------
def loss_and_grads(model, idx, targets):
    model.zero_grad(set_to_none=True)
    logits, loss = model(idx, targets)
    loss.backward()
    return logits.detach(), loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


MODEL_BACKEND_CASES = [((4, None), w) for w in (None, 1, 7, 64)] + [((4, 2), w) for w in (None, 7, 64)] + [
    ((4, 1), None), ((4, 1), 7), ((12, 4), None), ((12, 4), 1), ((12, 4), 64)]


@pytest.mark.parametrize("heads, window", MODEL_BACKEND_CASES,
                         ids=[f"H{h[0]}kv{h[1]}-w{w}" for h, w in MODEL_BACKEND_CASES])
def test_model_backends_agree_on_logits_loss_and_param_grads(heads, window):
    H, Hkv = heads
    cfg = SMALL.replace(n_head=H, n_kv_head=Hkv, n_embd=8 * H, window=window, attn_backend="eager")
    ref_model = build(cfg)
    idx, tgt = tokens(2, T, cfg.vocab_size), tokens(2, T, cfg.vocab_size, seed=2)
    ref_logits, ref_loss, ref_grads = loss_and_grads(ref_model, idx, tgt)
    for name, g in ref_grads.items():
        if window == 1 and name.endswith(("q_proj.weight", "k_proj.weight")):
            assert g.abs().max() < 1e-12, name  # a query sees only itself: scores get no gradient
        else:
            assert g.abs().sum() > 0, name
    for backend in ["sdpa", "tiled"] + ([] if window is None else ["local"]):
        m = twin(ref_model, cfg.replace(attn_backend=backend))
        logits, loss, grads = loss_and_grads(m, idx, tgt)
        torch.testing.assert_close(logits, ref_logits, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
        assert grads.keys() == ref_grads.keys()
        for name in ref_grads:
            torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-11,
                                       msg=lambda s: f"{backend} grad {name}: {s}")


def test_loss_is_mean_negative_log_likelihood_ignoring_minus_one():
    model = build(SMALL)
    idx, tgt = tokens(2, 20, SMALL.vocab_size), tokens(2, 20, SMALL.vocab_size, seed=3)
    tgt[0, :5] = -1
    logits, loss = model(idx, tgt)
    logp = logits - logits.exp().sum(-1, keepdim=True).log()
    keep = tgt >= 0
    nll = -logp[keep].gather(-1, tgt[keep][:, None]).squeeze(-1)
    torch.testing.assert_close(loss, nll.mean(), rtol=1e-12, atol=1e-12)
    assert logits.shape == (2, 20, SMALL.vocab_size) and model(idx)[1] is None


@pytest.mark.parametrize("window", [None, 7], ids=lambda w: f"w{w}")
def test_flex_model_forward_matches_eager_on_cpu(window):
    cfg = SMALL.replace(n_kv_head=2, window=window, attn_backend="eager")
    ref = build(cfg)
    flex = twin(ref, cfg.replace(attn_backend="flex"))
    idx = tokens(2, T, cfg.vocab_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(flex(idx)[0], ref(idx)[0], rtol=1e-10, atol=1e-10)


def test_flex_training_on_cpu_raises_our_error_naming_the_alternatives():
    model = build(SMALL.replace(attn_backend="flex"), dtype=torch.float32).train()
    idx = tokens(1, 16, SMALL.vocab_size)
    with pytest.raises(RuntimeError) as err:
        model(idx, idx)[1].backward()
    assert type(err.value) is RuntimeError  # ours, not NotImplementedError (a RuntimeError subclass)
    assert "'sdpa'" in str(err.value) and "'local'" in str(err.value)


# ---- GQA against MHA ----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["eager", "sdpa", "tiled"])
def test_gqa_with_n_kv_head_equal_n_head_is_mha(backend):
    mha_cfg = SMALL.replace(attn_backend=backend, bias=True)
    mha = build(mha_cfg)
    gqa = twin(mha, mha_cfg.replace(n_kv_head=mha_cfg.n_head))
    idx = tokens(2, 40, SMALL.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(gqa(idx)[0], mha(idx)[0], rtol=0, atol=0)


def expand_kv_state(state, n_kv_head, n_rep, head_dim):
    """GQA weights -> MHA weights: every K/V head repeated for each query head of its group."""
    out = {}
    for name, t in state.items():
        if name.endswith(("k_proj.weight", "v_proj.weight")):
            t = t.view(n_kv_head, head_dim, -1).repeat_interleave(n_rep, dim=0)
            t = t.reshape(n_kv_head * n_rep * head_dim, -1)
        elif name.endswith(("k_proj.bias", "v_proj.bias")):
            t = t.view(n_kv_head, head_dim).repeat_interleave(n_rep, dim=0).reshape(-1)
        out[name] = t
    return out


@pytest.mark.parametrize("pos", ["rope", "learned"])
@pytest.mark.parametrize("heads", [(4, 2), (4, 1), (12, 4), (12, 1)], ids=lambda h: f"H{h[0]}kv{h[1]}")
def test_gqa_equals_mha_with_repeated_kv_weights(heads, pos):
    H, Hkv = heads
    gqa_cfg = SMALL.replace(n_head=H, n_kv_head=Hkv, n_embd=8 * H, bias=True, pos=pos, attn_backend="sdpa")
    gqa = build(gqa_cfg)
    with torch.no_grad():  # give the zero-initialised biases some values
        for n, p in gqa.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.1)
    n_rep, D = H // Hkv, gqa_cfg.head_dim
    mha = build(gqa_cfg.replace(n_kv_head=None))
    mha.load_state_dict(expand_kv_state(gqa.state_dict(), Hkv, n_rep, D))
    idx, tgt = tokens(2, 50, SMALL.vocab_size), tokens(2, 50, SMALL.vocab_size, seed=5)
    g_logits, g_loss, g_grads = loss_and_grads(gqa, idx, tgt)
    m_logits, m_loss, m_grads = loss_and_grads(mha, idx, tgt)
    torch.testing.assert_close(g_logits, m_logits, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_loss, m_loss, rtol=1e-12, atol=1e-12)
    for name, g in g_grads.items():
        m = m_grads[name]
        if name.endswith(("k_proj.weight", "v_proj.weight")):  # a shared head gets its group's sum
            m = m.view(Hkv, n_rep, D, -1).sum(1).reshape(Hkv * D, -1)
        elif name.endswith(("k_proj.bias", "v_proj.bias")):
            m = m.view(Hkv, n_rep, D).sum(1).reshape(-1)
        torch.testing.assert_close(g, m, rtol=1e-9, atol=1e-11, msg=lambda s: f"{name}: {s}")


# ---- KV cache ------------------------------------------------------------------------------------
GEN = SMALL.replace(block_size=64, vocab_size=97)
GEN_CASES = {
    "mha": GEN,
    "gqa": GEN.replace(n_kv_head=2),
    "mqa": GEN.replace(n_kv_head=1),
    "window": GEN.replace(n_kv_head=2, window=5),
    "window-eager": GEN.replace(window=3, attn_backend="eager"),
    "learned": GEN.replace(pos="learned", norm="layernorm", bias=True, gelu_approx="tanh"),
    "learned-gqa-window": GEN.replace(pos="learned", n_kv_head=1, window=6),
    "rope-eager": GEN.replace(attn_backend="eager", mlp="swiglu"),
    "tiled-window": GEN.replace(attn_backend="tiled", tile_size=8, window=9, n_kv_head=2),
    "local": GEN.replace(attn_backend="local", window=4),
}


@pytest.mark.parametrize("name", list(GEN_CASES))
def test_kv_cache_generation_equals_full_recompute(name):
    cfg = GEN_CASES[name]
    model = build(cfg, seed=3)
    prompt = tokens(2, 7, cfg.vocab_size, seed=4)
    cached = model.generate(prompt, 30, use_cache=True)
    full = model.generate(prompt, 30, use_cache=False)
    assert cached.shape == (2, 37) and torch.equal(cached[:, :7], prompt)
    assert torch.equal(cached, full)
    assert len(set(full[:, 7:].flatten().tolist())) > 1  # the check is not on a constant sequence


@pytest.mark.parametrize("name", ["gqa", "window", "learned-gqa-window", "rope-eager"])
def test_kv_cache_logits_equal_full_forward(name):
    """Prefill in two chunks, then one token at a time: every logit equals the full forward's."""
    cfg = GEN_CASES[name]
    model = build(cfg, seed=3)
    seq = tokens(2, 40, cfg.vocab_size, seed=6)
    with torch.no_grad():
        full = model(seq)[0]
        cache = KVCache(cfg, 2, 40, dtype=torch.float64)
        pieces = [model(seq[:, :10], kv_cache=cache)[0], model(seq[:, 10:17], kv_cache=cache)[0]]
        pieces += [model(seq[:, t:t + 1], kv_cache=cache)[0] for t in range(17, 40)]
    assert cache.length == 40
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-10, atol=1e-10)


def test_sampling_with_cache_equals_sampling_without():
    model = build(GEN_CASES["gqa"], seed=3)
    prompt = tokens(1, 5, GEN.vocab_size)
    a = model.generate(prompt, 20, temperature=1.0, top_k=10, use_cache=True,
                       generator=torch.Generator().manual_seed(0))
    b = model.generate(prompt, 20, temperature=1.0, top_k=10, use_cache=False,
                       generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


@pytest.mark.parametrize("kv", [12, 4, 2, 1])
def test_kv_cache_size_follows_n_kv_head(kv):
    cfg = get_config("gpt2_small", n_kv_head=kv)
    cache = KVCache(cfg, batch_size=3, max_len=1024, device="meta", dtype=torch.bfloat16)
    assert cache.nbytes == 2 * 12 * 3 * kv * 1024 * 64 * 2  # K and V, layers, batch, heads, T, D, bytes


# ---- errors --------------------------------------------------------------------------------------
def test_forward_longer_than_block_size_is_a_clear_error():
    model = build(SMALL.replace(block_size=16), dtype=torch.float32)
    model(tokens(1, 16, SMALL.vocab_size))  # exactly block_size is fine
    with pytest.raises(ValueError, match=r"(?=.*\b17\b)(?=.*block_size=16)"):
        model(tokens(1, 17, SMALL.vocab_size))
    learned = build(SMALL.replace(block_size=16, pos="learned"), dtype=torch.float32)
    with pytest.raises(ValueError, match="block_size=16"):
        learned(tokens(1, 20, SMALL.vocab_size))


def test_generate_errors():
    model = build(SMALL.replace(block_size=16), dtype=torch.float32)
    with pytest.raises(ValueError, match=r"(?=.*\b18\b)(?=.*block_size=16)"):
        model.generate(tokens(1, 10, SMALL.vocab_size), 8)
    with pytest.raises(ValueError, match="max_new_tokens=-1"):
        model.generate(tokens(1, 10, SMALL.vocab_size), -1)
    cache = KVCache(SMALL, 1, 8)
    with pytest.raises(ValueError, match="max_len=8"):
        model(tokens(1, 9, SMALL.vocab_size), kv_cache=cache)


# ---- init and scopes -----------------------------------------------------------------------------
def test_gpt2_init_scales_residual_projections():
    cfg = GPTConfig(n_layer=4, n_head=4, n_embd=256, vocab_size=1000, block_size=32, mlp="swiglu")
    m = build(cfg, dtype=torch.float32)
    blk = m.blocks[0]
    for p, std in [(blk.attn.q_proj.weight, 0.02), (blk.mlp.gate_proj.weight, 0.02), (m.wte.weight, 0.02),
                   (blk.attn.o_proj.weight, 0.02 / math.sqrt(8)), (blk.mlp.down_proj.weight, 0.02 / math.sqrt(8))]:
        assert p.std().item() == pytest.approx(std, rel=0.05)


def _profiled_names(model, idx, on):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with scopes.enabled(model, on=on):
            model(idx, idx)
    return {e.key for e in prof.key_averages()}


def test_scopes_are_recorded_only_when_enabled():
    model = build(SMALL, dtype=torch.float32)
    idx = tokens(1, 16, SMALL.vocab_size)
    on = _profiled_names(model, idx, True)
    assert set(scopes.SCOPE_NAMES) <= on, set(scopes.SCOPE_NAMES) - on
    assert not set(scopes.SCOPE_NAMES) & _profiled_names(model, idx, False)
    learned = build(SMALL.replace(pos="learned"), dtype=torch.float32)
    names = _profiled_names(learned, idx, True)
    assert "attention.rope" not in names and "attention.core" in names
    with scopes.enabled(model):
        pass
    assert scopes.scope("x") is scopes.scope("y")  # back to the shared no-op after the block
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())  # hooks removed


def test_module_scopes_label_every_projection_norm_and_the_head():
    model = build(SMALL.replace(mlp="swiglu"), dtype=torch.float32)
    named = model.module_scopes()
    blk = model.blocks[0]
    assert named[blk.attn.q_proj] == named[blk.attn.v_proj] == "attention.qkv"
    assert named[blk.mlp.gate_proj] == named[blk.mlp.up_proj] == "mlp.up"
    assert named[blk.norm1] == named[model.norm_f] == "norm"
    assert named[model.lm_head] == "lm_head" and named[model.wte] == "embedding"
    assert set(named.values()) <= set(scopes.SCOPE_NAMES)


def test_a_module_that_raises_leaves_no_scope_open():
    model = build(SMALL, dtype=torch.float32)

    def broken(x):
        raise RuntimeError("out of memory (simulated)")

    model.blocks[0].mlp.up_proj.forward = broken  # fails inside a labelled module
    with scopes.enabled(model, record=False):
        with pytest.raises(RuntimeError, match="simulated"):
            model(tokens(1, 16, SMALL.vocab_size))
        assert scopes.current() is None
