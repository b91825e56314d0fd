"""The one path for every printed speedup: its verdict, its words, its colour, its rank.

A speedup is base time / variant time (> 1 = faster), measured as the median of per-round ratios
over interleaved rounds (``measure.timing.paired_speedup``), with the min–max of those ratios as
its range. Every table, prose line, figure and guide row that shows a measured speedup builds a
``Speedup`` and prints ``Speedup.text()``; nothing else decides what a speedup means. The rules,
in order:

1. **no verdict** with fewer than ``MIN_ROUNDS`` rounds, or without a range: a ratio cannot tell
   its own noise;
2. **within noise** when the range spans 1.0: some rounds faster, some slower;
3. **above the ceiling** when the median is above the change's analytic ceiling (the most it
   can give by its FLOPs, bytes and launches, ``measure.roofline.speedup_ceiling``): noise, or a
   different kernel ran than the one the cost model describes -- never "faster";
4. else **faster** or **slower**.

The printed form is fixed, so a test can read every speedup back from stored outputs and check
the words against the rules (``find``):

    1.09× [0.86–1.18, 5 rounds; ceiling 1.03×] within noise
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

MIN_ROUNDS = 3
FASTER, SLOWER, WITHIN_NOISE = "faster", "slower", "within noise"
ABOVE_CEILING = "above the ceiling: noise, or a different kernel ran"
NO_VERDICT, NA = "no verdict", "n/a"
VERDICTS = (FASTER, SLOWER, WITHIN_NOISE, ABOVE_CEILING, NO_VERDICT, NA)
# a verdict's colour: strong for lines, bars and markers; light for the fill behind text
COLOURS = {FASTER: "#2e7d32", SLOWER: "#c62828", WITHIN_NOISE: "#757575", ABOVE_CEILING: "#ef6c00",
           NO_VERDICT: "#9e9e9e", NA: "#bdbdbd"}
FILLS = {FASTER: "#d8f0d8", SLOWER: "#f7e3e3", WITHIN_NOISE: "#ececec", ABOVE_CEILING: "#fde5c8",
         NO_VERDICT: "#ffffff", NA: "#ffffff"}
LEGEND = {FASTER: "faster: every round faster", SLOWER: "slower: every round slower",
          WITHIN_NOISE: "within noise: the rounds' range spans 1.0",
          ABOVE_CEILING: "above its analytic ceiling: noise, or a different kernel ran",
          NO_VERDICT: f"no verdict: fewer than {MIN_ROUNDS} rounds", NA: "not measured"}


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def judge(value: Optional[float], low: Optional[float], high: Optional[float], rounds: Optional[int],
          ceiling: Optional[float] = None) -> str:
    """The verdict of a measured speedup by the rules of this module (one of ``VERDICTS``)."""
    if not _finite(value):
        return NA
    if rounds is None or rounds < MIN_ROUNDS or not (_finite(low) and _finite(high)):
        return NO_VERDICT
    if min(low, high) <= 1.0 <= max(low, high):
        return WITHIN_NOISE
    if _finite(ceiling) and value > ceiling * (1 + 1e-9):
        return ABOVE_CEILING
    return FASTER if value > 1.0 else SLOWER


def _num(x: float) -> str:
    """Two decimals, or three where two would print a value that is not 1 as 1.00."""
    s = f"{x:.2f}"
    return f"{x:.3f}" if s == "1.00" and abs(x - 1) >= 0.0005 else s


@dataclass(frozen=True)
class Speedup:
    """A measured speedup: the median of per-round ratios, their range, the rounds, the ceiling.

    ``source``: where it was measured, in words (a results file and its setting, or "measured
    now"), for the places that show one number from somewhere else."""
    value: Optional[float]
    low: Optional[float] = None
    high: Optional[float] = None
    rounds: Optional[int] = None
    ceiling: Optional[float] = None
    source: str = ""

    def __post_init__(self):
        for name in ("value", "low", "high", "ceiling"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool)):
                raise ValueError(f"Speedup.{name}={v!r} must be a number or None")
        if self.rounds is not None and (not isinstance(self.rounds, int) or isinstance(self.rounds, bool)
                                        or self.rounds < 0):
            raise ValueError(f"Speedup.rounds={self.rounds!r} must be a non-negative integer or None")

    @classmethod
    def from_times(cls, base_ms: Sequence[float], ms: Sequence[float], ceiling: Optional[float] = None,
                   source: str = "") -> "Speedup":
        """From per-round times of the baseline and the variant, timed in the same rounds."""
        ratios = [b / t for b, t in zip(base_ms, ms) if b and t and t > 0]
        if not ratios:
            return cls(None, source=source)
        ratios.sort()
        n = len(ratios)
        med = ratios[n // 2] if n % 2 else (ratios[n // 2 - 1] + ratios[n // 2]) / 2
        return cls(med, ratios[0], ratios[-1], n, ceiling, source)

    @classmethod
    def from_row(cls, row: dict, rounds: Optional[int] = None, ceiling: Optional[float] = None,
                 source: str = "", key: str = "speedup") -> "Speedup":
        """From a measurement row: ``key`` (median), ``<key>_min``/``<key>_max`` or a
        ``speedup_range`` text ("0.86–1.18"), and ``rounds`` (else the row's own ``rounds`` or the
        number of its ``times_ms``)."""
        lo, hi = row.get(f"{key}_min", row.get("speedup_min")), row.get(f"{key}_max", row.get("speedup_max"))
        if lo is None and isinstance(row.get("speedup_range"), str):
            parts = re.split(r"\s*[–-]\s*", row["speedup_range"].strip())
            try:
                lo, hi = float(parts[0]), float(parts[1])
            except (IndexError, ValueError):
                lo = hi = None
        n = rounds if rounds is not None else row.get("rounds")
        if n is None and isinstance(row.get("times_ms"), list):
            n = len(row["times_ms"])
        return cls(row.get(key), lo, hi, n, ceiling, source)

    @property
    def verdict(self) -> str:
        return judge(self.value, self.low, self.high, self.rounds, self.ceiling)

    @property
    def colour(self) -> str:
        return COLOURS[self.verdict]

    @property
    def fill(self) -> str:
        return FILLS[self.verdict]

    @property
    def spans_one(self) -> bool:
        return _finite(self.low) and _finite(self.high) and min(self.low, self.high) <= 1.0 <= max(self.low, self.high)

    def verdict_words(self) -> str:
        """The verdict as printed after the number; "no verdict" says why."""
        v = self.verdict
        if v == NO_VERDICT:
            if self.rounds is None:
                return "no verdict: rounds not recorded"
            if self.rounds < MIN_ROUNDS:
                return f"no verdict: {self.rounds} round{'s' if self.rounds != 1 else ''} ({MIN_ROUNDS} needed)"
            return "no verdict: no range over rounds"
        return v

    def words(self) -> str:
        """The verdict for a sentence: "7.4% less time per step" for a gain the rules accept."""
        v = self.verdict
        if v in (FASTER, SLOWER):
            change = 1 / self.value - 1
            return f"{v}: {abs(change):.1%} {'more' if change > 0 else 'less'} time per step"
        return self.verdict_words()

    def text(self) -> str:
        """The printed form: ``1.09× [0.86–1.18, 5 rounds; ceiling 1.03×] within noise``."""
        if not _finite(self.value):
            return NA
        inside = []
        if _finite(self.low) and _finite(self.high):
            inside.append(f"{_num(self.low)}–{_num(self.high)}")
        inside.append("rounds ?" if self.rounds is None else f"{self.rounds} round{'s' if self.rounds != 1 else ''}")
        if len(inside) == 1:
            inside.append("no range")
        ceiling = f"; ceiling {_num(self.ceiling)}×" if _finite(self.ceiling) else ""
        return f"{_num(self.value)}× [{', '.join(inside)}{ceiling}] {self.verdict_words()}"

    def short(self) -> str:
        """Number and range only (for a figure's label, beside a legend of verdict colours)."""
        if not _finite(self.value):
            return NA
        rng = f" [{_num(self.low)}–{_num(self.high)}]" if _finite(self.low) and _finite(self.high) else ""
        return f"{_num(self.value)}×{rng}"

    def rank_key(self) -> Tuple[int, float]:
        """Sort key, best first: ``tier`` of the evidence, then the gain it can be trusted for."""
        return tier(self.verdict, self.low), -trusted_gain(self)


# ---- ranking by evidence ----------------------------------------------------------------------------
TIERS = {FASTER: 0, ABOVE_CEILING: 1, "predicted": 2, WITHIN_NOISE: 3, NO_VERDICT: 4, SLOWER: 5, NA: 6}


def tier(verdict: str, low: Optional[float] = None) -> int:
    """Where a verdict ranks: measured gains (every round faster) first, then gains measured above
    their ceiling (faster, by no more than the ceiling), then predictions, then what a measurement
    cannot tell (within noise, no verdict), then losses. An above-the-ceiling slowdown is a loss."""
    if verdict == ABOVE_CEILING and not (_finite(low) and low > 1.0):
        return TIERS[SLOWER]
    return TIERS[verdict]


def trusted_gain(s: Speedup) -> float:
    """The gain a ranking may count on: the median, capped at the ceiling where there is one."""
    if not _finite(s.value):
        return -math.inf
    return min(s.value, s.ceiling) if _finite(s.ceiling) else s.value


def rank(items: Iterable, key=lambda s: s) -> List:
    """``items`` ordered best first by the evidence of their speedups (``key(item)`` -> Speedup)."""
    return sorted(items, key=lambda it: key(it).rank_key())


# ---- reading printed speedups back ------------------------------------------------------------------
_N = r"(\d+(?:\.\d+)?)"
PRINTED = re.compile(rf"{_N}× \[(?:{_N}–{_N}, )?(?:(\d+) rounds?|rounds \?)(?:, no range)?"
                     rf"(?:; ceiling {_N}×)?\] (?P<words>.*)")


@dataclass(frozen=True)
class Printed:
    """A speedup found in printed text, with the verdict words printed after it."""
    speedup: Speedup
    words: str
    text: str

    def printed_verdict(self) -> Optional[str]:
        for v in sorted(VERDICTS, key=len, reverse=True):
            if self.words.startswith(v):
                return v
        return None

    def consistent(self) -> bool:
        """Do the printed words say what the rules say of the printed numbers? Each number is
        taken as printed, give or take its last digit's rounding."""
        said = self.printed_verdict()
        if said is None:
            return False
        s = self.speedup

        def around(x):
            if x is None:
                return (None,)
            return (x - 0.0051, x, x + 0.0051)
        return any(judge(v, lo, hi, s.rounds, c) == said for v, lo, hi, c in itertools.product(
            around(s.value), around(s.low), around(s.high), around(s.ceiling)))


def find(text: str) -> List[Printed]:
    """Every speedup printed in ``text`` in this module's form."""
    out = []
    for m in PRINTED.finditer(text):
        v, lo, hi, n, c = m.group(1, 2, 3, 4, 5)
        f = lambda x: None if x is None else float(x)  # noqa: E731
        out.append(Printed(Speedup(f(v), f(lo), f(hi), None if n is None else int(n), f(c)),
                           m.group("words"), m.group(0)))
    return out
