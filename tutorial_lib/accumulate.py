"""Gradient accumulation: one optimizer step's gradients from several micro-batches.

A batch too large for memory runs as ``grad_accum`` micro-batches, one after the other: each
micro-batch's forward and backward, its loss scaled by 1/grad_accum, so that the gradients autograd
adds into every ``.grad`` sum to the whole batch's -- with the activations of one micro-batch
alive at a time. GPT-2 reached its ~0.5 M tokens per optimizer step this way in Karpathy's
reproduction (nanoGPT's ``gradient_accumulation_steps``). Under DistributedDataParallel the
micro-batches before the last run under ``no_sync()``: gradients are all-reduced once per step.

The training loop (``tutorial_lib.train``) and every measured training step
(``measure.timing.build_step``) call ``accumulate_gradients``; ``measure.cost`` charges its
kernels (``step_kernels(..., grad_accum=k)``).
"""
from __future__ import annotations

import contextlib

import torch


def accumulate_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, grad_accum: int = 1,
                         autocast=contextlib.nullcontext, no_sync=None, scaler=None) -> torch.Tensor:
    """Forward and backward of the batch (x, y) in ``grad_accum`` micro-batches of equal size: each
    micro-batch's loss is scaled by 1/grad_accum, so the gradients that add up in ``.grad`` are
    the whole batch's (the loss is a mean over tokens; with ignored targets the micro-batches must
    hold as many counted targets each), and only one micro-batch's activations exist at a time.
    ``no_sync``: DistributedDataParallel's, entered for every micro-batch but the last, so the
    gradients are all-reduced once. ``scaler``: a ``torch.amp.GradScaler`` (float16) that scales each
    micro-batch's loss before its backward. Returns the batch's loss (detached, mean of the
    micro-batches', unscaled).
    """
    if not isinstance(grad_accum, int) or isinstance(grad_accum, bool) or grad_accum < 1:
        raise ValueError(f"grad_accum={grad_accum!r} must be a positive integer")
    if x.shape[0] % grad_accum:
        raise ValueError(f"grad_accum={grad_accum} does not divide the batch of {x.shape[0]} sequences")
    losses = []
    for i, (xs, ys) in enumerate(zip(x.chunk(grad_accum), y.chunk(grad_accum))):
        last = i == grad_accum - 1
        with contextlib.nullcontext() if (last or no_sync is None) else no_sync():
            with autocast():
                loss = model(xs, ys)[1]  # not ``_, loss =``: the logits would live on to the next micro-batch
            part = loss / grad_accum if grad_accum > 1 else loss
            (part if scaler is None else scaler.scale(part)).backward()
        losses.append(loss.detach())
    return (losses[0] if grad_accum == 1 else torch.stack(losses).mean()).float()
