"""The prepared device run (scripts/gpu_run.sh), rehearsed on the CPU: a mistake in it must cost no
device time. `--dry-run` runs stage 1 (the CUDA tests: CPU cases run, CUDA cases skip) and stage 2
(the guide suite at smoke sizes under a time budget) and leaves valid files behind."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tutorial_lib.measure.records import load_results

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                    reason="needs bash and coreutils' timeout")
def test_dry_run_writes_the_stage_files_and_honours_the_budget(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(["bash", "scripts/gpu_run.sh", "--dry-run", "--out", str(out), "--budget", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHON": sys.executable,
                            "HOME": str(tmp_path), "TUTORIAL_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = (out / "gpu_run.log").read_text()
    assert "stage 1 done" in log and "stage 2 done" in log, log[-3000:]
    tests = load_results(out / "cuda_tests.json")
    assert tests["kind"] == "cuda_tests" and tests["meta"]["exitstatus"] == 0
    outcomes = {row["outcome"] for row in tests["rows"]}
    assert outcomes <= {"passed", "skipped"} and "passed" in outcomes
    doc = load_results(out / "dryrun.json")
    sections = doc["sections"]
    assert "seconds" in sections["memory"] and not sections["memory"].get("not_run")
    not_run = [n for n, s in sections.items() if s.get("not_run")]
    assert not_run and all("budget" in sections[n]["error"] for n in not_run)  # 1 s: the rest waits
    assert doc["meta"]["budget_s"] == 1.0 and any(r["kind"] == "memory" for r in doc["rows"])
    json.loads((out / "dryrun.json").read_text())  # strict JSON


def test_bad_options_are_refused_before_any_work(tmp_path):
    for args, what in ((["--budget", "soon"], "--budget=soon"), (["--frobnicate"], "--frobnicate")):
        r = subprocess.run(["bash", "scripts/gpu_run.sh", "--dry-run", "--out", str(tmp_path), *args],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and what in r.stderr
