"""The explorers without a browser: pure computations against independent formulas, and every
widget callback driven by setting ``widget.value`` (tests/test_browser.py does it in JupyterLab)."""
from __future__ import annotations

import subprocess
import sys
import types

import pytest

from tutorial_lib.lessons import decision, memory_budget
from tutorial_lib.lessons import explorer as explore
from tutorial_lib.measure import ceilings, roofline
from tutorial_lib.measure.memory import memory_breakdown
from tutorial_lib.model import GPT, get_config

W_ = pytest.importorskip("ipywidgets")
from tutorial_lib import widgets
from tutorial_lib.guide import suite
from tutorial_lib.lessons.flash_attention import flash_point
from tutorial_lib.lessons.gqa import gqa_point


# ---- the package stays free of ipywidgets -----------------------------------------------------
def test_core_and_cli_import_without_ipywidgets():
    code = ("import sys, tutorial_lib, tutorial_lib.lessons.explorer, tutorial_lib.lessons.decision, tutorial_lib.cli\n"
            "assert 'ipywidgets' not in sys.modules, 'ipywidgets imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- cost model -------------------------------------------------------------------------------
def test_settings_validate_with_field_names():
    with pytest.raises(ValueError, match="seq_len"):
        explore.ExplorerSettings(seq_len=0)
    with pytest.raises(ValueError, match="dtype"):
        explore.ExplorerSettings(dtype="int8")
    with pytest.raises(ValueError, match="n_kv_head"):
        explore.ExplorerSettings(n_kv_head=5)
    # T beyond the preset's block_size is fine analytically (RoPE): block_size is raised
    assert explore.ExplorerSettings(seq_len=4096).config().block_size == 4096


def test_flops_per_scope_match_hand_formulas():
    B, T = 2, 256
    s = explore.ExplorerSettings(seq_len=T, batch_size=B, dtype="float32")
    cfg = s.config()
    C, L, V, Hid = cfg.n_embd, cfg.n_layer, cfg.vocab_size, cfg.mlp_hidden
    p = explore.predict_cost(s)
    # a Linear costs 2*N*in*out forward and twice that backward
    assert p.flops["mlp.up"] == 3 * 2 * B * T * C * Hid * L
    assert p.flops["lm_head"] == 3 * 2 * B * T * C * V
    assert p.flops["attention.qkv"] == 3 * 2 * B * T * C * 3 * C * L
    assert sum(p.flop_share.values()) == pytest.approx(1.0)
    assert p.step_ms is None and p.time_share == p.flop_share and "compute-bound" in p.basis


def test_eager_attention_does_the_full_square_sdpa_the_causal_half():
    T = 512
    cfg = get_config("gpt2_small")
    e = explore.scope_work(cfg.replace(attn_backend="eager"), 1, T)
    f = explore.scope_work(cfg.replace(attn_backend="sdpa"), 1, T)
    H, D, L = cfg.n_head, cfg.head_dim, cfg.n_layer
    pairs_full, pairs_causal = T * T, T * (T + 1) // 2
    # eager: QK^T and PV, 2*D FLOPs per (query, key) pair each, over all T x T, backward 2x
    mm_e = e["attention.core"] - 3 * (1 + 5) * H * T * T * L  # minus scale_mask + softmax estimate
    assert mm_e == 4 * H * D * pairs_full * L * 3
    # the flash kernel skips the masked half but recomputes the scores in backward (nb matmuls)
    from tutorial_lib.attention.reference import sdpa_backward_matmuls as sdpa_counter_bwd_matmuls
    nb = sdpa_counter_bwd_matmuls()
    per_pair = 2 * H * D * L
    assert f["attention.core"] == (per_pair * pairs_causal * ((1 + nb - 2) + 3)
                                   + 3 * (1 + 5) * H * T * T * L)


def test_memory_prediction_against_the_real_model():
    cfg = get_config("tiny")
    m = explore.predict_memory(cfg, 2, 64, "float32")
    n = GPT(cfg).num_params()
    assert m["params"] == n
    assert m["by_kind"]["parameters"] == 4 * n and m["by_kind"]["gradients"] == 4 * n
    assert m["by_kind"]["optimizer state"] == 8 * n + 4 * len(list(GPT(cfg).parameters()))  # + a step count each
    eager = explore.predict_memory(cfg.replace(attn_backend="eager"), 2, 64, "float32")
    B, H, T, L = 2, cfg.n_head, 64, cfg.n_layer
    # eager keeps its probabilities (B, H, T, T) fp32 and the (T, T) bool mask for backward
    assert eager["activations_by_group"]["attention scores/probs"] == (4 * B * H * T * T + T * T) * L
    assert m["activations_by_group"]["attention scores/probs"] == 0


@pytest.mark.parametrize("changes", [{"attn_backend": "eager"}, {"n_kv_head": 2},
                                     {"attn_backend": "local", "window": 16}, {"loss_impl": "chunked"},
                                     {"attn_backend": "sdpa", "window": 16, "mlp": "swiglu"}],
                         ids=["eager", "gqa", "local-window", "chunked-loss", "sdpa-window-swiglu"])
def test_the_explorers_activation_memory_is_the_exact_saved_bytes(changes):
    """What the cost explorer shows for activations = every tensor autograd saves in a real step
    (saved_tensors_hooks), byte for byte, per config."""
    cfg = get_config("tiny", **changes)
    B, T = 2, 64
    s = explore.ExplorerSettings.from_config(cfg, T, B, "float32")
    shown = explore.predict_cost(s).memory
    measured = memory_breakdown(cfg, B, T, device="cpu")
    assert shown["by_kind"]["activations"] == measured.activations_bytes
    assert shown["by_kind"]["parameters"] == measured.params_bytes
    assert shown["by_kind"]["optimizer state"] == measured.optimizer_bytes


def _ceilings(device="cpu", name="test-cpu", dtype="float32"):
    return ceilings.Ceilings(device=device, device_name=name, dtype=dtype, peak_flops=1e11, bandwidth=1e10,
                             overhead_s=5e-6)


def test_time_comes_from_the_roofline_model_on_the_ceilings():
    s = explore.ExplorerSettings(preset="tiny", seq_len=64, batch_size=2, dtype="float32")
    c = _ceilings()
    p = explore.predict_cost(s, ceilings=c)
    want = roofline.predict_step(s.config(), 2, 64, c, dtype="float32", device_type="cpu")
    assert p.step_ms == pytest.approx(want.total_ms) == pytest.approx(p.roofline_ms)
    assert p.flop_only_ms == pytest.approx(want.flop_only_ms) and p.flop_only_ms < p.step_ms
    assert sum(p.time_share.values()) == pytest.approx(1.0) and "roofline model on test-cpu" in p.basis
    # the loss moves bytes, not FLOPs: its time share is far above its FLOP share
    assert p.time_share["loss"] > 4 * p.flop_share["loss"]
    # ceilings measured in another dtype do not predict this one
    q = explore.predict_cost(s.replace(dtype="bfloat16"), ceilings=c)
    assert q.step_ms is None and "float32" in q.basis


def test_calibration_scales_comparable_work_per_component_and_nothing_else():
    c = _ceilings()
    s = explore.ExplorerSettings(preset="tiny", seq_len=64, batch_size=2, dtype="float32")
    pred = explore.roofline_scope_ms(roofline.predict_step(s.config(), 2, 64, c, dtype="float32"))
    factors = {k: 1.0 + 0.5 * i for i, k in enumerate(sorted(pred))}  # made-up measured / predicted
    scope_ms = {k: pred[k] * factors[k] for k in pred}
    cal = explore.Calibration.from_measurement(s, sum(scope_ms.values()), "cpu", "test-cpu", scope_ms)
    same = explore.predict_cost(s, cal, ceilings=c)
    assert same.step_ms == pytest.approx(sum(scope_ms.values()))  # reproduces its own measurement
    assert "scaled per component by measured now" in same.basis and "1x apart" in same.basis
    longer = s.replace(seq_len=128)  # twice the tokens: the same size class
    p2 = explore.predict_cost(longer, cal, ceilings=c)
    base2 = explore.predict_cost(longer, ceilings=c)
    for k, ms in p2.time_ms.items():
        assert ms == pytest.approx(base2.time_ms[k] * factors[k])
    assert "2x apart" in p2.basis
    far = explore.predict_cost(s.replace(seq_len=256), cal, ceilings=c)  # 4x the tokens: not scaled
    assert far.step_ms == pytest.approx(far.roofline_ms) and "4.0x apart" in far.basis
    assert "not scaled" in far.basis and far.scaled_by is None
    other = explore.ExplorerSettings(preset="gpt2_mini", seq_len=64, batch_size=2, dtype="float32")
    p3 = explore.predict_cost(other, cal, ceilings=c)  # another model: never scaled by tiny
    assert p3.step_ms == pytest.approx(p3.roofline_ms) and "measured tiny, not gpt2_mini" in p3.basis
    # a whole-step measurement scales every component by one factor
    glob = explore.Calibration.from_measurement(s, 2 * same.roofline_ms, "cpu", "test-cpu")
    assert explore.predict_cost(longer, glob, ceilings=c).step_ms == pytest.approx(2 * base2.step_ms)


def test_profile_rows_become_scope_ms_that_sum_to_the_step():
    rows = [{"scope": "mlp.up", "ms": 2.0}, {"scope": "mlp.up", "ms": 2.0},
            {"scope": "other (autograd engine)", "ms": 1.0}, {"scope": "optimizer (AdamW)", "ms": 3.0},
            {"scope": "grad accumulation", "ms": 2.0}]
    ms = explore.profile_scope_ms(rows, step_ms=5.0)
    assert ms == pytest.approx({"mlp.up": 2.0, "other": 0.5, "optimizer": 2.5})


def test_calibration_from_results_uses_this_device_only():
    s = explore.ExplorerSettings(preset="tiny", seq_len=32, batch_size=2, dtype="float32", n_kv_head=2)
    doc = {"meta": {"device": "cpu", "device_name": "box", "date": "2026"}, "_path": "r/cpu.json",
           "rows": [{"kind": "step", "preset": "tiny", "seq_len": 32, "batch_size": 2, "mode": "train",
                     "config_fields": s.config().to_dict(), "median_ms": 4.0, "dtype": "float32"},
                    {"kind": "step", "preset": "tiny", "seq_len": 32, "batch_size": 2, "mode": "fwd",
                     "config_fields": s.config().to_dict(), "median_ms": 1.0, "dtype": "float32"},
                    {"kind": "step", "seq_len": 32, "batch_size": 2, "mode": "train", "median_ms": 9.0,
                     "dtype": "float32"}]}  # a row that does not say what it measured: not used
    cal = explore.calibration_from_results([doc], "box", "float32", s)
    assert cal.step_ms == 4.0 and cal.settings == s and "cpu.json" in cal.source
    c = _ceilings(name="box")
    assert explore.predict_cost(s, cal, ceilings=c).step_ms == pytest.approx(4.0)  # the GQA-2 config
    assert explore.calibration_from_results([doc], "another box", "float32", s) is None
    assert explore.calibration_from_results([doc], "box", "bfloat16", s) is None
    assert explore.calibration_from_results([doc], "box", "float32", s.replace(seq_len=256)) is None  # 8x
    # no measured ceilings for a CPU: none; a results file's ceilings row: those
    session = explore.ExplorerSession("cpu", [doc])
    session.device_name = "box"
    assert session.ceilings("float32") is None
    doc["rows"].append(dict(c.to_row()))
    assert session.ceilings("float32").bandwidth == c.bandwidth


def test_calibration_from_the_guide_suites_before_after_rows():
    label, changes = suite.BEFORE_AFTER[1]
    cfg = get_config("gpt2_small", **changes)
    doc = {"meta": {"device": "cuda:0", "device_name": "NVIDIA H100 80GB HBM3", "dtype": "bfloat16",
                    "date": "2026"}, "_path": "gpu.json",
           "rows": [{"kind": "before_after", "variant": label, "ms_per_step": 50.0,
                     "config_fields": cfg.to_dict(), "batch_size": 4, "seq_len": 512}]}
    cal = explore.calibration_from_results([doc], "NVIDIA H100 80GB HBM3", "bfloat16")
    s = explore.ExplorerSettings(seq_len=512, batch_size=4, dtype="bfloat16", **changes)
    spec = ceilings.ceilings_for("NVIDIA H100 80GB HBM3", "bfloat16", [doc], device_type="cuda")
    assert spec.source == "spec" and spec.bandwidth == 3350e9  # no measured ceilings: the datasheet
    p = explore.predict_cost(s, cal, "cuda", spec)
    assert p.step_ms == pytest.approx(50.0) and "spec ceilings" in p.basis


# ---- lesson computations ----------------------------------------------------------------------




def test_lesson_points_show_measurements_of_this_device_kind_only():
    doc = _doc()
    doc["rows"].append({"kind": "flash_vs_T", "backend": "eager", "seq_len": 1024, "saved_bytes": 123,
                        "batch_size": 1, "n_head": 12})
    g = gqa_point(4, 512, docs=[doc], device="cuda:0")
    assert [m["context"] for m in g["measured"]] == [512, 4096] and g["measured"][0]["device_name"] == "GPU-X"
    assert gqa_point(4, 512, docs=[doc], device="cpu")["measured"] == []
    f = flash_point(1024, docs=[doc], device="cuda")
    assert f["measured"][0]["saved_bytes"] == 123
    assert flash_point(1024, docs=[doc], device="cpu")["measured"] == []








def test_crossover_checker():
    T = explore.crossover_seq_len("sdpa")
    cfg = get_config("gpt2_small", block_size=T)
    f, half = explore.flop_breakdown(cfg, 1, T), explore.flop_breakdown(cfg, 1, T // 2)
    mlp = lambda d: d["mlp.up"] + d["mlp.act"] + d["mlp.down"]  # noqa: E731
    assert f["attention.core"] > mlp(f) and half["attention.core"] <= mlp(half)
    assert explore.check_crossover(T).startswith("✓")
    assert "eager" in explore.check_crossover(explore.crossover_seq_len("eager"))
    assert explore.check_crossover(T // 4).startswith("✗") and "larger" in explore.check_crossover(T // 4)
    assert explore.check_crossover("lots").startswith("✗")


# ---- decision tree ----------------------------------------------------------------------------
def _doc(device="cuda", name="GPU-X"):
    return {"meta": {"device": device, "device_name": name, "date": "2026"}, "_path": "x.json",
            "sections": {"before_after": {"sizes": {"T": 512, "timing": "3 interleaved rounds"}},
                         "gqa_decode": {"sizes": {"B": 1, "timing": "3 interleaved rounds"}}},
            "rows": [
                {"kind": "before_after", "variant": "baseline: MHA", "speedup": 1.0, "peak_mem_MiB": 1000.0},
                {"kind": "before_after", "variant": "+ GQA-4", "speedup": 1.3, "speedup_min": 1.2,
                 "speedup_max": 1.4, "peak_mem_MiB": 900.0},
                {"kind": "before_after", "variant": "+ SDPA (flash)", "speedup": 2.5, "speedup_min": 2.4,
                 "speedup_max": 2.6, "peak_mem_MiB": 500.0},
                {"kind": "gqa_decode", "variant": "GQA-4", "context": 512, "speedup_vs_MHA": 1.7,
                 "speedup_range": "1.6–1.8"},
                {"kind": "gqa_decode", "variant": "GQA-4", "context": 4096, "speedup_vs_MHA": 2.9,
                 "speedup_range": "2.8–3.0"},
                {"kind": "quality", "variant": "Muon", "vs_baseline": -0.05, "vs_baseline_sd": 0.01,
                 "seeds": 3, "verdict": "lower"}]}


def test_recommend_bad_input():
    for kw, field in (({"seq_len": 0}, "seq_len"), ({"device": "tpu"}, "device"), ({"goal": "fun"}, "goal")):
        args = {"seq_len": 512, "device": "cpu", "goal": "speed", **kw}
        with pytest.raises(ValueError, match=field):
            decision.recommend(args["seq_len"], args["device"], args["goal"], results=[])


def test_recommend_analytic_is_sorted_and_labelled():
    r = decision.recommend(4096, "cpu", "speed", results=[])
    vals = [p.value for p in r.steps]
    assert vals == sorted(vals, reverse=True) and all(v >= decision.GAIN_THRESHOLD for v in vals)
    assert all(not p.measured and p.source.startswith("analytic") for p in r.steps + r.no_gain)
    w = next(p for p in r.steps + r.no_gain if p.key == "window")
    assert w.value == pytest.approx(decision.analytic_payoff("window", 4096, "cpu", "speed"))
    assert "Sliding Window" in r.seed[0]  # the seed's long-T branch
    assert "GQA" in decision.recommend(128, "cpu", "speed", results=[]).seed[0]
    # a window as long as T is no window at all
    r = decision.recommend(256, "cpu", "speed", window=256, results=[])
    assert next(p for p in r.no_gain if p.key == "window").value is None


def test_recommend_uses_measurements_of_this_device_kind_near_this_T():
    docs = [_doc()]
    r = decision.recommend(512, "cuda", "speed", results=docs)
    assert [p.key for p in r.steps[:2]] == ["flash", "gqa"]
    assert r.steps[0].measured and "GPU-X" in r.steps[0].source and r.steps[0].value == 2.5
    mem = decision.recommend(512, "cuda", "memory", results=docs)
    assert mem.steps[0].key == "flash" and mem.steps[0].value == pytest.approx(2.0)
    dec = decision.recommend(4096, "cuda", "decoding", results=docs)
    g = next(p for p in dec.steps if p.key == "gqa")
    assert g.measured and g.value == 2.9 and "4096" in g.source
    far = decision.recommend(8192, "cuda", "speed", results=docs)  # measured at T=512: too far
    assert not any(p.measured for p in far.steps + far.no_gain)
    cpu = decision.recommend(512, "cpu", "speed", results=docs)  # a GPU file says nothing of the CPU
    assert not any(p.measured for p in cpu.steps + cpu.no_gain)
    assert any("Muon" in q and "-0.050" in q for q in r.quality)


# ---- the widgets, driven by their values ------------------------------------------------------
def test_cost_explorer_callbacks():
    ex = widgets.cost_explorer(results=[], device="cpu")
    n0, img0 = ex.n_updates, ex.image.value
    assert isinstance(ex.result, explore.CostPrediction) and ex.error is None
    ex.controls["seq_len"].value = 2048
    assert ex.result.settings.seq_len == 2048 and "T=2048" in ex.readout.value
    assert ex.n_updates == n0 + 1 and ex.image.value != img0
    ex.controls["n_kv_head"].value = 4
    assert "GQA-4" in ex.result.config
    ex.controls["attn_backend"].value = "eager"
    assert ex.result.memory["activations_by_group"]["attention scores/probs"] > 0
    ex.controls["window"].value = 256
    assert ex.result.settings.window == 256
    ex.controls["mlp"].value = "swiglu"
    ex.controls["mlp_ratio"].value = 3.0
    assert "swiglu x3" in ex.result.config
    ex.controls["dtype"].value = "float32"
    assert ex.result.memory["activations_by_group"]["mlp"] == explore.predict_memory(
        ex.settings().config(), 4, 2048, "float32")["activations_by_group"]["mlp"]
    ex.controls["preset"].value = "tiny"  # K/V head choices follow the model's heads
    assert [v for _, v in ex.controls["n_kv_head"].options] == [4, 2, 1]
    assert ex.controls["n_kv_head"].value == 4 and ex.result.settings.preset == "tiny"


def test_cost_explorer_shows_checkpointing_and_accumulation():
    ex = widgets.cost_explorer(results=[], device="cpu", seq_len=1024, batch_size=4)
    plain = ex.result.memory
    ex.controls["grad_accum"].value = 4  # micro-batches of one sequence: a quarter of the activations
    acc = ex.result.memory
    assert acc["by_kind"]["activations"] == explore.predict_memory(ex.settings().config(), 1, 1024, ex.settings().dtype
                                                                    )["by_kind"]["activations"]
    assert acc["peak"] < plain["peak"] and "in 4 micro-batches" in ex.readout.value
    ex.controls["checkpoint"].value = "block"
    assert ex.result.memory["by_kind"]["activations"] < acc["by_kind"]["activations"]
    assert "checkpoint block" in ex.result.config and "predicted peak" in ex.readout.value
    ex.controls["grad_accum"].value = 8  # does not divide B=4: said in the readout, not raised
    assert "grad_accum=8 does not divide batch_size=4" in ex.readout.value


def test_budget_explorer_moves_the_plan_with_the_budget():
    cpu = ceilings.Ceilings(device="cpu", device_name="test cpu", dtype="float32", peak_flops=1.4e11,
                            bandwidth=2e10, overhead_s=5e-6)
    planner = memory_budget.Planner(get_config("gpt2_mini"), 256, 2048, {"float32": cpu})
    ex = widgets.budget_explorer(planner, budget_mib=2048)
    loose = ex.result.best
    assert loose.peak_bytes <= 2048 * 2**20 and "tokens/s" in ex.readout.value and ex.image.value
    ex.controls["budget_mib"].value = max(o for o in ex.controls["budget_mib"].options if o <= 700)
    tight = ex.result.best
    assert tight.peak_bytes <= 700 * 2**20 < loose.peak_bytes and tight.tokens_per_s < loose.tokens_per_s
    assert tight.describe() in ex.readout.value
    ex.typed_value("budget_mib", 100)  # below the floor: the readout says so and gives the floor
    assert "below the floor" in ex.readout.value and f"{planner.floor_bytes:,}" in ex.readout.value


@pytest.mark.slow
def test_cost_explorer_measure_now_calibrates():
    ex = widgets.cost_explorer(preset="tiny", seq_len=32, batch_size=1, dtype="float32",
                               results=[], device="cpu")
    assert ex.result.step_ms is None  # a CPU nobody measured: no ceilings, no time
    m = ex.measure()
    assert m is not None and m.step_ms > 0 and m.seconds > 0
    assert m.before.step_ms is None and "no time shown before this run" in ex.measured.value
    # the ceilings were timed in the same rounds as the step: the model's error is a same-round ratio
    row = m.check
    assert row["rounds"] == explore.EXPLORER_ROUNDS and row["measured_ms"] == pytest.approx(m.step_ms)
    assert row["measured_ms_min"] <= m.step_ms <= row["measured_ms_max"] and m.range_ms == (
        row["measured_ms_min"], row["measured_ms_max"])
    assert row["roofline_error_min"] <= row["roofline_error"] <= row["roofline_error_max"]
    assert ex.session.live_ceilings["float32"] is m.ceilings and m.ceilings.rounds == explore.EXPLORER_ROUNDS
    assert "on the ceilings timed in the same rounds, said" in ex.measured.value
    assert explore.error_words(row) in ex.measured.value
    assert "this measurement took" in ex.measured.value and "the plan said" in ex.measured.value
    assert ex.plan_note.value == ""  # the plan was carried out: its note is gone
    assert ex.progress.value == ex.progress.max and ex.progress.bar_style == "success"
    assert "ms/step" in ex.measured.value and not ex.button.disabled
    assert sum(m.time_share.values()) == pytest.approx(1.0)
    assert m.memory["by_kind"]["parameters"] == 4 * GPT(get_config("tiny")).num_params()
    # the prediction for what was measured now comes from the measurement
    assert "measured now" in ex.result.basis
    assert ex.result.step_ms == pytest.approx(m.step_ms, rel=0.25)
    # ... and every explorer of this session on this device and dtype uses it
    other = widgets.cost_explorer(preset="tiny", seq_len=64, batch_size=1, dtype="float32",
                                  session=ex.session)
    assert other.result.step_ms is not None and other.result.step_ms > 0
    # a prediction the measurement cannot scale says how far the model was off on this machine
    far = widgets.cost_explorer(preset="gpt2_mini", seq_len=64, batch_size=1, dtype="float32", session=ex.session)
    assert "not scaled" in far.result.basis and explore.error_words(row) in far.result.basis
    # ... and its plan's time estimate is corrected by how far the model was off here
    plan = far.plan()
    factor = row["measured_ms"] / row["roofline_ms"]
    assert plan.step_ms == pytest.approx(far.result.step_ms * factor) and f"x{factor:.2f}" in plan.basis
    assert widgets.cost_explorer(preset="tiny", seq_len=64, results=[], device="cpu").result.step_ms is None


def test_measure_failure_is_shown_not_raised(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("out of memory (pretend)")
    monkeypatch.setattr(explore, "GPT", boom)
    ex = widgets.cost_explorer(preset="tiny", seq_len=32, results=[], device="cpu")
    assert ex.measure() is None
    assert "out of memory" in ex.measured.value and ex.progress.bar_style == "danger"
    assert not ex.button.disabled


def test_value_error_lands_in_the_readout():
    class Broken(widgets.Explorer):
        def compute(self, x):
            if x > 1:
                raise ValueError("x=2 is too big")
            return x

        def figure(self, r):
            from matplotlib.figure import Figure
            return Figure(figsize=(1, 1))

    b = Broken({"x": W_.IntSlider(value=1, min=0, max=3)})
    assert b.error is None and b.result == 1
    b.controls["x"].value = 2
    assert b.error == "x=2 is too big" and "too big" in b.readout.value and b.result == 1


def test_decision_tree_callbacks():
    t = widgets.decision_tree(seq_len=512, device="cuda", goal="speed", results=[_doc()])
    assert t.result.steps[0].key == "flash" and "measured" in t.readout.value
    img = t.image.value
    t.controls["goal"].value = "decoding"
    assert t.result.goal == "decoding" and "for decoding at T=512" in t.readout.value
    assert t.image.value != img
    t.controls["device"].value = "cpu"
    assert not any(p.measured for p in t.result.steps)
    t.controls["seq_len"].value = 4096
    t.controls["window"].value = 512
    w = next(p for p in t.result.steps + t.result.no_gain if p.key == "window")
    assert "W=512" in w.title and t.result.seq_len == 4096


@pytest.mark.slow
def test_gqa_explorer_callbacks_and_measure():
    g = widgets.gqa_explorer(results=[], measure_config=get_config("gpt2_mini", n_layer=1),
                             measure_tokens=2)
    g.controls["n_kv_head"].value = 1
    assert g.result["label"] == "MQA" and g.result["cache_ratio"] == pytest.approx(1 / 12)
    g.controls["context"].value = 128
    g.controls["dtype"].value = "float32"
    assert g.result["cache_bytes"] == 2 * 12 * 1 * 1 * 128 * 64 * 4
    assert "MQA" in g.readout.value
    rows = g.measure()
    assert [r.n_kv_head for r in rows] == [12, 1] and all(r.ok for r in rows)
    assert rows[1].cache_bytes * 12 == rows[0].cache_bytes
    assert "tokens/s" in g.measured.value and g.progress.bar_style == "success"


def test_gqa_batch_moves_the_decode_estimate():
    g = widgets.gqa_explorer(results=[], context=16384, batch_size=1)
    one, img = g.result, g.image.value
    g.controls["batch_size"].value = 32
    assert g.result["decode_speedup_analytic"] > one["decode_speedup_analytic"]
    assert g.result["bytes_per_token"] < one["bytes_per_token"] and g.image.value != img
    assert f"{g.result['decode_speedup_analytic']:.2f}x MHA" in g.readout.value
    assert f"{one['decode_speedup_analytic']:.2f}x MHA" not in g.readout.value


def test_measure_decode_shows_its_plan_first(monkeypatch):
    """Like Measure now: the first press shows the predicted time and memory and asks to
    confirm; a settings change drops the plan; the second press measures as planned."""
    calls = []
    monkeypatch.setattr(widgets, "measure_decode", lambda *a, **k: calls.append(k) or [])
    g = widgets.gqa_explorer(results=[], measure_config=get_config("gpt2_mini", n_layer=1), measure_tokens=2)
    g.press()
    assert calls == [] and g.pending is not None and g.progress.layout.visibility == "hidden"
    assert "before measuring" in g.plan_note.value and "Measuring takes ~" in g.plan_note.value
    assert g.button.description == f"Measure (~{explore.seconds_text(g.pending.seconds)})"
    assert "tl-confirm" in g.button._dom_classes and g.pending.message() in g.button.tooltip
    g.controls["batch_size"].value = 4  # the plan was for other settings
    assert g.pending is None and g.plan_note.value == "" and g.button.description == "Measure decode"
    g.press()
    plan = g.pending
    assert plan.batch_size == 4 and calls == []
    g.press()
    assert len(calls) == 1 and calls[0]["batch_size"] == 4 and calls[0]["kv_heads"] == [12, 4]
    assert calls[0]["rounds"] == plan.rounds and calls[0]["min_run_time"] == plan.min_run_time
    assert g.plan_note.value == "" and f"the plan said ~{explore.seconds_text(plan.seconds)}" in g.measured.value
    assert g.button.description == "Measure decode" and not g.button.disabled


def test_flash_explorer_callbacks():
    f = widgets.flash_explorer(results=[])
    f.controls["seq_len"].value = 4096
    f.controls["batch_size"].value = 2
    # exact: the probabilities (B, H, T, T) fp32 and the bool mask, as autograd keeps them
    assert f.result["eager_attention_bytes_per_layer"] == 2 * 12 * 4096 * 4096 * 4 + 4096 * 4096
    assert f.result["sdpa_attention_bytes_per_layer"] == 4 * 2 * 12 * 4096  # one fp32 logsumexp per query
    r1 = f.result["attention_ratio"]
    f.controls["seq_len"].value = 8192
    assert f.result["attention_ratio"] == pytest.approx(2 * r1)  # T^2 / T


def test_window_explorer_callbacks():
    w = widgets.window_explorer(window=256, seq_len=2048)
    assert w.result["window"] == 256 and w.result["flop_ratio"] > 1
    w.controls["window"].value = 0  # "full"
    assert w.result["window"] is None and w.result["flop_ratio"] == 1.0
    assert "full causal" in w.readout.value
    w.controls["window"].value = 64
    w.controls["n_layer"].value = 4
    assert w.result["receptive_field"] == 4 * 63 + 1
    assert w.result["mask"].shape == (64, 64)


# ---- "Measure now": predicted first, reduced when too long, refused when it cannot fit ----------
def test_plan_measures_small_steps_as_they_are():
    s = explore.ExplorerSettings(preset="tiny", seq_len=32, batch_size=1, dtype="float32")
    p = explore.plan_measurement(s, available=2**34, ceilings=_fast())
    assert p.action == "measure" and p.measured == s and p.scale == 1.0 and p.seconds < 1
    assert "Measuring it takes" in p.message()
    unknown = explore.plan_measurement(s, available=2**34)  # no ceilings at all: time unknown, said so
    assert unknown.step_ms is None and unknown.seconds is None and "time unknown" in unknown.message()


def _fast(peak=1e12, bw=5e10):
    return ceilings.Ceilings(device="cpu", device_name="test-cpu", dtype="float32", peak_flops=peak,
                             bandwidth=bw, overhead_s=1e-6)


def test_a_plan_before_any_ceilings_predicts_with_quick_ones_in_the_same_model():
    session = explore.ExplorerSession("cpu", [])
    s = explore.ExplorerSettings(preset="tiny", seq_len=32, batch_size=1, dtype="float32")
    p = session.plan(s)
    assert session.ceilings("float32") is None and session.quick_ceilings("float32").source == "quick"
    assert p.step_ms > 0 and "quick" in p.basis and "roofline model" in p.basis


def test_plan_reduces_a_long_measurement_and_scales_by_the_cost_model():
    s = explore.ExplorerSettings(preset="gpt2_small", seq_len=512, batch_size=4, dtype="float32")
    c = _fast()  # 1 TFLOP/s matmul peak, 50 GB/s: the seed's step is too long to measure, B=1 is not
    p = explore.plan_measurement(s, available=2**36, budget_s=20, ceilings=c)
    assert p.action == "reduced" and p.seconds <= 20
    m = p.measured
    assert (m.batch_size, m.seq_len) < (s.batch_size, s.seq_len) and m.preset == s.preset
    # the one model predicts both sizes: the roofline on the ceilings given
    assert p.step_ms == pytest.approx(roofline.predict_step(s.config(), 4, 512, c, "float32").total_ms)
    m_ms = explore.predict_step_ms(m, ceilings=c)[0]
    assert p.scale == pytest.approx(p.step_ms / m_ms) and p.seconds == pytest.approx(explore.measurement_seconds(m_ms))
    assert "above the 20 s bound" in p.message() and "calibrate the cost model" in p.message()
    # the largest reduction that fits: the next larger candidate would not have
    cands = explore.reduced_sizes(s)
    i = cands.index(m)
    if i > 0:
        bigger = explore.predict_step_ms(cands[i - 1], ceilings=c)[0]
        assert explore.measurement_seconds(bigger) > 20


def test_plan_refuses_what_cannot_fit_in_memory():
    s = explore.ExplorerSettings(preset="gpt2_small", seq_len=4096, batch_size=64, dtype="float32")
    p = explore.plan_measurement(s, available=8 * 2**30, ceilings=_fast())
    assert p.action == "refuse" and p.memory_bytes > 8 * 2**30 and "Not measured" in p.message()
    with pytest.raises(ValueError, match="budget_s"):
        explore.plan_measurement(s, budget_s=0)


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_measure_now_measures_the_ceilings_past_the_caches_at_every_profile(monkeypatch, profile):
    """The smoke profile's roofline sizes (a 1 MiB copy, 64 x 64 matmuls, no fresh fill) measure
    the caches: "Measure now" predicted the tiny model's step from them at a third of its time.
    The explorer's probes reach past the caches, with a first-touch probe, whatever the profile."""
    monkeypatch.setenv("TUTORIAL_PROFILE", profile)
    session = explore.ExplorerSession("cpu", [])
    by = {}
    for p in session.ceiling_probes("float32"):
        by.setdefault(p.ceiling, []).append(p)
    assert {"peak_flops", "bandwidth", "fill_bandwidth", "first_touch_bandwidth", "overhead_s"} <= set(by)
    assert min(p.size["bytes"] for p in by["bandwidth"]) >= ceilings.FRESH_ALLOC_BYTES
    assert max(p.size["n"] for p in by["peak_flops"]) >= 1024


def test_the_plan_counts_every_round_of_the_measurement():
    """The plan's seconds follow the timer's own rule (a warm-up in the first round, blocks of
    min_run_time, one timed block per round) in every round, then the profile and the memory pass;
    the setup (the probes in every round, the model's build) is inside the budget."""
    from tutorial_lib.measure.timing import expected_seconds
    assert expected_seconds(0.001, 0.1) == pytest.approx(0.103)  # a fast call: the block time
    assert expected_seconds(2.0, 0.1, warmup=1) == pytest.approx(6.0)  # a slow one: 1 warm-up, 1 sizing, 1 timed
    assert expected_seconds(2.0, 0.1, warmup=1, min_measurements=3) == pytest.approx(10.0)  # time_fn's default
    ms = 500.0
    assert explore.measurement_seconds(ms) == pytest.approx(  # round 1: warm-up, sizing, timed; then sizing, timed
        1.5 + (explore.EXPLORER_ROUNDS - 1) * 1.0 + explore.AFTER_ROUNDS_STEPS * 0.5)
    s = explore.ExplorerSettings(preset="tiny", seq_len=128, batch_size=4, dtype="float32")
    quick = explore.plan_measurement(s, available=2**34, budget_s=5, setup_s=0.1, ceilings=_fast(1e11))
    assert quick.action == "measure" and quick.total_seconds == pytest.approx(0.1 + quick.seconds)
    assert quick.total_seconds < 5
    # the same step behind a long setup no longer fits: the setup counts against the budget
    slow = explore.plan_measurement(s, available=2**34, budget_s=5, setup_s=4.9, ceilings=_fast(1e11))
    assert slow.action == "reduced" and slow.seconds < quick.seconds


def test_a_plan_corrects_unscaled_step_times_by_the_last_measurement_here():
    s = explore.ExplorerSettings(preset="tiny", seq_len=64, batch_size=1, dtype="float32")
    plain = explore.plan_measurement(s, available=2**34, ceilings=_fast(1e11))
    slow = explore.plan_measurement(s, available=2**34, ceilings=_fast(1e11), correction=(3.0, "off here"))
    assert slow.step_ms == pytest.approx(3 * plain.step_ms) and "x3.00: off here" in slow.basis
    assert slow.seconds == pytest.approx(explore.measurement_seconds(3 * plain.step_ms))
    # a measurement that scales these settings already knows this machine: no second correction
    cal = explore.Calibration.from_measurement(s, 50.0, "cpu", "a CPU")
    c = ceilings.Ceilings(device="cpu", device_name="a CPU", dtype="float32", peak_flops=1e11, bandwidth=1e10,
                          overhead_s=1e-5)
    scaled = explore.plan_measurement(s, cal, available=2**34, ceilings=c, correction=(3.0, "off here"))
    assert scaled.step_ms == pytest.approx(explore.predict_cost(s, cal, "cpu", c).step_ms)
    assert "off here" not in scaled.basis


def test_reduced_sizes_shrink_batch_then_length_and_keep_the_window_below_t():
    s = explore.ExplorerSettings(preset="tiny", seq_len=256, batch_size=4, window=128, dtype="float32")
    sizes = [(c.batch_size, c.seq_len, c.window) for c in explore.reduced_sizes(s)]
    assert sizes == [(2, 256, 128), (1, 256, 128), (1, 128, 64), (1, 64, 32)]


@pytest.mark.slow
def test_measure_now_reduces_and_says_so(monkeypatch):
    ex = widgets.cost_explorer(preset="tiny", seq_len=128, batch_size=4, dtype="float32", results=[], device="cpu")
    ex.measure_budget_s = 1e-6  # anything is too long: the smallest size, scaled back
    m = ex.measure()
    assert m.plan.action == "reduced" and m.scale > 1 and "B=1, T=64" in m.measured.describe()
    # the requested size's time: the cost model calibrated on the reduced measurement
    cal = ex.session.calibrations["float32"]
    assert "B=1, T=64" in cal.label and cal.planned_for == ex.settings()
    want = explore.predict_cost(ex.settings(), cal, "cpu", ex.session.ceilings("float32"))
    assert m.step_ms == pytest.approx(want.step_ms) and "reduced size for these settings" in want.basis
    # the readout keeps the plan's promise: the requested settings, scaled from that measurement
    assert ex.result.step_ms == pytest.approx(m.step_ms) and "reduced size for these settings" in ex.result.basis
    assert "not scaled" not in ex.result.basis
    # other settings as far apart in tokens, which the plan was not made for, are not scaled by it
    far = ex.settings().replace(n_kv_head=2)
    assert "not scaled" in explore.predict_cost(far, cal, "cpu", ex.session.ceilings("float32")).basis
    assert "scaled to these settings" in ex.measured.value and "reduced size" in ex.measured.value


def test_measure_now_refuses_clearly(monkeypatch):
    monkeypatch.setattr(explore, "available_bytes", lambda device: 1024)
    ex = widgets.cost_explorer(preset="tiny", seq_len=32, batch_size=1, dtype="float32", results=[], device="cpu")
    assert ex.measure() is None and "Not measured" in ex.measured.value


def test_quality_notes_use_training_runs_recorded_on_another_device():
    """A validation loss does not depend on the device it was trained on: the H200 Muon and SwiGLU
    runs under results/train_h200_* answer the quality question on a CPU too, instead of a
    "no quality run on record" that reads as if no Muon run existed."""
    from tutorial_lib.measure import records
    runs = sorted(records.results_dir().glob("train_h200_*/train_gpu_gelu4_muon.json"))
    if not runs:
        pytest.skip("no recorded H200 training runs in results/")
    for device in ("cpu", "cuda"):
        notes = decision.quality_notes([], device, directory=records.results_dir())
        assert any(n.startswith("Muon: recorded in train_h200_") and "NVIDIA H200" in n for n in notes), notes
        assert not any("no quality run on record" in n for n in notes), notes


def test_measure_now_shows_the_plan_before_measuring(monkeypatch):
    """The first press shows predicted time and memory and asks to confirm; nothing is measured
    until the second press, and a settings change drops the plan."""
    calls = []
    monkeypatch.setattr(explore, "GPT", lambda *a, **k: calls.append(a) or 1 / 0)
    ex = widgets.cost_explorer(results=[], device="cpu")  # the default: gpt2_small, B=4, T=512
    assert ex.progress.layout.visibility == "hidden"  # no empty bar stored in a headless run
    ex.press()
    assert calls == [] and ex.pending is not None and ex.measurement is None
    assert "before measuring" in ex.plan_note.value and "predicted memory" in ex.plan_note.value
    assert "B=4, T=512" in ex.plan_note.value
    # the estimate counts everything the press will do: the ceilings first (none yet), the model
    assert ex.pending.setup_s > 0 and "ceilings" in ex.plan_note.value
    assert ex.pending.total_seconds == pytest.approx(ex.pending.setup_s + ex.pending.seconds)
    assert ex.button.description == f"Measure (~{explore.seconds_text(ex.pending.total_seconds)})"
    assert "tl-confirm" in ex.button._dom_classes and ex.button.description.startswith("Measure")
    ex.controls["batch_size"].value = 2  # the plan was for other settings
    assert ex.pending is None and ex.plan_note.value == "" and ex.button.description == "Measure now"
    assert "tl-confirm" not in ex.button._dom_classes


def test_settings_that_cannot_fit_disable_measure_now(monkeypatch):
    monkeypatch.setattr(explore, "available_bytes", lambda device: 2**30)
    ex = widgets.cost_explorer(preset="tiny", seq_len=64, batch_size=1, dtype="float32", results=[], device="cpu")
    assert not ex.button.disabled and ex.plan_note.value == ""
    ex.controls["preset"].value = "gpt2_small"
    ex.controls["seq_len"].value = 16384
    assert ex.button.disabled and "Not measurable here" in ex.plan_note.value and "1.0 GiB" in ex.plan_note.value
    ex.controls["preset"].value = "tiny"
    ex.controls["seq_len"].value = 64
    assert not ex.button.disabled and ex.plan_note.value == ""


def test_stale_measured_text_clears_when_the_settings_change():
    ex = widgets.cost_explorer(preset="tiny", seq_len=64, batch_size=1, dtype="float32", results=[], device="cpu")
    ex.measurement = types.SimpleNamespace(settings=ex.settings(), time_share={}, memory=ex.result.memory)
    ex.measured.value = "measured on here: 1.0 ms/step"
    ex.update()  # the same settings: the text stays
    assert "ms/step" in ex.measured.value
    ex.controls["batch_size"].value = 2
    assert ex.measured.value == ""


def test_typed_values_join_the_slider_or_are_refused():
    ex = widgets.cost_explorer(preset="tiny", seq_len=64, batch_size=1, dtype="float32", results=[], device="cpu")
    ex.texts["seq_len"].value = 100  # between two steps: added to the slider
    assert ex.controls["seq_len"].value == 100 and ex.result.settings.seq_len == 100
    assert 100 in ex.controls["seq_len"].options and "added" in ex.note.value
    ex.texts["seq_len"].value = 0  # out of range: refused, the slider stays
    assert ex.controls["seq_len"].value == 100 and "out of range" in ex.note.value
    assert ex.texts["seq_len"].value == 100
    ex.controls["seq_len"].value = 256  # a slider move shows in the box
    assert ex.texts["seq_len"].value == 256
    w = widgets.window_explorer()
    w.texts["window"].value = 100
    assert w.result["window"] == 100 and ("100", 100) in w.controls["window"].options
    w.texts["window"].value = 0  # 0 is "full" on the window slider
    assert w.result["window"] is None


def test_a_typed_value_redraws_once_at_that_value():
    """Adding a step to a slider resets it to its first step for a moment: that interim value is
    never computed or drawn (the learner saw T=32 flash up before the typed T)."""
    for ex, name, typed in ((widgets.window_explorer(), "seq_len", 3000),
                            (widgets.flash_explorer(results=[]), "seq_len", 1500),
                            (widgets.cost_explorer(preset="tiny", seq_len=64, batch_size=1, dtype="float32",
                                                   results=[], device="cpu"), "seq_len", 48)):
        seen, compute = [], ex.compute
        ex.compute = lambda compute=compute, seen=seen, name=name, **v: seen.append(v[name]) or compute(**v)
        n, img = ex.n_updates, ex.image.value
        ex.texts[name].value = typed
        assert seen == [typed] and ex.n_updates == n + 1, (type(ex).__name__, seen)
        assert ex.image.value != img and ex.controls[name].value == typed
        ex.texts[name].value = typed  # the same value again: nothing to redraw
        assert ex.n_updates == n + 1


def test_a_displayed_explorer_carries_its_figure_for_stored_notebooks():
    import base64
    for ex in (widgets.window_explorer(), widgets.flash_explorer(results=[])):
        data = ex._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in data  # the live widget
        assert base64.b64decode(data["image/png"]) == ex.image.value  # the figure as stored
        assert "<img src='data:image/png;base64," in data["text/html"] and ex.readout.value in data["text/html"]
        assert "children=" not in data["text/plain"]


def test_memory_legend_does_not_hide_the_total():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    ex = widgets.cost_explorer(results=[], device="cpu")
    fig = ex.figure(ex.result)
    FigureCanvasAgg(fig).draw()
    ax2 = fig.axes[1]
    totals = [t for t in ax2.texts if t.get_text().strip().endswith("MiB")]
    legend = ax2.get_legend().get_window_extent()
    assert totals
    for t in totals:
        box = t.get_window_extent()
        assert not box.overlaps(legend), (box, legend)
        assert box.x1 <= ax2.get_window_extent().x1 + 1  # the label stays inside the axes
