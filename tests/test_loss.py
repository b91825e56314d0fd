"""tutorial_lib.loss: the chunked linear cross-entropy against F.cross_entropy in float64, what it
keeps for backward (exact byte counts), and its place in the model, the cost model and the profiler."""
import re

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from tutorial_lib.loss import LOSS_IMPLS, chunked_linear_cross_entropy
from tutorial_lib.measure import cost, flops
from tutorial_lib.measure import memory as M
from tutorial_lib.measure import profile as P
from tutorial_lib.model import GPT, GPTConfig, get_config

pytestmark = pytest.mark.usefixtures("one_thread")
CHUNKED = [impl for impl in LOSS_IMPLS if impl != "full"]


def reference(hidden, weight, targets):
    return F.cross_entropy(hidden @ weight.T, targets, ignore_index=-1)


def loss_and_grads(fn, hidden, weight, targets, grad_out=1.0):
    h = hidden.detach().clone().requires_grad_()
    w = weight.detach().clone().requires_grad_()
    loss = fn(h, w, targets)
    loss.backward(torch.tensor(grad_out, dtype=loss.dtype))
    return loss.detach(), h.grad, w.grad


def problem(N=37, C=16, V=53, ignore_every=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, C, generator=g, dtype=dtype)
    weight = torch.randn(V, C, generator=g, dtype=dtype)
    targets = torch.randint(0, V, (N,), generator=g)
    if ignore_every:
        targets[::ignore_every] = -1
    return hidden, weight, targets


# ---- exact in float64 ---------------------------------------------------------------------------
@pytest.mark.parametrize("liger", [False, True], ids=["recompute", "liger"])
@pytest.mark.parametrize("chunk", [1, 5, 36, 37, 1000])  # 37 tokens: ragged, exact, one chunk
def test_loss_and_gradients_equal_cross_entropy_in_float64(chunk, liger):
    hidden, weight, targets = problem()
    ref = loss_and_grads(reference, hidden, weight, targets, grad_out=2.5)
    got = loss_and_grads(lambda h, w, t: chunked_linear_cross_entropy(h, w, t, chunk, grad_in_forward=liger),
                         hidden, weight, targets, grad_out=2.5)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("liger", [False, True], ids=["recompute", "liger"])
def test_batched_shapes_and_every_target_ignored(liger):
    hidden, weight, targets = problem(N=12)
    got = chunked_linear_cross_entropy(hidden.view(3, 4, -1), weight, targets.view(3, 4), 5, grad_in_forward=liger)
    torch.testing.assert_close(got, reference(hidden, weight, targets), rtol=1e-13, atol=0)
    # nothing to predict: NaN loss and zero gradients, as F.cross_entropy gives
    none = torch.full_like(targets, -1)
    ref = loss_and_grads(reference, hidden, weight, none)
    out = loss_and_grads(lambda h, w, t: chunked_linear_cross_entropy(h, w, t, 5, grad_in_forward=liger),
                         hidden, weight, none)
    assert torch.isnan(ref[0]) and torch.isnan(out[0])
    for a, b in zip(out[1:], ref[1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("impl", CHUNKED)
@pytest.mark.parametrize("changes", [{}, {"tie_embeddings": False}, {"pad_vocab_multiple": 64}],
                         ids=["tied", "untied", "padded"])
def test_model_loss_and_every_parameter_gradient_match_the_full_path(impl, changes):
    """float64 GPT: the chunked head and loss give the full path's loss and gradients, with tied
    or untied embeddings and with the padded vocabulary's rows inside the softmax."""
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=97, block_size=32, name="t", **changes)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, cfg.vocab_size, (2, 9), generator=g)
    tgt = torch.randint(0, cfg.vocab_size, (2, 9), generator=g)
    tgt[0, :3] = -1
    results = []
    for c in (cfg, cfg.replace(loss_impl=impl, loss_chunk=4)):
        torch.manual_seed(0)
        model = GPT(c).double()
        logits, loss = model(idx, tgt)
        loss.backward()
        results.append((logits, loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (full_logits, full_loss, full_grads), (none, loss, grads) = results
    assert none is None and full_logits.shape[-1] == cfg.padded_vocab_size
    torch.testing.assert_close(loss, full_loss, rtol=1e-13, atol=0)
    assert grads.keys() == full_grads.keys()
    for n in grads:
        torch.testing.assert_close(grads[n], full_grads[n], rtol=1e-10, atol=1e-13, msg=n)
    if "pad_vocab_multiple" in changes:  # the padded rows took part: their gradient is not zero
        assert grads["wte.weight"][cfg.vocab_size:].abs().max() > 0


@pytest.mark.parametrize("liger", [False, True], ids=["recompute", "liger"])
def test_bf16_autocast_upcasts_each_chunk(liger):
    """Under autocast the matmuls run in bf16 (as nn.Linear's would) and the softmax in fp32."""
    hidden, weight, targets = problem(N=64, C=32, V=301, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss_and_grads(lambda h, w, t: chunked_linear_cross_entropy(h, w, t, 16, grad_in_forward=liger),
                             hidden, weight, targets)
        full = loss_and_grads(lambda h, w, t: F.cross_entropy(F.linear(h, w).float(), t, ignore_index=-1),
                              hidden, weight, targets)
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.float32 and got[2].dtype == torch.float32
    # the same bf16 logits, upcast: the losses agree to fp32 rounding
    torch.testing.assert_close(got[0], full[0], rtol=1e-5, atol=1e-5)
    exact = loss_and_grads(reference, hidden.double(), weight.double(), targets)
    for a, b in zip(got[1:], exact[1:]):  # gradients through bf16 matmuls: bf16's precision
        torch.testing.assert_close(a.double(), b, rtol=0.02, atol=2e-3)


def test_bad_input_names_the_argument():
    hidden, weight, targets = problem()
    with pytest.raises(ValueError, match="chunk=0"):
        chunked_linear_cross_entropy(hidden, weight, targets, 0)
    with pytest.raises(ValueError, match=re.escape("targets has shape (36,)")):
        chunked_linear_cross_entropy(hidden, weight, targets[1:], 4)
    with pytest.raises(ValueError, match="weight"):
        chunked_linear_cross_entropy(hidden, weight.T, targets, 4)
    with pytest.raises(ValueError, match="float"):
        chunked_linear_cross_entropy(hidden, weight, targets.double(), 4)
    for changes, needle in (({"loss_impl": "fused"}, "loss_impl='fused'"), ({"loss_chunk": 0}, "loss_chunk=0"),
                            ({"loss_chunk": 2.5}, "loss_chunk=2.5")):
        with pytest.raises(ValueError, match=re.escape(needle)):
            GPTConfig(**changes)


# ---- what it keeps: exact byte counts ------------------------------------------------------------
class LargestTensor(TorchDispatchMode):
    """The most elements of any tensor an op produced while it was on."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("liger", [False, True], ids=["recompute", "liger"])
def test_no_tensor_of_tokens_times_vocab_ever_exists(liger):
    N, C, V, chunk = 96, 8, 50, 8
    hidden, weight, targets = problem(N=N, C=C, V=V, dtype=torch.float32)
    h, w = hidden.requires_grad_(), weight.requires_grad_()
    with LargestTensor() as full:
        reference(h, w, targets).backward()
    with LargestTensor() as mode:
        chunked_linear_cross_entropy(h, w, targets, chunk, grad_in_forward=liger).backward()
    assert full.largest == N * V  # the reference does make the logits
    assert mode.largest == max(chunk * V, V * C, N * C)  # one chunk's logits, or a gradient


def test_saved_bytes_exact_and_independent_of_the_vocabulary():
    """Recompute keeps the hidden states and one fp32 log-sum-exp per token (plus the count of
    targets); Liger keeps the two gradients. Neither grows with N x V; the full path keeps N x V."""
    N, C = 64, 16

    def saved(V, impl, chunk=8):
        hidden, weight, targets = problem(N=N, C=C, V=V, dtype=torch.float32)
        w = weight.requires_grad_()
        x = torch.randn(N, C, requires_grad=True)

        def run(x, w, targets):  # leaves passed in are not counted: they exist anyway
            h = x * 1.0  # a non-leaf hidden state, like the model's last norm output
            if impl == "full":
                return reference(h, w, targets)
            return chunked_linear_cross_entropy(h, w, targets, chunk, grad_in_forward=impl == "chunked_liger")
        return M.saved_bytes(run, x, w, targets)

    for V in (50, 400):
        assert saved(V, "chunked") == N * C * 4 + N * 4 + 8  # hidden, log-sum-exp, n_valid (int64)
        assert saved(V, "chunked", chunk=32) == saved(V, "chunked")
        assert saved(V, "chunked_liger") == N * C * 4 + V * C * 4  # grad of hidden and of weight
        assert saved(V, "full") >= N * V * 4  # the log-probabilities
    assert saved(400, "full") - saved(50, "full") == N * 350 * 4


@pytest.mark.slow
def test_seed_setting_saves_at_least_350_MB_by_exact_count():
    """GPT-2 small's head and loss at the seed's B=4, T=512, fp32: the bytes saved for backward fall
    by >= 350 MB with the recompute version. The head and loss keep the same bytes whatever the
    number of layers, so one layer keeps this test fast; the guide suite counts all twelve."""
    B, T = 4, 512
    got = {}
    for impl in LOSS_IMPLS:
        cfg = get_config("gpt2_small", n_layer=1, loss_impl=impl)
        torch.manual_seed(0)
        model = GPT(cfg)
        idx = torch.randint(0, cfg.vocab_size, (B, T))
        got[impl] = M.saved_bytes(model, idx, idx, by_component=True)
    (full, fc), (rec, rc), (lig, lc) = got["full"], got["chunked"], got["chunked_liger"]
    N, C, V = B * T, 768, 50257
    assert full - rec >= 350e6
    assert fc["loss"] >= N * V * 4 and rc["loss"] == N * C * 4 + N * 4 + 8
    assert lc["loss"] == N * C * 4 + V * C * 4  # Liger's weight-gradient buffer counts as saved
    assert full - lig >= 250e6
    for comp in set(fc) - {"loss", "lm_head"}:  # nothing else changes
        assert rc[comp] == fc[comp] and lc[comp] == fc[comp], comp


def test_memory_breakdown_and_cost_model_see_what_the_chunked_loss_keeps():
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=300, block_size=64, name="t")
    B, T = 2, 32
    N = B * T
    for impl in LOSS_IMPLS:
        c = cfg.replace(loss_impl=impl, loss_chunk=16)
        mb = M.memory_breakdown(c, B, T, device="cpu")
        head = mb.activations_by_group()["head + loss"]
        saved = cost.activation_bytes(c, B, T)
        predicted = saved.get("lm_head", 0) + saved.get("loss", 0)
        assert predicted == head  # the model's bytes are the hooks', exactly
        if impl == "full":
            assert head >= N * 300 * 4
        elif impl == "chunked":
            # hidden + log-sum-exp + n_valid, and the int64 targets (the memory kit counts inputs)
            assert head == N * 16 * 4 + N * 4 + 8 + N * 8
        else:
            assert head == N * 16 * 4 + 300 * 16 * 4  # the two gradients (nothing else is kept)


# ---- the rest of the kit --------------------------------------------------------------------------
@pytest.mark.parametrize("impl", CHUNKED)
def test_cost_model_matches_flop_counter(impl):
    """Recompute: 3 head matmuls in backward; Liger: 3 in forward, none in backward."""
    cfg = GPTConfig(n_layer=2, n_head=4, n_embd=64, vocab_size=1000, block_size=64, name="t",
                    loss_impl=impl, loss_chunk=7, pad_vocab_multiple=64)
    got = flops.count_flops(cfg, 2, 20)
    fwd = cost.flops_by_scope(cfg, 2, 20, "forward", "counted")
    bwd = cost.flops_by_scope(cfg, 2, 20, "backward", "counted")
    assert (got["fwd"], got["bwd"]) == (sum(fwd.values()), sum(bwd.values()))
    assert got["bwd_by_kind"]["attention"] == bwd["attention.core"]
    one = 2 * 40 * 64 * 1024
    assert (fwd["lm_head"], bwd.get("lm_head", 0)) == ((one, 3 * one) if impl == "chunked" else (3 * one, 0))


def test_profile_charges_lm_head_and_loss_in_forward_and_backward():
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=32, vocab_size=2000, block_size=64, name="t",
                    loss_impl="chunked", loss_chunk=16)
    r = P.profile_step(cfg, 2, 32, device="cpu", steps=2, warmup=1)
    fwd, bwd = r.ms("forward"), r.ms("backward")
    for s in ("lm_head", "loss"):
        assert fwd.get(s, 0) > 0 and bwd.get(s, 0) > 0, s
    assert min(r.ms().values()) >= 0  # a nested scope never leaves its parent below zero
    assert sum(r.shares().values()) == pytest.approx(1.0)


@pytest.mark.parametrize("impl", CHUNKED)
def test_generation_is_unchanged(impl):
    cfg = get_config("tiny")
    torch.manual_seed(0)
    full = GPT(cfg)
    chunked = GPT(cfg.replace(loss_impl=impl))
    chunked.load_state_dict(full.state_dict())
    idx = torch.randint(0, cfg.vocab_size, (2, 5))
    torch.testing.assert_close(chunked(idx)[0], full(idx)[0], rtol=0, atol=0)
    assert torch.equal(chunked.generate(idx, 4), full.generate(idx, 4))


@pytest.mark.parametrize("impl", CHUNKED)
def test_training_with_the_chunked_loss_follows_the_full_path(impl):
    """train(): the same seed, batches and updates give the same losses, to fp32 rounding."""
    from tutorial_lib.train import TrainConfig, train

    tc = TrainConfig(steps=4, batch_size=2, seq_len=16, eval_every=2, eval_batches=1, warmup_steps=1,
                     device="cpu", progress=False)
    cfg = get_config("tiny")
    full = train(cfg, tc)
    chunked = train(cfg.replace(loss_impl=impl, loss_chunk=8), tc)
    assert chunked.model["loss_impl"] == impl
    assert chunked.val_loss == pytest.approx(full.val_loss, rel=1e-5)
    assert chunked.train_loss == pytest.approx(full.train_loss, rel=1e-5)
