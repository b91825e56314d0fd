"""The plain backends every other one is checked against: eager attention and PyTorch's SDPA.

References: Vaswani et al. 2017 (attention); Shazeer 2019 (MQA); Ainslie et al. 2023 (GQA).

Shapes everywhere: q (B, H, Tq, D); k, v (B, Hkv, Tk, D) with H a multiple of Hkv (grouped
K/V heads); the output is (B, H, Tq, D). A query at absolute position ``offset + i`` may see key
``j`` when ``j <= offset + i`` and, with a sliding window W, ``offset + i - j < W``.
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count


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


# ---- masks -----------------------------------------------------------------------------------
def causal_mask(T_q: int, T_k: int, window: Optional[int] = None, offset: int = 0, device=None):
    """Bool (T_q, T_k) mask, True where query i (at absolute position offset+i) may see key j."""
    qi = torch.arange(T_q, device=device)[:, None] + offset
    kj = torch.arange(T_k, device=device)[None, :]
    allowed = kj <= qi
    if window is not None:
        allowed = allowed & (qi - kj < window)
    return allowed


def visible_pairs(T: int, window: Optional[int] = None) -> int:
    """(query, key) pairs a causal (optionally sliding-window) attention uses: sum_i min(i+1, W)."""
    if window is None or window >= T:
        return T * (T + 1) // 2
    return window * (window + 1) // 2 + (T - window) * window


# ---- eager: the textbook version -------------------------------------------------------------
def eager_attention(q, k, v, window=None, offset=0, dropout_p=0.0, training=False):
    """Materialise the (B, H, Tq, Tk) scores, mask, softmax, weight the values."""
    n_rep = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, Tq, Tk)
    mask = causal_mask(q.shape[2], k.shape[2], window, offset, q.device)
    att = att.masked_fill(~mask, float("-inf"))
    att = F.softmax(att, dim=-1)
    if dropout_p and training:
        att = F.dropout(att, dropout_p)
    return att @ v  # (B, H, Tq, D)


# ---- sdpa: PyTorch's fused kernels -----------------------------------------------------------
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


@functools.lru_cache(maxsize=1)
def sdpa_backward_matmuls() -> int:
    """How many T x T matmuls this torch's FlopCounterMode charges an SDPA backward (4 or 5).

    A fused kernel recomputes the scores in backward (5: S, dV, dP, dQ, dK); PyTorch 2.13's
    counter charges that, older versions charge 4.
    """
    s = (1, 1, 4, 4)
    return int(round(2 * sdpa_backward_flop_count(s, s, s, s) / sdpa_flop_count(s, s, s)))
