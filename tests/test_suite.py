"""The guide suite: sections record their rows or their error, and the report can read the file."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tutorial_lib.guide import suite
from tutorial_lib.guide.report import load_results, render_guide
from tutorial_lib.sizes import get_sizes

ROOT = Path(__file__).resolve().parents[1]


def test_sizes_per_profile_and_bad_names():
    gpu = get_sizes("gpu").suite
    assert (gpu.preset, gpu.batch, gpu.seq_len) == ("gpt2_small", 4, 512)  # the seed's setting
    assert get_sizes("smoke").suite.preset == "tiny"
    with pytest.raises(ValueError, match="profile='tpu'"):
        suite.run_suite("guide", profile="tpu", device="cpu", progress=False)
    with pytest.raises(ValueError, match="section='nope'"):
        suite.run_suite("guide", profile="smoke", device="cpu", only=["nope"], progress=False)
    with pytest.raises(ValueError, match="suite='other'"):
        suite.run_suite("other", profile="smoke", device="cpu", progress=False)


def test_failing_section_is_recorded_and_the_suite_goes_on(monkeypatch):
    def boom(S):
        raise RuntimeError("CUDA out of memory (simulated)")

    def fine(S):
        S.add("fine", [{"x": 1}], columns=["x"])

    monkeypatch.setitem(suite.SECTIONS, "boom", boom)
    monkeypatch.setitem(suite.SECTIONS, "fine", fine)
    doc = suite.run_suite("guide", profile="smoke", device="cpu", only=["boom", "fine"], progress=False)
    assert doc["sections"]["boom"]["error"].startswith("RuntimeError: CUDA out of memory")
    assert [r for r in doc["rows"] if r["kind"] == "fine"] == [{"x": 1, "kind": "fine"}]
    text = "<!-- report:boom -->\n<!-- /report:boom -->\n<!-- report:fine -->\n<!-- /report:fine -->\n"
    doc["_path"] = "x.json"
    out = render_guide(text, [doc])
    assert "failed on this device: RuntimeError: CUDA out of memory" in out
    assert "| x |\n|---|\n| 1 |" in out


def test_mlp_section_measures_whole_model_and_flops_ratio():
    doc = suite.run_suite("guide", profile="smoke", device="cpu", only=["mlp"], progress=False)
    rows = [r for r in doc["rows"] if r["kind"] == "mlp"]
    assert [r["variant"] for r in rows] == ["GELU 4x", "GELU 3x"]
    assert rows[0]["flops_vs_4x"] == 1.0 and 0.5 < rows[1]["flops_vs_4x"] < 1.0
    assert rows[1]["params_M"] < rows[0]["params_M"]
    assert all(r["ms_per_step"] > 0 and r["error"] is None for r in rows)
    for key in ("schema_version", "meta", "rows", "sections"):
        assert key in doc
    assert doc["meta"]["suite"] == "guide" and doc["meta"]["profile"] == "smoke"
    assert doc["meta"]["torch"] and doc["meta"]["device"] == "cpu"


def test_bench_suite_cli_writes_a_file_the_report_reads(tmp_path):
    out = tmp_path / "cpu.json"
    r = subprocess.run([sys.executable, "-m", "tutorial_lib", "bench", "--suite", "guide", "--only",
                        "optimizer", "--profile", "smoke", "--device", "cpu", "--no-progress",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    docs = load_results([out])
    rows = [x for x in docs[0]["rows"] if x["kind"] == "optimizer"]
    assert {x["optimizer"] for x in rows} == {"adamw", "muon"}
    assert json.loads(out.read_text())["schema_version"] >= 1


def _point(backend, T, ms, saved, error=None):
    from tutorial_lib.lessons.flash_attention import AttentionPoint
    return AttentionPoint(backend, T, 1, 4, 64, "cpu", "cpu", "float32", "fwdbwd", scores_bytes=4 * T * T,
                          saved_bytes=saved, median_ms=ms, error=error)


def test_attention_slopes_recover_known_exponents():
    from tutorial_lib.measure import cost
    from tutorial_lib.model import get_config

    Ts = [256, 512, 1024, 2048]
    rows = ([_point("eager", T, 3e-6 * T ** 2, 16 * T ** 2) for T in Ts]
            + [_point("sdpa", T, 5e-3 * T ** 1.5, 100 * T) for T in Ts]
            # a failed point is skipped, not fitted as zero
            + [_point("tiled", T, 0.1 * T, 50 * T) for T in Ts[:-1]] + [_point("tiled", 2048, None, None, "OOM")])
    cfg = get_config("gpt2_small")
    out = {r["what"]: r for r in suite.attention_slope_rows(rows, cfg, batch=4)}
    assert out["attention core, eager"]["time_slope"] == pytest.approx(2.0)
    assert out["attention core, eager"]["memory_slope"] == pytest.approx(2.0)
    assert out["attention core, eager"]["T_range"] == "512-2048"
    assert out["attention core, sdpa"]["time_slope"] == pytest.approx(1.5)
    assert out["attention core, sdpa"]["memory_slope"] == pytest.approx(1.0)
    assert out["attention core, tiled"]["T_range"] == "256-1024"
    assert out["attention core, tiled"]["time_slope"] == pytest.approx(1.0)
    step = out["whole gpt2_small training step FLOPs (cost model, B=4)"]
    # independent check: the two-point exponent of the cost model's FLOPs between 1024 and 2048
    big = cfg.replace(block_size=2048)
    import math
    two_point = math.log2(cost.step_flops(big, 4, 2048) / cost.step_flops(big, 4, 1024))
    assert 1.0 < step["flops_slope"] < two_point < 2.0  # linear layers dominate: far from the seed's 2
    assert step["claimed_slope"] == 2.0


def test_memory_section_is_exact_and_sdpa_keeps_no_scores():
    from tutorial_lib.model import GPT, get_config

    doc = suite.run_suite("guide", profile="smoke", device="cpu", only=["memory"], progress=False)
    rows = {r["quantity"].strip(): r for r in doc["rows"] if r["kind"] == "memory"}
    sizes = doc["sections"]["memory"]["sizes"]
    cfg = get_config(sizes["model"])
    n_params = sum(p.numel() for p in GPT(cfg).parameters())
    assert rows["parameters"]["eager_MB"] == pytest.approx(4 * n_params / 1e6)  # fp32 weights
    assert rows["gradients"]["sdpa_MB"] == pytest.approx(4 * n_params / 1e6)
    # AdamW: two fp32 moments per weight (+ a scalar step counter per tensor)
    assert 8 * n_params / 1e6 <= rows["optimizer state (AdamW)"]["eager_MB"] < 8.01 * n_params / 1e6
    # eager keeps one fp32 (B, H, T, T) probability tensor per layer (+ the bool mask); SDPA none
    B, T, H = sizes["B"], sizes["T"], cfg.n_head
    assert rows["attention scores/probs, per layer"]["eager_MB"] >= 4 * B * H * T * T / 1e6
    assert rows["attention scores/probs, per layer"]["sdpa_MB"] == 0
    assert rows["activations saved for backward"]["eager_MB"] > rows["activations saved for backward"]["sdpa_MB"]
    tot = rows["total (params + grads + state + activations)"]
    parts = ("parameters", "gradients", "optimizer state (AdamW)", "activations saved for backward")
    assert tot["eager_MB"] == pytest.approx(sum(rows[p]["eager_MB"] for p in parts))
    assert tot["seed_eager_MB"] == 4000 and tot["seed_flash_MB"] == 2500  # the seed's "~4 GB", "~2.5 GB"
