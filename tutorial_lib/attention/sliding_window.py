"""Sliding-window attention in O(T * W): blocked local attention.

With a window of W, query i sees keys i-W+1 .. i -- itself and the W-1 keys before it (Beltagy et
al. 2020, Longformer; Mistral 7B). Each query needs W scores instead of up to T, so the work is
about T * W, linear in T. A band *mask* on full attention still computes all T x T scores (see
``band_mask_attention``): a mask says which scores to throw away, not which to skip.

Two implementations of the blocking:

- ``local_window_attention_sdpa``: device-agnostic and short. Cut T into blocks of C = W queries;
  block n needs only key blocks n-1 and n, so one ``scaled_dot_product_attention`` call on
  (C x 2C) blocks with one shared band mask does it (block 0 is plain causal): 2W scores per
  query, autograd for free.
- ``local_window_attention`` on CPU (``_LocalWindowCPU``): the first W queries are plain causal
  attention; every later block of b = min(64, W//2) queries attends to its own block causally,
  and to the W-1 keys before the block with one (b, W-1) mask shared by all blocks. Those key
  windows overlap, and are a strided *view* of K and V, never copied; grouped K/V heads are used
  as they are (no ``repeat_kv``). Both halves run on PyTorch's CPU flash kernel, which returns the
  log-sum-exp of each query's scores, and are merged by it (the online-softmax merge of
  FlashAttention). Backward calls the kernel's own backward on both halves with the *merged*
  output and log-sum-exp -- exactly what a flash backward needs, since it recomputes the
  probabilities as exp(score - lse) and uses rowsum(dO * O) -- and adds the gradients. The
  kernel returns K/V gradients *per window* ((W-1)/b times the size of dK), so the backward goes
  through the blocks in chunks and folds each chunk back at once: the peak stays linear in T and
  below full causal SDPA's (measured with ``measure.memory.cpu_peak_bytes``).
  Work: W + b - 1 scores per query.

Shapes: q (B, H, T, D); k, v (B, Hkv, T, D) with H a multiple of Hkv (GQA). T need not be a
multiple of anything (the last block is padded).
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import torch
import torch.nn.functional as F

from tutorial_lib.attention.reference import causal_mask, repeat_kv, shared_mask, visible_pairs


# ---- checks ----------------------------------------------------------------------------------
def _check(q, k, v, window) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"local_window_attention: window={window!r} must be an integer >= 1")
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"local_window_attention: q, k, v must be 4-D (B, H, T, D); got shapes "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(f"local_window_attention: shapes q={tuple(q.shape)}, k={tuple(k.shape)}, "
                         f"v={tuple(v.shape)} do not match as (B, H, T, D) / (B, Hkv, T, D)")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"local_window_attention: n_head={q.shape[1]} is not a multiple of "
                         f"n_kv_head={k.shape[1]}")


# ---- the plain-SDPA path: block 0 causal, then one masked call over (C x 2C) blocks ----------
def local_window_attention_sdpa(q, k, v, window: int, scale: Optional[float] = None):
    """Blocked sliding-window attention with plain SDPA calls (any device, autograd built in).

    Blocks of C = window queries. Block 0 is plain causal attention; every later block n attends
    to key blocks n-1 and n -- (C x 2C) scores with one band mask shared by all blocks.
    """
    _check(q, k, v, window)
    B, H, T, D = q.shape
    k, v = repeat_kv(k, H // k.shape[1]), repeat_kv(v, H // k.shape[1])
    if window >= T:  # one block: plain causal attention
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    C = window
    nb = math.ceil(T / C)
    pad = nb * C - T
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    first = F.scaled_dot_product_attention(q[:, :, :C], k[:, :, :C], v[:, :, :C], is_causal=True,
                                           scale=scale)
    kb, vb = k.reshape(B, H, nb, C, D), v.reshape(B, H, nb, C, D)
    # keys of block n >= 1: block n-1 then block n -> (B, H*(nb-1), 2C, D)
    kk = torch.cat([kb[:, :, :-1], kb[:, :, 1:]], dim=3).reshape(B, H * (nb - 1), 2 * C, D)
    vv = torch.cat([vb[:, :, :-1], vb[:, :, 1:]], dim=3).reshape(B, H * (nb - 1), 2 * C, D)
    # query c sits at local key position C + c and sees keys j with 0 <= C + c - j < W
    mask = shared_mask(C, 2 * C, window, offset=C, device=q.device, dtype=q.dtype)  # (C, 2C), broadcast
    rest = F.scaled_dot_product_attention(q[:, :, C:].reshape(B, H * (nb - 1), C, D), kk, vv,
                                          attn_mask=mask, scale=scale)
    out = torch.cat([first, rest.reshape(B, H, (nb - 1) * C, D)], dim=2)
    return out[:, :, :T] if pad else out


# ---- the fast CPU path ------------------------------------------------------------------------
def _cpu_flash():
    """PyTorch's CPU flash-attention kernel and its backward (both return/take the log-sum-exp)."""
    ops = torch.ops.aten
    if not (hasattr(ops, "_scaled_dot_product_flash_attention_for_cpu")
            and hasattr(ops, "_scaled_dot_product_flash_attention_for_cpu_backward")):
        return None
    return (ops._scaled_dot_product_flash_attention_for_cpu,
            ops._scaled_dot_product_flash_attention_for_cpu_backward)


@functools.lru_cache(maxsize=16)
def _band_mask(b: int, L: int, dtype, device) -> torch.Tensor:
    """(b, L) additive mask shared by every query block: query c sees window key u iff u >= c.

    0 where allowed, -inf elsewhere (the raw kernel wants a mask in the query's dtype, not bool).
    Cached: every layer and step of a model asks for the same one (never written to).
    """
    c = torch.arange(b, device=device)[:, None]
    u = torch.arange(L, device=device)[None, :]
    return torch.zeros(b, L, dtype=dtype, device=device).masked_fill_(u < c, float("-inf"))


def _key_windows(x: torch.Tensor, W: int, b: int, n: int) -> torch.Tensor:
    """(B', T', D) contiguous -> (B', n, W-1, D) *view*: window i holds keys 1+i*b .. i*b+W-1.

    Consecutive windows overlap (stride b < W-1): no key is copied.
    """
    Bp, Tp, D = x.shape
    return x.as_strided((Bp, n, W - 1, D), (Tp * D, b * D, D, 1), x.storage_offset() + D)


def _group(x: torch.Tensor, n_rep: int, r: int, W: int, n: int, b: int) -> torch.Tensor:
    """(B, H, T', D) contiguous -> (B*Hkv, n, b, D) view: queries W.. of the heads g*n_rep + r."""
    B, H, T, D = x.shape
    return x.view(B * (H // n_rep), n_rep, T, D)[:, r, W:].view(B * (H // n_rep), n, b, D)


def _merge(o1, l1, o2, l2):
    """Merge two partial attentions over disjoint key sets by their log-sum-exp (in place in o1)."""
    lse = torch.logaddexp(l1, l2)
    w1, w2 = torch.exp(l1 - lse)[..., None], torch.exp(l2 - lse)[..., None]
    if o1.dtype in (torch.float32, torch.float64):
        return o1.mul_(w1.to(o1.dtype)).add_(o2.mul_(w2.to(o2.dtype))), lse
    return (o1.float() * w1 + o2.float() * w2).to(o1.dtype), lse  # bf16/fp16: merge in fp32


class _LocalWindowCPU(torch.autograd.Function):
    """Sliding-window attention from three calls of the CPU flash kernel (see ``local_window_attention``).

    q (B, H, T', D), k/v (B, Hkv, T', D) contiguous, with T' - W a multiple of the block b < W.
    """

    @staticmethod
    def forward(ctx, q, k, v, W: int, b: int, scale: float, chunk: Optional[int] = None):
        fwd, _ = _cpu_flash()
        B, H, T, D = q.shape
        Hkv = k.shape[1]
        n_rep, n = H // Hkv, (T - W) // b
        out = torch.empty_like(q)
        # 1) the first W queries: their window is everything so far -> plain causal (native GQA)
        o0, l0 = fwd(q[:, :, :W], k[:, :, :W], v[:, :, :W], 0.0, True, scale=scale)
        out[:, :, :W] = o0
        # 2) queries W.. in blocks of b: own block causally + the W-1 keys before the block (masked)
        mask = _band_mask(b, W - 1, q.dtype, q.device)
        kf, vf = k.view(B * Hkv, T, D), v.view(B * Hkv, T, D)
        k_own, v_own = kf[:, W:].view(B * Hkv, n, b, D), vf[:, W:].view(B * Hkv, n, b, D)
        k_win, v_win = _key_windows(kf, W, b, n), _key_windows(vf, W, b, n)
        lses = []
        for r in range(n_rep):  # GQA: query heads g*n_rep + r share K/V head g -- no repeat_kv
            qr = _group(q, n_rep, r, W, n, b)  # blocks play the kernel's "heads"
            o1, l1 = fwd(qr, k_own, v_own, 0.0, True, scale=scale)
            o2, l2 = fwd(qr, k_win, v_win, 0.0, False, attn_mask=mask, scale=scale)
            o, lse = _merge(o1, l1, o2, l2)
            _group(out, n_rep, r, W, n, b).copy_(o)
            lses.append(lse)
        ctx.save_for_backward(q, k, v, out, l0, *lses)
        ctx.W, ctx.b, ctx.scale, ctx.chunk = W, b, scale, chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        _, bwd = _cpu_flash()
        q, k, v, out, l0, *lses = ctx.saved_tensors
        W, b, scale = ctx.W, ctx.b, ctx.scale
        B, H, T, D = q.shape
        Hkv = k.shape[1]
        n_rep, n = H // Hkv, (T - W) // b
        go = grad_out.contiguous()
        dq, dk, dv = torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v)
        # The kernel's backward recomputes probabilities as exp(score - lse) and uses rowsum(dO * O):
        # given the *merged* out and lse, each part's call returns exactly that part's gradient.
        dq0, dk0, dv0 = bwd(go[:, :, :W], q[:, :, :W], k[:, :, :W], v[:, :, :W], out[:, :, :W], l0,
                            0.0, True, scale=scale)
        dq[:, :, :W], dk[:, :, :W], dv[:, :, :W] = dq0, dk0, dv0
        del dq0, dk0, dv0
        mask = _band_mask(b, W - 1, q.dtype, q.device)
        kf, vf = k.view(B * Hkv, T, D), v.view(B * Hkv, T, D)
        dkf, dvf = dk.view(B * Hkv, T, D), dv.view(B * Hkv, T, D)
        k_own, v_own = kf[:, W:].view(B * Hkv, n, b, D), vf[:, W:].view(B * Hkv, n, b, D)
        k_win, v_win = _key_windows(kf, W, b, n), _key_windows(vf, W, b, n)
        # The kernel writes K/V gradients *per window*: W-1 rows for every block of b queries,
        # about (W-1)/b times the size of dK itself. Blocks go through in chunks so that those
        # temporaries stay a bounded slice of the gradient, folded back before the next chunk.
        c = ctx.chunk or backward_chunk(T, W, b)
        for r in range(n_rep):
            qg, gg, og = (_group(t, n_rep, r, W, n, b) for t in (q, go, out))
            dqg = _group(dq, n_rep, r, W, n, b)
            for i in range(0, n, c):
                j = min(n, i + c)
                qr, gr, orr, lse = qg[:, i:j], gg[:, i:j], og[:, i:j], lses[r][:, i:j]
                dq1, dk1, dv1 = bwd(gr, qr, k_own[:, i:j], v_own[:, i:j], orr, lse, 0.0, True,
                                    scale=scale)
                dkf[:, W + i * b:W + j * b].view(B * Hkv, j - i, b, D).add_(dk1)
                dvf[:, W + i * b:W + j * b].view(B * Hkv, j - i, b, D).add_(dv1)
                del dk1, dv1
                dq2, dk2, dv2 = bwd(gr, qr, k_win[:, i:j], v_win[:, i:j], orr, lse, 0.0, False,
                                    attn_mask=mask, scale=scale)
                torch.add(dq1, dq2, out=dqg[:, i:j])
                del dq1, dq2
                # fold the overlapping windows back: window m, slot u is key 1 + m*b + u
                for s in range(0, W - 1, b):
                    L = min(b, W - 1 - s)
                    lo, hi = 1 + s + i * b, 1 + s + j * b
                    dkf[:, lo:hi].view(B * Hkv, j - i, b, D)[:, :, :L].add_(dk2[:, :, s:s + L])
                    dvf[:, lo:hi].view(B * Hkv, j - i, b, D)[:, :, :L].add_(dv2[:, :, s:s + L])
                del dk2, dv2
        return dq, dk, dv, None, None, None, None


def backward_chunk(T: int, W: int, b: int, budget: float = 1.0) -> int:
    """Query blocks per backward call of the CPU path: the temporaries of one call stay within
    ``budget`` x the size of one (T, D) gradient per head.

    One call over c blocks makes dQ, dK, dV of the own blocks and dQ of the window part (4 x c*b
    rows) and dK, dV of the windows (2 x c*(W-1) rows). Keeping those to a fixed share of T rows
    keeps the backward's peak linear in T, at about the size of the gradients themselves.
    """
    rows_per_block = 4 * b + 2 * (W - 1)
    return max(1, int(budget * T) // rows_per_block)


def _fast_cpu_ok(q, k, v) -> bool:
    return (q.device.type == "cpu" and _cpu_flash() is not None
            and q.dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16)
            and k.dtype == q.dtype and v.dtype == q.dtype)


# ---- the entry point --------------------------------------------------------------------------
DEFAULT_BLOCK = 64


def block_for(window: int, block: int = DEFAULT_BLOCK) -> int:
    """Query-block size of the CPU path: at most ``block`` and at most window // 2.

    A block must be < window (its first query must see every key of the block before it); half
    the window keeps T - window a multiple of the block for power-of-two sizes, so no padding.
    """
    return max(1, min(block, window // 2))


def local_window_attention(q, k, v, window: int, scale: Optional[float] = None,
                           block: int = DEFAULT_BLOCK, backward_chunk_blocks: Optional[int] = None):
    """Causal sliding-window attention in O(T * window): query i sees keys i-window+1 .. i.

    q (B, H, T, D), k/v (B, Hkv, T, D) -> (B, H, T, D). On CPU (the fast path):

    1. the first ``window`` queries see everything before them: one plain causal call;
    2. every later block of b = min(block, window // 2) queries sees its own block causally and the
       window-1 keys before the block through an overlapping strided *view* of K and V with one
       (block, window-1) mask shared by all blocks; the two halves merge by log-sum-exp.

    Work per query: block + window - 1 scores instead of up to T. Memory O(T), both what backward
    keeps (q, k, v, the output and one log-sum-exp per query) and the peak: the backward goes
    through the blocks in chunks (``backward_chunk``; ``backward_chunk_blocks`` overrides it), so
    the per-window K/V gradients it folds back stay a fixed share of one gradient. Elsewhere
    (CUDA, MPS) it runs ``local_window_attention_sdpa`` -- on CUDA, prefer the ``flex`` backend.
    """
    _check(q, k, v, window)
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"local_window_attention: block={block!r} must be an integer >= 1")
    c = backward_chunk_blocks
    if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
        raise ValueError(f"local_window_attention: backward_chunk_blocks={c!r} must be an integer >= 1")
    B, H, T, D = q.shape
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    if window >= T:  # the window covers everything: plain causal attention
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale,
                                              enable_gqa=H != k.shape[1])
    if window == 1 or not _fast_cpu_ok(q, k, v):
        return local_window_attention_sdpa(q, k, v, window, scale)
    b = block_for(window, block)
    pad = -(T - window) % b
    q, k, v = (F.pad(t, (0, 0, 0, pad)) if pad else t.contiguous() for t in (q, k, v))
    out = _LocalWindowCPU.apply(q, k, v, window, b, scale, c)
    return out[:, :, :T] if pad else out


def local_pairs(T: int, window: int, device_type: str = "cpu") -> int:
    """(query, key) pairs ``local_window_attention`` computes (and FlopCounterMode charges it).

    On CPU (W >= 2) the first W queries are one causal W x W call, then blocks of
    b = block_for(W) queries (T padded to W + n*b): each its own b x b block (causal) and a
    b x (W-1) window of the keys before it: W^2 + n*b*(b + W - 1). Elsewhere (and for W = 1)
    blocks of C = W: block 0 causal (C x C), then one masked SDPA call over C x 2C blocks:
    C^2 + (nb-1)*C*2C. W >= T: plain causal SDPA, T x T.
    """
    if window >= T:
        return T * T
    if device_type == "cpu" and window >= 2:
        b = block_for(window)
        n = math.ceil((T - window) / b)
        return window * window + n * b * (b + window - 1)
    nb = math.ceil(T / window)
    return window * window + (nb - 1) * window * 2 * window


def local_backend(q, k, v, window=None, *, tile=64, dropout_p=0.0, training=False):
    """The registered ``local`` backend (it needs a window; GPTConfig checks that; no attention
    dropout, and its blocks follow the window, not ``tile``)."""
    return local_window_attention(q, k, v, window)


# ---- the two comparisons the notebook measures against -----------------------------------------
def band_mask_attention(q, k, v, window: int, scale: Optional[float] = None):
    """Full-size SDPA with a (T, T) band mask: the same O(T^2) work as causal, plus the mask."""
    _check(q, k, v, window)
    T = q.shape[2]
    mask = causal_mask(T, T, window, device=q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale,
                                          enable_gqa=q.shape[1] != k.shape[1])


# ---- analytic counts --------------------------------------------------------------------------
def window_flops(T: int, window: Optional[int], head_dim: int, n_head: int = 1, batch: int = 1) -> int:
    """Forward FLOPs of QK^T and AV over the *visible* (query, key) pairs only (2 matmuls x 2 FLOPs).

    Causal: T(T+1)/2 pairs; window W: sum_i min(i+1, W) pairs -- linear in T once T >> W.
    """
    return 4 * visible_pairs(T, window) * head_dim * n_head * batch


def receptive_field(n_layer: int, window: Optional[int]) -> Optional[int]:
    """How many positions back (inclusive) the last layer's output can depend on.

    One layer sees W positions (itself and W-1 back); stacking L layers reaches L*(W-1) + 1.
    None means unbounded (full causal attention).
    """
    if window is None:
        return None
    if n_layer < 1 or window < 1:
        raise ValueError(f"receptive_field: n_layer={n_layer!r} and window={window!r} must be >= 1")
    return n_layer * (window - 1) + 1
