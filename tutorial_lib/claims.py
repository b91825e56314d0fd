"""The seed guide's numbers as data, and tables that set each claim beside a measurement.

The seed (``BOTTLENECK_SUMMARY.md``) states many numbers without saying where they were measured;
several are wrong. Every claim is kept here with the seed's exact wording, so notebooks never type
a claimed number by hand either: ``compare("gqa.speedup.kv4", measured)`` returns the claim, the
measurement, their ratio and a verdict; ``claims_table`` does many at once and ``format_table``
prints them. Lessons add their own claims with ``register``.

Conventions: shares are fractions (0.45 = 45 %); a claim stated as a range has ``low``/``high``
and ``value`` at its middle; ``ratio`` = measured / claimed value.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

from tutorial_lib import speedups

SEED = "BOTTLENECK_SUMMARY.md"


@dataclass(frozen=True)
class Setting:
    """Where a number holds: the model, the batch, the length, the training steps and the kind of
    device. None = not stated (a claim) or not applicable (a measurement)."""
    model: Optional[str] = None  # a preset name; the seed's baseline is "gpt2_small"
    batch: Optional[int] = None
    seq_len: Optional[int] = None
    steps: Optional[int] = None  # training steps, for a loss
    device: Optional[str] = None  # "cpu" or "cuda"

    _LABELS = {"model": "", "batch": "B=", "seq_len": "T=", "steps": "steps=", "device": ""}

    def describe(self) -> str:
        parts = [f"{self._LABELS[f.name]}{getattr(self, f.name)}" for f in dataclasses.fields(self)
                 if getattr(self, f.name) is not None]
        return ", ".join(parts) or "any setting"

    def stated(self, names: Iterable[str]) -> List[str]:
        """The fields ``names`` of this setting in words ("B=4", "T=512")."""
        return [f"{self._LABELS[n] or n + ' '}{getattr(self, n)}" for n in names]

    def differences(self, measured: "Setting") -> List[str]:
        """The fields this (claimed) setting states that ``measured`` does not match."""
        out = []
        for f in dataclasses.fields(self):
            want, got = getattr(self, f.name), getattr(measured, f.name)
            if want is not None and got != want:
                label = self._LABELS[f.name] or f"{f.name} "
                out.append(f"{label}{'?' if got is None else got} (claim: {label}{want})")
        return out


def diff_fields(claimed: Setting, measured: Optional[Setting]) -> List[str]:
    """Names of the fields ``claimed`` states that ``measured`` does not match."""
    if measured is None:
        return []
    return [f.name for f in dataclasses.fields(claimed)
            if getattr(claimed, f.name) is not None and getattr(measured, f.name) != getattr(claimed, f.name)]


# The seed states its headline setting once (its memory section); claims that state no setting of
# their own are read at it. The device is never stated.
SEED_SETTING = Setting(model="gpt2_small", batch=4, seq_len=512)
GPT2_SMALL = Setting(model="gpt2_small")  # arithmetic of GPT-2 small's shapes: any batch and length
ANY_SETTING = Setting()  # growth exponents: any model, batch and length

# Words (and plain symbols) for the seed's coloured emoji: many fonts have no glyph for them.
EMOJI_WORDS = {"🔴": "[red]", "🟠": "[orange]", "🟡": "[yellow]", "🟢": "[green]", "✅": "[yes]", "❌": "[no]",
               "⚠️": "[!]", "⚠": "[!]", "🚀": "", "💡": "", "📊": "", "🎯": "", "⚡": ""}


def plain(text: str) -> str:
    """The seed's text with its emoji replaced by words (the seed's copy in docs/ keeps them)."""
    for emoji, word in EMOJI_WORDS.items():
        text = text.replace(emoji, word)
    return text


@dataclass(frozen=True)
class Claim:
    key: str
    text: str  # the seed's exact wording
    value: Optional[float]  # the claimed number (middle of a range); None when qualitative
    unit: str  # "share", "x", "MB", "GB", "tokens/s", "ms", "FLOPs", "params", "loss", ...
    section: str  # the seed's section heading
    low: Optional[float] = None
    high: Optional[float] = None
    of: str = ""  # what a share is a share of ("forward pass", "block", "attention", "MLP")
    setting: str = ""  # the setting the seed states, in its words (e.g. "B=4, T=512")
    note: str = ""  # our remark: what the claim assumes, where it is inconsistent
    where: Setting = SEED_SETTING  # where a measurement must be taken to give it a verdict
    faster: bool = False  # a speedup claim: judged by ``speedups`` first (rounds, range, ceiling)
    time_ratio: bool = False  # a step-time ratio (new / old): judged like the speedup old / new
    tolerance: Optional[float] = None  # relative band around a single claimed value (None: compare's)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CLAIMS: Dict[str, Claim] = {}


def register(claim: Claim, replace: bool = False) -> Claim:
    """Add a claim (lessons add theirs); a duplicate key is an error unless ``replace``."""
    if not replace and claim.key in CLAIMS:
        raise ValueError(f"claim key={claim.key!r} is already registered")
    CLAIMS[claim.key] = claim
    return claim


def _c(key, text, value, unit, section, low=None, high=None, **kw):
    if value is None and low is not None:
        value = (low + high) / 2
    register(Claim(key, text, value, unit, section, low, high, **kw))


# ---- "SINGLE FORWARD PASS TIME BREAKDOWN" ------------------------------------------------------
_S = "Visual Breakdown: Where Time is Spent"
_c("time.embedding", "Embedding Layer (2-3%)", None, "share", _S, 0.02, 0.03, of="forward pass")
_c("time.blocks", "TRANSFORMER BLOCK × 12  (85-90% of total time)", None, "share", _S, 0.85, 0.90,
   of="forward pass")
_c("time.block.attention", "Attention Layer (45-50% of block time)  🔴 BOTTLENECK #1", None, "share",
   _S, 0.45, 0.50, of="block")
_c("time.attention.qkv", "QKV projection: 15%", 0.15, "share", _S, of="attention")
_c("time.attention.core", "Attention computation (O(n²)): 60%  ← SLOWEST PART", 0.60, "share", _S,
   of="attention")
_c("time.attention.out", "Output projection: 15%", 0.15, "share", _S, of="attention")
_c("time.attention.rope", "RoPE + other: 10%", 0.10, "share", _S, of="attention")
_c("time.block.mlp", "MLP Layer (35-40% of block time)  🟠 BOTTLENECK #2", None, "share", _S, 0.35,
   0.40, of="block")
_c("time.mlp.up", "Up projection (768→3072): 45%", 0.45, "share", _S, of="MLP")
_c("time.mlp.act", "GELU activation: 10%", 0.10, "share", _S, of="MLP")
_c("time.mlp.down", "Down projection (3072→768): 45%", 0.45, "share", _S, of="MLP")
_c("time.block.norm", "RMSNorm (5-10% of block time)", None, "share", _S, 0.05, 0.10, of="block")
_c("time.lm_head", "LM Head (5-8%)", None, "share", _S, 0.05, 0.08, of="forward pass")

# ---- "Standard Multi-Head Attention" op counts ---------------------------------------------------
_S = "Problem: Attention Complexity"
_c("ops.qkv", "Linear(768 → 768) × 3  ~1.8M ops", 1.8e6, "ops", _S, setting="B=4, T=512, C=768",
   note="per head per layer, apparently; 2·B·T·C² for one 768→768 projection is 2.4 GFLOPs")
_c("ops.scores", "Q @ K^T for all token pairs  ~134M ops (!)", 134e6, "ops", _S,
   setting="B=4, T=512, d=64", note="= 2·B·T²·d for one head: the FLOPs of Q Kᵀ alone")
_c("ops.out", "Linear(768 → 768)  ~0.6M ops", 0.6e6, "ops", _S, setting="B=4, T=512, C=768")
_c("ops.per_head", "Total per head:  ~136M ops", 136e6, "ops", _S, setting="B=4, T=512")
_c("ops.per_layer", "Total per layer: ~1.6B ops (12 heads)", 1.6e9, "ops", _S, setting="B=4, T=512")
_c("ops.model", "Total model:     ~19B ops (12 layers)", 19e9, "ops", _S, setting="B=4, T=512")
_c("scores.T512", "For T=512: 262,144 attention scores per head", 262_144, "scores", _S,
   where=Setting(seq_len=512))
_c("scores.T1024", "For T=1024: 1,048,576 attention scores per head (4× more!)", 1_048_576,
   "scores", _S, where=Setting(seq_len=1024))

# ---- GQA -----------------------------------------------------------------------------------------
_S = "Combined Impact: Attention Optimization Comparison"
for kv, sp, q in ((4, 1.25, 0.995), (2, 1.40, 0.990), (1, 1.50, 0.980)):
    label = "MQA (extreme)" if kv == 1 else f"GQA ({kv} groups)"
    _c(f"gqa.speedup.kv{kv}", f"{label} │ 12 │ {kv} │ {sp:.2f}×", sp, "x", _S,
       setting="12 query heads", faster=True, note="speedup of what (training step, attention, "
       "decoding) and at which B, T and device is not stated: read at the seed's B=4, T=512")
    _c(f"gqa.quality.kv{kv}", f"{label} │ 12 │ {kv} │ {q * 100:.1f}%", q, "share", _S,
       note="quality metric not stated")
_S = "Solution #1: Grouped-Query Attention (GQA)"
_c("gqa.compute", "Computation: ~67% (33% faster!)", 0.67, "share", _S, of="MHA computation",
   setting="4 KV heads")
_c("gqa.kv_memory", "K/V memory: 3× less", 3.0, "x", _S, setting="4 KV heads", where=GPT2_SMALL)
_c("gqa.quality", "Attention quality: ~99% retained", 0.99, "share", _S)

# ---- MLP -----------------------------------------------------------------------------------------
_S = "Solution #2: Reduce MLP Expansion"
_c("mlp.params.4x", "3072 dim  2.36M params", 2.36e6, "params", _S, setting="one 768→3072→768 MLP",
   note="one 768×3072 matrix is 2.36M; the MLP has two (4.72M)", where=GPT2_SMALL)
_c("mlp.params.3x", "2304 dim  1.77M params", 1.77e6, "params", _S, setting="one 768→2304→768 MLP",
   where=GPT2_SMALL)
_c("mlp.params_fewer", "Parameters: 1.77M (25% fewer!)", 0.25, "share", _S, of="MLP parameters",
   where=GPT2_SMALL)
_c("mlp.time", "Time: ~75% (25% faster!)", 0.75, "share", _S, of="baseline time", time_ratio=True,
   note="the MLP's time; the whole step saves less")

# ---- memory --------------------------------------------------------------------------------------
_S = "Memory Usage Breakdown"
_M = "B=4, T=512, n_heads=12, n_embd=768, n_layers=12"
_c("mem.params", "MODEL PARAMETERS  ~500 MB", 500, "MB", _S, setting=_M)
_c("mem.optimizer", "OPTIMIZER STATE (AdamW)  ~1000 MB  (2× model size for momentum + variance)",
   1000, "MB", _S, setting=_M)
_c("mem.activations", "ACTIVATIONS (forward pass)  🔴 MAJOR MEMORY USER  ~2000 MB", 2000, "MB", _S,
   setting=_M)
_c("mem.attention_per_layer", "Attention matrices: ~70 MB per layer", 70, "MB", _S, setting=_M)
_c("mem.mlp_per_layer", "MLP activations: ~40 MB per layer", 40, "MB", _S, setting=_M)
_c("mem.residual_per_layer", "Residual streams: ~12 MB per layer", 12, "MB", _S, setting=_M)
_c("mem.grads", "GRADIENTS (backward pass)  ~500 MB", 500, "MB", _S, setting=_M)
_c("mem.total", "TOTAL:  ~4 GB", 4, "GB", _S, setting=_M)
_c("mem.flash.activations", "ACTIVATIONS (forward pass)  ← REDUCED!  ~600 MB", 600, "MB", _S,
   setting=_M + ", flash attention")
_c("mem.flash.total", "TOTAL:  ~2.5 GB (38% less memory!)", 2.5, "GB", _S,
   setting=_M + ", flash attention")

# ---- sequence length -----------------------------------------------------------------------------
_S = "Sequence Length Impact"
_c("seq.quadratic", "Quadratic growth means 2× longer sequences = 4× more compute!", 2.0,
   "loglog slope", _S, note="true of the T² term only; the linear layers grow 2×", where=ANY_SETTING)
_c("seq.window", "Sliding Window: O(n × window) - linear in sequence length", 1.0, "loglog slope", _S,
   where=ANY_SETTING)
_c("seq.flash", "Flash Attention: Same O(n²) but much faster constant factors", 2.0,
   "loglog slope", _S, where=ANY_SETTING)
_c("seq.gqa", "GQA/MQA: Reduces coefficient of O(n²) term", None, "", _S, where=ANY_SETTING,
   note="GQA shrinks K/V projections and the KV cache; QKᵀ and AV still cost 2·T²·d per query head")

# ---- expected results ----------------------------------------------------------------------------
_S = "Expected Results: After Implementing GQA + Flash + 3× MLP"
_R = "B=4, T=512 (the seed's setting), device not stated"
_c("results.tokens_per_s.before", "Tokens/second │ 5,000", 5000, "tokens/s", _S, setting=_R,
   note="inconsistent with its own time per step: 2,048 tokens in 51 ms is 40,157 tokens/s")
_c("results.tokens_per_s.after", "Tokens/second │ 7,700", 7700, "tokens/s", _S, setting=_R)
_c("results.tokens_per_s.gain", "Tokens/second │ +54%", 1.54, "x", _S, setting=_R, faster=True)
_c("results.step_ms.before", "Time per step │ 51 ms", 51, "ms", _S, setting=_R)
_c("results.step_ms.after", "Time per step │ 33 ms", 33, "ms", _S, setting=_R)
_c("results.step_ms.change", "Time per step │ -35%", 0.65, "x", _S, setting=_R, time_ratio=True,
   note="51 → 33 ms is -35 %, a 1.55× speedup")
_c("results.peak_mem.before", "Peak memory │ 8.5 GB", 8.5, "GB", _S, setting=_R,
   note="the memory section's total is ~4 GB at the same setting")
_c("results.peak_mem.after", "Peak memory │ 6.0 GB", 6.0, "GB", _S, setting=_R)
_c("results.peak_mem.change", "Peak memory │ -29%", 6.0 / 8.5, "x", _S, setting=_R)
_AT1000 = dataclasses.replace(SEED_SETTING, steps=1000)
# a loss is read to about 1 %: the seed's own before/after differ by 0.02 (0.6 %)
_c("results.val_loss.before", "Val loss @ 1000 │ 3.50", 3.50, "loss", _S, setting=_R, where=_AT1000,
   tolerance=0.01)
_c("results.val_loss.after", "Val loss @ 1000 │ 3.48", 3.48, "loss", _S, setting=_R, where=_AT1000,
   tolerance=0.01)
_c("results.speedup", "Expected speedup: 1.5-2.0× faster training", None, "x", "Action Items",
   1.5, 2.0, faster=True)

# ---- decision tree -------------------------------------------------------------------------------
_S = "Quick Decision Tree"
_c("tree.short", "T < 512 → Implement: 1. GQA 2. 3× MLP 3. Flash", None, "", _S)
_c("tree.long", "T ≥ 512 → Implement: 1. Sliding Window 2. Flash Attn 3. GQA", None, "", _S)
_c("tree.swiglu", "Both paths should also add: • SwiGLU (faster learning)", None, "", _S)
_c("tree.optimizer", "Both paths should also add: • Better optimizer", None, "", _S)


# ---- comparing -----------------------------------------------------------------------------------
def get(key: str) -> Claim:
    if key not in CLAIMS:
        raise ValueError(f"claim key={key!r} is unknown; see tutorial_lib.claims.CLAIMS")
    return CLAIMS[key]


def claimed(key: str) -> Optional[float]:
    """The claimed number of ``key`` (the middle of a range; None for a qualitative claim)."""
    return get(key).value


def keys(prefix: str = "") -> List[str]:
    return [k for k in CLAIMS if k.startswith(prefix)]


VERDICTS = ("agrees", "higher", "lower", "within noise", "above the ceiling", "no verdict",
            "different setting", "setting not stated", "n/a")
ABOVE_CEILING = speedups.ABOVE_CEILING


def compare(claim_key: str, measured: Optional[float], note: str = "", tolerance: float = 0.10,
            where: Optional[Setting] = None, spread: Optional[Sequence[float]] = None,
            ceiling: Optional[float] = None, rounds: Optional[int] = None, exact: bool = False) -> dict:
    """One row: the claim beside a measurement, and a verdict only where one is earned.

    ``where``: the setting of the measurement. A claim is judged only at its own setting
    (``Claim.where``; the seed's headline GPT-2 small, B=4, T=512 when it states none): a
    measurement at another setting is shown with the difference named and verdict
    "different setting"; without ``where`` the verdict is "setting not stated".
    ``spread``: (low, high) of the measurement -- the range over interleaved rounds, or over seeds.
    When it reaches into the claimed range without lying inside it, or (for a "faster" claim)
    includes 1.0, the verdict is "within noise": the measurement cannot tell.
    ``ceiling``: the most the change can give by its analytic cost (FLOPs, bytes); a median above
    it is "above the ceiling" (noise, or a different kernel ran), never "agrees".
    A speedup claim (``Claim.faster``) is judged by ``speedups.judge`` first, the one rule for
    every printed speedup: with fewer than ``speedups.MIN_ROUNDS`` ``rounds`` (the interleaved
    rounds behind ``spread``) or no spread it gets "no verdict"; a spread over 1.0 "within noise";
    a median above ``ceiling`` "above the ceiling". ``exact``: the value is computed, not timed (a
    FLOP or byte ratio): it has no noise, and those rules do not apply.
    Otherwise: "agrees" inside the claimed range (or within the claim's tolerance, else
    ``tolerance``, of a single value), else
    "higher" / "lower". ``ratio`` = measured / claimed value.
    """
    c = get(claim_key)
    ok = measured is not None and not (isinstance(measured, float) and math.isnan(measured))
    ratio = measured / c.value if ok and c.value not in (None, 0) else None
    tol = c.tolerance if c.tolerance is not None else tolerance
    lo = c.low if c.low is not None else (c.value or 0) * (1 - tol)
    hi = c.high if c.high is not None else (c.value or 0) * (1 + tol)
    lo, hi = min(lo, hi), max(lo, hi)
    diff = c.where.differences(where) if where is not None else []
    if spread is not None:
        spread = (min(spread), max(spread))
    # a speedup claim: the one rule for every printed speedup speaks first
    judged = (speedups.judge(*as_speedup(c, measured, spread, rounds, ceiling))
              if (c.faster or c.time_ratio) and ok and not exact else None)
    if not ok or c.value is None:
        verdict = "n/a"
    elif where is None:
        verdict = "setting not stated"
    elif diff:
        verdict = "different setting"
    elif judged in (speedups.NO_VERDICT, speedups.WITHIN_NOISE, speedups.ABOVE_CEILING):
        verdict = "above the ceiling" if judged == speedups.ABOVE_CEILING else judged
    elif ceiling is not None and measured > ceiling * (1 + 1e-9):
        verdict = "above the ceiling"
    elif spread is not None and ((c.faster and spread[0] <= 1.0 <= spread[1])
                                 or (spread[0] <= hi and spread[1] >= lo and not lo <= spread[0] <= spread[1] <= hi)):
        verdict = "within noise"
    elif spread is not None:
        verdict = "agrees" if lo <= spread[0] and spread[1] <= hi else ("higher" if spread[0] > hi else "lower")
    else:
        verdict = "agrees" if lo <= measured <= hi else ("higher" if measured > hi else "lower")
    explain = {"different setting": f"measured at {where.describe() if where else '?'}; the claim holds at "
                                    + ", ".join(c.where.stated(diff_fields(c.where, where))),
               "above the ceiling": f"{ABOVE_CEILING} (ceiling {ceiling:.3g})" if ceiling is not None else "",
               "within noise": (f"the spread {spread[0]:.3g}–{spread[1]:.3g} cannot tell"
                                if spread is not None else ""),
               "no verdict": (f"{rounds} round(s): a speedup needs {speedups.MIN_ROUNDS} and a range"
                              if rounds is not None else "a speedup needs a range over interleaved rounds")
               }.get(verdict, "")
    return {"key": c.key, "claim": plain(c.text), "claimed": c.value, "low": c.low, "high": c.high,
            "unit": c.unit, "of": c.of, "measured": measured if ok else None, "ratio": ratio,
            "spread": list(spread) if spread is not None else None, "ceiling": ceiling, "rounds": rounds,
            "exact": exact,
            "verdict": verdict, "why": explain, "claim_setting": c.where.describe(),
            "measured_setting": where.describe() if where is not None else None,
            "note": note or c.note}


def as_speedup(claim: Claim, measured: float, spread: Optional[Sequence[float]], rounds: Optional[int],
               ceiling: Optional[float]) -> tuple:
    """(value, low, high, rounds, ceiling) of a measurement of a speedup claim as a speedup: a
    step-time ratio (``Claim.time_ratio``) is turned over (old / new), its spread with it."""
    lo, hi = spread if spread is not None else (None, None)
    if claim.time_ratio:
        inv = lambda x: None if not x else 1 / x  # noqa: E731
        return inv(measured), inv(hi), inv(lo), rounds, ceiling
    return measured, lo, hi, rounds, ceiling


def claims_table(measured: Mapping[str, Optional[float]], notes: Optional[Mapping[str, str]] = None,
                 tolerance: float = 0.10, where: Optional[Setting] = None,
                 spreads: Optional[Mapping[str, Sequence[float]]] = None,
                 ceilings: Optional[Mapping[str, float]] = None) -> List[dict]:
    """``compare`` for every key of ``measured`` (in its order), all measured at ``where``."""
    notes, spreads, ceilings = notes or {}, spreads or {}, ceilings or {}
    return [compare(k, v, notes.get(k, ""), tolerance, where, spreads.get(k), ceilings.get(k))
            for k, v in measured.items()]


def _fmt_value(v: Optional[float], unit: str, low=None, high=None) -> str:
    if low is not None and high is not None:
        return f"{_fmt_value(low, unit)}–{_fmt_value(high, unit)}"
    if v is None:
        return "—"
    if unit == "share":
        return f"{100 * v:.1f}%"
    if unit == "x":
        return f"{v:.2f}×"
    if unit in ("ops", "FLOPs", "params") or abs(v) >= 1e5:
        for s, d in (("T", 1e12), ("G", 1e9), ("M", 1e6)):
            if abs(v) >= d:
                return f"{v / d:.3g}{s}"
    if unit == "loss":
        return f"{v:.3f}"
    return f"{v:,.4g} {unit}".strip()


def format_table(rows: Iterable[dict], width: int = 56) -> str:
    """A plain-text table: claim (the seed's words, emoji as words) | claimed | measured (a speedup
    in ``speedups``' printed form; else its spread) | ratio | verdict | note.

    A verdict that needs a reason ("different setting", "within noise", ...) carries a marker,
    (a), (b), ..., and each distinct reason is one sentence under the table -- not the same long
    sentence on every row. The note says what a row measures where two rows quote one claim."""
    rows = list(rows)
    reasons: Dict[str, str] = {}
    body = []
    for r in rows:
        claim = plain(r["claim"])
        text = claim if len(claim) <= width else claim[:width - 1] + "…"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        c = CLAIMS.get(r.get("key"))
        if c is not None and (c.faster or c.time_ratio) and r["measured"] is not None and not r.get("exact"):
            sp = speedups.Speedup(*as_speedup(c, r["measured"], r.get("spread"), r.get("rounds"), r.get("ceiling")))
            meas = (f"{r['measured']:.2f}× the time: " if c.time_ratio else "") + sp.text()
        else:
            meas = _fmt_value(r["measured"], r["unit"])
            if r.get("spread") and r["measured"] is not None:
                meas += f" ({_fmt_value(r['spread'][0], r['unit'])}–{_fmt_value(r['spread'][1], r['unit'])})"
        verdict = r["verdict"]
        if r.get("why"):
            mark = reasons.setdefault(r["why"], chr(ord("a") + len(reasons)))
            verdict += f" ({mark})"
        body.append((text, _fmt_value(r["claimed"], r["unit"], r["low"], r["high"]), meas, ratio, verdict,
                     r.get("note") or ""))
    mw = max([20] + [len(b[2]) for b in body])
    vw = max([7] + [len(b[4]) for b in body])
    notes = any(b[5] for b in body)
    head = f"{'seed claim':<{width}}  {'claimed':>12}  {'measured':>{mw}}  {'ratio':>6}  {'verdict':<{vw}}"
    head += "  note" if notes else ""
    lines = [head, "-" * len(head)]
    for text, claimed_, meas, ratio, verdict, note in body:
        line = f"{text:<{width}}  {claimed_:>12}  {meas:>{mw}}  {ratio:>6}  {verdict:<{vw}}"
        lines.append((line + f"  {note}" if notes and note else line).rstrip())
    lines += [f"({mark}) {why}" for why, mark in reasons.items()]
    return "\n".join(lines)


# ---- measured values in the seed's terms ----------------------------------------------------------
def shares_in_seed_terms(ms: Mapping[str, float], n_layer: int = 12) -> Dict[str, Optional[float]]:
    """The seed's time-breakdown keys from any per-scope amounts (ms, FLOPs, bytes ...).

    ``ms`` maps model scopes (``tutorial_lib.scopes``) to amounts. Shares "of forward pass" are
    of the total; "of block" of attention + MLP + the blocks' norms (the final norm is 1 of the
    2L+1 norm calls, removed by that share); "of attention" / "of MLP" of those groups.
    """
    total = sum(ms.values())
    norm_block = ms.get("norm", 0.0) * (2 * n_layer) / (2 * n_layer + 1)
    att = {k: v for k, v in ms.items() if k.startswith("attention.")}
    mlp = {k: v for k, v in ms.items() if k.startswith("mlp.")}
    a, m = sum(att.values()), sum(mlp.values())
    block = a + m + norm_block
    div = lambda x, y: x / y if y else None  # noqa: E731
    return {
        "time.embedding": div(ms.get("embedding", 0.0), total),
        "time.blocks": div(block, total),
        "time.block.attention": div(a, block),
        "time.attention.qkv": div(att.get("attention.qkv", 0.0), a),
        "time.attention.core": div(att.get("attention.core", 0.0), a),
        "time.attention.out": div(att.get("attention.out", 0.0), a),
        "time.attention.rope": div(att.get("attention.rope", 0.0), a),
        "time.block.mlp": div(m, block),
        "time.mlp.up": div(mlp.get("mlp.up", 0.0), m),
        "time.mlp.act": div(mlp.get("mlp.act", 0.0), m),
        "time.mlp.down": div(mlp.get("mlp.down", 0.0), m),
        "time.block.norm": div(norm_block, block),
        "time.lm_head": div(ms.get("lm_head", 0.0), total),
    }


def time_shares_from_profile(prof, phase: str = "forward", n_layer: int = 12) -> Dict[str, Optional[float]]:
    """The seed's time-breakdown keys measured by a ``ProfileResult`` (its forward pass by default)."""
    return shares_in_seed_terms(prof.ms(phase), n_layer)


def flop_shares_in_seed_terms(amounts: Dict[str, float], n_layer: int = 12) -> Dict[str, Optional[float]]:
    """The same keys from the analytic model's FLOPs per component (``measure.cost.flops_by_scope``,
    or ``elementwise_flops`` for the estimated work of the components without matmuls)."""
    return shares_in_seed_terms({k: v for k, v in amounts.items() if k != "other"}, n_layer)
