"""Named profiler scopes inside the model, after the seed's breakdown.

``scope("attention.core")`` wraps a region in ``torch.profiler.record_function`` while scopes are
enabled (``with enabled(): ...``, which the profiling kit turns on), and costs nothing otherwise,
so plain training and ``torch.compile`` see no profiler ops.

The names form a two-level tree: embedding; attention.{qkv,rope,core,out}; mlp.{up,act,down};
norm; lm_head; loss.
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

_enabled = False
_record = True  # wrap scopes in record_function (False: only track the current scope name)
_stack: list = []  # names of the scopes currently open (innermost last)
_null = contextlib.nullcontext()


class _Scope:
    """Pushes its name on the scope stack and, when recording, opens a ``record_function``."""
    __slots__ = ("name", "_rf")

    def __init__(self, name: str):
        self.name, self._rf = name, None

    def __enter__(self):
        _stack.append(self.name)
        if _record:
            self._rf = torch.profiler.record_function(self.name)
            self._rf.__enter__()
        return self

    def __exit__(self, *exc):
        try:
            if self._rf is not None:
                self._rf.__exit__(*exc)
        finally:
            _stack.pop()
        return False


def scope(name: str):
    """A ``record_function`` context named ``name`` when scopes are on, else a no-op."""
    if _enabled:
        return _Scope(name)
    return _null


def current():
    """The innermost open scope's name (None outside every scope, or when scopes are off).

    The memory kit reads it from a saved-tensor hook to attribute activations to components.
    """
    return _stack[-1] if _stack else None


@contextlib.contextmanager
def enabled(on: bool = True, record: bool = True):
    """Turn the model's named scopes on (or off) inside the ``with`` block.

    ``record=False`` tracks ``current()`` without creating profiler events (no overhead from
    ``record_function``), for tools that only need to know where they are.
    """
    global _enabled, _record
    prev = (_enabled, _record)
    _enabled, _record = on, record
    try:
        yield
    finally:
        _enabled, _record = prev
