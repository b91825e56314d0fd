"""tutorial_lib.measure.validate: the one validator behind every reader of results files and
training histories. Each bad value is refused with the file, the field and the value named."""
import copy
import json
from pathlib import Path

import pytest

from tutorial_lib.measure import records
from tutorial_lib.measure import validate as V

ROOT = Path(__file__).resolve().parents[1]
CPU_JSON = ROOT / "results" / "cpu.json"
HISTORIES = sorted((ROOT / "results").glob("*/*.json"))

META = {"device": "cpu", "device_name": "box", "dtype": "float32", "torch": "2.x",
        "date": "2026-12-01T05:33:22+00:00", "suite": "guide"}


def _doc(rows=None, sections=None, **meta):
    return {"schema_version": 1, "meta": {**META, **meta},
            "rows": rows if rows is not None else [{"kind": "mlp", "variant": "GELU 4x", "ms_per_step": 1.5}],
            "sections": sections if sections is not None else {"mlp": {"columns": ["variant", "ms_per_step"],
                                                                       "sizes": {"B": 2, "T": [128, 256]}}}}


def _refused(doc, *needles):
    with pytest.raises(ValueError) as info:
        V.check_results(doc, "results/x.json")
    msg = str(info.value)
    assert msg.startswith("results/x.json: ") and all(n in msg for n in needles), msg
    return msg


def test_the_committed_results_and_histories_pass():
    for f in sorted(CPU_JSON.parent.glob("*.json")):  # every suite file the guide reads
        V.check_results(json.loads(f.read_text()), f)
    assert HISTORIES
    for h in HISTORIES:
        V.check_history(json.loads(h.read_text()), h)
    assert V.check_results(_doc()) == _doc()


@pytest.mark.parametrize("name, rule", [
    ("median_ms", V.NONNEGATIVE), ("ms_per_step", V.NONNEGATIVE), ("seconds", V.NONNEGATIVE),
    ("tokens_per_s", V.NONNEGATIVE), ("peak_bytes", V.NONNEGATIVE), ("cache_MiB", V.NONNEGATIVE),
    ("seq_len", V.NONNEGATIVE), ("n_kv_head", V.NONNEGATIVE), ("speedup", V.NONNEGATIVE),
    ("time_share", V.NONNEGATIVE), ("flops_vs_MHA", V.NONNEGATIVE), ("fresh_fill_GBps_off", V.NONNEGATIVE),
    ("roofline_error", V.NUMBER), ("roofline_error_min", V.NUMBER), ("flop_only_error_max", V.NUMBER),
    ("speedup_min", V.NONNEGATIVE), ("measured_ms_max", V.NONNEGATIVE),
    ("peak_slope", V.NUMBER), ("vs_baseline", V.NUMBER), ("val_loss", V.NUMBER),
    ("variant", V.TEXT), ("error", V.TEXT), ("speedup_range", V.TEXT), ("ms_range", V.TEXT),
    ("time_source", None), ("device_name", None), ("config_fields", None), ("shares", None),
])
def test_field_rules_by_name(name, rule):
    assert V.field_rule(name) == rule


ROW = {"kind": "mlp", "variant": "GELU 4x", "ms_per_step": 1.5}


@pytest.mark.parametrize("change, needles", [
    ({"ms_per_step": float("nan")}, ["ms_per_step=nan", "not a finite number"]),
    ({"ms_per_step": float("inf")}, ["ms_per_step=inf", "not a finite number"]),
    ({"ms_per_step": -2.0}, ["rows[0] (kind 'mlp').ms_per_step=-2.0", "negative"]),
    ({"ms_per_step": "1.5"}, ["ms_per_step='1.5'", "must be a number >= 0, not str"]),
    ({"ms_per_step": [1.5]}, ["ms_per_step=[1.5]", "not list"]),
    ({"ms_per_step": True}, ["ms_per_step=True", "not bool"]),
    ({"roofline_error": "big"}, ["roofline_error='big'", "must be a number"]),
    ({"variant": 4}, ["variant=4", "must be text"]),
    ({"error": ["oom"]}, ["error=['oom']", "must be text"]),
    ({"round_ms": [1.0, -1.0]}, ["round_ms[1]=-1.0", "negative"]),
    ({"round_ms": [1.0, None]}, ["round_ms[1]=None"]),
])
def test_a_bad_value_names_the_file_the_field_and_the_value(change, needles):
    _refused(_doc(rows=[{**ROW, **change}]), *needles)


def test_a_series_and_null_are_fine():
    V.check_results(_doc(rows=[{**ROW, "round_ms": [1.0, 2.0], "iqr_ms": None}]))


def test_a_row_needs_a_value_or_an_error():
    _refused(_doc(rows=[{"kind": "mlp"}]), "rows[0] (kind 'mlp') holds nothing but its kind")
    _refused(_doc(rows=[{"kind": "mlp", "ms_per_step": None}]), "nothing but its kind")
    _refused(_doc(rows=[{"kind": "mlp", "other": 3}]), "none of its table's columns ['variant', 'ms_per_step']")
    V.check_results(_doc(rows=[{"kind": "mlp", "variant": "x", "ms_per_step": None, "error": "OOM"}]))


@pytest.mark.parametrize("meta, needles", [
    ({"device": 123}, ["meta.device=123", "non-empty text"]),
    ({"device": "gpu please"}, ["meta.device='gpu please'", "not a device name"]),
    ({"date": "yesterday"}, ["meta.date='yesterday'", "ISO 8601"]),
    ({"threads": -1}, ["meta.threads=-1", "negative"]),
    ({"sizes": "small"}, ["meta.sizes='small'", "must be an object"]),
    ({"sections_run": "all"}, ["meta.sections_run='all'"]),
])
def test_bad_meta_fields(meta, needles):
    _refused(_doc(**meta), *needles)


def test_missing_meta_fields_are_named():
    doc = _doc()
    doc["meta"] = {}
    msg = _refused(doc, "meta has no 'device', 'device_name', 'dtype', 'torch', 'date'")
    assert "caption" in msg


@pytest.mark.parametrize("section, needles", [
    ("B=4", ["sections['mlp'] must be an object"]),
    ({"sizes": "B=4"}, ["sections['mlp'].sizes='B=4'", "must be an object"]),
    ({"sizes": {"B": {"x": 1}}}, ["sections['mlp'].sizes.B"]),
    ({"columns": "variant"}, ["sections['mlp'].columns='variant'"]),
    ({"note": 3}, ["sections['mlp'].note=3", "must be text"]),
    ({"not_run": "yes"}, ["sections['mlp'].not_run='yes'"]),
    ({"seconds": -1}, ["sections['mlp'].seconds=-1", "negative"]),
    ({"load": {"start": "high"}}, ["sections['mlp'].load.start='high'"]),
])
def test_bad_sections(section, needles):
    _refused(_doc(sections={"mlp": section}), *needles)


def test_depth_is_bounded_without_recursion():
    deep = inner = {}
    for _ in range(V.MAX_DEPTH + 5):
        inner["x"] = {}
        inner = inner["x"]
    _refused(_doc(rows=[{**ROW, "details": deep}]), "nested", f"at most {V.MAX_DEPTH}")
    very = []
    for _ in range(50_000):  # deeper than Python's recursion limit
        very = [very]
    assert [d for _, _, d in V.walk(very)][-1] == 50_000


def test_read_json_names_the_file_for_deep_nesting_and_huge_ints(tmp_path):
    p = tmp_path / "deep.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="deep.json: nested too deeply"):
        records.read_json(p)
    p.write_text("1" * 5000)
    with pytest.raises(ValueError, match="deep.json: not valid JSON"):
        records.read_json(p)


def test_load_results_refuses_nan_written_as_json_tokens(tmp_path):
    p = tmp_path / "r.json"
    doc = _doc(rows=[{**ROW, "ms_per_step": float("nan")}])
    p.write_text(json.dumps(doc))  # Python writes the token NaN, which Python's reader accepts
    with pytest.raises(ValueError, match=r"r.json: rows\[0\] \(kind 'mlp'\).ms_per_step=nan"):
        records.load_results(p)


# ---- training histories ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def history():
    return json.loads(HISTORIES[0].read_text())


@pytest.mark.parametrize("change, needles", [
    (lambda h: h["step_time_s"].__setitem__(3, -0.1), ["step_time_s[3]=-0.1", "negative"]),
    (lambda h: h["val_loss"].__setitem__(0, None), ["val_loss[0] is null in a run that did not diverge"]),
    (lambda h: h["train_loss"].__setitem__(0, "4.2"), ["train_loss[0]='4.2'"]),
    (lambda h: h["steps"].__setitem__(0, 1.5), ["steps[0]=1.5", "integer"]),
    (lambda h: h["val_wall_s"].pop(), ["val_steps, val_loss, val_wall_s must be of one length"]),
    (lambda h: h.update(n_params=0), ["n_params=0"]),
    (lambda h: h.update(diverged="no"), ["diverged='no'"]),
    (lambda h: h["summary"].update(median_step_ms=-5.0), ["summary.median_step_ms=-5.0", "negative"]),
    (lambda h: h.update(model="gpt2"), ["model='gpt2'", "must be an object"]),
])
def test_a_bad_history_names_the_field(history, change, needles):
    h = copy.deepcopy(history)
    change(h)
    with pytest.raises(ValueError) as info:
        V.check_history(h, "runs/h.json")
    assert str(info.value).startswith("runs/h.json: ") and all(n in str(info.value) for n in needles), info.value


def test_a_diverged_history_may_hold_nulls(history):
    h = copy.deepcopy(history)
    h["diverged"], h["train_loss"][-1] = True, None
    V.check_history(h)


def test_cuda_test_rows_are_free_form_but_finite():
    """The device run's rows carry whatever each test recorded (``record_property``), shown as text:
    ``eager_vs_compiled`` is {"false": [loss, norm], ...}, which a step-time rule would refuse."""
    doc = {**_doc(rows=[{"kind": "cuda_test", "test": "t", "outcome": "passed", "seconds": 1.2,
                         "eager_vs_compiled": {"false": [4.1, 0.5], "true": [4.1, 0.5]}, "error": None}],
                  sections={}), "kind": "cuda_tests"}
    V.check_results(doc)
    doc["rows"][0]["eager_vs_compiled"]["true"][0] = float("nan")
    _refused(doc, "rows[0].eager_vs_compiled.true[0]=nan")
    doc["rows"][0]["eager_vs_compiled"]["true"][0], doc["rows"][0]["error"] = 4.1, ["no"]
    _refused(doc, "error=['no']", "must be text")
