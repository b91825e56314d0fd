"""The one analytic model (``measure.cost``) against PyTorch's own truth, the ceilings' probes at
tiny sizes and their one lookup (``measure.ceilings``), the arithmetic of a prediction and its
bound labels (``measure.roofline``), same-round checks, and the predictions on record.

Truth for bytes: every ATen operator the step dispatches (``measure.traffic``: each kernel's
input and output tensor sizes) and every tensor autograd saves (``measure.memory``'s
saved-tensor hooks)."""
import math
from pathlib import Path

import pytest
import torch

from tutorial_lib.lessons import decision
from tutorial_lib.lessons import roofline as roofline_lesson
from tutorial_lib.measure import ceilings, cost, flops, records, roofline
from tutorial_lib.measure import traffic as TR
from tutorial_lib.measure.cost import Component, Kernel
from tutorial_lib.measure.memory import memory_breakdown
from tutorial_lib.model import get_config

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]

CONFIGS = [  # (changes on the tiny preset, B, T): every path the formulas distinguish
    ({}, 3, 10),
    ({"attn_backend": "eager"}, 3, 10),
    ({"n_kv_head": 2}, 3, 10),
    ({"attn_backend": "eager", "n_kv_head": 2, "mlp": "swiglu", "norm": "layernorm", "bias": True}, 2, 12),
    ({"norm": "layernorm", "bias": True, "pos": "learned"}, 3, 10),
    ({"attn_backend": "eager", "pos": "learned"}, 3, 10),
    ({"attn_backend": "eager", "pos": "learned", "n_kv_head": 1}, 3, 10),
    ({"tie_embeddings": False, "gelu_approx": "tanh", "pad_vocab_multiple": 64}, 2, 8),
    ({"window": 4}, 3, 10),
    ({"attn_backend": "eager", "window": 4}, 3, 10),
    ({"attn_backend": "eager", "n_kv_head": 1}, 1, 12),
    ({"n_head": 1, "n_kv_head": None, "mlp_ratio": 3.0}, 2, 8),
    ({"loss_impl": "chunked", "loss_chunk": 7}, 3, 10),  # the chunked loss: ragged chunks
    ({"loss_impl": "chunked_liger", "loss_chunk": 7, "tie_embeddings": False, "pad_vocab_multiple": 64}, 2, 8),
    ({"pad_vocab_multiple": 64, "mask_vocab_padding": True}, 2, 8),  # the padded logits masked to -inf
    ({"pad_vocab_multiple": 64, "mask_vocab_padding": True, "loss_impl": "chunked", "loss_chunk": 7}, 2, 8),
    # activation checkpointing: what is kept, and the forward run again in backward
    ({"checkpoint": "block"}, 3, 10),
    ({"checkpoint": "attention", "attn_backend": "eager", "n_kv_head": 2}, 3, 10),
    ({"checkpoint": "mlp", "mlp": "swiglu", "norm": "layernorm", "bias": True}, 2, 12),
    ({"checkpoint": "block", "checkpoint_every": 2, "n_layer": 3, "window": 4, "loss_impl": "chunked"}, 3, 10),
]
IDS = [",".join(f"{k}={v}" for k, v in ch.items()) + f",B={B},T={T}" or "default" for ch, B, T in CONFIGS]


def _ceilings(device="cpu", peak=1e11, bw=1e10, overhead=5e-6, name=None, **kw):
    return ceilings.Ceilings(device=device, device_name=name or f"test-{device}", dtype="float32", peak_flops=peak,
                             bandwidth=bw, overhead_s=overhead, **kw)


# ---- bytes and kernels: the model against what PyTorch dispatches --------------------------------
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("changes,B,T", CONFIGS, ids=IDS)
def test_kernels_and_bytes_match_every_dispatched_operator(changes, B, T, dtype):
    """Per (component, phase): bytes read, bytes written and kernel launches equal what the
    dispatch counter sees in a real training step (forward with loss, backward, AdamW), exactly."""
    cfg = get_config("tiny", **changes)
    counted = TR.count_step_traffic(cfg, B, T, dtype=dtype).traffic
    model = {(r.scope, r.phase): r for r in cost.step_kernels(cfg, B, T, dtype)}
    assert set(model) == set(counted)
    for key, t in counted.items():
        m = model[key]
        assert (m.read, m.write, m.n_kernels) == (t.read, t.written, t.kernels), (key, dict(t.ops))
        big = ceilings.FRESH_ALLOC_BYTES // 2**16  # allocation sizes too (what first touch is charged on)
        assert t.fresh_bytes(big) == sum(k.count * k.fresh_bytes(big) for k in m.kernels), key


@pytest.mark.parametrize("impl", ["for-loop", "foreach", "fused"])
def test_every_adamw_implementation_moves_what_the_model_says(impl):
    """AdamW's step as a loop over tensors, as foreach operators over the list, and as one fused
    kernel: the optimizer's bytes and launches equal what PyTorch dispatches, exactly; the three
    move the same bytes but launch 9 operators per tensor, 9 in all, and 2."""
    cfg = get_config("tiny", n_kv_head=2, bias=True)
    counted = TR.count_step_traffic(cfg, 2, 8, adamw=impl).traffic[("optimizer", "optimizer")]
    m = next(r for r in cost.step_kernels(cfg, 2, 8, adamw=impl) if r.phase == "optimizer")
    assert (m.read, m.write, m.n_kernels) == (counted.read, counted.written, counted.kernels), dict(counted.ops)
    n, P = len(cost.param_sizes(cfg)), 4 * cost.num_params(cfg)
    assert m.n_kernels == {"for-loop": 9 * n, "foreach": 9, "fused": 2}[impl]
    assert m.write - 4 * n == {"for-loop": 8 * P, "foreach": 8 * P, "fused": 3 * P}[impl]
    with pytest.raises(ValueError, match="impl='loop'"):
        cost.adamw_kernels([4], "cpu", "loop")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("changes,B,T", CONFIGS[:10] + CONFIGS[11:], ids=IDS[:10] + IDS[11:])
def test_saved_bytes_match_the_saved_tensor_hooks(changes, B, T, dtype):
    """What the model says backward re-reads = what autograd saves, per component, exactly."""
    cfg = get_config("tiny", **changes)
    mb = memory_breakdown(cfg, B, T, device="cpu", dtype=dtype)
    assert cost.activation_bytes(cfg, B, T, dtype) == mb.activations_by_component


def test_eager_attention_moves_the_t_by_t_tensors_and_flash_does_not():
    cfg = get_config("gpt2_small")
    B, T = 1, 1024
    core = {be: sum(r.bytes for r in cost.step_kernels(cfg.replace(attn_backend=be), B, T)
                    if r.scope == "attention.core") for be in ("eager", "sdpa")}
    tt = B * cfg.n_head * T * T * 4 * cfg.n_layer  # one (B, H, T, T) fp32 tensor in every layer
    assert core["eager"] - core["sdpa"] > 10 * tt  # scores, scaled, masked, probabilities: each read and written
    assert core["sdpa"] < tt  # the fused kernel's bytes are its inputs and outputs: O(T)
    assert all(r.exact == (r.scope != "attention.core" or be in ("eager", "sdpa"))
               for be in ("eager", "sdpa", "local", "tiled")
               for r in cost.step_kernels(cfg.replace(attn_backend=be, window=64), B, 256))


def test_training_memory_is_params_grads_adamw_and_the_exact_saved_bytes():
    cfg = get_config("gpt2_small")
    m = cost.training_memory(cfg, 1, 256, "float32")
    n = cost.num_params(cfg)
    assert m["by_kind"]["parameters"] == m["by_kind"]["gradients"] == 4 * n and m["params"] == n
    assert m["by_kind"]["optimizer state"] == 8 * n + 4 * len(cost.param_sizes(cfg))
    assert m["by_kind"]["activations"] == sum(cost.activation_bytes(cfg, 1, 256).values())
    assert sum(m["activations_by_group"].values()) == m["by_kind"]["activations"]
    assert m["total"] == sum(m["by_kind"].values())


def test_bad_sizes_name_the_field():
    with pytest.raises(ValueError, match="seq_len=0"):
        cost.step_kernels(get_config("tiny"), 1, 0)
    with pytest.raises(ValueError, match="mm_sizes"):
        ceilings.matmul_probes("cpu", None, (0,))
    with pytest.raises(ValueError, match="rounds=0"):
        ceilings.measure_ceilings("cpu", rounds=0, progress=False)


# ---- the ceilings: one probe each, measured at tiny sizes; the datasheet; the one lookup ---------
def test_ceilings_measurement_runs_at_tiny_size():
    c = ceilings.measure_ceilings("cpu", mm_sizes=(32, 64), stream_bytes=2**16, first_touch_sizes=(2**16,),
                                  min_run_time=0.01, rounds=2, progress=False)
    assert c.source == "measured" and c.device == "cpu" and c.dtype == "float32" and c.rounds == 2
    assert c.peak_flops > 0 and c.bandwidth > 0 and 0 < c.overhead_s < 0.01 and c.fill_bandwidth > 0
    assert c.first_touch_bandwidth is None and c.fault_s_per_byte == 0  # no size reached the threshold
    whats = [d["what"] for d in c.details if d["round"] == 0]
    assert sum(w.startswith("mm ") for w in whats) == 2 and sum(w.startswith(("copy", "add")) for w in whats) == 2
    for name in ("peak_flops", "bandwidth", "overhead_s"):  # the median of the rounds, with their range
        lo, hi = c.ranges[name]
        assert lo <= getattr(c, name) <= hi
    # each round's peak is its best size (the rule), and the ceiling the median of the rounds' peaks
    per_round = [max(d["rate"] for d in c.details if d["round"] == i and d["ceiling"] == "peak_flops")
                 for i in range(2)]
    assert c.peak_flops == pytest.approx(sum(per_round) / 2)
    row = c.to_row()
    assert row["kind"] == "ceilings" and ceilings.Ceilings.from_row(row) == c  # a results row round-trips


def test_a_thin_matmul_runs_at_the_rate_of_the_square_of_its_intensity():
    c = _ceilings(peak=1e11, matmul_rates={"128": 2e10, "512": 6e10, "2048": 1e11})
    assert c.matmul_rate() == 1e11 and c.matmul_rate((4096, 4096, 4096)) == 1e11  # held at the largest
    assert c.matmul_rate((2048, 2048, 2048)) == pytest.approx(1e11)
    assert c.matmul_rate((32, 32, 32)) == 2e10  # held at the smallest
    assert c.matmul_rate((1024, 1024, 1024)) == pytest.approx(8e10)  # halfway in log n between 512 and 2048
    M, K, N = 512, 64, 50304  # a head of 64: few FLOPs per element it moves
    n_eq = 1.5 * 2 * M * K * N / (M * K + K * N + M * N)
    assert 128 < n_eq < 512 and c.matmul_rate((M, K, N)) < c.matmul_rate((512, 512, 512))
    assert _ceilings(peak=1e11).matmul_rate((M, K, N)) == 1e11  # no per-size probes (a datasheet): the peak
    thin = Kernel("mm", 1, 0, 0, flops=2 * M * K * N, shape=(M, K, N))
    assert roofline.compute_seconds(thin, c) == pytest.approx(2 * M * K * N / c.matmul_rate((M, K, N)))
    measured = ceilings.measure_ceilings("cpu", mm_sizes=(32, 64), stream_bytes=2**16, first_touch_sizes=(),
                                         min_run_time=0.01, rounds=2, progress=False)
    assert set(measured.matmul_rates) == {"32", "64"} and max(measured.matmul_rates.values()) <= measured.peak_flops * 2
    assert ceilings.Ceilings.from_row(measured.to_row()).matmul_rates == measured.matmul_rates


def test_a_ceiling_whose_rounds_spread_is_flagged_unstable():
    c = _ceilings(first_touch_bandwidth=5e9, fresh_alloc_bytes=2**25, rounds=4,
                  ranges={"peak_flops": [0.95e11, 1.05e11], "first_touch_bandwidth": [0.7e9, 37e9]})
    assert c.unstable() == ["first_touch_bandwidth"]
    assert c.spread("peak_flops") == pytest.approx(0.1)
    assert "unstable" in c.describe() and "median of 4 rounds" in c.describe()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_ceilings_measurement_runs_on_cuda():
    c = ceilings.measure_ceilings("cuda", mm_sizes=(256,), stream_bytes=2**20, first_touch_sizes=(2**26,),
                                  min_run_time=0.01, rounds=1, progress=False)
    assert c.device.startswith("cuda") and c.peak_flops > 0 and c.first_touch_bandwidth is None
    assert c.fresh_alloc_bytes is None and c.async_launch


def test_first_touch_is_probed_only_above_the_threshold(monkeypatch):
    assert [p.ceiling for p in ceilings.fill_probes("cpu", (2**16,))] == ["fill_bandwidth"]
    monkeypatch.setattr(ceilings, "FRESH_ALLOC_BYTES", 2**17)  # make a small size count as "fresh"
    ps = ceilings.fill_probes("cpu", (2**16, 2**18))
    assert [p.ceiling for p in ps] == ["fill_bandwidth", "first_touch_bandwidth"]
    assert all(p.amount == 2**18 for p in ps)  # the largest size
    c = ceilings.from_round(ps + ceilings.matmul_probes("cpu", None, (16,)) + ceilings.bandwidth_probes("cpu", 2**12),
                            {p.label: 1.0 for p in ps} | {"mm 16x16 float32": 1.0, "copy 0 MiB": 1.0}, "cpu")
    assert c.first_touch_bandwidth == c.fill_bandwidth == 2**18 / 1e-3 and c.fault_s_per_byte == 0


def test_spec_ceilings_come_from_the_one_datasheet_table():
    h200 = ceilings.spec_ceilings("NVIDIA H200", "bfloat16")
    assert (h200.peak_flops, h200.bandwidth, h200.source) == (989e12, 4800e9, "spec")
    assert h200.ridge == pytest.approx(989e12 / 4800e9) and h200.overhead_s == 0
    assert "nvidia.com" in h200.details[0]["source"]
    assert ceilings.spec_ceilings("NVIDIA A100-SXM4-40GB", "bfloat16").bandwidth == 1555e9
    assert ceilings.spec_ceilings("NVIDIA A100-SXM4-80GB", "bfloat16").bandwidth == 2039e9
    for gpu in ("H200", "H100", "A100", "L4", "T4"):
        spec = flops.gpu_spec(gpu)
        assert spec.bandwidth_gbs and spec.source.startswith("https://")
    assert ceilings.spec_ceilings("Intel Xeon", "float32") is None
    rows = ceilings.spec_rows("bfloat16")
    assert {r["gpu"] for r in rows} >= {"H200", "H100", "A100", "L4"} and all("source" in r for r in rows)


def test_the_one_lookup_goes_by_device_name_and_falls_back_to_kind_only_when_asked():
    box = {"meta": {"device": "cpu", "device_name": "box"}, "rows": [_ceilings(name="box").to_row()]}
    other = {"meta": {"device": "cpu", "device_name": "other"}, "rows": [_ceilings(name="other", peak=7e10).to_row()]}
    live = _ceilings(name="box", peak=9e10)
    assert ceilings.ceilings_for("box", "float32", [other, box], live).peak_flops == 9e10  # live first
    assert ceilings.ceilings_for("box", "float32", [other, box]).device_name == "box"  # by name
    assert ceilings.ceilings_for("box", "bfloat16", [other, box]) is None  # another dtype's peak is not it
    assert ceilings.ceilings_for("third", "float32", [other, box]) is None  # a CPU has no datasheet
    assert ceilings.ceilings_for("third", "float32", [other, box], any_of_kind=True).device_name == "other"
    h = ceilings.ceilings_for("NVIDIA H200", "bfloat16", [box], device_type="cuda")
    assert h.source == "spec"  # a GPU without recorded ceilings: its datasheet


# ---- the arithmetic of a prediction, and what bounds a kernel --------------------------------------
def test_a_kernel_takes_the_longer_of_compute_and_memory_plus_its_overhead():
    c = _ceilings(peak=1e12, bw=1e11, overhead=1e-5)
    mm = Kernel("mm", 3, read=10**6, write=10**6, flops=10**10)  # 10 ms of math, 20 us of bytes
    add = Kernel("add", 2, read=2 * 10**8, write=10**8)  # 3 ms of bytes
    assert roofline.kernel_seconds(mm, c) == pytest.approx(3 * (1e-2 + 1e-5))
    assert roofline.kernel_seconds(add, c) == pytest.approx(2 * (3e-3 + 1e-5))
    gpu = _ceilings("cuda", peak=1e12, bw=1e11, overhead=1e-3)  # launches overlap kernels on a GPU
    assert roofline.kernel_seconds(mm, gpu) == pytest.approx(3 * 1e-2)
    assert roofline.kernel_seconds(Kernel("x", 4, 8, 8), gpu) == pytest.approx(4e-3)
    comp = Component("mlp.up", "forward", (mm, add))
    assert roofline.component_seconds(comp, c) == pytest.approx(roofline.kernel_seconds(mm, c)
                                                                + roofline.kernel_seconds(add, c))
    assert roofline.bound(comp, c) == "compute"
    assert comp.flops == 3 * 10**10 and comp.bytes == 3 * 2 * 10**6 + 2 * 3 * 10**8 and comp.n_kernels == 5


def test_first_touch_is_a_term_of_its_own_on_large_new_outputs_only():
    c = _ceilings(peak=1e12, bw=1e10, overhead=0.0, first_touch_bandwidth=1e9, fill_bandwidth=2e10,
                  fresh_alloc_bytes=2**25)
    assert c.fault_s_per_byte == pytest.approx(1 / 1e9 - 1 / 2e10)
    big = 2**26
    fresh = Kernel("_log_softmax", 1, read=big, write=big)
    assert roofline.kernel_seconds(fresh, c) == pytest.approx(2 * big / 1e10 + big * c.fault_s_per_byte)
    inplace = Kernel("add_", 1, read=big, write=big)
    assert roofline.kernel_seconds(inplace, c) == pytest.approx(2 * big / 1e10)
    small = Kernel("gelu", 1, read=2**20, write=2**20)
    assert roofline.kernel_seconds(small, c) == pytest.approx(2**21 / 1e10)
    no_ft = _ceilings(peak=1e12, bw=1e10, overhead=0.0)
    assert roofline.kernel_seconds(fresh, no_ft) == pytest.approx(2 * big / 1e10)
    parts = roofline.parts(Component("loss", "forward", (fresh,)), c)
    assert parts["first touch"] == pytest.approx(big * c.fault_s_per_byte)
    assert parts["memory"] == pytest.approx(2 * big / 1e10)


def test_the_lm_head_at_the_seeds_setting_is_compute_bound_even_with_slow_first_touch():
    """GPT-2 small, B=4, T=512: the head's matmuls are compute-bound on a CPU's ceilings, however slow
    the first touch of their 400 MB outputs (2.8 GB/s: the slowest rate seen here), and on an H200's
    datasheet; a kernel that moves many bytes for few FLOPs is memory-bound."""
    rows = {(r.scope, r.phase): r for r in cost.step_kernels(get_config("gpt2_small"), 4, 512)}
    cpu = _ceilings(peak=0.253e12, bw=29.8e9, overhead=3.7e-6, first_touch_bandwidth=2.8e9, fill_bandwidth=29.8e9,
                    fresh_alloc_bytes=ceilings.FRESH_ALLOC_BYTES)
    h200 = ceilings.spec_ceilings("NVIDIA H200", "float32")
    for c in (cpu, h200):
        for phase in ("forward", "backward"):
            head = rows[("lm_head", phase)]
            assert roofline.bound(head, c) == "compute", (c.device_name, phase)
            assert all(roofline.kernel_bound(k, c) == "compute" for k in head.kernels if k.flops)
    assert roofline.parts(rows[("lm_head", "forward")], cpu)["first touch"] > 0  # shown, not the label
    stream = Component("x", "forward", (Kernel("add", 1, read=2 * 2**28, write=2**28, flops=2**26),))
    assert roofline.bound(stream, cpu) == "memory" and roofline.kernel_bound(stream.kernels[0], cpu) == "memory"
    assert roofline.bound(rows[("loss", "forward")], cpu) == "memory"


def test_step_prediction_and_the_inferred_overhead():
    cfg = get_config("gpt2_mini")
    c = _ceilings(peak=2e11, bw=2e10, overhead=7e-6)
    p = roofline.predict_step(cfg, 2, 256, c)
    rows = cost.step_kernels(cfg, 2, 256)
    assert p.total_ms == pytest.approx(sum(roofline.component_seconds(r, c) for r in rows) * 1e3)
    assert p.kernels == sum(r.n_kernels for r in rows) and p.overhead_ms() == pytest.approx(p.kernels * 7e-3)
    assert p.flop_only_ms == pytest.approx(sum(r.flops for r in rows) / 2e11 * 1e3)
    assert p.flop_only_ms < p.total_ms
    assert set(p.scope_ms()) >= {"lm_head", "loss", "optimizer", "embedding"}
    # zero-overhead ceilings and the step measured as above: the gap is 7 us per launch
    bare = roofline.predict_step(cfg, 2, 256, _ceilings(peak=2e11, bw=2e10, overhead=0.0))
    assert roofline.inferred_overhead(bare, p.total_ms) == pytest.approx(7e-6)
    g = _ceilings("cuda", peak=2e11, bw=2e10, overhead=0.0)
    pg = roofline.predict_step(cfg, 2, 256, g)
    measured = roofline.predict_step(cfg, 2, 256, _ceilings("cuda", peak=2e11, bw=2e10, overhead=3e-5)).total_ms
    assert roofline.inferred_overhead(pg, measured) == pytest.approx(3e-5, rel=1e-6)
    assert roofline.inferred_overhead(pg, pg.roof_ms / 2) is None  # the roofs alone already exceed it


def test_roofline_points_place_components_under_the_roof():
    c = _ceilings(peak=2e11, bw=2e10, overhead=0.0)
    rows = cost.step_kernels(get_config("gpt2_mini"), 2, 256)
    pred = {(r.scope, r.phase): roofline.component_seconds(r, c) * 1e3 for r in rows}
    pts = {(p["scope"], p["phase"]): p for p in roofline.roofline_points(rows, pred, c)}
    for p in pts.values():  # measured = predicted: every point sits at or under its roof
        assert p["achieved_flops"] <= p["roof_flops"] * (1 + 1e-9)
    assert pts[("loss", "forward")]["bound"] == "memory" and pts[("lm_head", "forward")]["bound"] == "compute"
    assert pts[("loss", "forward")]["intensity"] < c.ridge < pts[("mlp.up", "forward")]["intensity"]


def test_same_round_checks_predict_each_round_from_its_own_ceilings(monkeypatch):
    """check_steps times the probes and the steps in the same rounds and divides within a round:
    a machine twice as slow in one round (ceilings and step alike) leaves that round's error as it was."""
    from tutorial_lib.measure import timing
    slow = {"on": False}
    real = timing.time_fn

    def drifting(fn, device, **kw):
        t = real(fn, device, **kw)
        if slow["on"]:
            t.median_ms *= 2
        return t
    calls = []
    real_rounds = timing.time_rounds

    def rounds_spy(runs, *a, **kw):
        calls.append(list(runs))
        times, failed = real_rounds(runs, *a, **kw)
        slow["on"] = True  # the next measurement is on a slower machine
        return times, failed
    monkeypatch.setattr(timing, "time_fn", drifting)
    monkeypatch.setattr(roofline, "time_rounds", rounds_spy)
    probes = ceilings.probes("cpu", None, (32,), 2**16, ())
    check = roofline.StepCheck("tiny", get_config("tiny"), 2, 16)
    res = roofline.check_steps([check], probes, "cpu", rounds=2, min_run_time=0.01, progress=False)
    row = res["rows"][0]
    assert calls and set(calls[0]) == {p.label for p in probes} | {"tiny"}  # one call: the same rounds
    assert row["error"] is None and row["rounds"] == 2 and row["measured_ms"] > 0
    assert row["roofline_error_min"] <= row["roofline_error"] <= row["roofline_error_max"]
    assert row["flop_only_error"] < row["roofline_error"]  # FLOPs alone predict less than the roofline
    assert res["ceilings"].rounds == 2 and res["ceilings"].peak_flops > 0


# ---- the lesson: moves, checks, and every measurement on record ------------------------------------
def test_attention_moves_count_what_each_backend_moves():
    rows = {r["backend"]: r for r in roofline_lesson.attention_moves(64, 16, batch_size=1, n_head=2, head_dim=8,
                                                                     device="cpu", min_run_time=0.01)}
    assert all(r["error"] is None and r["ms"] > 0 for r in rows.values())
    assert rows["eager"]["bytes"] > rows["sdpa"]["bytes"]  # flash removes the T x T bytes
    assert rows["local"]["flops"] < rows["eager"]["flops"]  # the window removes FLOPs ...
    assert rows["local"]["bytes"] < rows["eager"]["bytes"]  # ... and bytes
    pts = roofline_lesson.decode_points(get_config("gpt2_small"), 2048, (12, 4, 1))
    assert [p["label"] for p in pts] == ["MHA", "GQA-4", "MQA"]
    assert pts[0]["flops"] == pts[1]["flops"] and pts[1]["intensity"] > 2.5 * pts[0]["intensity"]


def test_recorded_steps_read_old_and_new_results_rows():
    doc = records.load_results(ROOT / "results" / "cpu.json")
    steps = roofline_lesson.recorded_steps(doc)
    kinds = {s["kind"] for s in steps}
    assert kinds >= {"gqa_train", "flash_model", "mlp", "swiglu", "before_after"}
    gqa4 = next(s for s in steps if s["kind"] == "gqa_train" and s["variant"] == "GQA-4")
    assert gqa4["config"].kv_heads == 4 and gqa4["config"].name == "gpt2_mini" and (gqa4["B"], gqa4["T"]) == (2, 256)
    base = next(s for s in steps if s["kind"] == "before_after")
    assert base["config"].attn_backend == "eager"
    new = {"meta": {"dtype": "float32"}, "rows": [
        {"kind": "step", "config_fields": get_config("tiny").to_dict(), "batch_size": 2, "seq_len": 8,
         "median_ms": 3.0, "mode": "train"},
        {"kind": "step", "config_fields": get_config("tiny").to_dict(), "batch_size": 2, "seq_len": 8,
         "median_ms": 1.0, "mode": "fwd"},
        {"kind": "mlp", "variant": "GELU 9x", "ms_per_step": 5.0}]}
    assert [(s["config"].name, s["ms"]) for s in roofline_lesson.recorded_steps(new)] == [("tiny", 3.0)]


def test_prediction_errors_cover_the_h200_histories_with_spec_ceilings():
    runs = roofline_lesson.training_histories(ROOT / "results")
    assert len(runs) >= 10 and all(r["device_name"] == "NVIDIA H200" for r in runs)
    rows = roofline_lesson.prediction_errors([], runs)
    fb = [r for r in rows if "(fwd+bwd+clip)" in r["variant"]]
    assert len(fb) == len(runs) and all(r["ceilings"] == "spec" for r in fb)
    gelu4 = next(r for r in fb if r["source"] == "train_h200_1000/train_gpu_gelu4_adamw.json")
    assert gelu4["measured_ms"] == pytest.approx(47.83 - 1.61)
    # the FLOP-only prediction is every FLOP at the datasheet peak: below the roofline's
    assert gelu4["flop_only_ms"] < gelu4["roofline_ms"] and gelu4["flop_only_error"] < gelu4["roofline_error"]
    assert gelu4["inferred_overhead_us"] > 0  # the spec has no overhead: what would close the gap
    opt = [r for r in rows if "(optimizer step)" in r["variant"]]
    assert opt and all("muon" not in r["variant"] and r["roofline_ms"] > 0 for r in opt)
    summary = roofline_lesson.error_summary(rows)
    assert summary[0]["device_name"] == "NVIDIA H200" and summary[0]["steps"] == len(runs)  # no optimizer rows


def test_a_cpu_file_without_ceilings_is_not_predicted_from_another_machines():
    doc = records.load_results(ROOT / "results" / "cpu.json")
    doc["_path"] = "cpu.json"
    doc["rows"] = [r for r in doc["rows"] if r.get("kind") != "ceilings"]  # a file recorded without them
    live = _ceilings()  # this machine's: another device name than the file's
    rows = roofline_lesson.prediction_errors([doc], [], live)
    assert rows and all(r["ceilings"] == "none on record for this device" for r in rows)
    doc["rows"].append(dict(_ceilings(name=doc["meta"]["device_name"]).to_row(),
                            device_name=doc["meta"]["device_name"]))
    rows = roofline_lesson.prediction_errors([doc], [], live)
    assert all(r["ceilings"] == "measured" and r["roofline_error"] is not None for r in rows)


def test_decision_tree_speed_payoffs_come_from_the_roofline():
    r = decision.recommend(1024, "cuda", "speed", results=[])
    c = ceilings.ceilings_for(decision.REFERENCE_GPU, "bfloat16", [], device_type="cuda", any_of_kind=True)
    assert c.source == "spec" and c.device_name == decision.REFERENCE_GPU
    for p in r.steps + r.no_gain:
        if p.value is None:
            continue
        assert p.source.startswith("analytic: roofline step-time ratio") and "spec" in p.source
        assert p.value == pytest.approx(decision.analytic_payoff(p.key, 1024, "cuda", "speed", ceilings=c))
    base = decision.change_config("baseline", 1024, "cuda")
    flash = decision.change_config("flash", 1024, "cuda")
    want = (roofline.predict_step(base, 4, 1024, c, "bfloat16").total_ms
            / roofline.predict_step(flash, 4, 1024, c, "bfloat16").total_ms)
    assert next(p for p in r.steps + r.no_gain if p.key == "flash").value == pytest.approx(want)
    cpu = decision.recommend(1024, "cpu", "speed", results=[])  # no ceilings for a CPU: FLOPs, labelled
    assert all("FLOP ratio" in p.source for p in cpu.steps + cpu.no_gain if p.value is not None)
    doc = {"meta": {"device": "cpu", "device_name": "box"}, "rows": [_ceilings(name="box").to_row()]}
    measured = decision.recommend(1024, "cpu", "speed", results=[doc])
    assert all("roofline" in p.source and "box" in p.source for p in measured.steps + measured.no_gain
               if p.value is not None and not p.measured)


def test_check_roofline_time():
    rt = roofline_lesson.roofline_time
    check = roofline_lesson.check_roofline_time
    assert check(rt).passed
    assert not check(lambda f, b, p, w: f / p + b / w).passed
    assert "larger" in check(lambda f, b, p, w: f / p + b / w).message
    assert "shorter" in check(lambda f, b, p, w: min(f / p, b / w)).message
    assert "milliseconds" in check(lambda f, b, p, w: 1e3 * max(f / p, b / w)).message

    def todo(*a):
        raise NotImplementedError
    assert "not implemented" in check(todo).message
    assert not check(lambda *a: "fast").passed
    assert math.isclose(rt(1e9, 1e9, 1e12, 1e9), 1.0)


def test_all_together_rows_gain_the_roofline_prediction():
    from tutorial_lib.lessons import all_together
    from tutorial_lib.sizes import get_sizes
    s = get_sizes("smoke").final
    variants = all_together.short_variants(s)
    base_cfg = next(iter(variants.values()))[0]
    c = _ceilings()
    rows = [{"variant": label, "median_ms": 10.0 * (i + 1)} for i, label in enumerate(variants)]
    out = roofline_lesson.add_predictions(rows, variants, 2, 64, c)
    base = roofline.predict_step(base_cfg, 2, 64, c)
    assert out[0]["predicted_ms"] == pytest.approx(base.total_ms) and out[0]["predicted_speedup"] == 1.0
    assert out[0]["prediction_error"] == pytest.approx(base.total_ms / 10.0 - 1)
    after = next(r for r in out if r["variant"] == all_together.AFTER_LABEL)
    p = roofline.predict_step(variants[all_together.AFTER_LABEL][0], 2, 64, c)
    assert after["predicted_speedup"] == pytest.approx(base.total_ms / p.total_ms)
    assert after["flop_only_speedup"] == pytest.approx(base.flop_only_ms / p.flop_only_ms)
    compiled = dict(variants, **{"... + torch.compile": (base_cfg, True)})
    out = roofline_lesson.add_predictions(rows + [{"variant": "... + torch.compile", "median_ms": 5.0}],
                                          compiled, 2, 64, c)
    assert out[-1]["predicted_ms"] is None  # the model describes eager kernels


@pytest.mark.slow
def test_the_suite_section_records_ceilings_checks_and_points():
    from tutorial_lib.guide import suite
    doc = suite.run_suite("guide", profile="smoke", device="cpu", only=["roofline"], progress=False)
    kinds = {r["kind"] for r in doc["rows"]}
    assert {"ceilings", "ceiling_runs", "roofline", "roofline_points"} <= kinds
    assert "error" not in doc["sections"]["roofline"]
    ceil = ceilings.doc_ceilings(doc)
    assert ceil.peak_flops > 0 and ceil.device == "cpu"
    check = next(r for r in doc["rows"] if r["kind"] == "roofline")
    assert check["measured_ms"] > 0 and check["rounds"] >= 1
    assert check["roofline_error_min"] <= check["roofline_error"] <= check["roofline_error_max"]
    pts = [r for r in doc["rows"] if r["kind"] == "roofline_points"]
    assert {"lm_head", "loss", "mlp.up"} <= {p["scope"] for p in pts}
