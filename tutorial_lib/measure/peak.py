"""The peak memory of a training step: predicted from the cost model, and measured.

What runs a machine out of memory is the allocator's *peak*, not the sum of what backward keeps:
inside the step, temporaries come and go on top of the activations, and the gradients fill in as
the activations are freed. ``step_peak(config, B, T, dtype, grad_accum)`` predicts it from the
one analytic model (``measure.cost``: parameters, gradients, AdamW's state, and the activations
autograd keeps, exactly) plus the largest transient at the moments where the step holds the most:

==================  ==========================================================================
moment              held
==================  ==========================================================================
``forward``         every activation, and the loss's temporaries (the full logits; a chunk's)
``loss backward``   every activation, and the loss's gradient temporaries (full logits: d log-
                    probabilities and d logits, both B x T x V; chunked: a chunk's and the head's
                    weight gradient)
``blocks backward`` the blocks' activations, the head's weight gradient, and a block's own
                    temporaries -- with checkpointing, its recomputed activations too
``embedding``       every gradient; tied embeddings add the head's and the embedding's
                    gradients (two V x C tensors) before storing the sum
``optimizer``       every gradient, and AdamW's temporaries (on a CPU, two of the largest
                    parameter's size; CUDA's fused AdamW none)
==================  ==========================================================================

With gradient accumulation every micro-batch after the first starts with all the gradients
allocated. The tests check the prediction against the measured peak (``measured_step_peak``:
``torch.profiler``'s memory events on a CPU, ``max_memory_allocated`` on CUDA, both above the
memory the model, its optimizer state and the batch already held) at the cpu profile's sizes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict

import torch

from tutorial_lib import attention, settings
from tutorial_lib.data import random_batch
from tutorial_lib.measure import cost
from tutorial_lib.measure.memory import cpu_peak_bytes, cuda_peak_bytes, optimizer_state_tensors
from tutorial_lib.measure.timing import build_step, check_sizes, make_optimizer
from tutorial_lib.model import GPT, GPTConfig

MOMENTS = ("forward", "loss backward", "blocks backward", "embedding", "optimizer")


@dataclass
class StepPeak:
    """A training step's predicted memory: what exists before it starts (``resident``: parameters,
    AdamW's state, buffers, the batch), what it allocates on top at each moment (``moments``), and
    the peak = resident + the largest moment."""
    resident: Dict[str, int]  # parameters, optimizer state, buffers, batch
    moments: Dict[str, int]  # bytes on top of the resident ones at each moment (``MOMENTS``)
    gradients: int
    activations: int  # saved for backward by one micro-batch (``cost.activation_bytes``: exact)
    grad_accum: int = 1
    parts: Dict[str, Dict[str, int]] = field(default_factory=dict)  # each moment's terms

    @property
    def resident_bytes(self) -> int:
        return sum(self.resident.values())

    @property
    def at(self) -> str:
        """The moment of the peak."""
        return max(self.moments, key=self.moments.get)

    @property
    def peak_bytes(self) -> int:
        return self.resident_bytes + self.moments[self.at]

    @property
    def floor_bytes(self) -> int:
        """Parameters + gradients + optimizer state: what no plan gets below."""
        return self.resident["parameters"] + self.resident["optimizer state"] + self.gradients

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(peak_bytes=self.peak_bytes, at=self.at, floor_bytes=self.floor_bytes)
        return d


def loss_transients(c: GPTConfig, N: int, e: int) -> Dict[str, int]:
    """Bytes the head and the loss allocate on top of the activations, forward and backward, for
    N tokens in compute dtype ``e`` bytes (autocast when e < 4): the full logits and their
    gradients, or one chunk's (``tutorial_lib.loss``). Measured at tiny sizes, operator by operator."""
    V, C, lp = c.padded_vocab_size, c.n_embd, e < 4
    if c.loss_impl == "full":
        # forward: the logits (and their fp32 copy under autocast) beside the kept log-probabilities;
        # backward: d log-probabilities and d logits, both (N, V) fp32
        return {"forward": 4 * N * V + (e * N * V if lp else 0), "backward": 8 * N * V}
    k = min(c.loss_chunk, N)
    cast = e * k * V + e * V * C if lp else 0  # a chunk's logits and the weight, in the compute dtype
    fwd = 2 * 4 * k * V + cast  # a chunk's fp32 logits and log-sum-exp's temporary
    if c.loss_impl == "chunked_liger":
        return {"forward": fwd, "backward": 4 * V * C}  # backward only scales the kept gradients
    # backward recomputes each chunk: its logits, turned into their gradient in place, and the
    # head's weight gradient accumulating in fp32 (under autocast beside bf16 ones and the casts)
    bwd = 2 * 4 * V * C + 2 * e * V * C + e * k * V if lp else 4 * k * V + 4 * V * C
    return {"forward": fwd, "backward": bwd}


def half_transients(c: GPTConfig, B: int, T: int, e: int) -> Dict[str, int]:
    """The largest temporaries inside one block's backward, per half: the MLP's two (B, T, hidden)
    gradients; eager attention's two (B, H, T, T) ones, or a fused kernel's q, k, v gradients."""
    N = B * T
    q, kv = e * B * c.n_head * T * c.head_dim, e * B * c.kv_heads * T * c.head_dim
    eager = attention.get(c.attn_backend).materializes_scores
    return {"mlp": 2 * e * N * c.mlp_hidden * (2 if c.mlp == "swiglu" else 1),
            "attention": 2 * e * B * c.n_head * T * T if eager else 2 * (q + 2 * kv)}


def last_block_halves(c: GPTConfig, B: int, T: int, dtype) -> Dict[str, int]:
    """The activations one block's halves keep ("attention", "mlp"; its input, the residual
    stream, is not in either): what the last block's backward frees, or -- checkpointed -- brings
    back at once when it recomputes."""
    plain = cost.activation_bytes(c.replace(n_layer=1, checkpoint="none"), B, T, dtype)
    return {h: sum(v for k, v in plain.items() if k.startswith(h)) for h in ("attention", "mlp")}


def step_peak(config: GPTConfig, batch_size: int, seq_len: int, dtype="float32", grad_accum: int = 1,
              device_type: str = "cpu") -> StepPeak:
    """The predicted memory of one training step (the batch of ``batch_size`` sequences in
    ``grad_accum`` micro-batches; AdamW; gradients set to None between steps): see the module's
    table. ValueError naming the field for bad sizes or a ``grad_accum`` that does not divide
    the batch."""
    for name, v in (("batch_size", batch_size), ("seq_len", seq_len), ("grad_accum", grad_accum)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    if batch_size % grad_accum:
        raise ValueError(f"grad_accum={grad_accum} does not divide batch_size={batch_size}")
    c, e = config, settings.dtype_bytes(dtype)
    B, T = batch_size // grad_accum, seq_len
    N, V, C = B * T, c.padded_vocab_size, c.n_embd
    mem = cost.training_memory(c, B, T, dtype)
    kinds = mem["by_kind"]
    G, A = kinds["gradients"], kinds["activations"]
    acts = cost.activation_bytes(c, B, T, dtype)
    sizes = cost.param_sizes(c)
    resident = {"parameters": kinds["parameters"], "optimizer state": kinds["optimizer state"],
                "buffers": (2 * c.block_size * (c.head_dim // 2) * 4 if c.pos == "rope" else 0),
                "batch": 2 * 8 * batch_size * seq_len}  # token ids and targets, int64
    before = G if grad_accum > 1 else 0  # a later micro-batch starts with every gradient allocated
    loss = loss_transients(c, N, e)
    # the head, the loss and the final norm's activations are freed before the blocks' backward
    head = sum(v for k, v in acts.items() if k in ("lm_head", "loss")) + 4 * N * C + (
        8 * N if c.norm == "layernorm" else 4 * N * C + 4 * N)
    # the last block's backward: its MLP half first, then its attention half (the MLP's
    # activations freed by then); a recomputed half's activations come back when it starts
    part = c.checkpointed(c.n_layer - 1)
    again = {"mlp": part in ("mlp", "block"), "attention": part in ("attention", "block")}
    halves, temps = last_block_halves(c, B, T, dtype), half_transients(c, B, T, e)
    blocks = {h: {"gradients": before, "activations": A - head - (halves["mlp"] if h == "attention" and not
                                                                   again["mlp"] else 0),
                  "head's gradient": 4 * V * C,
                  "recomputed": (halves["attention"] if again["attention"] else 0)
                  + (halves["mlp"] if h == "mlp" and again["mlp"] else 0),
                  h: temps[h]} for h in ("mlp", "attention")}
    blocks_backward = max(blocks.values(), key=lambda d: sum(d.values()))
    parts = {
        "forward": {"gradients": before, "activations": A, "loss": loss["forward"]},
        "loss backward": {"gradients": before, "activations": A, "loss": loss["backward"]},
        "blocks backward": blocks_backward,
        # tied: the head's and the embedding's (V, C) gradients and their sum, beside the others
        # (and, accumulating, the stored one they are added to)
        "embedding": {"gradients": G, "tied sum": 2 * 4 * V * C + (4 * V * C if before else 0)
                      if c.tie_embeddings else 0},
        "optimizer": {"gradients": G, "AdamW": 0 if device_type == "cuda" else 2 * 4 * max(sizes)},
    }
    return StepPeak(resident=resident, moments={m: sum(p.values()) for m, p in parts.items()}, gradients=G,
                    activations=A, grad_accum=grad_accum, parts=parts)


# ---- measured ----------------------------------------------------------------------------------
def measured_step_peak(config: GPTConfig, batch_size: int, seq_len: int, dtype=None, grad_accum: int = 1,
                       device=None, seed: int = 0, model=None) -> dict:
    """The allocator's peak over one training step as ``measure.timing.build_step`` runs it
    (gradients set to None, ``accumulate.accumulate_gradients``, AdamW), after one warm step (it
    makes AdamW's state, which a measured step finds in place):
    {"peak_bytes": resident + the peak above it, "resident_bytes": the parameters, buffers,
    AdamW's state and the batch (CPU: counted from the tensors; CUDA: ``memory_allocated``),
    "above_bytes", "source"}."""
    dev, dt = settings.resolve(device, dtype)
    check_sizes(config, batch_size, seq_len, "train")
    if model is None:
        torch.manual_seed(seed)
        model = GPT(config)
    model = model.to(dev).train()
    opt = make_optimizer(model, dev)
    idx, targets = random_batch(config.vocab_size, batch_size, seq_len, dev, seed)
    step = build_step(model, idx, targets, "train", dev, dt, opt, grad_accum=grad_accum)
    step()
    opt.zero_grad(set_to_none=True)
    if dev.type == "cuda":
        settings.synchronize(dev)
        resident = torch.cuda.memory_allocated(dev)
        p = cuda_peak_bytes(step, device=dev)
    else:
        tensors = list(model.parameters()) + list(model.buffers()) + list(optimizer_state_tensors(opt))
        resident = memory_bytes(tensors + [idx, targets])
        p = cpu_peak_bytes(step)
    return {"peak_bytes": resident + p.peak_bytes, "resident_bytes": resident, "above_bytes": p.peak_bytes,
            "source": p.source, "device": str(dev), "dtype": settings.dtype_name(dt)}


def memory_bytes(tensors) -> int:
    """Bytes of the tensors' storages, each storage once."""
    seen = {}
    for t in tensors:
        s = t.untyped_storage()
        seen[(s.data_ptr(), s.nbytes())] = s.nbytes()
    return sum(seen.values())
