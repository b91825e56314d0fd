"""The speed ladder (11): each lever against an independent reference (fp32 for bf16 autocast, the
unpadded model in float64 for the masked padding, AdamW's update written out in float64 for the
fused and foreach optimizers, the eager step for the compiled one), the ladder's bookkeeping (every
ratio from the same rounds, refused and failing rungs recorded while the ladder goes on), the CPU's
flags read from /proc/cpuinfo texts, the checker, and the wire-in (StepSettings in bench and train,
the suite's section and its report)."""
import dataclasses
import math
import statistics

import pytest
import torch

from tutorial_lib import runtime, speedups
from tutorial_lib.commands import bench as bench_cmd
from tutorial_lib.data import random_batch
from tutorial_lib.guide import suite
from tutorial_lib.guide.report import render_block
from tutorial_lib.lessons import speed_ladder as SL
from tutorial_lib.measure.timing import prepare_step
from tutorial_lib.model import GPT, GPTConfig, get_config
from tutorial_lib.runtime import NotAvailable, StepSettings
from tutorial_lib.sizes import PROFILES, get_sizes
from tutorial_lib.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")
SMOKE = get_sizes("smoke")
BF16_EPS = 2.0 ** -7  # bf16 keeps 8 significant bits: one rounding is off by at most half of this


# ---- bf16 autocast against fp32 -------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_bf16_autocast_forward_and_backward_match_fp32_within_bf16_tolerance(backend):
    """The same model and batch in fp32 and under bf16 autocast. Stated tolerances, in bf16's eps
    (2^-7): the loss (a mean over tokens, computed in fp32) within one eps, relative; every logit
    within 2 eps of the largest logit; every parameter's gradient within 4 eps in norm (each
    matmul rounds its inputs and output to bf16 once, and backward chains a few of them)."""
    torch.manual_seed(0)
    cfg = get_config("tiny", attn_backend=backend)
    model = GPT(cfg)
    idx, tgt = random_batch(cfg.vocab_size, 2, 16, "cpu", 0)
    logits, loss = model(idx, tgt)
    loss.backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, loss_low = model(idx, tgt)
    loss_low.backward()
    assert low.dtype == torch.bfloat16 and loss_low.dtype == torch.float32
    assert abs(loss_low.item() - loss.item()) <= BF16_EPS * loss.item()
    assert (low.float() - logits).abs().max() <= 2 * BF16_EPS * logits.abs().max()
    for (name, p), g in zip(model.named_parameters(), ref):
        assert p.grad.dtype == torch.float32, name  # weights and their gradients stay fp32
        assert (p.grad - g).norm() <= 4 * BF16_EPS * g.norm(), name
    d = SL.init_logit_difference(cfg, 2, 16, "cpu")  # the notebook's numbers, the same comparison
    assert d["max_abs_diff"] <= 2 * BF16_EPS * d["max_abs_logit"] and 0 < d["argmax_agree"] <= 1


def test_autocast_computes_matmuls_in_bf16_and_keeps_norms_and_the_loss_in_fp32():
    rows = SL.autocast_dtypes(get_config("tiny"), 1, 8, "cpu")
    by = {}
    for r in rows:
        by.setdefault((r["scope"], r["op"]), set()).add(r["dtype"])
    assert by[("attention.qkv", "mm")] == {"bfloat16"} and by[("lm_head", "mm")] == {"bfloat16"}
    assert by[("loss", "_log_softmax")] == {"float32"} and by[("loss", "nll_loss_forward")] == {"float32"}
    assert all(d == {"float32"} for (scope, _), d in by.items() if scope == "norm")
    assert by[("other", "add")] == {"float32"}  # the residual stream


# ---- the vocabulary padded to 50,304 ------------------------------------------------------------
def _padded_pair(changes, mask):
    """An unpadded float64 model and a padded one with the same weights in the real rows."""
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=97, block_size=32, name="t", **changes)
    torch.manual_seed(0)
    plain = GPT(cfg).double()
    padded = GPT(cfg.replace(pad_vocab_multiple=64, mask_vocab_padding=mask)).double()
    with torch.no_grad():
        for p, q in zip(padded.parameters(), plain.parameters()):
            p[tuple(slice(0, n) for n in q.shape)].copy_(q)
    return plain, padded


@pytest.mark.parametrize("changes", [{}, {"tie_embeddings": False}, {"loss_impl": "chunked", "loss_chunk": 5},
                                     {"loss_impl": "chunked_liger", "loss_chunk": 5}],
                         ids=["tied", "untied", "chunked", "liger"])
def test_masked_padding_gives_the_unpadded_loss_and_gradients_in_float64(changes):
    plain, padded = _padded_pair(changes, mask=True)
    g = torch.Generator().manual_seed(1)
    idx, tgt = torch.randint(0, 97, (2, 9), generator=g), torch.randint(0, 97, (2, 9), generator=g)
    tgt[0, :3] = -1  # ignored targets
    losses = []
    for m in (plain, padded):
        _, loss = m(idx, tgt)
        loss.backward()
        losses.append(loss.detach())
    assert padded.config.padded_vocab_size == 128
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-13, atol=0)
    for (name, p), q in zip(padded.named_parameters(), plain.parameters()):
        real = tuple(slice(0, n) for n in q.shape)
        torch.testing.assert_close(p.grad[real], q.grad, rtol=1e-10, atol=1e-14, msg=name)
        if p.shape != q.shape:  # the padded rows get no gradient at all
            assert p.grad[q.shape[0]:].abs().max() == 0, name


def test_without_the_mask_the_padded_logits_enter_the_softmax():
    """nanoGPT's padding: the loss rises by the mean over tokens of log(1 + sum(e^pad) / sum(e^real)),
    computed here from the padded model's own logits."""
    plain, padded = _padded_pair({}, mask=False)
    g = torch.Generator().manual_seed(2)
    idx, tgt = torch.randint(0, 97, (2, 9), generator=g), torch.randint(0, 97, (2, 9), generator=g)
    logits, loss = padded(idx, tgt)
    real, pad = logits[..., :97], logits[..., 97:]
    expected = torch.log1p(pad.exp().sum(-1) / real.exp().sum(-1)).mean()
    diff = loss - plain(idx, tgt)[1]
    assert diff > 0
    torch.testing.assert_close(diff, expected, rtol=1e-10, atol=1e-14)
    res = SL.padding_difference(get_config("tiny"), 2, 16, steps=2, device="cpu")
    assert res["masked_loss_diff"] == 0 and res["unmasked_loss_diff"] > 0
    assert res["padded_vocab"] == 50304 and 0 < res["mass_at_init"] < 1 and res["steps"] == 2


# ---- AdamW: for-loop, foreach, fused ----------------------------------------------------------------
def _adamw_by_hand(p, g, m, v, step, lr, betas, eps, wd):
    """Loshchilov & Hutter's AdamW, as torch.optim.AdamW documents it, one tensor at a time."""
    p = p * (1 - lr * wd)
    m = betas[0] * m + (1 - betas[0]) * g
    v = betas[1] * v + (1 - betas[1]) * g * g
    mhat, vhat = m / (1 - betas[0] ** step), v / (1 - betas[1] ** step)
    return p - lr * mhat / (vhat.sqrt() + eps), m, v


@pytest.mark.parametrize("impl", ["for-loop", "foreach", "fused"])
def test_every_adamw_implementation_equals_the_update_written_out_in_float64(impl):
    g = torch.Generator().manual_seed(0)
    shapes = [(5, 3), (7,), (2, 2, 4)]
    params = [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True) for s in shapes]
    ref = [p.detach().clone() for p in params]
    ms, vs = [torch.zeros_like(r) for r in ref], [torch.zeros_like(r) for r in ref]
    opt = runtime.make_adamw(params, "cpu", impl, lr=1e-2, weight_decay=0.1)
    assert (opt.defaults["foreach"], opt.defaults["fused"]) == {"for-loop": (False, None), "foreach": (True, None),
                                                                "fused": (None, True)}[impl]
    for step in range(1, 4):
        grads = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
        for p, gr in zip(params, grads):
            p.grad = gr.clone()
        opt.step()
        for i, gr in enumerate(grads):
            ref[i], ms[i], vs[i] = _adamw_by_hand(ref[i], gr, ms[i], vs[i], step, 1e-2, (0.9, 0.95), 1e-8, 0.1)
    for p, r in zip(params, ref):
        torch.testing.assert_close(p.detach(), r, rtol=1e-13, atol=1e-15)


# ---- torch.compile ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_compiled_training_step_equals_the_eager_step():
    """One AdamW step of the same model, eager and compiled (Inductor's C++ code on a CPU): the loss
    and every parameter after the update agree to fp32 rounding (fusion reorders the arithmetic)."""
    out = []
    small = GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=97, block_size=32, name="t")  # compiles faster
    for compile in (None, "default"):
        model, step, _, _ = prepare_step(small, 2, 16, "train", "cpu", "float32", compile=compile, adamw="for-loop")
        step()
        out.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*out):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


# ---- StepSettings: refused before any work --------------------------------------------------------------
def test_step_settings_name_the_field_and_refuse_what_the_device_cannot_run(monkeypatch):
    for bad, field in (({"dtype": "fp8"}, "dtype"), ({"tf32": 1}, "tf32"), ({"compile": "fast"}, "compile"),
                       ({"adamw": "loop"}, "adamw")):
        with pytest.raises(ValueError, match=f"StepSettings.{field}="):
            StepSettings(**bad)
    assert StepSettings().unavailable("cpu") is None
    why = StepSettings(tf32=True).unavailable("cpu")
    assert why.startswith("not available here: TF32")
    with pytest.raises(NotAvailable, match="TF32"):
        prepare_step("tiny", 2, 8, "train", "cpu", "float32", tf32=True)
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    assert "C++ compiler" in StepSettings(compile="default").unavailable("cpu")
    s = StepSettings(dtype="bfloat16", compile="default", adamw="fused")
    assert s.describe("cpu") == "bfloat16 autocast, compile (default), fused AdamW"
    assert StepSettings().describe("cpu") == "float32, for-loop AdamW"


def test_bench_and_train_take_the_step_settings(capsys, tmp_path):
    parser = __import__("argparse").ArgumentParser()
    bench_cmd.add_arguments(parser)
    args = parser.parse_args(["--preset", "tiny", "--adamw", "for-loop", "fused", "--pad-vocab", "64",
                              "--mask-vocab-padding", "--compile"])
    points = bench_cmd.grid(args, SMOKE)
    assert [p["adamw"] for p in points] == ["for-loop", "fused"] and args.compile == "default"
    assert all(p["config"].padded_vocab_size == 50304 and p["config"].mask_vocab_padding for p in points)
    assert bench_cmd.run(parser.parse_args(["--preset", "tiny", "--tf32", "--no-progress"])) == 2
    assert "not available here: TF32" in capsys.readouterr().err
    with pytest.raises(ValueError, match="TrainConfig.adamw='loop'"):
        TrainConfig(adamw="loop")
    with pytest.raises(ValueError, match="TrainConfig.compile='fast'"):
        TrainConfig(compile="fast")
    tc = TrainConfig(dtype="bfloat16", compile=True, adamw="foreach")
    assert tc.step_settings() == StepSettings(dtype="bfloat16", compile="default", adamw="foreach")


def test_train_in_float16_runs_with_a_grad_scaler_and_bf16_without():
    """float16 autocast trains through a GradScaler (loss scaled up, gradients unscaled before
    clipping, a step with inf gradients skipped, not counted as divergence); its losses stay near
    fp32's, like bf16's."""
    tc = TrainConfig(steps=3, batch_size=2, seq_len=16, eval_every=3, eval_batches=1, progress=False, device="cpu")
    runs = {dt: train("tiny", tc.replace(dtype=dt)) for dt in ("float32", "bfloat16", "float16")}
    for dt, h in runs.items():
        assert h.dtype == dt and not h.diverged and len(h.steps) == 3
        assert abs(h.final_val_loss - runs["float32"].final_val_loss) < 0.05, dt
    assert all(s in (1, 2, 3) for s in runs["float16"].skipped_steps)


# ---- the ladder --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ladder():
    return SL.measure_ladder(SMOKE.ladder, SMOKE.roofline, "cpu")


def test_the_ladder_records_every_rung_and_every_ratio_comes_from_the_same_rounds(ladder):
    rows = {r["key"]: r for r in ladder["rows"]}
    assert [r["key"] for r in ladder["rows"]] == [lv.key for lv in SL.levers(SMOKE.ladder)] + ["together"]
    assert rows["tf32"]["error"].startswith("not available here: TF32")
    assert "not run at this size profile" in rows["compile"]["error"]
    assert rows["fp32"]["dtype"] == "float32" and rows["bf16"]["dtype"] == "bfloat16"
    ran = [k for k, r in rows.items() if not r.get("error") and k != "together"]
    assert {"fp32", "bf16", "sdpa", "vocab", "fused", "foreach"} <= set(ran)
    for k in ran:
        r = rows[k]
        assert r["ms"] > 0 and r["rounds"] == len(r["times_ms"]) >= 1
        if k == "fp32":
            continue
        prev = rows[r["vs"]]
        ratios = [a / b for a, b in zip(prev["times_ms"], r["times_ms"])]
        assert r["speedup_prev"] == pytest.approx(statistics.median(ratios))
        assert r["speedup_prev_min"] == pytest.approx(min(ratios))
        base = [a / b for a, b in zip(rows["fp32"]["times_ms"], r["times_ms"])]
        assert r["speedup_base"] == pytest.approx(statistics.median(base))
        assert 0 < r["mfu"] and r["roofline_ms"] > 0 and r["predicted_speedup_prev"] > 0
    assert rows["sdpa"]["vs"] == "bf16" and rows["fp16"]["vs"] == rows["bf16"]["vs"] == "fp32"  # tf32 never ran
    assert rows["vocab"]["vs"] == "sdpa"  # compile did not run here: the next rung builds on the one below it
    assert rows["foreach"]["vs"] == "vocab" and rows["fused"]["vs"] == "vocab"
    assert rows["fused"]["step_settings"]["adamw"] == "fused" and rows["foreach"]["step_settings"]["adamw"] == "foreach"
    t = rows["together"]
    assert t["ms"] == rows["fused"]["ms"] and t["rungs_product"] == pytest.approx(
        math.prod(rows[k]["speedup_prev"] for k in ("bf16", "sdpa", "vocab", "fused")))
    assert set(ladder["peaks"]) == {rows[k]["dtype"] for k in ran}
    peaks = {r["dtype"]: r for r in SL.peak_rows(ladder)}
    assert set(peaks) == set(ladder["peaks"]) | set(ladder["quick"])  # a refused dtype: its quick probe, said so
    assert all(("quick" in r["measured"]) == (d not in ladder["peaks"]) for d, r in peaks.items())
    text = "\n".join(SL.summary_lines(ladder))
    assert "everything together" in text and "goal" not in text and "not available here: TF32" in text
    met = t["speedup_base_min"] >= 1.2
    assert ("the 1.2x goal: met in every round" in "\n".join(SL.summary_lines(ladder, goal=1.2))) == met


def test_a_rung_that_fails_is_recorded_and_the_ladder_goes_on(monkeypatch):
    """flex attention has no backward on a CPU: its rung fails in its first step, and the rungs above
    it are built without it."""
    real = SL.levers

    def with_flex(sizes):
        out = [lv for lv in real(sizes) if lv.key in ("fp32", "sdpa", "fused")]
        out.insert(1, SL.Lever("flex", "+ flex attention", model={"attn_backend": "flex"}))
        return out
    monkeypatch.setattr(SL, "levers", with_flex)
    res = SL.measure_ladder(SMOKE.ladder, SMOKE.roofline, "cpu")
    rows = {r["key"]: r for r in res["rows"]}
    assert rows["flex"]["error"] and "ms" not in rows["flex"]
    assert rows["sdpa"]["vs"] == "fp32" and rows["sdpa"]["model_fields"]["attn_backend"] == "sdpa"
    assert rows["fused"]["ms"] > 0 and rows["together"]["speedup_base"] > 0


def test_a_dtype_without_matmul_kernels_is_refused_with_the_probe_that_shows_it(monkeypatch):
    monkeypatch.setattr(SL, "onednn_support", lambda dtype: dtype != "float16")
    quick = {"float32": 1e11, "float16": 1e9}
    why = SL._refusal(StepSettings(dtype="float16"), torch.device("cpu"), SMOKE.ladder, quick)
    assert why.startswith("not available here: this cpu has no float16 matmul kernels") and "1.00 GFLOP/s" in why
    assert SL._refusal(StepSettings(dtype="float32"), torch.device("cpu"), SMOKE.ladder, quick) is None


def test_compile_pays_back_after_compile_time_over_the_time_saved():
    out = SL.compile_payback(first_call_s=31.0, compiled_ms=[1000, 900, 1100], eager_ms=[1500, 1400, 1400])
    assert out["compile_s"] == pytest.approx(30.0)  # the first call less one steady step
    assert out["saved_ms_per_step"] == pytest.approx(500.0)  # median of 500, 500, 300
    assert out["payback_steps"] == pytest.approx(60.0)
    assert out["payback_steps_min"] == pytest.approx(60.0) and out["payback_steps_max"] == pytest.approx(100.0)
    slower = SL.compile_payback(5.0, [1200, 1300], [1000, 1100])
    assert slower["payback_steps"] is None and slower["saved_ms_per_step"] < 0


def test_the_waterfall_and_the_table_draw_what_was_measured(ladder):
    fig = SL.waterfall_figure(ladder)
    left, right = fig.axes[:2]
    ran = [r["rung"] for r in ladder["rows"] if not r.get("error") and not r.get("beside")]
    assert [t.get_text() for t in left.get_xticklabels()] == ran
    assert [t.get_text() for t in right.get_xticklabels()][-1] == "everything together"
    assert len(right.patches) == len(SL.PUBLISHED_A100) + 1
    assert all(t.get_fontsize() >= 8 for ax in (left, right) for t in ax.texts)
    table = SL.ladder_table(ladder["rows"])
    assert [r["rung"] for r in table] == [r["rung"] for r in ladder["rows"]]
    assert next(r for r in table if r["rung"] == "+ TF32 matmuls")["dtype"] == "not run"
    bf16 = next(r for r in ladder["rows"] if r["key"] == "bf16")
    shown = next(r for r in table if r["rung"] == "+ bf16 autocast")["x prev"]
    assert shown == speedups.Speedup(bf16["speedup_prev"], bf16["speedup_prev_min"], bf16["speedup_prev_max"],
                                     bf16["rounds"]).text()  # the one printed form, with its verdict


def test_published_ladder_is_karpathys_figures_with_their_ratios():
    rows = SL.published_rows()
    assert [r["ms_per_step"] for r in rows] == [1000, 333, 300, 130, 96, 93, 90]
    assert rows[0]["claimed_speedup"] is None and rows[1]["claimed_speedup"] == pytest.approx(1000 / 333)
    assert rows[-1]["vs_fp32"] == pytest.approx(1000 / 90)


# ---- precision facts and the CPU's flags ------------------------------------------------------------------
def test_precision_rows_are_the_formats_bits():
    rows = {r["dtype"]: r for r in SL.precision_rows()}
    assert (rows["float32"]["exponent_bits"], rows["float32"]["mantissa_bits"]) == (8, 23)
    assert (rows["bfloat16"]["exponent_bits"], rows["bfloat16"]["mantissa_bits"]) == (8, 7)
    assert (rows["float16"]["exponent_bits"], rows["float16"]["mantissa_bits"]) == (5, 10)
    assert (rows["tf32"]["exponent_bits"], rows["tf32"]["mantissa_bits"], rows["tf32"]["bits"]) == (8, 10, 19)
    assert rows["float16"]["max"] == 65504 and rows["float16"]["smallest_subnormal"] == 2.0 ** -24
    assert rows["bfloat16"]["smallest_normal"] == rows["float32"]["smallest_normal"] == 2.0 ** -126
    assert rows["bfloat16"]["eps"] == BF16_EPS


CPUINFO = {
    "AMX Xeon": ("vendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
                 "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8 avx512_fp16\n"),
    "EPYC": ("vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu avx2 avx512f avx512_bf16 "
             "avx512_vnni\n"),
    "AVX2": "vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7742\nflags\t\t: fpu avx2 fma f16c\n",
    "Arm": "processor\t: 0\nFeatures\t: fp asimd fphp asimdhp bf16 i8mm sve\nCPU implementer\t: 0x41\n",
}


@pytest.mark.parametrize("name,kind,fp16", [("AMX Xeon", "AMX", True), ("EPYC", "bf16 dot-product instructions", False),
                                            ("AVX2", "no bf16 instructions", False),
                                            ("Arm", "bf16 dot-product instructions", True)])
def test_the_cpus_flags_say_which_kind_of_cpu_it_is(name, kind, fp16):
    info = SL.cpu_precision(CPUINFO[name])
    assert info["kind"] == kind
    assert any(u["dtype"] == "float16" for u in info["units"]) == fp16
    assert ("no fp16 instructions" in info["summary"]) != fp16
    assert SL.cpu_precision("")["kind"] == "no bf16 instructions"


def test_fp16_needs_a_loss_scale_and_bf16_does_not():
    rows = {(r["dtype"], r["loss_scale"]): r for r in SL.gradient_underflow(get_config("tiny"), 2, 16, "cpu")}
    assert rows[("bfloat16", 1.0)]["to_zero"] == 0 and rows[("bfloat16", 1.0)]["subnormal"] == 0
    small = rows[("float16", 1.0)]
    scaled = rows[("float16", 2.0 ** 16)]
    assert small["subnormal"] + small["to_zero"] > 0.5  # most of this step's gradients are below fp16's normals
    assert scaled["subnormal"] + scaled["to_zero"] < 0.01 and scaled["overflow"] == 0
    assert small["smallest"] < 2.0 ** -24 < small["largest"]


def test_the_chunked_loss_under_autocast_keeps_little_and_matches_the_full_loss():
    rows = {r["variant"]: r for r in SL.chunked_loss_under_autocast(get_config("tiny"), 2, 16, "cpu", chunk=8)}
    full, chunked = rows["full logits, bfloat16"], rows["chunked, bfloat16"]
    assert abs(chunked["loss"] - full["loss"]) <= BF16_EPS * full["loss"]
    assert abs(full["vs_fp32"]) <= BF16_EPS * full["loss"]
    assert chunked["head_loss_saved_bytes"] < full["head_loss_saved_bytes"] / 100


# ---- the exercise ------------------------------------------------------------------------------------
def test_rung_ceiling_checker_passes_amdahl_and_names_the_slips():
    assert SL.check_rung_ceiling(lambda t, s, r: t * (1 - s) + t * s / r).passed
    assert "whole step" in SL.check_rung_ceiling(lambda t, s, r: t / r).message
    assert "slower" in SL.check_rung_ceiling(lambda t, s, r: t * ((1 - s) + s * r)).message
    def stub(t, s, r):
        raise NotImplementedError
    assert "not implemented" in SL.check_rung_ceiling(stub).message
    assert "ms" in SL.check_rung_ceiling(lambda t, s, r: "fast").message


# ---- wire-in: sizes, the suite's section, the guide --------------------------------------------------------
def test_sizes_measure_the_issues_setting_on_cpu_and_the_seeds_on_gpu():
    cpu, gpu = PROFILES["cpu"].ladder, PROFILES["gpu"].ladder
    assert (cpu.preset, cpu.batch, cpu.seq_len, cpu.compile) == ("gpt2_mini", 4, 256, True)
    assert (gpu.preset, gpu.batch, gpu.seq_len) == ("gpt2_small", 4, 512)
    assert all(m in runtime.COMPILE_MODES for p in PROFILES.values() for m in p.ladder.compile_modes)
    assert list(suite.SECTIONS).index("speed_ladder") == list(suite.SECTIONS).index("breakdown") + 1


def test_the_suite_records_the_ladder_and_the_guide_renders_it(tmp_path):
    doc = suite.run_suite("guide", profile="smoke", device="cpu", only=["speed_ladder"], progress=False)
    rows = [r for r in doc["rows"] if r["kind"] == "speed_ladder"]
    assert rows[0]["variant"] == "fp32 eager (baseline)" and rows[-1]["variant"] == "everything together"
    assert "error" not in doc["sections"]["speed_ladder"]
    assert any(r["variant"] == "+ TF32 matmuls" and r["error"].startswith("not available here") for r in rows)
    assert {r["dtype"] for r in doc["rows"] if r["kind"] == "speed_ladder.peaks"} >= {"float32", "bfloat16"}
    assert doc["sections"]["speed_ladder"]["sizes"]["precision"]
    text = render_block("speed_ladder", [doc])
    assert "| fp32 eager (baseline) |" in text and "not available here" in text
    published = render_block("analytic.published_ladder", [])
    assert "| + fused AdamW | 90.0 |" in published and "Published figures" in published


def test_step_settings_travel_with_measured_rows():
    from tutorial_lib.measure.timing import measure_step
    r = measure_step("tiny", 2, 8, device="cpu", dtype="bfloat16", min_run_time=0.01, warmup=1, adamw="foreach")
    assert r.step_settings == {"dtype": "bfloat16", "tf32": False, "compile": None, "adamw": "foreach"}
    assert dataclasses.asdict(r)["compile"] is False
    cfg = get_config("tiny", pad_vocab_multiple=64, mask_vocab_padding=True)
    assert cfg.describe().endswith("vocab 50,304 (masked)")
    with pytest.raises(ValueError, match="GPTConfig.mask_vocab_padding=1"):
        get_config("tiny", mask_vocab_padding=1)


def test_the_explorer_predicts_adamw_kernels_and_keeps_compiled_measurements_apart():
    from tutorial_lib.lessons import explorer as explore
    from tutorial_lib.measure import ceilings
    c = ceilings.Ceilings(device="cpu", device_name="box", dtype="float32", peak_flops=1e11, bandwidth=1e10,
                          overhead_s=5e-6)
    base = explore.ExplorerSettings(preset="tiny", seq_len=32, batch_size=2, dtype="float32")
    loop, fused = (explore.predict_cost(base.replace(adamw=a), None, "cpu", c) for a in ("for-loop", "fused"))
    assert fused.time_ms["optimizer"] < loop.time_ms["optimizer"]  # fewer launches, the same bytes
    assert fused.time_ms["mlp.up"] == pytest.approx(loop.time_ms["mlp.up"])
    compiled = explore.predict_cost(base.replace(compile="default"), None, "cpu", c)
    assert "torch.compile's fusion is not in the model" in compiled.basis
    assert "fused AdamW" in explore.comparable(base.replace(adamw="fused"), base)
    assert explore.comparable(base, base) is None
    with pytest.raises(ValueError, match="ExplorerSettings.adamw='fast'"):
        base.replace(adamw="fast")


def test_the_decision_tree_weighs_the_ladders_levers():
    from tutorial_lib.lessons import decision
    rec = decision.recommend(512, "cpu", "speed", results=[])
    cpu = {k: rec.payoff(k) for k in ("bf16", "compile")}
    assert cpu["bf16"].value is None and "bf16 speed depends on its instructions" in cpu["bf16"].note
    assert cpu["compile"].value is None and "not in the cost model" in cpu["compile"].note
    assert decision.analytic_payoff("bf16", 512, "cpu", "memory") > 1  # bf16 activations
    assert decision.analytic_payoff("bf16", 512, "cuda", "memory") is None  # the CUDA baseline is bf16 already
    assert decision.analytic_payoff("bf16", 512, "cpu", "decoding") is None
    assert decision.change_step("fused_adamw", "cpu") == StepSettings(dtype="float32", adamw="fused")
    assert decision.change_config("vocab_pad", 512, "cpu").padded_vocab_size == 50304
    doc = {"meta": {"device": "cpu", "device_name": "box"},
           "sections": {"speed_ladder": {"sizes": {"model": "gpt2_mini", "B": 4, "T": 256}}},
           "rows": [{"kind": "speed_ladder", "variant": "fp32 eager (baseline)", "speedup": None},
                    {"kind": "speed_ladder", "variant": "+ bf16 autocast", "speedup": 1.4, "speedup_min": 1.3,
                     "speedup_max": 1.5, "rounds": 3}]}
    bf16 = decision.recommend(512, "cpu", "speed", results=[doc]).payoff("bf16")
    assert bf16.measured and bf16.value == 1.4 and "over the ladder's rung below" in bf16.source
    assert bf16.speedup.ceiling is None and bf16.evidence == "faster"  # a rung has no config's ceiling


def test_precision_runs_train_fp32_and_bf16_on_the_same_seeds_and_batches():
    runs = SL.precision_runs(SMOKE.quality, 2, "cpu")
    assert list(runs) == ["fp32", "bf16 autocast"]
    for label, dt in (("fp32", "float32"), ("bf16 autocast", "bfloat16")):
        hs = runs[label]
        assert [h.config["seed"] for h in hs] == list(SMOKE.quality.seeds)
        assert all(h.dtype == dt and h.val_steps[-1] == 2 for h in hs)
    for a, b in zip(runs["fp32"], runs["bf16 autocast"]):  # the same batches: the same starting loss, near
        assert abs(a.val_loss[0] - b.val_loss[0]) <= BF16_EPS * a.val_loss[0]


def test_summary_lines_say_noise_goal_and_unreliable_peaks_from_the_numbers():
    base = {"rung": "fp32 eager (baseline)", "key": "fp32", "beside": None, "mfu_max": 0.3}
    noisy = {"rung": "+ bf16 autocast", "key": "bf16", "beside": None, "speedup_prev": 1.3, "speedup_prev_min": 0.9,
             "speedup_prev_max": 1.6, "rounds": 3, "predicted_speedup_prev": 1.5, "mfu_max": 1.4}
    together = {"rung": "everything together", "key": "together", "speedup_base": 1.6, "speedup_base_min": 1.4,
                "speedup_base_max": 1.9, "rungs_product": 1.3, "rounds": 3}
    lines = SL.summary_lines({"rows": [base, noisy, together]}, goal=1.5)
    assert lines[0].startswith("- + bf16 autocast: an MFU above 100% in some round (140%)")
    assert lines[1] == ("- + bf16 autocast, over the rung below: 1.30× [0.90–1.60, 3 rounds] within noise; "
                        "the roofline expected 1.50x")
    assert "1.60× [1.40–1.90, 3 rounds] faster" in lines[2]
    assert lines[2].endswith("the 1.5x goal: met in the median only")


def test_a_cold_compile_uses_empty_caches_and_leaves_the_environment_as_it_was(monkeypatch):
    import os
    monkeypatch.setenv("TRITON_CACHE_DIR", "/somewhere/triton")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    with runtime.empty_compile_caches() as folder:
        inside = {k: os.environ[k] for k in runtime.COMPILE_CACHES}
        assert all(v.startswith(folder) for v in inside.values()) and os.listdir(folder) == []
    assert not os.path.exists(folder)
    assert os.environ["TRITON_CACHE_DIR"] == "/somewhere/triton" and "TORCHINDUCTOR_CACHE_DIR" not in os.environ
