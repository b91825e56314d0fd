"""Bytes and kernels of a GPT training step, per component: counted from PyTorch's own dispatch.

The analytic model (``measure.cost``) predicts each component's bytes and kernel launches from
formulas. This module is the *truth* those formulas are tested against, and what a notebook uses
to look at the kernels of one component:

- ``TrafficCounter``: a ``TorchDispatchMode`` that sees every ATen operator a piece of code runs,
  forward and backward (autograd's backward ops are dispatched too), and records for each one
  the bytes of its tensor inputs (read) and outputs (written), and one kernel launch. View and
  metadata operators (``view``, ``transpose``, ``expand`` ...) launch nothing and are skipped.
- In backward, each operator is charged to the model scope (``tutorial_lib.scopes``) whose
  forward created the autograd node that runs it, the same attribution as ``measure.profile``;
  a ``TorchFunctionMode`` labels every node with the scope it was created in. A scope opened
  inside backward names its own operators: the chunked loss's, and the modules a checkpointed
  block runs again (``GPTConfig.checkpoint``).
- ``count_step_traffic(config, B, T)``: one training step (forward + loss, backward, AdamW),
  counted per (scope, phase).

What "bytes read" means here: every element of every tensor argument, once per kernel. Broadcast
dimensions (stride 0) are counted once, since the data is the same. Four operators read only a
part of an argument, and are counted as such: ``embedding`` (the rows of the table it gathers),
``nll_loss_forward`` (one log-probability per target), ``gather`` (one element per index: the
chunked loss's target logits) and ``nll_loss_backward`` (it writes a gradient of the logits'
shape without reading them). An in-place operator that returns nothing (the foreach and fused
optimizers') writes the arguments its schema marks as written (``mutated_bytes``). This is the
minimum each kernel moves; a
cache may hold small tensors between kernels, so small operands can cost less.
"""
from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from tutorial_lib import scopes, settings
from tutorial_lib.data import random_batch
from tutorial_lib.measure.timing import make_optimizer, resolve_config
from tutorial_lib.model import GPT, GPTConfig

PHASES = ("forward", "backward", "optimizer")
OTHER = "other"  # outside every model scope: residual adds, reshapes' copies, the loss's seed
OPTIMIZER = "optimizer"

# operators that launch no kernel: views, metadata, allocation without writing, profiler ranges
NO_KERNEL = frozenset({
    "view", "_unsafe_view", "reshape", "_reshape_alias", "t", "transpose", "permute", "expand",
    "slice", "select", "unsqueeze", "squeeze", "as_strided", "alias", "detach", "split",
    "split_with_sizes", "unbind", "chunk", "lift_fresh", "empty", "empty_like", "empty_strided",
    "_local_scalar_dense", "_record_function_enter_new", "_record_function_exit", "_to_copy_noop",
    "set_", "resize_", "is_same_size", "_has_compatible_shallow_copy_type", "promote_types",
})


def touched_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements a tensor holds: broadcast (stride-0) dimensions once."""
    n = 1
    for size, stride in zip(t.shape, t.stride()):
        if stride != 0:
            n *= size
    return n * t.element_size()


def _tensors(x) -> List[torch.Tensor]:
    return [t for t in tree_flatten(x)[0] if isinstance(t, torch.Tensor)]


def mutated_bytes(name: str, schema, args, kwargs) -> int:
    """Bytes of the arguments an operator's schema marks as written (``Tensor(a!)``), for in-place
    operators that return nothing (``_foreach_mul_``, ``_fused_adamw_``). The fused Adam(W) kernels
    mark the gradients writable because they unscale them in place, which they do only when given a
    ``grad_scale``: without one the gradients are read, not written."""
    bound = dict(zip((a.name for a in schema.arguments), args), **(kwargs or {}))
    out = 0
    for a in schema.arguments:
        if a.alias_info is None or not a.alias_info.is_write:
            continue
        if name.startswith("_fused_adam") and a.name == "grads" and bound.get("grad_scale") is None:
            continue
        out += sum(touched_bytes(t) for t in _tensors(bound.get(a.name)))
    return out


def kernel_bytes(name: str, args, kwargs, out, schema=None) -> Tuple[int, int, List[int]]:
    """(bytes read, bytes written, sizes of the outputs allocated) of one ATen call (``schema``:
    the operator's, to see what an in-place operator without outputs writes)."""
    ins, outs = _tensors((args, kwargs)), _tensors(out)
    read = sum(touched_bytes(t) for t in ins)
    if name == "embedding":  # weight (V, C), indices: reads one row per index
        weight, idx = args[0], args[1]
        read = touched_bytes(idx) + idx.numel() * weight.shape[-1] * weight.element_size()
    elif name == "gather":  # (input, dim, index): one element of the input per index
        src, index = args[0], args[2]
        read = touched_bytes(index) + index.numel() * src.element_size()
    elif name == "nll_loss_forward":  # log-probs (N, V), targets (N,): one log-prob per target
        logp, target = args[0], args[1]
        read = touched_bytes(target) + target.numel() * logp.element_size()
    elif name == "nll_loss_backward":  # (grad, self, target, ...): self only gives the shape
        read -= touched_bytes(args[1])
    written = sum(t.numel() * t.element_size() for t in outs)
    if not outs and schema is not None:  # an in-place op that returns nothing: the foreach and fused optimizers
        written = mutated_bytes(name, schema, args, kwargs)
    inplace = name.endswith("_") or "out" in (kwargs or {})
    allocs = [] if inplace else [t.numel() * t.element_size() for t in outs]
    return read, written, allocs


@dataclass
class Traffic:
    """What one (scope, phase) moved: bytes read and written, kernels, and per-operator counts."""
    read: int = 0
    written: int = 0
    kernels: int = 0
    ops: Counter = field(default_factory=Counter)
    allocs: Counter = field(default_factory=Counter)  # output allocation size -> how many

    @property
    def bytes(self) -> int:
        return self.read + self.written

    def fresh_bytes(self, threshold: Optional[int]) -> int:
        """Bytes written into new allocations of at least ``threshold`` bytes (first touch: ``measure.ceilings``)."""
        if threshold is None:
            return 0
        return sum(size * n for size, n in self.allocs.items() if size >= threshold)


class _NodeScopes(TorchFunctionMode):
    """Labels every autograd node created inside a model scope with that scope's name."""

    def __init__(self, labels: Dict[object, str]):
        super().__init__()
        self.labels = labels

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = scopes.current() or OTHER
        todo = [t.grad_fn for t in _tensors(out) if t.grad_fn is not None]
        while todo:  # nodes not labelled yet were created by this call (composites make several)
            node = todo.pop()
            if node is None or node in self.labels:
                continue
            self.labels[node] = name
            todo.extend(nxt for nxt, _ in node.next_functions)
        return out


class TrafficCounter(TorchDispatchMode):
    """Counts bytes and kernels of every ATen operator run inside ``with counter.phase(name):``.

    Forward operators are charged to ``scopes.current()``; backward ones to the scope whose forward
    created the autograd node running them (needs the forward to run under ``counter.labelling()``).
    Results: ``counter.traffic[(scope, phase)] -> Traffic``.
    """

    def __init__(self, model=None):
        super().__init__()
        self.traffic: Dict[Tuple[str, str], Traffic] = {}
        self.node_scope: Dict[object, str] = {}
        self.current_phase = "forward"
        # a parameter's scope (its module's), for writing a gradient whose node no labelled op
        # reached (a custom autograd Function's input): the parameter's AccumulateGrad
        self.param_scope: Dict[int, str] = {}
        for module, name in (model.module_scopes().items() if model is not None else ()):
            for p in module.parameters(recurse=False):
                self.param_scope.setdefault(id(p), name)

    @contextlib.contextmanager
    def labelling(self):
        """Label autograd nodes with their scope while the forward runs (for backward's charges)."""
        with _NodeScopes(self.node_scope):
            yield

    @contextlib.contextmanager
    def phase(self, name: str):
        if name not in PHASES:
            raise ValueError(f"phase={name!r} is not one of {list(PHASES)}")
        self.current_phase = name
        with self:
            yield self

    def _scope(self) -> str:
        if self.current_phase == "optimizer":
            return OPTIMIZER
        if self.current_phase == "backward":
            # a scope opened inside a backward node (the chunked loss's own backward) names its ops,
            # as the profiler charges them; everything else goes to the node's forward scope
            node = torch._C._current_autograd_node()
            return (scopes.current() or self.node_scope.get(node)
                    or self.param_scope.get(id(getattr(node, "variable", None)), OTHER))
        return scopes.current() or OTHER

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in NO_KERNEL:
            return out
        read, written, allocs = kernel_bytes(name, args, kwargs, out, func._schema)
        t = self.traffic.setdefault((self._scope(), self.current_phase), Traffic())
        t.read += read
        t.written += written
        t.kernels += 1
        t.ops[name] += 1
        t.allocs.update(allocs)
        return out

    def totals(self, phase: Optional[str] = None) -> Traffic:
        out = Traffic()
        for (_, ph), t in self.traffic.items():
            if phase is None or ph == phase:
                out.read += t.read
                out.written += t.written
                out.kernels += t.kernels
                out.ops.update(t.ops)
                out.allocs.update(t.allocs)
        return out


def count_step_traffic(config, batch_size: int, seq_len: int, dtype=None, device="cpu",
                       optimizer: bool = True, seed: int = 0, model=None, adamw: str = "auto",
                       grad_accum: int = 1) -> TrafficCounter:
    """Count one training step's traffic per (scope, phase): forward with loss, backward, AdamW.

    The step runs once before it is counted (AdamW creates its state on its first step), the
    way a measured step is warm. ``dtype``: bf16/fp16 run under autocast, as every measurement;
    ``adamw``: AdamW's implementation (``runtime.StepSettings.adamw``). ``grad_accum``: the batch in
    that many micro-batches, each loss scaled by 1/grad_accum, as ``train.accumulate_gradients``
    runs them."""
    cfg: GPTConfig = resolve_config(config)
    dev, dt = settings.resolve(device, dtype)
    if model is None:
        torch.manual_seed(seed)
        model = GPT(cfg)
    model = model.to(dev).train()
    idx, targets = random_batch(cfg.vocab_size, batch_size, seq_len, dev, seed)
    opt = make_optimizer(model, dev, adamw=adamw) if optimizer else None
    micro = list(zip(idx.chunk(grad_accum), targets.chunk(grad_accum)))

    def step(counter: Optional[TrafficCounter]):
        model.zero_grad(set_to_none=True)
        ctx = (lambda ph: counter.phase(ph)) if counter else (lambda ph: contextlib.nullcontext())
        for x, y in micro:
            with ctx("forward"):
                with scopes.enabled(model, record=False), (counter.labelling() if counter else
                                                           contextlib.nullcontext()):
                    with settings.autocast(dev, dt):
                        loss = model(x, y)[1]
                if grad_accum > 1:  # the scaling, outside the model: its node is "other"
                    loss = loss / grad_accum
            # scopes a backward opens (tutorial_lib.loss), and the modules a checkpointed block runs again
            with ctx("backward"), scopes.enabled(model, record=False):
                loss.backward()
        if opt is not None:
            with ctx("optimizer"):
                opt.step()

    step(None)
    counter = TrafficCounter(model)
    step(counter)
    return counter


def count_call(fn, *inputs: torch.Tensor, backward: bool = True) -> Dict[str, Traffic]:
    """Traffic of ``out = fn(*inputs)`` (forward) and of ``out.backward(ones)`` (backward), e.g.
    one attention kernel on (B, H, T, D) tensors: {"forward": Traffic, "backward": Traffic}.
    Inputs that should get gradients must require them."""
    counter = TrafficCounter()
    with counter.labelling(), counter.phase("forward"):
        out = fn(*inputs)
    grad = torch.ones_like(out)
    if backward:
        with counter.phase("backward"):
            out.backward(grad)
    return {p: counter.totals(p) for p in ("forward", "backward")}
