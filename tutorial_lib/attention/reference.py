"""The plain backends every other one is checked against: eager attention and PyTorch's SDPA.

References: Vaswani et al. 2017 (attention); Shazeer 2019 (MQA); Ainslie et al. 2023 (GQA).

Shapes everywhere: q (B, H, Tq, D); k, v (B, Hkv, Tk, D) with H a multiple of Hkv (grouped
K/V heads); the output is (B, H, Tq, D). A query at absolute position ``offset + i`` may see key
``j`` when ``j <= offset + i`` and, with a sliding window W, ``offset + i - j < W``.
"""
from __future__ import annotations

import functools
import math
import threading
import warnings
from collections import OrderedDict
from typing import Optional, Tuple

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
    """Bool (T_q, T_k) mask, True where query i (at absolute position offset+i) may see key j.

    Built from a column of query positions and a row of key positions: the comparisons
    broadcast straight to bool, so the only T_q x T_k tensors are bool (1 byte per pair). The
    window test compares j with the *vector* (offset + i) - window instead of forming the
    difference (offset + i) - j for every pair, which would be an int64 T_q x T_k temporary
    (``causal_mask_by_difference``, 8 bytes per pair: 128 MiB at T = 4096).
    """
    qi = torch.arange(offset, offset + T_q, device=device)[:, None]  # (T_q, 1)
    kj = torch.arange(T_k, device=device)[None, :]  # (1, T_k)
    allowed = kj <= qi
    if window is not None:
        allowed &= kj > qi - window
    return allowed


def causal_mask_by_difference(T_q: int, T_k: int, window: Optional[int] = None, offset: int = 0,
                              device=None):
    """The same mask the way this module first built it: ``(qi - kj) < window`` materialises the
    int64 difference of every (query, key) pair. Kept to measure what building it cost (the
    guide's ``own_paths`` section); use ``causal_mask`` or ``shared_mask``."""
    qi = torch.arange(T_q, device=device)[:, None] + offset
    kj = torch.arange(T_k, device=device)[None, :]
    allowed = kj <= qi
    if window is not None:
        allowed = allowed & (qi - kj < window)
    return allowed


# One model step asks for the same mask in every layer, and every step asks again: masks are
# cached. A request with several queries (training, a prefill, the blocked local path) is cached
# as it is; a one-query decode step, whose offset grows with every call, is a row of a cached
# square mask whose side is a power of two, so a decode loop reuses a few entries. The cache is
# bounded by bytes; a mask larger than the whole budget is built and not kept.
MASK_CACHE_BYTES = 512 * 2**20
_mask_cache: "OrderedDict[tuple, Tuple[torch.Tensor, int]]" = OrderedDict()
_mask_lock = threading.Lock()


MASK_ROWS_BYTES = 4 * 2**20  # the window's comparisons run over row blocks of at most this many bools


def additive_mask(T_q: int, T_k: int, window: Optional[int] = None, offset: int = 0, device=None,
                  dtype=torch.float32) -> torch.Tensor:
    """The causal (optionally windowed) mask as SDPA adds it to the scores: 0 where a query may see
    a key, -inf elsewhere, in ``dtype``. Written straight into the one (T_q, T_k) float tensor: a
    fill and ``triu_`` make the causal part (no T x T bool at all), and the window's lower edge is
    compared one block of rows at a time (``MASK_ROWS_BYTES``) -- not built as a bool mask first
    and then converted, which held both at once."""
    mask = torch.full((T_q, T_k), float("-inf"), dtype=dtype, device=device).triu_(offset + 1)
    if window is not None:
        kj = torch.arange(T_k, device=device)[None, :]
        step = max(1, MASK_ROWS_BYTES // max(1, T_k))
        first = max(0, window - offset)  # rows before this see every earlier key: nothing to hide
        for r0 in range(first, T_q, step):
            r1 = min(T_q, r0 + step)
            edge = torch.arange(offset + r0, offset + r1, device=device)[:, None] - window  # (rows, 1)
            mask[r0:r1].masked_fill_(kj <= edge, float("-inf"))
    return mask


def _build_mask(T_q: int, T_k: int, window: Optional[int], offset: int, device, dtype) -> torch.Tensor:
    if dtype == torch.bool:
        return causal_mask(T_q, T_k, window, offset, device)
    # additive, in the query's dtype: what the fused kernels use (a bool mask would be converted
    # to this on every call, a float T x T temporary each time)
    return additive_mask(T_q, T_k, window, offset, device, dtype)


def _cached_mask(T_q: int, T_k: int, window: Optional[int], offset: int, device: torch.device,
                 dtype) -> torch.Tensor:
    key = (T_q, T_k, window, offset, str(device), dtype)
    with _mask_lock:
        hit = _mask_cache.get(key)
        if hit is not None:
            mask, version = hit
            if mask._version == version:
                _mask_cache.move_to_end(key)
                return mask
            del _mask_cache[key]  # someone wrote into a shared mask: never hand it out again
            warnings.warn("a cached attention mask was modified in place; it was rebuilt. Masks from "
                          "shared_mask are shared by every caller: clone one before writing to it.",
                          RuntimeWarning, stacklevel=3)
    with torch.inference_mode(False), torch.no_grad():  # usable later by training as well
        mask = _build_mask(T_q, T_k, window, offset, device, dtype)
    nbytes = mask.numel() * mask.element_size()
    if nbytes <= MASK_CACHE_BYTES:
        with _mask_lock:
            _mask_cache[key] = (mask, mask._version)
            while sum(m.numel() * m.element_size() for m, _ in _mask_cache.values()) > MASK_CACHE_BYTES:
                _mask_cache.popitem(last=False)
    return mask


def clear_mask_cache() -> None:
    """Drop every cached mask (their memory returns once no caller holds one)."""
    with _mask_lock:
        _mask_cache.clear()


def shared_mask(T_q: int, T_k: int, window: Optional[int] = None, offset: int = 0, device=None,
                dtype=torch.bool) -> torch.Tensor:
    """The (T_q, T_k) causal (optionally windowed) mask of ``causal_mask``, cached and shared.

    ``dtype=torch.bool``: True where allowed; a float dtype: an additive mask (0 allowed, -inf
    not), which SDPA uses as it is -- pass the query's dtype. The result is a cached tensor (or a
    view of one) that every caller shares: never write to it (a mask found modified is rebuilt,
    with a warning). Cached per (T_q, T_k, window, offset, device, dtype); a one-query decode step
    is sliced from a square mask whose side is the next power of two, so growing offsets share
    entries. Under ``torch.compile`` it builds the mask in the traced graph instead.
    """
    if torch.compiler.is_compiling():
        allowed = causal_mask(T_q, T_k, window, offset, device)
        if dtype == torch.bool:
            return allowed
        return torch.zeros(T_q, T_k, dtype=dtype, device=device).masked_fill(~allowed, float("-inf"))
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if T_q > 1:
        return _cached_mask(T_q, T_k, window, offset, dev, dtype)
    n = 1 << max(6, (max(T_k, offset + 1) - 1).bit_length())
    return _cached_mask(n, n, window, 0, dev, dtype)[offset:offset + 1, :T_k]


def visible_pairs(T: int, window: Optional[int] = None) -> int:
    """(query, key) pairs a causal (optionally sliding-window) attention uses: sum_i min(i+1, W)."""
    if window is None or window >= T:
        return T * (T + 1) // 2
    return window * (window + 1) // 2 + (T - window) * window


# ---- eager: the textbook version -------------------------------------------------------------
def eager_attention(q, k, v, window=None, *, offset=0, dropout_p=0.0, training=False, tile=None):
    """Materialise the (B, H, Tq, Tk) scores, mask, softmax, weight the values. (``tile``: unused;
    every registered backend takes the registry's keywords.)"""
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
def sdpa_attention(q, k, v, window=None, *, offset=0, dropout_p=0.0, training=False, tile=None):
    """PyTorch's fused attention; a window (or a KV-cache offset) becomes an explicit mask
    (``shared_mask``: cached, additive in the query's dtype, never rebuilt per layer or step).
    (``tile``: unused; every registered backend takes the registry's keywords.)"""
    gqa = q.shape[1] != k.shape[1]
    p = dropout_p if training else 0.0
    if window is None and offset == 0 and q.shape[2] == k.shape[2]:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p, enable_gqa=gqa)
    if q.shape[2] == 1 and offset == k.shape[2] - 1 and (window is None or k.shape[2] <= window):
        # one decoding step that sees every cached key: no mask, so the fused kernels (which
        # support enable_gqa without a mask) run instead of the math fallback
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, enable_gqa=gqa)
    # cached, and additive in q's dtype (SDPA would convert a bool mask on every call)
    mask = shared_mask(q.shape[2], k.shape[2], window, offset, q.device, q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, enable_gqa=gqa)


@functools.lru_cache(maxsize=1)
def sdpa_backward_matmuls() -> int:
    """How many T x T matmuls this torch's FlopCounterMode charges an SDPA backward (4 or 5).

    A fused kernel recomputes the scores in backward (5: S, dV, dP, dQ, dK); PyTorch 2.13's
    counter charges that, older versions charge 4.
    """
    s = (1, 1, 4, 4)
    return int(round(2 * sdpa_backward_flop_count(s, s, s, s) / sdpa_flop_count(s, s, s)))
