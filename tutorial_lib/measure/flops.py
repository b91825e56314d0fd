"""FLOPs measured by PyTorch's own counter, the GPUs' datasheets, and MFU.

- ``count_flops``: one step's FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` on the
  real model (forward with loss, backward), per component and per kind of operator: the truth the
  analytic model (``measure.cost``, convention "counted") is tested against, exactly.
  ``flop_counter`` registers the CPU flash-attention kernel, which the counter does not know.
- ``GPU_SPECS`` / ``gpu_spec`` / ``peak_flops``: vendors' dense tensor-core peaks and bandwidths.
- ``mfu``: model FLOPs utilisation, achieved FLOP/s over a peak.

The counter charges an attention kernel the full T x T score matrix even when it is causal or
windowed (a mask does not make the kernel skip work), and counts no elementwise work.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from tutorial_lib.data import random_batch
from tutorial_lib.model import GPT, GPTConfig
from tutorial_lib.settings import dtype_name


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
    (the analytic model's components, ``measure.cost.flops_by_scope``); and
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
