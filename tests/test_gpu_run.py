"""The prepared device run (scripts/gpu_run.sh), rehearsed on the CPU: a mistake in it must cost no
device time. `--dry-run` runs stage 1 (the CUDA tests: CPU cases run, CUDA cases skip) and stage 2
(the guide suite at smoke sizes, in priority order, under the overall deadline) and leaves valid
files behind -- also when the deadline stops them."""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tutorial_lib.guide import suite
from tutorial_lib.measure.records import load_results

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def dry_run(tmp_path, *args, timeout=600):
    out = tmp_path / "out"
    t0 = time.monotonic()
    r = subprocess.run(["bash", "scripts/gpu_run.sh", "--dry-run", "--out", str(out), *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHON": sys.executable,
                            "HOME": str(tmp_path), "TUTORIAL_CACHE_DIR": str(tmp_path / "cache")})
    return r, out, time.monotonic() - t0


def history(folder, seconds, profile="smoke", device_name="an earlier run"):
    """A results folder whose one suite file says every section took ``seconds``."""
    folder.mkdir()
    (folder / "earlier.json").write_text(json.dumps({
        "schema_version": 1, "rows": [], "sections": {n: {"seconds": seconds} for n in suite.SECTIONS},
        "meta": {"suite": "guide", "profile": profile, "device_name": device_name, "date": "2026-12-01",
                 "device": "cpu", "dtype": "float32", "torch": "2.5.0"}}))
    return folder


def test_dry_run_writes_the_stage_files_and_skips_what_does_not_fit(tmp_path):
    hist = history(tmp_path / "hist", 9999.0)  # every section "took" longer than the deadline
    (hist / "earlier.json").write_text((hist / "earlier.json").read_text().replace(
        '"memory": {"seconds": 9999.0}', '"memory": {"seconds": 1.0}'))
    r, out, _ = dry_run(tmp_path, "--deadline", "300", "--history", str(hist), "--sections", "quality memory")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = (out / "gpu_run.log").read_text()
    assert "stage 1 done (exit 0)" in log and "stage 2 done" in log, log[-3000:]
    tests = load_results(out / "cuda_tests.json")
    assert tests["kind"] == "cuda_tests" and tests["meta"]["exitstatus"] == 0
    outcomes = {row["outcome"] for row in tests["rows"]}
    assert outcomes <= {"passed", "skipped"} and "passed" in outcomes
    doc = load_results(out / "dryrun.json")
    assert doc["meta"]["order"] == ["memory", "quality"]  # priority order, not the order given
    sections = doc["sections"]
    assert "seconds" in sections["memory"] and not sections["memory"].get("not_run")
    assert any(r["kind"] == "memory" for r in doc["rows"])
    quality = sections["quality"]
    assert quality["not_run"] and quality["skipped"] and quality["predicted_s"] == 9999.0
    assert "recorded in earlier.json" in quality["error"]
    assert doc["meta"]["stopped"] is None
    json.loads((out / "dryrun.json").read_text())  # strict JSON
    assert sorted(p.name for p in out.iterdir()) == ["cuda_tests.json", "dryrun.json", "gpu_run.log"]


def test_a_tiny_deadline_stops_both_stages_in_time_and_keeps_every_file(tmp_path):
    """20 s for both stages, and stage 2 given every section of the suite, each predicted (from a
    made-up history) to take 0.1 s, so nothing is skipped in advance and the deadline has to stop
    it. The script must end within the deadline + 15 s and still write every stage's file."""
    deadline = 20
    names = list(suite.SECTIONS)
    r, out, took = dry_run(tmp_path, "--deadline", str(deadline), "--history", str(history(tmp_path / "h", 0.1)),
                           "--sections", " ".join(names), timeout=deadline + 120)
    assert took <= deadline + 15, (took, r.stdout[-3000:])
    assert r.returncode in (0, 1), r.stderr[-3000:]  # it exited on its own, with a verdict
    log = (out / "gpu_run.log").read_text()
    marks = ["stage 1: pytest", "stage 1 done", "stage 2", "done in"]
    at = [log.find(m) for m in marks]
    assert -1 not in at and at == sorted(at), log  # every stage ran, in order, and the script ended
    tests = load_results(out / "cuda_tests.json")
    assert tests["kind"] == "cuda_tests"
    doc = load_results(out / "dryrun.json")
    meta, sections = doc["meta"], doc["sections"]
    assert set(sections) >= set(names)  # every planned section has its record: run, stopped or not run
    unfinished = [n for n in names if sections[n].get("not_run") or sections[n].get("interrupted")]
    assert unfinished, "stage 2 finished everything: give it more work than fits"
    if meta.get("stand_in"):  # the SIGINT came before Python could write: the script says so
        assert "stopped" in meta["stopped"]
    else:
        assert meta["order"][0] == "breakdown"
        assert all("SIGINT" in sections[n]["error"] or "budget" in sections[n]["error"] for n in unfinished)


def test_bad_options_are_refused_before_any_work(tmp_path):
    for args, what in ((["--deadline", "soon"], "--deadline=soon"), (["--deadline", "0"], "--deadline=0"),
                       (["--stage1-s", "-5"], "--stage1-s=-5"), (["--frobnicate"], "--frobnicate"),
                       (["--sections"], "--sections needs a value")):
        r = subprocess.run(["bash", "scripts/gpu_run.sh", "--dry-run", "--out", str(tmp_path / "o"), *args],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and what in r.stderr, (args, r.stderr)
        assert not (tmp_path / "o").exists()  # refused before anything was made
