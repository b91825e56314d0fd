"""The MLP lesson (04): shrink the expansion from 4x to 3x, and measure what it buys.

- ``VARIANTS_04`` / ``mlp_variants``: GELU 4x and GELU 3x as config changes.
- ``mlp_params``, ``cost_rows``: parameters and FLOPs of the whole model per variant (analytic,
  ``measure.flops``), with the MLP's share -- the ceiling of any speedup (Amdahl).
- ``mlp_alone_timing`` / ``alone_speedup``: the MLP module by itself, forward + backward: what the
  seed's "25% faster" is about, as a ``speedups.Speedup`` whose ceiling is the hidden widths' ratio
  (the whole step is timed with ``common.measure_variants``).
- ``mlp_figure``: the MLP shapes drawn from the configs.
- ``check_amdahl``: the exercise's checker.
"""
from __future__ import annotations

import statistics
from typing import Callable, Dict, List, Mapping, Optional

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from tutorial_lib import settings
from tutorial_lib.lessons.common import CheckResult, call_checked
from tutorial_lib.measure import cost
from tutorial_lib.measure.timing import time_fn
from tutorial_lib.model import GPTConfig, build_mlp
from tutorial_lib.speedups import Speedup

VARIANTS_04 = {"GELU 4x": {"mlp": "gelu", "mlp_ratio": 4.0},
               "GELU 3x": {"mlp": "gelu", "mlp_ratio": 3.0}}


def mlp_variants(base: GPTConfig, variants: Mapping[str, dict]) -> Dict[str, GPTConfig]:
    return {label: base.replace(**kw) for label, kw in variants.items()}


# ---- on paper --------------------------------------------------------------------------------
def mlp_params(config: GPTConfig) -> int:
    """Parameters of one block's MLP: (2 or 3) x n_embd x hidden (+ biases)."""
    n_mat = 3 if config.mlp == "swiglu" else 2
    bias = (n_mat - 1) * config.mlp_hidden + config.n_embd if config.bias else 0
    return n_mat * config.n_embd * config.mlp_hidden + bias


def cost_rows(configs: Mapping[str, GPTConfig], batch_size: int = 4, seq_len: int = 512) -> List[dict]:
    """Whole-model parameters and training FLOPs (forward + backward, causal attention) per variant,
    with the MLP's share and ratios to the first variant."""

    rows = []
    for label, cfg in configs.items():
        table = cost.flops_by_scope(cfg, batch_size, seq_len, None, "visible")
        flops = sum(table.values())
        mlp_flops = sum(v for k, v in table.items() if k.startswith("mlp."))
        head_flops = table["lm_head"]
        rows.append({"variant": label, "hidden": cfg.mlp_hidden, "mlp_params": cfg.n_layer * mlp_params(cfg),
                     "params": cost.num_params(cfg), "train_flops": flops, "mlp_flops": mlp_flops,
                     "head_flops": head_flops})
    base = rows[0]
    for r in rows:
        r["mlp_params_ratio"] = r["mlp_params"] / base["mlp_params"]
        r["params_ratio"] = r["params"] / base["params"]
        r["flops_ratio"] = r["train_flops"] / base["train_flops"]
        r["mlp_flop_share"] = r["mlp_flops"] / r["train_flops"]
        r["head_flop_share"] = r["head_flops"] / r["train_flops"]
    return rows


# ---- measured --------------------------------------------------------------------------------
def mlp_alone_timing(configs: Mapping[str, GPTConfig], tokens: int, rounds: int = 3,
                     min_run_time: Optional[float] = None, device=None) -> List[dict]:
    """The MLP module alone, forward + backward on ``tokens`` rows of width n_embd (fp32), interleaved."""

    dev = settings.resolve(device)[0]
    fns, times = {}, {k: [] for k in configs}
    for label, cfg in configs.items():
        torch.manual_seed(0)
        mlp = build_mlp(cfg).to(dev)
        x = torch.randn(tokens, cfg.n_embd, device=dev, requires_grad=True)

        def fn(mlp=mlp, x=x):
            mlp.zero_grad(set_to_none=True)
            mlp(x).sum().backward()
        fns[label] = fn
        fn()  # untimed first call
    for _ in range(rounds):
        for label, fn in fns.items():
            times[label].append(time_fn(fn, dev, min_run_time=min_run_time, warmup=1).median_ms)
    base = next(iter(configs))
    rows = []
    for k, v in times.items():
        ratios = [b / t for b, t in zip(times[base], v)]  # per round: both timed back to back
        rows.append({"variant": k, "tokens": tokens, "n_embd": configs[k].n_embd, "hidden": configs[k].mlp_hidden,
                     "median_ms": statistics.median(v), "speedup": statistics.median(ratios),
                     "speedup_min": min(ratios), "speedup_max": max(ratios), "rounds": len(ratios),
                     "device_name": settings.device_name(dev)})
    return rows


def alone_speedup(rows: List[dict]) -> Speedup:
    """The second row of ``mlp_alone_timing`` over the first as a ``speedups.Speedup``. Its ceiling
    is the ratio of the hidden widths: the MLP's FLOPs and its hidden activations' bytes shrink with
    the hidden width, its input and output do not, so no more than that can be gained."""
    base, r = rows[0], rows[1]
    return Speedup(r["speedup"], r["speedup_min"], r["speedup_max"], r["rounds"], base["hidden"] / r["hidden"])


# ---- figures ---------------------------------------------------------------------------------
def mlp_figure(configs: Mapping[str, GPTConfig], title: str = ""):
    """Each variant's MLP as boxes whose heights are the widths: n_embd -> hidden (x2 for SwiGLU's
    gate and up) -> n_embd, annotated with the block's MLP parameters."""

    fig = Figure(figsize=(3.2 * len(configs), 3.6))
    axes = fig.subplots(1, len(configs), squeeze=False)[0]
    top = max(c.mlp_hidden for c in configs.values())
    for ax, (label, c) in zip(axes, configs.items()):
        C, Hd = c.n_embd, c.mlp_hidden
        boxes = [(0, C, "#9ecae1", f"{C}")]
        if c.mlp == "swiglu":
            boxes += [(1.2, Hd, "#fdae6b", f"gate {Hd}"), (2.1, Hd, "#fd8d3c", f"up {Hd}")]
            out_x = 3.3
        else:
            boxes += [(1.6, Hd, "#fd8d3c", f"{Hd}")]
            out_x = 3.2
        boxes.append((out_x, C, "#9ecae1", f"{C}"))
        for x, h, color, text in boxes:
            ax.add_patch(Rectangle((x, (top - h) / 2), 0.7, h, color=color, ec="k", lw=0.6))
            ax.text(x + 0.35, top / 2, text, rotation=90, ha="center", va="center", fontsize=8)
        act = "silu(gate)*up" if c.mlp == "swiglu" else "GELU"
        ax.set_title(f"{label}\n{act}; {mlp_params(c) / 1e6:.2f}M params per block", fontsize=9)
        ax.set_xlim(-0.2, 4.2)
        ax.set_ylim(-0.05 * top, 1.05 * top)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---- exercises -------------------------------------------------------------------------------
def check_amdahl(fn: Callable) -> CheckResult:
    """``fn(share, part_speedup)`` -> whole-step speedup when a part taking ``share`` of the time
    gets ``part_speedup`` times faster (Amdahl's law)."""
    name = "whole-step speedup (Amdahl)"
    cases = [(0.5, 2.0), (0.3, 4 / 3), (1.0, 1.5), (0.0, 3.0), (0.62, 4 / 3)]
    for i, (s, k) in enumerate(cases):
        got, err = call_checked(name, fn, s, k)
        if err is not None:
            return err
        want = 1.0 / ((1 - s) + s / k)
        if isinstance(got, (int, float)) and abs(got - want) <= 1e-6 * want:
            continue
        naive = 1 + s * (k - 1)
        hint = ("you scaled the speedup by the share; instead add up the *times*: "
                "(1 - share) + share / part_speedup" if isinstance(got, (int, float))
                and abs(got - naive) < 1e-6 else "the new time is (1 - share) + share / part_speedup")
        return CheckResult(name, False, f"fn({s}, {k:.4g}) = {got!r}, expected {want:.4f}: {hint}.", i)
    return CheckResult(name, True, f"all {len(cases)} cases match 1 / ((1 - s) + s / k).", len(cases))
