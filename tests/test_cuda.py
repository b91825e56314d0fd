"""Every CUDA code path of the library, checked on the device against CPU / float64 references.

Marked ``cuda``: the device run (``scripts/gpu_run.sh``, stage 1) runs ``pytest -m cuda`` on a GPU
machine and writes what each test found (which SDPA kernels ran, achieved TFLOP/s, the allocator's
peak, ...) to a summary file (``--cuda-summary``, see conftest.py). Each test takes a ``device``:
on a machine without CUDA the ``cuda`` cases skip, and the ``cpu`` cases run where the path exists
on CPU too, so CI keeps them honest.

Sizes are small (seconds on a GPU); what is compared is a result, never a time.
"""
import gc
import sys
from datetime import timedelta

import fp32_noise
import pytest
import torch
import torch.nn.functional as F

from tutorial_lib import attention, settings
from tutorial_lib.accumulate import accumulate_gradients
from tutorial_lib.attention import reference as ref
from tutorial_lib.measure import flops
from tutorial_lib.measure.memory import memory_breakdown
from tutorial_lib.measure.peak import measured_step_peak, step_peak
from tutorial_lib.measure.profile import profile_step
from tutorial_lib.measure.timing import measure_step, time_fn
from tutorial_lib.model import GPT, get_config

pytestmark = pytest.mark.cuda
CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device"))]
ONLY_CUDA = pytest.mark.skipif(not CUDA, reason="no CUDA device")
# bf16 keeps 8 bits of mantissa: errors of a few 1e-3 relative to the outputs' scale are rounding.
# float32 is held to a margin over PyTorch's own float32 error on the same inputs and device
# (tests/fp32_noise.py), not to a fixed number.
BF16_TOL = 4e-2


def _qkv(B=2, H=4, Hkv=2, T=100, D=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, D, generator=g, dtype=torch.float64)
    k, v = (torch.randn(B, Hkv, T, D, generator=g, dtype=torch.float64) for _ in range(2))
    return q, k, v


def _reference(q, k, v, window):
    """Forward and input gradients of float64 eager attention on the CPU."""
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out = ref.eager_attention(q, k, v, window)
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out.backward(dout)
    return out.detach(), dout, [t.grad for t in (q, k, v)]


def _rel_err(a, b):
    return ((a.double().cpu() - b).abs().max() / b.abs().max()).item()


def _backend_cases():
    """Only the cases that can run: bf16, and backends without a CPU backward (flex), are CUDA
    cases (their CPU paths are tested in test_attention.py); a windowed backend needs a window."""
    for name in attention.names():
        b = attention.get(name)
        for window in (None, 32):
            if b.needs_window and window is None:
                continue
            for dtype in (torch.float32, torch.bfloat16):
                for device in ("cpu", "cuda"):
                    if device == "cpu" and (dtype == torch.bfloat16 or not b.supports_backward_on_cpu):
                        continue
                    yield pytest.param(name, window, dtype, device, id=f"{name}-w{window}-{str(dtype)[6:]}-{device}",
                                       marks=[ONLY_CUDA] if device == "cuda" else [])


@pytest.mark.parametrize("name, window, dtype, device", list(_backend_cases()))
def test_every_backend_forward_and_backward_match_float64(name, window, dtype, device, record_property):
    b = attention.get(name)
    if not b.available():
        pytest.skip(f"backend {name!r} is not available in this environment")
    if b.cannot_run(device):  # e.g. triton's CPU case where CUDA is present: its kernels are compiled
        pytest.skip(b.cannot_run(device))
    q64, k64, v64 = _qkv()
    want, dout, grads = _reference(q64, k64, v64, window)
    q, k, v = (t.to(device, dtype).requires_grad_() for t in (q64, k64, v64))
    out = b(q, k, v, window, tile=32)
    out.backward(dout.to(device, dtype))
    errs = {"out": _rel_err(out, want)}
    errs.update({f"d{n}": _rel_err(t.grad, g) for n, t, g in zip("qkv", (q, k, v), grads)})
    record_property("relative_errors", errs)
    if dtype == torch.bfloat16:
        assert max(errs.values()) < BF16_TOL, errs
        return
    found = fp32_noise.check([out, q.grad, k.grad, v.grad], q.detach(), k.detach(), v.detach(), window,
                             dout.to(device, dtype), [want, *grads])
    record_property("float32_error_vs_pytorch_own", {n: round(e / max(f, 1e-30), 2) for n, (e, f, _) in found.items()})


SDPA_KERNELS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")


@ONLY_CUDA
def test_which_sdpa_kernels_run_here(record_property):
    """Force each SDPA kernel in turn (causal, bf16, GPT-2 small's heads) and record which run;
    each one that runs must agree with the math kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(4, 12, 512, 64, generator=g, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    with sdpa_kernel(SDPBackend.MATH):
        want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    found = {}
    for name in SDPA_KERNELS:
        kernel = getattr(SDPBackend, name, None)
        if kernel is None:
            found[name] = "not in this torch"
            continue
        try:
            with sdpa_kernel(kernel):
                qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
                out = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True)
                out.float().sum().backward()
            found[name] = "ran"
            assert _rel_err(out.float(), want.double().cpu()) < BF16_TOL, name
        except RuntimeError as e:
            found[name] = f"not supported: {str(e).splitlines()[0][:160]}"
    record_property("sdpa_kernels", found)
    assert found["MATH"] == "ran"
    assert any(found[n] == "ran" for n in SDPA_KERNELS[:3]), found


@ONLY_CUDA
def test_flex_compiled_forward_and_backward_with_a_window(record_property):
    if not attention.get("flex").available():
        pytest.skip("flex_attention is not in this torch")
    q64, k64, v64 = _qkv(B=1, H=4, Hkv=4, T=256, D=64)
    want, dout, grads = _reference(q64, k64, v64, 64)
    q, k, v = (t.to("cuda", torch.bfloat16).requires_grad_() for t in (q64, k64, v64))
    out = attention.attention_core(q, k, v, "flex", window=64)
    out.backward(dout.to("cuda", torch.bfloat16))
    errs = {"out": _rel_err(out, want), "dq": _rel_err(q.grad, grads[0])}
    record_property("relative_errors", errs)
    assert max(errs.values()) < BF16_TOL, errs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_kv_cache_decoding_matches_recomputing_the_prefix(device, backend):
    cfg = get_config("tiny", n_kv_head=2, attn_backend=backend, vocab_size=512)
    torch.manual_seed(0)
    model = GPT(cfg).to(device).eval()
    prompt = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(0)).to(device)
    cached = model.generate(prompt, 10, use_cache=True)
    full = model.generate(prompt, 10, use_cache=False)
    assert torch.equal(cached, full)


@pytest.mark.parametrize("device", DEVICES)
def test_memory_kit_peak_holds_the_exactly_counted_activations(device, record_property):
    """The saved-tensor count is exact on every device; on CUDA the allocator's peak over the step
    must hold at least the parameters, optimizer state and every saved activation at once."""
    cfg = get_config("gpt2_mini" if device == "cuda" else "tiny", attn_backend="eager")
    mb = memory_breakdown(cfg, 2, 128, device=device, dtype="float32")
    cpu = mb if device == "cpu" else memory_breakdown(cfg, 2, 128, device="cpu", dtype="float32")
    assert mb.activations_bytes == cpu.activations_bytes  # the same tensors, counted the same way
    assert mb.activations_by_component == cpu.activations_by_component
    if device == "cuda":
        record_property("cuda_peak_bytes", mb.peak_bytes)
        record_property("baseline_bytes", mb.baseline_bytes)
        record_property("activations_bytes", mb.activations_bytes)
        assert mb.peak_bytes >= mb.baseline_bytes + mb.activations_bytes
        assert mb.baseline_bytes >= mb.params_bytes + mb.optimizer_bytes
    else:
        assert mb.peak_bytes is None


@pytest.mark.parametrize("device", DEVICES)
def test_checkpointing_accumulation_and_the_predicted_peak_on_the_device(device, record_property):
    """Notebook 12 on the device: a checkpointed, accumulating step has the plain step's gradients
    (float64), and the allocator's peak of a training step in the device's dtype is the one
    ``measure.peak.step_peak`` predicts, within the lesson's 10 %, for each policy and micro-batch."""
    cfg = get_config("tiny", n_layer=3)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (4, 32), generator=g).to(device)
    grads = {}
    for name, c, k in (("plain", cfg, 1), ("block, 2 micro-batches", cfg.replace(checkpoint="block"), 2)):
        torch.manual_seed(0)
        model = GPT(c).to(device, torch.float64)
        accumulate_gradients(model, x, x, k)
        grads[name] = [p.grad for p in model.parameters()]
    assert max((a - b).abs().max().item() for a, b in zip(*grads.values())) < 1e-12
    dt = settings.dtype_name(settings.default_dtype(device))
    big = get_config("gpt2_mini" if device == "cuda" else "tiny")
    found = {}
    for label, c, k in (("plain", big, 1), ("checkpoint block", big.replace(checkpoint="block"), 1),
                        ("chunked loss, 2 micro-batches", big.replace(loss_impl="chunked"), 2)):
        p = step_peak(c, 4, 128, dt, k, torch.device(device).type)
        m = measured_step_peak(c, 4, 128, dt, k, device)
        found[label] = {"predicted": p.peak_bytes, "measured": m["peak_bytes"], "at": p.at}
    record_property("peak_bytes", found)
    for label, f in found.items():
        assert abs(f["predicted"] / f["measured"] - 1) <= 0.10, (label, f)


@pytest.mark.parametrize("device", DEVICES)
def test_chunked_loss_under_autocast_and_its_allocator_peak(device, record_property):
    """The chunked loss (tutorial_lib.loss, notebook 08) on the device in its autocast dtype: loss and
    gradients near float64; on CUDA, at GPT-2's head and the seed's B*T, an allocator peak over
    forward + backward below the full path's by at least one (N, V) fp32 tensor."""
    from tutorial_lib.loss import chunked_linear_cross_entropy

    N, C, V = (2048, 768, 50257) if device == "cuda" else (128, 32, 1000)
    dt = settings.default_dtype(device)
    g = torch.Generator().manual_seed(0)
    h64 = torch.randn(N, C, generator=g, dtype=torch.float64)
    w64 = 0.05 * torch.randn(V, C, generator=g, dtype=torch.float64)
    t = torch.randint(0, V, (N,), generator=g)
    t[::7] = -1
    hr, wr = h64.clone().requires_grad_(), w64.clone().requires_grad_()
    want = F.cross_entropy(hr @ wr.T, t, ignore_index=-1)
    want.backward()
    peaks, errs = {}, {}
    for impl in ("full", "chunked", "chunked_liger"):
        h, w = (x.to(device, torch.float32).requires_grad_() for x in (h64, w64))
        td = t.to(device)
        if device == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        with settings.autocast(device, dt):
            loss = (F.cross_entropy(F.linear(h, w).float(), td, ignore_index=-1) if impl == "full" else
                    chunked_linear_cross_entropy(h, w, td, 256, grad_in_forward=impl == "chunked_liger"))
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
            peaks[impl] = torch.cuda.max_memory_allocated() - base
        errs[impl] = {"loss": abs(loss.item() - want.item()) / want.item(),
                      "dh": _rel_err(h.grad, hr.grad), "dw": _rel_err(w.grad, wr.grad)}
        assert loss.dtype == torch.float32
        del h, w, loss
    record_property("relative_errors", errs)
    record_property("cuda_peak_bytes_fwd_bwd", peaks)
    for impl, e in errs.items():
        if dt == torch.bfloat16:
            assert max(e.values()) < BF16_TOL, (impl, e)
            continue
        for what, err in e.items():  # float32: PyTorch's own path ("full") is the rounding floor
            floor = max(errs["full"][what], fp32_noise.ULPS * torch.finfo(torch.float32).eps)
            assert err <= fp32_noise.MARGIN * floor, (impl, what, e, errs["full"])
    if device == "cuda":
        assert peaks["full"] - peaks["chunked"] >= N * V * 4, peaks


@pytest.mark.parametrize("device", DEVICES)
def test_profiler_breakdown_attributes_the_step(device, record_property):
    prof = profile_step(get_config("gpt2_mini" if device == "cuda" else "tiny"), 2, 64, device=device,
                        steps=2, warmup=1)
    assert prof.time_source == ("cuda kernel time" if device == "cuda" else "cpu time")
    shares = prof.shares()
    assert sum(shares.values()) == pytest.approx(1.0)
    fwd = prof.ms("forward")
    record_property("shares", {k: round(v, 4) for k, v in shares.items()})
    assert {"lm_head", "mlp.up", "attention.core"} <= set(fwd)
    assert fwd["lm_head"] > 0 and prof.step_ms > 0


@ONLY_CUDA
def test_mfu_arithmetic_on_a_known_matmul(record_property):
    """A bf16 matmul of known FLOPs: its achieved FLOP/s over the spec peak must be a fraction of 1."""
    n = 8192
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    t = time_fn(lambda: a @ b, "cuda", min_run_time=0.5, warmup=3)
    achieved = 2 * n ** 3 / (t.median_ms / 1e3)
    name = settings.device_name("cuda")
    peak = flops.peak_flops(name, torch.bfloat16)
    record_property("device", name)
    record_property("achieved_tflops", round(achieved / 1e12, 1))
    record_property("spec_peak_tflops", None if peak is None else peak / 1e12)
    if peak is None:
        pytest.skip(f"no spec peak for {name!r} in measure.flops.GPU_SPECS")
    mfu = flops.mfu(achieved, name, torch.bfloat16)
    record_property("matmul_mfu", round(mfu, 3))
    assert mfu == pytest.approx(achieved / peak)
    assert 0.2 < mfu < 1.05  # a large bf16 matmul reaches a good fraction of the peak, never more


@ONLY_CUDA
def test_compiled_training_step_matches_eager(record_property):
    cfg = get_config("tiny", vocab_size=512)
    idx = torch.randint(0, 512, (2, 64), generator=torch.Generator().manual_seed(0)).cuda()
    losses = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = GPT(cfg).cuda()
        run = torch.compile(model) if compiled else model
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = run(idx, idx)
        loss.backward()
        losses[compiled] = (loss.item(), model.lm_head.weight.grad.norm().item())
    record_property("eager_vs_compiled", losses)
    assert losses[True][0] == pytest.approx(losses[False][0], rel=2e-2)
    assert losses[True][1] == pytest.approx(losses[False][1], rel=5e-2)
    r = measure_step(cfg, 2, 64, mode="train", device="cuda", compile=True, min_run_time=0.2, warmup=3)
    record_property("compiled_step_ms", round(r.median_ms, 3))
    assert r.ok and r.median_ms > 0 and r.peak_mem_bytes > 0


@pytest.mark.parametrize("device", DEVICES)
def test_ddp_on_one_rank_gives_the_single_process_gradients(device, monkeypatch):
    """DDP (NCCL on CUDA, gloo on CPU) with one rank: the all-reduce of one gradient is itself."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    backend = "nccl" if device == "cuda" else "gloo"
    if not dist.is_available() or (backend == "nccl" and not dist.is_nccl_available()):
        pytest.skip(f"torch.distributed {backend} is not available")
    # one rank needs no rendezvous over TCP: an in-memory store, gloo on the loopback device, and a
    # timeout -- a machine whose hostname does not resolve must fail in a minute, not hang (it did, in CI)
    if backend == "gloo" and sys.platform.startswith("linux"):
        monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    cfg = get_config("tiny", vocab_size=512)
    idx = torch.randint(0, 512, (2, 32), generator=torch.Generator().manual_seed(0)).to(device)
    grads = []
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timedelta(seconds=60))
    try:
        for wrap in (False, True):
            torch.manual_seed(0)
            model = GPT(cfg).to(device)
            run = DDP(model, device_ids=[0] if device == "cuda" else None, broadcast_buffers=False) if wrap else model
            _, loss = run(idx, idx)
            loss.backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
            del run, model
    finally:
        # DDP's reducer holds the process group: free it while the group is alive (its gloo
        # destructor, run later when the test's frame was cleared, hung joining a thread)
        gc.collect()
        dist.destroy_process_group()
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_the_summary_plugin_is_registered(pytestconfig):
    assert pytestconfig.getoption("--cuda-summary", default="missing") != "missing"

