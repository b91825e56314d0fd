"""claims (seed numbers as data, compare), plots (figures from measured data), nbutils."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from tutorial_lib import claims as C
from tutorial_lib.lessons import common as nbutils
from tutorial_lib.lessons import profile as plots
from tutorial_lib.measure import flops as F
from tutorial_lib.model import GPTConfig

CFG = GPTConfig(n_layer=2, n_head=4, n_embd=64, vocab_size=1000, block_size=128, name="t")


def test_claims_keep_the_seed_wording():
    seed = open("/work/shared/seed/BOTTLENECK_SUMMARY.md").read() if \
        __import__("os").path.exists("/work/shared/seed/BOTTLENECK_SUMMARY.md") else None
    if seed is None:
        pytest.skip("seed file not available")
    for key in ("time.attention.core", "time.lm_head", "mem.total", "mlp.time", "gqa.kv_memory",
                "results.step_ms.before", "seq.quadratic"):
        text = C.get(key).text
        assert text.split("  ")[0].split(" │ ")[0] in seed, key


def test_compare_ratio_and_verdict():
    r = C.compare("gqa.speedup.kv4", 1.05)
    assert r["ratio"] == pytest.approx(1.05 / 1.25) and r["verdict"] == "lower"
    assert C.compare("time.lm_head", 0.06)["verdict"] == "agrees"  # inside the 5-8 % range
    assert C.compare("time.lm_head", 0.29)["verdict"] == "higher"
    assert C.compare("mem.total", None)["verdict"] == "n/a"
    assert C.compare("mem.total", float("nan"))["measured"] is None
    with pytest.raises(ValueError, match="claim key='nope'"):
        C.compare("nope", 1.0)
    with pytest.raises(ValueError, match="already registered"):
        C.register(C.get("mem.total"))
    assert C.claimed("results.step_ms.before") == 51


def test_expected_results_inconsistency_is_computed():
    tokens = 4 * 512
    assert round(tokens / (C.claimed("results.step_ms.before") / 1e3)) == 40_157
    assert "40,157" in C.get("results.tokens_per_s.before").note


def test_table_text():
    rows = C.claims_table({"time.attention.core": 0.25, "mem.total": 3.2})
    text = C.format_table(rows)
    assert "60.0%" in text and "25.0%" in text and "0.42" in text and "lower" in text


def test_flop_shares_in_seed_terms_match_cost_table():
    from tutorial_lib.model import get_config
    rows = F.cost_table(get_config("gpt2_small"), 4, 512)
    s = C.flop_shares_in_seed_terms(rows)
    assert s["time.lm_head"] == pytest.approx(F.group_shares(rows, by="group")["lm_head"])
    assert s["time.block.mlp"] == pytest.approx(0.60, abs=0.01)
    assert s["time.mlp.up"] == pytest.approx(0.5)  # matmul FLOPs: up and down are equal


def test_fit_loglog_slope():
    T = np.array([128, 256, 512, 1024])
    assert nbutils.fit_loglog_slope(T, 3.0 * T ** 2)[0] == pytest.approx(2.0)
    assert nbutils.fit_loglog_slope(T, 5 + 0 * T)[0] == pytest.approx(0.0, abs=1e-9)
    # failed points are skipped; the tail can be fitted alone
    assert nbutils.fit_loglog_slope(T, [None, 2.0, 4.0, 8.0])[0] == pytest.approx(1.0)
    assert nbutils.fit_loglog_slope(T, [1, 1, 2, 4], last=3)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=">= 2"):
        nbutils.fit_loglog_slope([1, 2], [None, 3])


@pytest.fixture(scope="module")
def prof():
    from tutorial_lib.measure.profile import profile_step
    return profile_step(CFG, 1, 32, device="cpu", steps=1, warmup=1)


def test_figures_from_measured_data(prof, tmp_path):
    from tutorial_lib.measure.memory import memory_breakdown
    figs = [plots.time_breakdown(prof), plots.memory_figure(memory_breakdown(CFG, 1, 32, device="cpu")),
            nbutils.loglog_scaling({"a": ([64, 128, 256], [1, 4, 16]), "failed": ([64], [None])}),
            plots.flop_vs_time(F.group_shares(F.cost_table(CFG, 1, 32), by="scope"), prof.shares("forward"))]
    for i, fig in enumerate(figs):
        assert isinstance(fig, Figure)
        nbutils.save_figure(fig, str(tmp_path / f"f{i}.png"))
        assert (tmp_path / f"f{i}.png").stat().st_size > 5000
    # the bars show the measured shares
    ax = figs[0].axes[2]  # attention panel
    widths = sorted(round(p.get_width(), 6) for p in ax.patches)
    measured = C.time_shares_from_profile(prof, n_layer=2)
    assert round(measured["time.attention.core"], 6) in widths
    legend = figs[2].axes[0].get_legend().get_texts()[0].get_text()
    assert "slope 2.00" in legend


def test_component_rows_give_time_and_flop_shares(prof):
    rows = prof.component_rows()
    assert sum(r["time_share"] for r in rows) == pytest.approx(1.0)
    assert sum(r["flop_share"] for r in rows) == pytest.approx(1.0)
    assert {r["component"] for r in rows if r["flop_share"] > 0} == {
        "attention.qkv", "attention.core", "attention.out", "mlp.up", "mlp.down", "lm_head"}


def test_nbutils():
    src = nbutils.show_source(plots.attention_score_flops)
    assert "def attention_score_flops" in str(src) and "tutorial_lib/lessons/profile.py" in repr(src)
    assert "<div" in src._repr_html_()
    assert "size profile" in nbutils.env_summary("cpu")
    t = nbutils.format_rows([{"a": "x", "b": 1.23456}, {"a": "yy", "b": None}], formats={"b": "{:.2f}"})
    assert t.splitlines()[2].endswith("1.23") and t.splitlines()[3].endswith("—")
    with pytest.raises(ValueError, match="no source"):
        nbutils.show_source(1)


def test_env_summary_warns_when_the_cpu_is_already_busy():
    from tutorial_lib.lessons import common as nbutils

    quiet = nbutils.load_lines("cpu", 2, load=0.3, cores=2)
    busy = nbutils.load_lines("cpu", 2, load=3.7, cores=2)
    assert quiet == ["load average  : 0.3 on 2 cores (last minute, before this notebook's work)"]
    # the previous notebook's 2 threads, just finished, are not a reason to warn
    assert len(nbutils.load_lines("cpu", 2, load=1.9, cores=2)) == 1
    assert busy[0].startswith("load average  : 3.7 on 2 cores") and busy[1].startswith("WARNING")
    assert nbutils.load_lines("cuda:0", 2, load=9.0, cores=2) == []
