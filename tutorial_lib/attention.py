"""Causal self-attention with grouped K/V heads, RoPE, sliding windows and five backends.

References: Vaswani et al. 2017 (attention); Shazeer 2019 (MQA); Ainslie et al. 2023 (GQA);
Su et al. 2021 (RoPE); Dao et al. 2022 (FlashAttention); Beltagy et al. 2020 (sliding windows).

Backends (``GPTConfig.attn_backend``):
- ``eager``: scores = q k^T / sqrt(d) materialised as (B, H, T, T), masked, softmaxed -- the "before".
- ``sdpa``: ``F.scaled_dot_product_attention`` (fused flash/memory-efficient kernels).
- ``tiled``: ``tutorial_lib.flash`` -- the teaching flash attention in pure PyTorch.
- ``flex``: ``torch.nn.attention.flex_attention`` with a (block-sparse) causal/window block mask.
- ``local``: ``tutorial_lib.window`` -- O(T*W) chunked sliding-window attention.
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from tutorial_lib.config import GPTConfig
from tutorial_lib.scopes import scope


# ---- grouped heads ---------------------------------------------------------------------------
def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, n_kv_head, T, D) -> (B, n_kv_head * n_rep, T, D): each K/V head serves n_rep query heads.

    The equivalent of ``torch.repeat_interleave(x, dim=1, repeats=n_rep)``: query heads
    [g*n_rep, (g+1)*n_rep) share K/V head g.
    """
    if n_rep == 1:
        return x
    B, Hkv, T, D = x.shape
    return x[:, :, None].expand(B, Hkv, n_rep, T, D).reshape(B, Hkv * n_rep, T, D)


# ---- rotary positions ------------------------------------------------------------------------
def rope_cache(seq_len: int, head_dim: int, theta: float = 10000.0, device=None):
    """cos, sin tables of shape (seq_len, head_dim/2) for rotary position embeddings."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    t = torch.arange(seq_len, device=device, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    return freqs.cos(), freqs.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., :D/2], x[..., D/2:]) of (B, H, T, D) by position-dependent angles."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


# ---- masks -----------------------------------------------------------------------------------
def causal_mask(T_q: int, T_k: int, window: Optional[int] = None, offset: int = 0, device=None):
    """Bool (T_q, T_k) mask, True where query i (at absolute position offset+i) may see key j."""
    qi = torch.arange(T_q, device=device)[:, None] + offset
    kj = torch.arange(T_k, device=device)[None, :]
    allowed = kj <= qi
    if window is not None:
        allowed = allowed & (qi - kj < window)
    return allowed


# ---- backends: all take q (B, H, Tq, D), k/v (B, Hkv, Tk, D) and return (B, H, Tq, D) ----------
def eager_attention(q, k, v, window=None, offset=0, dropout_p=0.0, training=False):
    """The textbook version: materialise the scores, mask, softmax, weight the values."""
    n_rep = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, Tq, Tk)
    mask = causal_mask(q.shape[2], k.shape[2], window, offset, q.device)
    att = att.masked_fill(~mask, float("-inf"))
    att = F.softmax(att, dim=-1)
    if dropout_p and training:
        att = F.dropout(att, dropout_p)
    return att @ v  # (B, H, Tq, D)


def sdpa_attention(q, k, v, window=None, offset=0, dropout_p=0.0, training=False):
    """PyTorch's fused attention; a window (or a KV-cache offset) becomes an explicit bool mask."""
    gqa = q.shape[1] != k.shape[1]
    p = dropout_p if training else 0.0
    if window is None and offset == 0 and q.shape[2] == k.shape[2]:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p, enable_gqa=gqa)
    if q.shape[2] == 1 and offset == k.shape[2] - 1 and (window is None or k.shape[2] <= window):
        # one decoding step that sees every cached key: no mask, so the fused kernels (which
        # support enable_gqa without a mask) run instead of the math fallback
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, enable_gqa=gqa)
    mask = causal_mask(q.shape[2], k.shape[2], window, offset, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, enable_gqa=gqa)


def tiled_attention(q, k, v, window=None, tile=64):
    from tutorial_lib.flash import tiled_attention as _tiled

    n_rep = q.shape[1] // k.shape[1]
    return _tiled(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), window, tile)


def has_flex_attention() -> bool:
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=32)
def flex_block_mask(T: int, window: Optional[int], device: str):
    """A cached causal (optionally sliding-window) BlockMask for flex_attention."""
    from torch.nn.attention.flex_attention import create_block_mask

    if window is None:
        def mask_mod(b, h, q_idx, kv_idx):
            return q_idx >= kv_idx
    else:
        def mask_mod(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (q_idx - kv_idx < window)
    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=T, KV_LEN=T, device=device)


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention
    return torch.compile(flex_attention, dynamic=False)


def flex_attention(q, k, v, window=None):
    """FlexAttention with a block mask: fully masked blocks are skipped, not computed."""
    if not has_flex_attention():
        raise RuntimeError("attn_backend='flex' needs torch.nn.attention.flex_attention "
                           f"(PyTorch >= 2.5; this is {torch.__version__}); use attn_backend='sdpa'")
    if q.device.type == "cpu" and torch.is_grad_enabled() and q.requires_grad:
        raise RuntimeError(
            "attn_backend='flex' cannot train on CPU: PyTorch has no CPU backward for "
            "flex_attention. Use attn_backend='sdpa' (a window becomes a mask) or "
            "attn_backend='local' (the O(T*W) sliding-window path), or run under torch.no_grad().")
    from torch.nn.attention.flex_attention import flex_attention as _flex

    T = q.shape[2]
    bm = flex_block_mask(T, window, str(q.device))
    fn = _compiled_flex() if q.device.type == "cuda" else _flex
    return fn(q, k, v, block_mask=bm, enable_gqa=q.shape[1] != k.shape[1])


def local_attention(q, k, v, window):
    from tutorial_lib.window import local_window_attention
    return local_window_attention(q, k, v, window)


def attention_core(q, k, v, backend: str, window: Optional[int] = None, tile: int = 64,
                   dropout_p: float = 0.0, training: bool = False):
    """Causal attention over (B, H, T, D) queries and (B, Hkv, T, D) keys/values."""
    if backend == "eager":
        return eager_attention(q, k, v, window, dropout_p=dropout_p, training=training)
    if backend == "sdpa":
        return sdpa_attention(q, k, v, window, dropout_p=dropout_p, training=training)
    if backend == "tiled":
        return tiled_attention(q, k, v, window, tile)
    if backend == "flex":
        return flex_attention(q, k, v, window)
    if backend == "local":
        return local_attention(q, k, v, window)
    raise ValueError(f"attn_backend={backend!r} is unknown")


# ---- the module ------------------------------------------------------------------------------
class CausalSelfAttention(nn.Module):
    """q/k/v/o projections with ``n_kv_head`` key/value heads, RoPE, and a pluggable core."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        C, D = config.n_embd, config.head_dim
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.kv_heads, D
        self.q_proj = nn.Linear(C, config.n_head * D, bias=config.bias)
        self.k_proj = nn.Linear(C, config.kv_heads * D, bias=config.bias)
        self.v_proj = nn.Linear(C, config.kv_heads * D, bias=config.bias)
        self.o_proj = nn.Linear(config.n_head * D, C, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, rope=None, kv_cache=None, layer: int = 0):
        B, T, C = x.shape
        with scope("attention.qkv"):
            q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
            k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
            v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        offset = 0 if kv_cache is None else kv_cache.length
        if rope is not None:
            with scope("attention.rope"):
                cos, sin = rope[0][offset:offset + T], rope[1][offset:offset + T]
                q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        with scope("attention.core"):
            if kv_cache is None:
                y = attention_core(q, k, v, self.config.attn_backend, self.config.window,
                                   self.config.tile_size, self.config.dropout, self.training)
            else:
                k, v = kv_cache.update(layer, k, v)
                # decoding: the new queries sit at positions offset..offset+T-1 of the cache
                if self.config.attn_backend == "eager":
                    y = eager_attention(q, k, v, self.config.window, offset)
                else:
                    y = sdpa_attention(q, k, v, self.config.window, offset)
        with scope("attention.out"):
            y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * self.head_dim)
            return self.resid_dropout(self.o_proj(y))


class KVCache:
    """Pre-allocated keys and values for every layer: (n_layer, B, n_kv_head, max_len, head_dim) each.

    Its size follows ``n_kv_head``: that is where GQA/MQA pay at inference time.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device=None, dtype=None):
        shape = (config.n_layer, batch_size, config.kv_heads, max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.length = 0  # tokens stored so far (the same for every layer)
        self._pending = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        T = k.shape[2]
        end = self.length + T
        if end > self.max_len:
            raise ValueError(f"KVCache: {end} tokens exceed max_len={self.max_len}")
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        self._pending = T
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self):
        """Called once per forward, after every layer has stored its new keys and values."""
        self.length += self._pending
        self._pending = 0

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2
