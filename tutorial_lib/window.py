"""Sliding-window attention in O(T * W): chunked local attention.

With a window of W, query i sees keys (i-W, i]. Cut the sequence into blocks of C = W positions:
the keys a query block needs are then its own block (causal) and the block before it (banded).
So each query block attends to 2C keys instead of up to T: the work is T * 2W, linear in T,
where a band *mask* on full attention still computes all T x T scores.

Shapes: q (B, H, T, D); k, v (B, Hkv, T, D). T need not be a multiple of W (it is padded).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tutorial_lib.attention import causal_mask, repeat_kv


def local_window_attention(q, k, v, window: int):
    """Causal sliding-window attention computed block by block (see module doc)."""
    if window is None or window < 1:
        raise ValueError(f"local_window_attention: window={window!r} must be an integer >= 1")
    B, H, T, D = q.shape
    n_rep = H // k.shape[1]
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    if window >= T:  # one block: plain causal attention
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    C = window
    nb = math.ceil(T / C)
    pad = nb * C - T
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    qb = q.view(B, H, nb, C, D)
    kb, vb = k.view(B, H, nb, C, D), v.view(B, H, nb, C, D)
    # keys of block n: block n-1 (zeros before the first) followed by block n -> (B, H, nb, 2C, D)
    prev_k = F.pad(kb, (0, 0, 0, 0, 1, 0))[:, :, :-1]
    prev_v = F.pad(vb, (0, 0, 0, 0, 1, 0))[:, :, :-1]
    kk, vv = torch.cat([prev_k, kb], dim=3), torch.cat([prev_v, vb], dim=3)
    # query c of a block sits at local key position C + c; it sees keys j with 0 <= C+c-j < W
    mask = causal_mask(C, 2 * C, window, offset=C, device=q.device)  # (C, 2C)
    first = mask.clone()
    first[:, :C] = False  # block 0 has no previous block
    masks = torch.stack([first] + [mask] * (nb - 1)) if nb > 1 else first[None]
    out = F.scaled_dot_product_attention(qb, kk, vv, attn_mask=masks[None, None])
    return out.reshape(B, H, nb * C, D)[:, :, :T]
