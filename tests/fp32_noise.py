"""fp32 tolerances measured, not guessed: how far PyTorch's own float32 attention lands from float64
on the very inputs a test uses, times a margin.

A fixed 1e-5 sat at the noise floor: an independent check found PyTorch's own eager attention and
SDPA in float32 6.4-8.4e-6 away from float64 on a peaked test model, so a correct float32 backend
could fail on rounding alone. Here the floor is measured per test and per output (out, dq, dk,
dv): the larger error of two PyTorch float32 paths -- plain ops (matmul, masked softmax, matmul)
and ``F.scaled_dot_product_attention`` with the same mask -- against float64 on the same float32
inputs. A backend passes within ``MARGIN`` times that: it may round differently (tiles, an online
softmax), not be wrong by more than PyTorch's own rounding several times over.
"""
import math

import torch
import torch.nn.functional as F

MARGIN = 4  # a backend's error may be this many times PyTorch's own float32 error on the same inputs
# (measured: every backend here lands at 0.5-1.5x of it, over 25 cases of out, dq, dk and dv)
ULPS = 4  # and never below this many float32 ulps of the largest value (a floor where PyTorch is exact)
NAMES = ("out", "dq", "dk", "dv")


def _mask(Tq: int, Tk: int, window, device) -> torch.Tensor:
    i, j = torch.arange(Tq, device=device)[:, None], torch.arange(Tk, device=device)[None, :]
    visible = j <= i + (Tk - Tq)
    return visible & (i + (Tk - Tq) - j < window) if window is not None else visible


def _plain(q, k, v, window):
    """softmax(q k^T / sqrt(D) + mask) v with PyTorch ops, K/V heads repeated for GQA."""
    n_rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    s = s.masked_fill(~_mask(q.shape[2], k.shape[2], window, q.device), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def _sdpa(q, k, v, window):
    n_rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=_mask(q.shape[2], k.shape[2], window, q.device))


def _out_and_grads(fn, q, k, v, window, dout, dtype):
    x = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
    out = fn(*x, window)
    return [out.detach(), *torch.autograd.grad(out, x, dout.to(out.device, dtype))]


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().double().cpu() - b.detach().double().cpu()).abs().max().item()


def reference(q, k, v, window, dout):
    """Output and (dq, dk, dv) in float64 from PyTorch's plain ops, on the inputs' device."""
    return _out_and_grads(_plain, q, k, v, window, dout, torch.float64)


def noise(q, k, v, window, dout, want=None):
    """{"out", "dq", "dk", "dv"}: the largest absolute error of PyTorch's own float32 paths (plain
    ops, SDPA) against float64 ``want``, on these inputs rounded to float32, on their device."""
    want = reference(q, k, v, window, dout) if want is None else want
    worst = dict.fromkeys(NAMES, 0.0)
    for fn in (_plain, _sdpa):
        for name, a, b in zip(NAMES, _out_and_grads(fn, q, k, v, window, dout, torch.float32), want):
            worst[name] = max(worst[name], max_error(a, b))
    return worst


def tolerance(torch_error: float, want: torch.Tensor) -> float:
    """MARGIN x PyTorch's own float32 error, at least ULPS float32 ulps of the largest value."""
    return max(MARGIN * torch_error, ULPS * torch.finfo(torch.float32).eps * want.abs().max().item())


def check(got, q, k, v, window, dout, want=None) -> dict:
    """Assert that ``got`` (out, dq, dk, dv; or just out) is within ``tolerance`` of float64, and
    return {name: (error, PyTorch's own float32 error, tolerance)}; the message shows all three."""
    want = reference(q, k, v, window, dout) if want is None else want
    floor = noise(q, k, v, window, dout, want)
    found = {name: (max_error(a, b), floor[name], tolerance(floor[name], b)) for name, a, b in zip(NAMES, got, want)}
    bad = {n: f"{e:.2e} > {t:.2e} (PyTorch's own float32: {f:.2e})" for n, (e, f, t) in found.items() if e > t}
    assert not bad, bad
    return found


def within(got: torch.Tensor, want: torch.Tensor, torch_fp32: torch.Tensor) -> None:
    """Any other float32 quantity: ``got`` within ``tolerance`` of float64 ``want``, measured by
    PyTorch's own float32 computation of it, ``torch_fp32``."""
    err, floor = max_error(got, want), max_error(torch_fp32, want)
    assert err <= tolerance(floor, want), f"{err:.2e} > {tolerance(floor, want):.2e} (PyTorch's own: {floor:.2e})"
