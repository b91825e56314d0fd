"""Analytic cost model of a GPT step, per component, cross-checked by FlopCounterMode.

For a config, a batch B and a length T, ``cost_table`` returns one ``ComponentCost`` per component
of the seed's breakdown (embedding; attention: qkv, rope, scores, softmax, av, out; mlp: up, act,
down; norm; residual; lm_head; loss), summed over all layers, with

- ``fwd_flops`` / ``bwd_flops``: matrix-multiply FLOPs (2 per multiply-add) under the convention of
  ``torch.utils.flop_counter.FlopCounterMode``: only matmuls and attention kernels are counted, and an
  attention kernel is charged the full T x T score matrix even when it is causal or windowed (a
  mask does not make the kernel skip work). The tests assert an *exact* match with the counter.
- ``fwd_flops_causal`` / ``bwd_flops_causal``: the same with attention charged only for the
  (query, key) pairs a query may see -- T(T+1)/2 for causal, about T*W for a window -- the useful
  work, and what a kernel that skips masked tiles approaches.
- ``fwd_other_flops``: an *estimate* of elementwise work (softmax, GELU, norms, RoPE, residual adds,
  loss) that FlopCounterMode does not count; rough per-element operation counts, stated below.
- ``params`` and ``act_bytes`` (bytes of the activations the component writes in forward; for
  the chunked loss, what it keeps: its logits live one chunk at a time).

Backward conventions: a Linear costs 2x its forward (grad input + grad weight). Eager attention's
backward is 4 matmuls over T x T (its probabilities were saved); a flash-style kernel (``sdpa``,
``tiled``, ``flex``) recomputes the scores first, 5 matmuls -- the FLOPs it pays to save memory.
(PyTorch 2.13's counter charges SDPA's backward those 5; older versions charge 4 -- the model
asks the installed counter, see ``attention.reference.sdpa_backward_matmuls``.) The chunked loss
(``GPTConfig.loss_impl``, ``tutorial_lib.loss``) recomputes the head's matmul in backward (3 instead
of 2), or with ``"chunked_liger"`` runs all three in forward and none in backward. Each backend's
entry in the attention registry says how many pairs it computes and is charged for.

Cross-checked exactly in tests/test_flops.py for eager, sdpa, tiled and local attention, GQA/MQA,
MLP ratios, SwiGLU, windows, learned/RoPE positions, LayerNorm/RMSNorm, biases, vocab padding
and untied heads. ``flex`` is charged full T x T (the counter's own flex formula) but is not
cross-checked: FlopCounterMode cannot run flex_attention eagerly on CPU.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from tutorial_lib import attention
from tutorial_lib.attention.reference import visible_pairs
from tutorial_lib.data import random_batch
from tutorial_lib.model import GPT, GPTConfig
from tutorial_lib.settings import dtype_name

# Elementwise operations per element (estimates; FlopCounterMode counts none of them).
ELEMENTWISE_OPS = {
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

GROUPS = ("embedding", "attention", "mlp", "norm", "residual", "lm_head", "loss")


@dataclass(frozen=True)
class ComponentCost:
    """Cost of one component for one (config, B, T), summed over all layers."""
    name: str  # e.g. "attention.scores"
    group: str  # one of GROUPS
    scope: str  # the profiler scope (tutorial_lib.scopes) whose time this work shows up in
    fwd_flops: int  # matmul FLOPs, FlopCounterMode convention (full T x T for attention)
    bwd_flops: int
    fwd_flops_causal: int  # attention charged only for visible (query, key) pairs
    bwd_flops_causal: int
    fwd_other_flops: int  # elementwise estimate (not counted by FlopCounterMode)
    params: int
    act_bytes: int  # bytes of activations written in forward (at the given element size)
    fwd_flops_work: int = 0  # matmul FLOPs the kernel really computes (a causal kernel skips the
    bwd_flops_work: int = 0  # masked half, a band mask skips nothing): what time depends on

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---- attention pair counts -------------------------------------------------------------------
def attention_pairs(config: GPTConfig, T: int, device_type: str = "cpu") -> Dict[str, int]:
    """{'counter': pairs the kernel is charged for (FlopCounterMode), 'computed': pairs it really
    computes, 'causal': pairs that are visible} -- from the backend's entry in the registry."""
    b, W = attention.get(config.attn_backend), config.window
    return {"counter": b.counted_pairs(T, W, config.tile_size, device_type),
            "computed": b.computed_pairs(T, W, config.tile_size, device_type),
            "causal": visible_pairs(T, W)}


# ---- the model -------------------------------------------------------------------------------
def _lin(n_tokens: int, fan_in: int, fan_out: int) -> int:
    return 2 * n_tokens * fan_in * fan_out


def cost_table(config: GPTConfig, batch_size: int, seq_len: int, bytes_per_element: int = 4,
               device_type: str = "cpu") -> List[ComponentCost]:
    """Per-component cost of a GPT of ``config`` on a (batch_size, seq_len) batch, all layers summed.

    ``bytes_per_element`` sizes ``act_bytes`` (4 for fp32, 2 for bf16 activations);
    ``device_type`` matters only for the ``local`` backend, whose schedule differs on CPU.
    """
    for name, v in (("batch_size", batch_size), ("seq_len", seq_len),
                    ("bytes_per_element", bytes_per_element)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    c = config
    B, T, L, C = batch_size, seq_len, c.n_layer, c.n_embd
    H, Hkv, D, Hid, V = c.n_head, c.kv_heads, c.head_dim, c.mlp_hidden, c.padded_vocab_size
    N = B * T  # tokens
    e = bytes_per_element
    bias = 1 if c.bias else 0
    pairs = attention_pairs(c, T, device_type)
    backend = attention.get(c.attn_backend)
    nb = backend.bwd_matmuls()
    rows: List[ComponentCost] = []

    def add(name, group, scope, fwd=0, bwd=0, fwd_c=None, bwd_c=None, other=0, params=0, act=0,
            fwd_w=None, bwd_w=None):
        rows.append(ComponentCost(name, group, scope, int(fwd), int(bwd),
                                  int(fwd if fwd_c is None else fwd_c),
                                  int(bwd if bwd_c is None else bwd_c),
                                  int(other), int(params), int(act * e),
                                  int(fwd if fwd_w is None else fwd_w),
                                  int(bwd if bwd_w is None else bwd_w)))

    # embedding: a gather (no FLOPs); learned positions add one table row per token
    emb_params = V * C + (c.block_size * C if c.pos == "learned" else 0)
    add("embedding", "embedding", "embedding", other=N * C if c.pos == "learned" else 0,
        params=emb_params, act=N * C)

    # attention projections
    kv = Hkv * D
    add("attention.qkv", "attention", "attention.qkv",
        fwd=L * (_lin(N, C, H * D) + 2 * _lin(N, C, kv)),
        bwd=2 * L * (_lin(N, C, H * D) + 2 * _lin(N, C, kv)),
        params=L * (C * (H * D + 2 * kv) + bias * (H * D + 2 * kv)), act=L * N * (H * D + 2 * kv))
    if c.pos == "rope":
        add("attention.rope", "attention", "attention.rope",
            other=L * ELEMENTWISE_OPS["rope"] * N * (H + Hkv) * D, act=L * N * (H + Hkv) * D)

    # attention core: S = Q K^T (scores), P = softmax(S), O = P V (av); per visible/charged pair
    # each of the two products is 2*D FLOPs per (query, key) pair per head.
    bwd_scores = nb - 2  # recompute (if any) + dQ + dK
    per_pair = 2 * B * H * D * L
    materialised = backend.materializes_scores
    tt = B * H * T * T * L  # elements of the score matrices if materialised
    add("attention.scores", "attention", "attention.core",
        fwd=per_pair * pairs["counter"], bwd=bwd_scores * per_pair * pairs["counter"],
        fwd_c=per_pair * pairs["causal"], bwd_c=bwd_scores * per_pair * pairs["causal"],
        fwd_w=per_pair * pairs["computed"], bwd_w=bwd_scores * per_pair * pairs["computed"],
        other=ELEMENTWISE_OPS["scale_mask"] * (tt if materialised else B * H * L * pairs["counter"]),
        act=2 * tt if materialised else 0)  # scaled scores + masked scores
    add("attention.softmax", "attention", "attention.core",
        other=ELEMENTWISE_OPS["softmax"] * (tt if materialised else B * H * L * pairs["counter"]),
        act=tt if materialised else L * B * H * T)  # probabilities, or one logsumexp per query
    add("attention.av", "attention", "attention.core",
        fwd=per_pair * pairs["counter"], bwd=2 * per_pair * pairs["counter"],
        fwd_c=per_pair * pairs["causal"], bwd_c=2 * per_pair * pairs["causal"],
        fwd_w=per_pair * pairs["computed"], bwd_w=2 * per_pair * pairs["computed"],
        act=L * N * H * D)
    add("attention.out", "attention", "attention.out", fwd=L * _lin(N, H * D, C),
        bwd=2 * L * _lin(N, H * D, C), params=L * (H * D * C + bias * C), act=L * N * C)

    # MLP
    n_in = 2 if c.mlp == "swiglu" else 1  # SwiGLU: gate and up projections
    add("mlp.up", "mlp", "mlp.up", fwd=L * n_in * _lin(N, C, Hid), bwd=2 * L * n_in * _lin(N, C, Hid),
        params=L * n_in * (C * Hid + bias * Hid), act=L * n_in * N * Hid)
    add("mlp.act", "mlp", "mlp.act", other=L * ELEMENTWISE_OPS[c.mlp] * N * Hid,
        act=L * N * Hid * (2 if c.mlp == "swiglu" else 1))  # SwiGLU: silu(g), then silu(g)*u
    add("mlp.down", "mlp", "mlp.down", fwd=L * _lin(N, Hid, C), bwd=2 * L * _lin(N, Hid, C),
        params=L * (Hid * C + bias * C), act=L * N * C)

    # norms: two per block and the final one
    n_norms = 2 * L + 1
    norm_params = C * (2 if (c.norm == "layernorm" and c.bias) else 1)
    add("norm", "norm", "norm", other=n_norms * ELEMENTWISE_OPS[c.norm] * N * C,
        params=n_norms * norm_params, act=n_norms * N * C)
    add("residual", "residual", "", other=2 * L * N * C, act=2 * L * N * C)

    # head and loss (the loss runs on an fp32 copy of the logits)
    head, head_params = _lin(N, C, V), 0 if c.tie_embeddings else V * C
    if c.loss_impl == "full":
        add("lm_head", "lm_head", "lm_head", fwd=head, bwd=2 * head, params=head_params, act=N * V)
        add("loss", "loss", "loss", other=ELEMENTWISE_OPS["loss"] * N * V,
            act=2 * N * V * 4 // e)  # fp32 logits copy + log-probabilities, always 4 bytes
    elif c.loss_impl == "chunked":  # backward recomputes each chunk's logits: one more matmul
        add("lm_head", "lm_head", "lm_head", fwd=head, bwd=3 * head, params=head_params, act=0)
        add("loss", "loss", "loss", other=ELEMENTWISE_OPS["loss"] * N * V,
            act=N * 4 // e)  # keeps one fp32 log-sum-exp per token; the logits never outlive a chunk
    else:  # "chunked_liger": all three matmuls in forward, backward only scales the gradients
        add("lm_head", "lm_head", "lm_head", fwd=3 * head, bwd=0, params=head_params, act=0)
        add("loss", "loss", "loss", other=ELEMENTWISE_OPS["loss"] * N * V,
            act=(V * C + N * C) * 4 // e)  # keeps fp32 gradients of the head's weight and input
    return rows


def totals(rows: List[ComponentCost]) -> Dict[str, int]:
    """Column sums of a cost table."""
    keys = ("fwd_flops", "bwd_flops", "fwd_flops_causal", "bwd_flops_causal", "fwd_other_flops",
            "params", "act_bytes", "fwd_flops_work", "bwd_flops_work")
    return {k: sum(getattr(r, k) for r in rows) for k in keys}


def model_flops(config: GPTConfig, batch_size: int, seq_len: int, mode: str = "fwd",
                causal: bool = False, include_elementwise: bool = False,
                device_type: str = "cpu") -> int:
    """Matmul FLOPs of one step: mode "fwd", "bwd" or "fwdbwd".

    causal=False: FlopCounterMode's convention (full T x T); True: only visible pairs.
    include_elementwise adds the elementwise estimate (forward x1, backward x2).
    """
    if mode not in ("fwd", "bwd", "fwdbwd"):
        raise ValueError(f"mode={mode!r} is not one of ['fwd', 'bwd', 'fwdbwd']")
    t = totals(cost_table(config, batch_size, seq_len, device_type=device_type))
    sfx = "_causal" if causal else ""
    fwd = t["fwd_flops" + sfx] + (t["fwd_other_flops"] if include_elementwise else 0)
    bwd = t["bwd_flops" + sfx] + (2 * t["fwd_other_flops"] if include_elementwise else 0)
    return {"fwd": fwd, "bwd": bwd, "fwdbwd": fwd + bwd}[mode]


def group_shares(rows: List[ComponentCost], key: str = "fwd_flops", by: str = "name") -> Dict[str, float]:
    """Fraction of ``key`` per component (by="name"), per top-level group or per profiler scope."""
    if by not in ("name", "group", "scope"):
        raise ValueError(f"by={by!r} is not one of ['name', 'group', 'scope']")
    total = sum(getattr(r, key) for r in rows)
    out: Dict[str, float] = {}
    for r in rows:
        k = getattr(r, by)
        out[k] = out.get(k, 0.0) + (getattr(r, key) / total if total else 0.0)
    return out


def num_params(config: GPTConfig) -> int:
    """Parameters of a GPT of ``config`` from the formulas (tied head counted once)."""
    return totals(cost_table(config, 1, 1))["params"]


ADAMW_STATE_BYTES_PER_PARAM = 8  # exp_avg + exp_avg_sq, fp32
MEMORY_GROUPS = {  # component -> group of the activation breakdown (measure.memory's groups)
    "embedding": "embedding", "attention.qkv": "attention", "attention.rope": "attention",
    "attention.av": "attention", "attention.out": "attention", "mlp.up": "mlp", "mlp.act": "mlp",
    "mlp.down": "mlp", "norm": "norms", "residual": "residual stream", "lm_head": "head + loss",
    "loss": "head + loss"}


def training_memory(config: GPTConfig, batch_size: int, seq_len: int, bytes_per_element: int = 4) -> dict:
    """Training-step memory from the cost model: parameters, gradients (fp32), AdamW's two fp32
    moments, and the activations forward writes at ``bytes_per_element``, by group."""
    rows = cost_table(config, batch_size, seq_len, bytes_per_element=bytes_per_element)
    params = sum(r.params for r in rows)
    scores = "attention scores/probs" if attention.get(config.attn_backend).materializes_scores else "attention"
    acts: Dict[str, int] = {}
    for r in rows:
        g = scores if r.name in ("attention.scores", "attention.softmax") else MEMORY_GROUPS[r.name]
        acts[g] = acts.get(g, 0) + r.act_bytes
    kinds = {"parameters": 4 * params, "gradients": 4 * params,
             "optimizer state": ADAMW_STATE_BYTES_PER_PARAM * params, "activations": sum(acts.values())}
    return {"by_kind": kinds, "activations_by_group": acts, "total": sum(kinds.values()), "params": params}


def rule_of_thumb_flops(config: GPTConfig, batch_size: int, seq_len: int) -> Dict[str, int]:
    """Kaplan et al.'s estimate: 2N FLOPs per token forward, 6N forward+backward (N = non-embedding
    matmul weights + the head), ignoring attention's T^2 term -- for comparison with the table."""
    t = cost_table(config, 1, 1)
    n = sum(r.params for r in t if r.group in ("attention", "mlp")) + config.padded_vocab_size * config.n_embd
    tokens = batch_size * seq_len
    return {"fwd": 2 * n * tokens, "fwdbwd": 6 * n * tokens, "N": n}


# ---- peak throughput and MFU -----------------------------------------------------------------
@dataclass(frozen=True)
class GPUSpec:
    """A GPU's datasheet ceilings: dense (no sparsity) tensor-core TFLOP/s per dtype and the
    memory bandwidth in GB/s (10^9 bytes/s), with the page they come from. These are "spec"
    numbers: what the vendor states, not what a kernel reaches (``measure.roofline`` measures that)."""
    name: str  # matched as a substring of torch.cuda.get_device_name()
    tflops: Dict[str, float]  # bfloat16 / float16 / tf32 / float32
    bandwidth_gbs: Optional[float]
    source: str


# Order matters: more specific names first. The one table of vendor specs in the library.
GPU_SPECS = (
    GPUSpec("H100 PCIe", {"bfloat16": 756.0, "float16": 756.0, "tf32": 378.0, "float32": 51.0}, 2000.0,
            "https://www.nvidia.com/en-us/data-center/h100/"),
    GPUSpec("H100", {"bfloat16": 989.0, "float16": 989.0, "tf32": 494.0, "float32": 67.0}, 3350.0,
            "https://www.nvidia.com/en-us/data-center/h100/"),
    GPUSpec("H200", {"bfloat16": 989.0, "float16": 989.0, "tf32": 494.0, "float32": 67.0}, 4800.0,
            "https://www.nvidia.com/en-us/data-center/h200/"),
    GPUSpec("H800", {"bfloat16": 989.0, "float16": 989.0, "tf32": 494.0, "float32": 67.0}, None,
            "H100's compute (no bandwidth from a vendor page on record)"),
    GPUSpec("A100-SXM4-40GB", {"bfloat16": 312.0, "float16": 312.0, "tf32": 156.0, "float32": 19.5}, 1555.0,
            "https://www.nvidia.com/en-us/data-center/a100/"),
    GPUSpec("A100-PCIE-40GB", {"bfloat16": 312.0, "float16": 312.0, "tf32": 156.0, "float32": 19.5}, 1555.0,
            "https://www.nvidia.com/en-us/data-center/a100/"),
    GPUSpec("A100", {"bfloat16": 312.0, "float16": 312.0, "tf32": 156.0, "float32": 19.5}, 2039.0,
            "https://www.nvidia.com/en-us/data-center/a100/ (80GB SXM)"),
    GPUSpec("A800", {"bfloat16": 312.0, "float16": 312.0, "tf32": 156.0, "float32": 19.5}, None,
            "A100's compute (no bandwidth from a vendor page on record)"),
    GPUSpec("L40S", {"bfloat16": 362.0, "float16": 362.0, "tf32": 183.0, "float32": 91.6}, 864.0,
            "https://www.nvidia.com/en-us/data-center/l40s/"),
    GPUSpec("A10", {"bfloat16": 125.0, "float16": 125.0, "tf32": 62.5, "float32": 31.2}, 600.0,
            "https://www.nvidia.com/en-us/data-center/products/a10-gpu/"),
    GPUSpec("L4", {"bfloat16": 121.0, "float16": 121.0, "tf32": 60.0, "float32": 30.3}, 300.0,
            "https://www.nvidia.com/en-us/data-center/l4/"),
    GPUSpec("V100", {"float16": 125.0, "float32": 15.7}, 900.0, "https://www.nvidia.com/en-us/data-center/v100/"),
    GPUSpec("T4", {"float16": 65.0, "float32": 8.1}, 320.0, "https://www.nvidia.com/en-us/data-center/tesla-t4/"),
)
PEAK_TFLOPS = [(s.name, s.tflops) for s in GPU_SPECS]  # (name, {dtype: TFLOP/s}), from GPU_SPECS


def gpu_spec(device_name: str) -> Optional[GPUSpec]:
    """The datasheet entry whose name appears in ``device_name`` (None for CPUs and unknown GPUs)."""
    for s in GPU_SPECS:
        if s.name.lower() in str(device_name).lower():
            return s
    return None


def spec_key(dtype) -> str:
    """The spec table's dtype key: fp32 matmuls count as tf32 when PyTorch allows TF32."""
    key = dtype_name(dtype) if not isinstance(dtype, str) or dtype != "tf32" else "tf32"
    if key == "float32" and torch.backends.cuda.matmul.allow_tf32:
        key = "tf32"
    return key


def peak_flops(device_name: str, dtype="bfloat16") -> Optional[float]:
    """Peak dense FLOP/s of a GPU (by name) for a dtype, or None when unknown (e.g. any CPU)."""
    spec = gpu_spec(device_name)
    v = None if spec is None else spec.tflops.get(spec_key(dtype))
    return None if v is None else v * 1e12


def mfu(achieved_flops_per_s: float, device_name: str, dtype="bfloat16") -> Optional[float]:
    """Model FLOPs utilisation: achieved / peak, or None when the peak is unknown."""
    peak = peak_flops(device_name, dtype)
    return None if peak is None else achieved_flops_per_s / peak


# ---- the counter -----------------------------------------------------------------------------
def _kv_as_query_heads(query_shape, kv_shape):
    """GQA: the K/V shape with the query's head count, i.e. what the kernel computes with (each
    query head reads its group's K/V head). torch >= 2.12's SDPA formulas accept fewer K/V heads;
    torch 2.11's (the device image's) refuse them, so every SDPA formula here counts through this."""
    if len(query_shape) == 4 and len(kv_shape) == 4 and kv_shape[1] != query_shape[1] \
            and kv_shape[1] > 0 and query_shape[1] % kv_shape[1] == 0:
        return (kv_shape[0], query_shape[1], kv_shape[2], kv_shape[3])
    return kv_shape


def _sdpa_fwd(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, _kv_as_query_heads(query_shape, key_shape),
                           _kv_as_query_heads(query_shape, value_shape))


def _sdpa_bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
              **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, _kv_as_query_heads(query_shape, key_shape),
                                    _kv_as_query_heads(query_shape, value_shape))


_cpu_flash_fwd, _cpu_flash_bwd = _sdpa_fwd, _sdpa_bwd


def cpu_flash_formulas() -> dict:
    """FlopCounterMode formulas for the CPU flash SDPA kernel, which the counter does not know:
    the same as its formulas for the CUDA flash kernel (full T x T); GQA counted on any torch."""
    aten = torch.ops.aten
    out = {}
    for op, fn in (("_scaled_dot_product_flash_attention_for_cpu", _cpu_flash_fwd),
                   ("_scaled_dot_product_flash_attention_for_cpu_backward", _cpu_flash_bwd)):
        if hasattr(aten, op):
            out[getattr(aten, op)] = fn
    return out


def sdpa_formulas() -> dict:
    """``cpu_flash_formulas`` plus the CUDA SDPA kernels' formulas made GQA-aware on torch 2.11
    (whose own formulas raise "query/key/value shapes are incompatible" for GQA shapes)."""
    aten = torch.ops.aten
    out = cpu_flash_formulas()
    for kernel in ("efficient", "flash", "cudnn"):
        for op, fn in ((f"_scaled_dot_product_{kernel}_attention", _sdpa_fwd),
                       (f"_scaled_dot_product_{kernel}_attention_backward", _sdpa_bwd)):
            if hasattr(aten, op):
                out[getattr(aten, op)] = fn
    return out


def flop_counter(display: bool = False, depth: Optional[int] = None):
    """A ``FlopCounterMode`` that also counts the CPU flash SDPA kernel, and GQA on any torch."""
    return FlopCounterMode(display=display, depth=depth, custom_mapping=sdpa_formulas())


_MODULE_COMPONENT = {"q_proj": "attention.qkv", "k_proj": "attention.qkv", "v_proj": "attention.qkv",
                     "o_proj": "attention.out", "gate_proj": "mlp.up", "up_proj": "mlp.up",
                     "down_proj": "mlp.down", "lm_head": "lm_head"}


def _by_component(counts: Dict[str, Dict]) -> Dict[str, int]:
    """Module-level counts (FlopCounterMode.get_flop_counts) -> {component: FLOPs}."""
    out: Dict[str, int] = {}
    for mod, ops in counts.items():
        leaf = mod.rsplit(".", 1)[-1]
        n = sum(ops.values())
        if leaf in _MODULE_COMPONENT:
            c = _MODULE_COMPONENT[leaf]
            out[c] = out.get(c, 0) + n
        elif leaf == "attn":  # attention module minus its projections = the core
            children = sum(sum(v.values()) for m, v in counts.items()
                           if m.startswith(mod + ".") and m.rsplit(".", 1)[-1] in _MODULE_COMPONENT)
            out["attention.core"] = out.get("attention.core", 0) + n - children
    return {k: v for k, v in out.items() if v}


def _by_kind(counts: Dict[str, Dict]) -> Dict[str, int]:
    """Global op counts -> {"linear": mm/addmm FLOPs, "attention": everything else (bmm, SDPA)}."""
    out = {"linear": 0, "attention": 0}
    for op, n in counts.get("Global", {}).items():
        out["linear" if str(op).split(".")[-1] in ("mm", "addmm") else "attention"] += n
    return out


def count_flops(config: GPTConfig, batch_size: int, seq_len: int, backward: bool = True,
                device="cpu", model=None, seed: int = 0) -> Dict[str, object]:
    """Count one step's FLOPs with FlopCounterMode: forward (with loss) and backward separately.

    Returns {"fwd", "bwd"} totals; "fwd_by_component" from the counter's module tracking
    (components of ``cost_table``, with scores + av merged into "attention.core"); and
    "fwd_by_kind" / "bwd_by_kind": {"linear": mm/addmm, "attention": bmm + attention kernels}.
    (The counter's module tracking is not reliable in backward -- identity modules such as
    dropout(p=0) confuse it -- so backward is split by op kind instead.)
    """
    if model is None:
        # FLOPs depend on shapes, not values: build on the meta device and allocate without the
        # (slow) weight initialisation
        with torch.device("meta"):
            model = GPT(config)
        model = model.to_empty(device=device)
        if config.tie_embeddings:
            model.lm_head.weight = model.wte.weight
        with torch.no_grad():
            for p in list(model.parameters()) + list(model.buffers()):
                p.zero_()
    model = model.to(device)
    idx, targets = random_batch(config.vocab_size, batch_size, seq_len, device, seed)
    with flop_counter() as fc:
        _, loss = model(idx, targets)
    counts = fc.get_flop_counts()
    res = {"fwd": fc.get_total_flops(), "fwd_by_component": _by_component(counts),
           "fwd_by_kind": _by_kind(counts)}
    if backward:
        with flop_counter() as bc:
            loss.backward()
        res["bwd"] = bc.get_total_flops()
        res["bwd_by_kind"] = _by_kind(bc.get_flop_counts())
    return res


def analytic_by_kind(rows: List[ComponentCost], key: str = "fwd_flops") -> Dict[str, int]:
    """A cost table's FLOPs split as ``count_flops``'s by-kind: attention core vs linear layers."""
    att = sum(getattr(r, key) for r in rows if r.name in ("attention.scores", "attention.av"))
    return {"linear": sum(getattr(r, key) for r in rows) - att, "attention": att}


def analytic_by_component(rows: List[ComponentCost], key: str = "fwd_flops") -> Dict[str, int]:
    """A cost table's matmul FLOPs per component, scores + av merged into "attention.core"
    (the granularity FlopCounterMode's module tracking can see)."""
    out: Dict[str, int] = {}
    for r in rows:
        name = "attention.core" if r.name in ("attention.scores", "attention.av") else r.name
        v = getattr(r, key)
        if v:
            out[name] = out.get(name, 0) + v
    return out
