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
_null = contextlib.nullcontext()


def scope(name: str):
    """A ``record_function`` context named ``name`` when scopes are on, else a no-op."""
    if _enabled:
        return torch.profiler.record_function(name)
    return _null


@contextlib.contextmanager
def enabled(on: bool = True):
    """Turn the model's named scopes on (or off) inside the ``with`` block."""
    global _enabled
    prev, _enabled = _enabled, on
    try:
        yield
    finally:
        _enabled = prev
