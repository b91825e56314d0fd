"""What the Triton lesson (notebook 10) runs: Triton's programming model on two small kernels, the
flash-attention kernels checked against float64 attention, the exercise's checker, and the GPU
timings (measured on a CUDA machine, read back from ``results/`` everywhere else).

Triton reads ``TRITON_INTERPRET`` when a kernel is defined, and this module defines kernels (and
imports ``attention.triton_flash``, which defines more): on a machine without a GPU, set
``TRITON_INTERPRET=1`` before importing it (the notebook's first cell and ``tests/conftest.py`` do).

- ``triton_status()``: is Triton installed, which version, compiled (GPU) or interpreted (CPU).
- ``add_kernel`` / ``program_map`` / ``run_add``: programs, blocks, masked loads and stores.
- ``block_matmul_kernel`` / ``run_block_matmul``: ``tl.dot`` on tiles, one output block per program.
- ``kernel_source`` / ``side_by_side``: a kernel's source (the plain function under ``@jit``), and
  two sources in two columns (the Triton kernel beside ``flash_tiled``'s PyTorch loop).
- ``check_kernels(cases)``: outputs and dq, dk, dv of the Triton backend against eager attention in
  float64, for plain causal, GQA, sliding-window and uneven-T cases.
- ``exercise_forward_kernel`` / ``check_online_softmax_kernel``: the exercise -- write the online
  softmax update as a Triton function; the checker runs it inside the forward kernel's skeleton.
- ``time_kernels`` / ``record_gpu_timings``: forward and forward+backward time of SDPA, FlexAttention
  and this kernel on CUDA (the seed's setting and long T); an empty list without CUDA.
- ``recorded_gpu_timings`` / ``format_gpu_timings``: what a GPU run recorded, or "not measured yet".
"""
from __future__ import annotations

import ast
import inspect
import math
import statistics
import textwrap
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from tutorial_lib import attention, settings
from tutorial_lib.attention import triton_flash
from tutorial_lib.attention.reference import eager_attention, visible_pairs
from tutorial_lib.attention.triton_flash import jit, tl, triton
from tutorial_lib.lessons.common import CheckResult, Source, format_rows, show_source
from tutorial_lib.measure import records
from tutorial_lib.measure.timing import error_text, free_memory, time_fn

RESULTS_KIND = "triton_flash"  # the rows' kind in results/*.json
# (B, H, T, D) timed on a GPU: the seed's setting (GPT-2 small's heads, B=4, T=512), then long T
GPU_SETTINGS = ((4, 12, 512, 64), (4, 12, 2048, 64), (1, 12, 8192, 64), (1, 12, 16384, 64))
GPU_BACKENDS = ("sdpa", "flex", "triton")


# ---- is Triton here, and how does it run? -------------------------------------------------------
def triton_status() -> Dict[str, object]:
    """{"installed", "version", "mode": "compiled (CUDA)" | "interpreter (CPU)" | None,
    "can_run": whether the kernels can run here, "why": what to do when they cannot}."""
    if triton is None:
        return {"installed": False, "version": None, "mode": None, "can_run": False,
                "why": f"Triton is not installed here: {triton_flash.INSTALL_HINT}"}
    status = {"installed": True, "version": triton.__version__, "can_run": True, "why": ""}
    if triton_flash.interpreted() and triton_flash.interpreter_problem():
        status.update(mode=None, can_run=False, why=triton_flash.interpreter_problem())
    elif triton_flash.interpreted():
        status["mode"] = "interpreter (CPU): every program runs one after another in NumPy"
    elif torch.cuda.is_available():
        status["mode"] = "compiled (CUDA): every program runs on the GPU at once"
    else:
        status.update(mode=None, can_run=False,
                      why="no CUDA device, and TRITON_INTERPRET=1 was not set before the kernels "
                          "were defined (set it before importing tutorial_lib.attention.triton_flash)")
    return status


def status_text() -> str:
    """``triton_status()`` as the lines the notebook prints."""
    s = triton_status()
    if not s["can_run"]:
        return f"Triton {s['version'] or '(not installed)'}: the kernels cannot run here. {s['why']}"
    return f"Triton {s['version']}: {s['mode']}"


def kernel_device() -> torch.device:
    """Where the kernels' tensors live: CUDA when compiled, the CPU in the interpreter."""
    return torch.device("cuda" if torch.cuda.is_available() and not triton_flash.interpreted() else "cpu")


# ---- the programming model: programs, blocks, masks ----------------------------------------------
@jit
def add_kernel(X, Y, OUT, N, BLOCK: tl.constexpr):
    """OUT = X + Y for N numbers: program ``pid`` handles elements pid*BLOCK .. pid*BLOCK+BLOCK-1."""
    pid = tl.program_id(0)  # which program am I? (the launch grid is cdiv(N, BLOCK) programs)
    offsets = pid * BLOCK + tl.arange(0, BLOCK)  # a *block* of BLOCK element indices at once
    mask = offsets < N  # the last block runs past the end: those lanes must not read or write
    x = tl.load(X + offsets, mask=mask, other=0.0)
    y = tl.load(Y + offsets, mask=mask, other=0.0)
    tl.store(OUT + offsets, x + y, mask=mask)


def program_map(n: int, block: int) -> List[Dict[str, object]]:
    """Which elements each program of ``add_kernel`` handles (plain Python, no Triton needed):
    [{"program", "offsets", "masked": the offsets its mask switches off}]."""
    if not (isinstance(n, int) and n >= 1 and isinstance(block, int) and block >= 1):
        raise ValueError(f"n={n!r} and block={block!r} must be positive integers")
    out = []
    for pid in range(math.ceil(n / block)):
        offs = list(range(pid * block, pid * block + block))
        out.append({"program": pid, "offsets": offs, "masked": [o for o in offs if o >= n]})
    return out


def run_add(n: int = 10, block: int = 4, seed: int = 0) -> Dict[str, object]:
    """Launch ``add_kernel`` on n numbers; {"out", "expected", "programs", "max_abs_error"}."""
    dev = kernel_device()
    g = torch.Generator().manual_seed(seed)
    x, y = (torch.randn(n, generator=g).to(dev) for _ in range(2))
    out = torch.full((n,), float("nan"), device=dev)
    grid = (triton.cdiv(n, block),)
    add_kernel[grid](x, y, out, n, BLOCK=block)
    expected = x + y
    return {"out": out.cpu(), "expected": expected.cpu(), "programs": grid[0],
            "max_abs_error": (out - expected).abs().max().item()}


@jit
def block_matmul_kernel(A, B, C, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """C = A @ B (row-major, float32): program (i, j) computes the (BM, BN) block of C at
    rows i*BM.., columns j*BN.., walking over K in steps of BK with ``tl.dot`` on tiles."""
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    cols = tl.program_id(1) * BN + tl.arange(0, BN)
    acc = tl.zeros([BM, BN], tl.float32)  # the output tile lives in registers
    for k0 in range(0, K, BK):
        ks = k0 + tl.arange(0, BK)
        a = tl.load(A + rows[:, None] * K + ks[None, :], mask=(rows[:, None] < M) & (ks[None, :] < K),
                    other=0.0)  # a (BM, BK) tile of A
        b = tl.load(B + ks[:, None] * N + cols[None, :], mask=(ks[:, None] < K) & (cols[None, :] < N),
                    other=0.0)  # a (BK, BN) tile of B
        acc += tl.dot(a, b, input_precision="ieee")  # float32 products (not tf32) on a GPU too
    tl.store(C + rows[:, None] * N + cols[None, :], acc, mask=(rows[:, None] < M) & (cols[None, :] < N))


def run_block_matmul(M: int = 40, N: int = 24, K: int = 48, block: int = 16,
                     seed: int = 0) -> Dict[str, object]:
    """Launch ``block_matmul_kernel``; {"grid", "max_abs_error" against torch's matmul (float64)}."""
    dev = kernel_device()
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(M, K, generator=g), torch.randn(K, N, generator=g)
    c = torch.empty(M, N, device=dev)
    grid = (triton.cdiv(M, block), triton.cdiv(N, block))
    block_matmul_kernel[grid](a.to(dev), b.to(dev), c, M, N, K, BM=block, BN=block, BK=block)
    return {"grid": grid, "max_abs_error": (c.cpu().double() - a.double() @ b.double()).abs().max().item()}


# ---- reading the kernels -------------------------------------------------------------------------
def kernel_source(kernel, lines: Optional[slice] = None) -> Source:
    """The source of a Triton kernel (a ``@jit`` object keeps the plain function in ``.fn``)."""
    return show_source(getattr(kernel, "fn", kernel), lines)


class SideBySide:
    """Two sources in two columns in a notebook; one after the other as plain text."""

    def __init__(self, left: Source, right: Source):
        self.left, self.right = left, right

    def __repr__(self) -> str:
        return f"{self.left!r}\n{self.right!r}"

    def _repr_html_(self) -> str:
        cell = "<td style='vertical-align:top; width:50%; text-align:left'>{}</td>"
        return ("<table style='width:100%; table-layout:fixed'><tr>"
                + cell.format(self.left._repr_html_()) + cell.format(self.right._repr_html_())
                + "</tr></table>")


def side_by_side(left, right) -> SideBySide:
    """``kernel_source`` of two functions or kernels, side by side."""
    return SideBySide(kernel_source(left), kernel_source(right))


# ---- correctness: the Triton backend against float64 attention -----------------------------------
CHECK_CASES = (  # (label, B, H, Hkv, T, D, window, dtype)
    ("causal", 1, 2, 2, 128, 64, None, "float32"),
    ("GQA 4:2, T=100 (not a multiple of 64)", 1, 4, 2, 100, 64, None, "float32"),
    ("window 40, GQA 2:1, T=200", 1, 2, 1, 200, 64, 40, "float32"),
    ("bfloat16", 1, 2, 2, 96, 64, None, "bfloat16"),
)
TOLERANCE = {"float32": 1e-4, "bfloat16": 6e-2, "float16": 1e-2}  # max |error| vs float64


def check_kernels(cases: Sequence[tuple] = CHECK_CASES, tile: int = 64,
                  seed: int = 0) -> List[Dict[str, object]]:
    """For each case, the largest |difference| of out, dq, dk and dv (backend ``triton`` through
    ``attention.attention_core``) from eager attention computed in float64 on the same inputs.
    A row per case, with ``ok`` = all four within ``TOLERANCE[dtype]``."""
    dev = kernel_device()
    rows = []
    for label, B, H, Hkv, T, D, window, dtype in cases:
        dt = settings.parse_dtype(dtype)
        g = torch.Generator().manual_seed(seed)
        q = torch.randn(B, H, T, D, generator=g)
        k, v = (torch.randn(B, Hkv, T, D, generator=g) for _ in range(2))
        dout = torch.randn(B, H, T, D, generator=g)
        x = [t.to(dev, dt).requires_grad_() for t in (q, k, v)]
        t0 = time.perf_counter()
        out = attention.attention_core(*x, "triton", window, tile)
        grads = torch.autograd.grad(out, x, dout.to(dev, dt))
        wall = time.perf_counter() - t0
        ref_in = [t.to(dev, dt).double().requires_grad_() for t in (q, k, v)]
        ref = eager_attention(*ref_in, window)
        ref_grads = torch.autograd.grad(ref, ref_in, dout.to(dev, dt).double())
        errs = [(a.double() - b).abs().max().item() for a, b in zip((out, *grads), (ref, *ref_grads))]
        rows.append({"case": label, "B": B, "H": H, "Hkv": Hkv, "T": T, "D": D, "window": window,
                     "dtype": dtype, "out": errs[0], "dq": errs[1], "dk": errs[2], "dv": errs[3],
                     "tolerance": TOLERANCE[dtype], "ok": max(errs) <= TOLERANCE[dtype],
                     "seconds": wall})
    return rows


def format_check(rows: Sequence[Dict[str, object]]) -> str:
    """``check_kernels`` rows as a table (without the wall time, which depends on the machine)."""
    e = "{:.1e}"
    return format_rows(rows, ["case", "dtype", "out", "dq", "dk", "dv", "tolerance", "ok"],
                       formats={"out": e, "dq": e, "dk": e, "dv": e, "tolerance": e},
                       headers={"out": "|out err|", "dq": "|dq err|", "dk": "|dk err|", "dv": "|dv err|"})


def interpreter_timing(B: int = 1, H: int = 2, T: int = 128, D: int = 64) -> Dict[str, object]:
    """Seconds for one forward of the ``triton`` backend and of SDPA on the same CPU tensors, to show
    that the interpreter measures nothing about speed (it runs every program in turn, in NumPy)."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(3))
    out = {"B": B, "H": H, "T": T, "D": D}
    for name in ("triton", "sdpa"):
        t0 = time.perf_counter()
        with torch.no_grad():
            attention.attention_core(q, k, v, name)
        out[name + "_s"] = time.perf_counter() - t0
    return out


# ---- the exercise: the online-softmax update inside a kernel skeleton ----------------------------
@jit
def exercise_forward_kernel(Q, K, V, O, scale, T, WINDOW, UPDATE: tl.constexpr,
                            HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr):
    """The forward kernel stripped to its loop: every key tile from 0 on (no skipping, so a row can
    meet tiles it cannot see), the mask, and ``UPDATE(m, l, acc, s, v)`` -- the learner's function."""
    bh = tl.program_id(1)
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    dims = tl.arange(0, HEAD_DIM)
    offs = bh * T * HEAD_DIM + rows[:, None] * HEAD_DIM + dims[None, :]
    q = tl.load(Q + offs, mask=rows[:, None] < T, other=0.0)
    m = tl.full([BLOCK], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK], tl.float32)
    acc = tl.zeros([BLOCK, HEAD_DIM], tl.float32)
    for k0 in range(0, tl.minimum(tl.program_id(0) * BLOCK + BLOCK, T), BLOCK):
        keys = k0 + tl.arange(0, BLOCK)
        kv_offs = bh * T * HEAD_DIM + keys[:, None] * HEAD_DIM + dims[None, :]
        k = tl.load(K + kv_offs, mask=keys[:, None] < T, other=0.0)
        v = tl.load(V + kv_offs, mask=keys[:, None] < T, other=0.0)
        s = tl.dot(q, tl.trans(k)) * scale
        visible = (keys[None, :] <= rows[:, None]) & (rows[:, None] - keys[None, :] < WINDOW)
        s = tl.where(visible, s, float("-inf"))
        m, l, acc = UPDATE(m, l, acc, s, v)
    tl.store(O + offs, acc / l[:, None], mask=rows[:, None] < T)


@jit
def _forgot_rescale_acc(m, l, acc, s, v):
    m_new = tl.maximum(m, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.exp(s - m_safe[:, None])
    alpha = tl.exp(m - m_safe)
    return m_new, alpha * l + tl.sum(p, 1), acc + tl.dot(p, v)


@jit
def _forgot_rescale_l(m, l, acc, s, v):
    m_new = tl.maximum(m, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.exp(s - m_safe[:, None])
    alpha = tl.exp(m - m_safe)
    return m_new, l + tl.sum(p, 1), alpha[:, None] * acc + tl.dot(p, v)


@jit
def _normalised_acc(m, l, acc, s, v):
    m_new = tl.maximum(m, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.exp(s - m_safe[:, None])
    alpha = tl.exp(m - m_safe)
    l_new = alpha * l + tl.sum(p, 1)
    return m_new, l_new, (alpha[:, None] * acc + tl.dot(p, v)) / l_new[:, None]


_MISTAKES = (
    (_forgot_rescale_acc, "acc is not rescaled: when the running max grows from m to m_new, multiply "
                          "the old acc by alpha = tl.exp(m - m_new) before adding tl.dot(p, v)"),
    (_forgot_rescale_l, "l is not rescaled: multiply the old l by alpha = tl.exp(m - m_new) before "
                        "adding tl.sum(p, 1)"),
    (_normalised_acc, "acc must stay unnormalised (the running sum of p @ v); the kernel divides by l "
                      "once, after the last tile"),
)
# (label, window, q scale, keys that grow): the checker's cases, B=1, H=2, T=50, D=16, BLOCK=16
_EXERCISE_CASES = (
    ("random scores", None, 1.0, False),
    ("a window of 5 (whole tiles masked for most rows)", 5, 1.0, False),
    ("a maximum that grows with every tile", None, 1.0, True),
    ("large scores (about +-400)", None, 40.0, False),
)


def _exercise_inputs(window, q_scale, growing, dev):
    g = torch.Generator().manual_seed(1)
    B, H, T, D = 1, 2, 50, 16
    q = torch.randn(B, H, T, D, generator=g) * q_scale
    k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(2))
    if growing:  # score of key j = 0.5 * j for every query: a new maximum in every tile
        q = torch.ones(B, H, T, D)
        positions = torch.arange(T, dtype=torch.float32)[None, None, :, None]
        k = (0.5 / math.sqrt(D)) * positions.expand(B, H, T, D)
    return q.to(dev), k.contiguous().to(dev), v.to(dev), window


def _run_exercise(update, q, k, v, window):
    B, H, T, D = q.shape
    out = torch.full_like(q, float("nan"))
    with warnings.catch_warnings():  # NumPy's overflow warnings, when the interpreter runs a mistake
        warnings.simplefilter("ignore", RuntimeWarning)
        exercise_forward_kernel[(triton.cdiv(T, 16), B * H)](q, k, v, out, 1.0 / math.sqrt(D), T,
                                                             T + 1 if window is None else window,
                                                             UPDATE=update, HEAD_DIM=D, BLOCK=16)
    return out


def _raises_not_implemented(fn) -> bool:
    """Whether fn's body raises NotImplementedError (read from its source)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(getattr(fn, "fn", fn))))
    except (OSError, TypeError, SyntaxError):
        return False
    return any(isinstance(n, ast.Raise) and "NotImplementedError" in ast.unparse(n) for n in ast.walk(tree))


def _is_kernel_function(fn) -> bool:
    return type(fn).__name__ in ("JITFunction", "InterpretedFunction")


def check_online_softmax_kernel(update: Callable) -> CheckResult:
    """Check a Triton function ``update(m, l, acc, s, v) -> (m_new, l_new, acc_new)`` inside the
    forward kernel's loop (``exercise_forward_kernel``): m, l are (BLOCK,) float32, acc is
    (BLOCK, HEAD_DIM), s the tile's scores with -inf where masked, v the tile's values. The output
    acc / l after the last tile must equal softmax attention (float64 reference) on random, masked,
    growing and large scores; a typical mistake is named."""
    name = "online softmax in Triton"
    st = triton_status()
    if not st["can_run"]:
        return CheckResult(name, False, f"cannot run here -- {st['why']}")
    if not _is_kernel_function(update):
        return CheckResult(name, False, "decorate your function with @jit (triton.jit): a kernel can "
                           "only call Triton functions")
    if _raises_not_implemented(update):  # the starter cell (a compiled kernel cannot raise)
        return CheckResult(name, False, "not implemented yet (the function raises "
                           "NotImplementedError) -- replace the `raise` with your code.")
    dev = kernel_device()
    tol = 1e-4 if dev.type == "cpu" else 2e-2  # on a GPU, tl.dot multiplies float32 as tf32
    for i, (label, window, q_scale, growing) in enumerate(_EXERCISE_CASES):
        q, k, v, w = _exercise_inputs(window, q_scale, growing, dev)
        try:
            out = _run_exercise(update, q, k, v, w)
        except Exception as e:  # a learner's bug, reported (Triton wraps the interpreted exception)
            cause = e
            while cause.__cause__ is not None:
                cause = cause.__cause__
            if isinstance(cause, NotImplementedError):
                return CheckResult(name, False, "not implemented yet (the function raised "
                                   "NotImplementedError) -- replace the `raise` with your code.", i)
            first = str(cause).splitlines()[0] if str(cause) else ""
            return CheckResult(name, False, f"your function failed inside the kernel: "
                               f"{type(cause).__name__}: {first}", i)
        want = eager_attention(q.double(), k.double(), v.double(), w)
        if not torch.isfinite(out).all():
            if window is not None:
                hint = ("a row whose tile is all -inf has m_new = -inf, and exp(-inf - (-inf)) is "
                        "nan: subtract 0 instead, m_safe = tl.where(m_new == float('-inf'), 0.0, m_new)")
            elif q_scale > 1:
                hint = "exp(400) does not fit in a float: subtract the running max before tl.exp"
            else:
                hint = "check that l starts summing from the first tile (l = alpha * l + tl.sum(p, 1))"
            return CheckResult(name, False, f"with {label}: NaN or inf in the output -- {hint}", i)
        err = (out.double() - want).abs().max().item()
        if err <= tol:
            continue
        for wrong, hint in _MISTAKES:
            if torch.allclose(out, _run_exercise(wrong, q, k, v, w), rtol=1e-4, atol=tol):
                return CheckResult(name, False, f"with {label}: {hint}.", i)
        return CheckResult(name, False, f"with {label}: the output differs from softmax attention by "
                           f"up to {err:.3g} (allowed {tol:g})", i)
    return CheckResult(name, True, f"matches softmax attention on all {len(_EXERCISE_CASES)} cases "
                       "(random, a window with fully masked tiles, a growing maximum, large scores).",
                       len(_EXERCISE_CASES))


# ---- on a GPU: time against SDPA and FlexAttention -------------------------------------------------
def attention_flops(B: int, H: int, T: int, D: int, window: Optional[int], mode: str) -> int:
    """Matmul FLOPs of causal attention over the *visible* (query, key) pairs, FlashAttention-2's
    convention: forward = 2 matmuls (S = Q K^T, O = P V) of 2·D FLOPs per pair and head; backward =
    2.5x forward (5 matmuls). A kernel that recomputes more (this one's backward does 7) is not
    credited for the extra work, so TFLOP/s compare kernels on the same useful work."""
    fwd = 4 * B * H * D * visible_pairs(T, window)
    return fwd if mode == "fwd" else fwd + 5 * fwd // 2


def time_kernels(shapes: Sequence[Tuple[int, int, int, int]] = GPU_SETTINGS,
                 backends: Sequence[str] = GPU_BACKENDS, modes: Sequence[str] = ("fwd", "fwdbwd"),
                 window: Optional[int] = None, dtype=torch.bfloat16, rounds: int = 3,
                 min_run_time: float = 0.2, device=None) -> List[Dict[str, object]]:
    """Forward (and forward+backward) time of each backend at each (B, H, T, D), on CUDA only.

    Per shape and mode the backends are timed in ``rounds`` interleaved rounds (``time_fn``: warm-up,
    then ``torch.utils.benchmark``); a row holds the median over rounds and its min-max, TFLOP/s over
    the visible (query, key) pairs, and the largest |difference| from SDPA's output. A backend that
    fails (no flex, a Triton compile error, out of memory) is a row with ``error``; the rest goes on.
    Without CUDA this returns [] -- timing the kernel is the GPU run's job, not the interpreter's.
    """
    dev = torch.device(device) if device is not None else settings.get_device()
    if dev.type != "cuda":
        return []
    for m in modes:
        if m not in ("fwd", "fwdbwd"):
            raise ValueError(f"mode={m!r} is not one of ['fwd', 'fwdbwd']")
    rows = []
    name = settings.device_name(dev)
    for B, H, T, D in shapes:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(B, H, T, D, generator=g).to(dev, dtype).requires_grad_() for _ in range(3))
        ref = attention.attention_core(q, k, v, "sdpa", window).detach()
        for mode in modes:
            fns, row_of = {}, {}
            for b in backends:
                row = {"kind": RESULTS_KIND, "backend": b, "B": B, "H": H, "T": T, "D": D,
                       "window": window, "mode": mode, "dtype": settings.dtype_name(dtype),
                       "device": str(dev), "device_name": name, "times_ms": [], "median_ms": None,
                       "min_ms": None, "max_ms": None, "tflops": None, "max_abs_diff_vs_sdpa": None,
                       "error": None}
                row_of[b] = row
                rows.append(row)
                try:
                    if not attention.get(b).available():
                        raise RuntimeError(f"backend {b!r} is not available here")
                    with torch.no_grad():
                        out = attention.attention_core(q, k, v, b, window)
                    row["max_abs_diff_vs_sdpa"] = (out.float() - ref.float()).abs().max().item()
                    fns[b] = _step(b, q, k, v, window, mode)
                except Exception as e:  # Triton's compile/resource errors are not RuntimeErrors
                    row["error"] = error_text(e)
            for _ in range(rounds):
                for b, fn in list(fns.items()):
                    try:
                        row_of[b]["times_ms"].append(time_fn(fn, dev, min_run_time=min_run_time,
                                                             warmup=2).median_ms)
                    except Exception as e:
                        row_of[b]["error"] = error_text(e)
                        del fns[b]
            for b in fns:
                r = row_of[b]
                r["median_ms"] = statistics.median(r["times_ms"])
                r["min_ms"], r["max_ms"] = min(r["times_ms"]), max(r["times_ms"])
                r["tflops"] = attention_flops(B, H, T, D, window, mode) / (r["median_ms"] / 1e3) / 1e12
        del q, k, v, ref
        free_memory(dev)
    return rows


def _step(backend, q, k, v, window, mode):
    if mode == "fwd":
        def run():
            with torch.no_grad():
                attention.attention_core(q, k, v, backend, window)
    else:
        def run():
            for t in (q, k, v):
                t.grad = None
            attention.attention_core(q, k, v, backend, window).backward(torch.ones_like(q))
    return run


def record_gpu_timings(path, **kwargs) -> Optional[str]:
    """``time_kernels(**kwargs)`` written to ``path`` (``measure.records`` format, rows of kind
    "triton_flash", stamped with the device); None, and nothing written, without CUDA."""
    rows = time_kernels(**kwargs)
    if not rows:
        return None
    meta = {"triton": getattr(triton, "__version__", None), "section": RESULTS_KIND}
    return str(records.save_results(path, rows, meta=meta, device=rows[0]["device"],
                                    dtype=kwargs.get("dtype", torch.bfloat16)))


def recorded_gpu_timings(docs: Optional[List[dict]] = None) -> List[Dict[str, object]]:
    """Rows of kind "triton_flash" from results files recorded on a CUDA device (newest first),
    each with its file's device name, torch and Triton versions and date; [] when none exists."""
    out = []
    for d in records.load_all() if docs is None else docs:
        meta = d.get("meta", {})
        if records.device_kind(meta.get("device", "")) != "cuda":
            continue
        for r in records.rows_of_kind(d, RESULTS_KIND):
            out.append({**r, "torch": meta.get("torch"), "triton": meta.get("triton"),
                        "date": meta.get("date"), "file": d.get("_path")})
    return out


NOT_MEASURED = ("Not measured yet: no results/*.json recorded on a CUDA device has rows of kind "
                "'triton_flash'. On a GPU machine, from a copy of this repository:\n"
                "  PYTHONPATH=. python3 -c \"from tutorial_lib.lessons.triton_flash import "
                "record_gpu_timings; record_gpu_timings('results/triton_<gpu>.json')\"")


def format_gpu_timings(rows: Sequence[Dict[str, object]]) -> str:
    """Recorded GPU rows as a table per file (device, versions, date above it), or NOT_MEASURED."""
    if not rows:
        return NOT_MEASURED
    parts = []
    for f in dict.fromkeys(r.get("file") for r in rows):
        rs = [r for r in rows if r.get("file") == f]
        r0 = rs[0]
        parts.append(f"recorded on {r0.get('device_name')} ({r0.get('dtype')}), torch {r0.get('torch')}, "
                     f"Triton {r0.get('triton')}, {r0.get('date')} -- {f}")
        parts.append(format_rows(
            [{**r, "shape": f"B={r['B']} H={r['H']} T={r['T']} D={r['D']}",
              "range_ms": None if r.get("min_ms") is None else f"{r['min_ms']:.3f}-{r['max_ms']:.3f}"}
             for r in rs],
            ["shape", "mode", "backend", "median_ms", "range_ms", "tflops", "max_abs_diff_vs_sdpa", "error"],
            formats={"median_ms": "{:.3f}", "tflops": "{:.1f}", "max_abs_diff_vs_sdpa": "{:.1e}"},
            headers={"median_ms": "ms (median)", "range_ms": "min-max over rounds",
                     "tflops": "TFLOP/s", "max_abs_diff_vs_sdpa": "|out - sdpa|"}))
    return "\n\n".join(parts)
