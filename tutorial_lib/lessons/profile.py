"""The profiling lesson (01): where a training step's time and memory go, drawn from measured data.

Figures are built with ``matplotlib.figure.Figure`` (not pyplot), so nothing is shown or kept
alive behind the caller's back: a notebook displays the returned figure once, the CLI saves it.

- ``time_breakdown``: the seed's "single forward pass time breakdown" as nested horizontal bars
  (model -> block -> attention / MLP parts), with the seed's claimed ranges marked.
- ``memory_figure``: parameters / gradients / optimizer state / activations, and activations
  by component.
- ``flop_vs_time``: FLOP share beside measured time share per component.
- ``check_attention_score_flops``, ``check_attention_probs_bytes``: the exercises' checkers.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
from matplotlib.figure import Figure

from tutorial_lib import claims as seed_claims
from tutorial_lib.lessons.common import legend_below
from tutorial_lib.measure.memory import fmt_bytes

COLORS = {"embedding": "#8c8c8c", "attention": "#d62728", "mlp": "#ff7f0e", "norm": "#2ca02c",
          "lm_head": "#1f77b4", "loss": "#9467bd", "other": "#bcbd22", "blocks": "#7f7f7f",
          "residual": "#17becf", "optimizer": "#e377c2"}


def _color(name: str) -> str:
    return COLORS.get(name.split(".")[0], COLORS.get(name, "#7f7f7f"))


# ---- time breakdown ---------------------------------------------------------------------------
def time_breakdown(prof, phase: str = "forward", claims: bool = True, title: Optional[str] = None,
                   n_layer: Optional[int] = None) -> Figure:
    """The seed's nested "time breakdown" bars from a ``ProfileResult`` (its forward pass)."""
    return nested_breakdown(
        prof.ms(phase), n_layer or _n_layer_of(prof), claims=claims, what="time",
        title=title or f"{prof.preset}: {phase} time breakdown, B={prof.batch_size}, "
                       f"T={prof.seq_len}, {prof.attn_backend}, {prof.device_name}, {prof.dtype}")


def nested_breakdown(amounts: Mapping[str, float], n_layer: int = 12, claims: bool = True,
                     what: str = "time", title: str = "") -> Figure:
    """Nested bars of per-scope amounts (ms, FLOPs, ...): model level, one block, inside attention
    and inside the MLP; each panel's bars are shares of the level above, as in the seed's figure.
    With ``claims`` the seed's claimed time shares are drawn as black ranges/ticks."""
    L = n_layer
    seed = seed_claims.shares_in_seed_terms(amounts, n_layer=L)
    total = sum(amounts.values()) or 1.0
    top = {"embedding": amounts.get("embedding", 0.0) / total,
           f"transformer blocks ×{L}": seed["time.blocks"] or 0.0,
           "lm_head": amounts.get("lm_head", 0.0) / total,
           "loss": amounts.get("loss", 0.0) / total}
    top["final norm + other"] = max(0.0, 1.0 - sum(top.values()))
    panels = [
        ("model", top, {"embedding": "time.embedding", f"transformer blocks ×{L}": "time.blocks",
                        "lm_head": "time.lm_head"}),
        ("one block", {"attention": seed["time.block.attention"] or 0.0, "mlp": seed["time.block.mlp"] or 0.0,
                       "norm": seed["time.block.norm"] or 0.0},
         {"attention": "time.block.attention", "mlp": "time.block.mlp", "norm": "time.block.norm"}),
        ("attention", {k: seed[f"time.attention.{k}"] or 0.0 for k in ("qkv", "rope", "core", "out")},
         {k: f"time.attention.{k}" for k in ("qkv", "rope", "core", "out")}),
        ("MLP", {k: seed[f"time.mlp.{k}"] or 0.0 for k in ("up", "act", "down")},
         {k: f"time.mlp.{k}" for k in ("up", "act", "down")}),
    ]
    fig = Figure(figsize=(9, 7.5), layout="constrained")
    axes = fig.subplots(len(panels), 1, gridspec_kw={"height_ratios": [len(p[1]) for p in panels]})
    for ax, (name, shares, claim_keys) in zip(axes, panels):
        labels = list(shares)[::-1]
        vals = [shares[k] for k in labels]
        group = {"attention": "attention", "MLP": "mlp"}.get(name)
        cols = [_color(group or k.split(" ")[0]) for k in labels]
        ax.barh(labels, vals, color=cols, alpha=0.85, label="measured")
        for i, (k, v) in enumerate(zip(labels, vals)):
            ax.text(v + 0.01, i, f"{100 * v:.1f}%", va="center", fontsize=8)
            if claims and k in claim_keys:
                c = seed_claims.get(claim_keys[k])
                lo, hi = (c.low, c.high) if c.low is not None else (c.value, c.value)
                ax.plot([lo, hi], [i + 0.32, i + 0.32], color="k", lw=3 if hi > lo else 0,
                        solid_capstyle="butt")
                ax.plot([lo, hi], [i + 0.32, i + 0.32], "k|", ms=8)
        ax.set_xlim(0, 1.05)
        ax.set_title(f"{name} (share of {'the whole pass' if name == 'model' else 'the level above'})",
                     fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel(f"share of {what}" + ("  (black: the seed's claimed time share)" if claims else ""))
    fig.suptitle(title, fontsize=10)
    return fig


def _n_layer_of(prof) -> int:
    return int((getattr(prof, "config_fields", None) or {}).get("n_layer", 12))


# ---- memory -----------------------------------------------------------------------------------
def memory_figure(mb, title: Optional[str] = None, unit: str = "MiB") -> Figure:
    """Two panels for a ``MemoryBreakdown``: bytes by kind, and the activations by component."""
    div = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit]
    kinds = mb.by_kind()
    groups = dict(sorted(mb.activations_by_group().items(), key=lambda kv: kv[1]))
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.2]})
    kind_colors = ["#1f77b4", "#aec7e8", "#ff7f0e", "#d62728"]
    labels = list(kinds)[::-1]
    vals = [kinds[k] / div for k in labels]
    ax1.barh(labels, vals, color=kind_colors[::-1])
    for i, v in enumerate(vals):
        ax1.text(v, i, f" {v:,.1f}", va="center", fontsize=8)
    ax1.set_xlabel(unit)
    ax1.set_xlim(0, max(vals) * 1.25 if max(vals) else 1)
    peak = f"\nCUDA peak allocated {mb.peak_bytes / div:,.0f} {unit}" if mb.peak_bytes else ""
    ax1.set_title(f"by kind (sum {mb.total_bytes / div:,.0f} {unit}){peak}", fontsize=9, loc="left")
    g_vals = [v / div for v in groups.values()]
    ax2.barh(list(groups), g_vals, color="#d62728", alpha=0.8)
    for i, v in enumerate(g_vals):
        ax2.text(v, i, f" {v:,.2f}", va="center", fontsize=8)
    ax2.set_xlabel(unit)
    ax2.set_xlim(0, max(g_vals) * 1.3 if g_vals else 1)
    ax2.set_title("activations saved for backward, by component", fontsize=9, loc="left")
    for ax in (ax1, ax2):
        ax.tick_params(labelsize=8)
    fig.suptitle(title or f"{mb.preset}: memory of one training step, B={mb.batch_size}, "
                 f"T={mb.seq_len}, {mb.attn_backend}, {mb.device_name}, {mb.dtype}", fontsize=10)
    return fig


# ---- FLOPs vs time ----------------------------------------------------------------------------
def flop_vs_time(flop_share: Mapping[str, float], time_share: Mapping[str, float],
                 title: str = "", other_share: Optional[Mapping[str, float]] = None) -> Figure:
    """Grouped horizontal bars per component: share of matmul FLOPs vs share of measured time
    (and optionally the estimated elementwise share). Components in ``time_share``'s order."""
    names = [n for n in time_share if n in flop_share or time_share[n] > 0.005]
    fig = Figure(figsize=(7.5, 0.35 * len(names) + 1.4), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(names))[::-1]
    h = 0.38 if other_share is None else 0.27
    ax.barh(y + h / 2, [flop_share.get(n, 0.0) for n in names], h, label="share of FLOPs (matmul)",
            color="#1f77b4")
    ax.barh(y - h / 2, [time_share.get(n, 0.0) for n in names], h, label="share of measured time",
            color="#d62728")
    if other_share is not None:
        ax.barh(y - 1.5 * h, [other_share.get(n, 0.0) for n in names], h,
                label="share of elementwise ops (estimate)", color="#2ca02c")
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel("share")
    ax.set_title(title, fontsize=9)
    legend_below(ax, ncol=3 if other_share is None else 2)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


# ---- exercises -------------------------------------------------------------------------------
def attention_score_flops(B: int, T: int, H: int, D: int, causal: bool = False) -> int:
    """FLOPs of S = Q K^T for one layer: 2*B*H*T*T*D (causal=True: only the T(T+1)/2 visible pairs)."""
    pairs = T * (T + 1) // 2 if causal else T * T
    return 2 * B * H * D * pairs


def check_attention_score_flops(answer, B: int = 4, T: int = 512, H: int = 12, D: int = 64) -> str:
    """Check a learner's FLOPs for Q K^T of one layer (full T x T); returns a verdict string."""
    want = attention_score_flops(B, T, H, D)
    try:
        got = float(answer)
    except (TypeError, ValueError):
        return f"✗ expected a number, got {answer!r}"
    if got == want:
        return f"✓ correct: 2·B·H·T²·D = {want:,} FLOPs for B={B}, T={T}, H={H}, D={D}"
    hint = ""
    if got == want / 2:
        hint = " (one multiply-add is 2 FLOPs)"
    elif got == attention_score_flops(B, T, H, D, causal=True):
        hint = " (that is the causal half; the kernel computes the full T x T)"
    elif got == 2 * want:
        hint = " (that counts Q K^T and P V together)"
    return f"✗ {got:,.0f} is not right{hint}; try 2 · B · H · T · T · D"


def attention_probs_bytes(B: int, H: int, T: int, bytes_per_element: int = 2) -> int:
    """Bytes of one layer's attention probabilities (B, H, T, T): what eager attention keeps."""
    return B * H * T * T * bytes_per_element


def check_attention_probs_bytes(answer, B: int = 4, H: int = 12, T: int = 512,
                                bytes_per_element: int = 2) -> str:
    """Check a learner's bytes for one layer's (B, H, T, T) probabilities; returns a verdict."""
    want = attention_probs_bytes(B, H, T, bytes_per_element)
    try:
        got = float(answer)
    except (TypeError, ValueError):
        return f"✗ expected a number of bytes, got {answer!r}"
    if got == want:
        return (f"✓ correct: B·H·T²·{bytes_per_element} = {want:,} bytes = {fmt_bytes(want)} per layer "
                f"(B={B}, H={H}, T={T})")
    hint = ""
    if got == want // bytes_per_element:
        hint = " (that is elements; multiply by the bytes per element)"
    elif got == want // H:
        hint = " (that is one head; there are H of them)"
    elif got == want // B:
        hint = " (that is one sequence; there are B of them)"
    return f"✗ {got:,.0f} is not right{hint}; try B · H · T · T · bytes_per_element"
