# %% [markdown]
# # 06 · Sliding-window attention: O(T·W) for real
#
# **What you will learn**
#
# - what a sliding window of W keys changes in causal attention, and how far a stack of windowed
#   layers can still see (its receptive field);
# - why a band **mask** on ordinary attention saves nothing — the T×T scores are still computed — and
#   how a **blocked** implementation computes only about W scores per query;
# - three implementations from the library — SDPA with a band mask, the blocked `local` path (forward
#   *and* backward on CPU), and FlexAttention with a sliding-window block mask — checked against a
#   naive reference, gradients included;
# - what they cost **on your machine** as T grows at fixed W: time and memory on log-log axes with
#   fitted slopes (≈2 for full attention, bending to ≈1 for the window);
# - whether the model still learns as well, and what the whole training step gains;
# - how this compares with the seed guide's "O(n × window)" and its decision tree ("T ≥ 512 → sliding
#   window first").
#
# Sizes come from the size profile (`TUTORIAL_PROFILE=smoke|cpu|gpu`); analytic numbers use fixed
# sizes. The first cell says where the stored outputs were measured.

# %% tags=["nbval-ignore-output"]
# %matplotlib inline
import math

import torch

from tutorial_lib import claims, settings
from tutorial_lib.attention import attention_core
from tutorial_lib.attention import sliding_window as Wn
from tutorial_lib.attention.flex import flex_block_mask, has_flex_attention
from tutorial_lib.attention.reference import causal_mask, visible_pairs
from tutorial_lib.attention.sliding_window import local_pairs
from tutorial_lib.lessons import sliding_window as WL
from tutorial_lib.lessons.common import (
    QUALITY_BASELINE,
    env_summary,
    format_rows,
    loglog_scaling,
    recorded_quality,
    show_source,
)
from tutorial_lib.lessons.sliding_window import receptive_field_figure, window_work_figure
from tutorial_lib.model import get_config
from tutorial_lib.sizes import get_sizes

DEVICE = settings.get_device()
SIZES = get_sizes()  # the size profile: TUTORIAL_PROFILE=smoke|cpu|gpu
S, Q = SIZES.window, SIZES.quality  # the window lesson's sweep and payoff; the quality runs
print(env_summary(DEVICE))
print(f"window lesson sizes: sweep W={S.window}, T={list(S.seq_lens)}, B={S.batch} H={S.n_head} "
      f"D={S.head_dim}; quality {Q.preset} T={Q.seq_len} W={Q.window}, {Q.steps} steps, seeds {list(Q.seeds)}")

# %% [markdown]
# ## 1. The idea
#
# With a sliding window of **W**, query *i* attends to keys *i−W+1 … i* — itself and the W−1 tokens
# before it — instead of all *i+1* tokens before it (Longformer, Beltagy et al. 2020; Mistral 7B uses
# W = 4096). Each query then needs at most W scores, so the work is about **T·W instead of T²/2**:
# linear in T once T ≫ W.
#
# The catch is in *how* you implement it. Below, each square is one (query, key) score, for T = 24
# and W = 6: blue scores are used, red ones are computed and then thrown away by a mask, white ones
# are never computed.

# %%
window_work_figure(T=24, window=6)

# %% [markdown]
# - **Full causal** attention computes the lower triangle (a fused causal kernel skips the rest).
# - A **band mask** passed to ordinary attention computes *every* score — the whole square, more than
#   causal — and then discards most of them. A mask says which scores to throw away, not which to skip.
# - The **blocked local** path (the library's `local` backend) computes the first W queries causally,
#   then, for each block of b queries, only its own block and the W−1 keys before it: a narrow band of
#   blocks around the diagonal. Its cost per query is about W + b, whatever T is.
#
# At the sizes we will time, the counts are (per head and sequence; "computed" as the kernels do it):

# %%
T, W = 4096, 256
rows = [
    {"implementation": "full causal (ideal causal kernel)", "computed": T * (T + 1) // 2, "used": visible_pairs(T)},
    {"implementation": "band mask on full attention", "computed": T * T, "used": visible_pairs(T, W)},
    {"implementation": "local, blocked (CPU schedule)", "computed": local_pairs(T, W, "cpu"), "used": visible_pairs(T, W)},
    {"implementation": "local_sdpa, (W x 2W) blocks", "computed": local_pairs(T, W, "cuda"), "used": visible_pairs(T, W)},
]
for r in rows:
    r["vs causal"] = r["computed"] / rows[0]["computed"]
print(f"T={T}, W={W}, per head:")
print(format_rows(rows, formats={"computed": "{:,}", "used": "{:,}", "vs causal": "{:.3f}"}))
print(f"\nThe window uses {visible_pairs(T, W) / visible_pairs(T):.1%} of the causal scores; "
      f"the blocked path computes {local_pairs(T, W, 'cpu') / visible_pairs(T, W):.2f}x what it uses.")

# %% [markdown]
# ### How far can a windowed model see?
#
# One layer lets a token look W−1 positions back. The next layer looks W−1 further back *from tokens
# that already looked back*, so after L layers the last token depends on up to **L·(W−1) + 1** input
# tokens (`window.receptive_field`). Information still flows from far away — but only through the
# intermediate tokens, one hop of W per layer.

# %%
receptive_field_figure(n_layer=4, window=6, T=30)

# %%
print("GPT-2 small has 12 layers:")
for w in (64, 128, 256, 512):
    print(f"  W={w:4d}: one layer sees {w} tokens, the 12-layer stack {Wn.receptive_field(12, w):,}")

# %% [markdown]
# That formula is a claim about the model, so let us check it on a real one: a 3-layer GPT with a
# window of 5, asking autograd which input embeddings the last position's logits depend on.

# %%
from tutorial_lib.model import GPT

cfg = get_config("tiny", n_layer=3, window=5, attn_backend="local")
torch.manual_seed(0)
model = GPT(cfg).double()
idx = torch.randint(0, cfg.vocab_size, (1, 30), generator=torch.Generator().manual_seed(0))
emb = {}


def keep(module, inputs, out):  # remember the embeddings and ask autograd for their gradient
    out.retain_grad()
    emb["x"] = out


hook = model.wte.register_forward_hook(keep)
logits, _ = model(idx)
hook.remove()
logits[0, -1].sum().backward()
depends = (emb["x"].grad[0].abs().sum(-1) > 0).nonzero().flatten()
print(f"the last position (29) depends on inputs {depends.min().item()}..{depends.max().item()}: "
      f"{len(depends)} tokens; receptive_field(3, 5) = {Wn.receptive_field(3, 5)}")

# %% [markdown]
# ## 2. Three implementations, from the library
#
# **(1) SDPA with a band mask** — one line, and the same O(T²) work as full attention:

# %%
show_source(Wn.band_mask_attention)

# %% [markdown]
# **(2) The blocked local path.** `local_window_attention` is the entry point. On CPU it runs PyTorch's
# fused CPU flash-attention kernel three times on *views* of q, k, v — the first W queries causally,
# then every block of b queries against its own block (causal, no mask) and against the W−1 keys
# before it (one small mask shared by all blocks). The key windows of neighbouring blocks overlap;
# `as_strided` makes them a view, so no key is copied, and grouped K/V heads (GQA) are used as they
# are.

# %%
show_source(Wn.local_window_attention)

# %% [markdown]
# The two halves of a block's keys are disjoint, so their softmaxes can be merged exactly with the
# **log-sum-exp** each kernel call returns — the same merge as FlashAttention's online softmax:
# `out = (e^{l1}·o1 + e^{l2}·o2) / (e^{l1} + e^{l2})`. Backward needs no new math either: a flash
# backward recomputes the probabilities as `exp(score − lse)` and uses `rowsum(dO·O)`, so calling the
# kernel's own backward on each half with the *merged* output and lse gives each half's exact share
# of the gradient; we add them up (and fold the overlapping key windows back).

# %%
show_source(Wn._LocalWindowCPU.forward)

# %%
show_source(Wn._merge)

# %% [markdown]
# The same blocking written with plain SDPA calls — block 0 causal, then one masked call over all
# (W × 2W) blocks — device-agnostic and short (autograd does the backward), but it computes 2W scores
# per query through a mask, and copies K/V into blocks:

# %%
show_source(Wn.local_window_attention_sdpa)

# %% [markdown]
# **(3) FlexAttention** describes the window as a `mask_mod`; `create_block_mask` turns it into a
# *block* mask, so tiles that are entirely outside the window are skipped, not computed. On CUDA it is
# compiled into a fused Triton kernel (forward and backward). On CPU, PyTorch runs flex forward only —
# **there is no CPU backward** — so it cannot train here.

# %%
show_source(flex_block_mask.__wrapped__)  # (it is wrapped in an lru_cache)


# %% [markdown]
# ## 3. Correctness: all three against a naive reference
#
# A plain per-query loop in float64: for query *i*, softmax over keys max(0, i−W+1)…i, with K/V head
# `h // n_rep` for query head `h`. T = 150 is not a multiple of any block, heads are grouped
# (6 query heads, 2 K/V heads), and the windows include 1 (only itself) and windows ≥ T (plain causal).

# %%
def naive_window_attention(q, k, v, window):
    B, H, T, D = q.shape
    kv_of = [h // (H // k.shape[1]) for h in range(H)]  # the K/V head of each query head
    k, v = k.double()[:, kv_of], v.double()[:, kv_of]
    rows = []
    for i in range(T):  # query i: softmax over keys max(0, i-W+1) .. i
        lo = max(0, i - window + 1)
        s = torch.einsum("bhd,bhjd->bhj", q[:, :, i].double(), k[:, :, lo:i + 1]) / math.sqrt(D)
        rows.append(torch.einsum("bhj,bhjd->bhd", torch.softmax(s, dim=-1), v[:, :, lo:i + 1]))
    return torch.stack(rows, dim=2)


g = torch.Generator().manual_seed(0)
q0 = torch.randn(2, 6, 150, 16, generator=g, dtype=torch.float64)
k0, v0 = (torch.randn(2, 2, 150, 16, generator=g, dtype=torch.float64) for _ in range(2))
dout = torch.randn(2, 6, 150, 16, generator=g, dtype=torch.float64)
impls = {"band mask": Wn.band_mask_attention, "local": Wn.local_window_attention,
         "local_sdpa": Wn.local_window_attention_sdpa}
refs = {}
for window in (1, 3, 64, 150, 300):
    q, k, v = (t.clone().requires_grad_() for t in (q0, k0, v0))
    ref = refs[window] = naive_window_attention(q, k, v, window)
    ref_grads = torch.autograd.grad(ref, (q, k, v), dout)
    line = []
    for name, fn in impls.items():
        q, k, v = (t.clone().requires_grad_() for t in (q0, k0, v0))
        out = fn(q, k, v, window)
        grads = torch.autograd.grad(out, (q, k, v), dout)
        err = max([(out - ref).abs().max().item()] + [(a - b).abs().max().item() for a, b in zip(grads, ref_grads)])
        line.append(f"{name} {'ok' if err < 1e-9 else 'WRONG'}")
    print(f"W={window:3d}: out and dq, dk, dv within 1e-9 of the reference -- " + ", ".join(line))

# %%
if has_flex_attention():
    import warnings
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flex without torch.compile on CPU: a (known) warning
        for window in (3, 64, 150):
            out = attention_core(q0, k0, v0, "flex", window)
            err = (out - refs[window]).abs().max().item()
            print(f"W={window:3d}: flex forward within 1e-9 of the reference: {err < 1e-9}")
    try:
        attention_core(q0.clone().requires_grad_(), k0, v0, "flex", 8)
    except RuntimeError as e:
        print("flex with gradients on CPU:", str(e).split(".")[0])
else:
    print("this PyTorch has no flex_attention")

# %% [markdown]
# The whole model agrees too: a GPT with `attn_backend="local"` against the textbook `eager` backend
# with the same window — logits and every parameter's gradient (the test suite checks this and more:
# any block size, bf16, ragged T, `tests/test_window.py`).

# %%
cfg = get_config("tiny", window=16, n_kv_head=2)
torch.manual_seed(0)
eager, local = GPT(cfg.replace(attn_backend="eager")).double(), GPT(cfg.replace(attn_backend="local")).double()
local.load_state_dict(eager.state_dict())
idx = torch.randint(0, cfg.vocab_size, (2, 101), generator=torch.Generator().manual_seed(1))
(le, loss_e), (ll, loss_l) = eager(idx, idx), local(idx, idx)
loss_e.backward()
loss_l.backward()
worst = max((a.grad - b.grad).abs().max().item() for a, b in zip(eager.parameters(), local.parameters()))
print(f"GPT local vs eager, W=16, GQA, T=101: logits match {torch.allclose(le, ll, atol=1e-10)}, "
      f"gradients match {worst < 1e-9}")

# %% [markdown]
# ## 4. Measured: time vs T at a fixed window
#
# Now the attention core alone — forward + backward of (B, H, T, D) inputs — for each implementation
# as T grows at fixed W. On a CPU shared with other work, absolute times wander; `window_sweep`
# therefore times the implementations *interleaved*, in rounds, and `sweep_speedups` compares each
# round's times with the same round's full-causal time, so the load cancels in the ratios. Each is
# printed with its range over the rounds, the rounds, and the attention core's **analytic ceiling**
# — the most that implementation can gain over full causal SDPA by the cost model (the largest of
# the ratios of their FLOPs, bytes and launches; none for `local_sdpa` and flex's CPU path, which the
# model does not describe) — and the verdict of the tutorial's three rules (`tutorial_lib.speedups`):
# a range over 1.0 is *within noise*, fewer than three rounds give *no verdict*, a median above the
# ceiling is noise or a different kernel.

# %% tags=["nbval-ignore-output"]
rows = WL.window_sweep(S.seq_lens, S.window, batch_size=S.batch, n_head=S.n_head, head_dim=S.head_dim,
                       device=DEVICE, rounds=S.rounds, min_run_time=S.min_run_time, measure_memory=False)
sp = WL.sweep_speedups(rows)
r0 = rows[0]
print(f"attention core fwd+bwd, W={S.window}, B={S.batch} H={S.n_head} D={S.head_dim}, {r0.dtype}, "
      f"{r0.device_name}; median of {S.rounds} interleaved round(s)")
table = []
for r in rows:
    s_ = sp.get(r.impl, {}).get(r.seq_len)
    table.append({"impl": r.impl, "T": r.seq_len, "ms": r.median_ms,
                  "speedup over causal (median [range, rounds; ceiling] verdict)": (
                      "baseline" if r.impl == "causal" and r.ok else s_.text() if s_ else None),
                  "note": r.error or ""})
print(format_rows(table, formats={"ms": "{:,.1f}"}))


def said(impl, T):  # one implementation's speedup over causal at T, in the one printed form
    s_ = sp.get(impl, {}).get(T)
    return s_.text() if s_ else "not measured"

# %% tags=["nbval-ignore-output"]
slope = WL.slopes(rows, "median_ms", last=2)
series = {WL.IMPL_LABELS[i]: ([r.seq_len for r in rows if r.impl == i and r.ok],
                              [r.median_ms for r in rows if r.impl == i and r.ok])
          for i in dict.fromkeys(r.impl for r in rows)}
print("fitted slope of time vs T over the two largest T (2 = quadratic, 1 = linear):")
for i, s_ in slope.items():
    print(f"  {i:10s} {s_:.2f}" if s_ == s_ else f"  {i:10s} not measured")
loglog_scaling(series, ylabel="ms per forward+backward", fit_last=2,
               title=f"attention core, W={S.window}, B={S.batch} H={S.n_head} D={S.head_dim}, {r0.device_name}")

# %% tags=["nbval-ignore-output"]
T_big = max(S.seq_lens)
print(f"Headline, T={T_big}, W={S.window}, over full causal SDPA (forward + backward):")
for impl in ("local", "band_mask", "local_sdpa"):
    print(f"  {impl:10} {said(impl, T_big)}")
print(f"Work model for comparison: causal computes {T_big * (T_big + 1) // 2 / local_pairs(T_big, S.window):.1f}x "
      f"the scores the local path computes.")

# %% [markdown]
# ### Explore: the mask and the attention work for any W and T
#
# The sweep fixed one window. The explorer draws the mask and the attention FLOPs of full causal
# against windowed attention for any **window W** and **sequence length T** (type values into the
# boxes beside the sliders), and the receptive field after the chosen number of layers. Try W = T/4
# and W = 64 at T = 4096: the FLOP ratio only pays if the kernel skips what the mask hides, which the
# timings above test.

# %% tags=["nbval-ignore-output"]
from tutorial_lib.widgets import window_explorer  # the explorers need ipywidgets (part of the notebook stack)

window_explorer()

# %% [markdown]
# FlexAttention cannot train on CPU, so its row above records that instead of a time. Its *forward*
# can run; here is the forward pass alone at the largest T. Without `torch.compile` (which PyTorch
# does only on CUDA in our library), CPU flex runs an unfused reference path, so do not expect the
# block mask to pay off here — on CUDA, compiled, it is designed to be the fast way to train with a
# window (the GPU suite times it; no GPU measurement is in this repository yet).

# %% tags=["nbval-ignore-output"]
fwd = WL.window_sweep([max(S.seq_lens)], S.window, batch_size=S.batch, n_head=S.n_head,
                      head_dim=S.head_dim, device=DEVICE, mode="fwd", rounds=1,
                      min_run_time=S.min_run_time)
fsp = WL.sweep_speedups(fwd)
print(f"forward only, T={max(S.seq_lens)}, W={S.window}, {fwd[0].device_name}, one round (a first look, no verdict):")
print(format_rows([{"impl": r.impl, "ms": r.median_ms,
                    "speedup over causal": ("baseline" if r.impl == "causal" and r.ok else
                                            fsp[r.impl][r.seq_len].text() if r.seq_len in fsp.get(r.impl, {})
                                            else None),
                    "note": r.error or ""} for r in fwd], formats={"ms": "{:,.1f}"}))

# %% [markdown]
# ## 5. Measured: memory kept for backward
#
# Memory does not depend on the machine's load, so we measure it at fixed sizes (B=1, H=4, D=32,
# W=64): the bytes autograd keeps for backward (`measure.memory.saved_bytes`, inputs excluded).

# %%
mem = WL.window_sweep([256, 512, 1024, 2048], 64, impls=["causal", "band_mask", "local", "local_sdpa"],
                      batch_size=1, n_head=4, head_dim=32, device="cpu", measure_time=False)
print(format_rows([{"impl": r.impl, "T": r.seq_len, "KiB kept": r.saved_bytes / 1024} for r in mem],
                  formats={"KiB kept": "{:,.0f}"}))
mslope = WL.slopes(mem, "saved_bytes", last=2)
print("fitted slope over the two largest T:", ", ".join(f"{i} {s_:.2f}" for i, s_ in mslope.items()))

# %% [markdown]
# The full-causal flash kernel keeps only its output and the log-sum-exp per query: **linear** in T.
# The blocked local path keeps exactly the same. The band mask keeps its (T, T) mask for backward —
# quadratic memory on top of quadratic time. The plain-SDPA blocking is linear but bigger (its
# K/V blocks). So on a flash-capable backend, windows are about *time*; the memory story
# of long sequences was already solved by flash attention (notebook 03).
#
# ## 6. Does it still learn?
#
# The guide suite trains full attention and the window from the same seeds on the same Shakespeare
# batches and validates on the same held-out batches; the window there is a quarter of the sequence
# length, so most tokens see only part of their context. Its recorded runs, read from `results/`
# (not trained now: several seeds take minutes on a CPU; notebook 05 shows such runs live):

# %% tags=["nbval-ignore-output"]
rec = recorded_quality(DEVICE.type)
q_rows = [dict(r, variant=label) for label, r in (("full", rec.rows.get(QUALITY_BASELINE)),
                                                   (f"window W={Q.window}", rec.rows.get(f"window W={Q.window}")))
          if r]
print(f"quality runs {rec.caption}; not measured now")
print(format_rows([{"": r["variant"], "seeds": r["seeds"], "val loss": r["val_loss"], "sd": r.get("val_loss_sd"),
                    "vs full": r.get("vs_baseline"), "sd ": r.get("vs_baseline_sd"),
                    "verdict": r.get("verdict") or "baseline"} for r in q_rows],
                  formats={"val loss": "{:.3f}", "sd": "{:.3f}", "vs full": "{:+.3f}", "sd ": "{:.3f}"}))

# %% [markdown]
# ## 7. The whole training step
#
# The attention core is only part of a training step; the projections, the MLP and the LM head do
# not care about the window. Here is a full step (forward, backward, AdamW) with full causal SDPA
# against the local window, at a few lengths (the two timed interleaved, speedups per round, each
# with its range, rounds and the whole step's analytic ceiling — the window removes attention
# scores, and attention is only part of the step's FLOPs and bytes):

# %% tags=["nbval-ignore-output"]
payoff = WL.model_payoff(S.payoff_preset, S.payoff_seqs, S.payoff_window, batch_size=S.payoff_batch,
                         device=DEVICE, min_run_time=S.min_run_time, rounds=S.rounds)
print(f"{S.payoff_preset}, B={S.payoff_batch}, W={S.payoff_window}, train step, {payoff[0]['device_name']}:")
print(format_rows([{"T": r["seq_len"], "full ms": r["full_ms"], "window ms": r["window_ms"],
                    "speedup (median [range, rounds; ceiling] verdict)": (
                        r["speedup_of"].text() if r["speedup_of"] else None), "error": r["error"]} for r in payoff],
                  formats={"full ms": "{:,.0f}", "window ms": "{:,.0f}"}))

# %% [markdown]
# ## 8. The seed's claims beside the measurements
#
# The seed says sliding windows are "O(n × window) — linear in sequence length", and its decision tree
# puts the window *first* for T ≥ 512. The first is a statement about work, and the slope of our
# blocked path measures it; the second is a statement about payoff, and the step times above measure it.

# %% tags=["nbval-ignore-output"]
T_big = max(S.seq_lens)
per_round = WL.round_slopes(rows, last=2)  # the slope fitted in each interleaved round: its noise


def spread(impl):
    return (min(per_round[impl]), max(per_round[impl])) if len(per_round.get(impl, [])) > 1 else None


print(f"time exponents over T={list(S.seq_lens)[-2:]} (local, W={S.window}; full causal SDPA), "
      f"spread over {S.rounds} round(s):")
print(claims.format_table([
    claims.compare("seq.window", slope.get("local"), where=claims.ANY_SETTING, spread=spread("local")),
    claims.compare("seq.quadratic", slope.get("causal"), where=claims.ANY_SETTING, spread=spread("causal")),
]))
print()
c = claims.get("tree.long")
print(f"seed: {c.text}")
for r in payoff:
    if r["speedup_of"]:
        print(f"  measured ({S.payoff_preset}, B={S.payoff_batch}, T={r['seq_len']}, W={r['window']}), the window "
              f"over the whole training step: {r['speedup_of'].text()}")
print(f"  attention core alone at T={T_big}, W={S.window}: {said('local', T_big)}")

# %% [markdown]
# Reading the numbers:
#
# - **"O(n × window)"** holds for an implementation that skips the work (the blocked path, or
#   FlexAttention's block mask on CUDA), not for a mask: the band mask keeps a slope near 2 and is
#   *slower* than plain causal attention.
# - **"T ≥ 512 → sliding window first"** depends on how much of the step attention is. At T = 512 in
#   GPT-2 small, the attention scores are a small part of the FLOPs (projections, MLP and the 50,257-way
#   head dominate), so even removing most of them moves the step little; the payoff grows with T and
#   with the share of attention in the step. The window also changes the model (what a token can see),
#   so it is a modelling decision first and a speed trick second.

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

recorded("window_curve")

# %% [markdown]
# ## Summary

# %% tags=["nbval-ignore-output"]
T_big = max(S.seq_lens)
lines = [
    f"- Measured on {rows[0].device_name} ({rows[0].dtype}), attention core fwd+bwd, W={S.window}, "
    f"B={S.batch} H={S.n_head} D={S.head_dim}:",
    f"  over full causal SDPA at T={T_big}: local (blocked) {said('local', T_big)}",
    f"  band mask {said('band_mask', T_big)}",
    f"  plain-SDPA blocking {said('local_sdpa', T_big)}",
    f"- Fitted time slopes (two largest T): causal {slope.get('causal', float('nan')):.2f}, band mask "
    f"{slope.get('band_mask', float('nan')):.2f}, local {slope.get('local', float('nan')):.2f}.",
    f"- Memory kept for backward: causal and local linear (slopes {mslope['causal']:.2f}, {mslope['local']:.2f}), "
    f"band mask {mslope['band_mask']:.2f}.",
    f"- Quality (recorded, {rec.caption}): "
    + ", ".join(f"{r['variant']} {r['val_loss']:.3f}" + (f" ({r['verdict']})" if r.get("verdict") else "")
                for r in q_rows) + ".",
    *[f"- Whole training step, T={r['seq_len']}: {r['speedup_of'].text()}" for r in payoff if r["speedup_of"]],
]
print("\n".join(lines))


# %% [markdown]
# - A window changes *what* attention computes; only an implementation that skips the masked scores
#   changes *how much* it computes. A mask on full attention does all the work of full attention and
#   more; it was the slowest in the measurements above.
# - The blocked path is exact (same outputs and gradients as the naive reference), trains on CPU, and
#   keeps flash attention's linear memory. On CUDA, FlexAttention with a block mask is the purpose-built
#   tool (compiled; not measured here).
# - Stacked layers still see far: L layers of window W reach L·(W−1)+1 tokens back.
# - Whether the window pays for a whole training step depends on attention's share of the step —
#   measure it at your T before putting the window first.
#
# ## Exercises
#
# 1. **Build the sliding-window mask** (auto-checked): `my_window_mask(T, W)` returns a (T, T) bool
#    tensor, True where query *i* may see key *j*.

# %%
def my_window_mask(T, W):
    # your code here: True where 0 <= i - j < W
    raise NotImplementedError


WL.check_window_mask(my_window_mask)

# %% [markdown]
# The checker names typical mistakes, e.g. a window that lets W+1 keys through:

# %%
WL.check_window_mask(lambda T, W: causal_mask(T, T, W + 1))


# %% [markdown]
# 2. **Count the visible pairs** (auto-checked): `my_visible_pairs(T, W)` returns how many (query, key)
#    pairs a causal window of W lets through. (Careful with the first W−1 queries.)

# %%
def my_visible_pairs(T, W):
    raise NotImplementedError  # your code here


WL.check_visible_pairs(my_visible_pairs)

# %% [markdown]
# 3. **Where does the window pay?** Rerun `WL.model_payoff(S.payoff_preset, [...], W)` with longer T
#    (memory permitting) and find the length at which the window makes the whole step 1.2× faster on
#    your machine. How does the answer change with a 4-layer model (`"gpt2_mini"`), where the LM head
#    is a bigger share of the step?
# 4. **Block size.** `local_window_attention(q, k, v, W, block=b)` accepts other query-block sizes.
#    Time b ∈ {16, 32, 64, 128} at T = 4096, W = 256. Fewer, larger blocks mean fewer kernel calls but
#    more wasted scores (b + W − 1 per query): where is the optimum here, and why?
