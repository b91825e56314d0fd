"""Causal flash attention written in Triton: the tiled algorithm of ``flash_tiled`` as fused kernels.

``flash_tiled`` runs FlashAttention's algorithm with the tile loops in Python: every tile is a few
PyTorch calls, so it saves memory but not time. Here the same loops are GPU *kernels* written in
Triton (Tillet et al., 2019), the language FlexAttention compiles to. One kernel *program* owns a
block of queries, keeps its tile of scores, the running max ``m``, normaliser ``l`` and output
``acc`` in registers, and walks over the key tiles it can see; nothing T x T ever reaches memory.

- ``flash_forward_kernel``: FlashAttention-2's forward; writes the output and the log-sum-exp of
  every query's scores (all backward needs to recompute the probabilities);
- ``flash_backward_dq_kernel`` / ``flash_backward_dkdv_kernel``: FlashAttention-2's backward, one
  program per query block for dQ and one per key block for dK, dV (each recomputes the tile's
  probabilities from the log-sum-exp, so no atomics are needed);
- ``TritonFlashAttention``: the ``torch.autograd.Function`` joining them; ``triton_attention`` is
  the registered backend ``triton`` (``attention/__init__.py``).

Shapes: q (B, H, T, D); k, v (B, Hkv, T, D) with H a multiple of Hkv (GQA: query head h reads K/V
head h // (H / Hkv), no copy of K/V is made); D a power of two from 16 to 128 (GPT-2 small: 64);
float32, bfloat16 or float16 (the softmax is accumulated in float32). An optional sliding window W
(query i sees keys i-W+1..i) skips every key tile that lies wholly outside the band, exactly the
tiles ``flash_tiled.key_tiles`` skips.

Running it: on a CUDA GPU Triton compiles the kernels. Without one, Triton's *interpreter* runs them
on the CPU, one program after another in NumPy -- for checking correctness, not for speed. Triton
reads ``TRITON_INTERPRET=1`` when a kernel is *defined*, that is when this module is imported, so
it must be set before the first import (``tests/conftest.py`` and notebook 10 do that where no GPU
exists). Triton ships wheels for Linux only; where it is missing this module still imports (the
kernels stay plain functions you can read) and running them raises an error saying how to install it.
"""
from __future__ import annotations  # keeps ``tl.constexpr`` annotations readable without Triton

import contextlib
import math
import re
from typing import Optional

import numpy
import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # Linux-only wheels: elsewhere the kernels below are shown, never run
    triton = tl = None

INSTALL_HINT = ("pip install triton (Triton has wheels for Linux only; on macOS or Windows use "
                "attn_backend='sdpa' or 'tiled', or run on a Linux or GPU machine)")
HEAD_DIMS = (16, 32, 64, 128)  # tl.dot needs blocks of at least 16; tl.arange a power of two
TILES = (16, 32, 64, 128)
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def jit(fn):
    """``triton.jit`` where Triton is installed; elsewhere the kernel stays a plain Python function."""
    return fn if triton is None else triton.jit(fn)


# ---- forward --------------------------------------------------------------------------------------
@jit
def online_softmax_update(m, l, acc, s, v, PRECISION: tl.constexpr):
    """One tile of keys for a block of queries: ``flash_tiled.online_softmax_update`` in Triton.

    m, l: (BLOCK,) running max and normaliser; acc: (BLOCK, HEAD_DIM) unnormalised output; s: this
    tile's scores (BLOCK, BLOCK), -inf where masked; v: the tile's values. Returns (m, l, acc).
    """
    m_new = tl.maximum(m, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row that has seen no key yet
    p = tl.exp(s - m_safe[:, None])
    alpha = tl.exp(m - m_safe)  # rescales what was summed under the old max
    l_new = alpha * l + tl.sum(p, 1)
    acc_new = alpha[:, None] * acc + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_new, acc_new


@jit
def flash_forward_kernel(Q, K, V, O, LSE, scale, T, N_REP, WINDOW,
                         HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, HAS_WINDOW: tl.constexpr,
                         PRECISION: tl.constexpr, COMPUTE: tl.constexpr):
    """One program = one block of BLOCK queries of one (batch, head): O = softmax(Q K^T * scale) V.

    Grid (cdiv(T, BLOCK), B * H). Q, O: (B*H, T, HEAD_DIM) contiguous; K, V: (B*Hkv, T, HEAD_DIM);
    LSE: (B*H, T) float32, the log-sum-exp of each query's scores (what backward needs).
    """
    q_block = tl.program_id(0)  # which block of queries
    bh = tl.program_id(1)  # which (batch, query head): b * H + h
    kv = bh // N_REP  # its K/V head: b * Hkv + h // N_REP, because H = Hkv * N_REP
    q0 = q_block * BLOCK
    rows = q0 + tl.arange(0, BLOCK)  # the positions of this block's queries
    dims = tl.arange(0, HEAD_DIM)
    q_offs = bh.to(tl.int64) * T * HEAD_DIM + rows[:, None] * HEAD_DIM + dims[None, :]  # (BLOCK, HEAD_DIM)
    kv_head = kv.to(tl.int64) * T * HEAD_DIM  # 64-bit offsets: B*H*T*D may pass 2**31

    # the block of queries, loaded once; rows past T (in the last block) read zeros, never stored
    q = tl.load(Q + q_offs, mask=rows[:, None] < T, other=0.0).to(COMPUTE)
    m = tl.full([BLOCK], float("-inf"), tl.float32)  # running max of each query's scores
    l = tl.zeros([BLOCK], tl.float32)  # running sum of exp(score - m)
    acc = tl.zeros([BLOCK, HEAD_DIM], tl.float32)  # running sum of exp(score - m) * v

    # the key tiles a query of this block can see (flash_tiled.key_tiles): causal attention stops
    # after the block's last query; a window starts at the tile holding the first query's oldest key
    lo = 0
    if HAS_WINDOW:
        lo = tl.maximum(q0 - WINDOW + 1, 0) // BLOCK * BLOCK
    hi = tl.minimum(q0 + BLOCK, T)
    for k0 in range(lo, hi, BLOCK):
        keys = k0 + tl.arange(0, BLOCK)
        kv_offs = kv_head + keys[:, None] * HEAD_DIM + dims[None, :]
        k = tl.load(K + kv_offs, mask=keys[:, None] < T, other=0.0).to(COMPUTE)
        v = tl.load(V + kv_offs, mask=keys[:, None] < T, other=0.0).to(COMPUTE)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # (BLOCK, BLOCK) scores
        visible = keys[None, :] <= rows[:, None]
        if HAS_WINDOW:
            visible = visible & (rows[:, None] - keys[None, :] < WINDOW)
        s = tl.where(visible, s, float("-inf"))
        m, l, acc = online_softmax_update(m, l, acc, s, v, PRECISION)

    tl.store(O + q_offs, (acc / l[:, None]).to(O.dtype.element_ty), mask=rows[:, None] < T)
    tl.store(LSE + bh.to(tl.int64) * T + rows, m + tl.log(l), mask=rows < T)


# ---- backward -------------------------------------------------------------------------------------
@jit
def flash_backward_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, scale, T, N_REP, WINDOW,
                             HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, HAS_WINDOW: tl.constexpr,
                             PRECISION: tl.constexpr, COMPUTE: tl.constexpr):
    """dQ for one block of queries: the forward's loop again, with P recomputed from the LSE.

    P = exp(S - lse), dP = dO V^T, dS = P * (dP - delta) with delta = rowsum(dO * O), and
    dQ = scale * dS K. Grid (cdiv(T, BLOCK), B * H); DQ is float32.
    """
    q_block = tl.program_id(0)
    bh = tl.program_id(1)
    kv = bh // N_REP
    q0 = q_block * BLOCK
    rows = q0 + tl.arange(0, BLOCK)
    dims = tl.arange(0, HEAD_DIM)
    in_rows = rows < T
    q_offs = bh.to(tl.int64) * T * HEAD_DIM + rows[:, None] * HEAD_DIM + dims[None, :]
    kv_head = kv.to(tl.int64) * T * HEAD_DIM

    q = tl.load(Q + q_offs, mask=in_rows[:, None], other=0.0).to(COMPUTE)
    do = tl.load(DO + q_offs, mask=in_rows[:, None], other=0.0).to(COMPUTE)
    lse = tl.load(LSE + bh.to(tl.int64) * T + rows, mask=in_rows, other=0.0)
    delta = tl.load(DELTA + bh.to(tl.int64) * T + rows, mask=in_rows, other=0.0)
    dq = tl.zeros([BLOCK, HEAD_DIM], tl.float32)

    lo = 0
    if HAS_WINDOW:
        lo = tl.maximum(q0 - WINDOW + 1, 0) // BLOCK * BLOCK
    hi = tl.minimum(q0 + BLOCK, T)
    for k0 in range(lo, hi, BLOCK):
        keys = k0 + tl.arange(0, BLOCK)
        kv_offs = kv_head + keys[:, None] * HEAD_DIM + dims[None, :]
        k = tl.load(K + kv_offs, mask=keys[:, None] < T, other=0.0).to(COMPUTE)
        v = tl.load(V + kv_offs, mask=keys[:, None] < T, other=0.0).to(COMPUTE)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        visible = (keys[None, :] <= rows[:, None]) & in_rows[:, None]
        if HAS_WINDOW:
            visible = visible & (rows[:, None] - keys[None, :] < WINDOW)
        p = tl.where(visible, tl.exp(s - lse[:, None]), 0.0)  # the probabilities, recomputed
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(COMPUTE), k, input_precision=PRECISION)
    tl.store(DQ + q_offs, dq * scale, mask=in_rows[:, None])


@jit
def flash_backward_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, scale, T, N_REP, WINDOW,
                               HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, HAS_WINDOW: tl.constexpr,
                               PRECISION: tl.constexpr, COMPUTE: tl.constexpr):
    """dK, dV for one block of keys of one K/V head, summed over the N_REP query heads sharing it.

    dV = P^T dO and dK = scale * dS^T Q over every query that sees these keys. Grid
    (cdiv(T, BLOCK), B * Hkv); DK, DV are float32. Each program owns its keys: no atomics.
    """
    k_block = tl.program_id(0)
    bkv = tl.program_id(1)  # which (batch, K/V head): b * Hkv + g
    k0 = k_block * BLOCK
    keys = k0 + tl.arange(0, BLOCK)
    dims = tl.arange(0, HEAD_DIM)
    in_keys = keys < T
    kv_offs = bkv.to(tl.int64) * T * HEAD_DIM + keys[:, None] * HEAD_DIM + dims[None, :]

    k = tl.load(K + kv_offs, mask=in_keys[:, None], other=0.0).to(COMPUTE)
    v = tl.load(V + kv_offs, mask=in_keys[:, None], other=0.0).to(COMPUTE)
    dk = tl.zeros([BLOCK, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK, HEAD_DIM], tl.float32)

    # the query tiles that see these keys: from this block on (causal) up to the last query whose
    # window still reaches the block's last key -- the same (query, key) tiles the forward visits
    hi = T
    if HAS_WINDOW:
        hi = tl.minimum(k0 + BLOCK + WINDOW - 1, T)
    for r in range(N_REP):  # the query heads that share this K/V head
        bh = bkv * N_REP + r  # b * H + h
        for q0 in range(k0, hi, BLOCK):
            rows = q0 + tl.arange(0, BLOCK)
            in_rows = rows < T
            q_offs = bh.to(tl.int64) * T * HEAD_DIM + rows[:, None] * HEAD_DIM + dims[None, :]
            q = tl.load(Q + q_offs, mask=in_rows[:, None], other=0.0).to(COMPUTE)
            do = tl.load(DO + q_offs, mask=in_rows[:, None], other=0.0).to(COMPUTE)
            lse = tl.load(LSE + bh.to(tl.int64) * T + rows, mask=in_rows, other=0.0)
            delta = tl.load(DELTA + bh.to(tl.int64) * T + rows, mask=in_rows, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # (queries, keys)
            visible = (keys[None, :] <= rows[:, None]) & in_rows[:, None]
            if HAS_WINDOW:
                visible = visible & (rows[:, None] - keys[None, :] < WINDOW)
            p = tl.where(visible, tl.exp(s - lse[:, None]), 0.0)
            dv += tl.dot(tl.trans(p).to(COMPUTE), do, input_precision=PRECISION)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            ds = p * (dp - delta[:, None])
            dk += tl.dot(tl.trans(ds).to(COMPUTE), q, input_precision=PRECISION)
    tl.store(DK + kv_offs, dk * scale, mask=in_keys[:, None])
    tl.store(DV + kv_offs, dv, mask=in_keys[:, None])


# ---- running the kernels -------------------------------------------------------------------------
def interpreted() -> bool:
    """True when the kernels were defined under TRITON_INTERPRET=1 (they run on the CPU, in NumPy)."""
    return triton is not None and type(flash_forward_kernel).__name__ == "InterpretedFunction"


def interpreter_problem() -> Optional[str]:
    """Why Triton's interpreter cannot run these kernels with this stack's NumPy, or None.

    Triton <= 3.6's interpreter turns 1-element arrays into Python scalars, which NumPy >= 2.4
    refuses ("only 0-dimensional arrays can be converted to Python scalars"): seen with triton
    3.6.0 and numpy 2.5.2, the device image's stack; numpy 2.3.5, or triton 3.9, work. The compiled
    kernels on a GPU do not use NumPy and are not affected."""
    if triton is None:
        return None
    version = tuple(int(x) for x in re.findall(r"\d+", triton.__version__)[:2])
    if version > (3, 6):
        return None
    try:
        int(numpy.ones(1))
    except TypeError:
        return (f"Triton {triton.__version__}'s interpreter cannot run with numpy {numpy.__version__}: it turns "
                "1-element arrays into Python scalars, which numpy >= 2.4 refuses. The compiled kernels on a GPU "
                "are not affected. To run them on a CPU: pip install 'numpy<2.4', or a newer triton (3.9 works).")
    return None


def cannot_run_on(device_type: str) -> Optional[str]:
    """Why the kernels cannot run on tensors of ``device_type`` here (None: they can): Triton
    missing, CPU tensors with the kernels compiled for CUDA, or the interpreter's NumPy problem."""
    if triton is None:
        return f"attn_backend='triton' needs Triton, which is not installed: {INSTALL_HINT}"
    if device_type != "cuda" and not interpreted():
        return (f"attn_backend='triton': the compiled kernels need CUDA tensors, got {device_type}. On a CPU "
                "they run in Triton's interpreter: set TRITON_INTERPRET=1 before "
                "tutorial_lib.attention.triton_flash is first imported (tests/conftest.py and notebook 10 do).")
    if interpreted():
        return interpreter_problem()
    return None


def check_runnable(q: torch.Tensor) -> None:
    """Raise a clear RuntimeError when these kernels cannot run on q's device, before any work."""
    why = cannot_run_on(q.device.type)
    if why:
        raise RuntimeError(why)


def check_inputs(q, k, v, window: Optional[int], tile: int) -> None:
    """Shapes, dtypes, head_dim, window and tile, checked before any kernel runs (names the value)."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"triton_attention: q, k, v must be 4-D (B, H, T, D); got shapes "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    B, H, T, D = q.shape
    if k.shape != v.shape or k.shape[0] != B or k.shape[2:] != (T, D):
        raise ValueError(f"triton_attention: k and v must be (B, Hkv, T, D) = (B={B}, Hkv, T={T}, D={D}); "
                         f"got k {tuple(k.shape)}, v {tuple(v.shape)}")
    if H % k.shape[1]:
        raise ValueError(f"triton_attention: n_head={H} is not a multiple of n_kv_head={k.shape[1]}")
    if D not in HEAD_DIMS:
        raise ValueError(f"triton_attention: head_dim={D} is not one of {list(HEAD_DIMS)}")
    if q.dtype not in DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"triton_attention: dtype {q.dtype} (k {k.dtype}, v {v.dtype}) is not one of "
                         f"{[str(d) for d in DTYPES]} for all three")
    if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 1):
        raise ValueError(f"triton_attention: window={window!r} must be None or an integer >= 1")
    if tile not in TILES:
        raise ValueError(f"triton_attention: tile={tile!r} is not one of {list(TILES)} "
                         "(GPTConfig.tile_size sets it)")


def launch_options(D: int, tile: int, dtype: torch.dtype) -> dict:
    """The compile-time constants every kernel takes (``tl.constexpr``), and its warps."""
    compute = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}[dtype]
    if interpreted() and dtype == torch.bfloat16:
        compute = tl.float32  # the interpreter cannot multiply bfloat16 (NumPy has no such type)
    return dict(HEAD_DIM=D, BLOCK=tile, COMPUTE=compute,
                # float32 inputs: exact float32 products (tensor cores would round them to tf32)
                PRECISION="ieee" if dtype == torch.float32 else "tf32",
                num_warps=4 if tile <= 64 else 8)


def on_device_of(t: torch.Tensor):
    """Triton launches on the *current* CUDA device: make it t's (a no-op on the CPU)."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def flash_forward(q, k, v, window: Optional[int] = None, tile: int = 64):
    """Run the forward kernel: (out (B, H, T, D) in q's dtype, lse (B, H, T) float32)."""
    B, H, T, D = q.shape
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    out = torch.empty_like(q)
    lse = torch.empty(B, H, T, device=q.device, dtype=torch.float32)
    grid = (triton.cdiv(T, tile), B * H)
    with on_device_of(q):
        flash_forward_kernel[grid](q, k, v, out, lse, 1.0 / math.sqrt(D), T, H // k.shape[1], window or 0,
                                   HAS_WINDOW=window is not None, **launch_options(D, tile, q.dtype))
    return out, lse


def flash_backward(q, k, v, out, lse, dout, window: Optional[int] = None, tile: int = 64):
    """Run the two backward kernels: (dq, dk, dv) in the inputs' dtype (accumulated in float32)."""
    B, H, T, D = q.shape
    Hkv = k.shape[1]
    dout = dout.contiguous()
    delta = (dout.float() * out.float()).sum(-1)  # (B, H, T): rowsum(dO * O), FlashAttention-2's D
    dq = torch.empty(q.shape, device=q.device, dtype=torch.float32)
    dk = torch.empty(k.shape, device=q.device, dtype=torch.float32)
    dv = torch.empty(v.shape, device=q.device, dtype=torch.float32)
    args = (1.0 / math.sqrt(D), T, H // Hkv, window or 0)
    opts = dict(HAS_WINDOW=window is not None, **launch_options(D, tile, q.dtype))
    with on_device_of(q):
        flash_backward_dq_kernel[(triton.cdiv(T, tile), B * H)](q, k, v, dout, lse, delta, dq, *args, **opts)
        flash_backward_dkdv_kernel[(triton.cdiv(T, tile), B * Hkv)](q, k, v, dout, lse, delta, dk, dv,
                                                                    *args, **opts)
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class TritonFlashAttention(torch.autograd.Function):
    """Causal (optionally windowed) attention that keeps only q, k, v, the output and the LSE."""

    @staticmethod
    def forward(ctx, q, k, v, window, tile):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        out, lse = flash_forward(q, k, v, window, tile)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.window, ctx.tile = window, tile
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = flash_backward(q, k, v, out, lse, dout, ctx.window, ctx.tile)
        return dq, dk, dv, None, None


def triton_attention(q, k, v, window: Optional[int] = None, *, tile: int = 64, dropout_p: float = 0.0,
                     training: bool = False):
    """The registered backend ``triton``: causal (optionally sliding-window) flash attention.

    q (B, H, T, D), k and v (B, Hkv, T, D); ``tile`` is the block edge (GPTConfig.tile_size).
    There is no attention dropout in these kernels: dropout_p > 0 while training is an error.
    """
    check_runnable(q)
    check_inputs(q, k, v, window, tile)
    if dropout_p and training:
        raise ValueError(f"attn_backend='triton' has no attention dropout (dropout_p={dropout_p}); "
                         "use GPTConfig(dropout=0.0) or attn_backend='sdpa'")
    return TritonFlashAttention.apply(q, k, v, window, tile)
