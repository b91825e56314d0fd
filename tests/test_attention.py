"""Attention backends against an independent float64 reference written here from scratch.

The reference builds its mask with Python loops and maps query head h to K/V head h // n_rep by
explicit indexing (no library helper), then takes an explicit softmax. Every backend (eager, sdpa,
tiled, local, flex) must match it: outputs, and gradients of q, k and v.
"""
import math
import warnings

import fp32_noise
import pytest
import torch
import torch.nn.functional as F

from tutorial_lib import attention as A
from tutorial_lib import model as model_lib
from tutorial_lib.attention import flash_tiled as flash
from tutorial_lib.attention import reference as ref

pytestmark = pytest.mark.usefixtures("one_thread")


TILE = 32
T = 100  # not a multiple of TILE (32) nor of the default tile (64)
HEADS = [(4, 4), (4, 2), (4, 1), (12, 12), (12, 4), (12, 2), (12, 1)]  # (n_head, n_kv_head)
WINDOWS = [None, 1, 7, 64, T, 3 * T]  # None = plain causal; T and 3T are >= T


# ---- the independent reference ---------------------------------------------------------------
def mask_from_scratch(T_q, T_k, window=None, offset=0):
    rows = []
    for i in range(T_q):
        pos = offset + i  # the query's absolute position
        rows.append([j <= pos and (window is None or pos - j < window) for j in range(T_k)])
    return torch.tensor(rows, dtype=torch.bool)


_MASKS = {}


def reference_attention(q, k, v, window=None):
    """softmax(q k^T / sqrt(D) + mask) v in float64, K/V head of query head h = h // (H / Hkv)."""
    B, H, Tq, D = q.shape
    Hkv = k.shape[1]
    kv_of = torch.tensor([h // (H // Hkv) for h in range(H)])
    kk, vv = k.double()[:, kv_of], v.double()[:, kv_of]
    key = (Tq, k.shape[2], window)
    if key not in _MASKS:
        _MASKS[key] = mask_from_scratch(Tq, k.shape[2], window)
    s = torch.einsum("bhid,bhjd->bhij", q.double(), kk) / math.sqrt(D)
    s = s.masked_fill(~_MASKS[key], float("-inf"))
    e = torch.exp(s - s.max(dim=-1, keepdim=True).values)
    p = e / e.sum(dim=-1, keepdim=True)
    return torch.einsum("bhij,bhjd->bhid", p, vv)


def loop_attention(q, k, v, window=None):
    """The same thing with plain Python loops over (b, h, i), for checking the reference itself."""
    B, H, Tq, D = q.shape
    n_rep = H // k.shape[1]
    out = torch.zeros(B, H, Tq, D, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            for i in range(Tq):
                js = [j for j in range(i + 1) if window is None or i - j < window]
                s = torch.stack([(q[b, h, i].double() @ k[b, h // n_rep, j].double()) / math.sqrt(D)
                                 for j in js])
                w = torch.exp(s - s.max())
                w = w / w.sum()
                out[b, h, i] = sum(w[n] * v[b, h // n_rep, j].double() for n, j in enumerate(js))
    return out


def qkv(B, H, Hkv, T_, D, dtype=torch.float64, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T_, D, generator=g, dtype=dtype)
    k = torch.randn(B, Hkv, T_, D, generator=g, dtype=dtype)
    v = torch.randn(B, Hkv, T_, D, generator=g, dtype=dtype)
    if grad:
        for t in (q, k, v):
            t.requires_grad_(True)
    return q, k, v


def run_backend(backend, q, k, v, window):
    return A.attention_core(q, k, v, backend, window, tile=TILE)


def flex_forward(q, k, v, window):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flex_attention called without torch.compile()" on CPU
        return A.attention_core(q, k, v, "flex", window)


# ---- the reference is right -------------------------------------------------------------------
@pytest.mark.parametrize("window", [None, 1, 3, 20])
def test_reference_matches_plain_loops(window):
    q, k, v = qkv(1, 4, 2, 13, 4, seed=1)
    torch.testing.assert_close(reference_attention(q, k, v, window), loop_attention(q, k, v, window),
                               rtol=1e-12, atol=1e-12)


def test_reference_plain_causal_matches_pytorch_sdpa():
    q, k, v = qkv(2, 4, 4, 37, 8, seed=2)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(reference_attention(q, k, v), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("window, offset", [(None, 0), (3, 0), (None, 5), (4, 6), (1, 2)])
def test_causal_mask_matches_loops(window, offset):
    assert torch.equal(ref.causal_mask(7, 7 + offset, window, offset), mask_from_scratch(7, 7 + offset, window, offset))


@pytest.mark.parametrize("T_q, T_k, window, offset", [(7, 7, None, 0), (7, 7, 3, 0), (1, 10, 4, 9), (3, 10, 4, 7),
                                                     (5, 20, 6, 2), (1, 100, 8, 99), (70, 70, 5, 0), (4, 9, 1, 5)])
@pytest.mark.parametrize("dtype", [torch.bool, torch.float32, torch.float64])
def test_shared_mask_is_the_mask_sliced_from_a_cache(T_q, T_k, window, offset, dtype):
    want = mask_from_scratch(T_q, T_k, window, offset)
    assert torch.equal(ref.causal_mask_by_difference(T_q, T_k, window, offset), want)
    got = ref.shared_mask(T_q, T_k, window, offset, dtype=dtype)
    assert got.shape == (T_q, T_k) and got.dtype == dtype
    if dtype == torch.bool:
        assert torch.equal(got, want)
    else:  # additive: 0 where allowed, -inf where not
        assert torch.equal(got == 0, want) and bool(torch.isneginf(got[~want]).all())
    again = ref.shared_mask(T_q, T_k, window, offset, dtype=dtype)
    assert again.untyped_storage().data_ptr() == got.untyped_storage().data_ptr()  # cached, not rebuilt


def test_mask_cache_stays_small_over_a_decode_loop():
    """A decode step's offset grows every call: the masks are slices of a few power-of-two squares."""
    ref.clear_mask_cache()
    for t in range(1, 300):
        m = ref.shared_mask(1, t + 1, 16, offset=t, dtype=torch.float32)
        assert torch.equal(m == 0, mask_from_scratch(1, t + 1, 16, t))
    assert len(ref._mask_cache) <= 4  # 299 offsets, four squares: sides 64, 128, 256, 512
    assert all(k[0] == k[1] and k[0] in (64, 128, 256, 512) for k in ref._mask_cache)
    ref.clear_mask_cache()


def test_mask_cache_is_bounded_by_bytes(monkeypatch):
    monkeypatch.setattr(ref, "MASK_CACHE_BYTES", 3 * 64 * 64 * 4)
    ref.clear_mask_cache()
    for T_ in (60, 61, 62, 63, 64):
        ref.shared_mask(T_, T_, 8, dtype=torch.float32)
    assert sum(m.numel() * m.element_size() for m, _ in ref._mask_cache.values()) <= ref.MASK_CACHE_BYTES
    big = ref.shared_mask(128, 128, 8, dtype=torch.float32)  # larger than the whole budget: not kept
    assert torch.equal(big == 0, mask_from_scratch(128, 128, 8)) and (128, 128) not in {k[:2] for k in ref._mask_cache}
    ref.clear_mask_cache()


def test_a_mask_written_to_is_rebuilt_with_a_warning():
    ref.clear_mask_cache()
    m = ref.shared_mask(6, 6, 2)
    m[0, 5] = True  # a caller that should have cloned it
    with pytest.warns(RuntimeWarning, match="modified in place"):
        fresh = ref.shared_mask(6, 6, 2)
    assert torch.equal(fresh, mask_from_scratch(6, 6, 2))
    ref.clear_mask_cache()


def test_masks_build_no_int64_pair_tensor():
    """The mask path makes no int64 (T_q, T_k) intermediate (8 bytes per pair): every op's output
    is seen with a TorchDispatchMode. The old construction (qi - kj) does, as the control."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Outputs(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.seen.append((t.dtype, t.numel()))
            return out

    Tq, Tk = 48, 64

    def int64_pairs(fn):
        with Outputs() as log:
            fn()
        return [n for dt, n in log.seen if dt == torch.int64 and n >= Tq * Tk]

    assert int64_pairs(lambda: ref.causal_mask_by_difference(Tq, Tk, 8, offset=Tk - Tq))  # the control
    assert not int64_pairs(lambda: ref.causal_mask(Tq, Tk, 8, offset=Tk - Tq))
    ref.clear_mask_cache()
    assert not int64_pairs(lambda: ref.shared_mask(Tq, Tk, 8, offset=Tk - Tq, dtype=torch.float32))
    q, k, v = (torch.randn(1, 2, T_, 8) for T_ in (Tq, Tk, Tk))
    assert not int64_pairs(lambda: ref.sdpa_attention(q, k, v, window=8, offset=Tk - Tq))
    ref.clear_mask_cache()


def test_windowed_sdpa_step_allocates_no_pair_sized_tensor_once_cached():
    """The allocator's view (torch.profiler memory events): after the first call, SDPA with a window
    allocates nothing of T x T size -- the additive mask is cached in q's dtype, so SDPA converts
    nothing either."""
    from tutorial_lib.measure.memory import cpu_peak_bytes

    B, H, T_, D = 1, 2, 512, 8
    q, k, v = (torch.randn(B, H, T_, D) for _ in range(3))
    ref.sdpa_attention(q, k, v, window=32)  # builds and caches the mask
    cached = cpu_peak_bytes(lambda: ref.sdpa_attention(q, k, v, window=32)).peak_bytes
    assert cached < T_ * T_  # not even a bool T x T
    fresh = cpu_peak_bytes(lambda: torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=ref.causal_mask_by_difference(T_, T_, 32))).peak_bytes
    assert fresh >= 8 * T_ * T_  # the old way: an int64 T x T on every call


# ---- every backend: outputs and gradients ------------------------------------------------------
def _backends(window):
    return ["eager", "sdpa", "tiled"] + ([] if window is None else ["local"])


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: f"w{w}")
@pytest.mark.parametrize("heads", HEADS, ids=lambda h: f"H{h[0]}kv{h[1]}")
def test_backends_match_reference_outputs_and_grads(heads, window):
    H, Hkv = heads
    D = 8
    q0, k0, v0 = qkv(2, H, Hkv, T, D, seed=H * 100 + Hkv)
    dout = torch.randn(2, H, T, D, generator=torch.Generator().manual_seed(7), dtype=torch.float64)

    q, k, v = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
    ref = reference_attention(q, k, v, window)
    ref_grads = torch.autograd.grad(ref, (q, k, v), dout)

    for backend in _backends(window):
        q, k, v = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
        out = run_backend(backend, q, k, v, window)
        assert out.shape == (2, H, T, D) and out.dtype == torch.float64, backend
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10, msg=lambda m: f"{backend}: {m}")
        grads = torch.autograd.grad(out, (q, k, v), dout)
        for name, g, rg in zip("qkv", grads, ref_grads):
            assert g.shape == rg.shape, (backend, name)
            torch.testing.assert_close(g, rg, rtol=1e-9, atol=1e-9,
                                       msg=lambda m: f"{backend} d{name}: {m}")


def _registry_cases():
    """(backend, window) for every registered backend: plain causal (window None) and a window of
    9, except that a backend which needs a window (``needs_window``) gets only the window."""
    return [pytest.param(name, window, id=f"{name}-w{window}") for name in A.names() for window in (None, 9)
            if window is not None or not A.get(name).needs_window]


@pytest.mark.parametrize("name, window", _registry_cases())
def test_every_registered_backend_matches_the_reference(name, window):
    """A loop over the registry, so that a backend is tested here the day it is registered: float32
    inputs, head_dim 16, tile 16, T=40 (not a multiple of 16), GQA 4:2 -- sizes every backend takes.
    What a backend cannot do comes from its flags, not its name: ``available``, ``needs_window``,
    ``supports_backward_on_cpu`` (then only the forward is compared, under no_grad)."""
    b = A.get(name)
    if not b.available():
        pytest.skip(f"attn_backend={name!r} is not available here")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if b.cannot_run(dev):
        pytest.skip(b.cannot_run(dev))
    q0, k0, v0 = (t.float().to(dev) for t in qkv(2, 4, 2, 40, 16, seed=12))
    dout = torch.randn(2, 4, 40, 16, generator=torch.Generator().manual_seed(13)).to(dev)
    q, k, v = (t.double().requires_grad_(True) for t in (q0, k0, v0))
    ref = reference_attention(q, k, v, window)
    ref_grads = torch.autograd.grad(ref, (q, k, v), dout.double())
    want = [ref, *ref_grads]  # float32 tolerances: PyTorch's own float32 error here, times a margin
    if dev == "cpu" and not b.supports_backward_on_cpu:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # flex: "called without torch.compile()"
            out = A.attention_core(q0, k0, v0, name, window, tile=16)
        fp32_noise.check([out], q0, k0, v0, window, dout, want)
        return
    q, k, v = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
    out = A.attention_core(q, k, v, name, window, tile=16)
    assert out.shape == ref.shape and out.dtype == torch.float32
    fp32_noise.check([out, *torch.autograd.grad(out, (q, k, v), dout)], q0, k0, v0, window, dout, want)


def test_fp32_tolerance_is_pytorchs_own_error_times_a_margin():
    """The float32 tolerance (tests/fp32_noise.py) passes PyTorch's own SDPA and fails an output off
    by a few times more than PyTorch's own rounding -- an error a fixed 1e-5 would let through."""
    q0, k0, v0 = (t.float() for t in qkv(2, 4, 2, 40, 16, seed=12))
    dout = torch.randn(2, 4, 40, 16, generator=torch.Generator().manual_seed(13))
    want = fp32_noise.reference(q0, k0, v0, 9, dout)
    floor = fp32_noise.noise(q0, k0, v0, 9, dout, want)
    assert 0 < floor["out"] < 1e-5  # PyTorch's own float32 error on these inputs
    sdpa = A.attention_core(q0, k0, v0, "sdpa", 9)
    fp32_noise.check([sdpa], q0, k0, v0, 9, dout, want)
    off = sdpa.clone()
    off[0, 0, 5, 3] += 2 * fp32_noise.MARGIN * floor["out"]
    assert (off.double() - want[0]).abs().max() < 1e-5
    with pytest.raises(AssertionError, match="out"):
        fp32_noise.check([off], q0, k0, v0, 9, dout, want)


@pytest.mark.parametrize("tile", [1, 7, 16, 64, 128])
def test_tiled_any_tile_size(tile):
    q0, k0, v0 = qkv(1, 4, 4, 30, 8, seed=3)
    for window in (None, 5):
        q, k, v = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
        out = flash.tiled_attention(q, k, v, window, tile)
        out.sum().backward()
        qr, kr, vr = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
        ref = reference_attention(qr, kr, vr, window)
        ref.sum().backward()
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
        for a, b in ((q, qr), (k, kr), (v, vr)):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-9)


def test_tiled_float32_inputs_keep_float32_and_match():
    q0, k0, v0 = qkv(2, 4, 4, 70, 16, dtype=torch.float32, seed=4)
    out = flash.tiled_attention(q0, k0, v0, None, 32)
    assert out.dtype == torch.float32
    fp32_noise.check([out], q0, k0, v0, None, torch.ones_like(q0), [reference_attention(q0, k0, v0)])


def test_tiled_rejects_unexpanded_kv():
    q, k, v = qkv(1, 4, 2, 8, 4)
    with pytest.raises(ValueError, match="repeat_kv"):
        flash.tiled_attention(q, k, v)


def test_attention_core_unknown_backend():
    q, k, v = qkv(1, 2, 2, 4, 4)
    with pytest.raises(ValueError, match="'nope'"):
        A.attention_core(q, k, v, "nope")


def test_local_needs_a_window():
    q, k, v = qkv(1, 2, 2, 4, 4)
    for bad in (None, 0, -2):
        with pytest.raises(ValueError, match=f"window={bad!r}"):
            A.attention_core(q, k, v, "local", bad)


# ---- flex: forward on CPU; training on CPU is our clear error ---------------------------------
@pytest.mark.parametrize("window", [None, 1, 7, 64, T], ids=lambda w: f"w{w}")
@pytest.mark.parametrize("heads", [(4, 4), (4, 1), (12, 4)], ids=lambda h: f"H{h[0]}kv{h[1]}")
def test_flex_forward_matches_eager_and_reference(heads, window):
    H, Hkv = heads
    q, k, v = qkv(2, H, Hkv, T, 8, seed=11)
    out = flex_forward(q, k, v, window)
    torch.testing.assert_close(out, ref.eager_attention(q, k, v, window), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out, reference_attention(q, k, v, window), rtol=1e-10, atol=1e-10)


def test_flex_training_on_cpu_raises_our_error():
    q, k, v = qkv(1, 4, 2, 16, 8, grad=True)
    with pytest.raises(RuntimeError) as err:
        A.attention_core(q, k, v, "flex", None)
    assert type(err.value) is RuntimeError  # not PyTorch's NotImplementedError (a RuntimeError subclass)
    assert "'sdpa'" in str(err.value) and "'local'" in str(err.value)


# ---- grouped heads ----------------------------------------------------------------------------
@pytest.mark.parametrize("n_rep", [1, 2, 3, 4, 12])
def test_repeat_kv_is_repeat_interleave(n_rep):
    x = torch.randn(2, 3, 5, 4)
    torch.testing.assert_close(ref.repeat_kv(x, n_rep), torch.repeat_interleave(x, n_rep, dim=1), rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["eager", "sdpa", "tiled", "flex"])
def test_gqa_core_equals_mha_on_interleaved_kv(backend):
    q, k, v = qkv(2, 12, 4, 40, 8, seed=5)
    kk, vv = torch.repeat_interleave(k, 3, dim=1), torch.repeat_interleave(v, 3, dim=1)
    if backend == "flex":
        a, b = flex_forward(q, k, v, None), flex_forward(q, kk, vv, None)
    else:
        a, b = run_backend(backend, q, k, v, None), run_backend(backend, q, kk, vv, None)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# ---- windows ----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["eager", "sdpa", "tiled", "local", "flex"])
def test_window_at_least_T_is_plain_causal(backend):
    q, k, v = qkv(2, 4, 2, 45, 8, seed=6)
    causal = F.scaled_dot_product_attention(q, ref.repeat_kv(k, 2), ref.repeat_kv(v, 2), is_causal=True)
    for window in (45, 46, 1000):
        out = flex_forward(q, k, v, window) if backend == "flex" else run_backend(backend, q, k, v, window)
        torch.testing.assert_close(out, causal, rtol=1e-12, atol=1e-12)
        if backend != "local":
            plain = flex_forward(q, k, v, None) if backend == "flex" else run_backend(backend, q, k, v, None)
            torch.testing.assert_close(out, plain, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["eager", "sdpa", "tiled", "local", "flex"])
def test_window_one_attends_to_itself_only(backend):
    q, k, v = qkv(2, 4, 2, 37, 8, seed=8)
    out = flex_forward(q, k, v, 1) if backend == "flex" else run_backend(backend, q, k, v, 1)
    # query head h reads value head h // 2, at its own position only
    torch.testing.assert_close(out, torch.repeat_interleave(v, 2, dim=1), rtol=1e-12, atol=1e-12)


def test_window_limits_what_a_query_can_see():
    """Changing a key/value that lies outside every later query's window changes nothing there."""
    W = 5
    q, k, v = qkv(1, 2, 2, 30, 4, seed=9)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 10] += 3.0
    v2[:, :, 10] -= 7.0
    for backend in ("eager", "sdpa", "tiled", "local"):
        a, b = run_backend(backend, q, k, v, W), run_backend(backend, q, k2, v2, W)
        torch.testing.assert_close(a[:, :, :10], b[:, :, :10], rtol=0, atol=0)  # the past
        assert (a[:, :, 10:15] - b[:, :, 10:15]).abs().amax(dim=-1).min() > 1e-6  # inside the window
        torch.testing.assert_close(a[:, :, 15:], b[:, :, 15:], rtol=1e-12, atol=1e-12)  # beyond it


# ---- online softmax ---------------------------------------------------------------------------
@pytest.mark.parametrize("tile", [1, 3, 8, 25])
def test_online_softmax_over_tiles_equals_softmax(tile):
    g = torch.Generator().manual_seed(10)
    Tq, Tk, D = 6, 25, 5
    s = torch.randn(2, Tq, Tk, generator=g, dtype=torch.float64) * 4
    s[:, 0, :12] = float("-inf")  # a row whose first tiles are fully masked
    s[:, 1, 20:] = float("-inf")  # a row whose last tile is fully masked
    s[:, 2, ::2] = float("-inf")  # scattered masking
    v = torch.randn(2, Tk, D, generator=g, dtype=torch.float64)
    m = torch.full((2, Tq, 1), float("-inf"), dtype=torch.float64)
    l = torch.zeros(2, Tq, 1, dtype=torch.float64)
    acc = torch.zeros(2, Tq, D, dtype=torch.float64)
    for j in range(0, Tk, tile):
        m, l, acc = flash.online_softmax_update(m, l, acc, s[..., j:j + tile], v[:, j:j + tile])
    assert torch.isfinite(acc).all() and torch.isfinite(l).all()
    p = torch.exp(s - s.max(-1, keepdim=True).values)
    p = p / p.sum(-1, keepdim=True)
    torch.testing.assert_close(acc / l, p @ v, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close((m + l.log()).squeeze(-1), torch.logsumexp(s, -1), rtol=1e-12, atol=1e-12)


# ---- memory: what autograd saves for backward -------------------------------------------------
def saved_bytes(fn, T_, B=1, H=2, D=8):
    """Bytes autograd saves for backward during fn(q, k, v); each storage counted once."""
    q, k, v = (torch.randn(B, H, T_, D, requires_grad=True) for _ in range(3))
    storages, largest = {}, [0]

    def pack(t):
        st = t.untyped_storage()
        storages[st.data_ptr()] = st.nbytes()
        largest[0] = max(largest[0], t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(q, k, v)
    out.sum().backward()  # the saved tensors are enough for backward
    assert q.grad is not None and k.grad is not None and v.grad is not None
    return sum(storages.values()), largest[0]


def test_tiled_saved_memory_grows_linearly_eager_quadratically():
    tiled = lambda q, k, v: A.attention_core(q, k, v, "tiled", None, tile=64)  # noqa: E731
    eager = lambda q, k, v: A.attention_core(q, k, v, "eager", None)  # noqa: E731
    t1, t1_big = saved_bytes(tiled, 256)
    t2, t2_big = saved_bytes(tiled, 512)
    e1, e1_big = saved_bytes(eager, 256)
    e2, _ = saved_bytes(eager, 512)
    assert t2 / t1 <= 2.2, (t1, t2)
    assert 3.5 <= e2 / e1 <= 4.05, (e1, e2)
    assert t1_big < 256 * 256 <= e1_big  # no T x T tensor is saved by the tiled path
    assert t2 < e2 / 4


# ---- RoPE against complex-number rotation -----------------------------------------------------
def test_rope_is_a_complex_rotation():
    T_, D, theta = 11, 8, 10000.0
    x = torch.randn(2, 3, T_, D, dtype=torch.float64)
    cos, sin = model_lib.rope_cache(T_, D, theta)
    out = model_lib.apply_rope(x, cos.double(), sin.double())
    z = torch.complex(x[..., : D // 2], x[..., D // 2:])
    ang = torch.tensor([[t / theta ** (2 * i / D) for i in range(D // 2)] for t in range(T_)], dtype=torch.float64)
    rz = z * torch.polar(torch.ones_like(ang), ang)
    torch.testing.assert_close(out, torch.cat([rz.real, rz.imag], -1), rtol=1e-6, atol=1e-6)


def test_rope_scores_depend_on_relative_position_only():
    D = 16
    cos, sin = model_lib.rope_cache(40, D)
    q, k = torch.randn(D, dtype=torch.float64), torch.randn(D, dtype=torch.float64)

    def score(i, j):
        qi = model_lib.apply_rope(q.expand(1, 1, 40, D), cos.double(), sin.double())[0, 0, i]
        kj = model_lib.apply_rope(k.expand(1, 1, 40, D), cos.double(), sin.double())[0, 0, j]
        return (qi @ kj).item()

    assert score(9, 4) == pytest.approx(score(30, 25), abs=1e-5)
    assert score(9, 4) != pytest.approx(score(9, 5), abs=1e-3)


# ---- flex on CUDA: one compilation per shape, past torch.compile's default limit ---------------
def _twice_plus_one(x):  # two functions: torch.compile counts compilations per code object
    return x * 2 + 1


def _thrice_plus_one(x):
    return x * 3 + 1


def test_compiled_flex_keeps_compiling_past_torchs_default_limit():
    """On CUDA every new shape (T, dtype, window, GQA ratio) compiles flex_attention again; past
    torch.compile's limit (8 per function) a call silently runs *uncompiled*, building the T x T
    scores. ``flex.run_compiled`` (the CUDA path of ``flex_attention``) lifts the limit: a sweep of
    limit + 2 shapes compiles every one, where the same sweep called plainly stops at the limit."""
    from torch._dynamo.testing import CompileCounter

    from tutorial_lib.attention import flex

    config = torch._dynamo.config
    limit = getattr(config, "recompile_limit", None) or config.cache_size_limit
    assert limit < flex.RECOMPILE_LIMIT
    plain_count, lifted_count = CompileCounter(), CompileCounter()
    plain = torch.compile(_twice_plus_one, backend=plain_count, dynamic=False)
    lifted = torch.compile(_thrice_plus_one, backend=lifted_count, dynamic=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "hit config.recompile_limit" for the plain sweep
        for n in range(1, limit + 3):
            x = torch.ones(n)
            assert torch.equal(plain(x), x * 2 + 1) and torch.equal(flex.run_compiled(lifted, x), x * 3 + 1)
    assert plain_count.frame_count == limit  # the failure this guards against
    assert lifted_count.frame_count == limit + 2
    assert (getattr(config, "recompile_limit", None) or config.cache_size_limit) == limit  # restored
