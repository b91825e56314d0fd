"""The one path for every printed speedup (``tutorial_lib.speedups``): the rules, the printed form
and its reading back, the ranking by evidence, and the analytic ceiling it is judged against."""
import pytest

from tutorial_lib import speedups as S
from tutorial_lib.measure import roofline
from tutorial_lib.measure.flops import count_flops
from tutorial_lib.model import get_config
from tutorial_lib.speedups import Speedup


def test_the_rules_in_order():
    assert Speedup(1.20, 1.10, 1.30, 5).verdict == S.FASTER
    assert Speedup(0.90, 0.85, 0.95, 5).verdict == S.SLOWER
    # a range over 1.0: some rounds faster, some slower -- whatever the median says
    assert Speedup(1.09, 0.86, 1.18, 5).verdict == S.WITHIN_NOISE
    assert Speedup(0.977, 0.912, 1.042, 3).verdict == S.WITHIN_NOISE
    # fewer than 3 rounds, or no range, or rounds unknown: no verdict
    assert Speedup(1.07, 1.07, 1.07, 2).verdict == S.NO_VERDICT
    assert Speedup(1.38, None, None, 5).verdict == S.NO_VERDICT
    assert Speedup(1.38, 1.24, 1.61, None).verdict == S.NO_VERDICT
    # above the ceiling: never "faster"
    assert Speedup(1.148, 1.05, 1.38, 3, ceiling=1.126).verdict == S.ABOVE_CEILING
    assert Speedup(1.10, 1.05, 1.15, 3, ceiling=1.126).verdict == S.FASTER
    # noise speaks before the ceiling: a range over 1.0 is within noise even above the ceiling
    assert Speedup(1.09, 0.86, 1.18, 5, ceiling=1.03).verdict == S.WITHIN_NOISE
    assert Speedup(None).verdict == S.NA and Speedup(float("nan"), 1, 1, 3).verdict == S.NA


def test_bad_fields_are_refused_by_name():
    with pytest.raises(ValueError, match="rounds=-1"):
        Speedup(1.0, rounds=-1)
    with pytest.raises(ValueError, match="value='fast'"):
        Speedup("fast")


def test_from_times_is_the_median_of_per_round_ratios():
    s = Speedup.from_times([10.0, 20.0, 12.0], [8.0, 25.0, 10.0])  # ratios 1.25, 0.8, 1.2
    assert (s.value, s.low, s.high, s.rounds) == (pytest.approx(1.2), pytest.approx(0.8), pytest.approx(1.25), 3)
    assert s.verdict == S.WITHIN_NOISE  # the middle round went the other way
    assert Speedup.from_times([], []).verdict == S.NA


def test_from_row_reads_every_recorded_form():
    row = {"speedup": 1.08, "speedup_min": 1.01, "speedup_max": 1.13, "times_ms": [1, 2, 3, 4, 5]}
    assert Speedup.from_row(row).rounds == 5 and Speedup.from_row(row).low == 1.01
    decode = {"speedup_vs_MHA": 1.13, "speedup_range": "1.08–1.53"}
    s = Speedup.from_row(decode, rounds=5, key="speedup_vs_MHA")
    assert (s.value, s.low, s.high) == (1.13, 1.08, 1.53) and s.verdict == S.FASTER
    assert Speedup.from_row({"speedup": 1.07, "speedup_range": "n/a"}).low is None


def test_printed_form_reads_back_and_agrees_with_the_rules():
    cases = [Speedup(1.09, 0.86, 1.18, 5, 1.03), Speedup(1.148, 1.05, 1.38, 3, 1.126), Speedup(1.07, 1.07, 1.07, 2),
             Speedup(1.0675), Speedup(1.08, 1.004, 1.10, 5), Speedup(0.93, 0.88, 0.97, 5), Speedup(1.2, 1.1, 1.3, 1)]
    for s in cases:
        text = s.text()
        found = S.find(f"some prose: {text}, and more")
        assert len(found) == 1 and found[0].consistent(), text
        assert found[0].printed_verdict() == s.verdict
    # 1.004 would print as 1.00 and look like a range touching 1.0: it keeps a third decimal
    assert "[1.004–1.10" in Speedup(1.08, 1.004, 1.10, 5).text()


def test_a_printed_verdict_that_contradicts_the_rules_is_caught():
    lies = ["1.09× [0.86–1.18, 5 rounds] faster",  # the range spans 1.0
            "1.15× [1.05–1.38, 3 rounds; ceiling 1.13×] faster",  # above its ceiling
            "1.07× [1.07–1.07, 2 rounds] faster",  # two rounds
            "0.93× [0.88–0.97, 5 rounds] within noise",  # every round slower
            "1.20× [1.10–1.30, 5 rounds] splendid"]  # no verdict at all
    for text in lies:
        (p,) = S.find(text)
        assert not p.consistent(), text


def test_colours_and_words_come_from_the_verdict():
    assert Speedup(1.2, 1.1, 1.3, 3).colour == S.COLOURS[S.FASTER] != Speedup(1.09, 0.86, 1.18, 5).colour
    assert Speedup(1.09, 0.86, 1.18, 5).fill == S.FILLS[S.WITHIN_NOISE]
    assert Speedup(1 / 0.925, 1.071, 1.093, 3).words() == "faster: 7.5% less time per step"
    assert Speedup(1 / 1.013, 0.973, 0.995, 3).words() == "slower: 1.3% more time per step"
    assert Speedup(1.07, 1.07, 1.07, 2).words() == "no verdict: 2 rounds (3 needed)"
    assert Speedup(1.07, 1.0, 1.1).words() == "no verdict: rounds not recorded"
    assert Speedup(1.07, rounds=5).words() == "no verdict: no range over rounds"


def test_a_within_noise_change_with_the_higher_median_is_not_ranked_first():
    noisy = Speedup(1.30, 0.95, 1.60, 5)  # the higher median, but the rounds disagree on the sign
    steady = Speedup(1.05, 1.02, 1.08, 5)
    capped = Speedup(1.20, 1.10, 1.30, 5, ceiling=1.08)  # faster, by no more than its ceiling
    few = Speedup(1.50, 1.40, 1.60, 2)
    slower = Speedup(0.9, 0.85, 0.95, 5)
    order = S.rank([noisy, few, slower, capped, steady])
    assert order == [steady, capped, noisy, few, slower]
    assert S.trusted_gain(capped) == pytest.approx(1.08)


def test_the_ceiling_is_at_least_the_flop_ratio_counted_by_pytorch():
    """An independent reference: FlopCounterMode's count of the forward and backward. The ceiling
    (the largest of the FLOP, byte and launch ratios) can never be below the FLOP ratio."""
    base = get_config("gpt2_small", n_layer=2)
    three = base.replace(mlp_ratio=3.0)
    counted = [count_flops(c, 1, 64)["fwd"] + count_flops(c, 1, 64)["bwd"] for c in (base, three)]
    assert roofline.speedup_ceiling(base, three, 1, 64) >= counted[0] / counted[1] * (1 - 1e-3)
    assert roofline.speedup_ceiling(base, base, 1, 64) == pytest.approx(1.0)
    # SwiGLU 8/3x: the same matmul FLOPs as GELU 4x, more launches: it cannot make a step faster
    assert roofline.speedup_ceiling(base, base.replace(mlp="swiglu"), 1, 64) == pytest.approx(1.0, abs=0.02)
