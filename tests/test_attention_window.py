"""Sliding-window attention: the three implementations against a naive float64 reference.

The reference is written here from scratch: a per-query loop that takes the keys i-W+1 .. i of
that query, an explicit softmax, and maps query head h to K/V head h // n_rep by indexing. The
fast CPU path (``local_window_attention``), the SDPA-blocked path, the (T, T) band mask and
FlexAttention (forward only on CPU) must all match it, with gradients where they have them, for
ragged T (not a multiple of the window nor of the block), GQA/MQA, and windows 1, 3, 64 and >= T.
"""
import math
import warnings

import fp32_noise
import pytest
import torch

from tutorial_lib import attention as A
from tutorial_lib.attention import flex
from tutorial_lib.attention import reference as ref
from tutorial_lib.attention import sliding_window as Wn
from tutorial_lib.model import GPT, get_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---- the independent reference ---------------------------------------------------------------
def naive_window_attention(q, k, v, window):
    """For each query i: softmax over keys max(0, i-W+1) .. i, in float64, with explicit indexing."""
    B, H, T, D = q.shape
    n_rep = H // k.shape[1]
    q, k, v = q.double(), k.double(), v.double()
    rows = []
    for i in range(T):
        lo = max(0, i - window + 1)
        kk = torch.stack([k[:, h // n_rep, lo:i + 1] for h in range(H)], dim=1)  # (B, H, n, D)
        vv = torch.stack([v[:, h // n_rep, lo:i + 1] for h in range(H)], dim=1)
        s = torch.einsum("bhd,bhjd->bhj", q[:, :, i], kk) / math.sqrt(D)
        p = torch.exp(s - s.max(dim=-1, keepdim=True).values)
        p = p / p.sum(dim=-1, keepdim=True)
        rows.append(torch.einsum("bhj,bhjd->bhd", p, vv))
    return torch.stack(rows, dim=2)


def qkv(B, H, Hkv, T, D, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, T, D, generator=g, dtype=dtype),
            torch.randn(B, Hkv, T, D, generator=g, dtype=dtype),
            torch.randn(B, Hkv, T, D, generator=g, dtype=dtype))


def test_reference_is_eager_attention_with_a_window():
    """Cross-check the loop reference itself against the textbook masked-softmax formula."""
    q, k, v = qkv(1, 4, 2, 23, 8, seed=1)
    for w in (1, 3, 23):
        torch.testing.assert_close(naive_window_attention(q, k, v, w), ref.eager_attention(q, k, v, w),
                                   rtol=1e-12, atol=1e-12)


# ---- forward and backward of every trainable implementation -----------------------------------
IMPLS = {
    "local": lambda q, k, v, w: Wn.local_window_attention(q, k, v, w),
    "local_block5": lambda q, k, v, w: Wn.local_window_attention(q, k, v, w, block=5),
    "local_sdpa": Wn.local_window_attention_sdpa,
    "band_mask": Wn.band_mask_attention,
    "core_local": lambda q, k, v, w: A.attention_core(q, k, v, "local", w),
}
T = 150  # not a multiple of 3, 64 or of the block 64 after the first window
CASES = [(1, 4, 4), (2, 4, 2), (1, 6, 1)]  # (B, n_head, n_kv_head): MHA, GQA, MQA


@pytest.mark.parametrize("window", [1, 2, 3, 64, T - 1, T, 2 * T], ids=lambda w: f"w{w}")
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"B{c[0]}H{c[1]}kv{c[2]}")
def test_outputs_and_grads_match_naive_reference(case, window):
    B, H, Hkv = case
    q0, k0, v0 = qkv(B, H, Hkv, T, 8, seed=window + 10 * H + Hkv)
    dout = torch.randn(B, H, T, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    q, k, v = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
    ref = naive_window_attention(q, k, v, window)
    ref_grads = torch.autograd.grad(ref, (q, k, v), dout)
    for name, fn in IMPLS.items():
        q, k, v = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
        out = fn(q, k, v, window)
        assert out.shape == (B, H, T, 8) and out.dtype == torch.float64, name
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10, msg=lambda m: f"{name}: {m}")
        grads = torch.autograd.grad(out, (q, k, v), dout)
        for g_name, g, rg in zip("qkv", grads, ref_grads):
            assert g.shape == rg.shape, (name, g_name)
            torch.testing.assert_close(g, rg, rtol=1e-9, atol=1e-9,
                                       msg=lambda m: f"{name} d{g_name}: {m}")


@pytest.mark.parametrize("block", [1, 2, 7, 31, 64, 500])
@pytest.mark.parametrize("T_", [33, 64, 97])
def test_any_block_size_and_length(block, T_):
    """The block only changes how the work is cut, never the result."""
    window = 32
    q0, k0, v0 = qkv(1, 4, 2, T_, 8, seed=block + T_)
    q, k, v = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
    out = Wn.local_window_attention(q, k, v, window, block=block)
    out.pow(2).sum().backward()
    qr, kr, vr = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
    ref = naive_window_attention(qr, kr, vr, window)
    ref.pow(2).sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    for a, b in ((q, qr), (k, kr), (v, vr)):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 1000])
def test_backward_in_chunks_matches_float64_reference(chunk):
    """The backward goes through the query blocks in chunks (a ragged last one included); the
    per-window K/V gradients folded back chunk by chunk must still be the exact gradients."""
    window, T_ = 24, 203  # b = 12: 15 blocks after the first window (+ padding)
    q0, k0, v0 = qkv(2, 6, 2, T_, 8, seed=chunk or 0)
    q, k, v = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
    out = Wn.local_window_attention(q, k, v, window, backward_chunk_blocks=chunk)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    out.backward(g)
    qr, kr, vr = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
    naive_window_attention(qr, kr, vr, window).backward(g)
    for name, a, b in (("q", q, qr), ("k", k, kr), ("v", v, vr)):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-9, msg=lambda m: f"d{name}: {m}")


def test_backward_chunk_keeps_the_temporaries_a_share_of_t():
    T_, W, b = 4096, 256, 64
    c = Wn.backward_chunk(T_, W, b)
    assert c >= 1 and c * (4 * b + 2 * (W - 1)) <= T_  # the temporaries of one call: at most T rows
    assert Wn.backward_chunk(64, 256, 64) == 1  # never zero blocks


def test_fwd_bwd_peak_is_linear_in_t_and_below_causal_sdpa():
    """The allocator's peak over one forward+backward (``measure.memory.cpu_peak_bytes``): the
    local path's stays below full causal SDPA's and grows linearly with T. Done in one backward
    call over all blocks (the old way) it was 3x SDPA's, from the per-window K/V gradients."""
    from tutorial_lib.measure.memory import cpu_peak_bytes

    W, H, D = 128, 2, 32

    def peak(T_, fn):
        q, k, v = (t.float().requires_grad_(True) for t in qkv(1, H, H, T_, D, seed=T_))
        g = torch.ones(1, H, T_, D)
        fn(q, k, v).backward(g)  # warm-up: cached masks, thread pools
        for t in (q, k, v):
            t.grad = None
        return cpu_peak_bytes(lambda: fn(q, k, v).backward(g)).peak_bytes

    local = lambda q, k, v: Wn.local_window_attention(q, k, v, W)  # noqa: E731
    causal = lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)  # noqa: E731
    one_call = lambda q, k, v: Wn.local_window_attention(q, k, v, W, backward_chunk_blocks=10**6)  # noqa: E731
    p1, p2 = peak(2048, local), peak(4096, local)
    assert p2 <= peak(4096, causal)
    assert p2 / p1 <= 2.1  # linear in T (2x longer -> at most ~2x the bytes)
    assert peak(4096, one_call) > 2 * p2  # the old single call: the measurement sees the difference


@pytest.mark.parametrize("window", [1, 3, 64, T], ids=lambda w: f"w{w}")
@pytest.mark.parametrize("case", [(2, 4, 4), (1, 6, 2)], ids=lambda c: f"B{c[0]}H{c[1]}kv{c[2]}")
def test_flex_forward_matches_naive_reference(case, window):
    if not flex.has_flex_attention():
        pytest.skip("this PyTorch has no flex_attention")
    B, H, Hkv = case
    q, k, v = qkv(B, H, Hkv, T, 8, seed=3)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flex_attention called without torch.compile()"
        out = A.attention_core(q, k, v, "flex", window)
    torch.testing.assert_close(out, naive_window_attention(q, k, v, window), rtol=1e-10, atol=1e-10)


def test_float32_and_noncontiguous_inputs():
    """The dtype the model trains in, with K/V as the transposed views the model passes."""
    g = torch.Generator().manual_seed(0)
    B, T_, H, Hkv, D, window = 2, 200, 6, 2, 16, 48
    q = torch.randn(B, T_, H, D, generator=g).transpose(1, 2).requires_grad_(True)
    k = torch.randn(B, T_, Hkv, D, generator=g).transpose(1, 2).requires_grad_(True)
    v = torch.randn(B, T_, Hkv, D, generator=g).transpose(1, 2).requires_grad_(True)
    out = Wn.local_window_attention(q, k, v, window)
    assert out.dtype == torch.float32
    out.sum().backward()
    qd, kd, vd = (t.detach().double().requires_grad_(True) for t in (q, k, v))
    ref = naive_window_attention(qd, kd, vd, window)
    ref.sum().backward()
    # tolerances: PyTorch's own float32 error on these inputs, times a margin (tests/fp32_noise.py)
    fp32_noise.check([out, q.grad, k.grad, v.grad], q, k, v, window, torch.ones_like(out),
                     [ref.detach(), qd.grad, kd.grad, vd.grad])


def test_bfloat16_runs_and_stays_close():
    q, k, v = qkv(1, 4, 2, 130, 16, dtype=torch.float32, seed=9)
    qb, kb, vb = (t.bfloat16().requires_grad_(True) for t in (q, k, v))
    out = Wn.local_window_attention(qb, kb, vb, 40)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (qb, kb, vb))
    ref = naive_window_attention(qb.detach(), kb.detach(), vb.detach(), 40)
    torch.testing.assert_close(out.double(), ref, rtol=3e-2, atol=3e-2)


def test_cpu_float_inputs_take_the_fast_path(monkeypatch):
    calls = []
    real = Wn._LocalWindowCPU.apply
    monkeypatch.setattr(Wn._LocalWindowCPU, "apply", lambda *a: calls.append(a[3]) or real(*a))
    q, k, v = qkv(1, 4, 2, 50, 8, dtype=torch.float32)
    Wn.local_window_attention(q, k, v, 10)
    Wn.local_window_attention(q, k, v, 50)  # window >= T: plain causal, no blocking
    assert calls == [10]


# ---- whole model ------------------------------------------------------------------------------
@pytest.mark.parametrize("kv", [None, 2])
def test_gpt_local_matches_gpt_eager_with_the_same_window(kv):
    cfg = get_config("tiny", window=16, n_kv_head=kv)
    torch.manual_seed(0)
    eager = GPT(cfg.replace(attn_backend="eager")).double()
    local = GPT(cfg.replace(attn_backend="local")).double()
    local.load_state_dict(eager.state_dict())
    idx = torch.randint(0, cfg.vocab_size, (2, 101), generator=torch.Generator().manual_seed(1))
    tgt = torch.roll(idx, -1, dims=1)
    logits_e, loss_e = eager(idx, tgt)
    logits_l, loss_l = local(idx, tgt)
    torch.testing.assert_close(logits_l, logits_e, rtol=1e-9, atol=1e-9)
    loss_e.backward()
    loss_l.backward()
    ge, gl = dict(eager.named_parameters()), dict(local.named_parameters())
    for name in ge:
        torch.testing.assert_close(gl[name].grad, ge[name].grad, rtol=1e-8, atol=1e-9,
                                   msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("n_layer, window", [(1, 4), (2, 4), (3, 5)])
def test_receptive_field_is_what_a_stacked_model_sees(n_layer, window):
    """The last position's logits depend on exactly the last receptive_field(L, W) tokens."""
    cfg = get_config("tiny", n_layer=n_layer, window=window, attn_backend="local")
    torch.manual_seed(0)
    model = GPT(cfg).double()
    T_ = 40
    idx = torch.randint(0, cfg.vocab_size, (1, T_), generator=torch.Generator().manual_seed(2))
    captured = {}

    def keep(module, inputs, output):
        output.retain_grad()
        captured["emb"] = output

    handle = model.wte.register_forward_hook(keep)
    logits, _ = model(idx)
    handle.remove()
    logits[0, -1].sum().backward()
    depends = captured["emb"].grad[0].abs().sum(dim=-1) > 0  # (T,)
    rf = Wn.receptive_field(n_layer, window)
    expected = torch.arange(T_) >= T_ - rf
    assert torch.equal(depends, expected), (depends.nonzero().min().item(), T_ - rf)


# ---- analytic helpers and bad input -----------------------------------------------------------
@pytest.mark.parametrize("T_, window", [(10, None), (10, 1), (10, 3), (10, 10), (10, 25), (37, 8)])
def test_window_flops_counts_the_visible_pairs(T_, window):
    pairs = sum(1 for i in range(T_) for j in range(i + 1) if window is None or i - j < window)
    assert Wn.window_flops(T_, window, head_dim=8, n_head=3, batch=2) == 4 * pairs * 8 * 3 * 2


def test_window_flops_grows_linearly_once_t_exceeds_the_window():
    f = [Wn.window_flops(t, 256, 64) for t in (4096, 8192, 16384)]
    assert f[2] - f[1] == 2 * (f[1] - f[0])  # equal steps in T add equal work
    full = [Wn.window_flops(t, None, 64) for t in (4096, 8192)]
    assert full[1] / full[0] > 3.99  # causal: x4 for x2


def test_receptive_field_values_and_errors():
    assert Wn.receptive_field(12, 256) == 12 * 255 + 1
    assert Wn.receptive_field(1, 1) == 1
    assert Wn.receptive_field(4, None) is None
    with pytest.raises(ValueError, match="n_layer=0"):
        Wn.receptive_field(0, 4)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_bad_window_is_a_value_error_naming_it(bad):
    q, k, v = qkv(1, 2, 2, 8, 4)
    for fn in (Wn.local_window_attention, Wn.local_window_attention_sdpa, Wn.band_mask_attention):
        with pytest.raises(ValueError, match=f"window={bad!r}"):
            fn(q, k, v, bad)


def test_bad_shapes_and_block_are_value_errors():
    q, k, v = qkv(1, 4, 3, 8, 4)
    with pytest.raises(ValueError, match="n_head=4"):
        Wn.local_window_attention(q, k, v, 2)
    q, k, v = qkv(1, 4, 2, 8, 4)
    with pytest.raises(ValueError, match="shapes"):
        Wn.local_window_attention(q, k[:, :, :5], v, 2)
    with pytest.raises(ValueError, match="block=0"):
        Wn.local_window_attention(q, k, v, 2, block=0)
