"""lessons.own_paths and the suite's own_paths section: rows that say what they measured, at toy
sizes (the speed and memory goals themselves live in the recorded benchmark, not here)."""
import os

import pytest
import torch

from tutorial_lib import cpu_memory as CM
from tutorial_lib.lessons import own_paths as OP
from tutorial_lib.measure import allocator as AL
from tutorial_lib.model import get_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_window_memory_rows_and_the_chunked_backward_peaks_lower():
    res = OP.window_memory([256, 512], window=32, n_head=2, head_dim=16, device="cpu", rounds=1,
                           min_run_time=0.001)
    rows = {(r["impl"], r["seq_len"]): r for r in res["rows"]}
    assert len(rows) == 2 * len(OP.WINDOW_IMPLS) and all(r["error"] is None for r in rows.values())
    now, before, causal = list(OP.WINDOW_IMPLS)[1], list(OP.WINDOW_IMPLS)[2], list(OP.WINDOW_IMPLS)[0]
    for T in (256, 512):
        assert rows[(now, T)]["peak_MB"] < rows[(before, T)]["peak_MB"]  # bytes: deterministic
        assert rows[(causal, T)]["speedup_vs_causal"] == 1.0 and rows[(now, T)]["ms"] > 0
    summary = {s["impl"]: s for s in res["summary"]}
    assert summary[causal]["peak_vs_causal"] == 1.0
    assert summary[now]["peak_vs_causal"] < summary[before]["peak_vs_causal"]
    assert 0.5 < summary[now]["peak_slope"] <= 1.05  # linear in T (the goal), not above


def test_mask_paths_rows():
    rows = OP.mask_paths(128, 16, n_head=2, head_dim=8, device="cpu", rounds=1, min_run_time=0.001)
    assert [r["what"] for r in rows] == ["attention fwd+bwd"] * 2 + ["sdpa's mask on a cache miss"] * 3
    assert all(r["ms"] > 0 and r["peak_MB"] > 0 for r in rows)
    via_bool, direct, bool_alone = rows[2], rows[3], rows[4]
    T = 128
    # before: the float mask and the bool mask it was filled through, both alive at once
    assert via_bool["peak_MB"] * 1e6 >= 4 * T * T + T * T
    assert direct["peak_MB"] * 1e6 < via_bool["peak_MB"] * 1e6  # now: the float mask and small row blocks
    assert bool_alone["peak_MB"] * 1e6 >= T * T


def test_step_mfu_divides_each_round_by_the_peak_timed_in_that_round(monkeypatch):
    """MFU per round = that round's achieved FLOP/s / that round's matmul peak; the row is the median
    with its range. A machine that slows down between rounds (peak and step alike) moves neither."""
    from tutorial_lib.measure import timing
    real, calls = timing.time_fn, {"n": 0}

    def drifting(fn, device, **kw):  # every call of the second round is 3x slower
        t = real(fn, device, **kw)
        calls["n"] += 1
        if calls["n"] > 3:
            t.median_ms *= 3
        return t
    monkeypatch.setattr(timing, "time_fn", drifting)
    res = OP.step_mfu("tiny", 2, 32, {"eager": {"attn_backend": "eager"}, "sdpa": {}}, device="cpu",
                      rounds=2, min_run_time=0.001, peak_sizes=(64,))
    peaks = res["peak"]["per_round_TFLOPs"]
    assert len(peaks) >= 2 and peaks[1] == pytest.approx(peaks[0] / 3, rel=0.5)
    assert res["peak"]["spec_TFLOPs"] is None  # a CPU has no spec figure
    for r in res["rows"]:
        assert r["error"] is None and r["GFLOP"] > 0 and r["rounds"] >= 2
        assert r["MFU_min"] <= r["MFU_measured_peak"] <= r["MFU_max"]
        assert r["achieved_TFLOPs"] == pytest.approx(r["GFLOP"] / 1e3 / (r["ms"] / 1e3))


def test_same_config_spread_finds_one_config_across_sections():
    cfg = get_config("tiny")
    rows = [{"kind": "mlp", "variant": "GELU 4x", "config_fields": cfg.to_dict(), "batch_size": 2, "seq_len": 32,
             "ms_per_step": 100.0},
            {"kind": "flash_model", "variant": "sdpa", "config_fields": cfg.to_dict(), "batch_size": 2,
             "seq_len": 32, "ms_per_step": 110.0},
            {"kind": "mlp", "variant": "GELU 3x", "config_fields": cfg.replace(mlp_ratio=3.0).to_dict(),
             "batch_size": 2, "seq_len": 32, "ms_per_step": 50.0},
            {"kind": "gqa_train", "variant": "MHA", "config_fields": cfg.to_dict(), "batch_size": 4,
             "seq_len": 32, "ms_per_step": 300.0},
            {"kind": "before_after", "variant": "x", "config_fields": cfg.to_dict(), "batch_size": 2,
             "seq_len": 32, "ms_per_step": None, "error": "OOM"}]
    rows.append({"kind": "gqa_train", "variant": "MHA", "config_fields": cfg.replace(n_kv_head=cfg.n_head).to_dict(),
                 "batch_size": 2, "seq_len": 32, "ms_per_step": 105.0})  # n_kv_head = n_head: the same model
    s = OP.same_config_spread(rows, cfg, 2, 32)
    assert [h["section"] for h in s["rows"]] == ["mlp", "flash_model", "gqa_train"]
    assert s["spread"] == pytest.approx(0.1) and s["n"] == 3
    assert OP.same_config_spread(rows[:1], cfg, 2, 32)["spread"] is None


@pytest.mark.parametrize("setting", ["huge_pages", "keep_freed"])
def test_huge_page_ab_runs_each_setting_in_its_own_process(setting):
    r = AL.huge_page_ab("eager_attention", seq_len=64, rounds=1, reps=1, threads=1, setting=setting)
    assert r["setting"] == setting and len(r["rows"]) == 2
    assert r["off_ms"] > 0 and r["on_ms"] > 0 and r["speedup_min"] <= r["speedup"] <= r["speedup_max"]
    on = [x for x in r["rows"] if x["on"]]
    off = [x for x in r["rows"] if not x["on"]]
    if setting == "huge_pages":
        assert {x["thp_env"] for x in on} == {"1"} and {x["thp_env"] for x in off} == {"0"}
    elif CM.glibc() is not None and CM.wanted():
        assert [x["keeps_freed_memory"] for x in on + off] == [True, False]
    if AL.system_thp_mode() in ("madvise", "always") and setting == "huge_pages":
        assert all(x["huge_pages_in_use"] for x in on)
        if AL.system_thp_mode() == "madvise":  # only the variable asks for them
            assert not any(x["huge_pages_in_use"] for x in off)
    with pytest.raises(ValueError, match="workload="):
        AL.huge_page_ab("nope")
    with pytest.raises(ValueError, match="rounds=0"):
        AL.huge_page_ab(rounds=0)
    with pytest.raises(ValueError, match="setting='tcmalloc'"):
        AL.huge_page_ab(setting="tcmalloc")


REFILL = ("import resource, statistics, torch, tutorial_lib; from tutorial_lib import cpu_memory\n"
          "faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
          "x = torch.empty(2**24).fill_(1.0); del x  # 64 MiB: above glibc's largest mmap threshold\n"
          "counts = []\n"
          "for _ in range(5):\n"
          "    f = faults(); x = torch.empty(2**24).fill_(1.0); counts.append(faults() - f); del x\n"
          "print(cpu_memory.KEPT, statistics.median(counts))")


def _refill(**env_changes):
    """(kept?, page faults writing a 64 MiB tensor after the one before was freed: the median of five
    refills), in a fresh process."""
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in (CM.KEEP_ENV, *CM.USER_MALLOC_ENV)}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[1]), THP_MEM_ALLOC_ENABLE="1", **env_changes)
    out = subprocess.run([sys.executable, "-c", REFILL], env=env, capture_output=True, text=True, check=True)
    kept, faults = out.stdout.split()
    return kept == "True", float(faults)


@pytest.mark.skipif(CM.glibc() is None, reason="mallopt is glibc's")
def test_kept_memory_means_a_freed_block_comes_back_without_page_faults():
    """The behaviour cpu_memory exists for, counted in page faults (not time): with it on, a 64 MiB
    tensor written after another was freed reuses mapped pages; with it off, glibc unmaps the
    first, and the second faults every page in again (with 2 MiB pages, 32 of them)."""
    kept, faults = _refill()
    assert kept and faults < 8
    kept, faults = _refill(**{CM.KEEP_ENV: "0"})
    assert not kept and faults >= 32
    kept, _ = _refill(MALLOC_MMAP_MAX_="65536")  # the user's own malloc setting stands
    assert not kept


def test_keep_freed_memory_is_off_where_asked():
    env = {k: "" for k in CM.USER_MALLOC_ENV}
    with pytest.MonkeyPatch.context() as m:
        for k, v in env.items():
            m.setenv(k, v)
        m.setenv(CM.KEEP_ENV, "0")
        assert not CM.wanted()
        m.setenv(CM.KEEP_ENV, "1")
        assert CM.wanted()
        m.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
        assert not CM.wanted()


def test_allocator_settings_are_stamped_on_results():
    from tutorial_lib.measure.records import stamp

    meta = stamp("cpu")
    a = meta["allocator"]
    assert a["threads"] == torch.get_num_threads() and "env" in a
    assert a["huge_pages_requested"] == (os.environ.get(AL.THP_ENV) == "1")
    assert a["keeps_freed_memory"] == CM.KEPT
    row = AL.measure_in_this_process("eager_attention", 16, "tiny", 1, reps=1, threads=1)
    assert row["fresh_GBps"] > 0 and row["touched_GBps"] > 0  # the ceilings' fill probes, in GB/s


@pytest.mark.parametrize("given, expected", [(None, "1"), ("0", "0")])
def test_importing_tutorial_lib_turns_huge_pages_on_unless_told_otherwise(given, expected):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != AL.THP_ENV}
    if given is not None:
        env[AL.THP_ENV] = given
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    code = ("import os, tutorial_lib; from tutorial_lib.measure.allocator import huge_pages_in_use, "
            "huge_pages_requested; print(os.environ['THP_MEM_ALLOC_ENABLE'], huge_pages_requested(), "
            "huge_pages_in_use())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    value, requested, in_use = out.stdout.split()
    assert value == expected and requested == str(expected == "1")
    if AL.system_thp_mode() == "madvise":  # then only the variable brings huge pages
        assert in_use == str(expected == "1")


def test_suite_section_records_every_part(monkeypatch):
    """The suite's own_paths section at smoke sizes writes each part's rows (the huge-page A/B,
    which starts fresh processes, is replaced here; the test above runs it)."""
    from tutorial_lib.guide import suite

    monkeypatch.setattr(OP, "allocator_ab", lambda *a, **k: [{"workload": "stub", "speedup": 1.0}])
    doc = suite.run_suite("guide", profile="smoke", device="cpu", only=["own_paths"], progress=False)
    kinds = {r["kind"] for r in doc["rows"]}
    assert set(suite.OWN_PATHS_KINDS) <= kinds
    assert not any(doc["sections"].get(k, {}).get("error") for k in suite.OWN_PATHS_KINDS)
    spread = [r for r in doc["rows"] if r["kind"] == "own_paths.consistency"]
    assert spread[0]["section"] == "own_paths.consistency_step"  # measured again in this section
