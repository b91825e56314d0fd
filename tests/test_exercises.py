"""tutorial_lib.lessons.common: each checker passes a correct answer written here from scratch, and names
the mistake in typical wrong answers instead of crashing."""
import math

import torch

from tutorial_lib.lessons import flash_attention as fl
from tutorial_lib.lessons import gqa


# ---- repeat_kv -------------------------------------------------------------------------------
def good_repeat_kv(x, n_rep):  # written independently of the library's expand/reshape version
    return torch.cat([x[:, h:h + 1].expand(-1, n_rep, -1, -1) for h in range(x.shape[1])], dim=1)


def test_repeat_kv_correct_passes():
    r = gqa.check_repeat_kv(good_repeat_kv)
    assert r.passed and bool(r) and r.cases == 4 and "PASSED" in str(r)
    assert gqa.check_repeat_kv(lambda x, n: torch.repeat_interleave(x, n, dim=1)).passed
    from tutorial_lib.attention.reference import repeat_kv
    assert gqa.check_repeat_kv(repeat_kv).passed


def test_repeat_kv_wrong_answers_are_named():
    def stub(x, n_rep):
        raise NotImplementedError

    r = gqa.check_repeat_kv(stub)
    assert not r.passed and "not implemented yet" in r.message and "NOT YET" in str(r)
    r = gqa.check_repeat_kv(lambda x, n: x.repeat(1, n, 1, 1))
    assert not r.passed and "tiled" in r.message and "h // n_rep" in r.message
    r = gqa.check_repeat_kv(lambda x, n: torch.repeat_interleave(x, n, dim=2))
    assert not r.passed and "wrong axis" in r.message
    r = gqa.check_repeat_kv(lambda x, n: x)
    assert not r.passed and "shape" in r.message
    r = gqa.check_repeat_kv(lambda x, n: x.tolist())
    assert not r.passed and "not a tensor" in r.message
    r = gqa.check_repeat_kv(lambda x, n: 1 / 0)
    assert not r.passed and "ZeroDivisionError" in r.message

    def inplace(x, n):
        out = torch.repeat_interleave(x, n, dim=1)
        x.zero_()
        return out

    assert "in place" in gqa.check_repeat_kv(inplace).message

    def swapped(x, n):  # right shape, one head wrong
        out = torch.repeat_interleave(x, n, dim=1).clone()
        if out.shape[1] > 1:
            out[:, 0] = out[:, -1]
        return out

    r = gqa.check_repeat_kv(swapped)
    assert not r.passed and "query head(s) [0]" in r.message


def test_raise_if_failed():
    import pytest

    with pytest.raises(AssertionError, match="tiled"):
        gqa.check_repeat_kv(lambda x, n: x.repeat(1, n, 1, 1)).raise_if_failed()
    assert gqa.check_repeat_kv(good_repeat_kv).raise_if_failed().passed


# ---- KV-cache bytes --------------------------------------------------------------------------
def good_bytes(cfg, B, T, nb):
    return 2 * cfg.n_layer * B * cfg.kv_heads * T * (cfg.n_embd // cfg.n_head) * nb


def test_kv_cache_bytes_checker():
    assert gqa.check_kv_cache_bytes(good_bytes).passed
    r = gqa.check_kv_cache_bytes(lambda c, B, T, nb: good_bytes(c, B, T, nb) // 2)
    assert not r.passed and "keys AND values" in r.message
    r = gqa.check_kv_cache_bytes(lambda c, B, T, nb: good_bytes(c, B, T, nb) // c.n_layer)
    assert not r.passed and "n_layer" in r.message
    # n_head instead of n_kv_head: fails on the first GQA case with the GQA hint
    r = gqa.check_kv_cache_bytes(lambda c, B, T, nb: 2 * c.n_layer * B * c.n_head * T * c.head_dim * nb)
    assert not r.passed and "n_kv_head heads, not n_head" in r.message and r.cases == 1
    r = gqa.check_kv_cache_bytes(lambda c, B, T, nb: None)
    assert not r.passed and "None" in r.message


# ---- online softmax --------------------------------------------------------------------------
def good_update(m, l, acc, scores, v_tile):
    """An independent correct version: per-row Python over the new maximum."""
    tile_max = scores.max(dim=-1, keepdim=True).values
    m_new = torch.where(tile_max > m, tile_max, m)
    shift = torch.nan_to_num(m_new, neginf=0.0)
    p = (scores - shift).exp()
    scale = (m - shift).exp()
    return m_new, l * scale + p.sum(-1, keepdim=True), acc * scale + p @ v_tile


def test_online_softmax_correct_passes():
    r = fl.check_online_softmax_update(good_update)
    assert r.passed, r.message
    from tutorial_lib.attention.flash_tiled import online_softmax_update
    assert fl.check_online_softmax_update(online_softmax_update).passed


def _variant(no_alpha_acc=False, no_alpha_l=False, no_max=False, nan_trap=False, normalise=False):
    def fn(m, l, acc, scores, v_tile):
        m_new = torch.maximum(m, scores.amax(-1, keepdim=True))
        shift = m_new if nan_trap else torch.nan_to_num(m_new, neginf=0.0)
        if no_max:
            shift = torch.zeros_like(m_new)
        p = torch.exp(scores - shift)
        a = torch.exp(m - shift) if not no_max else torch.ones_like(m)
        l_new = (l if no_alpha_l else a * l) + p.sum(-1, keepdim=True)
        acc_new = (acc if no_alpha_acc else a * acc) + p @ v_tile
        if normalise:
            acc_new = acc_new / l_new
        return m_new, l_new, acc_new
    return fn


def test_online_softmax_mistakes_are_named():
    r = fl.check_online_softmax_update(_variant(no_alpha_acc=True))
    assert not r.passed and "acc is not rescaled" in r.message
    r = fl.check_online_softmax_update(_variant(no_alpha_l=True))
    assert not r.passed and "l is not rescaled" in r.message
    r = fl.check_online_softmax_update(_variant(nan_trap=True))
    assert not r.passed and "exp(-inf - (-inf)) = nan" in r.message and "masked" in r.message
    r = fl.check_online_softmax_update(_variant(no_max=True))  # right maths, overflows at 1000
    assert not r.passed and "overflow" in r.message and "subtract the running max" in r.message
    r = fl.check_online_softmax_update(_variant(normalise=True))
    assert not r.passed and "unnormalised" in r.message

    def stub(m, l, acc, scores, v_tile):
        raise NotImplementedError

    assert "not implemented yet" in fl.check_online_softmax_update(stub).message
    r = fl.check_online_softmax_update(lambda m, l, acc, s, v: (m, l))
    assert not r.passed and "must return (m, l, acc)" in r.message and "length 2" in r.message
    r = fl.check_online_softmax_update(lambda m, l, acc, s, v: (m.squeeze(-1), l, acc))
    assert not r.passed and "m has shape" in r.message

    def scaled_state(m, l, acc, s, v):  # final acc/l right, but l and acc carry a factor of 2
        m2, l2, a2 = good_update(m, l / 2 if l.abs().sum() else l, acc / 2 if acc.abs().sum() else acc, s, v)
        return m2, 2 * l2, 2 * a2

    r = fl.check_online_softmax_update(scaled_state)
    assert not r.passed and "final output is right" in r.message


def test_softmax_cases_are_what_they_say():
    cases = fl._softmax_cases()
    masked = cases[1][1]
    assert torch.isinf(masked[..., 1, :4]).all()  # query 1's first tile fully masked
    big = cases[3][1]
    assert math.isinf(torch.exp(big).max().item())  # would overflow without subtracting the max
