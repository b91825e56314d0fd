"""The MLP lessons (notebooks 04 and 05) and the optimizer lesson as functions.

- ``LessonSizes.for_profile``: the sizes 04/05 measure and train at, per size profile.
- ``mlp_variants`` / ``VARIANTS_04`` / ``VARIANTS_05``: GELU 4x, GELU 3x, SwiGLU 8/3x, SwiGLU 3x.
- ``cost_rows``: parameters and FLOPs of the whole model per variant (analytic, ``measure.flops``).
- ``measure_variants``: training-step time (timed *interleaved*, in rounds, so a busy machine slows
  every variant alike) and the exact memory of a step, per variant.
- ``mlp_alone_timing``: the MLP module by itself, forward + backward: what the seed's "25% faster" is about.
- ``quality_runs``: validation-loss curves from ``train.train``, same seed and batches.
- ``at_equal_steps`` / ``at_equal_time``, ``curves_figure``: "faster learning" per step and per second.
- ``mlp_figure``: the MLP shapes drawn from the configs.
- ``load_histories``: training histories recorded by the ``train`` command (e.g. on a GPU).
- ``check_swiglu_hidden``, ``check_amdahl``, ``check_newton_schulz_flops``: exercise checkers.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch

from tutorial_lib.config import GPTConfig
from tutorial_lib.exercises import CheckResult, _call

# Where the `train` command's recorded runs live in a checkout of the repository.
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"

VARIANTS_04 = {"GELU 4x": {"mlp": "gelu", "mlp_ratio": 4.0},
               "GELU 3x": {"mlp": "gelu", "mlp_ratio": 3.0}}
VARIANTS_05 = {"GELU 4x": {"mlp": "gelu", "mlp_ratio": 4.0},
               "SwiGLU 8/3x": {"mlp": "swiglu", "mlp_ratio": None},  # param-matched (8/3)
               "SwiGLU 3x": {"mlp": "swiglu", "mlp_ratio": 3.0}}


def mlp_variants(base: GPTConfig, variants: Mapping[str, dict]) -> Dict[str, GPTConfig]:
    return {label: base.replace(**kw) for label, kw in variants.items()}


# ---- sizes -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LessonSizes:
    profile: str
    step_preset: str  # model whose training step is timed
    step_batch: int
    step_seq: int
    rounds: int  # interleaved timing rounds
    min_run_time: float  # seconds per timing (per variant, per round)
    train_preset: str  # model of the validation-loss runs
    train_steps: int
    train_batch: int
    train_seq: int
    eval_every: int
    eval_batches: int

    @classmethod
    def for_profile(cls, name: Optional[str] = None) -> "LessonSizes":
        """From ``settings.get_profile``; on ``cpu`` the quality runs use T=64 instead of the
        profile's 128, so that four runs of a notebook fit in minutes on 2 cores."""
        from tutorial_lib.settings import get_profile

        p = get_profile(name)
        seq = 64 if p.name == "cpu" else p.train_seq_len
        every = 25 if p.name == "cpu" else p.eval_every
        batches = 4 if p.name == "cpu" else p.eval_batches
        return cls(p.name, p.preset, p.batch, p.seq_len, 1 if p.name == "smoke" else 3,
                   p.min_run_time, p.train_preset, p.train_steps, p.train_batch, seq, every, batches)

    def train_config(self, **changes):
        from tutorial_lib.train import TrainConfig

        kw = dict(steps=self.train_steps, batch_size=self.train_batch, seq_len=self.train_seq,
                  eval_every=self.eval_every, eval_batches=self.eval_batches,
                  warmup_steps=max(1, self.train_steps // 10), progress=False)
        kw.update(changes)
        return TrainConfig(**kw)


# ---- on paper --------------------------------------------------------------------------------
def mlp_params(config: GPTConfig) -> int:
    """Parameters of one block's MLP: (2 or 3) x n_embd x hidden (+ biases)."""
    n_mat = 3 if config.mlp == "swiglu" else 2
    bias = (n_mat - 1) * config.mlp_hidden + config.n_embd if config.bias else 0
    return n_mat * config.n_embd * config.mlp_hidden + bias


def cost_rows(configs: Mapping[str, GPTConfig], batch_size: int = 4, seq_len: int = 512) -> List[dict]:
    """Whole-model parameters and training FLOPs (forward + backward, causal attention) per variant,
    with the MLP's share and ratios to the first variant."""
    from tutorial_lib.measure.flops import cost_table, num_params

    rows = []
    for label, cfg in configs.items():
        table = cost_table(cfg, batch_size, seq_len)
        flops = sum(r.fwd_flops_causal + r.bwd_flops_causal for r in table)
        mlp_flops = sum(r.fwd_flops_causal + r.bwd_flops_causal for r in table if r.group == "mlp")
        head_flops = sum(r.fwd_flops_causal + r.bwd_flops_causal for r in table if r.group == "lm_head")
        rows.append({"variant": label, "hidden": cfg.mlp_hidden, "mlp_params": cfg.n_layer * mlp_params(cfg),
                     "params": num_params(cfg), "train_flops": flops, "mlp_flops": mlp_flops,
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
def measure_variants(configs: Mapping[str, GPTConfig], batch_size: int, seq_len: int, rounds: int = 3,
                     min_run_time: Optional[float] = None, device=None, dtype=None,
                     memory: bool = True, progress: bool = False) -> List[dict]:
    """Training step (fwd + bwd + AdamW) per variant, timed in ``rounds`` interleaved rounds.

    ``speedup`` is the median over rounds of (base time / variant time) within the same round, so
    load that comes and goes slows both sides of each ratio alike. ``memory`` adds the exact
    breakdown of one step (``measure.memory.memory_breakdown``). Failures (OOM, ...) become rows
    with ``error`` set.
    """
    from tutorial_lib import settings
    from tutorial_lib.measure.bench import SWEEP_ERRORS, prepare_step, time_fn
    from tutorial_lib.measure.memory import memory_breakdown

    dev = settings.get_device(device) if not isinstance(device, torch.device) else device
    steps, rows = {}, {}
    for label, cfg in configs.items():
        try:
            model, step, _, dt = prepare_step(cfg, batch_size, seq_len, "train", dev, dtype)
            steps[label] = step
            rows[label] = {"variant": label, "preset": cfg.name, "params": model.num_params(),
                           "batch_size": batch_size, "seq_len": seq_len, "device": str(dev),
                           "device_name": settings.device_name(dev), "dtype": settings.dtype_name(dt),
                           "times_ms": [], "error": None}
        except SWEEP_ERRORS as e:
            rows[label] = {"variant": label, "error": f"{type(e).__name__}: {e}"}
    labels = list(steps)
    for label in labels:  # one untimed call each first: allocations, thread pools, caches
        try:
            steps[label]()
        except SWEEP_ERRORS as e:
            rows[label]["error"] = f"{type(e).__name__}: {e}"
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=rounds * len(labels), desc="timing", unit="step")
    for _ in range(rounds):
        for label in labels:
            if rows[label]["error"]:
                continue
            try:
                t = time_fn(steps[label], dev, min_run_time=min_run_time, warmup=1)
                rows[label]["times_ms"].append(t.median_ms)
            except SWEEP_ERRORS as e:
                rows[label]["error"] = f"{type(e).__name__}: {e}"
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    steps.clear()
    base = labels[0] if labels else None
    for label, r in rows.items():
        if r["error"]:
            continue
        r["median_ms"] = statistics.median(r["times_ms"])
        r["tokens_per_s"] = batch_size * seq_len / (r["median_ms"] / 1e3)
        if base and not rows[base]["error"]:
            ratios = [b / t for b, t in zip(rows[base]["times_ms"], r["times_ms"])]
            r["speedup"] = statistics.median(ratios)
            r["speedup_min"], r["speedup_max"] = min(ratios), max(ratios)  # the spread over rounds
        if memory:
            try:
                mb = memory_breakdown(configs[label], batch_size, seq_len, device=dev, dtype=dtype)
                r["memory_bytes"] = mb.total_bytes
                r["memory_by_kind"] = mb.by_kind()
                r["peak_bytes"] = mb.peak_bytes
            except SWEEP_ERRORS as e:
                r["memory_error"] = f"{type(e).__name__}: {e}"
    return [rows[k] for k in configs]


def mlp_alone_timing(configs: Mapping[str, GPTConfig], tokens: int, rounds: int = 3,
                     min_run_time: Optional[float] = None, device=None) -> List[dict]:
    """The MLP module alone, forward + backward on ``tokens`` rows of width n_embd (fp32), interleaved."""
    from tutorial_lib import settings
    from tutorial_lib.measure.bench import time_fn
    from tutorial_lib.mlp import build_mlp

    dev = settings.get_device(device) if not isinstance(device, torch.device) else device
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
    return [{"variant": k, "tokens": tokens, "n_embd": configs[k].n_embd, "hidden": configs[k].mlp_hidden,
             "median_ms": statistics.median(v),
             "speedup": statistics.median(b / t for b, t in zip(times[base], v)),
             "device_name": settings.device_name(dev)} for k, v in times.items()]


# ---- quality ---------------------------------------------------------------------------------
def quality_runs(configs: Mapping[str, GPTConfig], train_config, optimizers: Sequence[str] = ("adamw",),
                 progress: bool = False) -> Dict[str, "object"]:
    """``train.train`` for every (variant, optimizer): same seed, same batches, same validation set.

    Keys are the variant labels (with " + Muon" etc. appended for optimizers other than AdamW).
    """
    from tutorial_lib.train import train

    out = {}
    for label, cfg in configs.items():
        for opt in optimizers:
            key = label if opt == "adamw" else f"{label} + {opt.capitalize()}"
            out[key] = train(cfg, train_config.replace(optimizer=opt, progress=progress))
    return out


def epochs(history) -> float:
    """Passes over the training split that a run's tokens amount to."""
    from tutorial_lib import data

    return len(history.steps) * history.tokens_per_step / len(data.get_split("train"))


def at_equal_steps(histories: Mapping[str, "object"]) -> List[dict]:
    """Final validation loss of each run (all runs have the same steps and tokens)."""
    return [{"run": k, "steps": h.val_steps[-1], "tokens": h.val_steps[-1] * h.tokens_per_step,
             "val_loss": h.val_loss[-1], "best_val_loss": min(h.val_loss),
             "train_seconds": h.wall_time_s, "ms_per_step": 1e3 * h.median_step_s}
            for k, h in histories.items()]


def at_equal_time(histories: Mapping[str, "object"]) -> List[dict]:
    """Validation loss of each run after the same training time -- the shortest run's total --
    read off each loss-vs-time curve (linear between validation points, as plotted)."""
    budget = min(h.wall_time_s for h in histories.values())
    return [{"run": k, "seconds": budget, "steps_done": h.steps_at_time(budget),
             "val_loss": h.val_loss_at_time(budget)} for k, h in histories.items()]


def load_histories(directory: Union[str, Path], names: Mapping[str, str]) -> Dict[str, "object"]:
    """{label: TrainHistory} from ``directory / f"{name}.json"`` for each (label, name); missing
    files are skipped. A relative ``directory`` is taken inside ``RESULTS_DIR``."""
    from tutorial_lib.train import TrainHistory

    d = Path(directory)
    d = d if d.is_absolute() else RESULTS_DIR / d
    return {label: TrainHistory.load(d / f"{name}.json") for label, name in names.items()
            if (d / f"{name}.json").is_file()}


# ---- figures ---------------------------------------------------------------------------------
def curves_figure(histories: Mapping[str, "object"], title: str = ""):
    """Validation loss vs optimizer steps (left) and vs training seconds (right)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    for label, h in histories.items():
        ax1.plot(h.val_steps, h.val_loss, marker="o", ms=3, label=label)
        ax2.plot(h.val_wall_s, h.val_loss, marker="o", ms=3, label=label)
    ax1.set_xlabel("optimizer steps (equal tokens)")
    ax2.set_xlabel("training seconds (evaluation excluded)")
    ax1.set_ylabel("validation loss")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax1.legend()
    lo = min(min(h.val_loss) for h in histories.values())
    hi = max(h.val_loss[1] if len(h.val_loss) > 1 else h.val_loss[0] for h in histories.values())
    ax1.set_ylim(lo - 0.1 * (hi - lo + 1e-6), hi + 0.05 * (hi - lo + 1e-6))
    ax1.set_title("at equal steps")
    ax2.set_title("at equal wall time")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def mlp_figure(configs: Mapping[str, GPTConfig], title: str = ""):
    """Each variant's MLP as boxes whose heights are the widths: n_embd -> hidden (x2 for SwiGLU's
    gate and up) -> n_embd, annotated with the block's MLP parameters."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

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
def check_swiglu_hidden(fn: Callable) -> CheckResult:
    """``fn(n_embd, gelu_ratio)`` -> the SwiGLU hidden size with the parameters of a GELU MLP of
    ``gelu_ratio * n_embd`` (nearest integer)."""
    name = "param-matched SwiGLU hidden size"
    cases = [(768, 4.0), (384, 4.0), (1024, 4.0), (768, 3.0), (4096, 4.0)]
    for i, (C, r) in enumerate(cases):
        got, err = _call(name, fn, C, r)
        if err is not None:
            return err
        want = 2 * r * C / 3  # 3 * C * h = 2 * C * (r * C)
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            return CheckResult(name, False, f"fn({C}, {r}) returned {got!r}; return a number", i)
        if abs(got - want) <= 1:
            continue
        if abs(got - r * C) <= 1:
            hint = "that is the GELU hidden size; SwiGLU has three matrices (gate, up, down), not two"
        elif abs(got - r * C / 3) <= 1:
            hint = "count the parameters: GELU has 2 x n_embd x (r n_embd), SwiGLU 3 x n_embd x h"
        else:
            hint = "set 3 x n_embd x h equal to 2 x n_embd x (gelu_ratio x n_embd) and solve for h"
        return CheckResult(name, False, f"fn({C}, {r}) = {got}, expected about {want:.1f}: {hint}.", i)
    return CheckResult(name, True, f"all {len(cases)} cases match 2/3 x gelu_ratio x n_embd "
                       "(8/3 x n_embd for the 4x MLP).", len(cases))


def check_amdahl(fn: Callable) -> CheckResult:
    """``fn(share, part_speedup)`` -> whole-step speedup when a part taking ``share`` of the time
    gets ``part_speedup`` times faster (Amdahl's law)."""
    name = "whole-step speedup (Amdahl)"
    cases = [(0.5, 2.0), (0.3, 4 / 3), (1.0, 1.5), (0.0, 3.0), (0.62, 4 / 3)]
    for i, (s, k) in enumerate(cases):
        got, err = _call(name, fn, s, k)
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


def check_newton_schulz_flops(fn: Callable) -> CheckResult:
    """``fn(rows, cols, ns_steps)`` -> matmul FLOPs of Muon's Newton-Schulz on one matrix
    (reference: ``optim.newton_schulz_flops``, itself checked against FlopCounterMode in the tests)."""
    from tutorial_lib.optim import newton_schulz_flops

    name = "Newton-Schulz FLOPs"
    cases = [(768, 768, 5), (3072, 768, 5), (768, 3072, 5), (64, 256, 1), (100, 30, 3)]
    for i, (r, c, k) in enumerate(cases):
        got, err = _call(name, fn, r, c, k)
        if err is not None:
            return err
        want = newton_schulz_flops(r, c, k)
        if got == want:
            continue
        m, n = max(r, c), min(r, c)
        if got == k * (4 * m * m * n + 2 * m ** 3):
            hint = "Muon transposes a tall matrix first, so the Gram matrix X X^T is min x min"
        elif got == want // k:
            hint = "that is one iteration; multiply by ns_steps"
        else:
            hint = "per iteration: X X^T, then A A, then B X -- 2 x (multiply-adds) each"
        return CheckResult(name, False, f"fn({r}, {c}, {k}) = {got!r}, expected {want:,}: {hint}.", i)
    return CheckResult(name, True, f"all {len(cases)} cases match.", len(cases))
