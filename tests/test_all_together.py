"""The closing notebook's functions (tutorial_lib.lessons.all_together)."""
import json
import math

import pytest

from tutorial_lib import claims, speedups
from tutorial_lib.lessons import all_together as AT
from tutorial_lib.lessons.common import QUALITY_AFTER, QUALITY_BASELINE, quality_runs, recorded_quality
from tutorial_lib.measure import roofline
from tutorial_lib.sizes import get_sizes

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_sizes_per_profile():
    for name in ("smoke", "cpu", "gpu"):
        s = get_sizes(name).final
        assert s.short_seq < s.long_seq and s.long_seq >= 256 and s.long_window < s.long_seq
    assert get_sizes("gpu").final.short_seq == 512  # the seed's own B=4, T=512
    assert get_sizes("gpu").final.short_batch == 4


def test_variants_are_the_seed_s_changes():
    s = get_sizes("cpu").final
    v = AT.short_variants(s)
    base, _ = v[AT.BEFORE_LABEL]
    assert (base.attn_backend, base.kv_heads, base.mlp, base.ratio, base.window) == ("eager", 12, "gelu", 4.0, None)
    after, _ = v[AT.AFTER_LABEL]
    assert (after.attn_backend, after.kv_heads, after.mlp, after.ratio) == ("sdpa", 4, "gelu", 3.0)
    sw, _ = v["+ SwiGLU 8/3x"]
    assert sw.mlp == "swiglu" and math.isclose(sw.ratio, 8 / 3)
    # every single change differs from the baseline in exactly one field (or two for SwiGLU)
    for label in ("+ GQA-4", "+ SDPA (flash)", "+ MLP 3x", "+ chunked loss"):
        c, _ = v[label]
        diff = {k for k, a in base.to_dict().items() if c.to_dict()[k] != a and k != "name"}
        assert len(diff) == 1, (label, diff)
    assert not any("window" in k for k in v)  # T = 256 < 512: the seed puts no window here
    assert not any(comp for _, comp in v.values())
    g = AT.short_variants(get_sizes("gpu").final)  # T = 512: window and compile join
    assert any("window" in k for k in g) and any(comp for _, comp in g.values())
    long = AT.long_variants(s)
    w, _ = long[f"+ window W={s.long_window} (local)"]
    assert w.attn_backend == "local" and w.window == s.long_window and w.block_size >= s.long_seq


def test_seed_table_arithmetic_finds_the_inconsistent_row():
    a = AT.seed_table_arithmetic()
    assert a["tokens_per_step"] == 2048
    assert round(a["tps_from_ms_before"]) == 40157  # 2,048 tokens in 51 ms
    assert math.isclose(a["tokens_per_step_implied_before"], 255.0)  # 5,000 tok/s x 51 ms
    assert math.isclose(a["tps_gain"], 1.54)


def _row(label, ms, speedup, mem):
    return {"variant": label, "median_ms": ms, "tokens_per_s": 2048 / (ms / 1e3), "speedup": speedup,
            "memory_bytes_shown": mem}


def test_expected_results_rows_and_verdicts():
    at_seed = claims.Setting(model="gpt2_small", batch=4, seq_len=512, device="cuda")
    at_1000 = claims.Setting(model="gpt2_small", batch=4, seq_len=512, steps=1000, device="cuda")
    before, after = _row("b", 51.0, 1.0, 8.5e9), _row("a", 33.0, 51 / 33, 6.0e9)
    rows = {r["key"]: r for r in AT.expected_results(before, after, 3.50, 3.48, where=at_seed, val_where=at_1000)}
    assert rows["results.step_ms.before"]["verdict"] == "agrees"
    assert math.isclose(rows["results.tokens_per_s.before"]["measured"], 2048 / 0.051)
    assert rows["results.tokens_per_s.before"]["verdict"] == "higher"  # the seed's own 5,000 is off
    assert math.isclose(rows["results.peak_mem.change"]["measured"], 6.0 / 8.5)
    assert rows["results.val_loss.after"]["verdict"] == "agrees"
    missing = AT.expected_results(before, {"variant": "a", "error": "OOM"}, None, None, where=at_seed)
    assert {r["verdict"] for r in missing if r["key"].endswith("after")} == {"n/a"}
    # measured elsewhere: shown, no verdict; a speedup whose rounds span 1.0: within noise
    cpu = claims.Setting(model="gpt2_small", batch=1, seq_len=256, device="cpu")
    elsewhere = {r["key"]: r for r in AT.expected_results(before, after, 4.1, 4.0, where=cpu,
                                                           val_where=claims.Setting(model="gpt2_mini", steps=80))}
    assert {r["verdict"] for r in elsewhere.values()} <= {"different setting", "n/a"}
    noisy = dict(after, speedup=1.05, speedup_min=0.97, speedup_max=1.12, rounds=3)
    gain = next(r for r in AT.expected_results(before, noisy, None, None, where=at_seed)
                if r["key"] == "results.tokens_per_s.gain")
    assert gain["verdict"] == "within noise"


def test_recorded_quality_reads_the_suite_s_rows(tmp_path):
    doc = {"schema_version": 1, "meta": {"device": "cpu", "device_name": "box", "date": "2026-12-01T00:00",
                                         "dtype": "float32", "torch": "2.5.0"},
           "sections": {"quality": {"sizes": {"model": "gpt2_mini", "B": 8, "T": 64, "steps": 80}}},
           "rows": [{"kind": "quality", "variant": QUALITY_BASELINE, "val_loss": 6.1, "seeds": 3},
                    {"kind": "quality", "variant": QUALITY_AFTER, "val_loss": 6.0, "seeds": 3}]}
    (tmp_path / "box.json").write_text(json.dumps(doc))
    rec = recorded_quality("cpu", results_dir=tmp_path)
    assert rec.rows[QUALITY_AFTER]["val_loss"] == 6.0 and "box" in rec.caption
    assert rec.setting == claims.Setting(model="gpt2_mini", batch=8, seq_len=64, steps=80, device="cpu")
    assert recorded_quality("cuda", results_dir=tmp_path).rows == {}  # a CPU file says nothing of a GPU


def test_measure_and_quality_smoke():
    s = get_sizes("smoke").final
    v = dict(list(AT.short_variants(s).items())[:2])
    rows = AT.measure(v, 1, 32, s, device="cpu", memory=True)
    assert [r["variant"] for r in rows] == list(v)
    assert all(r["error"] is None and r["median_ms"] > 0 and r["memory_bytes_shown"] > 0 for r in rows)
    assert rows[0]["speedup"] == 1.0 and AT.speedup_text(rows[0]) == "baseline"
    # every other row: its speedup in the one printed form, with its rounds and its analytic ceiling
    sp = rows[1]["speedup_of"]
    assert sp.rounds == s.rounds and sp.ceiling == pytest.approx(
        roofline.speedup_ceiling(v[AT.BEFORE_LABEL][0], list(v.values())[1][0], 1, 32))
    assert speedups.find(AT.speedup_text(rows[1]))[0].consistent()
    q = get_sizes("smoke").quality
    variants = AT.quality_variants(q)
    runs = quality_runs(variants, q, seeds=(0,), steps=2, eval_every=1, device="cpu")
    assert list(runs) == list(variants) and variants["baseline, Muon optimizer"][1] == "muon"
    for label, (h,) in runs.items():
        assert not isinstance(h, str), (label, h)
        assert h.val_steps[-1] == 2 and all(math.isfinite(x) for x in h.val_loss)
    (win,) = [h for k, (h,) in runs.items() if "window" in k]
    assert win.model["attn_backend"] == "local" and win.model["window"] == q.window


def test_compiled_variants_are_timed_in_the_same_rounds_as_eager(monkeypatch):
    """One measure_variants call times every variant, the torch.compile one among them (so its
    speedup is a per-round ratio like the others), not a separate measurement after the rest."""
    seen = []

    def fake(configs, batch_size, seq_len, compiled=(), **kw):
        seen.append((list(configs), list(compiled)))
        return [{"variant": k, "median_ms": 1.0, "speedup": 1.0, "error": None} for k in configs]

    monkeypatch.setattr(AT, "measure_variants", fake)
    s = get_sizes("gpu").final
    v = AT.short_variants(s)
    rows = AT.measure(v, 1, 32, s, device="cpu", memory=False)
    assert seen == [(list(v), ["... + torch.compile"])]
    assert [r["compile"] for r in rows] == [label == "... + torch.compile" for label in v]


def test_check_tokens_per_second():
    assert AT.check_tokens_per_second(lambda B, T, ms: B * T / (ms / 1e3)).passed
    r = AT.check_tokens_per_second(lambda B, T, ms: B * T / ms)
    assert not r.passed and "millisecond" in r.message
    r = AT.check_tokens_per_second(lambda B, T, ms: T / (ms / 1e3))
    assert not r.passed and "batch_size x seq_len" in r.message


def test_claims_keys_exist():
    for key in ("results.tokens_per_s.before", "results.step_ms.after", "results.peak_mem.change",
                "results.val_loss.after", "tree.short", "tree.long", "tree.swiglu", "tree.optimizer"):
        claims.get(key)
