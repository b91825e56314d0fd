"""The guide's tables are generated from results/*.json, never typed in."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tutorial_lib.guide import sources as S
from tutorial_lib.guide.report import BLOCK, block_names, fmt, load_results, markdown_table, render_guide
from tutorial_lib.measure import records

ROOT = Path(__file__).resolve().parents[1]


def _result(device_type, device, rows, section="gqa_train"):
    return {"schema_version": 1,
            "meta": {"device": device_type, "device_name": device, "dtype": "float32",
                     "torch": "2.x", "date": "2026-11-28T00:00:00", "profile": "cpu", "suite": "guide"},
            "rows": [dict(r, kind=section) for r in rows],
            "sections": {section: {"columns": ["n_kv_head", "ms"], "sizes": {"B": 4}}}}


def test_render_block_fills_markers_gpu_first_and_keeps_prose():
    text = "intro 1.25x claim\n<!-- report:gqa_train -->\nold\n<!-- /report:gqa_train -->\noutro\n"
    cpu = _result("cpu", "cpu (2 cores)", [{"n_kv_head": 12, "ms": 812.5}, {"n_kv_head": 4, "ms": 790.25}])
    gpu = _result("cuda", "NVIDIA H200", [{"n_kv_head": 12, "ms": 31.25}])
    cpu["_path"], gpu["_path"] = "a.json", "b.json"
    out = render_guide(text, [gpu, cpu])
    assert out.startswith("intro 1.25x claim\n<!-- report:gqa_train -->\n")
    assert out.endswith("<!-- /report:gqa_train -->\noutro\n")
    assert "old" not in out
    assert out.index("NVIDIA H200") < out.index("cpu (2 cores)")
    assert "| 12 | 812.5 |" in out and "| 4 | 790.2 |" in out
    # idempotent: rendering the rendered guide changes nothing
    assert render_guide(out, [gpu, cpu]) == out


def test_missing_section_says_how_to_produce_it():
    text = "<!-- report:nothing -->\n<!-- /report:nothing -->\n"
    assert "bench --suite guide" in render_guide(text, [])


def test_fmt_and_table():
    assert fmt(1234567) == "1,234,567"
    assert fmt(0.012345) == "0.0123" and fmt(99372.8) == "99,373"
    assert fmt(None) == "—" and fmt(float("nan")) == "—"
    assert fmt("a|b") == "a\\|b"
    assert markdown_table([{"a": 1, "b": 2.5}]) == "| a | b |\n|---|---|\n| 1 | 2.5 |\n"


def test_load_results_rejects_incomplete_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"schema_version": 1, "meta": {}}))
    with pytest.raises(ValueError, match="rows"):
        load_results([p])


def test_committed_guide_matches_report():
    """Fails when OPTIMIZATION_GUIDE.md was edited by hand or results changed without `report`."""
    guide = ROOT / "OPTIMIZATION_GUIDE.md"
    if not guide.exists():
        pytest.skip("no guide yet")
    r = subprocess.run([sys.executable, "-m", "tutorial_lib", "report", "--check"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert block_names(guide.read_text()), "the guide has no generated blocks"
    assert all(m.group("name") for m in BLOCK.finditer(guide.read_text()))


def test_load_note_flags_busy_cpu_runs_only():
    from tutorial_lib.guide.report import load_note

    cpu = {"device": "cpu"}
    quiet = {"load": {"start": 1.2, "end": 1.9, "cores": 2, "threads": 2}}
    busy = {"load": {"start": 1.5, "end": 4.2, "cores": 2, "threads": 2}}
    assert load_note(cpu, quiet).startswith("_Load average 1.2–1.9 on 2 cores")
    assert "noisy" not in load_note(cpu, quiet)
    assert "more threads were runnable than there are cores" in load_note(cpu, busy)
    assert load_note({"device": "cuda:0"}, busy) == ""  # GPU timings: host load is not the story
    assert load_note(cpu, {}) == ""  # older files without the record


def test_suite_records_load_per_section():
    from tutorial_lib.guide import suite
    doc = suite.run_suite("guide", profile="smoke", device="cpu", only=["optimizer"], progress=False)
    load = doc["sections"]["optimizer"].get("load")
    import os
    if hasattr(os, "getloadavg"):
        assert load["cores"] == os.cpu_count() and load["start"] >= 0 and load["end"] >= 0


def test_recorded_tables_for_notebooks(tmp_path):
    from tutorial_lib.guide.report import recorded

    empty = recorded("mlp", results_dir=tmp_path)
    assert "Recorded results files: 0 (none yet)" in empty.text
    assert "No recorded result for this table yet" in empty._repr_markdown_()
    doc = {"schema_version": 1,
           "meta": {"device": "cuda:0", "device_name": "NVIDIA H200", "dtype": "bfloat16",
                    "torch": "2.11.0", "profile": "gpu", "date": "2026-11-28T10:00:00+00:00", "suite": "guide"},
           "rows": [{"kind": "mlp", "variant": "GELU 4x", "ms_per_step": 47.8}],
           "sections": {"mlp": {"columns": ["variant", "ms_per_step"], "sizes": {"B": 4, "T": 512}}}}
    (tmp_path / "h200.json").write_text(json.dumps(doc))
    out = repr(recorded("mlp", results_dir=tmp_path))
    assert "Recorded results files: 1 (NVIDIA H200)" in out
    assert "Recorded on **NVIDIA H200**, bfloat16, torch 2.11.0, profile `gpu`, 2026-11-28; B=4, T=512." in out
    assert "| GELU 4x | 47.8 |" in out
    with pytest.raises(ValueError, match="section='mlp_typo'"):
        recorded("mlp_typo", results_dir=tmp_path)


def test_decision_block_uses_measured_payoffs_for_their_device_only():
    from tutorial_lib.guide.report import render_decision

    doc = {"schema_version": 1, "_path": "results/h200.json",
           "meta": {"device": "cuda:0", "device_name": "NVIDIA H200", "dtype": "bfloat16", "date": "2026-11-28"},
           "rows": [{"kind": "before_after", "variant": "baseline: MHA, GELU 4x, eager", "speedup": 1.0},
                    {"kind": "before_after", "variant": "+ SDPA (flash)", "speedup": 1.5, "speedup_min": 1.4,
                     "speedup_max": 1.6, "rounds": 3}],
           "sections": {"before_after": {"sizes": {"model": "gpt2_small", "B": 4, "T": 1024}}}}
    text = render_decision([doc])
    rows = {tuple(c.strip() for c in line.split("|")[1:4]): line for line in text.splitlines()
            if line.startswith("| cuda") or line.startswith("| cpu")}
    assert len(rows) == 18  # 2 devices x 3 lengths x 3 goals
    first = rows[("cuda", "1,024", "speed")].split("|")[4]
    assert first.strip().startswith("1. Flash attention (fused SDPA) 1.50× [1.40–1.60, 3 rounds] faster "
                                    "(measured: NVIDIA H200, h200.json: before_after")
    # a CUDA measurement says nothing about a CPU, nor about T=4096 (more than 2x away)
    assert "measured" not in rows[("cpu", "1,024", "speed")].split("|")[4]
    assert "measured" not in rows[("cuda", "4,096", "speed")].split("|")[4]
    assert "`h200.json` (NVIDIA H200)" in text


# ---- one loader: results files are validated, other files recognised -------------------------

META = {"device": "cpu", "device_name": "box", "dtype": "float32", "torch": "2.x", "date": "2026-11-28",
        "suite": "guide"}


def _doc(**changes):
    d = {"schema_version": 1, "meta": dict(META), "rows": [{"kind": "mlp", "ms": 1.0}]}
    d.update(changes)
    return d


@pytest.mark.parametrize("doc, match", [
    (_doc(schema_version=99), "schema_version=99 is newer"),
    (_doc(schema_version="one"), "schema_version='one' is not a version"),
    (_doc(schema_version=True), "schema_version=True is not a version"),
    (_doc(schema_version=0), "schema_version=0 is not a version"),
    (_doc(meta=[]), "'meta' must be an object"),
    (_doc(rows={"kind": "mlp"}), "'rows' must be a list"),
    (_doc(rows=[{"kind": "mlp"}, 3]), "row 1 is a int"),
    (_doc(rows=[{"kind": "mlp"}, {"ms": 2.0}]), "row 1 has no 'kind'"),
    (_doc(rows=[{"kind": ""}]), "row 0 has no 'kind'"),
    (_doc(sections=[]), "'sections' must map"),
    ({"schema_version": 1, "rows": []}, r"missing \['meta'\]"),
    ([1, 2], "is a JSON object, not list"),
])
def test_check_results_names_the_file_and_the_problem(doc, match):
    with pytest.raises(ValueError, match=match) as info:
        records.check_results(doc, "results/x.json")
    assert str(info.value).startswith("results/x.json: ")


def test_file_kinds():
    assert records.file_kind(_doc()) == records.RESULTS
    assert records.file_kind({"traceEvents": []}) == records.CHROME_TRACE
    assert records.file_kind([{"ph": "X", "name": "mm"}]) == records.CHROME_TRACE
    assert records.file_kind({"kind": "train_history"}) == records.TRAIN_HISTORY
    assert records.file_kind({"train_loss": [], "val_loss": [], "summary": {}}) == records.TRAIN_HISTORY
    assert records.file_kind({"hello": 1}) is None and records.file_kind([1, 2]) is None


def test_save_refuses_what_load_would_refuse(tmp_path):
    with pytest.raises(ValueError, match="row 0 has no 'kind'"):
        records.save_results(tmp_path / "r.json", [{"ms": 1.0}], device="cpu")
    assert not list(tmp_path.iterdir())


def test_scan_and_load_all(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(_doc()))
    (tmp_path / "trace.json").write_text(json.dumps({"traceEvents": []}))
    (tmp_path / "hist.json").write_text(json.dumps({"kind": "train_history"}))
    (tmp_path / "other.json").write_text("[1, 2]")
    found = records.scan(tmp_path)
    assert [Path(d["_path"]).name for d in found.results] == ["a.json"]
    assert [p.name for p, _ in found.histories] == ["hist.json"]
    assert len(found.notes) == 2 and "Chrome trace" in " ".join(found.notes)
    (tmp_path / "broken.json").write_text(json.dumps(_doc(schema_version=7)))
    with pytest.raises(ValueError, match="broken.json: schema_version=7"):
        records.scan(tmp_path)
    with pytest.warns(RuntimeWarning, match="broken.json"):  # notebooks: left out, and said so
        assert [Path(d["_path"]).name for d in records.load_all(tmp_path)] == ["a.json"]
    assert records.load_all(tmp_path / "nowhere") == []


def test_a_table_comes_from_a_suite_section_only():
    """``profile --out-json`` writes rows of kind "memory" with no section: they are not the
    guide's memory table (before: a tiny-model table replaced the recorded one)."""
    text = "<!-- report:memory -->\n<!-- /report:memory -->\n"
    profile_doc = {"schema_version": 1, "_path": "results/profile.json",
                   "meta": {"device": "cpu", "device_name": "cpu"},
                   "rows": [{"kind": "memory", "preset": "tiny", "params_bytes": 1}]}
    assert "tiny" not in render_guide(text, [profile_doc])
    assert "No recorded result" in render_guide(text, [profile_doc])


def test_regenerate_refuses_no_results(tmp_path):
    from tutorial_lib.guide.report import regenerate

    guide = tmp_path / "guide.md"
    guide.write_text("<!-- report:mlp -->\nkept\n<!-- /report:mlp -->\n")
    with pytest.raises(ValueError, match="does not exist"):
        regenerate(guide, tmp_path / "reslts")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no results file"):
        regenerate(guide, tmp_path / "empty")
    assert "kept" in guide.read_text()


# ---- issue 26: markers, failed rows, placeholders, duplicates, files of other commands ------------
@pytest.mark.parametrize("text, match", [
    ("# no blocks at all\n", "has no report blocks"),
    ("<!-- report:mlp -->\nx\n", r"line 1: <!-- report:mlp --> is a start marker without its end marker"),
    ("<!-- report:a -->\n<!-- /report:a -->\nx\n<!-- /report:mlp -->\n",
     r"line 4: <!-- /report:mlp --> is an end marker without its start marker"),
    ("<!-- report:a -->\n<!-- report:b -->\n<!-- /report:b -->\n<!-- /report:a -->\n",
     "line 2: <!-- report:b --> is a start marker without"),  # a block inside a block
    ("<!-- report:a -->\n<!-- /report:a -->\n<!--report:b-->\n", "not in the form"),
])
def test_check_markers_refuses_what_would_stop_being_managed(text, match):
    from tutorial_lib.guide.report import check_markers
    with pytest.raises(ValueError, match=match):
        check_markers(text, "guide.md")


def test_check_markers_ignores_markers_quoted_in_prose():
    from tutorial_lib.guide.report import check_markers
    check_markers("Blocks between `<!-- report:NAME -->` markers.\n<!-- report:a -->\n<!-- /report:a -->\n")


def test_a_failed_row_reads_failed_beside_its_error():
    rows = [{"variant": "a", "ms": 1.5, "error": None}, {"variant": "b", "ms": None, "error": "OutOfMemoryError"}]
    assert markdown_table(rows, ["variant", "ms"]).splitlines()[2:] == [
        "| a | 1.5 | — |", "| b | failed | OutOfMemoryError |"]  # the error column is added


def test_every_empty_block_starts_with_a_known_placeholder():
    """``regenerate`` tells a placeholder from a recorded table by these prefixes."""
    from tutorial_lib.guide.report import PLACEHOLDERS, render_block
    for name in ("mlp", "training_runs", "roofline.errors", "cuda_tests"):
        assert render_block(name, [], [], []).startswith(PLACEHOLDERS), name


def _suite_file(folder, name, **meta):
    doc = _result("cpu", "cpu (2 cores)", [{"n_kv_head": 12, "ms": 812.5}])
    doc["meta"].update(meta)
    (folder / name).write_text(json.dumps(doc))


def test_regenerate_skips_other_commands_and_refuses_duplicates(tmp_path):
    from tutorial_lib.guide.report import regenerate

    guide = tmp_path / "guide.md"
    guide.write_text("<!-- report:gqa_train -->\n<!-- /report:gqa_train -->\n")
    results = tmp_path / "results"
    results.mkdir()
    _suite_file(results, "cpu.json")
    _suite_file(results, "profile.json", suite=None, command="profile")
    notes = []
    _, new = regenerate(guide, results, notes)
    assert "| 12 | 812.5 |" in new and new.count("Recorded on") == 1
    assert notes == [f"{results / 'profile.json'}: skipped, not a run of the guide's suite (`bench --suite guide`) "
                     "but of `profile`: its rows feed no table"]
    _suite_file(results, "cpu_again.json")
    with pytest.raises(ValueError, match="cpu.json and .*cpu_again.json both record gqa_train on cpu"):
        regenerate(guide, results)
    (results / "cpu.json").unlink()
    (results / "cpu_again.json").unlink()
    with pytest.raises(ValueError, match="holds no results file of the guide's suite"):
        regenerate(guide, results)


def test_regenerate_refuses_to_turn_a_recorded_table_into_a_placeholder(tmp_path):
    from tutorial_lib.guide.report import regenerate

    guide = tmp_path / "guide.md"
    guide.write_text("<!-- report:mlp -->\n| a recorded table |\n<!-- /report:mlp -->\n"
                     "<!-- report:gqa_train -->\n<!-- /report:gqa_train -->\n")
    results = tmp_path / "results"
    results.mkdir()
    _suite_file(results, "cpu.json")  # records gqa_train, not mlp
    with pytest.raises(ValueError, match="holds nothing for mlp, which the guide shows recorded tables for"):
        regenerate(guide, results)
    _, new = regenerate(guide, results, allow_placeholders=True)
    assert "No recorded result for this table yet" in new


def test_recorded_notes_duplicates_and_leaves_out_other_commands(tmp_path):
    from tutorial_lib.guide.report import recorded

    _suite_file(tmp_path, "a.json")
    _suite_file(tmp_path, "b.json")
    _suite_file(tmp_path, "profile.json", suite=None, command="profile")
    text = recorded("gqa_train", results_dir=tmp_path).text
    assert "Recorded results files: 2" in text
    assert f"_Note: {tmp_path / 'a.json'} and {tmp_path / 'b.json'} both record gqa_train" in text


# ---- which files feed the guide, and duplicates ----------------------------------------------------
def test_only_suite_runs_and_cuda_tests_feed_the_guide():
    assert S.is_guide_record(_vdoc())
    assert S.is_guide_record({**_vdoc(suite=None), "kind": "cuda_tests"})
    assert not S.is_guide_record(_vdoc(suite=None, command="profile"))


def test_duplicates_are_the_same_device_dtype_and_sections():
    a, b = dict(_vdoc(), _path="a.json"), dict(_vdoc(), _path="b.json")
    (line,) = S.duplicates([a, b])
    assert line == "a.json and b.json both record mlp on box in float32"
    other_device = dict(_vdoc(device_name="other"), _path="c.json")
    other_dtype = dict(_vdoc(dtype="bfloat16"), _path="d.json")
    other_section = dict(_vdoc(sections={"swiglu": {}}), _path="e.json")
    assert S.duplicates([a, other_device, other_dtype, other_section]) == []


def _vdoc(sections=None, **meta):
    return {"schema_version": 1, "meta": {**META, **meta}, "rows": [{"kind": "mlp", "ms": 1.0}],
            "sections": sections if sections is not None else {"mlp": {}}}
