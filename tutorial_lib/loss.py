"""The LM head and the loss without the (tokens x vocabulary) logits: chunked linear cross-entropy.

A GPT's last step is ``loss = cross_entropy(hidden @ W.T, targets)``: with N = B*T tokens and a
vocabulary of V = 50,257, the logits are N x V numbers -- at the seed's B=4, T=512 in fp32 that is
4 * 512 * 50,257 * 4 bytes = 412 MB, and autograd keeps them (and their log-softmax) for backward.
Yet each token's loss needs only its own row of logits. ``chunked_linear_cross_entropy`` walks over
the tokens ``chunk`` rows at a time: it computes a chunk's logits, its log-sum-exp and its loss,
and drops the logits before the next chunk. Two ways to get the gradients:

- **recompute** (``grad_in_forward=False``, the default): forward keeps only the hidden states
  (which the head's matmul keeps anyway) and one log-sum-exp per token; backward recomputes each
  chunk's logits -- one more (chunk x C) @ (C x V) matmul per chunk, the FLOPs paid for the memory
  (as flash attention recomputes its scores).
- **gradients in the forward** (``grad_in_forward=True``, Liger Kernel's FusedLinearCrossEntropy,
  Hsu et al. 2024): forward also turns each chunk's softmax into its gradients right away, so it
  keeps a (N x C) gradient of the hidden states and a (V x C) gradient of the head's weight -- in
  fp32 about 154 MB for GPT-2 -- and backward only scales them. No recompute, more memory.

Either way no tensor of N x V elements exists: the largest is one chunk's (chunk x V) logits.
Related: Cut Cross-Entropy (Wijmans et al., 2024), which fuses the same computation into one
kernel; torchtune's chunked loss.

Exactness: the loss is ``F.cross_entropy(hidden @ weight.T, targets, ignore_index=-1)`` (the
mean over the targets that are not ignored) and so are the gradients, to rounding (the tests check
float64). Like the model's full path it handles tied embeddings (``weight`` is whatever the head
uses), the padded vocabulary (all ``weight`` rows enter the softmax, padding included) and bf16
autocast: each chunk's matmul runs in the autocast dtype, and the chunk's logits are upcast to
fp32 before the softmax (the full path's ``.to(float32)``, one chunk at a time).

Profiling: the chunk's matmuls run inside ``scope("lm_head")`` and the softmax/loss work inside
``scope("loss")``, in forward and in backward, so the profiler and the memory kit still split the
time between the head and the loss (``tutorial_lib.scopes``).
"""
from __future__ import annotations

import torch

from tutorial_lib.scopes import scope

IGNORE_INDEX = -1  # the model's "no target here" id
LOSS_IMPLS = ("full", "chunked", "chunked_liger")  # GPTConfig.loss_impl


def chunked_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                 chunk: int = 1024, *, grad_in_forward: bool = False,
                                 ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean cross-entropy of ``hidden @ weight.T`` against ``targets``, ``chunk`` tokens at a time.

    hidden: (..., C) floats; weight: (V, C) (the LM head's, tied or not); targets: (...) integer ids
    in [0, V) or ``ignore_index``. Returns a 0-dim tensor: the mean over non-ignored targets (NaN
    when every target is ignored, like ``F.cross_entropy``), in at least float32.
    ``grad_in_forward`` picks Liger's variant (see the module docstring).
    """
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"chunk={chunk!r} must be a positive integer (tokens per chunk)")
    if hidden.dim() < 1 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)} do not fit: "
                         "expected hidden (..., C) and weight (V, C)")
    if targets.shape != hidden.shape[:-1]:
        raise ValueError(f"targets has shape {tuple(targets.shape)}; expected {tuple(hidden.shape[:-1])}")
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise ValueError(f"targets has dtype {targets.dtype}; expected integer ids")
    dev = hidden.device.type
    if torch.is_autocast_enabled(dev):  # the matmuls run in autocast's dtype, as nn.Linear's would
        compute = torch.get_autocast_dtype(dev)
    else:
        compute = torch.promote_types(hidden.dtype, weight.dtype)
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    C = hidden.shape[-1]
    return ChunkedLinearCrossEntropy.apply(hidden.reshape(-1, C), weight, targets.reshape(-1), chunk,
                                           compute, grad_in_forward and needs_grad, ignore_index)


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """The autograd Function behind ``chunked_linear_cross_entropy`` (hidden is (N, C) here)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int, compute: torch.dtype,
                grad_in_forward: bool, ignore_index: int):
        N = hidden.shape[0]
        acc = torch.promote_types(compute, torch.float32)  # softmax and loss: at least fp32
        with torch.autocast(hidden.device.type, enabled=False):  # dtypes are chosen explicitly
            h, w = hidden.to(compute), weight.to(compute)  # no copy unless autocast casts
            valid = targets != ignore_index
            n_valid = valid.sum()
            loss_sum = torch.zeros((), dtype=acc, device=hidden.device)
            lse = None if grad_in_forward else torch.empty(N, dtype=acc, device=hidden.device)
            if grad_in_forward:  # Liger: the gradients for d(loss) = 1, scaled in backward
                grad_h = torch.empty_like(hidden)
                grad_w = torch.zeros(weight.shape, dtype=torch.promote_types(weight.dtype, torch.float32),
                                     device=weight.device)
                inv_n = 1.0 / n_valid.clamp(min=1).to(acc)  # no target at all: zero gradients
            for s in range(0, N, chunk):
                e = min(s + chunk, N)
                with scope("lm_head"):
                    logits = h[s:e] @ w.T  # (c, V): the only place logits exist, one chunk of them
                with scope("loss"):
                    z = logits.to(acc)  # upcast per chunk (a no-op in fp32)
                    lse_c = torch.logsumexp(z, dim=1)
                    tgt = targets[s:e].clamp(min=0).unsqueeze(1)
                    picked = z.gather(1, tgt).squeeze(1)
                    loss_sum += torch.where(valid[s:e], lse_c - picked, 0).sum()
                    if grad_in_forward:
                        g = softmax_grad_(z, lse_c, tgt, valid[s:e], inv_n).to(compute)
                    else:
                        lse[s:e] = lse_c
                del logits, z
                if grad_in_forward:
                    with scope("lm_head"):
                        grad_h[s:e] = g @ w
                        add_weight_grad_(grad_w, g, h[s:e])
                    del g
            with scope("loss"):
                loss = loss_sum / n_valid
        if grad_in_forward:
            ctx.save_for_backward(grad_h, grad_w)  # saved, so the memory kit counts them
        else:
            ctx.save_for_backward(h, weight, targets, lse, n_valid)
        ctx.chunk, ctx.compute, ctx.grad_in_forward = chunk, compute, grad_in_forward
        ctx.ignore_index, ctx.hidden_dtype, ctx.weight_dtype = ignore_index, hidden.dtype, weight.dtype
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        with scope("loss"):  # the head's matmuls open "lm_head" inside it, as in forward
            return ChunkedLinearCrossEntropy.gradients(ctx, grad_loss)

    @staticmethod
    def gradients(ctx, grad_loss):
        """Backward's body: scale Liger's saved gradients, or recompute them chunk by chunk."""
        if ctx.grad_in_forward:
            grad_h, grad_w = ctx.saved_tensors
            gh = grad_h * grad_loss.to(grad_h.dtype) if ctx.needs_input_grad[0] else None
            gw = (grad_w * grad_loss).to(ctx.weight_dtype) if ctx.needs_input_grad[1] else None
            return gh, gw, None, None, None, None, None
        h, weight, targets, lse, n_valid = ctx.saved_tensors
        N, compute, acc = h.shape[0], ctx.compute, lse.dtype
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        with torch.autocast(h.device.type, enabled=False):
            w = weight.to(compute)
            valid = targets != ctx.ignore_index
            scale = grad_loss.to(acc) / n_valid.clamp(min=1).to(acc)  # no target: zero gradients
            grad_h = torch.empty(h.shape, dtype=ctx.hidden_dtype, device=h.device) if want_h else None
            grad_w = (torch.zeros(weight.shape, dtype=torch.promote_types(weight.dtype, torch.float32),
                                  device=weight.device) if want_w else None)
            for s in range(0, N, ctx.chunk):
                e = min(s + ctx.chunk, N)
                with scope("lm_head"):
                    logits = h[s:e] @ w.T  # recomputed: the FLOPs paid for not keeping them
                with scope("loss"):
                    tgt = targets[s:e].clamp(min=0).unsqueeze(1)
                    g = softmax_grad_(logits.to(acc), lse[s:e], tgt, valid[s:e], scale).to(compute)
                del logits
                with scope("lm_head"):
                    if want_h:
                        grad_h[s:e] = g @ w
                    if want_w:
                        add_weight_grad_(grad_w, g, h[s:e])
                del g
        return (grad_h, None if grad_w is None else grad_w.to(weight.dtype),
                None, None, None, None, None)


def softmax_grad_(z: torch.Tensor, lse: torch.Tensor, tgt: torch.Tensor, valid: torch.Tensor,
                  scale) -> torch.Tensor:
    """d(loss)/d(logits) of one chunk, written into ``z`` (its logits, upcast): (softmax - one_hot)
    x scale on rows whose target counts, 0 on ignored rows. ``scale`` = d(loss) / n_valid."""
    z.sub_(lse.unsqueeze(1)).exp_()  # softmax, from the saved log-sum-exp
    z.scatter_add_(1, tgt, -valid.to(z.dtype).unsqueeze(1))  # minus the one-hot target
    return z.mul_((valid.to(z.dtype) * scale).unsqueeze(1))


def add_weight_grad_(grad_w: torch.Tensor, g: torch.Tensor, h: torch.Tensor) -> None:
    """grad_w += g.T @ h, accumulated in grad_w's (fp32 or wider) dtype."""
    if g.dtype == grad_w.dtype:  # in place, no (V, C) temporary (addmm's out= form, which
        torch.addmm(grad_w, g.T, h, out=grad_w)  # FlopCounterMode counts; its addmm_ it does not)
    else:  # bf16 chunks: the matmul in bf16 (as autocast's would be), the sum over chunks in fp32
        grad_w += (g.T @ h).to(grad_w.dtype)

