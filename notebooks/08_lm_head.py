# %% [markdown]
# # 08 · The seed's blind spot: the LM head, the loss, and chunked cross-entropy
#
# **What you will learn**
#
# - how much of a GPT-2 training step the **LM head** (the `n_embd → vocabulary` matmul) and the
#   **loss** (log-softmax over 50,257 logits) take — on paper and measured — beside the seed's
#   "LM Head (5-8%)", which does not mention the loss at all;
# - the memory of the **logits**: B·T·V numbers, computed and counted exactly (every tensor autograd
#   keeps for backward), plus the allocator's peak on CUDA;
# - **chunked linear cross-entropy** (the idea behind Liger Kernel's FusedLinearCrossEntropy, Cut
#   Cross-Entropy and torchtune's chunked loss): the head and the loss a chunk of tokens at a time,
#   so that no (B, T, V) tensor ever exists — shown from the library and checked against
#   `F.cross_entropy` in float64;
# - its two flavours, **recompute** the logits in backward vs **gradients in the forward** (Liger),
#   and what each keeps and costs;
# - memory and time against the chunk size, T and V — including GPT-2's 50,257 against nanoGPT's
#   padded 50,304 — and the whole-step payoff at the seed's setting (B=4, T=512);
# - when it matters: large vocabularies, long sequences, small models.
#
# Sizes come from the size profile (`TUTORIAL_PROFILE=smoke|cpu|gpu`); the `cpu` and `gpu` profiles
# measure GPT-2 small at the seed's own B=4, T=512 here, because the lesson is about GPT-2's real
# vocabulary. Analytic numbers always use the real GPT-2 small. The first cell says where the stored
# outputs were measured.

# %% tags=["nbval-ignore-output"]
# %matplotlib inline
import torch
import torch.nn.functional as F

from tutorial_lib import claims, settings
from tutorial_lib.lessons import lm_head as L
from tutorial_lib.lessons import decision
from tutorial_lib.lessons.common import env_summary, format_rows, show_source
from tutorial_lib.model import GPT, get_config
from tutorial_lib.sizes import get_sizes

DEVICE = settings.get_device()
SIZES = get_sizes()  # the size profile: TUTORIAL_PROFILE=smoke|cpu|gpu
S = SIZES.lm_head  # this lesson's sizes
print(env_summary(DEVICE))
print(f"whole step : {S.preset}, T={S.seq_len}, loss_chunk={S.chunk}: memory counted at B={S.batch}, "
      f"time at B={S.timed_batch} in {S.rounds} interleaved rounds")
print(f"head alone : N={S.tokens} tokens, C={S.n_embd}, V={S.vocab:,}; chunks {list(S.chunks)}, "
      f"T {list(S.seq_lens)}, V {list(S.vocabs)}")

# %% [markdown]
# ## 1. The idea
#
# A GPT ends with `logits = hidden @ W.T` — `hidden` is (N, C) for N = B·T tokens, `W` is the
# (V, C) head (GPT-2 ties it to the token embedding) — and `loss = cross_entropy(logits, targets)`.
# For each token the loss needs only its own row of logits: `logsumexp(row) - row[target]`. Nothing
# forces all N rows to exist at once. The chunked loss computes a strip of `chunk` rows, its
# log-sum-exps and its part of the loss, and drops the strip before the next one:

# %%
L.chunking_figure(tokens=4 * 512, vocab=50257, n_embd=768, chunk=256)

# %% [markdown]
# ## 2. On paper: the head's FLOPs and the logits' bytes
#
# The head's matmul is `2·C·V` FLOPs per token; a block's matmuls are `24·C²` (q/k/v/o and a 4× MLP).
# With V = 50,257 ≫ C = 768 the head outweighs several blocks. The cost model
# (`measure.cost`, checked against `FlopCounterMode` in the tests) at the seed's setting:

# %%
paper = L.head_share_rows({"gpt2_small": get_config("gpt2_small"), "gpt2_mini": get_config("gpt2_mini")}, 4, 512)
print(format_rows(paper, columns=["model", "n_layer", "n_embd", "vocab", "head_fwd_share", "head_step_share",
                                  "logits_bytes"],
                  headers={"head_fwd_share": "head / fwd FLOPs", "head_step_share": "head / step FLOPs",
                           "logits_bytes": "logits bytes (fp32)"},
                  formats={"head_fwd_share": "{:.1%}", "head_step_share": "{:.1%}", "logits_bytes": "{:,}"}))
c = claims.get("time.lm_head")
print(f"\nthe seed: {c.text!r} -> {c.low:.0%}-{c.high:.0%} of the forward pass")
print(f"one (B=4, T=512, V=50,257) logits tensor: 4 x 512 x 50,257 x 4 bytes = {L.logits_bytes(4, 512, 50257):,} "
      f"bytes = {L.logits_bytes(4, 512, 50257) / 1e6:,.1f} MB")

# %% [markdown]
# The seed's 5–8% is not the head's share of the *FLOPs*: that is several times larger. Time can
# differ from FLOPs, so next we measure. And the loss has no matmul at all — its log-softmax is pure
# memory traffic over N × V numbers, which the FLOP count cannot see.
#
# ## 3. Measured: where the time goes
#
# `torch.profiler` with the model's named scopes (`measure.profile.profile_step`), full logits,
# at this profile's whole-step setting:

# %% tags=["nbval-ignore-output"]
from tutorial_lib.measure.profile import profile_step

prof = profile_step(get_config(S.preset), S.batch, S.seq_len, device=DEVICE, steps=1, warmup=1)
print(f"{prof.preset}, B={prof.batch_size}, T={prof.seq_len}, {prof.dtype}, {prof.device_name} ({prof.time_source})")
print(format_rows(L.share_rows(prof), columns=["measured", "share", "claimed_low", "claimed_high", "verdict"],
                  formats={"share": "{:.1%}", "claimed_low": "{:.0%}", "claimed_high": "{:.0%}"}))

# %% [markdown]
# ## 4. Memory: the logits, computed and counted
#
# `measure.memory.memory_breakdown` runs one training step and sees every tensor autograd keeps for
# backward (`saved_tensors_hooks`, each storage once), charged to the scope that saved it. The head
# and the loss are the `head + loss` group; on CUDA the allocator's peak over the step is read too.

# %% tags=["nbval-ignore-output"]
mem = L.step_payoff(S, device=DEVICE, measure_time=False)
full = mem[0]
print(f"{S.preset}, B={S.batch}, T={S.seq_len}, {full.get('dtype')}, one training step (exact byte counts)")
V = get_config(S.preset).padded_vocab_size
print(f"computed: one (B, T, V) fp32 tensor = {S.batch} x {S.seq_len} x {V:,} x 4 = "
      f"{L.logits_bytes(S.batch, S.seq_len, V):,} bytes")
print(format_rows(mem, columns=["variant", "activations_bytes", "head_loss_bytes", "saved_vs_full_bytes",
                                "peak_bytes"],
                  headers={"activations_bytes": "saved for bwd", "head_loss_bytes": "of which head+loss",
                           "saved_vs_full_bytes": "less than full", "peak_bytes": "CUDA peak"},
                  formats={k: "{:,}" for k in ("activations_bytes", "head_loss_bytes", "saved_vs_full_bytes",
                                               "peak_bytes")}))

# %% [markdown]
# The full path keeps one (B, T, V) fp32 tensor — the log-softmax — plus the head's input: the
# computed and the counted bytes meet. The chunked (recompute) path keeps the head's input (which
# the full path keeps too) and one fp32 log-sum-exp per token. Liger's keeps the two gradients it
# computed in the forward — the (V, C) one is the size of the embedding — and counts them as saved:
# they are alive from the forward to the backward like any activation.
#
# ## 5. The implementation, from the library
#
# `tutorial_lib/loss.py`: the function the model calls, then the autograd Function (forward: chunk,
# matmul, log-sum-exp, loss; backward: recompute the chunk's logits, turn them into the softmax
# gradient, two matmuls), then the gradient of one chunk.

# %%
from tutorial_lib import loss as LOSS

show_source(LOSS.chunked_linear_cross_entropy)

# %%
show_source(LOSS.ChunkedLinearCrossEntropy)

# %%
show_source(LOSS.softmax_grad_)

# %% [markdown]
# In the model it is one branch of `GPT.forward`, chosen by `GPTConfig(loss_impl="chunked")`; with
# targets it returns `(None, loss)` — there are no full logits to return — and without targets
# (generation) the head runs as before:

# %%
show_source(GPT.forward, lines=slice(-16, None))

# %% [markdown]
# ## 6. Correctness
#
# In float64 the chunked loss and its gradients must equal `F.cross_entropy(hidden @ W.T, targets,
# ignore_index=-1)` to rounding — for ragged chunks, ignored targets, both flavours; inside the model
# with tied and untied embeddings and a padded vocabulary (whose extra rows enter the softmax);
# and no tensor of N × V elements may appear, forward or backward (`L.LargestTensor` watches every op).

# %%
g = torch.Generator().manual_seed(0)
N, C, Vs = 37, 16, 53
h0 = torch.randn(N, C, generator=g, dtype=torch.float64)
w0 = torch.randn(Vs, C, generator=g, dtype=torch.float64)
t0 = torch.randint(0, Vs, (N,), generator=g)
t0[::4] = -1  # ignored targets


def loss_and_grads(fn):
    h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
    out = fn(h, w)
    out.backward()
    return out.detach(), h.grad, w.grad


ref = loss_and_grads(lambda h, w: F.cross_entropy(h @ w.T, t0, ignore_index=-1))
for liger in (False, True):
    for chunk in (1, 5, 37, 100):
        got = loss_and_grads(lambda h, w: LOSS.chunked_linear_cross_entropy(h, w, t0, chunk, grad_in_forward=liger))
        err = max((a - b).abs().max().item() for a, b in zip(got, ref))
        print(f"{'Liger' if liger else 'recompute':9} chunk {chunk:>3}: loss, d hidden, d weight == reference "
              f"(max |diff| < 1e-13): {err < 1e-13}")

# %%
from tutorial_lib.model import GPTConfig

small = GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=97, block_size=32, name="t")
idx = torch.randint(0, 97, (2, 9), generator=g)
tgt = torch.randint(0, 97, (2, 9), generator=g)
for label, changes in (("tied", {}), ("untied", {"tie_embeddings": False}), ("padded to 128", {"pad_vocab_multiple": 64})):
    out = []
    for impl in ("full", "chunked", "chunked_liger"):
        torch.manual_seed(0)
        m = GPT(small.replace(loss_impl=impl, loss_chunk=4, **changes)).double()
        _, loss = m(idx, tgt)
        loss.backward()
        out.append((loss.detach(), [p.grad for p in m.parameters()]))
    same = all(torch.allclose(o[0], out[0][0], rtol=1e-12, atol=0)
               and all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(o[1], out[0][1])) for o in out[1:])
    print(f"GPT, {label:13}: chunked and Liger loss and every parameter gradient == full path: {same}")

# %%
h, w = h0.float().requires_grad_(), w0.float().requires_grad_()
for name, fn in (("full", lambda: F.cross_entropy(h @ w.T, t0, ignore_index=-1)),
                 ("chunked", lambda: LOSS.chunked_linear_cross_entropy(h, w, t0, 8)),
                 ("Liger", lambda: LOSS.chunked_linear_cross_entropy(h, w, t0, 8, grad_in_forward=True))):
    with L.LargestTensor() as watch:
        fn().backward()
    print(f"{name:8}: largest tensor any op made, forward and backward: {watch.largest:>5} elements "
          f"(N x V = {N * Vs}, chunk x V = {8 * Vs}, V x C = {Vs * C})")

# %% [markdown]
# ## 7. Memory and time against the chunk size
#
# The head and the loss alone — `hidden (N, C) → loss → gradients of hidden and W`, at GPT-2's
# C and V and the profile's N tokens (first cell) — timed in interleaved rounds (every point once
# per round; the range is over the rounds) with the exact bytes each keeps for backward. The full
# path is the dashed line.

# %% tags=["nbval-ignore-output"]
chunk_rows = L.head_loss_sweep(L.chunk_points(S), rounds=S.sweep_rounds, min_run_time=S.min_run_time,
                             device=DEVICE)
print(format_rows([r.to_dict() for r in chunk_rows],
                  columns=["label", "median_ms", "min_ms", "max_ms", "saved_bytes", "peak_bytes", "error"],
                  headers={"median_ms": "ms fwd+bwd", "saved_bytes": "kept for bwd", "peak_bytes": "CUDA peak"},
                  formats={"median_ms": "{:,.1f}", "min_ms": "{:,.1f}", "max_ms": "{:,.1f}",
                           "saved_bytes": "{:,}", "peak_bytes": "{:,}"}))
L.sweep_figure(chunk_rows, x="chunk")

# %% [markdown]
# What the recompute keeps does not depend on the chunk at all; the chunk sets the *transient*
# memory — one (chunk × V) strip of logits at a time, which the CUDA peak shows — and the matmuls'
# shape: too thin a strip runs the matmul below the machine's speed. Liger keeps its (V, C) weight
# gradient whatever the chunk.
#
# ## 8. Against T and against V
#
# The chunked path's memory stays flat as T (tokens) or V grows; the full path's grows with
# N × V. Along V the sweep includes nanoGPT's padded vocabulary beside GPT-2's (`pad_vocab_multiple=64`):
# a few more rows, to make the matmul's shape friendlier to the device's kernels — whether that pays
# is a property of the device, so it is measured here.

# %%
padded = get_config("gpt2_small", pad_vocab_multiple=64).padded_vocab_size
print(f"GPT-2's vocabulary {50257:,} padded to a multiple of 64: {padded:,} = {padded // 64} x 64, "
      f"{padded - 50257} more rows, {(padded - 50257) / 50257:.2%} more head FLOPs")

# %% tags=["nbval-ignore-output"]
t_rows = L.head_loss_sweep(L.scaling_points(S, "T"), rounds=S.sweep_rounds, min_run_time=S.min_run_time,
                             device=DEVICE)
L.sweep_figure(t_rows, x="tokens")

# %% tags=["nbval-ignore-output"]
v_rows = L.head_loss_sweep(L.scaling_points(S, "V"), rounds=S.sweep_rounds, min_run_time=S.min_run_time,
                             device=DEVICE)
print(format_rows([r.to_dict() for r in v_rows], columns=["label", "vocab", "median_ms", "min_ms", "max_ms",
                                                          "saved_bytes", "error"],
                  headers={"median_ms": "ms fwd+bwd", "saved_bytes": "kept for bwd"},
                  formats={"vocab": "{:,}", "median_ms": "{:,.1f}", "min_ms": "{:,.1f}", "max_ms": "{:,.1f}",
                           "saved_bytes": "{:,}"}))
L.sweep_figure(v_rows, x="vocab")

# %% tags=["nbval-ignore-output"]
print(f"the head + loss with V=50,304 over V=50,257 (> 1: padding pays), {S.sweep_rounds} interleaved round(s), "
      f"{v_rows[0].device_name}, {v_rows[0].dtype}; ceiling: the vocabularies' ratio (padding adds work):")
for impl in ("full", "chunked"):
    pad = L.padded_speedup(v_rows, impl)
    print(f"  {L.IMPL_LABEL[impl]}: " + (pad.text() if pad else "the padded vocabulary was not measured in this "
                                         "profile's sweep"))

# %% [markdown]
# A gain above the ceiling here is not noise only: padding adds work, so by the cost model it can
# only cost — a padded head that runs faster ran a better-shaped matmul kernel, which is the point of
# padding and exactly what a FLOP and byte count cannot see.
#
# ## 9. The payoff: a whole training step
#
# Forward, backward and AdamW, full logits against both chunked losses, timed in interleaved rounds
# (`common.measure_variants`: each variant once per round, speedup = median of the per-round ratios,
# with their range, the rounds and the analytic ceiling); the bytes are the exact counts of
# section 4, at the seed's B=4. The time is taken at the profile's timing batch (on a CPU one
# sequence of T=512: GPT-2 small's B=4 step takes seconds there, and three rounds — the fewest that
# give a speedup a verdict — would take longer than the rest of this notebook).

# %% tags=["nbval-ignore-output"]
timed = L.step_payoff(S, device=DEVICE, memory=False)
for r, m in zip(timed, mem):
    r.update({k: v for k, v in m.items() if k.endswith("bytes") or k in ("dtype", "device_name")})
    r["measured"] = r["speedup_of"].text() if r.get("speedup_of") else ("baseline" if r is timed[0] else None)
print(f"{S.preset}, T={S.seq_len}, loss_chunk={S.chunk}, {full.get('dtype')}, {full.get('device_name')}: "
      f"time at B={S.timed_batch} ({S.rounds} interleaved round(s)), bytes saved for backward at B={S.batch}")
print(format_rows(timed, columns=["variant", "median_ms", "measured", "activations_bytes", "error"],
                  headers={"median_ms": "ms/step", "measured": "speedup (median [range, rounds; ceiling] verdict)",
                           "activations_bytes": f"saved for bwd, B={S.batch}"},
                  formats={"median_ms": "{:,.1f}", "activations_bytes": "{:,}"}))
L.payoff_figure(timed)

# %% tags=["nbval-ignore-output"]
for r in timed[1:]:
    if r.get("speedup_of") and r.get("saved_vs_full_bytes") is not None:
        print(f"{r['variant']}: saves {r['saved_vs_full_bytes'] / 1e6:,.0f} MB of activations at B={S.batch} "
              f"({r['saved_vs_full_bytes'] / timed[0]['activations_bytes']:.0%} of the step's); the step at "
              f"B={S.timed_batch}: {r['speedup_of'].text()}")

# %% [markdown]
# Read the time next to its range: on a busy CPU a few percent either way is noise. The bytes are
# not noisy. Recompute pays one more head matmul in backward — its FLOPs grow by a third of the
# head's share of the step (section 2) — and gets part of it back: no full logits to write and
# read back. Liger pays no extra matmul but keeps the (V, C) gradient buffer.
#
# ### The same change in the decision tree
#
# Notebook 07's decision tree and the guide's decision table do not use this run: they quote one
# recorded measurement per change, the one at the nearest setting with the most rounds, named — so
# the chunked loss has the same payoff there as here (the profile's short and long T of notebook
# 07):
#
# %% tags=["nbval-ignore-output"]
tree = decision.branches(SIZES.final.short_seq, SIZES.final.long_seq, DEVICE.type)  # notebook 07's two T
for rec in tree.values():
    print(f"T={rec.seq_len}: {rec.payoff('chunked_loss').describe('speed')}")

# %% [markdown]
# ## 10. When it matters
#
# The head's share of the FLOPs, and the logits' bytes, for GPT-2 small, the 4-layer `gpt2_mini`
# (the head is most of it), GPT-2 small's body with the vocabularies of newer models, and a longer
# sequence:

# %%
print(format_rows(L.when_it_matters(), columns=["model", "B", "T", "vocab", "head_fwd_share", "logits_bytes"],
                  headers={"head_fwd_share": "head / fwd FLOPs", "logits_bytes": "logits (fp32)"},
                  formats={"vocab": "{:,}", "head_fwd_share": "{:.1%}", "logits_bytes": "{:,}"}))

# %% [markdown]
# The logits grow with B·T·V, every block's activations with B·T·C: the larger V is against C, the
# larger the logits' share of a step's memory. Small models with big vocabularies (gpt2_mini),
# long sequences and large batches (memory) and modern vocabularies of 128k–256k entries are where
# the chunked loss matters most; a model whose activations are dominated by long attention (eager,
# large T) gains relatively less.
#
# ## 11. Recorded results
#
# The guide suite (`python -m tutorial_lib bench --suite guide`) records this lesson's tables for
# `OPTIMIZATION_GUIDE.md`; here are those recorded so far, with where they were measured.

# %% tags=["nbval-ignore-output"]
from tutorial_lib.guide.report import recorded

recorded("lm_head", "lm_head_claim", "lm_head_alone")

# %% [markdown]
# ## Summary

# %% tags=["nbval-ignore-output"]
lh = next((r for r in L.share_rows(prof) if r["measured"].startswith("lm_head + loss, share of the forward")), None)
print(f"On {full.get('device_name')} ({full.get('dtype')}), {S.preset}, B={S.batch}, T={S.seq_len}:")
if lh:
    print(f"- the head and the loss take {lh['share']:.0%} of the forward pass; the seed says "
          f"{lh['claimed_low']:.0%}-{lh['claimed_high']:.0%} for the head alone ({lh['verdict']}).")
for r in timed[1:]:
    if r.get("saved_vs_full_bytes") is not None:
        sp = r["speedup_of"].text() if r.get("speedup_of") else "not timed"
        print(f"- {r['variant']}: {r['saved_vs_full_bytes'] / 1e6:,.0f} MB less saved for backward at B={S.batch}; "
              f"the step over full logits at B={S.timed_batch}: {sp}.")

# %% [markdown]
# - On paper the head is a far larger share of a GPT-2 step's FLOPs than the seed's 5–8% (section 2),
#   and the loss — absent from the seed — adds time the FLOPs do not show; what they take on this
#   machine is in the summary above.
# - The logits are B·T·V numbers: at GPT-2's vocabulary the full path keeps one such fp32 tensor
#   for backward. The chunked loss never makes it, exactly (float64 checks), for the price of a
#   recomputed matmul (or of a V × C buffer, Liger's way).
# - It is one config field: `GPTConfig(loss_impl="chunked")`; every tool (profile, bench, train, the
#   explorers) measures it, and notebook 07 and the guide's decision tree include it.
#
# ## Exercises
#
# 1. **Write the chunked loss's forward** (auto-checked): `my_chunked_loss(hidden, weight, targets,
#    chunk)` returns the mean cross-entropy of `hidden @ weight.T` over the targets that are not -1,
#    computing `chunk` rows of logits at a time (`torch.logsumexp` and `Tensor.gather` help). The
#    checker compares it with `F.cross_entropy` in float64 and watches that no (N, V) tensor appears.

# %%
def my_chunked_loss(hidden, weight, targets, chunk):
    raise NotImplementedError  # your code here


L.check_chunked_loss(my_chunked_loss)

# %% [markdown]
# 2. **Where the head outweighs the blocks.** With `L.head_share_rows`, find the vocabulary at which
#    GPT-2 small's head costs as many forward FLOPs as its twelve blocks, and the number of layers at
#    which a 50,257-entry head is 10% of the FLOPs.
# 3. **bf16.** Under `torch.autocast("cpu", dtype=torch.bfloat16)` (or on a GPU), what does the
#    chunked path keep for backward, and how close is its loss to the fp32 one? (`measure.memory.saved_bytes`.)
# 4. **Chunk size on your device.** Extend `S.chunks` to 32 and 4096 and rerun section 7: where does the
#    time start to rise, and why?
