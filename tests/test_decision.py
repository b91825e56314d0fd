"""The decision tree ranks by evidence: one measurement per change (the nearest setting, then the
most rounds, named), judged by ``tutorial_lib.speedups``, never a median alone."""
import pytest

from tutorial_lib import speedups
from tutorial_lib.lessons import decision
from tutorial_lib.model import get_config


def _row(kind, variant, speedup=None, lo=None, hi=None, cfg=None, **kw):
    r = {"kind": kind, "variant": variant, "speedup": speedup, "speedup_min": lo, "speedup_max": hi, **kw}
    if cfg is not None:
        r.update(config_fields=cfg.to_dict(), batch_size=2, seq_len=256)
    return r


def _doc(rows, timing="5 interleaved rounds", T=256, path="box.json"):
    kinds = {r["kind"] for r in rows}
    return {"meta": {"device": "cpu", "device_name": "box", "dtype": "float32"}, "_path": path,
            "sections": {k: {"sizes": {"T": T, "timing": timing}} for k in kinds}, "rows": rows}


def test_a_within_noise_change_with_the_higher_median_is_not_ranked_first():
    """The guide once ranked flash first at 1.09x with a range of 0.86-1.18: a range over 1.0
    never ranks above a change whose whole range is above 1.0, whatever the medians."""
    doc = _doc([_row("before_after", "baseline: MHA, GELU 4x, eager", 1.0, 1.0, 1.0),
                _row("before_after", "+ SDPA (flash)", 1.30, 0.86, 1.60),  # higher median, within noise
                _row("before_after", "+ MLP 3x", 1.05, 1.02, 1.08)])
    r = decision.recommend(256, "cpu", "speed", results=[doc])
    assert r.steps[0].key == "mlp3" and r.steps[0].speedup.verdict == speedups.FASTER
    flash = r.payoff("flash")
    assert flash in r.undecided and flash not in r.steps
    assert flash.value > r.steps[0].value  # ... though its median is higher
    text = "\n".join(r.lines())
    assert "1.30× [0.86–1.60, 5 rounds] within noise" in text and "the rounds cannot tell" in text


def test_one_source_per_payoff_the_nearest_setting_then_the_most_rounds():
    """The chunked loss had a 2-round row at T=512 and a 5-round row at T=256: each T reads the
    nearest, and a 2-round row gets no verdict (the guide once listed it as '1.07x (measured)')."""
    lm = _doc([_row("lm_head", "full logits", 1.0), {"kind": "lm_head", "variant": "chunked (recompute)",
                                                       "speedup": 1.0675, "speedup_range": "1.07–1.07"}],
              timing="2 interleaved rounds", T=512, path="a.json")
    ba = _doc([_row("before_after", "baseline: MHA, GELU 4x, eager", 1.0, 1.0, 1.0),
               _row("before_after", "+ chunked loss", 0.933, 0.88, 1.03)], T=256, path="b.json")
    at256 = decision.recommend(256, "cpu", "speed", results=[lm, ba]).payoff("chunked_loss")
    at512 = decision.recommend(512, "cpu", "speed", results=[lm, ba]).payoff("chunked_loss")
    assert at256.value == pytest.approx(0.933) and "b.json: before_after" in at256.source
    assert at256.speedup.verdict == speedups.WITHIN_NOISE and "5 rounds" in at256.source
    assert at512.value == pytest.approx(1.0675) and "a.json: lm_head" in at512.source
    assert at512.speedup.verdict == speedups.NO_VERDICT
    # two rows as near: the one with more rounds
    more = _doc([_row("lm_head", "full logits", 1.0), _row("lm_head", "chunked (recompute)", 0.97, 0.95, 0.99)],
                timing="7 interleaved rounds", T=512, path="c.json")
    assert "c.json" in decision.recommend(512, "cpu", "speed", results=[lm, more]).payoff("chunked_loss").source


def test_a_recorded_speedup_carries_its_ceiling_at_its_own_setting():
    base = get_config("gpt2_mini", attn_backend="eager")
    doc = _doc([_row("before_after", "baseline: MHA, GELU 4x, eager", 1.0, 1.0, 1.0, cfg=base),
                _row("before_after", "+ GQA-4", 1.30, 1.20, 1.40, cfg=base.replace(n_kv_head=4))])
    p = decision.recommend(256, "cpu", "speed", results=[doc]).payoff("gqa")
    assert p.speedup.ceiling is not None and p.speedup.ceiling < 1.1  # GQA's FLOPs allow a few percent
    assert p.speedup.verdict == speedups.ABOVE_CEILING
    assert "ceiling" in p.describe("speed") and p in decision.recommend(256, "cpu", "speed", results=[doc]).steps


def test_predictions_rank_after_measured_gains_and_carry_a_ceiling():
    doc = _doc([_row("before_after", "baseline: MHA, GELU 4x, eager", 1.0, 1.0, 1.0),
                _row("before_after", "+ MLP 3x", 1.02, 1.01, 1.03)])
    r = decision.recommend(4096, "cpu", "speed", results=[doc])  # T=256 measured: too far from 4096
    assert not any(p.measured for p in r.steps)
    r = decision.recommend(256, "cpu", "speed", results=[doc])
    assert r.steps[0].key == "mlp3" and r.steps[0].measured
    assert all(not p.measured and p.ceiling is not None for p in r.steps[1:])


def test_the_figure_draws_ranges_in_the_verdict_s_colour():
    from matplotlib.colors import to_hex
    doc = _doc([_row("before_after", "baseline: MHA, GELU 4x, eager", 1.0, 1.0, 1.0),
                _row("before_after", "+ SDPA (flash)", 1.30, 0.86, 1.60),
                _row("before_after", "+ MLP 3x", 1.05, 1.02, 1.08)])
    tree = decision.branches(256, 1024, "cpu", results=[doc])
    fig = decision.branches_figure(tree, "t")
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert any("1.30× [0.86–1.60] within noise" in t for t in texts)
    ranges = {(round(min(ln.get_xdata()), 2), round(max(ln.get_xdata()), 2)): to_hex(ln.get_color())
              for ln in ax.lines if len(ln.get_xdata()) == 2 and ln.get_linewidth() == 5}
    assert ranges[(0.86, 1.6)] == speedups.COLOURS[speedups.WITHIN_NOISE]
    assert ranges[(1.02, 1.08)] == speedups.COLOURS[speedups.FASTER]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels.index("MLP 4x -> 3x") < labels.index("Flash attention (fused SDPA)")  # best first, from the top
