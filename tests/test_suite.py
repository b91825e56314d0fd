"""The guide suite: sections record their rows or their error, and the report can read the file."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tutorial_lib import suite
from tutorial_lib.report import load_results, render_guide

ROOT = Path(__file__).resolve().parents[1]


def test_sizes_per_profile_and_bad_names():
    gpu = suite.SuiteSizes.for_profile("gpu")
    assert (gpu.preset, gpu.batch, gpu.seq_len) == ("gpt2_small", 4, 512)  # the seed's setting
    assert suite.SuiteSizes.for_profile("smoke").preset == "tiny"
    with pytest.raises(ValueError, match="profile='tpu'"):
        suite.SuiteSizes.for_profile("tpu")
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
