"""tutorial_lib.lessons.gqa: MHA -> GQA pooling, analytic sizes, decode measurement, the picture.

References used here: explicit Python loops over heads (pooling), ``torch.repeat_interleave``
(an MHA model whose K/V heads are copies of the pooled heads must equal the GQA model),
``KVCache.nbytes`` and module parameter counts (analytic sizes), ``model.generate`` without a
cache (the timed decoder's tokens).
"""
import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from tutorial_lib.lessons import common, gqa
from tutorial_lib.measure import cost
from tutorial_lib.model import GPT, KVCache, get_config
from tutorial_lib.train import train, val_loss

TINY = get_config("tiny", n_head=4, n_embd=64)  # 4 heads of 16
TWELVE = get_config("tiny", n_head=12, n_embd=96, n_layer=2)  # 12 heads of 8: the seed's grouping


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    return GPT(cfg).eval()


def _idx(cfg, B=2, T=24, seed=1):
    return torch.randint(0, cfg.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


def test_attention_label():
    assert gqa.attention_label(TWELVE) == "MHA"
    assert gqa.attention_label(TWELVE.replace(n_kv_head=12)) == "MHA"
    assert gqa.attention_label(TWELVE.replace(n_kv_head=4)) == "GQA-4"
    assert gqa.attention_label(TWELVE.replace(n_kv_head=1)) == "MQA"


@pytest.mark.parametrize("old,new", [(12, 4), (12, 1), (12, 12), (4, 2), (6, 3)])
def test_pool_kv_heads_matches_loop(old, new):
    D, C = 5, 7
    w = torch.randn(old * D, C, dtype=torch.float64)
    b = torch.randn(old * D, dtype=torch.float64)
    r = old // new
    ref_w = torch.stack([sum(w[(g * r + j) * D:(g * r + j + 1) * D] for j in range(r)) / r
                         for g in range(new)]).reshape(new * D, C)
    ref_b = torch.stack([sum(b[(g * r + j) * D:(g * r + j + 1) * D] for j in range(r)) / r
                         for g in range(new)]).reshape(new * D)
    torch.testing.assert_close(gqa.pool_kv_heads(w, old, new), ref_w, rtol=0, atol=1e-12)
    torch.testing.assert_close(gqa.pool_kv_heads(b, old, new), ref_b, rtol=0, atol=1e-12)


def test_pool_kv_heads_bad_input():
    w = torch.randn(12 * 4, 8)
    with pytest.raises(ValueError, match="new_kv_head=5"):
        gqa.pool_kv_heads(w, 12, 5)
    with pytest.raises(ValueError, match="n_kv_head=7"):
        gqa.pool_kv_heads(w, 7, 7)


def test_mha_to_gqa_same_heads_is_exact_copy():
    m = _model(TWELVE)
    c = gqa.mha_to_gqa(m, 12)
    idx = _idx(TWELVE)
    torch.testing.assert_close(c(idx)[0], m(idx)[0], rtol=0, atol=0)
    assert c is not m and c.config.kv_heads == 12


@pytest.mark.parametrize("cfg,n_kv", [(TWELVE, 4), (TWELVE, 2), (TWELVE, 1), (TINY, 2),
                                      (TINY.replace(bias=True), 1)])
def test_mha_to_gqa_equals_mha_with_repeated_pooled_heads(cfg, n_kv):
    """The GQA model must compute what an MHA model computes when each of its K/V heads is the
    mean of its group (repeat_interleave of the pooled heads) -- an independent construction."""
    m = _model(cfg)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    g = gqa.mha_to_gqa(m, n_kv)
    assert g.config.kv_heads == n_kv and g.config.n_head == cfg.n_head
    assert g.num_params() < m.num_params()
    ref = _model(cfg)
    D, r = cfg.head_dim, cfg.n_head // n_kv
    sd = dict(before)
    for name, t in before.items():
        if ".attn.k_proj." in name or ".attn.v_proj." in name:
            heads = t.reshape(cfg.n_head, D, *t.shape[1:])
            pooled = torch.stack([heads[gi * r:(gi + 1) * r].mean(0) for gi in range(n_kv)])
            sd[name] = pooled.repeat_interleave(r, dim=0).reshape(t.shape)
    ref.load_state_dict(sd)
    idx = _idx(cfg)
    torch.testing.assert_close(g(idx)[0], ref(idx)[0], rtol=1e-5, atol=1e-5)
    for k, v in m.state_dict().items():  # the source is unchanged
        assert torch.equal(v, before[k]), k


def test_mha_to_gqa_from_gqa_and_bad_input():
    m = _model(TWELVE.replace(n_kv_head=4))
    assert gqa.mha_to_gqa(m, 2).config.kv_heads == 2
    with pytest.raises(ValueError, match="pooled, not split"):
        gqa.mha_to_gqa(m, 6)  # 6 divides 12 but not 4
    with pytest.raises(ValueError, match="n_kv_head=5"):
        gqa.mha_to_gqa(m, 5)
    with pytest.raises(ValueError, match="n_kv_head=0"):
        gqa.mha_to_gqa(m, 0)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", torch.float16])
@pytest.mark.parametrize("n_kv", [12, 4, 1])
def test_kv_cache_bytes_matches_kvcache(dtype, n_kv):
    from tutorial_lib.settings import parse_dtype

    cfg = TWELVE.replace(n_kv_head=n_kv)
    cache = KVCache(cfg, 3, 40, dtype=parse_dtype(dtype))
    assert gqa.kv_cache_bytes(cfg, 3, 40, dtype) == cache.nbytes


def test_kv_cache_bytes_gpt2_small_by_hand():
    cfg = get_config("gpt2_small")
    # 2 (K,V) x 12 layers x 12 heads x 64 dims x 2 bytes = 36,864 bytes per token in bf16
    assert gqa.kv_cache_bytes(cfg, 1, 1, "bfloat16") == 36864
    assert gqa.kv_cache_bytes(cfg.replace(n_kv_head=1), 4, 1024, "bfloat16") == 36864 // 12 * 4 * 1024
    assert gqa.max_context_tokens(cfg, 36864 * 10, "bfloat16") == 10
    with pytest.raises(ValueError, match="seq_len=0"):
        gqa.kv_cache_bytes(cfg, 1, 0)
    with pytest.raises(ValueError, match="dtype='int4'"):
        gqa.kv_cache_bytes(cfg, 1, 1, "int4")


@pytest.mark.parametrize("bias", [False, True])
def test_attention_params_match_module(bias):
    from tutorial_lib.model import CausalSelfAttention

    for n_kv in (12, 4, 1):
        cfg = TWELVE.replace(n_kv_head=n_kv, bias=bias)
        mod = CausalSelfAttention(cfg)
        p = gqa.attention_params(cfg)
        assert p["total"] == sum(t.numel() for t in mod.parameters())
        assert p["k"] == sum(t.numel() for t in mod.k_proj.parameters())
        assert p["q"] == sum(t.numel() for t in mod.q_proj.parameters())


def test_gqa_cost_table():
    rows = gqa.gqa_cost_table(TWELVE, batch_size=2, seq_len=16, dtype="float32")
    assert [r["attention"] for r in rows] == ["MHA", "GQA-4", "GQA-2", "MQA"]
    for r in rows:
        assert r["params"] == GPT(TWELVE.replace(n_kv_head=r["n_kv_head"])).num_params()
        assert r["kv_cache_ratio"] == pytest.approx(r["n_kv_head"] / 12)
        assert r["kv_cache_bytes"] == KVCache(TWELVE.replace(n_kv_head=r["n_kv_head"]), 2, 16).nbytes
    flops = [r["train_flops"] for r in rows]
    assert flops == sorted(flops, reverse=True) and rows[0]["flops_ratio"] == 1.0
    # only the K and V projections shrink: 2 of the 4 attention projections, scaled by n_kv/n_head
    mha, mqa = rows[0], rows[-1]
    assert mha["attn_proj_flops"] - mqa["attn_proj_flops"] == pytest.approx(
        mha["attn_proj_flops"] / 2 * (1 - 1 / 12))
    with pytest.raises(ValueError, match="n_kv_head=5"):
        gqa.gqa_cost_table(TWELVE, kv_heads=(12, 5))


def test_greedy_decoder_matches_generate_without_cache():
    cfg = TINY.replace(n_kv_head=2)
    m = _model(cfg)
    prompt = _idx(cfg, B=2, T=10)
    decode, cache = gqa.greedy_decoder(m, prompt, 6)
    first = decode()
    second = decode()  # the rewind makes every call identical
    ref = m.generate(prompt, 7, use_cache=False)[:, 10:]
    assert torch.equal(first, ref) and torch.equal(second, ref)
    assert cache.length == 16
    # random prefill: the same cache size and positions, no model run over the prompt
    decode_r, cache_r = gqa.greedy_decoder(m, prompt, 6, prefill="random")
    assert cache_r.length == 10 and cache_r.k[:, :, :, :10].abs().sum() > 0
    out = decode_r()
    assert out.shape == (2, 7) and torch.equal(out[:, :1], prompt[:, -1:]) and torch.equal(decode_r(), out)
    assert cache_r.nbytes == cache.nbytes
    with pytest.raises(ValueError, match="prefill='none'"):
        gqa.greedy_decoder(m, prompt, 2, prefill="none")


def test_measure_decode_rows_and_errors(monkeypatch):
    DEC = TINY.replace(vocab_size=256, n_layer=1)
    rows = gqa.measure_decode(DEC, [8, 24], kv_heads=[4, 1], batch_size=2, new_tokens=3,
                              device="cpu", min_run_time=0.01, prefill="model", rounds=2)
    assert [(r.attention, r.context) for r in rows] == [("MHA", 8), ("MHA", 24), ("MQA", 8), ("MQA", 24)]
    for r in rows:
        assert r.ok and r.tokens_per_s > 0 and r.device == "cpu" and r.dtype == "float32"
        assert len(r.round_ms) == 2 and r.speedup_min <= r.speedup_vs_first <= r.speedup_max  # interleaved
        assert r.ms_per_step == pytest.approx(sorted(r.round_ms)[0] / 2 + sorted(r.round_ms)[1] / 2)
        assert r.tokens_per_s == pytest.approx(2 * 1e3 / r.ms_per_step)
        assert r.cache_bytes == gqa.kv_cache_bytes(DEC.replace(n_kv_head=r.n_kv_head), 2,
                                                   r.context + 3)
    # a context beyond block_size still runs (the config is widened for RoPE)
    short = DEC.replace(block_size=16)
    long = gqa.measure_decode(short, [16], batch_size=1, new_tokens=2, min_run_time=0.01)  # random prefill
    assert long[0].ok and long[0].cache_bytes == gqa.kv_cache_bytes(short, 1, 18)

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")

    monkeypatch.setattr(gqa, "_decoder", oom)
    rows = gqa.measure_decode(DEC, [8, 16], batch_size=1, new_tokens=2, min_run_time=0.01)
    assert len(rows) == 2 and all("out of memory" in r.error for r in rows)
    assert all(r.tokens_per_s is None and r.cache_bytes for r in rows)


@pytest.mark.parametrize("kw,match", [
    ({"context_lengths": []}, "empty"), ({"context_lengths": [0]}, "context length 0"),
    ({"batch_size": 0}, "batch_size=0"), ({"new_tokens": -1}, "new_tokens=-1"),
    ({"kv_heads": [3]}, "n_kv_head=3"), ({"dtype": "int8"}, "dtype='int8'"),
    ({"prefill": "zeros"}, "prefill='zeros'")])
def test_measure_decode_bad_input(kw, match):
    args = {"context_lengths": [8], **kw}
    with pytest.raises(ValueError, match=match):
        gqa.measure_decode(TINY, **args)


def test_head_grouping_figure():
    cfgs = [TWELVE.replace(n_kv_head=h) for h in (12, 4, 1)]
    fig = gqa.head_grouping_figure(cfgs, title="heads")
    axes = fig.get_axes()
    assert len(axes) == 3
    assert [len(ax.patches) for ax in axes] == [12 + 12, 12 + 4, 12 + 1]
    assert [len(ax.lines) for ax in axes] == [12, 12, 12]  # one wire per query head
    assert "GQA-4" in axes[1].get_title()
    with pytest.raises(ValueError, match="empty"):
        gqa.head_grouping_figure([])


# ---- uptraining: train() continues a given model in place ---------------------------------------
def test_val_loss_matches_train_runs_first_evaluation():
    cfg = TINY.replace(vocab_size=50257)
    h = train(cfg, steps=1, batch_size=2, seq_len=16, eval_every=1, eval_batches=2, progress=False)
    torch.manual_seed(0)  # train() seeds the model with its seed (0) the same way
    m = GPT(cfg)
    assert val_loss(m, batch_size=2, seq_len=16, eval_batches=2) == pytest.approx(h.val_loss[0], abs=1e-6)


def test_training_a_converted_model_continues_it_in_place():
    cfg = TINY.replace(vocab_size=50257)
    m = _model(cfg)
    kw = dict(batch_size=2, seq_len=16, eval_batches=1, eval_every=3, warmup_steps=1, progress=False)
    h = train(m, steps=6, **kw)
    assert h.val_steps == [0, 3, 6] and h.val_loss[-1] < h.val_loss[0] - 0.1
    assert val_loss(m, batch_size=2, seq_len=16, eval_batches=1) == pytest.approx(h.val_loss[-1])  # in place
    g = gqa.mha_to_gqa(m, 1)
    before = val_loss(g, batch_size=2, seq_len=16, eval_batches=1)
    h2 = train(g, steps=3, **kw)
    assert h2.val_loss[0] == pytest.approx(before)  # starts from the converted weights, not a fresh init
    assert g.config.kv_heads == 1 and h2.val_loss[-1] < h2.val_loss[0]
    with pytest.raises(ValueError, match="steps=0"):
        train(g, steps=0, **kw)


def test_kv_head_choices():
    assert gqa.kv_head_choices(get_config("gpt2_small")) == [12, 4, 2, 1]
    assert gqa.kv_head_choices(TINY) == [4, 2, 1]
    assert gqa.kv_head_choices(get_config("tiny", n_head=6, n_embd=48)) == [6, 2, 1]
    assert gqa.quality_kv_heads(get_config("gpt2_small")) == [12, 4, 1]
    assert gqa.quality_kv_heads(TINY) == [4, 2, 1]
    assert gqa.quality_kv_heads(get_config("tiny", n_head=2, n_embd=32)) == [2, 1]


def test_measure_training(monkeypatch):
    cfg = TINY.replace(vocab_size=256, n_layer=1)
    rows = gqa.measure_training(cfg, [4, 1], batch_size=2, seq_len=16, device="cpu", min_run_time=0.01, rounds=2)
    mha, mqa = rows
    assert (mha["attention"], mqa["attention"]) == ("MHA", "MQA")
    # timed interleaved, round by round (a noisy round under load adds rounds, up to twice as many)
    assert mha["speedup"] == 1.0 and mha["rounds"] == mqa["rounds"] and 2 <= mha["rounds"] <= 4
    assert mqa["speedup_min"] <= mqa["speedup"] <= mqa["speedup_max"]
    assert mha["params"] == GPT(cfg).num_params() and mqa["params"] < mha["params"]
    # exact memory: params + grads + 2 AdamW moments (+ step counters) + activations
    assert mha["total_bytes"] >= 4 * 4 * mha["params"] + mha["activations_bytes"]
    assert mha["peak_bytes"] is None and mha["error"] is None

    def boom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(common, "prepare_step", boom)
    rows = gqa.measure_training(cfg, [4, 2], batch_size=1, seq_len=8, rounds=1)
    assert all("OutOfMemoryError" in r["error"] and r["speedup"] is None for r in rows)
    with pytest.raises(ValueError, match="n_kv_head=3"):
        gqa.measure_training(cfg, [3], 1, 8)


def test_decode_figure():
    def row(att, h, ctx, tps, err=None):
        return gqa.DecodeResult(attention=att, n_kv_head=h, context=ctx, batch_size=2, new_tokens=4,
                                device="cpu", device_name="cpu", dtype="float32", preset="tiny",
                                cache_bytes=1024 * h * ctx, tokens_per_s=tps, error=err)

    rows = [row("MHA", 4, 16, 10.0), row("MHA", 4, 64, None, "OutOfMemoryError: x"),
            row("MQA", 1, 16, 12.0), row("MQA", 1, 64, 11.0)]
    fig = gqa.decode_figure(rows)
    a1, a2 = fig.get_axes()
    assert [len(ln.get_xdata()) for ln in a1.get_lines()] == [1, 2]  # the failed point is left out
    assert [len(ln.get_xdata()) for ln in a2.get_lines()] == [2, 2]  # cache bytes are analytic
    assert "1 points failed" in fig._suptitle.get_text()
    with pytest.raises(ValueError):
        gqa.decode_figure([])


def test_the_decode_estimate_follows_the_batch():
    """One decoding step reads the weights once for the whole batch and every sequence's cache:
    the more sequences, the larger the cache's share and the larger GQA's gain (the explorer
    showed 3.13x and 258.9 MiB per token at batch 1 and at batch 32 alike)."""
    cfg = get_config("gpt2_small", block_size=16384)

    def weights(h):  # every parameter once, bf16 (fewer K/V heads: smaller k and v projections)
        return cost.num_params(cfg.replace(n_kv_head=h)) * 2

    def cache(h, B, T):  # K and V, every layer, bf16
        return 2 * cfg.n_layer * B * h * T * cfg.head_dim * 2
    one, many = (gqa.gqa_point(4, 16384, batch_size=B, dtype="bfloat16", docs=[]) for B in (1, 32))
    for B, r in ((1, one), (32, many)):
        assert r["bytes_per_step"] == weights(4) + cache(4, B, 16384) and r["weight_bytes"] == weights(4)
        assert r["bytes_per_token"] == pytest.approx(r["bytes_per_step"] / B)
        assert r["decode_speedup_analytic"] == pytest.approx(
            (weights(12) + cache(12, B, 16384)) / (weights(4) + cache(4, B, 16384)))
    assert one["decode_speedup_analytic"] < many["decode_speedup_analytic"] < 3.0  # towards 12 / 4
    assert many["bytes_per_token"] < one["bytes_per_token"]  # the weights' share is split 32 ways
    assert gqa.decode_bytes_per_token(cfg, 16384, "bfloat16") == weights(12) + cache(12, 1, 16384)


def _ceilings(**kw):
    from tutorial_lib.measure.ceilings import Ceilings
    return Ceilings(**{"device": "cpu", "device_name": "a CPU", "dtype": "float32", "peak_flops": 1e11,
                       "bandwidth": 1e10, "overhead_s": 1e-5, **kw})


def test_plan_decode_says_time_and_memory_before_measuring():
    cfg = get_config("gpt2_mini")
    plan = gqa.plan_decode(cfg, 1024, [12, 4], 2, 8, "float32", rounds=3, min_run_time=0.1,
                           ceilings=_ceilings(), available=2**36, fill_numbers_per_s=1e8)
    assert plan.action == "measure" and plan.kv_heads == [12, 4]
    # memory: both models and their filled caches at once (KVCache's own size), + one K or V fill
    caches = {h: KVCache(cfg.replace(n_kv_head=h), 2, 1024 + 8, device="meta", dtype=torch.float32).nbytes
              for h in (12, 4)}
    params = {h: GPT(cfg.replace(n_kv_head=h)).num_params() for h in (12, 4)}
    assert plan.memory_bytes == sum(4 * params[h] + caches[h] for h in (12, 4)) + caches[12] // 2
    # a smaller cache is a shorter predicted step; more rounds are a longer measurement
    assert plan.step_ms[4] < plan.step_ms[12]
    longer = gqa.plan_decode(cfg, 1024, [12, 4], 2, 8, "float32", 5, 0.1, _ceilings(), 2**36, 1e8)
    assert longer.seconds > plan.seconds
    slower = gqa.plan_decode(cfg, 1024, [12, 4], 2, 8, "float32", 3, 0.1, _ceilings(bandwidth=1e9), 2**36, 1e8)
    assert slower.step_ms[12] > plan.step_ms[12] and slower.seconds > plan.seconds
    off = gqa.plan_decode(cfg, 1024, [12, 4], 2, 8, "float32", 3, 0.1, _ceilings(), 2**36, 1e8,
                          correction=(4.0, "measured / predicted here"))
    assert off.step_ms[4] == pytest.approx(4 * plan.step_ms[4]) and "x4.00: measured / predicted here" in off.basis
    msg = plan.message()
    assert "MHA and GQA-4" in msg and "batch 2" in msg and "context 1,024" in msg and "Measuring takes ~" in msg
    # a cache that cannot fit is refused before anything is built
    big = gqa.plan_decode(cfg, 32768, [12, 4], 64, 8, "float32", 3, 0.1, _ceilings(), available=2**30)
    assert big.action == "refuse" and "Not measured" in big.message()
    for bad, field in (({"context": 0}, "context"), ({"batch_size": -1}, "batch_size"), ({"rounds": 0}, "rounds")):
        args = dict(context=1024, batch_size=2, rounds=3)
        args.update(bad)
        with pytest.raises(ValueError, match=field):
            gqa.plan_decode(cfg, args["context"], [12], args["batch_size"], 8, "float32", args["rounds"], 0.1,
                            _ceilings())
    with pytest.raises(ValueError, match="n_kv_head"):
        gqa.plan_decode(cfg, 1024, [5], 1, 8, "float32", 3, 0.1, _ceilings())


def test_gqa_point_cache_bytes_formula():
    r = gqa.gqa_point(4, 1000, batch_size=3, dtype="bfloat16", docs=[])
    cfg = get_config("gpt2_small")
    assert r["cache_bytes"] == 2 * cfg.n_layer * 3 * 4 * 1000 * cfg.head_dim * 2
    assert r["cache_ratio"] == pytest.approx(4 / 12)
    assert r["label"] == "GQA-4" and r["decode_speedup_analytic"] > 1
    assert gqa.gqa_point(12, 1000, docs=[])["decode_speedup_analytic"] == 1.0
    with pytest.raises(ValueError):
        gqa.gqa_point(5, 1000, docs=[])
