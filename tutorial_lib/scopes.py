"""Named profiler scopes in the model, after the seed's breakdown.

The names form a two-level tree: embedding; attention.{qkv,rope,core,out}; mlp.{up,act,down};
norm; lm_head; loss. Most of them label *modules*: ``with enabled(model):`` attaches a forward
pre-hook and a forward hook to each module that ``model.module_scopes()`` names, which open and
close a ``torch.profiler.record_function`` range. Where no module exists (RoPE, the attention
kernel, the MLP's activation, the loss) the model says ``with scope("attention.core"):``. The
chunked loss (``tutorial_lib.loss``) runs inside ``scope("loss")`` and opens ``scope("lm_head")``
around each chunk's matmuls, in forward and in backward: a scope nested in another is charged its
own time, and the outer one the rest (``measure.profile``).

Outside ``enabled`` nothing is attached and ``scope`` is a shared no-op, so plain training and
``torch.compile`` see no profiler ops. ``current()`` is the innermost open scope: the memory kit
reads it from a saved-tensor hook to attribute activations to components. ``saving_as(name)`` is a
label for the memory kit alone (no profiler range): activation checkpointing saves a region's
inputs before the region's own scopes open, and the model says what they are (``saving()``).
"""
from __future__ import annotations

import contextlib

import torch

SCOPE_NAMES = (
    "embedding",
    "attention.qkv", "attention.rope", "attention.core", "attention.out",
    "mlp.up", "mlp.act", "mlp.down",
    "norm", "lm_head", "loss",
)

_state = {"on": False, "record": True}
_stack: list = []  # the scopes currently open, innermost last
_saving: list = []  # the memory kit's labels (``saving_as``), innermost last
_null = contextlib.nullcontext()


class Scope:
    """Pushes its name on the scope stack and, when recording, opens a ``record_function``."""
    __slots__ = ("name", "rf")

    def __init__(self, name: str):
        self.name, self.rf = name, None

    def __enter__(self):
        _stack.append(self)
        if _state["record"]:
            self.rf = torch.profiler.record_function(self.name)
            self.rf.__enter__()
        return self

    def __exit__(self, *exc):
        try:
            if self.rf is not None:
                self.rf.__exit__(*exc)
        finally:
            _stack.pop()
        return False


def scope(name: str):
    """A ``record_function`` context named ``name`` when scopes are on, else a no-op."""
    return Scope(name) if _state["on"] else _null


def current():
    """The innermost open scope's name (None outside every scope, or when scopes are off)."""
    return _stack[-1].name if _stack else None


class SavingAs:
    """Pushes a label for tensors saved inside it (``saving()``); no profiler range."""
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        _saving.append(self.name)
        return self

    def __exit__(self, *exc):
        _saving.pop()
        return False


def saving_as(name: str):
    """While scopes are on: tensors autograd saves inside are the memory kit's ``name``
    (``measure.memory``), whatever scope is open; a shared no-op otherwise."""
    return SavingAs(name) if _state["on"] else _null


def saving():
    """The innermost ``saving_as`` label (None outside every one, or when scopes are off)."""
    return _saving[-1] if _saving else None


def _attach(model) -> list:
    """Hooks that open a scope around each named module's forward; returns their handles."""
    handles = []
    for module, name in model.module_scopes().items():
        def pre(mod, args, name=name):
            Scope(name).__enter__()

        def post(mod, args, out):
            if _stack:
                _stack[-1].__exit__(None, None, None)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post, always_call=True))
    return handles


@contextlib.contextmanager
def enabled(model=None, on: bool = True, record: bool = True):
    """Turn the scopes on inside the ``with`` block (and label ``model``'s modules, if given).

    ``record=False`` tracks ``current()`` without creating profiler events (no overhead from
    ``record_function``), for tools that only need to know where they are.
    """
    prev = dict(_state)
    _state.update(on=on, record=record)
    handles = _attach(model) if (model is not None and on) else []
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        _state.update(prev)
