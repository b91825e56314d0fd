"""claims (seed numbers as data, compare), plots (figures from measured data), nbutils."""

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from tutorial_lib import claims as C
from tutorial_lib.lessons import common as nbutils
from tutorial_lib.lessons import profile as plots
from tutorial_lib.measure import cost
from tutorial_lib.model import GPTConfig

CFG = GPTConfig(n_layer=2, n_head=4, n_embd=64, vocab_size=1000, block_size=128, name="t")


SEED_DOC = Path(__file__).resolve().parents[1] / "docs" / "seed" / "BOTTLENECK_SUMMARY.md"
AT_SEED = C.Setting(model="gpt2_small", batch=4, seq_len=512, device="cpu")


def test_every_claim_keeps_the_seed_wording():
    """Each claim's text is the seed's own, found in the copy the repository carries (docs/seed/)."""
    seed = SEED_DOC.read_text()
    for key, c in C.CLAIMS.items():
        if c.section == "Quick Decision Tree" or key.startswith("gqa."):
            continue  # the tree's lines and the GQA table are quoted across line breaks / table cells
        first = c.text.split("  ")[0].split(" │ ")[0]
        assert first in seed, key


def test_the_seed_copy_is_the_seed():
    provenance = (SEED_DOC.parent / "PROVENANCE.md").read_text()
    assert hashlib.sha256(SEED_DOC.read_bytes()).hexdigest() in provenance


def test_compare_ratio_and_verdict():
    r = C.compare("gqa.speedup.kv4", 1.05, where=AT_SEED, spread=(1.02, 1.08), rounds=3)
    assert r["ratio"] == pytest.approx(1.05 / 1.25) and r["verdict"] == "lower"
    assert C.compare("time.lm_head", 0.06, where=AT_SEED)["verdict"] == "agrees"  # inside the 5-8 % range
    assert C.compare("time.lm_head", 0.29, where=AT_SEED)["verdict"] == "higher"
    assert C.compare("mem.total", None, where=AT_SEED)["verdict"] == "n/a"
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
    rows = C.claims_table({"time.attention.core": 0.25, "mem.total": 3.2}, where=AT_SEED)
    text = C.format_table(rows)
    assert "60.0%" in text and "25.0%" in text and "0.42" in text and "lower" in text


def test_flop_shares_in_seed_terms_match_the_cost_model():
    from tutorial_lib.model import get_config
    fwd = cost.flops_by_scope(get_config("gpt2_small"), 4, 512, "forward", "counted")
    s = C.flop_shares_in_seed_terms(fwd)
    assert s["time.lm_head"] == pytest.approx(fwd["lm_head"] / sum(fwd.values()))
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
            plots.flop_vs_time(cost.shares(cost.flops_by_scope(CFG, 1, 32)), prof.shares("forward"))]
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


# ---- verdicts a reader can trust -----------------------------------------------------------------
def test_a_measurement_at_another_setting_gets_no_verdict():
    r = C.compare("gqa.speedup.kv4", 1.26, where=C.Setting(model="gpt2_mini", batch=2, seq_len=256, device="cpu"))
    assert r["verdict"] == "different setting"
    assert "gpt2_mini" in r["why"] and r["why"].endswith("the claim holds at model gpt2_small, B=4, T=512")
    assert r["measured"] == 1.26  # shown, with the difference named
    # the claim's own setting gets its verdict; a claim that states no setting inherits the seed's
    assert C.compare("gqa.speedup.kv4", 1.26, where=AT_SEED, spread=(1.2, 1.3), rounds=3)["verdict"] == "agrees"
    assert C.get("mlp.time").where == C.SEED_SETTING
    # an arithmetic claim about GPT-2 small's shapes holds at any batch and length
    assert C.compare("mlp.params.3x", 768 * 2304, where=C.Setting(model="gpt2_small", batch=1))["verdict"] == "agrees"
    # a loss "@ 1000" needs 1000 steps
    short = C.compare("results.val_loss.before", 3.5, where=dataclasses.replace(AT_SEED, steps=50))
    assert short["verdict"] == "different setting" and short["why"].endswith("the claim holds at steps=1000")
    # no setting given: no verdict either
    assert C.compare("gqa.speedup.kv4", 1.26)["verdict"] == "setting not stated"


def test_a_spread_that_reaches_the_claim_or_one_is_within_noise():
    spread_over_one = C.compare("gqa.speedup.kv4", 1.25, where=AT_SEED, spread=(0.96, 1.30), rounds=5)
    assert spread_over_one["verdict"] == "within noise"  # the median equals the claim; the rounds cannot tell
    partly = C.compare("gqa.speedup.kv4", 1.20, where=AT_SEED, spread=(1.05, 1.30), rounds=5)
    assert partly["verdict"] == "within noise"
    inside = C.compare("gqa.speedup.kv4", 1.25, where=AT_SEED, spread=(1.16, 1.34), rounds=5)
    assert inside["verdict"] == "agrees"  # the whole spread inside 1.25 +- 10 %
    assert C.compare("gqa.speedup.kv4", 1.05, where=AT_SEED, spread=(1.02, 1.07), rounds=5)["verdict"] == "lower"
    loss = C.compare("results.val_loss.after", 3.47, where=dataclasses.replace(AT_SEED, steps=1000),
                     spread=(3.30, 3.60))
    assert loss["verdict"] == "within noise"


def test_a_speedup_above_its_analytic_ceiling_is_flagged():
    r = C.compare("gqa.speedup.kv4", 1.13, where=AT_SEED, ceiling=1.08, spread=(1.10, 1.16), rounds=3)
    assert r["verdict"] == "above the ceiling" and "noise, or a different kernel ran" in r["why"]
    assert C.compare("gqa.speedup.kv4", 1.07, where=AT_SEED, ceiling=1.08, spread=(1.04, 1.09),
                     rounds=3)["verdict"] == "lower"


def test_a_speedup_claim_needs_three_rounds_and_a_range():
    """The one rule for every printed speedup speaks before the claim: a speedup with no range, or
    from fewer than 3 rounds, cannot tell its own noise -- no verdict, whatever its median."""
    assert C.compare("gqa.speedup.kv4", 1.25, where=AT_SEED)["verdict"] == "no verdict"
    two = C.compare("gqa.speedup.kv4", 1.25, where=AT_SEED, spread=(1.2, 1.3), rounds=2)
    assert two["verdict"] == "no verdict" and "2 round(s)" in two["why"]
    assert C.compare("gqa.speedup.kv4", 1.25, where=AT_SEED, spread=(1.2, 1.3), rounds=3)["verdict"] == "agrees"
    # a claim that is not a speedup (a share, a byte count) needs neither
    assert C.compare("time.lm_head", 0.06, where=AT_SEED)["verdict"] == "agrees"


def test_the_table_keeps_notes_and_names_a_different_setting_once():
    """Two rows that quote one claim differ in their note (04's two "Time ~75%" rows); a table
    measured at another setting carries one marker per row and one sentence for all of them."""
    at = C.Setting(model="gpt2_small", batch=1, seq_len=256, device="cpu")
    rows = [C.compare("mlp.time", 0.78, note="MLP alone", where=at),
            C.compare("mlp.time", 0.87, note="whole step", where=at),
            C.compare("gqa.speedup.kv4", 1.07, where=at, spread=(1.02, 1.12), rounds=3)]
    text = C.format_table(rows)
    lines = text.splitlines()
    assert "MLP alone" in lines[2] and "whole step" in lines[3]
    assert sum("different setting (a)" in ln for ln in lines) == 3
    assert sum("measured at gpt2_small, B=1, T=256, cpu" in ln for ln in lines) == 1
    assert lines[-1] == "(a) measured at gpt2_small, B=1, T=256, cpu; the claim holds at B=4, T=512"
    assert "1.07× [1.02–1.12, 3 rounds] faster" in text  # a speedup in its one printed form


def test_verdicts_are_words_and_emoji_become_words():
    rows = C.claims_table({"time.block.attention": 0.2, "time.block.mlp": 0.5}, where=AT_SEED)
    text = C.format_table(rows)
    assert "🔴" in C.get("time.block.attention").text  # the seed's own text is kept as data
    assert "🔴" not in text and "🟠" not in text and "[red]" in text and "[orange]" in text
    assert {r["verdict"] for r in rows} <= set(C.VERDICTS)
