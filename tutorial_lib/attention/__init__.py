"""Attention backends: one registry, ``name -> Backend`` (the function and what it can do).

The model never compares backend names: ``CausalSelfAttention`` calls
``attention.get(config.attn_backend)(q, k, v, window=..., tile=..., dropout_p=..., training=...)``
and the cost model (``measure.cost``) reads the flags. A new kernel is one file with a function
``fn(q, k, v, window=None, *, tile=64, dropout_p=0.0, training=False)`` and one
``register(Backend(...))`` call below (after HF transformers' ``AttentionInterface``). What a
backend costs -- the (query, key) pairs it computes and is charged for, its backward's matmuls,
what it keeps, how many kernel calls it makes -- is stated here, in its flags, and only here.

Every backend takes q (B, H, T, D) and k, v (B, Hkv, T, D), H a multiple of Hkv (GQA), and returns
causal (optionally sliding-window) attention (B, H, T, D).

=========  ============================================================================
eager      materialised T x T scores, mask, softmax (``reference``): the "before"
sdpa       ``F.scaled_dot_product_attention``: PyTorch's fused kernels (``reference``)
tiled      the teaching flash attention in pure PyTorch (``flash_tiled``)
flex       FlexAttention with a block mask (``flex``)
local      O(T*W) blocked sliding-window attention (``sliding_window``; needs a window)
triton     flash attention written in Triton (``triton_flash``; imported on first call,
           because Triton reads TRITON_INTERPRET when the kernels are defined)
=========  ============================================================================
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from tutorial_lib.attention import flash_tiled, flex, reference, sliding_window
from tutorial_lib.attention.reference import visible_pairs


def _full(T, window, tile, device_type):
    return T * T


def _causal(T, window, tile, device_type):
    return visible_pairs(T, window)


def _triton_installed() -> bool:
    """Whether Triton can be imported (wheels for Linux only), without importing it."""
    return importlib.util.find_spec("triton") is not None


@dataclass(frozen=True)
class Backend:
    """One attention implementation and what the rest of the library needs to know about it."""
    name: str
    fn: Callable  # fn(q, k, v, window=None, *, tile=64, dropout_p=0.0, training=False) -> (B, H, T, D)
    description: str
    needs_window: bool = False  # only defined with a sliding window
    supports_backward_on_cpu: bool = True
    # decode(q, k, v, window=..., offset=...): new queries against a KV cache; None: SDPA's
    decode: Optional[Callable] = None
    available: Callable[[], bool] = lambda: True  # e.g. flex needs PyTorch >= 2.5
    # ---- what it costs (read by measure.cost) ----
    # (T, window, tile, device_type) -> (query, key) pairs FlopCounterMode charges the kernel
    counted_pairs: Callable = _full
    # (T, window, tile, device_type) -> pairs the kernel really computes (time, not the counter)
    computed_pairs: Callable = _full
    # T x T-sized matmuls in backward: 4 when the probabilities were saved, else what recomputing costs
    bwd_matmuls: Callable[[], int] = reference.sdpa_backward_matmuls
    materializes_scores: bool = False  # eager: bmm, mask and softmax on (B, H, T, T) tensors it keeps
    fused: bool = False  # one fused PyTorch kernel per call, its bytes known exactly (SDPA); else an estimate
    # (T, window, tile, n_rep) -> kernel calls per layer (its own loops: tiles, windows, merges) ...
    calls: Callable[[int, Optional[int], int, int], int] = lambda T, window, tile, n_rep: 1
    ops_per_call: Tuple[int, int] = (3, 6)  # ... and the small operators each further call launches (fwd, bwd)
    # (device_type) -> why it cannot run on that device's tensors here, or None (it can)
    cannot_run: Callable[[str], Optional[str]] = lambda device_type: None

    def __call__(self, q, k, v, window=None, *, tile=64, dropout_p=0.0, training=False):
        return self.fn(q, k, v, window, tile=tile, dropout_p=dropout_p, training=training)


BACKENDS: Dict[str, Backend] = {}


def register(backend: Backend, replace: bool = False) -> Backend:
    """Add a backend to the registry (a duplicate name is an error unless ``replace``)."""
    if backend.name in BACKENDS and not replace:
        raise ValueError(f"attention backend {backend.name!r} is already registered")
    BACKENDS[backend.name] = backend
    return backend


def names() -> List[str]:
    return list(BACKENDS)


def get(name: str) -> Backend:
    """The registered backend ``name``; ValueError naming the choices otherwise."""
    if name not in BACKENDS:
        raise ValueError(f"attn_backend={name!r} is not one of {names()}")
    return BACKENDS[name]


def attention_core(q, k, v, backend: str = "sdpa", window: Optional[int] = None, tile: int = 64,
                   dropout_p: float = 0.0, training: bool = False):
    """Causal attention with the named backend: the model's attention without its projections."""
    return get(backend)(q, k, v, window, tile=tile, dropout_p=dropout_p, training=training)


def decode_attention(q, k, v, backend: str, window: Optional[int], offset: int):
    """Attention of new queries at positions offset.. against a KV cache of k.shape[2] keys.

    Backends without a decoding path of their own (kernels built for square causal attention)
    decode with SDPA: the same function, so generated tokens do not depend on the choice."""
    return (get(backend).decode or reference.sdpa_attention)(q, k, v, window, offset=offset)


def lazy(module: str, function: str) -> Callable:
    """A backend function imported on first call: for kernels whose module must not load early
    (Triton reads its settings at import time) or whose dependency is optional."""
    def fn(*args, **kwargs):
        return getattr(importlib.import_module(module), function)(*args, **kwargs)
    fn.__qualname__ = fn.__name__ = f"{module}.{function}"
    return fn


register(Backend(
    "eager", reference.eager_attention, "materialised T x T scores, mask, softmax",
    decode=reference.eager_attention, bwd_matmuls=lambda: 4, materializes_scores=True))
register(Backend(
    "sdpa", reference.sdpa_attention, "PyTorch's fused scaled_dot_product_attention", decode=reference.sdpa_attention,
    # the causal kernel skips the masked half; a window becomes a mask, and a mask skips nothing
    computed_pairs=lambda T, window, tile, dt: visible_pairs(T) if window is None else T * T, fused=True))
register(Backend(
    "tiled", flash_tiled.tiled_backend, "the teaching flash attention in pure PyTorch",
    counted_pairs=lambda T, window, tile, dt: flash_tiled.tiled_pairs(T, tile, window),
    computed_pairs=lambda T, window, tile, dt: flash_tiled.tiled_pairs(T, tile, window),
    bwd_matmuls=lambda: 5, calls=lambda T, window, tile, n_rep: flash_tiled.tile_count(T, tile, window),
    ops_per_call=(4, 6)))
register(Backend(
    "flex", flex.flex_attention, "FlexAttention with a (sliding-window) block mask",
    computed_pairs=_causal, supports_backward_on_cpu=False, available=flex.has_flex_attention))
register(Backend(
    "local", sliding_window.local_backend, "O(T*W) blocked sliding-window attention",
    counted_pairs=lambda T, window, tile, dt: sliding_window.local_pairs(T, window, dt),
    computed_pairs=lambda T, window, tile, dt: sliding_window.local_pairs(T, window, dt),
    needs_window=True, calls=lambda T, window, tile, n_rep: 1 + 2 * n_rep))
register(Backend(
    "triton", lazy("tutorial_lib.attention.triton_flash", "triton_attention"),
    "flash attention written in Triton (FlashAttention-2's kernels; Triton's interpreter on a CPU)",
    # FlopCounterMode counts aten ops and sees nothing inside a Triton kernel: it charges 0
    counted_pairs=lambda T, window, tile, dt: 0,
    # whole tiles, skipping those above the diagonal and outside the window, as ``tiled`` does
    computed_pairs=lambda T, window, tile, dt: flash_tiled.tiled_pairs(T, tile, window),
    # the dQ kernel: S, dP, dQ; the dK/dV kernel: S, dP, dV, dK (each recomputes S and dP)
    bwd_matmuls=lambda: 7, available=_triton_installed,
    # CPU tensors need the interpreter (TRITON_INTERPRET=1 at import), which needs numpy < 2.4 on triton <= 3.6
    cannot_run=lazy("tutorial_lib.attention.triton_flash", "cannot_run_on")))
