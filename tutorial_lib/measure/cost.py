"""The one analytic model of a GPT training step: its kernels, their FLOPs and bytes, and what it keeps.

Every number the tutorial predicts before it measures comes from here:

- **Kernels** (``step_kernels``): for every component of a training step (a profiler scope of
  ``tutorial_lib.scopes``), forward and backward, and AdamW's step, the operators the eager
  implementation launches, each with its matmul FLOPs and the bytes it must move at least -- its
  inputs read once, its outputs written once (eager attention's T x T scores and probabilities,
  several times). Tested against what PyTorch dispatches (``measure.traffic.count_step_traffic``),
  exactly. The roofline's time prediction and bound labels (``measure.roofline``) read them.
  Activation checkpointing (``GPTConfig.checkpoint``): a recomputed half's forward kernels run
  again in backward, up to ``torch.utils.checkpoint``'s early stop; gradient accumulation
  (``grad_accum``): the micro-batches' kernels and the gradients added into ``.grad``.
- **FLOPs** (``flops_by_scope``, ``step_flops``): the kernels' matmul FLOPs summed, in three
  conventions that differ only in the attention core's (query, key) pairs: ``"computed"`` (what
  the kernel really computes: a causal SDPA kernel skips the masked half, a band mask skips
  nothing), ``"counted"`` (what ``torch.utils.flop_counter.FlopCounterMode`` charges: full T x T;
  the tests match it exactly) and ``"visible"`` (only the pairs a query may see: the useful work,
  what an MFU counts -- so without the forward that activation checkpointing runs again, which
  the other two include). ``elementwise_flops`` is a rough estimate of the work FLOP counters leave
  out (softmax, GELU, norms, RoPE, residual adds, the loss): a place on the roofline's x axis for
  the components that have no matmul.
- **Memory** (``activation_bytes``, ``training_memory``): the bytes autograd saves for backward, per
  component -- equal to what ``saved_tensors_hooks`` sees (``measure.memory``), byte for byte,
  a checkpointed half keeping only its input -- and the training step's parameters, gradients and
  AdamW state beside them (the step's peak on top of them: ``measure.peak``).
- **Parameters** (``param_tensors``, ``params_by_scope``, ``num_params``).

Backward conventions: a Linear costs 2x its forward (grad input + grad weight). Eager attention's
backward is 4 matmuls over its T x T (its probabilities were saved); a flash-style kernel recomputes
the scores first (5; PyTorch 2.13's counter charges that, older versions 4 -- the model asks the
installed counter, ``attention.reference.sdpa_backward_matmuls``). The chunked loss
(``GPTConfig.loss_impl``) recomputes the head's matmul in backward, or with ``"chunked_liger"`` runs
all three in forward. Each backend's entry in the attention registry says how many pairs it
computes and is charged for (``attention.Backend``): the one place a backend's cost is stated.

The formulas follow PyTorch 2.13's CPU operators (its composite RMSNorm, RoPE written as slices
and ``cat``, the CPU flash-attention kernel, AdamW's per-tensor loop). On CUDA the same kernels run
(AdamW is fused there); where a backend runs its own tiled loops (``tiled``, ``local``, ``flex``) the
kernels are an estimate and the component says ``exact=False``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from tutorial_lib import attention, settings
from tutorial_lib.attention.reference import visible_pairs
from tutorial_lib.model import GPTConfig

PHASES = ("forward", "backward", "optimizer")
CONVENTIONS = ("computed", "counted", "visible")

# ---- kernels and components -----------------------------------------------------------------------
@dataclass(frozen=True)
class Kernel:
    """``count`` launches of one operator, each reading ``read`` and writing ``write`` bytes.

    ``alloc``: the sizes of the new outputs each launch allocates (default: one output of ``write``
    bytes; none for in-place operators, whose names end in "_"): on a CPU, allocations of
    ``ceilings.FRESH_ALLOC_BYTES`` and more are new pages, which the OS maps on the first write
    (unless the process keeps freed memory; the first-touch probe measures which)."""
    op: str
    count: int
    read: int
    write: int
    flops: int = 0  # matmul FLOPs per launch (elementwise work is memory-bound: its bytes count)
    alloc: Optional[Tuple[int, ...]] = None
    shape: Optional[Tuple[int, int, int]] = None  # (M, K, N) of its matmuls: how fast they can run

    @property
    def allocs(self) -> Tuple[int, ...]:
        if self.alloc is not None:
            return self.alloc
        return () if self.op.endswith("_") else (self.write,)

    def fresh_bytes(self, threshold: Optional[int]) -> int:
        """Bytes each launch writes into new allocations of at least ``threshold`` bytes."""
        return 0 if threshold is None else sum(a for a in self.allocs if a >= threshold)


@dataclass(frozen=True)
class Component:
    """The kernels of one profiler scope in one phase of a training step (all layers)."""
    scope: str  # a tutorial_lib.scopes name, "other" or "optimizer"
    phase: str  # forward | backward | optimizer
    kernels: Tuple[Kernel, ...]
    other_flops: int = 0  # elementwise FLOP estimate (``elementwise_flops``), for the roofline's x axis
    exact: bool = True  # False where the kernels are an estimate (tiled/local/flex loops)

    @property
    def flops(self) -> int:
        """Matmul FLOPs (as the kernels do them)."""
        return sum(k.count * k.flops for k in self.kernels)

    @property
    def read(self) -> int:
        return sum(k.count * k.read for k in self.kernels)

    @property
    def write(self) -> int:
        return sum(k.count * k.write for k in self.kernels)

    @property
    def bytes(self) -> int:
        return self.read + self.write

    @property
    def n_kernels(self) -> int:
        return sum(k.count for k in self.kernels)

    @property
    def roofline_flops(self) -> int:
        """The FLOPs that place it on the roofline: its matmul FLOPs, or where it has none (norms,
        activations, the loss) the elementwise estimate -- so every component has an intensity."""
        return self.flops or self.other_flops

    @property
    def intensity(self) -> float:
        """``roofline_flops`` per byte moved."""
        return self.roofline_flops / self.bytes if self.bytes else math.inf


def linear_kernels(N: int, fan_in: int, fan_out: int, e: int, x_bytes: int, bias: bool, n: int = 1
            ) -> Tuple[List[Kernel], List[Kernel]]:
    """(forward, backward) kernels of ``n`` Linear layers on N tokens. Weights are fp32; under
    autocast (e < 4) each forward casts its weight (and bias, and an fp32 input) to the compute
    dtype, and backward casts the gradients back."""
    lp, W = e < 4, fan_in * fan_out
    f = 2 * N * fan_in * fan_out
    fwd, bwd = [], []
    if lp:
        fwd.append(Kernel("_to_copy", n, 4 * W, e * W))
        if bias:
            fwd.append(Kernel("_to_copy", n, 4 * fan_out, e * fan_out))
        if x_bytes == 4:
            fwd.append(Kernel("_to_copy", n, 4 * N * fan_in, e * N * fan_in))
    b = e * fan_out if bias else 0
    fwd.append(Kernel("addmm" if bias else "mm", n, e * (N * fan_in + W) + b, e * N * fan_out, f,
                      shape=(N, fan_in, fan_out)))
    bwd.append(Kernel("mm", n, e * (N * fan_out + N * fan_in), e * W, f, shape=(fan_in, N, fan_out)))  # grad weight
    bwd.append(Kernel("mm", n, e * (N * fan_out + W), e * N * fan_in, f, shape=(N, fan_out, fan_in)))  # grad input
    if bias:
        bwd.append(Kernel("sum", n, e * N * fan_out, e * fan_out))
    if lp:
        bwd.append(Kernel("_to_copy", n, e * W, 4 * W))
        if bias:
            bwd.append(Kernel("_to_copy", n, e * fan_out, 4 * fan_out))
        if x_bytes == 4:
            bwd.append(Kernel("_to_copy", n, e * N * fan_in, 4 * N * fan_in))
    return fwd, bwd


def rope_kernels(M: int, T: int, D: int, e: int, L: int) -> Tuple[List[Kernel], List[Kernel]]:
    """RoPE on one (B, heads, T, D) tensor of M elements, in all L layers: x1*cos - x2*sin and
    x1*sin + x2*cos on the halves, then ``cat``. The cos/sin tables are (T, D/2)."""
    half, tab = e * M // 2, e * T * (D // 2)
    fwd = ([Kernel("_to_copy", 2 * L, 4 * T * (D // 2), tab)] if e < 4 else []) + [
        Kernel("mul", 4 * L, half + tab, half), Kernel("sub", L, 2 * half, half),
        Kernel("add", L, 2 * half, half), Kernel("cat", L, 2 * half, 2 * half)]
    bwd = [Kernel("mul", 4 * L, half + tab, half), Kernel("neg", L, half, half),
           Kernel("add", 2 * L, 2 * half, half),  # x1 and x2 each feed two products
           Kernel("slice_backward", 2 * L, half, 2 * half),  # the halves back to full width
           Kernel("add", L, 4 * half, 2 * half)]
    return fwd, bwd


def flash_block_shape(T: int, D: int, device_type: str) -> Optional[Tuple[int, int, int]]:
    """(M, K, N) of the matmuls inside a fused attention kernel: on a CPU, PyTorch's flash kernel
    (aten/src/ATen/native/cpu/FlashAttentionKernel.cpp) multiplies blocks of 32, 64 or 256 queries
    (T < 192, < 768, >= 768) by blocks of up to 512 keys over a head of D -- thin matmuls, far below
    the machine's peak. None on CUDA (its tiles run near the tensor cores' rate: the peak)."""
    if device_type != "cpu":
        return None
    q_block = 256 if T >= 768 else 64 if T >= 192 else 32
    return (min(q_block, T), D, min(512, T))


def mask_kernels(T: int, window: Optional[int], L: int) -> List[Kernel]:
    """Building the (T, T) bool causal mask (``attention.reference.causal_mask``) in each layer of
    eager attention, and inverting it: two position vectors, one comparison to (T, T) bool, and with
    a window the vector (query - window) compared and and-ed in place. (SDPA's additive mask comes
    from ``shared_mask``'s cache: built once per process, not per step, so no kernels here.)"""
    ks = [Kernel("arange", 2 * L, 0, 8 * T), Kernel("le", L, 16 * T, T * T)]
    if window is not None:
        ks += [Kernel("sub", L, 8 * T, 8 * T), Kernel("gt", L, 16 * T, T * T),
               Kernel("bitwise_and_", L, 2 * T * T, T * T)]
    return ks + [Kernel("bitwise_not", L, T * T, T * T)]


def contiguous_copy_needed(heads: int, T: int) -> bool:
    """Whether a (B, heads, T, D) tensor and its (B, T, heads, D) transpose differ in memory
    layout, so that turning one into the other copies it (not when heads or T is 1)."""
    return heads > 1 and T > 1


def batched_copy_needed(B: int, heads: int, T: int) -> bool:
    """Whether a transposed view (B, heads, T, D) of a (B, T, heads, D) tensor must be copied to
    become the (B * heads, T, D) batch of a ``bmm`` (its B and heads dimensions merge without a
    copy only when one of B, heads, T is 1)."""
    return B > 1 and heads > 1 and T > 1


def attention_core_kernels(c: GPTConfig, B: int, T: int, e: int, device_type: str,
                           layers: Optional[int] = None) -> Tuple[List[Kernel], List[Kernel], bool]:
    """(forward, backward, exact) kernels of the attention core in ``layers`` blocks (default: all)."""
    L, H, Hkv, D = c.n_layer if layers is None else layers, c.n_head, c.kv_heads, c.head_dim
    q, kv = e * B * H * T * D, e * B * Hkv * T * D  # bytes of q (and out), of k (and v)
    lse = 4 * B * H * T  # the log-sum-exp a flash kernel keeps per query (fp32)
    backend = attention.get(c.attn_backend)
    pairs = backend.computed_pairs(T, c.window, c.tile_size, device_type)
    pf = 2 * B * H * D * pairs  # one of the two products (QK^T or PV) over the computed pairs
    rope = c.pos == "rope"
    fwd: List[Kernel] = []
    bwd: List[Kernel] = []
    if backend.materializes_scores:  # eager: the (B, H, T, T) scores through bmm, mask and softmax
        tt, rep = e * B * H * T * T, Hkv != H
        # repeat_kv expands K and V to every query head; reshaping the expansion copies it, except
        # for one K/V head in a batch of one, where bmm reads the shared head in place
        shared = rep and Hkv == 1 and B == 1
        kop = kv if shared else q  # bytes of the K (and V) operand bmm reads
        if rep and not shared:
            fwd.append(Kernel("clone", 2 * L, kv, q))
        # bmm wants (B*H, T, D) operands: q, k, v still transposed views of (B, T, H, D) are
        # copied first (RoPE's cat already made q and k contiguous)
        views = ([] if rope else [H]) + ([] if rep else ([] if rope else [Hkv]) + [Hkv])
        copies = sum(batched_copy_needed(B, h, T) for h in views)
        if copies:
            fwd.append(Kernel("clone", copies * L, q, q))
        qk, pv = (T, D, T), (T, T, D)  # each head's matmuls: a head of D is a thin matmul
        fwd += [Kernel("bmm", L, q + kop, tt, pf, shape=qk), Kernel("mul", L, tt, tt)]  # scores, scale
        fwd += mask_kernels(T, c.window, L)
        fwd += [Kernel("masked_fill", L, tt + T * T, tt), Kernel("_softmax", L, tt, tt),
                Kernel("bmm", L, tt + kop, q, pf, shape=pv)]
        if batched_copy_needed(B, H, T):  # the output's gradient, a transposed view, made contiguous
            bwd.append(Kernel("clone", L, q, q))
        bwd += [Kernel("bmm", L, q + kop, tt, pf, shape=qk),  # dP = dO V^T
                Kernel("bmm", 2 * L, tt + q, q, pf, shape=pv),  # dV = P^T dO, dK = dS^T Q
                Kernel("bmm", L, tt + kop, q, pf, shape=pv),  # dQ = dS K
                Kernel("_softmax_backward_data", L, 2 * tt, tt), Kernel("masked_fill", L, tt + T * T, tt),
                Kernel("mul", L, tt, tt)]
        if rep:
            bwd.append(Kernel("sum", 2 * L, q, kv))  # repeat_kv backward: sum over the copies
        exact = True
    elif backend.fused:  # one fused kernel per layer (and the cached additive mask with a window)
        masked = c.window is not None
        m = e * T * T if masked else 0  # the cached additive mask, read by every layer
        block = flash_block_shape(T, D, device_type)
        fwd.append(Kernel("scaled_dot_product_flash_attention", L, q + 2 * kv + m, q + lse, 2 * pf, (q, lse),
                          shape=block))
        # backward recomputes the scores, then dV, dP, dQ, dK: bwd_matmuls() products over the pairs
        bwd.append(Kernel("scaled_dot_product_flash_attention_backward", L, 3 * q + 2 * kv + lse + m,
                          q + 2 * kv, backend.bwd_matmuls() * pf, (q, kv, kv), shape=block))
        exact = True
    else:  # loops of its own: read q, k, v, write out (+ lse); backward reads them again
        n_calls = backend.calls(T, c.window, c.tile_size, c.n_rep)
        ops_fwd, ops_bwd = backend.ops_per_call
        fwd.append(Kernel(f"{backend.name} attention", L, q + 2 * kv, q + lse, 2 * pf, (q, lse)))
        if n_calls > 1:  # its other launches (tiles, merges): overhead only
            fwd.append(Kernel(f"{backend.name} tiles", L * (n_calls - 1) * ops_fwd, 0, 0))
        bwd.append(Kernel(f"{backend.name} attention backward", L, 3 * q + 2 * kv + lse, q + 2 * kv,
                          backend.bwd_matmuls() * pf, (q, kv, kv)))
        if n_calls > 1:
            bwd.append(Kernel(f"{backend.name} tiles backward", L * (n_calls - 1) * ops_bwd, 0, 0))
        exact = False
    # out.transpose(1, 2).contiguous(): a copy unless the kernel wrote the output in (B, T, H, D)
    # order already (the CPU flash kernel follows q's layout: a transposed view without RoPE)
    if contiguous_copy_needed(H, T) and (not backend.fused or rope):
        fwd.append(Kernel("clone", L, q, q))
    return fwd, bwd, exact


def norm_kernels(c: GPTConfig, N: int, n: int) -> Tuple[List[Kernel], List[Kernel]]:
    """``n`` norms over (N, C) in fp32 (the residual stream's dtype, also under autocast)."""
    C, x, r = c.n_embd, 4 * N * c.n_embd, 4 * N
    if c.norm == "layernorm":
        wb = 4 * C * (2 if c.bias else 1)
        fwd = [Kernel("native_layer_norm", n, x + wb, x + 2 * r, alloc=(x, r, r))]
        bwd = [Kernel("native_layer_norm_backward", n, 2 * x + 2 * r + 4 * C * 2, x + wb,
                      alloc=(x,) + (4 * C,) * (2 if c.bias else 1))]
        return fwd, bwd
    # RMSNorm, PyTorch's composite: x * rsqrt(mean(x^2) + eps) * weight
    fwd = [Kernel("pow", n, x, x), Kernel("mean", n, x, r), Kernel("add_", n, r, r),
           Kernel("rsqrt", n, r, r), Kernel("mul", n, x + r, x), Kernel("mul", n, x + 4 * C, x)]
    bwd = [Kernel("mul", n, x + 4 * C, x), Kernel("mul", 3 * n, 2 * x, x), Kernel("sum", n, x, 4 * C),
           Kernel("mul", n, x + r, x), Kernel("sum", n, x, r), Kernel("pow", n, r, r), Kernel("mul", n, r, r),
           Kernel("mul", n, 2 * r, r), Kernel("div", n, r, x), Kernel("pow", n, x, x), Kernel("mul", n, x, x),
           Kernel("add", n, 2 * x, x)]  # x feeds both x^2 and x * rsqrt: its two gradients add
    return fwd, bwd


ADAMW_IMPLS = ("for-loop", "foreach", "fused")


def adamw_kernels(param_sizes: List[int], device_type: str, impl: str = "auto") -> List[Kernel]:
    """AdamW's step on fp32 parameters of these element counts, in implementation ``impl``
    (``runtime.StepSettings.adamw``; "auto": fused on CUDA, the for-loop elsewhere):

    - "for-loop": PyTorch's loop over the tensors, 9 operators per tensor (13 reads and 8 writes of
      its size): every small tensor pays a dispatch each time;
    - "foreach": the same 9 operators, each once over the list of all tensors (the same bytes; on
      a CPU one dispatch loops over the tensors, on CUDA it launches a few kernels for all of them);
    - "fused": one kernel reads parameters, gradients and both moments and writes three of them
      back (4 reads and 3 writes of the parameters' size), after the step counts are bumped.
    """
    n, P = len(param_sizes), 4 * sum(param_sizes)
    if impl == "auto":
        impl = "fused" if device_type == "cuda" else "for-loop"
    if impl not in ADAMW_IMPLS:
        raise ValueError(f"impl={impl!r} is not one of {['auto', *ADAMW_IMPLS]}")
    if impl == "fused":
        return [Kernel("_foreach_add_", 1, 4 * n, 4 * n), Kernel("_fused_adamw_", 1, 4 * P + 4 * n, 3 * P)]
    if impl == "foreach":  # step counts + 1 (a CPU adds a one-element tensor), then the update
        one = 4 if device_type == "cpu" else 0
        return [Kernel("_foreach_add_", 1, 4 * n + one, 4 * n), Kernel("_foreach_mul_", 1, P, P),  # decay
                Kernel("_foreach_lerp_", 1, 2 * P, P), Kernel("_foreach_mul_", 1, P, P),
                Kernel("_foreach_addcmul_", 1, 3 * P, P),
                Kernel("_foreach_sqrt", 1, P, P, alloc=tuple(4 * k for k in param_sizes)),
                Kernel("_foreach_div_", 1, P, P), Kernel("_foreach_add_", 1, P, P),
                Kernel("_foreach_addcdiv_", 1, 3 * P, P)]
    ks = []
    for k in param_sizes:
        p = 4 * k
        ks += [Kernel("add_", 1, 4, 4), Kernel("mul_", 2, p, p), Kernel("lerp_", 1, 2 * p, p),
               Kernel("addcmul_", 1, 3 * p, p), Kernel("sqrt", 1, p, p), Kernel("div", 1, p, p),
               Kernel("add_", 1, p, p), Kernel("addcdiv_", 1, 3 * p, p)]
    return ks


def param_tensors(c: GPTConfig) -> List[Tuple[str, int]]:
    """(scope, element count) of the model's parameter tensors, in ``GPT.parameters()`` order (a
    tied head counted once, under "embedding"): what AdamW loops over."""
    C, H, Hkv, D, Hid, V = c.n_embd, c.n_head, c.kv_heads, c.head_dim, c.mlp_hidden, c.padded_vocab_size
    norm = [("norm", C)] + ([("norm", C)] if c.norm == "layernorm" and c.bias else [])  # weight (+ bias)

    def linear(scope, fan_in, fan_out):
        return [(scope, fan_in * fan_out)] + ([(scope, fan_out)] if c.bias else [])

    block = (norm + linear("attention.qkv", C, H * D) + linear("attention.qkv", C, Hkv * D)
             + linear("attention.qkv", C, Hkv * D) + linear("attention.out", H * D, C) + norm)
    block += linear("mlp.up", C, Hid) * (2 if c.mlp == "swiglu" else 1) + linear("mlp.down", Hid, C)
    return ([("embedding", V * C)] + ([("embedding", c.block_size * C)] if c.pos == "learned" else [])
            + block * c.n_layer + norm + ([] if c.tie_embeddings else [("lm_head", V * C)]))


def param_sizes(c: GPTConfig) -> List[int]:
    """Element counts of the model's parameter tensors, in ``GPT.parameters()`` order."""
    return [n for _, n in param_tensors(c)]


def params_by_scope(c: GPTConfig) -> Dict[str, int]:
    """Parameters per component (a tied head's weights are the embedding's)."""
    out: Dict[str, int] = {}
    for scope, n in param_tensors(c):
        out[scope] = out.get(scope, 0) + n
    return out


def num_params(c: GPTConfig) -> int:
    """Parameters of a GPT of ``c`` (a tied head counted once)."""
    return sum(param_sizes(c))


def chunked_loss_kernels(N: int, C: int, V: int, chunk: int, e: int, liger: bool
                         ) -> Dict[Tuple[str, str], List[Kernel]]:
    """The kernels of ``tutorial_lib.loss.chunked_linear_cross_entropy`` on N fp32 hidden states,
    an fp32 (V, C) head and int64 targets, chunk by chunk (``chunk`` tokens; the last chunk may be
    shorter), in compute dtype ``e`` bytes (autocast casts the hidden states and the weight once per
    pass). Matmuls are charged to "lm_head", the rest to "loss", forward and backward, as the
    Function scopes them. ``liger``: gradients made in forward, backward only scales them."""
    lp = e < 4
    sizes = [min(chunk, N - s) for s in range(0, N, chunk)]
    out: Dict[Tuple[str, str], List[Kernel]] = {}

    def add(scope, phase, *ks):
        out.setdefault((scope, phase), []).extend(ks)

    def per_chunk(phase: str, recompute: bool):
        """A chunk's logits (forward: its loss; with gradients: softmax - one_hot, two matmuls)."""
        for k, n in ((k, sizes.count(k)) for k in dict.fromkeys(sizes)):
            add("lm_head", phase, Kernel("mm", n, e * (k * C + V * C), e * k * V, 2 * k * C * V, shape=(k, C, V)))
            z = 4 * k * V
            if lp:
                add("loss", phase, Kernel("_to_copy", n, e * k * V, z))
            add("loss", phase, Kernel("clamp", n, 8 * k, 8 * k))  # the targets, ignored ones at 0
            if not recompute:  # forward: log-sum-exp, the target's logit, the chunk's loss
                add("loss", phase, Kernel("logsumexp", n, z, 4 * k), Kernel("gather", n, 12 * k, 4 * k),
                    Kernel("sub", n, 8 * k, 4 * k), Kernel("scalar_tensor", n, 0, 4),
                    Kernel("where", n, k + 4 * k + 4, 4 * k), Kernel("sum", n, 4 * k, 4),
                    Kernel("add_", n, 8, 4))
                if not liger:
                    add("loss", phase, Kernel("copy_", n, 8 * k, 4 * k))  # keep the log-sum-exp
                    continue
            # d loss / d logits, in place: softmax (from the log-sum-exp), minus the one-hot target, scaled
            add("loss", phase, Kernel("sub_", n, z + 4 * k, z), Kernel("exp_", n, z, z),
                Kernel("_to_copy", n, k, 4 * k), Kernel("neg", n, 4 * k, 4 * k),
                Kernel("scatter_add_", n, z + 8 * k + 4 * k, z), Kernel("_to_copy", n, k, 4 * k),
                Kernel("mul", n, 4 * k + 4, 4 * k), Kernel("mul_", n, z + 4 * k, z))
            if lp:
                add("loss", phase, Kernel("_to_copy", n, z, e * k * V))
            # the two gradients' matmuls; the weight's accumulates over chunks in fp32
            add("lm_head", phase, Kernel("mm", n, e * (k * V + V * C), e * k * C, 2 * k * V * C, shape=(k, V, C)),
                Kernel("copy_", n, 4 * k * C + e * k * C, 4 * k * C))
            if lp:
                add("lm_head", phase, Kernel("mm", n, e * (k * V + k * C), e * V * C, 2 * k * V * C, shape=(V, k, C)),
                    Kernel("_to_copy", n, e * V * C, 4 * V * C), Kernel("add_", n, 8 * V * C, 4 * V * C))
            else:
                add("lm_head", phase, Kernel("addmm", n, 4 * (2 * V * C + k * V + k * C), 4 * V * C,
                                             2 * k * V * C, alloc=(), shape=(V, k, C)))

    # forward: the casts, which targets count, the loss's accumulator
    if lp:
        add("loss", "forward", Kernel("_to_copy", 1, 4 * N * C, e * N * C), Kernel("_to_copy", 1, 4 * V * C, e * V * C))
    add("loss", "forward", Kernel("ne", 1, 8 * N, N), Kernel("sum", 1, N, 8), Kernel("zeros", 1, 0, 4))
    if liger:  # the gradient buffer and 1 / (targets that count)
        add("loss", "forward", Kernel("zeros", 1, 0, 4 * V * C), Kernel("clamp", 1, 8, 8),
            Kernel("_to_copy", 1, 8, 4), Kernel("reciprocal", 1, 4, 4), Kernel("mul", 1, 4, 4))
    per_chunk("forward", recompute=False)
    add("loss", "forward", Kernel("div", 1, 12, 4))  # the mean
    if liger:
        add("loss", "backward", Kernel("mul", 1, 4 * N * C + 4, 4 * N * C), Kernel("mul", 1, 4 * V * C + 4, 4 * V * C))
        return out
    # backward: d loss / n_valid, the weight cast again, a zeroed fp32 weight gradient; then recompute
    if lp:
        add("loss", "backward", Kernel("_to_copy", 1, 4 * V * C, e * V * C))
    add("loss", "backward", Kernel("ne", 1, 8 * N, N), Kernel("clamp", 1, 8, 8), Kernel("_to_copy", 1, 8, 4),
        Kernel("div", 1, 8, 4), Kernel("zeros", 1, 0, 4 * V * C))
    per_chunk("backward", recompute=True)
    return out


HALVES = ("attention", "mlp")  # a block: x + attention(norm1(x)), then + mlp(norm2(.))


def half_kernels(c: GPTConfig, B: int, T: int, e: int, device_type: str, half: str, layers: int
                 ) -> Tuple[Dict[Tuple[str, str], List[Kernel]], bool]:
    """({(scope, phase): kernels}, exact) of one half of ``layers`` blocks, its norm included:
    "attention" (norm1, q/k/v, RoPE, the core, the output projection) or "mlp" (norm2, up, the
    activation, down). The residual adds between them are not in either half."""
    C, H, Hkv, D, Hid = c.n_embd, c.n_head, c.kv_heads, c.head_dim, c.mlp_hidden
    L, N, rope = layers, B * T, c.pos == "rope"
    rows: Dict[Tuple[str, str], List[Kernel]] = {}

    def add(scope: str, phase: str, kernels: Iterable[Kernel]):
        rows.setdefault((scope, phase), []).extend(k for k in kernels if k.count)

    # its norm; in backward the residual stream's gradient meets the norm's
    f, b = norm_kernels(c, N, L)
    add("norm", "forward", f)
    add("norm", "backward", b + [Kernel("add", L, 8 * N * C, 4 * N * C)])
    if half == "mlp":
        n_up = 2 if c.mlp == "swiglu" else 1
        f, b = linear_kernels(N, C, Hid, e, 4, c.bias, n_up * L)
        add("mlp.up", "forward", f)
        add("mlp.up", "backward", b + ([Kernel("add", L, 8 * N * C, 4 * N * C)] if n_up == 2 else []))
        h = e * N * Hid
        if c.mlp == "swiglu":
            add("mlp.act", "forward", [Kernel("silu", L, h, h), Kernel("mul", L, 2 * h, h)])
            add("mlp.act", "backward", [Kernel("mul", 2 * L, 2 * h, h), Kernel("silu_backward", L, 2 * h, h)])
        else:
            add("mlp.act", "forward", [Kernel("gelu", L, h, h)])
            add("mlp.act", "backward", [Kernel("gelu_backward", L, 2 * h, h)])
        f, b = linear_kernels(N, Hid, C, e, e, c.bias, L)
        add("mlp.down", "forward", f)
        add("mlp.down", "backward", b)
        return rows, True
    if half != "attention":
        raise ValueError(f"half={half!r} is not one of {list(HALVES)}")
    # q/k/v projections from the (fp32) norm output; their input gradients add up
    for fan_out in (H * D, Hkv * D, Hkv * D):
        f, b = linear_kernels(N, C, fan_out, e, 4, c.bias, L)
        add("attention.qkv", "forward", f)
        add("attention.qkv", "backward", b)
    add("attention.qkv", "backward", [Kernel("add", 2 * L, 8 * N * C, 4 * N * C)])
    if rope:
        for heads in (H, Hkv):
            f, b = rope_kernels(B * heads * T * D, T, D, e, L)
            add("attention.rope", "forward", f)
            add("attention.rope", "backward", b)
    f, b, exact = attention_core_kernels(c, B, T, e, device_type, layers=L)
    add("attention.core", "forward", f)
    add("attention.core", "backward", b)
    f, b = linear_kernels(N, H * D, C, e, e, c.bias, L)
    add("attention.out", "forward", f)
    add("attention.out", "backward", b)
    # gradients of q, k, v reach their (B, T, H, D) views as contiguous (B, H, T, D) tensors and
    # are copied back: after RoPE's backward (q, k), after eager attention's matmuls (all three);
    # SDPA's backward writes them in the layout its inputs had. Eager attention without RoPE or
    # grouped heads hands k's gradient to the projection's own reshape (charged there).
    eager = attention.get(c.attn_backend).materializes_scores
    for t, heads in (("q", H), ("k", Hkv), ("v", Hkv)):
        if (rope and t != "v" or eager) and contiguous_copy_needed(heads, T):
            if eager and t == "k" and not rope and Hkv == H:  # charged to the projection's reshape
                if B > 1:
                    add("attention.qkv", "backward", [Kernel("clone", L, e * B * heads * T * D,
                                                             e * B * heads * T * D)])
                continue
            add("other", "backward", [Kernel("clone", L, e * B * heads * T * D, e * B * heads * T * D)])
    return rows, exact


def accumulation_kernels(c: GPTConfig, grad_accum: int) -> Dict[Tuple[str, str], List[Kernel]]:
    """What gradient accumulation adds to ``grad_accum`` micro-batches' forward and backward: each
    loss scaled by 1/grad_accum (a division forward, one backward), and from the second
    micro-batch on, every parameter's new gradient added into its ``.grad`` in place (charged to
    the parameter's scope; the first micro-batch's gradients are stored as they are)."""
    out: Dict[Tuple[str, str], List[Kernel]] = {("other", "forward"): [Kernel("div", grad_accum, 4, 4)],
                                                 ("other", "backward"): [Kernel("div", grad_accum, 4, 4)]}
    for scope, n in param_tensors(c):
        out.setdefault((scope, "backward"), []).append(Kernel("add_", grad_accum - 1, 8 * n, 4 * n))
    return out


def recomputed_until_last_save(kernels: List[Kernel], stopped: int) -> List[Kernel]:
    """A half's last Linear run again in backward, in ``stopped`` of its layers without the matmul
    (checkpoint's recompute stops as the matmul saves its input, before it runs)."""
    out = []
    for k in kernels:
        if k.op in ("mm", "addmm") and k.flops:
            k = dataclasses.replace(k, count=k.count - stopped)
        out.append(k)
    return out


def step_kernels(config: GPTConfig, batch_size: int, seq_len: int, dtype="float32",
                  device_type: str = "cpu", optimizer: bool = True, grad_clip: bool = False,
                  adamw: str = "auto", recompute: bool = True, grad_accum: int = 1) -> List[Component]:
    """The kernels of one training step of ``config`` on a (batch_size, seq_len) batch, one
    ``Component`` per (scope, phase), all layers summed.

    ``dtype``: the compute dtype (bf16/fp16 = autocast on fp32 weights); ``optimizer`` adds
    AdamW's step (``adamw``: its implementation, ``adamw_kernels``), ``grad_clip`` the global-norm
    clipping ``train`` does before it. With activation checkpointing (``GPTConfig.checkpoint``) the
    recomputed halves' forward kernels are charged again to their scopes' backward
    (``recompute=False`` leaves them out: the useful work). ``grad_accum``: the batch runs as that
    many micro-batches (``accumulate.accumulate_gradients``): forward and backward of one
    micro-batch that many times, each loss scaled by 1/grad_accum, and from the second on every
    gradient added into ``.grad``; one optimizer step."""
    for name, v in (("batch_size", batch_size), ("seq_len", seq_len), ("grad_accum", grad_accum)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    if batch_size % grad_accum:
        raise ValueError(f"grad_accum={grad_accum} does not divide batch_size={batch_size}")
    c = config
    e = settings.dtype_bytes(dtype)
    B, T, L, C, V = batch_size // grad_accum, seq_len, c.n_layer, c.n_embd, c.padded_vocab_size
    N = B * T
    cpu = device_type == "cpu"
    other = elementwise_flops(c, B, T, device_type)
    rows: Dict[Tuple[str, str], List[Kernel]] = {}
    exact_core = True

    def add(scope: str, phase: str, kernels: Iterable[Kernel]):
        rows.setdefault((scope, phase), []).extend(k for k in kernels if k.count)

    # embedding: gather one row per token (and per position); backward writes a dense table
    add("embedding", "forward", [Kernel("embedding", 1, 8 * N + 4 * N * C, 4 * N * C)])
    add("embedding", "backward", [Kernel("embedding_dense_backward", 1, 4 * N * C + 8 * N, 4 * V * C)])
    if c.tie_embeddings:  # the head's gradient and the embedding's land on one tensor: add them
        add("embedding", "backward", [Kernel("add", 1, 8 * V * C, 4 * V * C)])
    if c.pos == "learned":
        add("embedding", "forward", [Kernel("embedding", 1, 8 * T + 4 * T * C, 4 * T * C)])
        add("embedding", "backward", [Kernel("embedding_dense_backward", 1, 4 * T * C + 8 * T,
                                             4 * c.block_size * C)])
        add("other", "forward", [Kernel("arange", 1, 0, 8 * T), Kernel("add", 1, 4 * N * C + 4 * T * C, 4 * N * C)])
        add("other", "backward", [Kernel("sum", 1, 4 * N * C, 4 * T * C)])

    # the final norm; each block's two norms are in its halves (``half_kernels``)
    f, b = norm_kernels(c, N, 1)
    add("norm", "forward", f)
    add("norm", "backward", b)
    for half in HALVES:
        ks, exact = half_kernels(c, B, T, e, device_type, half, L)
        exact_core = exact_core and exact
        for key, kernels in ks.items():
            add(*key, kernels)

    # residual adds: x (fp32) + branch output; under autocast the branch's gradient is cast back
    add("other", "forward", [Kernel("add", 2 * L, 4 * N * C + e * N * C, 4 * N * C)])
    if e < 4:
        add("other", "backward", [Kernel("_to_copy", 2 * L, 4 * N * C, e * N * C)])
    if cpu:  # GPT.check_ids reads the ids' range on CPU tensors
        add("other", "forward", [Kernel("min", 2, 8 * N, 8), Kernel("max", 2, 8 * N, 8)])
    add("other", "backward", [Kernel("ones_like", 1, 4, 4)])  # backward's seed, d loss / d loss

    # activation checkpointing: a recomputed half's forward runs again in backward, up to the last
    # tensor it saves (torch.utils.checkpoint's early stop). Each half ends in a Linear, which saves
    # its input *before* its matmul runs: that matmul never runs again (nor a block's final add)
    parts = [c.checkpointed(i) for i in range(L)] if recompute else []
    whole = parts.count("block")
    again = {"attention": parts.count("attention") + whole, "mlp": parts.count("mlp") + whole}
    for half, n in again.items():
        last = "attention.out" if half == "attention" else "mlp.down"
        for (scope, phase), kernels in (half_kernels(c, B, T, e, device_type, half, n)[0].items() if n else ()):
            if phase != "forward":
                continue
            if scope == last:  # all of it again only where the other half comes after (a whole block)
                kernels = recomputed_until_last_save(kernels, n - (whole if half == "attention" else 0))
            add(scope, "backward", kernels)
    if whole:  # a whole block's middle residual add, charged where it runs again: inside the
        # backward node whose saved tensor starts the recompute, down_proj's (as the profiler does)
        add("mlp.down", "backward", [Kernel("add", whole, 4 * N * C + e * N * C, 4 * N * C)])

    # head and loss: fp32 log-softmax over the vocabulary, then pick each target's log-probability
    if c.loss_impl != "full":  # the chunked loss (tutorial_lib.loss): no (N, V) tensor at all
        masked = V > c.vocab_size and c.mask_vocab_padding  # the chunks' logits from the real rows only
        for key, ks in chunked_loss_kernels(N, C, c.vocab_size if masked else V, c.loss_chunk, e,
                                            c.loss_impl == "chunked_liger").items():
            add(*key, ks)
        if masked:  # the real rows' gradient written into a zeroed gradient of the padded table
            add("loss", "backward", [Kernel("slice_backward", 1, 4 * c.vocab_size * C, 4 * V * C)])
    else:
        f, b = linear_kernels(N, C, V, e, 4, False, 1)
        add("lm_head", "forward", f)
        add("lm_head", "backward", b)
        logits = 4 * N * V
        # masked padding: the padded logits set to -inf (a bool mask of V read), and their gradient to 0
        mask = [Kernel("masked_fill", 1, e * N * V + V, e * N * V)] if V > c.vocab_size and c.mask_vocab_padding else []
        loss_f = mask + ([Kernel("_to_copy", 1, e * N * V, logits)] if e < 4 else []) + [
            Kernel("_log_softmax", 1, logits, logits), Kernel("nll_loss_forward", 1, 8 * N + 4 * N, 8, alloc=(4, 4))]
        loss_b = [Kernel("nll_loss_backward", 1, 8 * N + 8, logits),
                  Kernel("_log_softmax_backward_data", 1, 2 * logits, logits)]
        if e < 4:
            loss_b.append(Kernel("_to_copy", 1, logits, e * N * V))
        loss_b += mask
        add("loss", "forward", loss_f)
        add("loss", "backward", loss_b)

    if grad_accum > 1:  # every micro-batch's forward and backward, then what accumulating adds
        rows = {key: [dataclasses.replace(k, count=k.count * grad_accum) for k in ks] for key, ks in rows.items()}
        for key, ks in accumulation_kernels(c, grad_accum).items():
            add(*key, ks)

    if optimizer:
        sizes = param_sizes(c)
        ks = adamw_kernels(sizes, device_type, adamw)
        if grad_clip:  # torch.nn.utils.clip_grad_norm_: a norm per tensor, then scale every grad
            P = 4 * sum(sizes)
            ks = [Kernel("_foreach_norm", 1, P, 4 * len(sizes)), Kernel("stack+norm+clamp", 4, 4 * len(sizes), 4),
                  Kernel("_foreach_mul_", 1, P, P)] + ks
        add("optimizer", "optimizer", ks)

    # the elementwise estimate of the recomputed forward: each scope's share of its layers (norms: of 2L + 1)
    share = {s: sum(again.values()) / (2 * L + 1) if s == "norm" else
             again["attention" if s.startswith("attention") else "mlp"] / L
             for s in other if s.startswith(("attention", "mlp")) or s == "norm"}
    out = []
    for (scope, phase), ks in rows.items():
        times = {"forward": 1, "backward": 2 + share.get(scope, 0)}.get(phase, 0) * grad_accum
        ef = other.get(scope, 0) * times
        out.append(Component(scope, phase, tuple(ks), int(ef), exact_core or scope != "attention.core"))
    return out


# ---- what forward keeps for backward -----------------------------------------------------------
def kept_halves(config: GPTConfig) -> Tuple[int, int]:
    """(blocks whose attention half keeps its activations, blocks whose MLP half does): the
    others recompute that half in backward (``GPTConfig.checkpointed``)."""
    parts = [config.checkpointed(i) for i in range(config.n_layer)]
    return (sum(p not in ("attention", "block") for p in parts), sum(p not in ("mlp", "block") for p in parts))


def activation_bytes(config: GPTConfig, batch_size: int, seq_len: int, dtype="float32") -> Dict[str, int]:
    """Bytes autograd saves for backward in one forward pass (with loss), by the component that
    saves them -- the bytes backward's kernels read again. Each storage counts once, for the first
    component that saves it; parameters are not counted; a norm's input is the "residual" stream
    and eager attention's (T, T) tensors are "attention.scores" (``measure.memory``'s categories,
    which the tests compare this with, exactly).

    Activation checkpointing (``GPTConfig.checkpoint``): a recomputed half keeps nothing of its
    own, only its input -- the residual stream, the same tensor its norm would have kept -- and a
    recomputed block keeps its input once instead of its two norms' inputs."""
    c, e = config, settings.dtype_bytes(dtype)
    B, T, L, C = batch_size, seq_len, config.n_layer, config.n_embd
    H, Hkv, D, Hid, V = c.n_head, c.kv_heads, c.head_dim, c.mlp_hidden, c.padded_vocab_size
    N, lp, rope = B * T, e < 4, c.pos == "rope"
    q, kv = e * B * H * T * D, e * B * Hkv * T * D
    La, Lm = kept_halves(c)  # blocks whose attention / MLP half keeps its activations
    whole = sum(c.checkpointed(i) == "block" for i in range(L))  # blocks recomputed whole
    out: Dict[str, int] = {}

    def add(name: str, nbytes: int):
        out[name] = out.get(name, 0) + nbytes

    add("embedding", 8 * N + (8 * T if c.pos == "learned" else 0))  # the token (and position) ids
    # each norm keeps its input, a checkpointed half its input instead: the same residual stream
    # tensor (once for a whole block), and the final norm's
    add("residual", (2 * L - whole + 1) * 4 * N * C)
    add("norm", (La + Lm + 1) * (8 * N if c.norm == "layernorm" else 4 * N * C + 4 * N))  # mean+rstd / rsqrt+x*rsqrt

    def linear(name: str, fan_in: int, fan_out: int, n: int, x_bytes: int, fp32_input: bool, layers: int):
        """n Linear layers per block (``layers`` blocks) keep their input (``x_bytes``: a shared
        input once) for the weight's gradient; under autocast also their cast weights, and a cast
        per layer of an fp32 input."""
        if lp:
            add(name, layers * e * fan_in * fan_out)
        add(name, layers * (n * e * N * fan_in if (lp and fp32_input) else x_bytes))

    # the attention half, in the La blocks that keep it
    linear("attention.qkv", C, H * D + 2 * Hkv * D, 3, 4 * N * C, True, La)  # q, k, v read the norm's output
    if rope and lp:  # the cos/sin tables cast to the compute dtype (fp32: buffers, not counted)
        add("attention.rope", La * 4 * e * T * (D // 2))
    backend = attention.get(c.attn_backend)
    if backend.materializes_scores:
        rep = Hkv != H
        shared = rep and Hkv == 1 and B == 1
        add("attention.core", La * (q + 2 * (kv if shared else q)))  # q, k (or its copy), v (or its copy)
        add("attention.scores", La * (e * B * H * T * T + T * T))  # the probabilities and the bool mask
    elif backend.fused:
        add("attention.core", La * (q + 2 * kv + q + 4 * B * H * T))  # q, k, v, out, log-sum-exp
        if c.window is not None and La:
            add("attention.scores", e * T * T)  # the additive mask: one cached tensor every layer shares
    else:
        add("attention.core", La * (q + 2 * kv + q + 4 * B * H * T))  # estimate: inputs, output, lse
    # the output projection keeps its input: the contiguous copy of the attention output, or the
    # output itself (already kept by SDPA) when no copy was needed
    copied = contiguous_copy_needed(H, T) and (not backend.fused or rope)
    linear("attention.out", H * D, C, 1, e * N * C if copied else 0, False, La)
    # the MLP half, in the Lm blocks that keep it
    n_up = 2 if c.mlp == "swiglu" else 1
    linear("mlp.up", C, n_up * Hid, n_up, 4 * N * C, True, Lm)  # gate and up read the norm's output
    h = e * N * Hid
    add("mlp.act", Lm * (3 * h if c.mlp == "swiglu" else h))  # gelu: its input; swiglu: g, silu(g), u
    linear("mlp.down", Hid, C, 1, h, False, Lm)
    if c.loss_impl == "chunked":  # the hidden states (cast under autocast), a log-sum-exp per
        add("loss", (e if lp else 4) * N * C + 4 * N + 8 + 8 * N)  # token, the count, the targets
    elif c.loss_impl == "chunked_liger":  # the gradients made in forward: hidden's and the weight's
        add("loss", 4 * N * C + 4 * V * C)
    else:
        linear("lm_head", C, V, 1, 4 * N * C, True, layers=1)
        add("loss", 4 * N * V + 8 * N + 4)  # the log-probabilities, the targets, the total weight
    return {k: v for k, v in out.items() if v}


ADAMW_STATE_BYTES_PER_PARAM = 8  # exp_avg + exp_avg_sq, fp32
ADAMW_STEP_BYTES = 4  # and a step count per parameter tensor (a float32 scalar tensor)
MEMORY_GROUPS = {  # activation_bytes' components -> the groups of a memory breakdown
    "embedding": "embedding", "attention": "attention", "attention.scores": "attention scores/probs",
    "mlp": "mlp", "norm": "norms", "residual": "residual stream", "lm_head": "head + loss",
    "loss": "head + loss"}


def training_memory(config: GPTConfig, batch_size: int, seq_len: int, dtype="float32") -> dict:
    """A training step's memory from the model: parameters, gradients (fp32), AdamW's state (two fp32
    moments per parameter, a step count per tensor), and the activations autograd keeps for backward
    (``activation_bytes``: exact), by group -- each equal to what ``measure.memory`` counts."""
    params, tensors = num_params(config), len(param_sizes(config))
    acts: Dict[str, int] = {}
    for name, n in activation_bytes(config, batch_size, seq_len, dtype).items():
        g = MEMORY_GROUPS.get(name, MEMORY_GROUPS.get(name.split(".")[0], "other"))
        acts[g] = acts.get(g, 0) + n
    kinds = {"parameters": 4 * params, "gradients": 4 * params,
             "optimizer state": ADAMW_STATE_BYTES_PER_PARAM * params + ADAMW_STEP_BYTES * tensors,
             "activations": sum(acts.values())}
    return {"by_kind": kinds, "activations_by_group": acts, "total": sum(kinds.values()), "params": params}


# ---- FLOPs: the kernels' matmul FLOPs, per component, in three conventions ------------------------
ELEMENTWISE_OPS = {  # operations per element: estimates (no FLOP counter counts them)
    "rope": 3,  # x1*cos - x2*sin (and the mirror): 2 mul + 1 add per output element
    "scale_mask": 1,  # scores * 1/sqrt(d) (the mask is a select, not arithmetic)
    "softmax": 5,  # max, subtract, exp, sum, divide
    "gelu": 8,  # erf-based GELU, a handful of operations
    "swiglu": 5,  # silu (~4) and the gate multiply
    "rmsnorm": 4,  # square, mean, scale by rsqrt, scale by weight
    "layernorm": 7,  # mean, subtract, square, mean, scale by rsqrt, weight, bias
    "residual": 1,  # x + f(x)
    "loss": 5,  # log-softmax over the vocabulary + pick the target
}


def attention_pairs(config: GPTConfig, T: int, device_type: str = "cpu") -> Dict[str, int]:
    """(query, key) pairs of one head's attention core per convention: "counted" (what
    FlopCounterMode charges), "computed" (what the kernel computes), "visible" (what a query may
    see) -- from the backend's entry in the attention registry."""
    b, W = attention.get(config.attn_backend), config.window
    return {"counted": b.counted_pairs(T, W, config.tile_size, device_type),
            "computed": b.computed_pairs(T, W, config.tile_size, device_type),
            "visible": visible_pairs(T, W)}


def elementwise_flops(config: GPTConfig, batch_size: int, seq_len: int, device_type: str = "cpu"
                      ) -> Dict[str, int]:
    """A rough estimate of the forward's elementwise operations per component (``ELEMENTWISE_OPS``
    per element): what FLOP counters leave out. Backward does about twice as many."""
    c = config
    B, T, L, C = batch_size, seq_len, c.n_layer, c.n_embd
    H, Hkv, D, Hid, V = c.n_head, c.kv_heads, c.head_dim, c.mlp_hidden, c.padded_vocab_size
    N = B * T
    scores = (B * H * T * T * L if attention.get(c.attn_backend).materializes_scores
              else B * H * L * attention_pairs(c, T, device_type)["counted"])
    out = {"embedding": N * C if c.pos == "learned" else 0,
           "attention.core": (ELEMENTWISE_OPS["scale_mask"] + ELEMENTWISE_OPS["softmax"]) * scores,
           "mlp.act": L * ELEMENTWISE_OPS[c.mlp] * N * Hid,
           "norm": (2 * L + 1) * ELEMENTWISE_OPS[c.norm] * N * C,
           "other": ELEMENTWISE_OPS["residual"] * 2 * L * N * C,
           "loss": ELEMENTWISE_OPS["loss"] * N * V}
    if c.pos == "rope":
        out["attention.rope"] = L * ELEMENTWISE_OPS["rope"] * N * (H + Hkv) * D
    return out


def flops_by_scope(config: GPTConfig, batch_size: int, seq_len: int, phase: Optional[str] = "forward",
                   convention: str = "computed", device_type: str = "cpu") -> Dict[str, int]:
    """Matmul FLOPs per component (profiler scope) of one training step, summed over ``phase``
    ("forward", "backward", or None for both), in ``convention`` (see the module's docstring):
    the kernels' FLOPs, with the attention core's scaled from the pairs it computes to the pairs
    the convention charges. Components without matmuls are left out."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r} is not one of {list(CONVENTIONS)}")
    if phase not in ("forward", "backward", None):
        raise ValueError(f"phase={phase!r} is not one of ['forward', 'backward', None]")
    pairs = attention_pairs(config, seq_len, device_type)
    out: Dict[str, int] = {}
    recompute = convention != "visible"  # a checkpointed half's forward again is work done, not useful work
    for r in step_kernels(config, batch_size, seq_len, "float32", device_type, optimizer=False, recompute=recompute):
        if (phase is not None and r.phase != phase) or not r.flops:
            continue
        fl = r.flops
        if r.scope == "attention.core" and convention != "computed":
            fl = fl // pairs["computed"] * pairs[convention] if pairs["computed"] else 0
        if fl:
            out[r.scope] = out.get(r.scope, 0) + fl
    return out


def step_flops(config: GPTConfig, batch_size: int, seq_len: int, mode: str = "fwdbwd",
               convention: str = "visible", device_type: str = "cpu") -> int:
    """Matmul FLOPs of one step: ``mode`` "fwd", "bwd" or "fwdbwd"; the default convention counts
    the useful work (visible pairs), what an MFU divides."""
    phase = {"fwd": "forward", "bwd": "backward", "fwdbwd": None}.get(mode, "?")
    if phase == "?":
        raise ValueError(f"mode={mode!r} is not one of ['fwd', 'bwd', 'fwdbwd']")
    return sum(flops_by_scope(config, batch_size, seq_len, phase, convention, device_type).values())


def rule_of_thumb_flops(config: GPTConfig, batch_size: int, seq_len: int) -> Dict[str, int]:
    """Kaplan et al.'s estimate: 2N FLOPs per token forward, 6N forward+backward (N = the matmul
    weights of the blocks + the head), ignoring attention's T^2 term -- to compare with the model."""
    p = params_by_scope(config)
    n = sum(v for k, v in p.items() if k.startswith(("attention", "mlp"))) + config.padded_vocab_size * config.n_embd
    tokens = batch_size * seq_len
    return {"fwd": 2 * n * tokens, "fwdbwd": 6 * n * tokens, "N": n}


def shares(amounts: Dict[str, float]) -> Dict[str, float]:
    """Each entry's fraction of the total."""
    total = sum(amounts.values())
    return {k: (v / total if total else 0.0) for k, v in amounts.items()}
