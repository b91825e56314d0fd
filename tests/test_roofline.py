"""The roofline model against PyTorch's own truth, the ceilings' measurement at tiny sizes, the
arithmetic of a prediction, and the predictions against the measurements on record.

Truth for bytes: every ATen operator the step dispatches (``measure.traffic``: each kernel's
input and output tensor sizes) and every tensor autograd saves (``measure.memory``'s
saved-tensor hooks)."""
import math
from pathlib import Path

import pytest
import torch

from tutorial_lib.lessons import decision
from tutorial_lib.lessons import roofline as RL
from tutorial_lib.measure import flops as F
from tutorial_lib.measure import records
from tutorial_lib.measure import roofline as R
from tutorial_lib.measure import traffic as TR
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
]
IDS = [",".join(f"{k}={v}" for k, v in ch.items()) + f",B={B},T={T}" or "default" for ch, B, T in CONFIGS]


def _ceilings(device="cpu", peak=1e11, bw=1e10, overhead=5e-6, name=None, **kw):
    return R.Ceilings(device=device, device_name=name or f"test-{device}", dtype="float32", peak_flops=peak,
                      bandwidth=bw, overhead_s=overhead, **kw)


# ---- bytes and kernels: the model against what PyTorch dispatches --------------------------------
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("changes,B,T", CONFIGS, ids=IDS)
def test_kernels_and_bytes_match_every_dispatched_operator(changes, B, T, dtype):
    """Per (component, phase): bytes read, bytes written and kernel launches equal what the
    dispatch counter sees in a real training step (forward with loss, backward, AdamW), exactly."""
    cfg = get_config("tiny", **changes)
    counted = TR.count_step_traffic(cfg, B, T, dtype=dtype).traffic
    model = {(r.scope, r.phase): r for r in R.traffic_table(cfg, B, T, dtype)}
    assert set(model) == set(counted)
    for key, t in counted.items():
        m = model[key]
        assert (m.read, m.write, m.n_kernels) == (t.read, t.written, t.kernels), (key, dict(t.ops))
        big = R.FRESH_ALLOC_BYTES // 2**16  # allocation sizes too (what first touch is charged on)
        assert t.fresh_bytes(big) == sum(k.count * k.fresh_bytes(big) for k in m.kernels), key


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("changes,B,T", CONFIGS[:10] + CONFIGS[11:], ids=IDS[:10] + IDS[11:])
def test_saved_bytes_match_the_saved_tensor_hooks(changes, B, T, dtype):
    """What the model says backward re-reads = what autograd saves, per component, exactly."""
    cfg = get_config("tiny", **changes)
    mb = memory_breakdown(cfg, B, T, device="cpu", dtype=dtype)
    assert R.saved_table(cfg, B, T, dtype) == mb.activations_by_component


def test_matmul_flops_are_the_cost_tables():
    """The kernels' FLOPs add up to cost_table's "as the kernels do them" FLOPs, per phase (which
    the FLOP tests check against FlopCounterMode)."""
    for changes in ({}, {"attn_backend": "eager", "n_kv_head": 4}, {"mlp": "swiglu", "window": 128},
                    {"attn_backend": "local", "window": 64}):
        cfg = get_config("gpt2_small", **changes)
        rows = R.traffic_table(cfg, 2, 256)
        t = F.totals(F.cost_table(cfg, 2, 256))
        assert sum(r.flops for r in rows if r.phase == "forward") == t["fwd_flops_work"]
        assert sum(r.flops for r in rows if r.phase == "backward") == t["bwd_flops_work"]
        assert all(r.exact == (r.scope != "attention.core" or cfg.attn_backend in ("eager", "sdpa")) for r in rows)


def test_eager_attention_moves_the_t_by_t_tensors_and_flash_does_not():
    cfg = get_config("gpt2_small")
    B, T = 1, 1024
    core = {be: sum(r.bytes for r in R.traffic_table(cfg.replace(attn_backend=be), B, T)
                    if r.scope == "attention.core") for be in ("eager", "sdpa")}
    tt = B * cfg.n_head * T * T * 4 * cfg.n_layer  # one (B, H, T, T) fp32 tensor in every layer
    assert core["eager"] - core["sdpa"] > 10 * tt  # scores, scaled, masked, probabilities: each read and written
    assert core["sdpa"] < tt  # the fused kernel's bytes are its inputs and outputs: O(T)


def test_param_sizes_are_the_models_parameters():
    from tutorial_lib.model import GPT
    for changes in ({}, {"norm": "layernorm", "bias": True, "pos": "learned", "tie_embeddings": False},
                    {"mlp": "swiglu", "n_kv_head": 2}):
        cfg = get_config("tiny", **changes)
        assert R.param_sizes(cfg) == [p.numel() for p in GPT(cfg).parameters()]


def test_bad_sizes_name_the_field():
    with pytest.raises(ValueError, match="seq_len=0"):
        R.traffic_table(get_config("tiny"), 1, 0)
    with pytest.raises(ValueError, match="sizes"):
        R.measure_peak_flops("cpu", sizes=(0,))


# ---- the ceilings: measured at tiny sizes, and the datasheet -------------------------------------
def test_ceilings_measurement_runs_at_tiny_size():
    c = R.measure_ceilings("cpu", mm_sizes=(32, 64), stream_bytes=2**16, first_touch_sizes=(2**16,),
                           min_run_time=0.01, progress=False)
    assert c.source == "measured" and c.device == "cpu" and c.dtype == "float32"
    assert c.peak_flops > 0 and c.bandwidth > 0 and 0 < c.overhead_s < 0.01
    assert c.first_touch_bandwidth is None  # no size reached the fresh-allocation threshold
    whats = [d["what"] for d in c.details]
    assert whats.count("mm") == 2 and {"copy", "add", "fill fresh", "fill warm", "tiny add"} <= set(whats)
    best = max(d["flops_per_s"] for d in c.details if d["what"] == "mm")
    assert c.peak_flops == best
    row = c.to_row()
    assert row["kind"] == "ceilings" and R.Ceilings.from_row(row) == c  # a results row round-trips


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_ceilings_measurement_runs_on_cuda():
    c = R.measure_ceilings("cuda", mm_sizes=(256,), stream_bytes=2**20, first_touch_sizes=(2**26,),
                           min_run_time=0.01, progress=False)
    assert c.device.startswith("cuda") and c.peak_flops > 0 and c.first_touch_bandwidth is None
    assert c.fresh_alloc_bytes is None and c.async_launch


def test_first_touch_is_reported_only_above_the_threshold(monkeypatch):
    monkeypatch.setattr(R, "FRESH_ALLOC_BYTES", 2**17)  # make a small size count as "fresh"
    bw, rows = R.measure_first_touch("cpu", (2**16, 2**18), min_run_time=0.01)
    assert bw == rows[-2]["bytes_per_s"] and rows[-2]["what"] == "fill fresh" and rows[-2]["above_threshold"]
    assert [r["above_threshold"] for r in rows] == [False, False, True, True]


def test_spec_ceilings_come_from_the_one_datasheet_table():
    h200 = R.spec_ceilings("NVIDIA H200", "bfloat16")
    assert (h200.peak_flops, h200.bandwidth, h200.source) == (989e12, 4800e9, "spec")
    assert h200.ridge == pytest.approx(989e12 / 4800e9) and h200.overhead_s == 0
    assert "nvidia.com" in h200.details[0]["source"]
    assert R.spec_ceilings("NVIDIA A100-SXM4-40GB", "bfloat16").bandwidth == 1555e9
    assert R.spec_ceilings("NVIDIA A100-SXM4-80GB", "bfloat16").bandwidth == 2039e9
    for gpu in ("H200", "H100", "A100", "L4", "T4"):
        spec = F.gpu_spec(gpu)
        assert spec.bandwidth_gbs and spec.source.startswith("https://")
    assert R.spec_ceilings("Intel Xeon", "float32") is None
    assert F.PEAK_TFLOPS == [(s.name, s.tflops) for s in F.GPU_SPECS]
    rows = R.spec_rows("bfloat16")
    assert {r["gpu"] for r in rows} >= {"H200", "H100", "A100", "L4"} and all("source" in r for r in rows)


# ---- the arithmetic of a prediction ---------------------------------------------------------------
def test_a_kernel_takes_the_longer_of_compute_and_memory_plus_its_overhead():
    c = _ceilings(peak=1e12, bw=1e11, overhead=1e-5)
    mm = R.Kernel("mm", 3, read=10**6, write=10**6, flops=10**10)  # 10 ms of math, 20 us of bytes
    add = R.Kernel("add", 2, read=2 * 10**8, write=10**8)  # 3 ms of bytes
    assert mm.seconds(c) == pytest.approx(3 * (1e-2 + 1e-5))
    assert add.seconds(c) == pytest.approx(2 * (3e-3 + 1e-5))
    gpu = _ceilings("cuda", peak=1e12, bw=1e11, overhead=1e-3)  # launches overlap kernels on a GPU
    assert mm.seconds(gpu) == pytest.approx(3 * 1e-2) and R.Kernel("x", 4, 8, 8).seconds(gpu) == pytest.approx(4e-3)
    comp = R.Component("mlp.up", "forward", (mm, add))
    assert comp.seconds(c) == pytest.approx(mm.seconds(c) + add.seconds(c)) and comp.bound(c) == "compute"
    assert comp.flops == 3 * 10**10 and comp.bytes == 3 * 2 * 10**6 + 2 * 3 * 10**8 and comp.n_kernels == 5


def test_first_touch_charges_large_new_outputs_only():
    c = _ceilings(peak=1e12, bw=1e10, overhead=0.0, first_touch_bandwidth=1e9, fresh_alloc_bytes=2**25)
    big = 2**26
    fresh = R.Kernel("_log_softmax", 1, read=big, write=big)
    assert fresh.seconds(c) == pytest.approx(big / 1e10 + big / 1e9)  # read warm, write fresh pages
    inplace = R.Kernel("add_", 1, read=big, write=big)
    assert inplace.seconds(c) == pytest.approx(2 * big / 1e10)
    small = R.Kernel("gelu", 1, read=2**20, write=2**20)
    assert small.seconds(c) == pytest.approx(2**21 / 1e10)
    assert fresh.seconds(_ceilings(peak=1e12, bw=1e10, overhead=0.0)) == pytest.approx(2 * big / 1e10)


def test_step_prediction_and_the_inferred_overhead():
    cfg = get_config("gpt2_mini")
    c = _ceilings(peak=2e11, bw=2e10, overhead=7e-6)
    p = R.predict_step(cfg, 2, 256, c)
    rows = R.traffic_table(cfg, 2, 256)
    assert p.total_ms == pytest.approx(sum(r.seconds(c) for r in rows) * 1e3)
    assert p.kernels == sum(r.n_kernels for r in rows) and p.overhead_ms() == pytest.approx(p.kernels * 7e-3)
    assert p.flop_only_ms == pytest.approx(sum(r.flops for r in rows) / 2e11 * 1e3)
    assert p.flop_only_ms < p.total_ms
    assert set(p.scope_ms()) >= {"lm_head", "loss", "optimizer", "embedding"}
    # zero-overhead ceilings and the step measured as above: the gap is 7 us per launch
    bare = R.predict_step(cfg, 2, 256, _ceilings(peak=2e11, bw=2e10, overhead=0.0))
    assert R.inferred_overhead(bare, p.total_ms) == pytest.approx(7e-6)
    g = _ceilings("cuda", peak=2e11, bw=2e10, overhead=0.0)
    pg = R.predict_step(cfg, 2, 256, g)
    measured = R.predict_step(cfg, 2, 256, _ceilings("cuda", peak=2e11, bw=2e10, overhead=3e-5)).total_ms
    assert R.inferred_overhead(pg, measured) == pytest.approx(3e-5, rel=1e-6)
    assert R.inferred_overhead(pg, pg.roof_ms / 2) is None  # the roofs alone already exceed it


def test_roofline_points_place_components_under_the_roof():
    c = _ceilings(peak=2e11, bw=2e10, overhead=0.0)
    rows = R.traffic_table(get_config("gpt2_mini"), 2, 256)
    pred = {(r.scope, r.phase): r.seconds(c) * 1e3 for r in rows}
    pts = {(p["scope"], p["phase"]): p for p in R.roofline_points(rows, pred, c)}
    for p in pts.values():  # measured = predicted: every point sits at or under its roof
        assert p["achieved_flops"] <= p["roof_flops"] * (1 + 1e-9)
    assert pts[("loss", "forward")]["bound"] == "memory" and pts[("lm_head", "forward")]["bound"] == "compute"
    assert pts[("loss", "forward")]["intensity"] < c.ridge < pts[("mlp.up", "forward")]["intensity"]


# ---- the lesson: moves, checks, and every measurement on record ------------------------------------
def test_attention_moves_count_what_each_backend_moves():
    rows = {r["backend"]: r for r in RL.attention_moves(64, 16, batch_size=1, n_head=2, head_dim=8,
                                                        device="cpu", min_run_time=0.01)}
    assert all(r["error"] is None and r["ms"] > 0 for r in rows.values())
    assert rows["eager"]["bytes"] > rows["sdpa"]["bytes"]  # flash removes the T x T bytes
    assert rows["local"]["flops"] < rows["eager"]["flops"]  # the window removes FLOPs ...
    assert rows["local"]["bytes"] < rows["eager"]["bytes"]  # ... and bytes
    pts = RL.decode_points(get_config("gpt2_small"), 2048, (12, 4, 1))
    assert [p["label"] for p in pts] == ["MHA", "GQA-4", "MQA"]
    assert pts[0]["flops"] == pts[1]["flops"] and pts[1]["intensity"] > 2.5 * pts[0]["intensity"]


def test_recorded_steps_read_old_and_new_results_rows():
    doc = records.load_results(ROOT / "results" / "cpu.json")
    steps = RL.recorded_steps(doc)
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
    assert [(s["config"].name, s["ms"]) for s in RL.recorded_steps(new)] == [("tiny", 3.0)]


def test_prediction_errors_cover_the_h200_histories_with_spec_ceilings():
    runs = RL.training_histories(ROOT / "results")
    assert len(runs) >= 10 and all(r["device_name"] == "NVIDIA H200" for r in runs)
    rows = RL.prediction_errors([], runs)
    fb = [r for r in rows if "(fwd+bwd+clip)" in r["variant"]]
    assert len(fb) == len(runs) and all(r["ceilings"] == "spec" for r in fb)
    gelu4 = next(r for r in fb if r["source"] == "train_h200_1000/train_gpu_gelu4_adamw.json")
    assert gelu4["measured_ms"] == pytest.approx(47.83 - 1.61)
    # the FLOP-only prediction is every FLOP at the datasheet peak: below the roofline's
    assert gelu4["flop_only_ms"] < gelu4["roofline_ms"] and gelu4["flop_only_error"] < gelu4["roofline_error"]
    assert gelu4["inferred_overhead_us"] > 0  # the spec has no overhead: what would close the gap
    opt = [r for r in rows if "(optimizer step)" in r["variant"]]
    assert opt and all("muon" not in r["variant"] and r["roofline_ms"] > 0 for r in opt)
    summary = RL.error_summary(rows)
    assert summary[0]["device_name"] == "NVIDIA H200" and summary[0]["steps"] == len(runs)  # no optimizer rows


def test_a_cpu_file_without_ceilings_is_not_predicted_from_another_machines():
    doc = records.load_results(ROOT / "results" / "cpu.json")
    doc["_path"] = "cpu.json"
    doc["rows"] = [r for r in doc["rows"] if r.get("kind") != "ceilings"]  # a file recorded without them
    live = _ceilings()  # this machine's: another device name than the file's
    rows = RL.prediction_errors([doc], [], live)
    assert rows and all(r["ceilings"] == "none on record for this device" for r in rows)
    doc["rows"].append(dict(_ceilings(name=doc["meta"]["device_name"]).to_row(),
                            device_name=doc["meta"]["device_name"]))
    rows = RL.prediction_errors([doc], [], live)
    assert all(r["ceilings"] == "measured" and r["roofline_error"] is not None for r in rows)


def test_decision_tree_speed_payoffs_come_from_the_roofline():
    r = decision.recommend(1024, "cuda", "speed", results=[])
    c = decision.decision_ceilings("cuda", [])
    assert c.source == "spec" and c.device_name == decision.REFERENCE_GPU
    for p in r.steps + r.no_gain:
        if p.value is None:
            continue
        assert p.source.startswith("analytic: roofline step-time ratio") and "spec" in p.source
        assert p.value == pytest.approx(decision.analytic_payoff(p.key, 1024, "cuda", "speed", ceilings=c))
    base = decision.change_config("baseline", 1024, "cuda")
    flash = decision.change_config("flash", 1024, "cuda")
    want = (R.predict_step(base, 4, 1024, c, "bfloat16").total_ms
            / R.predict_step(flash, 4, 1024, c, "bfloat16").total_ms)
    assert next(p for p in r.steps + r.no_gain if p.key == "flash").value == pytest.approx(want)
    cpu = decision.recommend(1024, "cpu", "speed", results=[])  # no ceilings for a CPU: FLOPs, labelled
    assert all("FLOP ratio" in p.source for p in cpu.steps + cpu.no_gain if p.value is not None)
    doc = {"meta": {"device": "cpu", "device_name": "box"}, "rows": [_ceilings(name="box").to_row()]}
    measured = decision.recommend(1024, "cpu", "speed", results=[doc])
    assert all("roofline" in p.source and "box" in p.source for p in measured.steps + measured.no_gain
               if p.value is not None and not p.measured)


def test_check_roofline_time():
    assert RL.check_roofline_time(RL.roofline_time).passed
    assert not RL.check_roofline_time(lambda f, b, p, w: f / p + b / w).passed
    assert "larger" in RL.check_roofline_time(lambda f, b, p, w: f / p + b / w).message
    assert "shorter" in RL.check_roofline_time(lambda f, b, p, w: min(f / p, b / w)).message
    assert "milliseconds" in RL.check_roofline_time(lambda f, b, p, w: 1e3 * max(f / p, b / w)).message

    def todo(*a):
        raise NotImplementedError
    assert "not implemented" in RL.check_roofline_time(todo).message
    assert not RL.check_roofline_time(lambda *a: "fast").passed
    assert math.isclose(RL.roofline_time(1e9, 1e9, 1e12, 1e9), 1.0)


def test_all_together_rows_gain_the_roofline_prediction():
    from tutorial_lib.lessons import all_together as AT
    from tutorial_lib.sizes import get_sizes
    s = get_sizes("smoke").final
    variants = AT.short_variants(s)
    base_cfg = next(iter(variants.values()))[0]
    c = _ceilings()
    rows = [{"variant": label, "median_ms": 10.0 * (i + 1)} for i, label in enumerate(variants)]
    out = RL.add_predictions(rows, variants, 2, 64, c)
    base = R.predict_step(base_cfg, 2, 64, c)
    assert out[0]["predicted_ms"] == pytest.approx(base.total_ms) and out[0]["predicted_speedup"] == 1.0
    assert out[0]["prediction_error"] == pytest.approx(base.total_ms / 10.0 - 1)
    after = next(r for r in out if r["variant"] == AT.AFTER_LABEL)
    p = R.predict_step(variants[AT.AFTER_LABEL][0], 2, 64, c)
    assert after["predicted_speedup"] == pytest.approx(base.total_ms / p.total_ms)
    assert after["flop_only_speedup"] == pytest.approx(base.flop_only_ms / p.flop_only_ms)
    compiled = dict(variants, **{"... + torch.compile": (base_cfg, True)})
    out = RL.add_predictions(rows + [{"variant": "... + torch.compile", "median_ms": 5.0}], compiled, 2, 64, c)
    assert out[-1]["predicted_ms"] is None  # the model describes eager kernels


@pytest.mark.slow
def test_the_suite_section_records_ceilings_checks_and_points():
    from tutorial_lib.guide import suite
    doc = suite.run_suite("guide", profile="smoke", device="cpu", only=["roofline"], progress=False)
    kinds = {r["kind"] for r in doc["rows"]}
    assert {"ceilings", "ceiling_runs", "roofline", "roofline_points"} <= kinds
    assert "error" not in doc["sections"]["roofline"]
    ceil = RL.doc_ceilings(doc)
    assert ceil.peak_flops > 0 and ceil.device == "cpu"
    check = next(r for r in doc["rows"] if r["kind"] == "roofline")
    assert check["measured_ms"] > 0 and check["roofline_error"] == pytest.approx(
        check["roofline_ms"] / check["measured_ms"] - 1)
    pts = [r for r in doc["rows"] if r["kind"] == "roofline_points"]
    assert {"lm_head", "loss", "mlp.up"} <= {p["scope"] for p in pts}
