"""Automatic checkers for the notebooks' exercises: run a learner's function against the library's
reference on several cases and say *what* is wrong, not only *that* it is wrong.

Each checker returns a ``CheckResult`` (``passed``, ``message``); it never raises on a wrong
answer, so a notebook cell that checks an unfinished exercise still runs to the end. Call
``result.raise_if_failed()`` to turn a failure into an ``AssertionError`` (for tests).

- ``check_repeat_kv(fn)``: ``fn(x, n_rep)`` expands (B, n_kv_head, T, D) K/V heads for GQA.
- ``check_kv_cache_bytes(fn)``: ``fn(config, batch_size, seq_len, bytes_per_element)``.
- ``check_online_softmax_update(fn)``: ``fn(m, l, acc, scores, v_tile) -> (m, l, acc)``, one tile
  of the online softmax (FlashAttention's inner loop).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch


@dataclass
class CheckResult:
    """The verdict of a checker: ``passed`` and a message that says what to fix."""
    exercise: str
    passed: bool
    message: str
    cases: int = 0  # cases that were run

    def __str__(self) -> str:
        mark = "PASSED" if self.passed else "NOT YET"
        return f"[{mark}] {self.exercise}: {self.message}"

    __repr__ = __str__

    def __bool__(self) -> bool:
        return self.passed

    def raise_if_failed(self) -> "CheckResult":
        if not self.passed:
            raise AssertionError(str(self))
        return self


def _call(exercise: str, fn: Callable, *args):
    """fn(*args) -> (value, None) or (None, CheckResult describing the exception)."""
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, CheckResult(exercise, False, "not implemented yet (the function raised "
                                 "NotImplementedError) -- replace the `raise` with your code.")
    except Exception as e:  # a learner's bug: report it, don't crash the notebook
        return None, CheckResult(exercise, False, f"your function raised {type(e).__name__}: {e}")


# ---- repeat_kv -------------------------------------------------------------------------------
def check_repeat_kv(fn: Callable) -> CheckResult:
    """Check ``fn(x, n_rep)``: (B, n_kv_head, T, D) -> (B, n_kv_head * n_rep, T, D), query head h
    served by K/V head h // n_rep -- the same as ``torch.repeat_interleave(x, n_rep, dim=1)``."""
    name = "repeat_kv"
    cases = [((2, 4, 5, 3), 3), ((1, 1, 7, 2), 12), ((2, 3, 4, 6), 2), ((1, 2, 3, 4), 1)]
    g = torch.Generator().manual_seed(0)
    for i, (shape, n_rep) in enumerate(cases):
        x = torch.randn(shape, generator=g)
        x_before = x.clone()
        out, err = _call(name, fn, x, n_rep)
        if err is not None:
            return err
        where = f"for x of shape {tuple(shape)} and n_rep={n_rep}"
        if not isinstance(out, torch.Tensor):
            return CheckResult(name, False, f"{where} it returned {type(out).__name__}, not a tensor", i)
        if not torch.equal(x, x_before):
            return CheckResult(name, False, f"{where} it changed its input in place; return a new tensor", i)
        B, H, T, D = shape
        want = (B, H * n_rep, T, D)
        if tuple(out.shape) != want:
            hint = ""
            if out.numel() == x.numel() * n_rep:
                hint = " -- right number of elements, wrong axis: repeat the head axis (dim 1)"
            return CheckResult(name, False, f"{where} the shape is {tuple(out.shape)}, expected {want}{hint}", i)
        ref = torch.repeat_interleave(x, n_rep, dim=1)
        if torch.equal(out, ref):
            continue
        if torch.equal(out, x.repeat(1, n_rep, 1, 1)):
            return CheckResult(name, False, (
                f"{where} the heads come out tiled (K1 K2 .. K1 K2 ..) -- that is x.repeat(...). "
                "Query heads of one group sit next to each other: query head h must use K/V head "
                "h // n_rep (K1 K1 K1 K2 K2 K2 ..), like torch.repeat_interleave(x, n_rep, dim=1)."), i)
        bad = [h for h in range(H * n_rep) if not torch.equal(out[:, h], ref[:, h])]
        return CheckResult(name, False, f"{where} query head(s) {bad[:6]} get the wrong K/V head "
                           f"(query head h should get K/V head h // n_rep)", i)
    return CheckResult(name, True, f"all {len(cases)} cases match torch.repeat_interleave(x, n_rep, dim=1).",
                       len(cases))


# ---- KV-cache bytes --------------------------------------------------------------------------
def check_kv_cache_bytes(fn: Callable) -> CheckResult:
    """Check ``fn(config, batch_size, seq_len, bytes_per_element)`` against ``gqa.kv_cache_bytes``."""
    from tutorial_lib.config import get_config
    from tutorial_lib.gqa import kv_cache_bytes

    name = "kv_cache_bytes"
    base = get_config("gpt2_small")
    cases = [(base, 1, 1024, 2), (base.replace(n_kv_head=4), 8, 512, 2),
             (base.replace(n_kv_head=1), 3, 100, 4), (get_config("gpt2_mini", n_kv_head=2), 2, 77, 4)]
    dtypes = {2: "bfloat16", 4: "float32"}
    for i, (cfg, B, T, nb) in enumerate(cases):
        got, err = _call(name, fn, cfg, B, T, nb)
        if err is not None:
            return err
        want = kv_cache_bytes(cfg, B, T, dtypes[nb])
        if got == want:
            continue
        where = (f"for {cfg.n_layer} layers, n_head={cfg.n_head}, n_kv_head={cfg.kv_heads}, "
                 f"head_dim={cfg.head_dim}, batch={B}, seq_len={T}, {nb} bytes/element")
        msg = f"{where} you return {got!r}, expected {want:,}"
        if isinstance(got, (int, float)) and got:
            r = want / got
            if cfg.kv_heads != cfg.n_head and math.isclose(got * cfg.kv_heads / cfg.n_head, want):
                msg += " -- the cache holds n_kv_head heads, not n_head: that is GQA's saving"
            hints = [(2.0, "keys AND values are both cached"),
                     (float(cfg.n_layer), "every layer has its own cache (n_layer)"),
                     (float(nb), "multiply by the bytes per element")]
            found = [h for k, h in hints if math.isclose(r, k)]
            if found:
                msg += f" -- off by {r:g}x: " + ", or ".join(found)
        return CheckResult(name, False, msg, i)
    return CheckResult(name, True, f"all {len(cases)} cases match tutorial_lib.gqa.kv_cache_bytes.", len(cases))


# ---- online softmax --------------------------------------------------------------------------
def _softmax_cases():
    """(scores (B, H, Tq, Tk), v (B, H, Tk, D), tile) cases, float64."""
    g = torch.Generator().manual_seed(0)
    B, H, Tq, Tk, D = 2, 3, 5, 12, 4
    s = torch.randn(B, H, Tq, Tk, generator=g, dtype=torch.float64) * 3
    v = torch.randn(B, H, Tk, D, generator=g, dtype=torch.float64)
    causal = s.clone()
    causal[..., 0, 1:] = float("-inf")  # query 0 sees only key 0 ...
    causal[..., 1, :4] = float("-inf")  # ... query 1's whole first tile is masked
    rising = torch.arange(Tk, dtype=torch.float64).expand(B, H, Tq, Tk) * 2.0  # max grows every tile
    big = s + 1000.0  # exp(1000) overflows: the max must be subtracted
    return [("random scores", s, v, 4), ("a fully masked first tile", causal, v, 4),
            ("a maximum that grows with every tile", rising, v, 4),
            ("large scores (1000 + noise)", big, v, 3)]


def _run_tiles(fn, scores, v, tile):
    """Drive fn over the key tiles; returns the list of states after each tile."""
    B, H, Tq, Tk = scores.shape
    m = torch.full((B, H, Tq, 1), float("-inf"), dtype=scores.dtype)
    l = torch.zeros((B, H, Tq, 1), dtype=scores.dtype)
    acc = torch.zeros((B, H, Tq, v.shape[-1]), dtype=scores.dtype)
    states = []
    for k0 in range(0, Tk, tile):
        out = fn(m, l, acc, scores[..., k0:k0 + tile].clone(), v[..., k0:k0 + tile, :].clone())
        if not (isinstance(out, (tuple, list)) and len(out) == 3):
            raise TypeError(f"it must return (m, l, acc); it returned {type(out).__name__}"
                            + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))
        m, l, acc = out
        states.append((m, l, acc))
    return states


def _variant(kind):
    """Typical wrong versions of the update, to name the mistake a learner's output matches."""
    def fn(m, l, acc, scores, v_tile):
        m_new = torch.maximum(m, scores.amax(dim=-1, keepdim=True))
        m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        m_old = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        p = torch.exp(scores - (m_old if kind == "p_old_max" else m_safe))
        alpha = torch.exp(m - m_safe)
        if kind == "p_old_max":
            alpha = torch.ones_like(alpha)
        l_new = (l if kind == "no_alpha_l" else alpha * l) + p.sum(-1, keepdim=True)
        acc_new = (acc if kind == "no_alpha_acc" else alpha * acc) + p @ v_tile
        if kind == "normalised_acc":
            acc_new = acc_new / l_new
        return m_new, l_new, acc_new
    return fn


_HINTS = {
    "no_alpha_acc": "acc is not rescaled: when the running max grows from m to m_new, multiply the "
                    "old acc by alpha = exp(m - m_new) before adding p @ v_tile",
    "no_alpha_l": "l is not rescaled: multiply the old l by alpha = exp(m - m_new) before adding "
                  "this tile's p.sum(-1)",
    "p_old_max": "this tile's p must use the *new* max (p = exp(scores - m_new)), and the old "
                 "l and acc are then rescaled by exp(m - m_new)",
    "normalised_acc": "acc must stay unnormalised (the running sum of p @ v); divide by l only once, "
                      "after the last tile",
}


def check_online_softmax_update(fn: Callable) -> CheckResult:
    """Check ``fn(m, l, acc, scores, v_tile) -> (m_new, l_new, acc_new)`` for one key tile.

    m, l: running row max and normaliser (..., Tq, 1), starting at -inf and 0; acc: the
    unnormalised output (..., Tq, D) starting at 0; masked scores are -inf. After the last tile,
    acc / l must equal softmax(scores) @ v. Compared step by step with
    ``tutorial_lib.flash.online_softmax_update`` on random, masked, growing and huge scores.
    """
    from tutorial_lib.flash import online_softmax_update as ref_fn

    name = "online_softmax_update"
    cases = _softmax_cases()
    runs = []
    # pass 1: the answer acc / l after the last tile, on every case
    for i, (label, scores, v, tile) in enumerate(cases):
        states, err = _call(name, _run_tiles, fn, scores, v, tile)
        if err is not None:
            err.message = err.message.replace("your function raised TypeError: it must", "it must")
            return err
        ref_states = _run_tiles(ref_fn, scores, v, tile)
        runs.append((label, states, ref_states))
        want = torch.softmax(scores, dim=-1) @ v
        m, l, acc = states[-1]
        if not all(isinstance(t, torch.Tensor) for t in (m, l, acc)):
            return CheckResult(name, False, "m, l and acc must be tensors", i)
        for nm, a, b in zip(("m", "l", "acc"), (m, l, acc), ref_states[-1]):
            if tuple(a.shape) != tuple(b.shape):
                return CheckResult(name, False, f"with {label}: {nm} has shape {tuple(a.shape)}, "
                                   f"expected {tuple(b.shape)} (keep the trailing size-1 axis of m and l)", i)
        out = acc / l
        if not torch.isfinite(out).all():
            if "masked" in label:
                msg = (f"with {label}: NaN/inf in the output. A row whose tile is all -inf has "
                       "m_new = -inf and exp(-inf - (-inf)) = nan: subtract 0 instead of a "
                       "non-finite max (torch.where(torch.isfinite(m_new), m_new, 0)).")
            elif "large" in label:
                msg = (f"with {label}: the output overflowed (inf/NaN). exp(1000) does not fit in "
                       "a float: subtract the running max before exp.")
            else:
                msg = f"with {label}: NaN/inf in the output"
            return CheckResult(name, False, msg, i)
        if torch.allclose(out, want, rtol=1e-9, atol=1e-9):
            continue
        for kind, hint in _HINTS.items():
            vs = _run_tiles(_variant(kind), scores, v, tile)[-1]
            if all(torch.allclose(x, y, rtol=1e-9, atol=1e-9) for x, y in zip((m, l, acc), vs)):
                return CheckResult(name, False, f"with {label}: {hint}.", i)
        err_max = (out - want).abs().max().item()
        return CheckResult(name, False, f"with {label}: acc / l after the last tile differs from "
                           f"softmax(scores) @ v by up to {err_max:.3g}", i)
    # pass 2: the running state after every tile (the contract the tiled kernel relies on)
    for i, (label, states, ref_states) in enumerate(runs):
        for step, (got, ref) in enumerate(zip(states, ref_states)):
            ok = [torch.allclose(x, y, rtol=1e-9, atol=1e-12, equal_nan=True) for x, y in zip(got, ref)]
            if not all(ok):
                bad = [nm for nm, o in zip(("m", "l", "acc"), ok) if not o]
                return CheckResult(name, False, (
                    f"with {label}: the final output is right, but after tile {step} "
                    f"{', '.join(bad)} differ(s) from the reference: keep m = running max, "
                    "l = running sum of exp(score - m), acc = running sum of exp(score - m) v"), i)
    return CheckResult(name, True, f"all {len(cases)} cases ({', '.join(c[0] for c in cases)}) "
                       "match softmax(scores) @ v and the library's step-by-step state.", len(cases))
