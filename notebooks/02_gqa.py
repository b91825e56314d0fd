# %% [markdown]
# # 02 · Grouped-query attention: fewer key/value heads
#
# **What you will learn**
#
# - what GQA and MQA change in multi-head attention (a picture drawn from the config), and the one
#   library function that makes it work, `repeat_kv`;
# - how to check that the change is exact where it should be (`n_kv_head = n_head` *is* MHA) and how
#   the GQA paper turns an MHA checkpoint into a GQA one (mean-pooling K/V heads, then "uptraining");
# - what it costs and saves on paper: parameters, FLOPs and KV-cache bytes for GPT-2 small;
# - what it buys **on your machine**: training-step time and memory, and decoding speed with a KV
#   cache — where GQA really pays;
# - whether it still learns: short training runs of MHA vs GQA vs MQA on the Shakespeare corpus
#   (recorded by the guide suite), and the GQA paper's uptraining, run here;
# - how all of this compares with the seed guide's table (1.25× / 1.40× / 1.50× faster, 99.5 / 99 / 98 % quality).
#
# Sizes come from the size profile (`TUTORIAL_PROFILE=smoke|cpu|gpu`); analytic numbers always use
# the real GPT-2 small. The first cell says where the stored outputs were measured.

# %% tags=["nbval-ignore-output"]
# %matplotlib inline
import torch

from tutorial_lib import claims, settings
from tutorial_lib.lessons import gqa
from tutorial_lib.lessons.common import (
    QUALITY_BASELINE,
    env_summary,
    format_rows,
    noise_note,
    recorded_quality,
    row_speedup,
    show_source,
)
from tutorial_lib.measure import cost
from tutorial_lib.model import GPT, get_config
from tutorial_lib.sizes import get_sizes
from tutorial_lib.train import train

DEVICE = settings.get_device()
SIZES = get_sizes()  # the size profile: TUTORIAL_PROFILE=smoke|cpu|gpu
P, Q = SIZES.step, SIZES.quality  # the measured training step; the quality runs
DTYPE = P.torch_dtype  # bf16 autocast on CUDA, fp32 on CPU
print(env_summary(DEVICE))

# %% [markdown]
# ## 1. The idea
#
# In multi-head attention (MHA) every one of the 12 query heads has its own key head and value head.
# **GQA** (Ainslie et al., 2023) lets a *group* of query heads share one K/V head; **MQA** (Shazeer,
# 2019) is the extreme, one K/V head for all. The query side is untouched, so the model still
# computes 12 attention patterns, but the K and V projections — and, at inference, the **KV cache**
# that stores every past token's keys and values — shrink by `n_head / n_kv_head`.
#
# The picture is drawn from the configs themselves (`GPTConfig.n_kv_head`):

# %%
small = get_config("gpt2_small")
gqa.head_grouping_figure([small.replace(n_kv_head=h) for h in (12, 4, 1)])

# %% [markdown]
# ## 2. The implementation, from the library
#
# The projections are sized by `n_kv_head` (`k_proj` and `v_proj` output `n_kv_head * head_dim`
# features). Before attention, `repeat_kv` hands each query head the K/V head of its group —
# query head `h` uses K/V head `h // n_rep`. SDPA can skip even this copy (`enable_gqa=True`).

# %%
from tutorial_lib.attention.reference import repeat_kv
from tutorial_lib.model import CausalSelfAttention

show_source(repeat_kv)

# %%
show_source(CausalSelfAttention.__init__)

# %% [markdown]
# ## 3. Correctness checks
#
# Three things must hold exactly: `repeat_kv` is `repeat_interleave` on the head axis; a config with
# `n_kv_head = n_head` builds the very same model as MHA; and every attention backend computes the
# same thing for grouped heads. We use a 12-head model with tiny dimensions so it runs in a blink.

# %%
from tutorial_lib.attention import attention_core

g = torch.Generator().manual_seed(0)
kv = torch.randn(2, 4, 5, 8, generator=g)
print("repeat_kv(kv, 3) == repeat_interleave(kv, 3, dim=1):",
      torch.equal(repeat_kv(kv, 3), torch.repeat_interleave(kv, 3, dim=1)))

lesson = get_config("tiny", n_head=12, n_embd=96, vocab_size=512)  # 12 heads like GPT-2 small
idx = torch.randint(0, 512, (2, 32), generator=g)
torch.manual_seed(0)
mha = GPT(lesson).eval()
torch.manual_seed(0)
mha12 = GPT(lesson.replace(n_kv_head=12)).eval()
with torch.no_grad():
    print("n_kv_head=12 builds exactly the MHA model:", torch.equal(mha(idx)[0], mha12(idx)[0]))

q = torch.randn(2, 12, 64, 8, generator=g, dtype=torch.float64)
for h in (12, 4, 2, 1):
    k, v = (torch.randn(2, h, 64, 8, generator=g, dtype=torch.float64) for _ in range(2))
    out = {b: attention_core(q, k, v, b, tile=16) for b in ("eager", "sdpa", "tiled")}
    worst = max((o - out["eager"]).abs().max().item() for o in out.values())
    print(f"n_kv_head={h:2d}: eager, sdpa and tiled agree to 1e-12: {worst < 1e-12}")

# %% [markdown]
# ### From an MHA checkpoint to GQA: mean-pooling
#
# The GQA paper does not train GQA models from scratch: it takes an MHA checkpoint, replaces each
# group's K and V heads by their **mean**, and continues training for a few percent of the original
# steps ("uptraining"). `mha_to_gqa` does the conversion with `pool_kv_heads`:

# %%
show_source(gqa.pool_kv_heads)

# %%
print("mha_to_gqa(model, 12) is an exact copy:",
      torch.equal(gqa.mha_to_gqa(mha, 12)(idx)[0], mha(idx)[0]))
w = mha.blocks[0].attn.k_proj.weight  # (12 heads * 8, 96)
for h in (4, 1):
    conv = gqa.mha_to_gqa(mha, h)
    r, D = 12 // h, lesson.head_dim
    group0 = w[: r * D].view(r, D, -1).mean(0)  # the first group's heads, averaged by hand
    print(f"{gqa.attention_label(conv.config)}: {conv.num_params():,} parameters (MHA {mha.num_params():,}); "
          f"K head 0 = mean of MHA K heads 0..{r - 1}: {torch.allclose(conv.blocks[0].attn.k_proj.weight[:D], group0)}")

# %% [markdown]
# ## 4. On paper: parameters, FLOPs and KV-cache bytes (GPT-2 small)
#
# Analytic, for the seed's setting (B=4, T=512, bf16): parameters from the config, the FLOPs of one
# training step (forward + backward, causal attention) from the kit's cost model, and the KV cache
# a decoder would hold for those 4 × 512 tokens.

# %%
paper = gqa.gqa_cost_table(small, (12, 4, 2, 1), batch_size=4, seq_len=512, dtype="bfloat16")
print(f"{'':6} {'params':>12} {'vs MHA':>7} {'train GFLOP':>12} {'vs MHA':>7} {'KV cache MiB':>13} {'vs MHA':>7}")
for r in paper:
    print(f"{r['attention']:6} {r['params']:>12,} {r['params_ratio']:>7.3f} {r['train_flops'] / 1e9:>12,.0f} "
          f"{r['flops_ratio']:>7.3f} {r['kv_cache_bytes'] / 2**20:>13.1f} {r['kv_cache_ratio']:>7.3f}")
mha_c, mqa_c = paper[0], paper[-1]
print(f"\nMQA removes {1 - mqa_c['params_ratio']:.1%} of the parameters and {1 - mqa_c['flops_ratio']:.1%} "
      f"of a training step's FLOPs: if time followed FLOPs, the step could be at most "
      f"{1 / mqa_c['flops_ratio']:.2f}x faster (the seed claims {claims.get('gqa.speedup.kv1').value:.2f}x).")
print(f"Only K and V shrink: the attention projections' FLOPs fall from {mha_c['attn_proj_flops'] / 1e9:,.0f} to "
      f"{mqa_c['attn_proj_flops'] / 1e9:,.0f} GFLOP, while QK^T, AV, the MLP and the LM head are unchanged.")
print(f"The KV cache shrinks {1 / mqa_c['kv_cache_ratio']:.0f}x: that is where the savings are large.")

# %%
budget = 16 * 2**30  # 16 GiB of KV cache in bf16
for h in (12, 4, 2, 1):
    c = small.replace(n_kv_head=h)
    per_tok = gqa.kv_cache_bytes(c, 1, 1, "bfloat16")
    print(f"{gqa.attention_label(c):6}: {per_tok / 1024:5.1f} KiB per cached token -> "
          f"{gqa.max_context_tokens(c, budget, 'bfloat16'):>10,} tokens fit in 16 GiB "
          f"({gqa.max_context_tokens(c, budget, 'bfloat16') // 1024:,} sequences of 1024)")

# %% [markdown]
# ## 5. Measured: one training step
#
# The same training step (forward, backward, AdamW) for each `n_kv_head`, timed with
# `torch.utils.benchmark` in interleaved rounds — MHA, GQA-4, GQA-2, MQA, then again — so load that
# comes and goes slows every variant alike. The speedup is the median of the per-round ratios, and
# its range over the rounds is printed beside it, with the rounds and the change's **analytic
# ceiling**: the most fewer K/V heads can buy by the cost model (the largest of the step's FLOP, byte
# and kernel-launch ratios). The verdict follows the tutorial's three rules
# (`tutorial_lib.speedups`): a range that spans 1.0 is *within noise*, fewer than three rounds give
# *no verdict*, a median above the ceiling is *above the ceiling* — noise, or a different kernel ran,
# not something GQA can deliver. With it, the exact memory of the step: parameters + gradients +
# optimizer state + activations saved for backward (and the allocator's peak on CUDA).

# %% tags=["nbval-ignore-output"]
train_cfg = get_config(P.preset)
train_rows = gqa.measure_training(train_cfg, gqa.kv_head_choices(train_cfg), P.batch, P.seq_len,
                                  device=DEVICE, dtype=DTYPE, rounds=P.rounds)
r0 = train_rows[0]
print(f"{r0['preset']}, B={r0['batch_size']}, T={r0['seq_len']}, {r0['dtype']}, {r0['device_name']}, "
      f"{r0['rounds']} interleaved rounds")
for r in train_rows[1:]:
    if not r["error"]:
        r["speedup_of"] = row_speedup(r, train_cfg, train_cfg.replace(n_kv_head=r["n_kv_head"]))
print(format_rows([{"": r["attention"], "ms/step": r.get("median_ms"), "tokens/s": r.get("tokens_per_s"),
                    "speedup (median [range, rounds; ceiling] verdict)": (
                        r["speedup_of"].text() if r.get("speedup_of") else "baseline"),
                    "memory MiB": r["total_bytes"] / 2**20 if r.get("total_bytes") else None,
                    "peak MiB": r["peak_bytes"] / 2**20 if r.get("peak_bytes") else None,
                    "error": r["error"]} for r in train_rows],
                  formats={"ms/step": "{:.1f}", "tokens/s": "{:.0f}", "memory MiB": "{:.0f}", "peak MiB": "{:.0f}"}))
print(noise_note(train_rows, key="attention") or "every variant's rounds agreed within 25%")

# %% tags=["nbval-ignore-output"]
pred = gqa.gqa_cost_table(train_cfg, [r["n_kv_head"] for r in train_rows], P.batch, P.seq_len)
for r, pr in zip(train_rows[1:], pred[1:]):
    if r.get("speedup_of"):
        print(f"{r['attention']}: measured {r['speedup_of'].text()}; its FLOPs alone allow at most "
              f"{1 / pr['flops_ratio']:.2f}x at this size")
print(f"The seed claims {claims.get('gqa.speedup.kv1').value:.2f}x for MQA.")

# %% [markdown]
# Why so little? In training, every token's K and V are computed once and used once; the K/V
# projections are 2 of the ~12 `n_embd²`-sized matrix products per token per layer (q, k, v, o, and
# the MLP's 8), plus the LM head. Cutting K and V to 1/12 removes about 2/12 × 11/12 of the
# block's linear FLOPs — and nothing from QKᵀ, AV, the MLP or the head. Training-step speedups of
# GQA are small by construction; the seed's 1.25–1.50× cannot come from the training step.
#
# ## 6. Measured: decoding with a KV cache — where GQA pays
#
# When a model *generates*, each new token attends to all cached keys and values. Per step, the
# model reads its weights once **and the whole KV cache** — so as the context grows, the cache, not
# the weights, dominates the memory traffic, and MHA's cache is `n_head / n_kv_head` times bigger.
# For GPT-2 small the cache holds 18,432 numbers per token (MHA) against ~124 M weights, so the
# cache outweighs the weights once batch × context passes roughly 6,700 tokens.
#
# `measure_decode` fills a `KVCache` with `context` positions, then times single-token greedy steps
# (`torch.utils.benchmark`). By default the cache is filled with random keys and values rather than
# by running the model over a prompt: no operation depends on the values, so the decoding time is
# the same, and long contexts cost nothing to set up.

# %% tags=["nbval-ignore-output"]
DS = SIZES.decode  # batch, contexts and new tokens for this size profile
DECODE_BATCH = DS.batch
dec_cfg = get_config(P.preset)
dec = gqa.measure_decode(dec_cfg, DS.contexts, kv_heads=gqa.kv_head_choices(dec_cfg),
                         batch_size=DECODE_BATCH, new_tokens=DS.new_tokens, device=DEVICE,
                         dtype=DTYPE, rounds=P.rounds)
d0 = dec[0]
print(f"{d0.preset}, batch {d0.batch_size}, {d0.new_tokens} new tokens per call, {d0.dtype}, {d0.device_name}, "
      f"{len(d0.round_ms)} interleaved rounds per context")
dec_speed = {(r.n_kv_head, r.context): gqa.decode_speedup(r, dec_cfg) for r in dec if r.ok}
print(format_rows([{"": r.attention, "context": r.context, "tokens/s": r.tokens_per_s if r.ok else None,
                    "ms/step": r.ms_per_step if r.ok else None,
                    "vs MHA (median [range, rounds; ceiling] verdict)": (
                        "baseline" if r.n_kv_head == dec_cfg.n_head else dec_speed[r.n_kv_head, r.context].text())
                    if r.ok else None,
                    "KV cache MiB": r.cache_bytes / 2**20, "error": r.error} for r in dec],
                  formats={"tokens/s": "{:.0f}", "ms/step": "{:.2f}", "KV cache MiB": "{:.2f}"}))
gqa.decode_figure(dec)

# %% tags=["nbval-ignore-output"]
ctx = max(DS.contexts)
at = {r.attention: r for r in dec if r.context == ctx and r.ok}
base, most = at.get("MHA"), at.get(gqa.attention_label(dec_cfg.replace(n_kv_head=1)))
if base and most:
    print(f"At a context of {ctx} tokens (batch {DECODE_BATCH}), MQA's tokens/s over MHA's: "
          f"{dec_speed[most.n_kv_head, ctx].text()}, from a cache {base.cache_bytes / most.cache_bytes:.0f}x "
          f"smaller ({most.cache_bytes / 2**20:.1f} vs {base.cache_bytes / 2**20:.1f} MiB).")
    if (most.n_kv_head, min(DS.contexts)) in dec_speed:
        print(f"At {min(DS.contexts)} tokens: {dec_speed[most.n_kv_head, min(DS.contexts)].text()}.")
    n_par = cost.num_params(dec_cfg.replace(n_kv_head=None))
    for r in (base, most):
        print(f"{r.attention}: the cache is {r.cache_bytes / (r.cache_bytes + n_par * torch.finfo(DTYPE).bits // 8):.0%} "
              f"of the bytes one decoding step must read (cache + weights) at this context.")

# %% [markdown]
# Expect the gain to grow with the share of each step spent reading the cache: near 1× while the
# weights dominate (short contexts, small batches, and the tiny `smoke` model, whose sub-millisecond
# steps are mostly timing noise), towards `n_head / n_kv_head` when the cache dominates. The ceiling
# printed beside each decoding speedup is that bound at the measured setting: the bytes one step
# reads (every weight once, the batch's whole cache), MHA's over the variant's. A smaller
# cache also lets you fit more sequences, or longer ones, in the same memory — often the bigger win
# in serving.
#
# ### Explore: the KV cache and decoding for any context and number of K/V heads
#
# The measurement above covers a few contexts at one batch. The explorer computes the cache and the
# bytes each decoding step reads for any setting -- the weights once, shared by the batch, and every
# sequence's cache: move **context tokens** and **batch** up until the caches outweigh the weights,
# then compare MHA, GQA-4 and MQA. **Measure decode** times this profile's model at the chosen
# setting here (type a context into the box beside the slider): it first shows the predicted time
# and memory of the measurement and asks you to confirm.

# %% tags=["nbval-ignore-output"]
from tutorial_lib.widgets import gqa_explorer  # the explorers need ipywidgets (part of the notebook stack)

gqa_explorer()

# %% [markdown]
# ## 7. Does it still learn? Short training runs, recorded
#
# Speed is half the story. The guide suite trains MHA, GQA-4 and MQA (with the other lessons'
# changes) from the same seeds on the same batches of the Shakespeare corpus and reports the
# validation loss; here are its recorded runs, labelled with where they ran. They are read, not run
# now: several seeds of every variant take many minutes on a CPU, and at this length the verdict is
# what a short run can give. `quality_runs` (notebook 04 shows it, with loss curves) re-runs them.

# %% tags=["nbval-ignore-output"]
qcfg = get_config(Q.preset)
rec = recorded_quality(DEVICE.type)
q_label = {h: gqa.attention_label(qcfg.replace(n_kv_head=h)) for h in gqa.quality_kv_heads(qcfg)}
on_record = {h: rec.rows.get(QUALITY_BASELINE if h == qcfg.n_head else label) for h, label in q_label.items()}
print(f"quality runs {rec.caption}; not measured now")
same_runs = rec.setting == claims.Setting(model=qcfg.name, batch=Q.batch, seq_len=Q.seq_len, steps=Q.steps,
                                          device=DEVICE.type)  # the recorded runs had this profile's sizes
print(format_rows([{"": q_label[h], "seeds": r["seeds"], "val loss": r["val_loss"], "sd": r.get("val_loss_sd"),
                    "vs MHA": r.get("vs_baseline"), "sd ": r.get("vs_baseline_sd"),
                    "verdict": r.get("verdict") or "baseline"} for h, r in on_record.items() if r],
                  formats={"val loss": "{:.3f}", "sd": "{:.3f}", "vs MHA": "{:+.3f}", "sd ": "{:.3f}"}))

# %% [markdown]
# ### Uptraining: pooled from a trained MHA model
#
# Now the paper's recipe: train MHA, convert it by mean-pooling, and continue for a tenth of the
# steps, at the small learning rate the MHA run ended with. The loss right after pooling shows what the conversion destroys; the loss after the short
# uptraining shows how much comes back.

# %% tags=["nbval-ignore-output"]
torch.manual_seed(0)
base_model = GPT(qcfg).to(DEVICE)
kw = dict(batch_size=Q.batch, seq_len=Q.seq_len, eval_batches=Q.eval_batches, progress=False, device=str(DEVICE))
base_run = train(base_model, steps=Q.steps, eval_every=Q.steps, **kw)  # trains base_model in place
up_steps = max(1, Q.steps // 10)
print(f"MHA trained {Q.steps} steps: val loss {base_run.final_val_loss:.3f}")
for h in gqa.quality_kv_heads(qcfg)[1:]:
    conv = gqa.mha_to_gqa(base_model, h)
    up = train(conv, steps=up_steps, eval_every=up_steps, lr=3e-4, warmup_steps=1, **kw)  # where the base run's schedule ended
    label = gqa.attention_label(conv.config)
    scratch = on_record.get(h) if same_runs else None
    print(f"{label:6} pooled from it: {up.val_loss[0]:.3f} right after pooling, {up.final_val_loss:.3f} after "
          f"{up_steps} more steps" + (f" (trained from scratch for {Q.steps} steps: {scratch['val_loss']:.3f}, "
                                      "the recorded mean over seeds)" if scratch else ""))

# %% [markdown]
# ## 8. The seed's claims beside the measurements
#
# The seed's table gives a speedup and a "quality" for each grouping without saying what was timed
# (training step? attention alone? decoding?), at what size, on which device, or what quality means.
# Below, the speedup is set beside our measured **training-step** speedup and beside the **decoding**
# speedup at the longest context; for quality we use the ratio of validation losses
# (MHA loss / variant loss, 100 % = as good as MHA) — one reasonable reading, stated as such.

# %% tags=["nbval-ignore-output"]
speed = {r["n_kv_head"]: r["speedup_of"] for r in train_rows if r.get("speedup_of")}
at_ctx = {h: sp for (h, c), sp in dec_speed.items() if c == ctx}
keys = (4, 2, 1) if train_cfg.n_head == 12 else (1,)  # the seed's groupings are for 12 query heads


def judged(key, sp, where):  # a measured speedup beside the claim: its range, rounds and ceiling go along
    if sp is None:
        return claims.compare(key, None, where=where)
    return claims.compare(key, sp.value, where=where, spread=(sp.low, sp.high), rounds=sp.rounds, ceiling=sp.ceiling)


where = claims.Setting(model=train_cfg.name, batch=P.batch, seq_len=P.seq_len, device=DEVICE.type)
print(f"Training step (measured at {where.describe()}, {settings.device_name(DEVICE)}):")
print(claims.format_table([judged(f"gqa.speedup.kv{h}", speed.get(h), where) for h in keys]))
dec_where = claims.Setting(model=dec_cfg.name, batch=DECODE_BATCH, seq_len=ctx, device=DEVICE.type)
print(f"\nDecoding (measured at {dec_where.describe()}, {settings.device_name(DEVICE)}):")
print(claims.format_table([judged(f"gqa.speedup.kv{h}", at_ctx.get(h), dec_where) for h in keys]))
mha_q = on_record.get(qcfg.n_head)
quality = {h: mha_q["val_loss"] / r["val_loss"] for h, r in on_record.items() if r and mha_q}
print(f"\nQuality = MHA val loss / variant val loss ({rec.caption}, mean over seeds):")
print(claims.format_table([claims.compare(f"gqa.quality.kv{h}", quality.get(h), where=rec.setting)
                           for h in keys]))

# %% [markdown]
# ## Recorded results, for comparison
#
# The guide suite (`python -m tutorial_lib bench --suite guide --out results/<device>.json`) records
# these measurements once per machine; below are the files in `results/`, each labelled with the
# device, dtype, torch version, size profile, date and sizes it was recorded with. They are files,
# not measurements made now: set them beside what this machine measured above. A GPU's numbers
# appear here once a GPU run is recorded. `OPTIMIZATION_GUIDE.md` shows the same tables.

# %% tags=["nbval-ignore-output"]
from tutorial_lib.guide.report import recorded

recorded("gqa_train", "gqa_decode")

# %% [markdown]
# ## Summary
#
# - GQA/MQA shrink only the K and V projections; the query side, QKᵀ, AV, the MLP and the LM head are
#   untouched, so on paper a training step saves a few percent of its FLOPs — the ceiling below.
# - The KV cache shrinks by `n_head / n_kv_head` exactly. During decoding every step reads the whole
#   cache, so the tokens/s gain grows with the share of the bytes read that is cache (long contexts,
#   large batches); in serving, the memory saved also buys longer contexts or bigger batches.
# - `n_kv_head = n_head` is exactly MHA, every backend agrees for grouped heads, and an MHA
#   checkpoint converts to GQA by mean-pooling K/V heads.
#
# What this run measured (printed from the measurements above, so it cannot disagree with them):

# %% tags=["nbval-ignore-output"]
for r in train_rows[1:]:
    if r.get("speedup_of"):
        print(f"- training step, {r['attention']}: {r['speedup_of'].text()}")
for h, sp in sorted(at_ctx.items(), reverse=True):
    print(f"- decoding at context {ctx}, batch {DECODE_BATCH}, n_kv_head={h}, tokens/s over MHA's: {sp.text()}")
for h, r in on_record.items():
    if r and h != qcfg.n_head:
        print(f"- quality (recorded, {Q.steps} steps, {r['seeds']} seeds): {q_label[h]} {r['vs_baseline']:+.3f} ± "
              f"{r['vs_baseline_sd'] or 0:.3f} vs MHA -- {r['verdict']}")

# %% [markdown]
# ## Exercises
#
# 1. **Implement `repeat_kv`** (auto-checked): `(B, n_kv_head, T, D) -> (B, n_kv_head * n_rep, T, D)`,
#    query head `h` served by K/V head `h // n_rep`. The checker below runs your function on several
#    shapes and tells you what is wrong.

# %%
from tutorial_lib.lessons.gqa import check_kv_cache_bytes, check_repeat_kv


def my_repeat_kv(x, n_rep):
    # your code here: return a (B, n_kv_head * n_rep, T, D) tensor
    raise NotImplementedError


check_repeat_kv(my_repeat_kv)

# %% [markdown]
# The checker also recognises typical mistakes, for example tiling the heads instead of repeating
# each one:

# %%
check_repeat_kv(lambda x, n_rep: x.repeat(1, n_rep, 1, 1))


# %% [markdown]
# 2. **KV-cache bytes** (auto-checked): write `my_kv_cache_bytes(config, batch_size, seq_len,
#    bytes_per_element)`; use `config.n_layer`, `config.kv_heads`, `config.head_dim`.

# %%
def my_kv_cache_bytes(config, batch_size, seq_len, bytes_per_element):
    raise NotImplementedError  # your code here


check_kv_cache_bytes(my_kv_cache_bytes)

# %% [markdown]
# 3. **Where does MQA decoding pay on your machine?** Rerun `gqa.measure_decode` with a larger
#    `batch_size` and longer contexts (e.g. `[256, 1024, 4096]` on a GPU). At what context does MQA
#    reach 1.5× MHA's tokens/s? Compare with the share of each step's bytes that is cache:
#    `kv_cache_bytes / (kv_cache_bytes + 2 * num_params)` in bf16.
# 4. **Uptraining budget.** Repeat section 7's uptraining with 1 %, 5 % and 20 % of the steps. How
#    many steps does MQA need to match GQA-4 pooled from the same checkpoint?
# 5. **Attention alone.** Time `attention_core(q, k, v, "sdpa")` with 12 vs 1 K/V heads at T=2048
#    (`tutorial_lib.measure.timing.time_fn`). Is attention itself faster in training? Why (or why not)?
