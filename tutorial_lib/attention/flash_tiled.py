"""The teaching flash attention: tiled, online softmax, recomputation in backward, pure PyTorch.

FlashAttention (Dao et al., 2022; FlashAttention-2, Dao 2023) never materialises the T x T score
matrix. It walks over tiles of keys, keeps for every query a running maximum ``m`` and a running
normaliser ``l`` (the *online softmax*), and rescales the partial output whenever the maximum grows.
Backward does not keep the probabilities either: it recomputes each tile's probabilities from
(q, k, v, out, logsumexp), so the memory saved for backward grows linearly in T.

This version is written for reading, not for speed: the tile loops run in Python, each tile is a
few small matmuls, so it is slower than PyTorch's fused ``scaled_dot_product_attention`` -- but its
memory curve is the real thing. Shapes: q, k, v are (B, H, T, D) with the same number of heads; the registered backend
(``tiled_backend``) expands grouped K/V heads with ``repeat_kv`` first.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from tutorial_lib.attention.reference import repeat_kv


def online_softmax_update(m, l, acc, scores, v_tile):
    """One step of the online softmax, for one tile of keys.

    m, l: running row max and normaliser, shape (..., Tq, 1); acc: unnormalised output (..., Tq, D);
    scores: this tile's scores (..., Tq, Tk) with masked entries at -inf; v_tile: (..., Tk, D).
    Returns the new (m, l, acc). The final output is ``acc / l``.
    """
    m_new = torch.maximum(m, scores.amax(dim=-1, keepdim=True))
    # rows that have seen no key yet keep m = -inf; avoid (-inf) - (-inf) = nan
    m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
    p = torch.exp(scores - m_safe)
    alpha = torch.exp(m - m_safe)
    l_new = alpha * l + p.sum(dim=-1, keepdim=True)
    acc_new = alpha * acc + p @ v_tile
    return m_new, l_new, acc_new


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulate in float32 for half/bfloat16 inputs, and never below the input's precision."""
    return torch.promote_types(dtype, torch.float32)


def tile_mask(q0, q1, k0, k1, window, device):
    """Boolean (q1-q0, k1-k0) mask of allowed (query, key) pairs, or None when all are allowed."""
    qi = torch.arange(q0, q1, device=device)[:, None]
    kj = torch.arange(k0, k1, device=device)[None, :]
    if k1 - 1 <= q0 and (window is None or q1 - 1 - k0 < window):
        return None  # tile entirely inside the causal (and window) band
    allowed = kj <= qi
    if window is not None:
        allowed = allowed & (qi - kj < window)
    return allowed


def key_tiles(q0, q1, T, tile, window):
    """Key tiles that can hold a visible key for queries q0..q1-1 (causal, optional window)."""
    first = 0 if window is None else max(0, q0 - window + 1) // tile * tile
    last = min(q1, T)  # keys beyond the last query are in the future
    return range(first, last, tile)


def tiled_attention_forward(q, k, v, scale, window=None, tile=64):
    """Forward pass. Returns (out, lse) with lse = logsumexp of each query's scores, (B, H, T)."""
    B, H, T, D = q.shape
    acc_dtype = _acc_dtype(q.dtype)
    out = torch.empty_like(q)
    lse = torch.empty(B, H, T, device=q.device, dtype=acc_dtype)
    for q0 in range(0, T, tile):
        q1 = min(q0 + tile, T)
        qt = q[:, :, q0:q1].to(acc_dtype) * scale
        m = torch.full((B, H, q1 - q0, 1), float("-inf"), device=q.device, dtype=acc_dtype)
        l = torch.zeros((B, H, q1 - q0, 1), device=q.device, dtype=acc_dtype)
        acc = torch.zeros((B, H, q1 - q0, D), device=q.device, dtype=acc_dtype)
        for k0 in key_tiles(q0, q1, T, tile, window):
            k1 = min(k0 + tile, T)
            s = qt @ k[:, :, k0:k1].to(acc_dtype).transpose(-2, -1)  # (B, H, tq, tk)
            mask = tile_mask(q0, q1, k0, k1, window, q.device)
            if mask is not None:
                s = s.masked_fill(~mask, float("-inf"))
            m, l, acc = online_softmax_update(m, l, acc, s, v[:, :, k0:k1].to(acc_dtype))
        out[:, :, q0:q1] = (acc / l).to(q.dtype)
        lse[:, :, q0:q1] = (m + torch.log(l)).squeeze(-1)
    return out, lse


def tiled_attention_backward(q, k, v, out, lse, dout, scale, window=None, tile=64):
    """FlashAttention-2 style backward: recompute each tile's probabilities from lse."""
    B, H, T, D = q.shape
    a = _acc_dtype(q.dtype)
    dq = torch.zeros(q.shape, device=q.device, dtype=a)
    dk = torch.zeros(k.shape, device=q.device, dtype=a)
    dv = torch.zeros(v.shape, device=q.device, dtype=a)
    delta = (dout.to(a) * out.to(a)).sum(-1, keepdim=True)  # (B, H, T, 1) = rowsum(dO * O)
    for q0 in range(0, T, tile):
        q1 = min(q0 + tile, T)
        qt, dot = q[:, :, q0:q1].to(a), dout[:, :, q0:q1].to(a)
        lse_t, delta_t = lse[:, :, q0:q1, None], delta[:, :, q0:q1]
        for k0 in key_tiles(q0, q1, T, tile, window):
            k1 = min(k0 + tile, T)
            kt, vt = k[:, :, k0:k1].to(a), v[:, :, k0:k1].to(a)
            s = (qt @ kt.transpose(-2, -1)) * scale
            mask = tile_mask(q0, q1, k0, k1, window, q.device)
            if mask is not None:
                s = s.masked_fill(~mask, float("-inf"))
            p = torch.exp(s - lse_t)  # the probabilities, recomputed
            dv[:, :, k0:k1] += p.transpose(-2, -1) @ dot
            dp = dot @ vt.transpose(-2, -1)
            ds = p * (dp - delta_t)
            dq[:, :, q0:q1] += (ds @ kt) * scale
            dk[:, :, k0:k1] += (ds.transpose(-2, -1) @ qt) * scale
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class TiledAttention(torch.autograd.Function):
    """Causal (optionally windowed) attention that saves only q, k, v, out and logsumexp."""

    @staticmethod
    def forward(ctx, q, k, v, window, tile):
        scale = 1.0 / math.sqrt(q.shape[-1])
        out, lse = tiled_attention_forward(q, k, v, scale, window, tile)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale, ctx.window, ctx.tile = scale, window, tile
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = tiled_attention_backward(q, k, v, out, lse, dout.contiguous(), ctx.scale,
                                              ctx.window, ctx.tile)
        return dq, dk, dv, None, None


def tiled_attention(q, k, v, window: Optional[int] = None, tile: int = 64):
    """Causal attention over (B, H, T, D) tensors without materialising T x T (see module doc)."""
    if q.shape != k.shape or k.shape != v.shape:
        raise ValueError(f"tiled_attention: q, k, v must share a shape (expand K/V heads with "
                         f"repeat_kv first); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    return TiledAttention.apply(q, k, v, window, tile)


def tiled_pairs(T: int, tile: int, window: Optional[int] = None) -> int:
    """(query, key) pairs this kernel computes: whole tiles, skipping tiles that are fully masked."""
    n = 0
    for q0 in range(0, T, tile):
        q1 = min(q0 + tile, T)
        for k0 in key_tiles(q0, q1, T, tile, window):
            n += (q1 - q0) * (min(k0 + tile, T) - k0)
    return n


def tile_count(T: int, tile: int, window: Optional[int] = None) -> int:
    """(query tile, key tile) blocks this kernel visits: one kernel launch chain each."""
    return sum(len(key_tiles(q0, min(q0 + tile, T), T, tile, window)) for q0 in range(0, T, tile))


def tiled_backend(q, k, v, window=None, *, tile=64, dropout_p=0.0, training=False):
    """The registered ``tiled`` backend: grouped K/V heads expanded, then ``tiled_attention``
    (no attention dropout: the teaching kernel has none)."""
    n_rep = q.shape[1] // k.shape[1]
    return tiled_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), window, tile)
