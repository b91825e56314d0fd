"""FlexAttention (PyTorch >= 2.5) with a block mask: fully masked blocks are skipped, not computed.

``flex_attention`` takes a ``mask_mod`` (which (query, key) pairs are allowed) compiled into a
``BlockMask``: blocks of 128 x 128 scores that are entirely masked are never computed, so a causal
mask costs about half of T x T and a sliding window about T x W. On CUDA the kernel is compiled
(Triton); on CPU flex runs forward only: PyTorch has no CPU backward for it.

``torch.nn.attention.flex_attention`` is imported inside the functions: it is optional (older
PyTorch has none) and importing it pulls in the compiler stack.
"""
from __future__ import annotations

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
    fn = compiled_flex() if q.device.type == "cuda" else _flex
    return fn(q, k, v, block_mask=bm, enable_gqa=q.shape[1] != k.shape[1])
