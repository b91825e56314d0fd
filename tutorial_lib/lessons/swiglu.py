"""The SwiGLU and optimizer lesson (05): a gated MLP at equal parameters, and Muon vs AdamW.

- ``VARIANTS_05``: GELU 4x, SwiGLU 8/3x (param-matched), SwiGLU 3x, as config changes
  (``mlp_expansion.mlp_variants`` turns them into configs).
- ``epochs``, ``at_equal_steps`` / ``at_equal_time``: "faster learning" per step and per second,
  from ``train.TrainHistory`` runs (``common.quality_runs`` makes them; ``common.loss_curves``
  draws them).
- ``load_histories``: training histories recorded by the ``train`` command (e.g. on a GPU).
- ``time_optimizer_step``: the optimizer's own cost per step, AdamW vs Muon.
- ``check_swiglu_hidden``, ``check_newton_schulz_flops``: the exercises' checkers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Mapping, Union

import torch
import torch.nn as nn

from tutorial_lib import data
from tutorial_lib.lessons.common import CheckResult, call_checked
from tutorial_lib.measure.records import results_dir
from tutorial_lib.measure.timing import time_fn
from tutorial_lib.optim import OptimizerSpec, build_optimizer, newton_schulz_flops
from tutorial_lib.train import TrainHistory

VARIANTS_05 = {"GELU 4x": {"mlp": "gelu", "mlp_ratio": 4.0},
               "SwiGLU 8/3x": {"mlp": "swiglu", "mlp_ratio": None},  # param-matched (8/3)
               "SwiGLU 3x": {"mlp": "swiglu", "mlp_ratio": 3.0}}


# ---- learning per step and per second ----------------------------------------------------------
def epochs(history) -> float:
    """Passes over the training split that a run's tokens amount to."""

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
    files are skipped. A relative ``directory`` is taken inside ``records.results_dir()``."""

    d = Path(directory)
    d = d if d.is_absolute() else results_dir() / d
    return {label: TrainHistory.load(d / f"{name}.json") for label, name in names.items()
            if (d / f"{name}.json").is_file()}


# ---- the optimizer's cost ----------------------------------------------------------------------
def time_optimizer_step(model: nn.Module, spec: OptimizerSpec, min_run_time: float = 0.5) -> dict:
    """Wall time of ``optimizer.step()`` alone on ``model`` (random gradients), timed with the kit's
    ``measure.timing.time_fn`` (torch.utils.benchmark; CUDA is synchronised, CPU is not touched).

    Only the update is timed (no forward/backward), so this is the optimizer's own cost per step:
    AdamW's element-wise moment updates vs Muon's 5 Newton-Schulz iterations (each ~3 matmuls the
    size of the matrix) on every hidden matrix. The model's weights are restored afterwards.
    """

    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = build_optimizer(model, spec)
    gen = torch.Generator(device="cpu").manual_seed(0)
    for p in model.parameters():
        p.grad = (torch.randn(p.shape, generator=gen) * 1e-3).to(p.device, p.dtype)
    device = next(model.parameters()).device
    t = time_fn(opt.step, device, min_run_time=min_run_time, warmup=1,  # warm-up creates the state
                label=f"{spec.name}.step")
    with torch.no_grad():
        model.load_state_dict(saved)
    model.zero_grad(set_to_none=True)
    return {"optimizer": spec.name, "device": str(device), "median_s": t.median_ms / 1e3,
            "iqr_s": t.iqr_ms / 1e3, "runs": t.n_runs, "state_bytes": opt.state_bytes()}



# ---- exercises -------------------------------------------------------------------------------
def check_swiglu_hidden(fn: Callable) -> CheckResult:
    """``fn(n_embd, gelu_ratio)`` -> the SwiGLU hidden size with the parameters of a GELU MLP of
    ``gelu_ratio * n_embd`` (nearest integer)."""
    name = "param-matched SwiGLU hidden size"
    cases = [(768, 4.0), (384, 4.0), (1024, 4.0), (768, 3.0), (4096, 4.0)]
    for i, (C, r) in enumerate(cases):
        got, err = call_checked(name, fn, C, r)
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


def check_newton_schulz_flops(fn: Callable) -> CheckResult:
    """``fn(rows, cols, ns_steps)`` -> matmul FLOPs of Muon's Newton-Schulz on one matrix
    (reference: ``optim.newton_schulz_flops``, itself checked against FlopCounterMode in the tests)."""

    name = "Newton-Schulz FLOPs"
    cases = [(768, 768, 5), (3072, 768, 5), (768, 3072, 5), (64, 256, 1), (100, 30, 3)]
    for i, (r, c, k) in enumerate(cases):
        got, err = call_checked(name, fn, r, c, k)
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
