"""FlexAttention (PyTorch >= 2.5) with a block mask: fully masked blocks are skipped, not computed.

``flex_attention`` takes a ``mask_mod`` (which (query, key) pairs are allowed) compiled into a
``BlockMask``: blocks of 128 x 128 scores that are entirely masked are never computed, so a causal
mask costs about half of T x T and a sliding window about T x W. On CUDA the kernel is compiled
(Triton); on CPU flex runs forward only: PyTorch has no CPU backward for it.

``torch.nn.attention.flex_attention`` is imported inside the functions: it is optional (older
PyTorch has none) and importing it pulls in the compiler stack.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Optional

import torch


def has_flex_attention() -> bool:
    """True when this PyTorch has ``torch.nn.attention.flex_attention``."""
    try:
        import torch.nn.attention.flex_attention  # noqa: F401  (optional, see the module doc)
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=32)
def flex_block_mask(T: int, window: Optional[int], device: str):
    """A cached causal (optionally sliding-window) BlockMask for flex_attention."""
    from torch.nn.attention.flex_attention import (
        create_block_mask,  # optional, see the module doc
    )

    if window is None:
        def mask_mod(b, h, q_idx, kv_idx):
            return q_idx >= kv_idx
    else:
        def mask_mod(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (q_idx - kv_idx < window)
    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=T, KV_LEN=T, device=device)


@functools.lru_cache(maxsize=1)
def compiled_flex():
    """``torch.compile(flex_attention)``, compiled once per process (the fast path on CUDA)."""
    from torch.nn.attention.flex_attention import (
        flex_attention as _flex,  # optional, see above
    )

    return torch.compile(_flex, dynamic=False)


# Every new shape, dtype, window or GQA ratio compiles flex_attention once more (dynamic=False keeps
# each kernel specialised, as timed). torch.compile's default limit is 8 compilations per function:
# past it, the call silently runs flex_attention *uncompiled*, which builds the whole T x T scores
# matrix -- a sweep over many lengths (the guide suite's triton_flash, flash_vs_T and window
# sections in one process) hit it on the 9th. Flex calls run under this higher limit instead.
RECOMPILE_LIMIT = 64


@contextlib.contextmanager
def recompile_limit(n: int):
    """torch.compile's per-function recompile limit raised to at least ``n`` within the block (it
    is read when a call needs a new compilation): ``recompile_limit`` in torch >= 2.6 (2.11 and 2.13
    alike), ``cache_size_limit`` before. The bound on all of a function's compilations
    (``accumulated_recompile_limit``, 256) stays."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    if getattr(config, name) >= n:
        yield
        return
    with config.patch(**{name: n}):
        yield


def run_compiled(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` for a torch.compile'd ``fn`` under ``recompile_limit(RECOMPILE_LIMIT)``
    (inside a model that torch.compile is tracing, the model's own compilation decides: plain call)."""
    if torch.compiler.is_compiling():
        return fn(*args, **kwargs)
    with recompile_limit(RECOMPILE_LIMIT):
        return fn(*args, **kwargs)


def flex_attention(q, k, v, window=None, *, tile=64, dropout_p=0.0, training=False):
    """Causal (optionally windowed) attention with flex_attention and a cached block mask."""
    if not has_flex_attention():
        raise RuntimeError("attn_backend='flex' needs torch.nn.attention.flex_attention "
                           f"(PyTorch >= 2.5; this is {torch.__version__}); use attn_backend='sdpa'")
    if q.device.type == "cpu" and torch.is_grad_enabled() and q.requires_grad:
        raise RuntimeError(
            "attn_backend='flex' cannot train on CPU: PyTorch has no CPU backward for "
            "flex_attention. Use attn_backend='sdpa' (a window becomes a mask) or "
            "attn_backend='local' (the O(T*W) sliding-window path), or run under torch.no_grad().")
    from torch.nn.attention.flex_attention import (
        flex_attention as _flex,  # optional, see above
    )

    bm = flex_block_mask(q.shape[2], window, str(q.device))
    gqa = q.shape[1] != k.shape[1]
    if q.device.type == "cuda":
        return run_compiled(compiled_flex(), q, k, v, block_mask=bm, enable_gqa=gqa)
    return _flex(q, k, v, block_mask=bm, enable_gqa=gqa)
