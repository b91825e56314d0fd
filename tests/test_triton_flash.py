"""The Triton flash-attention backend against float64 attention, in Triton's interpreter on a CPU.

tests/conftest.py sets TRITON_INTERPRET=1 (where no GPU exists) before anything imports the kernels.
The kernel tests skip where Triton is not installed (it has wheels for Linux only); what a learner
without Triton sees -- a clear error naming `pip install triton`, readable kernel source, a notebook
that says the interpreter run needs Linux or a GPU -- is tested here everywhere, in a subprocess
that hides Triton. Timing the kernel belongs to a GPU run (``lessons.triton_flash.time_kernels``),
never to these tests.
"""
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import fp32_noise
import pytest
import torch

from tutorial_lib import attention as A
from tutorial_lib.attention import flash_tiled
from tutorial_lib.attention.reference import eager_attention
from tutorial_lib.attention.triton_flash import jit, tl
from tutorial_lib.lessons import triton_flash as L
from tutorial_lib.measure import cost, flops
from tutorial_lib.model import GPT, GPTConfig

ROOT = Path(__file__).resolve().parents[1]
HAS_TRITON = importlib.util.find_spec("triton") is not None
DEVICE = L.kernel_device()
# the kernels run here unless Triton is missing, or the interpreter cannot run (triton <= 3.6 with
# numpy >= 2.4: a CPU stand-in's problem, not the GPU path's; triton_flash.interpreter_problem)
CANNOT_RUN = ("Triton has wheels for Linux only; pip install triton" if not HAS_TRITON
              else A.get("triton").cannot_run(DEVICE.type))
needs_triton = pytest.mark.skipif(CANNOT_RUN is not None, reason=str(CANNOT_RUN))

pytestmark = pytest.mark.usefixtures("one_thread")


def qkv(B, H, Hkv, T, D, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, D, generator=g)
    k, v = (torch.randn(B, Hkv, T, D, generator=g) for _ in range(2))
    return [t.to(DEVICE, dtype) for t in (q, k, v)]


def reference(q, k, v, window, dout):
    """Output and (dq, dk, dv) of eager attention in float64 on the same inputs."""
    x = [t.detach().double().requires_grad_() for t in (q, k, v)]
    out = eager_attention(*x, window)
    return out, torch.autograd.grad(out, x, dout.double())


def run_triton(q, k, v, window, tile, dout):
    x = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = A.attention_core(*x, "triton", window, tile)
    return out, torch.autograd.grad(out, x, dout)


def max_errors(got, want):
    (out, grads), (rout, rgrads) = got, want
    return [(a.double() - b).abs().max().item() for a, b in zip((out, *grads), (rout, *rgrads))]


# ---- forward and backward against float64 ----------------------------------------------------------
CASES = {  # (B, H, Hkv, T, D, window, tile): B*H up to 4, T up to 256, uneven T, GQA, windows
    "causal": (1, 2, 2, 128, 64, None, 64),
    "gqa2:1-T100-B2": (2, 2, 1, 100, 64, None, 64),
    "gqa4:2-T256": (1, 4, 2, 256, 64, None, 64),
    "window50-T200": (1, 2, 2, 200, 64, 50, 64),
    "gqa4:1-window17-tile32-T130": (1, 4, 1, 130, 64, 17, 32),
    "window1": (1, 2, 2, 70, 64, 1, 32),
    "window>=T": (1, 2, 1, 90, 64, 300, 64),
    "D128": (1, 1, 1, 80, 128, None, 64),
    "D16-tile16-window5": (2, 2, 2, 45, 16, 5, 16),
}


@needs_triton
@pytest.mark.parametrize("case", list(CASES))
def test_forward_and_backward_match_float64_reference(case):
    B, H, Hkv, T, D, window, tile = CASES[case]
    q, k, v = qkv(B, H, Hkv, T, D, seed=len(case))
    dout = torch.randn(B, H, T, D, generator=torch.Generator().manual_seed(9)).to(DEVICE)
    got = run_triton(q, k, v, window, tile, dout)
    assert got[0].shape == (B, H, T, D) and got[0].dtype == torch.float32
    assert [g.shape for g in got[1]] == [q.shape, k.shape, v.shape]
    out, grads = reference(q, k, v, window, dout)
    # within a margin of PyTorch's own float32 error on these inputs (tests/fp32_noise.py)
    fp32_noise.check([got[0], *got[1]], q, k, v, window, dout, [out, *grads])


@needs_triton
@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 6e-2), (torch.float16, 1e-2)])
def test_half_precision_inputs_keep_their_dtype_and_match(dtype, tol):
    q, k, v = qkv(1, 2, 1, 96, 64, dtype=dtype, seed=3)
    dout = torch.randn(1, 2, 96, 64, generator=torch.Generator().manual_seed(4)).to(DEVICE, dtype)
    got = run_triton(q, k, v, 20, 32, dout)
    assert got[0].dtype == dtype and all(g.dtype == dtype for g in got[1])
    errs = max_errors(got, reference(q, k, v, 20, dout))
    assert max(errs) < tol, errs
    assert max(errs) > 0  # really computed in half precision, not silently in float64


@needs_triton
@pytest.mark.parametrize("window", [None, 24])
def test_logsumexp_is_that_of_the_scaled_visible_scores(window):
    from tutorial_lib.attention import triton_flash as TF

    q, k, v = qkv(1, 4, 2, 75, 32, seed=5)
    out, lse = TF.flash_forward(q, k, v, window, 32)
    kk = k.double().repeat_interleave(2, dim=1)
    s = q.double() @ kk.transpose(-2, -1) / math.sqrt(32)
    i, j = torch.arange(75)[:, None], torch.arange(75)[None, :]
    visible = (j <= i) & ((i - j < window) if window else True)
    want = torch.logsumexp(s.masked_fill(~visible.to(DEVICE), float("-inf")), dim=-1)
    assert lse.dtype == torch.float32 and lse.shape == (1, 4, 75)
    s32 = q @ k.repeat_interleave(2, dim=1).transpose(-2, -1) / math.sqrt(32)  # PyTorch's own, in float32
    torch_lse = torch.logsumexp(s32.masked_fill(~visible.to(DEVICE), float("-inf")), dim=-1)
    fp32_noise.within(lse, want, torch_lse)


@needs_triton
def test_non_contiguous_inputs_as_the_model_makes_them():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 50, 2, 3, 16, generator=g).to(DEVICE)  # (B, T, [q, kv], heads, D)
    q, k = x[:, :, 0].transpose(1, 2), x[:, :, 1].transpose(1, 2)  # (B, H, T, D) views
    assert not q.is_contiguous()
    fp32_noise.check([A.attention_core(q, k, k, "triton", 7, 16)], q, k, k, 7, torch.ones_like(q),
                     [eager_attention(q.double(), k.double(), k.double(), 7)])


# ---- whole tiles outside the band are skipped: never read ------------------------------------------
@needs_triton
@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")  # NumPy, on the planted NaNs
def test_skipped_tiles_are_never_read():
    """NaN in one tile of V (forward, dQ) or of Q (dK, dV): a program that read it would turn NaN
    (0 * NaN = NaN in tl.dot), so exactly the programs whose tile lists include it may go NaN --
    the lists of ``flash_tiled.key_tiles``, which ``computed_pairs`` counts."""
    T, tile, W = 250, 32, 40
    q, k, v = qkv(1, 1, 1, T, 16, seed=7)
    n = math.ceil(T / tile)
    reads = {qb: {k0 // tile for k0 in flash_tiled.key_tiles(qb * tile, min(qb * tile + tile, T), T, tile, W)}
             for qb in range(n)}
    assert reads[0] == {0} and reads[5] == {3, 4, 5}  # the window skips tiles 0-2 for block 5
    for bad in (0, 3, n - 1):
        v_nan = v.clone()
        v_nan[:, :, bad * tile:(bad + 1) * tile] = float("nan")
        x = [t.clone().requires_grad_() for t in (q, k, v_nan)]
        out = A.attention_core(*x, "triton", W, tile)
        dq, = torch.autograd.grad(out, x[0], torch.ones_like(out))
        for qb in range(n):
            rows = slice(qb * tile, min(qb * tile + tile, T))
            read = bad in reads[qb]
            assert torch.isnan(out[:, :, rows]).any().item() == read, (bad, qb)
            assert torch.isnan(dq[:, :, rows]).any().item() == read, (bad, qb)
        # the dK/dV kernel walks the other way: key block kb reads query tile qb iff kb in reads[qb]
        q_nan = q.clone()
        q_nan[:, :, bad * tile:(bad + 1) * tile] = float("nan")
        x = [t.clone().requires_grad_() for t in (q_nan, k, v)]
        out = A.attention_core(*x, "triton", W, tile)
        dk, dv = torch.autograd.grad(out, x[1:], torch.ones_like(out))
        for kb in range(n):
            cols = slice(kb * tile, min(kb * tile + tile, T))
            read = kb in reads[bad]
            assert torch.isnan(dk[:, :, cols]).any().item() == read, (bad, kb)


def test_registry_flags_count_the_tiles_it_computes():
    b = A.get("triton")
    assert b.counted_pairs(256, None, 64, "cpu") == 0  # FlopCounterMode cannot see inside the kernel
    assert b.computed_pairs(256, None, 64, "cpu") == 10 * 64 * 64  # 4 + 3 + 2 + 1 tiles of 64 x 64
    assert b.computed_pairs(256, 64, 64, "cpu") == 7 * 64 * 64  # the diagonal and one tile before it
    assert b.computed_pairs(100, 30, 32, "cpu") == flash_tiled.tiled_pairs(100, 32, 30)
    assert b.bwd_matmuls() == 7 and not b.materializes_scores and not b.needs_window
    assert b.available() == HAS_TRITON


# ---- through the registry and the model, no special cases -------------------------------------------
@needs_triton
def test_gpt_with_triton_backend_matches_eager_logits_and_grads():
    cfg = GPTConfig(n_layer=2, n_head=4, n_kv_head=2, n_embd=64, vocab_size=101, block_size=64,
                    window=9, tile_size=16, attn_backend="eager")
    torch.manual_seed(0)
    ref = GPT(cfg).to(DEVICE)
    tri = GPT(cfg.replace(attn_backend="triton")).to(DEVICE)
    tri.load_state_dict(ref.state_dict())
    idx = torch.randint(0, 101, (2, 40), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    results = []
    for m in (ref, tri):
        logits, loss = m(idx, idx)
        loss.backward()
        results.append((logits, loss, {n: p.grad for n, p in m.named_parameters()}))
    (l0, s0, g0), (l1, s1, g1) = results
    torch.testing.assert_close(l1, l0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(s1, s0, rtol=1e-5, atol=1e-5)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-3, atol=1e-4, msg=lambda s: f"{name}: {s}")


@needs_triton
def test_flop_counter_sees_no_attention_matmul_in_the_kernel():
    cfg = GPTConfig(n_layer=2, n_head=4, n_embd=64, vocab_size=1000, block_size=64, tile_size=16,
                    attn_backend="triton")
    got = flops.count_flops(cfg, 2, 20, device=DEVICE)
    assert (got["fwd"], got["bwd"]) == (cost.step_flops(cfg, 2, 20, "fwd", "counted"),
                                        cost.step_flops(cfg, 2, 20, "bwd", "counted"))
    sdpa = flops.count_flops(cfg.replace(attn_backend="sdpa"), 2, 20, device=DEVICE)
    n_layer, B, H, T, D = 2, 2, 4, 20, 16
    assert sdpa["fwd"] - got["fwd"] == n_layer * 2 * (2 * B * H * T * T * D)  # SDPA's two T x T matmuls


@needs_triton
def test_saved_memory_is_linear_in_T():
    from tutorial_lib.measure.memory import saved_bytes

    def kept(T):
        q, k, v = (t.requires_grad_() for t in qkv(1, 2, 2, T, 32, seed=T))
        return saved_bytes(A.attention_core, q, k, v, "triton")

    small, big = kept(64), kept(128)
    assert big == 2 * small  # nothing T x T
    assert small == 4 * (2 * 64 * 32) + 4 * 2 * 64  # besides q, k, v: out and one float32 LSE per query


# ---- clear errors ----------------------------------------------------------------------------------
def test_bad_inputs_name_the_value():
    from tutorial_lib.attention import triton_flash as TF

    q = torch.zeros(1, 4, 8, 64)
    kv = torch.zeros(1, 2, 8, 64)
    for args, match in [((q, kv, kv, None, 48), "tile=48"), ((q, kv, kv, 0, 64), "window=0"),
                        ((q[..., :8], kv[..., :8], kv[..., :8], None, 64), "head_dim=8"),
                        ((q.double(), kv.double(), kv.double(), None, 64), "float64"),
                        ((q, torch.zeros(1, 3, 8, 64), torch.zeros(1, 3, 8, 64), None, 64), "n_kv_head=3"),
                        ((q, kv[:, :, :4], kv, None, 64), "k and v")]:
        with pytest.raises(ValueError, match=match):
            TF.check_inputs(*args)


@needs_triton
def test_attention_dropout_is_refused_not_ignored():
    q, k, v = qkv(1, 2, 2, 16, 16)
    with pytest.raises(ValueError, match="dropout_p=0.1"):
        A.attention_core(q, k, v, "triton", None, 16, dropout_p=0.1, training=True)
    A.attention_core(q, k, v, "triton", None, 16, dropout_p=0.1, training=False)  # eval: no dropout


def run_python(code: str, hide_triton: bool = False, **env) -> subprocess.CompletedProcess:
    prefix = "import sys; sys.modules['triton'] = None\n" if hide_triton else ""
    return subprocess.run([sys.executable, "-c", prefix + code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=120)


def test_the_registry_and_the_model_do_not_import_the_kernels_early():
    """Triton itself may be imported early (torch.utils.flop_counter does); what must wait for
    TRITON_INTERPRET is the module that defines the kernels."""
    r = run_python(
        "import sys\n"
        "from tutorial_lib import attention, model\n"
        "m = model.GPT(model.GPTConfig(n_layer=1, n_head=2, n_embd=32, vocab_size=50, block_size=16,"
        " attn_backend='triton', tile_size=16))\n"
        "print(sorted(n for n in sys.modules if n.endswith('triton_flash')))\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_without_triton_the_backend_says_how_to_install_it():
    r = run_python(
        "import torch\n"
        "from tutorial_lib import attention, model\n"
        "from tutorial_lib.lessons import triton_flash as L\n"
        "print('available', attention.get('triton').available())\n"
        "print('source', 'tl.dot' in str(L.kernel_source(L.triton_flash.flash_forward_kernel)))\n"
        "print('status', L.status_text())\n"
        "print('check', L.check_online_softmax_kernel(lambda *a: a))\n"
        "m = model.GPT(model.GPTConfig(n_layer=1, n_head=2, n_embd=32, vocab_size=50, block_size=16,"
        " attn_backend='triton', tile_size=16))\n"
        "try:\n    m(torch.zeros(1, 8, dtype=torch.long))\n"
        "except RuntimeError as e:\n    print('error', e)\n", hide_triton=True)
    assert r.returncode == 0, r.stderr
    out = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    assert out["available"] == "False" and out["source"] == "True"
    assert "not installed" in out["status"] and "Linux" in out["status"]
    assert "cannot run here" in out["check"] and "NOT YET" in out["check"]
    assert "attn_backend='triton' needs Triton" in out["error"] and "pip install triton" in out["error"]


@pytest.mark.skipif(not HAS_TRITON, reason="Triton has wheels for Linux only; pip install triton")
@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the compiled kernels run")
def test_compiled_kernels_on_a_cpu_tensor_say_to_use_the_interpreter():
    r = run_python(
        "import torch\nfrom tutorial_lib.attention import attention_core\n"
        "q = torch.zeros(1, 2, 8, 16)\n"
        "try:\n    attention_core(q, q, q, 'triton', None, 16)\n"
        "except RuntimeError as e:\n    print(e)\n"
        "from tutorial_lib import attention\n"  # what tests ask to skip the CPU case (test_cuda.py)
        "print('cannot_run:', attention.get('triton').cannot_run('cpu') is not None)\n", TRITON_INTERPRET="0")
    assert r.returncode == 0, r.stderr
    assert "TRITON_INTERPRET=1" in r.stdout and "CUDA" in r.stdout
    assert "cannot_run: True" in r.stdout


# ---- the lesson ------------------------------------------------------------------------------------
def test_program_map_covers_every_element_once():
    progs = L.program_map(10, 4)
    assert [p["program"] for p in progs] == [0, 1, 2]
    live = [o for p in progs for o in p["offsets"] if o not in p["masked"]]
    assert live == list(range(10)) and progs[-1]["masked"] == [10, 11]
    with pytest.raises(ValueError, match="block=0"):
        L.program_map(10, 0)


@needs_triton
def test_programming_model_kernels_compute_what_they_say():
    r = L.run_add(n=10, block=4)
    assert r["programs"] == 3 and r["max_abs_error"] == 0.0
    m = L.run_block_matmul(M=40, N=24, K=48, block=16)
    assert m["grid"] == (3, 2) and m["max_abs_error"] < 1e-4


@needs_triton
def test_check_kernels_rows():
    rows = L.check_kernels(L.CHECK_CASES[1:2] + L.CHECK_CASES[3:4])
    assert [r["ok"] for r in rows] == [True, True]
    assert 1e-4 < rows[1]["out"] < 6e-2  # bfloat16 rounding
    # the float32 row: within a margin of PyTorch's own float32 error on the lesson's inputs
    _, B, H, Hkv, T, D, window, _ = L.CHECK_CASES[1]
    g = torch.Generator().manual_seed(0)  # check_kernels' inputs, drawn in its order
    q = torch.randn(B, H, T, D, generator=g)
    k, v = (torch.randn(B, Hkv, T, D, generator=g) for _ in range(2))
    dout = torch.randn(B, H, T, D, generator=g)
    q, k, v, dout = (t.to(DEVICE) for t in (q, k, v, dout))
    want = fp32_noise.reference(q, k, v, window, dout)
    floor = fp32_noise.noise(q, k, v, window, dout, want)
    for name, w in zip(fp32_noise.NAMES, want):
        assert rows[0][name] <= fp32_noise.tolerance(floor[name], w), (name, rows[0][name], floor[name])
    assert "bfloat16" in L.format_check(rows)


@jit
def my_update(m, l, acc, s, v):  # written here, independently of the library's helper
    big = tl.maximum(m, tl.max(s, 1))
    shift = tl.where(big == float("-inf"), 0.0, big)
    w = tl.exp(s - shift[:, None])
    r = tl.exp(m - shift)
    return big, l * r + tl.sum(w, 1), acc * r[:, None] + tl.dot(w, v)


@jit
def stub_update(m, l, acc, s, v):
    raise NotImplementedError


@jit
def unguarded_update(m, l, acc, s, v):  # a row with no visible key yet: exp(-inf - (-inf)) = nan
    big = tl.maximum(m, tl.max(s, 1))
    w = tl.exp(s - big[:, None])
    r = tl.exp(m - big)
    return big, l * r + tl.sum(w, 1), acc * r[:, None] + tl.dot(w, v)


@needs_triton
def test_exercise_checker_passes_a_correct_update_and_names_mistakes():
    r = L.check_online_softmax_kernel(my_update)
    assert r.passed and r.cases == 4, r
    assert "not implemented yet" in L.check_online_softmax_kernel(stub_update).message
    assert "m_safe" in L.check_online_softmax_kernel(unguarded_update).message
    assert "acc is not rescaled" in L.check_online_softmax_kernel(L._forgot_rescale_acc).message
    assert "l is not rescaled" in L.check_online_softmax_kernel(L._forgot_rescale_l).message
    assert "unnormalised" in L.check_online_softmax_kernel(L._normalised_acc).message
    assert "@jit" in L.check_online_softmax_kernel(lambda m, l, acc, s, v: (m, l, acc)).message


def test_gpu_timings_skip_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the device run times it")
    assert L.time_kernels() == []
    assert L.record_gpu_timings(tmp_path / "t.json") is None and not (tmp_path / "t.json").exists()


def test_attention_flops_over_visible_pairs():
    assert L.attention_flops(1, 1, 4, 8, None, "fwd") == 4 * 8 * 10  # 10 visible pairs of 4 queries
    assert L.attention_flops(2, 3, 4, 8, 2, "fwdbwd") == 2 * 3 * (4 * 8 * 7) * 7 // 2  # 7 pairs, x3.5


def test_recorded_gpu_timings_reads_cuda_files_only(tmp_path):
    row = {"kind": "triton_flash", "backend": "triton", "B": 4, "H": 12, "T": 512, "D": 64, "mode": "fwd",
           "dtype": "bfloat16", "median_ms": 0.5, "min_ms": 0.4, "max_ms": 0.6, "tflops": 12.0,
           "max_abs_diff_vs_sdpa": 1e-3, "error": None, "device_name": "Some GPU"}
    for name, device in (("gpu.json", "cuda:0"), ("cpu.json", "cpu")):
        doc = {"schema_version": 1, "meta": {"device": device, "device_name": "Some GPU", "dtype": "bfloat16",
                                            "torch": "2.x", "triton": "3.x", "date": "2030-01-01"},
               "rows": [row]}
        (tmp_path / name).write_text(json.dumps(doc))
    from tutorial_lib.measure import records

    rows = L.recorded_gpu_timings(records.load_all(tmp_path))
    assert len(rows) == 1 and rows[0]["file"].endswith("gpu.json")
    text = L.format_gpu_timings(rows)
    assert "Some GPU" in text and "triton" in text and "0.500" in text
    assert L.format_gpu_timings([]).startswith("Not measured yet")
    assert L.recorded_gpu_timings(records.load_all(tmp_path / "none")) == []
