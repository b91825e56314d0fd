"""The time-boxed suite (guide/plan.py, suite.run_suite): priority order, predicted costs, sections
skipped in advance when they do not fit, and SIGINT keeping what was measured. No timing here: the
sections are stand-ins, and what is checked is what the document records."""
import json

import pytest

from tutorial_lib import cli
from tutorial_lib.guide import plan, suite
from tutorial_lib.measure.records import load_results


def test_priority_sections_come_first_then_the_rest_in_their_order():
    names = list(suite.SECTIONS)
    ordered = plan.priority_order(names)
    present = [n for n in plan.PRIORITY if n in suite.SECTIONS]
    assert ordered[:len(present)] == present
    assert sorted(ordered) == sorted(names)
    assert ordered[len(present):] == [n for n in names if n not in present]
    assert present[:4] == ["breakdown", "memory", "before_after", "lm_head"]  # the order
    # a name placed in the list before its section exists is passed over
    assert plan.priority_order(["a", "b", "c"], ("c", "not_yet", "a")) == ["c", "a", "b"]


def test_estimates_name_real_sections_of_known_profiles():
    from tutorial_lib.sizes import PROFILES

    assert set(plan.ESTIMATES_S) == set(PROFILES)
    for profile, table in plan.ESTIMATES_S.items():
        assert set(table) <= set(suite.SECTIONS), profile
        assert all(v > 0 for v in table.values()), profile


def _results(path, profile, device_name, date, sections):
    path.write_text(json.dumps({"schema_version": 1, "rows": [], "sections": sections,
                                "meta": {"suite": "guide", "profile": profile, "device_name": device_name,
                                         "date": date, "device": "cuda", "dtype": "bfloat16",
                                         "torch": "2.11.0"}}))


def test_predictions_prefer_this_devices_newest_finished_record(tmp_path):
    _results(tmp_path / "a_h100.json", "gpu", "NVIDIA H100", "2026-12-01",
             {"memory": {"seconds": 11.0}, "breakdown": {"seconds": 7.0}})
    _results(tmp_path / "b_h200_old.json", "gpu", "NVIDIA H200", "2026-11-01",
             {"memory": {"seconds": 30.0}, "lm_head": {"seconds": 50.0}})
    _results(tmp_path / "c_h200.json", "gpu", "NVIDIA H200", "2026-12-02",
             {"memory": {"seconds": 9.0}, "lm_head": {"seconds": 99.0, "interrupted": True},
              "quality": {"not_run": True, "error": "not run"}})
    _results(tmp_path / "d_cpu.json", "cpu", "NVIDIA H200", "2026-12-03", {"memory": {"seconds": 1.0}})
    (tmp_path / "broken.json").write_text("{not json")
    got = plan.predict_seconds(["memory", "breakdown", "lm_head", "quality", "nope"], "gpu",
                               device_name="NVIDIA H200", results_dir=tmp_path)
    assert got["memory"] == (9.0, "recorded in c_h200.json on NVIDIA H200")  # same device, newest
    assert got["breakdown"] == (7.0, "recorded in a_h100.json on NVIDIA H100")  # another device of the profile
    assert got["lm_head"][0] == 50.0  # the interrupted 99 s is no measure of the section
    assert got["quality"] == (plan.ESTIMATES_S["gpu"]["quality"], "the gpu profile's estimate (guide/plan.py)")
    assert "nope" not in got  # no prediction: never skipped in advance
    assert plan.predict_seconds(["memory"], "gpu", results_dir=tmp_path / "missing")["memory"][1].startswith("the gpu")
    with pytest.raises(ValueError, match="profile='tpu'"):
        plan.predict_seconds(["memory"], "tpu")


@pytest.fixture
def stand_ins(monkeypatch):
    """Sections that record what ran, one of them stopped by SIGINT half-way."""
    ran = []

    def section(name, rows=1):
        def fn(S):
            ran.append(name)
            S.add(name, [{"i": i} for i in range(rows)], columns=["i"])
        return fn

    def interrupted(S):
        ran.append("sigint")
        S.add("sigint", [{"i": 0}])
        raise KeyboardInterrupt

    for name in ("first", "big", "after"):
        monkeypatch.setitem(suite.SECTIONS, name, section(name))
    monkeypatch.setitem(suite.SECTIONS, "sigint", interrupted)
    return ran


def test_a_section_predicted_not_to_fit_is_skipped_in_advance_and_the_next_runs(stand_ins, tmp_path):
    out = tmp_path / "r.json"
    doc = suite.run_suite("guide", profile="smoke", device="cpu", only=["first", "big", "after"], progress=False,
                          out=out, budget_s=100, predicted={"big": (1000.0, "a test"), "after": (1.0, "a test")})
    assert stand_ins == ["first", "after"]
    big = doc["sections"]["big"]
    assert big["not_run"] and big["skipped"] and big["predicted_s"] == 1000.0
    assert "predicted 1000 s (a test)" in big["error"] and "time budget (100 s)" in big["error"]
    assert doc["meta"]["sections_run"] == ["first", "after"] and doc["meta"]["stopped"] is None
    assert load_results(out)["sections"]["big"]["skipped"]
    # without a budget a prediction changes nothing
    stand_ins.clear()
    suite.run_suite("guide", profile="smoke", device="cpu", only=["first", "big"], progress=False,
                    predicted={"big": (1000.0, "a test")})
    assert stand_ins == ["first", "big"]


def test_sigint_keeps_what_was_measured_and_records_the_rest(stand_ins, tmp_path):
    out = tmp_path / "r.json"
    doc = suite.run_suite("guide", profile="smoke", device="cpu", only=["after", "first", "sigint", "big"],
                          priority=("first",), progress=False, out=out)
    assert stand_ins == ["first", "after", "sigint"]  # priority first; nothing after the SIGINT
    assert doc["meta"]["order"] == ["first", "after", "sigint", "big"]
    saved = load_results(out)  # written, not lost with the exception
    assert saved["meta"]["stopped"] == doc["meta"]["stopped"]
    assert doc["meta"]["stopped"].startswith("SIGINT") and "'sigint'" in doc["meta"]["stopped"]
    secs = saved["sections"]
    assert secs["sigint"]["interrupted"] and "before it finished" in secs["sigint"]["error"]
    assert "1 row(s)" in secs["sigint"]["error"]
    assert secs["big"]["not_run"] and "stopped by SIGINT in section 'sigint'" in secs["big"]["error"]
    assert saved["meta"]["sections_run"] == ["first", "after"]
    assert [r["kind"] for r in saved["rows"]] == ["first", "after", "sigint"]


def test_bad_predictions_are_refused_naming_the_section():
    with pytest.raises(ValueError, match=r"predicted\['memory'\]=-1"):
        suite.run_suite("guide", profile="smoke", device="cpu", only=["memory"], progress=False,
                        predicted={"memory": -1})


def test_bench_exits_130_after_sigint_with_the_file_written(stand_ins, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = cli.main(["bench", "--suite", "guide", "--profile", "smoke", "--device", "cpu", "--only", "first", "sigint",
                   "after", "--budget-s", "100", "--history", str(tmp_path), "--priority", "--no-progress",
                   "--out", str(out)])
    assert rc == 130
    assert "stopped: SIGINT" in capsys.readouterr().out
    doc = load_results(out)
    assert doc["sections"]["after"]["not_run"] and doc["meta"]["budget_s"] == 100


@pytest.mark.parametrize("args, what", [(["--priority"], "--priority"), (["--budget-s", "5"], "--budget-s"),
                                        (["--suite", "guide", "--budget-s", "0"], "--budget-s=0")])
def test_bench_refuses_suite_options_without_a_suite_or_a_bad_budget(args, what, capsys):
    assert cli.main(["bench", "--profile", "smoke", "--device", "cpu", *args]) == 2
    assert what in capsys.readouterr().err
