"""Optimizers for the training lessons: AdamW, and Muon for the hidden matrices (AdamW for the rest).

AdamW (Loshchilov & Hutter, 2019) keeps two running moments per parameter and is the usual GPT-2
optimizer. Muon (Keller Jordan, 2024, https://kellerjordan.github.io/posts/muon/) replaces the
update of a 2-D weight by the momentum matrix "orthogonalised" with a few Newton-Schulz
iterations, so every direction of the matrix moves by about the same amount. It is only defined
for 2-D matrices, and it is meant for the *hidden* ones: like modded-nanogpt we put the
transformer blocks' weight matrices (q/k/v/o projections, MLP up/gate/down) on
``torch.optim.Muon``, and the token embedding, positions, LM head, norm gains and biases on AdamW.

A run with ``optimizer="muon"`` therefore owns two PyTorch optimizers; :class:`OptimizerSet`
steps, zeroes and schedules them as one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List

import torch
import torch.nn as nn

from tutorial_lib.runtime import ADAMW_IMPLS, make_adamw

OPTIMIZERS = ("adamw", "muon")
DECAYS = ("cosine", "linear", "constant")


@dataclass(frozen=True)
class ParamSplit:
    """Which parameter goes where, by name (each parameter appears exactly once)."""

    muon: List[str]  # 2-D weight matrices inside the transformer blocks
    adamw_decay: List[str]  # other >= 2-D tensors: embeddings, untied LM head
    adamw_no_decay: List[str]  # 1-D tensors: norm gains, biases


def split_parameters(model: nn.Module, optimizer: str = "muon") -> ParamSplit:
    """Group ``model``'s trainable parameters (shared tensors once) for ``optimizer``.

    ``muon``: a parameter goes to Muon when it is 2-D and lives in a transformer block
    (``blocks.*``); embeddings and the LM head stay on AdamW even though they are 2-D, because
    their rows are looked up one token at a time rather than multiplied as a whole matrix.
    ``adamw``: nothing goes to Muon. In both, weight decay applies to tensors with >= 2 dimensions
    only (nanoGPT's rule), never to norm gains or biases.
    """
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    muon, decay, no_decay = [], [], []
    for name, p in model.named_parameters():  # a tied lm_head.weight appears once, as wte.weight
        if not p.requires_grad:
            continue
        if optimizer == "muon" and p.ndim == 2 and name.startswith("blocks."):
            muon.append(name)
        elif p.ndim >= 2:
            decay.append(name)
        else:
            no_decay.append(name)
    return ParamSplit(muon, decay, no_decay)


@dataclass(frozen=True)
class OptimizerSpec:
    """Hyper-parameters of one optimizer choice (the defaults suit the tutorial's short runs)."""

    name: str = "adamw"  # "adamw" or "muon"
    lr: float = 3e-3  # AdamW learning rate (in a Muon run: for embeddings, head, norms)
    muon_lr: float = 0.02  # Muon learning rate for the hidden matrices (Keller Jordan's default)
    weight_decay: float = 0.1  # decoupled weight decay on matrices (AdamW and Muon)
    betas: tuple = (0.9, 0.95)  # AdamW moments (nanoGPT / GPT-3)
    muon_momentum: float = 0.95  # Muon's Nesterov momentum
    adamw_impl: str = "auto"  # AdamW's kernels: "for-loop", "foreach", "fused" ("auto": fused on CUDA)

    def __post_init__(self):
        _check_choice("optimizer", self.name, OPTIMIZERS)
        _check_choice("adamw_impl", self.adamw_impl, ADAMW_IMPLS)
        for f in ("lr", "muon_lr", "weight_decay"):
            v = getattr(self, f)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            low = ">= 0" if f == "weight_decay" else "> 0"
            if not (ok and (v >= 0 if f == "weight_decay" else v > 0)):
                raise ValueError(f"{f}={v!r} must be a finite number {low}")


class OptimizerSet:
    """One or two ``torch.optim`` optimizers stepped, zeroed and scheduled together.

    Each param group remembers its base learning rate in ``group["base_lr"]``; ``set_lr_scale(m)``
    sets every group's lr to ``m * base_lr`` (the warmup/decay schedule multiplies all of them).
    """

    def __init__(self, optimizers: Dict[str, torch.optim.Optimizer], name: str):
        self.optimizers = optimizers  # {"adamw": ..., "muon": ...}
        self.name = name
        for opt in self.optimizers.values():
            for g in opt.param_groups:
                g["base_lr"] = g["lr"]

    def zero_grad(self) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        for opt in self.optimizers.values():
            opt.step()

    def set_lr_scale(self, scale: float) -> None:
        for opt in self.optimizers.values():
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * scale

    @property
    def param_groups(self) -> list:
        return [g for opt in self.optimizers.values() for g in opt.param_groups]

    def state_bytes(self) -> int:
        """Bytes held in optimizer state (AdamW's two moments, Muon's momentum buffer)."""
        return sum(t.numel() * t.element_size() for opt in self.optimizers.values()
                   for st in opt.state.values() for t in st.values() if torch.is_tensor(t))

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {sum(len(g['params']) for g in o.param_groups)} tensors"
                          for k, o in self.optimizers.items())
        return f"OptimizerSet({self.name!r}; {parts})"


def muon_available() -> bool:
    return hasattr(torch.optim, "Muon")


def build_optimizer(model: nn.Module, spec: OptimizerSpec) -> OptimizerSet:
    """AdamW over everything, or Muon over the blocks' matrices + AdamW over the rest.

    AdamW runs the implementation ``spec.adamw_impl`` names (``runtime.make_adamw``; by default
    fused on CUDA, one kernel for all tensors, and the per-tensor loop elsewhere). Muon is
    PyTorch's ``torch.optim.Muon`` (2.9+), with Nesterov momentum, 5 Newton-Schulz steps in bf16, and Keller Jordan's
    ``sqrt(max(1, rows/cols))`` learning-rate adjustment for rectangular matrices.
    """
    split = split_parameters(model, spec.name)
    params = dict(model.named_parameters())
    device = next(model.parameters()).device
    adamw_groups = [{"params": [params[n] for n in split.adamw_decay], "weight_decay": spec.weight_decay},
                    {"params": [params[n] for n in split.adamw_no_decay], "weight_decay": 0.0}]
    adamw_groups = [g for g in adamw_groups if g["params"]]
    opts = {"adamw": make_adamw(adamw_groups, device, spec.adamw_impl, lr=spec.lr, betas=spec.betas)}
    if spec.name == "muon":
        if not muon_available():
            raise ValueError(f"optimizer='muon' needs torch.optim.Muon (PyTorch >= 2.9); this is "
                             f"torch {torch.__version__}. Use optimizer='adamw'.")
        if split.muon:
            opts["muon"] = torch.optim.Muon([params[n] for n in split.muon], lr=spec.muon_lr,
                                            weight_decay=spec.weight_decay,
                                            momentum=spec.muon_momentum, nesterov=True)
    return OptimizerSet(opts, spec.name)


# ---- learning-rate schedule ----------------------------------------------------------------
def lr_scale(step: int, total_steps: int, warmup_steps: int = 0, decay: str = "cosine",
             min_ratio: float = 0.1) -> float:
    """Multiplier of the base learning rate for the optimizer step with 0-based index ``step``.

    Linear warmup ``(step+1)/warmup_steps`` for the first ``warmup_steps`` steps, then ``decay``
    from 1 to ``min_ratio`` over the remaining steps: ``cosine`` = min + (1-min)(1+cos(pi p))/2,
    ``linear`` = 1 - (1-min) p, ``constant`` = 1, with p the fraction of the decay phase done.
    """
    _check_choice("decay", decay, DECAYS)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    n_decay = total_steps - warmup_steps
    if decay == "constant" or n_decay <= 1:
        return 1.0
    p = min(1.0, (step - warmup_steps) / (n_decay - 1))
    if decay == "linear":
        return 1.0 - (1.0 - min_ratio) * p
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))


# ---- cost of one optimizer step ------------------------------------------------------------
def newton_schulz_flops(rows: int, cols: int, ns_steps: int = 5) -> int:
    """Matmul FLOPs of Muon's Newton-Schulz orthogonalisation of one (rows, cols) matrix.

    With X the matrix turned so that it is (m, n), m <= n, each iteration computes
    A = X X^T (2 m^2 n), B = b A + c A A (2 m^3) and X = a X + B X (2 m^2 n).
    """
    m, n = min(rows, cols), max(rows, cols)
    return ns_steps * (4 * m * m * n + 2 * m ** 3)


def muon_step_flops(model: nn.Module, ns_steps: int = 5) -> int:
    """Matmul FLOPs one Muon step adds: Newton-Schulz on every matrix Muon owns.

    It does not depend on the batch: Muon's cost is per step, so large batches amortise it.
    """
    params = dict(model.named_parameters())
    return sum(newton_schulz_flops(*params[n].shape, ns_steps)
               for n in split_parameters(model, "muon").muon)


def _check_choice(field: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{field}={value!r} is not one of {list(allowed)}")
