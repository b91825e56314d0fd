"""Figures for the sliding-window lesson (06) and the closing notebook (07). Each returns a Figure.

- ``window_work_figure``: which (query, key) scores each implementation computes, keeps or masks:
  full causal, a band mask on full attention, and the blocked local path.
- ``receptive_field_figure``: how far back the last token can see after 1..L windowed layers.
- ``loss_curves``: validation loss vs steps and vs training time for several runs.
- ``decision_tree_figure``: the seed's decision tree redrawn with measured payoffs.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

# cell states of a work grid
SKIPPED, MASKED, USED = 0, 1, 2
_CMAP = ListedColormap(["#ffffff", "#f4a6a6", "#1f77b4"])


def _visible(T: int, W: Optional[int]) -> np.ndarray:
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    ok = j <= i
    return ok & (i - j < W) if W is not None else ok


def work_grid(T: int, window: Optional[int], impl: str, block: Optional[int] = None) -> np.ndarray:
    """(T, T) grid of SKIPPED / MASKED (computed, then thrown away) / USED per (query, key).

    impl: "causal" (a causal kernel: the lower triangle, tiles ignored), "band_mask" (every score
    is computed, the mask throws most away), "local" (``window.local_window_attention``'s CPU
    schedule: the first W queries causally, then blocks of b queries x (b + W - 1) keys).
    """
    from tutorial_lib.window import block_for

    vis = _visible(T, window)
    grid = np.full((T, T), SKIPPED, dtype=int)
    if impl == "causal":
        grid[_visible(T, None)] = MASKED
    elif impl == "band_mask":
        grid[:, :] = MASKED
    elif impl == "local":
        if window is None:
            raise ValueError("work_grid: impl='local' needs a window")
        W = window
        if W >= T:
            grid[_visible(T, None)] = MASKED
        else:
            grid[:W, :W] = MASKED  # one causal W x W call (the kernel computes the whole tile)
            b = block_for(W, block) if block else block_for(W)
            for q0 in range(W, T, b):
                q1 = min(q0 + b, T)
                grid[q0:q1, q0 - W + 1:q0] = MASKED  # the W-1 keys before the block
                grid[q0:q1, q0:min(q0 + b, T)] = MASKED  # the block itself
    else:
        raise ValueError(f"impl={impl!r} is not one of ['causal', 'band_mask', 'local']")
    grid[vis & (grid == MASKED)] = USED
    return grid


def window_work_figure(T: int = 24, window: int = 6, block: Optional[int] = None) -> Figure:
    """Three panels: full causal, a band mask on full attention, the blocked local path."""
    panels = [("full causal, no window", work_grid(T, None, "causal")),
              (f"band mask, W={window}: all T×T computed", work_grid(T, window, "band_mask")),
              (f"local, W={window}: blocks only", work_grid(T, window, "local", block))]
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (title, g) in zip(axes, panels):
        ax.imshow(g, cmap=_CMAP, vmin=0, vmax=2, interpolation="nearest")
        computed = int((g != SKIPPED).sum())
        used = int((g == USED).sum())
        ax.set_title(f"{title}\ncomputed {computed}, used {used} of {T * T}", fontsize=9)
        ax.set_xlabel("key position j")
        ax.set_ylabel("query position i")
        ax.set_xticks(range(0, T, max(1, T // 6)))
        ax.set_yticks(range(0, T, max(1, T // 6)))
    fig.legend(handles=[Patch(color=_CMAP(2), label="computed and used"),
                        Patch(color=_CMAP(1), label="computed, then masked"),
                        Patch(facecolor="white", edgecolor="grey", label="never computed")],
               loc="outside lower center", ncol=3, fontsize=8)
    return fig


def receptive_field_figure(n_layer: int, window: int, T: int) -> Figure:
    """Which input positions the last position's output can depend on, layer by layer."""
    from tutorial_lib.window import receptive_field

    fig = Figure(figsize=(9, 0.45 * n_layer + 1.6), layout="constrained")
    ax = fig.subplots()
    last = T - 1
    for depth in range(1, n_layer + 1):
        rf = receptive_field(depth, window)
        lo = max(0, last - rf + 1)
        ax.add_patch(Rectangle((lo - 0.5, depth - 0.4), last - lo + 1, 0.8, color="#1f77b4",
                               alpha=0.35 + 0.5 * depth / n_layer))
        ax.text(lo - 1, depth, f"{min(rf, T)} tokens", ha="right", va="center", fontsize=8)
    ax.axvline(last, color="k", lw=1)
    ax.set_xlim(-0.5 - T * 0.12, T - 0.5)
    ax.set_ylim(0.4, n_layer + 0.6)
    ax.set_yticks(range(1, n_layer + 1), [f"after layer {d}" for d in range(1, n_layer + 1)], fontsize=8)
    ax.set_xlabel("input position (the last position, on the right, is the query)")
    ax.set_title(f"Receptive field of the last token: window W={window}, each layer reaches W-1 = "
                 f"{window - 1} further back", fontsize=9)
    return fig


def loss_curves(histories: Mapping[str, object], title: str = "") -> Figure:
    """Validation loss of ``train.TrainHistory`` runs vs optimizer steps and vs training time."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    a, b = fig.subplots(1, 2)
    for label, h in histories.items():
        a.plot(h.val_steps, h.val_loss, "o-", ms=3, label=label)
        b.plot(h.val_wall_s, h.val_loss, "o-", ms=3, label=label)
    a.set_xlabel("optimizer steps")
    b.set_xlabel("training time (s, evaluation excluded)")
    for ax in (a, b):
        ax.set_ylabel("validation loss")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def _box(ax, x, y, text, color="#f0f0f0", w=0.28, h=0.16, fontsize=8):
    ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, facecolor=color, edgecolor="#555555"))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, wrap=True)


def decision_tree_figure(short: Sequence[tuple], long: Sequence[tuple], short_setting: str,
                         long_setting: str, title: str = "") -> Figure:
    """The seed's decision tree with measured payoffs.

    ``short`` / ``long``: (change, measured step-time speedup or None) per branch, best first;
    the settings say where each branch was measured (model, B, T, device).
    """
    fig = Figure(figsize=(11, 5.6), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    _box(ax, 0.5, 0.92, "What should I implement first?\n(measured on this machine)", w=0.36, h=0.1)
    for x, label, rows, setting in ((0.25, "T < 512", short, short_setting),
                                    (0.75, "T ≥ 512", long, long_setting)):
        ax.annotate("", (x, 0.78), (0.5, 0.87), arrowprops={"arrowstyle": "->"})
        _box(ax, x, 0.74, f"{label}\n{setting}", color="#e8f0fa", w=0.44, h=0.09)
        for n, (change, speedup) in enumerate(rows):
            y = 0.6 - n * 0.1
            sp = "not measured" if speedup is None else f"{speedup:.2f}× step"
            good = speedup is not None and speedup >= 1.05
            _box(ax, x, y, f"{n + 1}. {change}: {sp}", color="#d8f0d8" if good else "#f7e3e3",
                 w=0.44, h=0.08)
    ax.text(0.5, 0.02, "green: ≥ 1.05× faster training step; red: less (or slower). Ordered by "
            "measured payoff.", ha="center", fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig
