"""The closing notebook (07) as functions: every change alone and combined, measured, beside the
seed's "Expected Results" table and its decision tree.

Sizes: ``sizes.Final`` (a short and a long sequence setting) and ``sizes.Quality``.

- ``short_variants`` / ``long_variants``: the seed's baseline (MHA, GELU 4x, eager attention), each
  single change, and the combinations (GQA-4 + SDPA + 3x MLP, + SwiGLU, + the chunked loss of
  lesson 08, + window where T >= 512, + ``torch.compile`` where it is cheap to compile).
- ``measure``: training-step time (interleaved rounds, ``common.measure_variants``) and memory;
  each speedup a ``speedups.Speedup`` with its range, rounds and analytic ceiling
  (``measure.roofline.speedup_ceiling``), printed and judged by the one path.
- ``quality_variants``: the configs of the quality runs (``common.quality_runs`` runs them; the
  notebook shows the guide suite's recorded runs, ``common.recorded_quality``).
- ``seed_table_arithmetic``: what the seed's own table implies (its inconsistent tokens/s row).
- ``expected_results``: the seed's table with a claimed and a measured column.
- the seed's decision tree, both branches, is ``lessons.decision.branches`` / ``branches_figure``:
  from the recorded evidence, the same payoffs as the guide's table.
- ``check_tokens_per_second``: exercise checker.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

from tutorial_lib import claims, settings
from tutorial_lib.lessons import lm_head
from tutorial_lib.lessons.common import CheckResult, call_checked, measure_variants
from tutorial_lib.measure.ceilings import Ceilings
from tutorial_lib.measure.roofline import speedup_ceiling
from tutorial_lib.model import GPTConfig, get_config
from tutorial_lib.sizes import Final, Quality
from tutorial_lib.speedups import Speedup

BASELINE = {"attn_backend": "eager", "n_kv_head": None, "mlp": "gelu", "mlp_ratio": 4.0, "window": None}
AFTER = {"attn_backend": "sdpa", "n_kv_head": 4, "mlp_ratio": 3.0}  # the seed's "GQA + Flash + 3x MLP"
AFTER_SWIGLU = dict(AFTER, mlp="swiglu")  # ... + SwiGLU at 3x
CHUNKED_LOSS = lm_head.DEFAULT_IMPL  # lesson 08: the head and the loss chunk by chunk, no full logits
BEFORE_LABEL, AFTER_LABEL = "baseline: MHA, GELU 4x, eager", "GQA-4 + SDPA + MLP 3x"


# ---- the variants ----------------------------------------------------------------------------
def _cfg(preset: str, T: int, **changes) -> GPTConfig:
    base = get_config(preset)
    return base.replace(**dict(BASELINE, block_size=max(base.block_size, T), **changes))


def short_variants(s: Final) -> Dict[str, Tuple[GPTConfig, bool]]:
    """{label: (config, compile)} at the short setting: baseline, single changes, combinations."""
    T, P = s.short_seq, s.preset
    v = {
        BEFORE_LABEL: _cfg(P, T),
        "+ GQA-4": _cfg(P, T, n_kv_head=4),
        "+ SDPA (flash)": _cfg(P, T, attn_backend="sdpa"),
        "+ MLP 3x": _cfg(P, T, mlp_ratio=3.0),
        "+ SwiGLU 8/3x": _cfg(P, T, mlp="swiglu", mlp_ratio=None),
        AFTER_LABEL: _cfg(P, T, **AFTER),
        "... + SwiGLU 3x": _cfg(P, T, **AFTER_SWIGLU),
        "+ chunked loss": _cfg(P, T, loss_impl=CHUNKED_LOSS),
        "... + SwiGLU 3x + chunked loss": _cfg(P, T, **AFTER_SWIGLU, loss_impl=CHUNKED_LOSS),
    }
    out = {k: (c, False) for k, c in v.items()}
    if T >= 512:
        W = min(s.long_window, T // 2)
        out[f"... + window W={W} (local)"] = (_cfg(P, T, **dict(AFTER_SWIGLU, attn_backend="local",
                                                                  window=W)), False)
    if s.compile:
        out["... + torch.compile"] = (v["... + SwiGLU 3x"], True)
    return out


def long_variants(s: Final) -> Dict[str, Tuple[GPTConfig, bool]]:
    """The seed's T >= 512 branch at the long setting: window, flash, GQA alone and combined."""
    T, P, W = s.long_seq, s.preset, s.long_window
    v = {
        BEFORE_LABEL: _cfg(P, T),
        f"+ window W={W} (local)": _cfg(P, T, attn_backend="local", window=W),
        "+ SDPA (flash)": _cfg(P, T, attn_backend="sdpa"),
        "+ GQA-4": _cfg(P, T, n_kv_head=4),
        "GQA-4 + SDPA + 3x + SwiGLU": _cfg(P, T, **AFTER_SWIGLU),
        f"... + window W={W} (local)": _cfg(P, T, **dict(AFTER_SWIGLU, attn_backend="local", window=W)),
    }
    return {k: (c, False) for k, c in v.items()}


# the guide suite's before/after section: (label, GPTConfig changes on the suite's model)
SUITE_VARIANTS = (
    (BEFORE_LABEL, {"attn_backend": "eager"}),
    ("+ GQA-4", {"attn_backend": "eager", "n_kv_head": 4}),
    ("+ SDPA (flash)", {"attn_backend": "sdpa"}),
    ("+ MLP 3x", {"attn_backend": "eager", "mlp_ratio": 3.0}),
    ("GQA-4 + SDPA + 3x (the seed's 'after')", dict(AFTER)),
    ("... + SwiGLU 3x", dict(AFTER_SWIGLU)),
    ("+ chunked loss", {"attn_backend": "eager", "loss_impl": CHUNKED_LOSS}),
)


# ---- measuring -------------------------------------------------------------------------------
def measure(variants: Dict[str, Tuple[GPTConfig, bool]], batch_size: int, seq_len: int,
            s: Final, device=None, memory: bool = True, rounds: Optional[int] = None,
            ceilings: Optional[Ceilings] = None) -> List[dict]:
    """Training step per variant: ms, tokens/s, speedup over the first (paired per round), memory.

    Every variant, compiled ones included, is timed in the same interleaved rounds
    (``common.measure_variants``; a ``torch.compile`` variant compiles in its untimed first call),
    so each speedup is the median of per-round ratios, with its range. ``row["speedup_of"]`` is
    that speedup as a ``speedups.Speedup`` with its analytic ceiling (the cost model at these
    sizes, on ``ceilings`` where given; none for a compiled variant, whose fused kernels the
    model does not describe) -- print it with ``.text()``.
    """

    configs = {label: cfg for label, (cfg, _) in variants.items()}
    compiled = [label for label, (_, comp) in variants.items() if comp]
    rows = {r["variant"]: r for r in measure_variants(configs, batch_size, seq_len, rounds=rounds or s.rounds,
                                                        min_run_time=s.min_run_time, device=device,
                                                        memory=memory, compiled=compiled)}
    dev = settings.resolve(device)[0]
    base_label, (base_cfg, _) = next(iter(variants.items()))
    out = []
    for label, (cfg, comp) in variants.items():
        r = dict(rows[label])
        r.update(config=cfg.describe(), compile=comp, batch_size=batch_size, seq_len=seq_len)
        mem = r.get("peak_bytes") or r.get("memory_bytes")
        r["memory_bytes_shown"] = mem
        if not r.get("error") and label != base_label:
            ceiling = None if comp else speedup_ceiling(base_cfg, cfg, batch_size, seq_len, r.get("dtype", "float32"),
                                                        dev.type, ceilings)
            r["speedup_of"] = Speedup.from_row(r, ceiling=ceiling)
        out.append(r)
    return out


def speedup_text(row: dict) -> str:
    """A measured row's speedup in the one printed form; "baseline" for the first row."""
    if row.get("error"):
        return "n/a"
    return row["speedup_of"].text() if row.get("speedup_of") is not None else "baseline"


def quality_variants(q: Quality) -> Dict[str, Tuple[GPTConfig, str]]:
    """{label: (config, optimizer)} of the quality runs at sizes ``q`` (``common.quality_runs``
    runs them): the baseline, the seed's combination, + SwiGLU, + a window, and Muon. SDPA
    everywhere (eager and SDPA compute the same function); the window runs on ``local``."""
    base = get_config(q.preset, attn_backend="sdpa")
    after = base.replace(n_kv_head=4, mlp_ratio=3.0)
    swiglu = after.replace(mlp="swiglu")
    return {
        BEFORE_LABEL.replace(", eager", ""): (base, "adamw"),
        AFTER_LABEL.replace(" + SDPA", ""): (after, "adamw"),
        "... + SwiGLU 3x": (swiglu, "adamw"),
        f"... + window W={q.window}": (swiglu.replace(attn_backend="local", window=q.window), "adamw"),
        "baseline, Muon optimizer": (base, "muon"),
    }


# ---- the seed's table ------------------------------------------------------------------------
def seed_table_arithmetic(batch_size: int = 4, seq_len: int = 512) -> dict:
    """What the seed's Expected Results imply at its own setting (B=4, T=512: 2,048 tokens/step)."""

    tokens = batch_size * seq_len
    before_ms, after_ms = claims.get("results.step_ms.before").value, claims.get("results.step_ms.after").value
    before_tps = claims.get("results.tokens_per_s.before").value
    after_tps = claims.get("results.tokens_per_s.after").value
    return {
        "tokens_per_step": tokens,
        "tps_from_ms_before": tokens / (before_ms / 1e3),
        "tps_from_ms_after": tokens / (after_ms / 1e3),
        "tokens_per_step_implied_before": before_tps * before_ms / 1e3,
        "tokens_per_step_implied_after": after_tps * after_ms / 1e3,
        "tps_gain": after_tps / before_tps,
        "ms_gain": before_ms / after_ms,
        "claimed_before_tps": before_tps, "claimed_after_tps": after_tps,
        "claimed_before_ms": before_ms, "claimed_after_ms": after_ms,
    }


def expected_results(before: dict, after: dict, val_before: Optional[float], val_after: Optional[float],
                     where: claims.Setting, val_where: Optional[claims.Setting] = None,
                     val_spreads: Optional[Tuple[Optional[Tuple[float, float]], ...]] = None) -> List[dict]:
    """The seed's "Expected Results" rows (``claims`` keys ``results.*``) beside our measurements.

    ``before`` / ``after``: rows of ``measure`` (the baseline and GQA-4 + SDPA + 3x), measured at
    ``where``; the validation losses come from quality runs at ``val_where`` (mean over seeds,
    ``val_spreads`` = their (low, high) each). A row gets a verdict only at the claim's own setting
    (``claims.compare``); the speedup's spread over rounds decides "within noise". Memory is the
    CUDA allocator's peak on a GPU; on a CPU, the exact sum of parameters, gradients, optimizer
    state and saved activations (no allocator peak exists there), in GB.
    """

    def gb(r):
        m = r.get("memory_bytes_shown")
        return m / 1e9 if m else None

    def ratio(a, b):
        return a / b if a is not None and b else None

    b_tps, a_tps = before.get("tokens_per_s"), after.get("tokens_per_s")
    b_ms, a_ms = before.get("median_ms"), after.get("median_ms")
    measured = {
        "results.tokens_per_s.before": b_tps, "results.tokens_per_s.after": a_tps,
        "results.tokens_per_s.gain": after.get("speedup") or ratio(a_tps, b_tps),
        "results.step_ms.before": b_ms, "results.step_ms.after": a_ms,
        "results.step_ms.change": (1 / after["speedup"]) if after.get("speedup") else ratio(a_ms, b_ms),
        "results.peak_mem.before": gb(before), "results.peak_mem.after": gb(after),
        "results.peak_mem.change": ratio(gb(after), gb(before)),
        "results.val_loss.before": val_before, "results.val_loss.after": val_after,
    }
    gain = after.get("speedup")
    spread = ((after["speedup_min"], after["speedup_max"]) if after.get("speedup_min") is not None else None)
    rounds = len(after["times_ms"]) if after.get("times_ms") else after.get("rounds")
    vb, va = val_spreads or (None, None)
    rows = []
    for key, value in measured.items():
        if key.startswith("results.val_loss"):
            rows.append(claims.compare(key, value, where=val_where, spread=vb if key.endswith("before") else va))
        elif key == "results.tokens_per_s.gain":
            rows.append(claims.compare(key, value, where=where, spread=spread, rounds=rounds))
        elif key == "results.step_ms.change" and gain:
            rows.append(claims.compare(key, value, where=where, spread=spread and (1 / spread[1], 1 / spread[0]),
                                       rounds=rounds))
        else:
            rows.append(claims.compare(key, value, where=where))
    return rows


# ---- exercise --------------------------------------------------------------------------------
def check_tokens_per_second(fn: Callable):
    """Check ``fn(batch_size, seq_len, ms_per_step)`` -> tokens per second of a training step."""

    name = "tokens_per_second"
    cases = [(4, 512, 51.0), (1, 256, 1000.0), (8, 128, 12.5), (16, 1024, 250.0)]
    for B, T, ms in cases:
        got, err = call_checked(name, fn, B, T, ms)
        if err is not None:
            return err
        want = B * T / (ms / 1e3)
        if isinstance(got, (int, float)) and abs(got - want) <= 1e-6 * want:
            continue
        if isinstance(got, (int, float)) and abs(got - B * T / ms) <= 1e-6 * want / 1e3:
            return CheckResult(name, False, f"({B}, {T}, {ms} ms): {got:.4g} is tokens per *millisecond*;"
                               " convert the step time to seconds")
        if isinstance(got, (int, float)) and abs(got - T / (ms / 1e3)) <= 1e-6 * want:
            return CheckResult(name, False, f"({B}, {T}, {ms} ms): {got:.4g} counts one sequence; a step "
                               "processes batch_size x seq_len tokens")
        return CheckResult(name, False, f"({B}, {T}, {ms} ms): got {got!r}, expected {want:.1f}")
    return CheckResult(name, True, f"all {len(cases)} cases match batch * T / seconds", len(cases))
