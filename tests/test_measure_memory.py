"""measure.memory: exact CPU breakdown (saved-tensor hooks, each storage once) vs formulas."""
import pytest
import torch

from tutorial_lib.attention import attention_core
from tutorial_lib.lessons import profile as profile_lesson
from tutorial_lib.measure import memory as M
from tutorial_lib.model import GPT, GPTConfig

CFG = GPTConfig(n_layer=2, n_head=4, n_embd=64, vocab_size=1000, block_size=128, name="t")


@pytest.fixture(scope="module")
def eager_breakdown():
    return M.memory_breakdown(CFG.replace(attn_backend="eager"), 2, 32, device="cpu")


def test_params_grads_optimizer_exact(eager_breakdown):
    mb = eager_breakdown
    model = GPT(CFG)
    n = model.num_params()
    n_tensors = len(list(model.parameters()))
    assert mb.params_bytes == 4 * n and mb.grads_bytes == 4 * n
    # AdamW: exp_avg + exp_avg_sq per parameter, plus a float32 step counter per tensor
    assert mb.optimizer_bytes == 2 * 4 * n + 4 * n_tensors
    assert mb.peak_bytes is None and mb.device == "cpu"
    assert mb.total_bytes == sum(mb.by_kind().values())


def test_activation_components_match_formulas(eager_breakdown):
    mb, L, B, T, C, H = eager_breakdown, 2, 2, 32, 64, 4
    hid = 4 * C
    act = mb.activations_by_component
    # eager attention keeps the probabilities (B, H, T, T) fp32 and its (T, T) bool mask per layer
    assert act["attention.scores"] == L * (B * H * T * T * 4 + T * T)
    assert act["mlp.act"] == L * B * T * hid * 4  # GELU keeps its input
    assert act["mlp.down"] == L * B * T * hid * 4  # down_proj keeps the GELU output
    assert act["mlp.up"] == L * B * T * C * 4  # up_proj keeps the norm's output
    assert act["residual"] == (2 * L + 1) * B * T * C * 4  # every norm keeps its input
    assert act["loss"] >= B * T * CFG.vocab_size * 4  # fp32 log-probabilities
    assert sum(act.values()) == mb.activations_bytes
    groups = mb.activations_by_group()
    assert groups["attention scores/probs"] == act["attention.scores"]


def test_sdpa_keeps_no_scores():
    mb = M.memory_breakdown(CFG, 2, 32, device="cpu")
    assert "attention.scores" not in mb.activations_by_component
    eager = M.memory_breakdown(CFG.replace(attn_backend="eager"), 2, 32, device="cpu")
    assert mb.activations_bytes < eager.activations_bytes


def test_each_storage_counted_once():
    x = torch.randn(1000, requires_grad=True)

    def f(x):
        y = x * 2  # saves nothing (scalar)
        z = y.sin()  # saves y
        return z * z + z[:10].sum()  # saves z twice, and a view of z: one storage

    assert M.saved_bytes(f, x) == 2 * 1000 * 4
    # parameters of a module are not activations
    lin = torch.nn.Linear(100, 100)
    assert M.saved_bytes(lin, torch.randn(3, 100)) == 0  # input is a leaf, weight a parameter


def test_attention_saved_bytes_scale_with_T():
    def saved(backend, T):
        q, k, v = (torch.randn(1, 2, T, 16, requires_grad=True) for _ in range(3))
        return M.saved_bytes(attention_core, q, k, v, backend)

    eager = saved("eager", 256) / saved("eager", 128)
    sdpa = saved("sdpa", 256) / saved("sdpa", 128)
    tiled = saved("tiled", 256) / saved("tiled", 128)
    assert 3.5 < eager <= 4.1 and 1.9 < sdpa < 2.2 and 1.9 < tiled < 2.2


def test_bad_inputs():
    with pytest.raises(ValueError, match="seq_len=999"):
        M.memory_breakdown(CFG, 1, 999, device="cpu")
    assert M.fmt_bytes(1536) == "1.5 KiB" and M.fmt_bytes(None) == "n/a" and M.fmt_bytes(12) == "12 B"


def test_probs_checker_agrees_with_measured_eager_memory():
    q, k, v = (torch.randn(2, 3, 40, 8, requires_grad=True) for _ in range(3))
    measured = M.saved_bytes(attention_core, q, k, v, "eager", by_component=False)
    mask = 40 * 40  # the bool causal mask is kept too
    assert measured == profile_lesson.attention_probs_bytes(2, 3, 40, 4) + mask
    assert profile_lesson.check_attention_probs_bytes(4 * 12 * 512 * 512 * 2).startswith("✓")
    assert "elements" in profile_lesson.check_attention_probs_bytes(4 * 12 * 512 * 512)
    assert "one head" in profile_lesson.check_attention_probs_bytes(4 * 512 * 512 * 2)
    assert profile_lesson.check_attention_probs_bytes(None).startswith("✗")


# ---- the allocator's peak of any callable ------------------------------------------------------
def test_cpu_peak_is_the_largest_running_sum_of_allocations():
    """Known allocations: 4 MB, then 8 MB (12 held), free the 4, then 2 MB: the peak is 12 MB; what
    the call keeps (appended to a list outside it) is its net."""
    kept = []

    def fn():
        a = torch.empty(1_000_000)  # 4 MB of float32
        b = torch.empty(2_000_000)  # 8 MB: 12 MB held now
        del a
        c = torch.empty(500_000)  # 2 MB: 10 MB held
        kept.append(c)
        return b  # dropped by the measurement: counted in the peak, not in the net

    p = M.cpu_peak_bytes(fn)
    assert p.peak_bytes == 12_000_000 and p.net_bytes == 2_000_000 and p.allocations == 3
    assert M.peak_bytes(lambda: torch.empty(250_000), "cpu") == 1_000_000
    assert M.peak_bytes(lambda: None, "cpu") == 0


def test_peak_counts_temporaries_that_saved_bytes_does_not():
    """An eager attention forward+backward builds (T, T) scores and probabilities: its peak holds
    more than one (B, H, T, T) matrix, though the inputs are excluded and nothing is kept after."""
    B, H, T, D = 1, 2, 128, 8
    q, k, v = (torch.randn(B, H, T, D, requires_grad=True) for _ in range(3))

    def step():
        attention_core(q, k, v, "eager").sum().backward()

    step()
    for t in (q, k, v):
        t.grad = None
    p = M.cpu_peak_bytes(step)
    assert p.peak_bytes >= 2 * B * H * T * T * 4
    assert p.net_bytes == 3 * B * H * T * D * 4  # the three gradients it wrote


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_peak_of_a_known_allocation():
    p = M.cuda_peak_bytes(lambda: torch.empty(1 << 20, device="cuda"))
    assert p.peak_bytes >= 4 << 20 and p.net_bytes == 0
