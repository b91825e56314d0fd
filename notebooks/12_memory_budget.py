# %% [markdown]
# # 12 · The memory budget: activation checkpointing, gradient accumulation, and the fastest plan that fits
#
# **What you will learn**
#
# - what a training step holds at each moment — not only the activations the seed's memory table
#   adds up, but the temporaries on top of them — and where its **peak** is;
# - **activation checkpointing** (`torch.utils.checkpoint`): keep a block's input, run its forward
#   again in backward — four policies (the whole block, its attention half, its MLP half, every
#   other block), each with its bytes kept (predicted and counted exactly), its recompute (predicted
#   from the forward FLOPs it repeats, and measured) and its peak (predicted and measured);
# - **gradient accumulation**: a batch as several micro-batches, each loss scaled by 1/k — the same
#   gradients (checked in float64) with the activations of one micro-batch, and what a smaller
#   micro-batch costs per token; DDP's `no_sync` for the micro-batches before the last;
# - **a planner**: given a memory budget and the tokens per optimizer step, the micro-batch,
#   checkpointing, loss, attention backend and dtype with the most predicted tokens/s that fit — all
#   predicted by the one cost model, then measured: peak and time, predicted beside measured.
#
# Sizes come from the size profile (`TUTORIAL_PROFILE=smoke|cpu|gpu`, the first cell prints them).
# Analytic numbers use GPT-2 small at the seed's setting (B=4, T=512) wherever they are computed
# rather than measured.

# %% tags=["nbval-ignore-output"]
# %matplotlib inline
import torch

from tutorial_lib import claims, settings
from tutorial_lib.accumulate import accumulate_gradients
from tutorial_lib.lessons import memory_budget as M
from tutorial_lib.lessons.common import env_summary, format_rows, show_source
from tutorial_lib.lessons.roofline import lesson_probes
from tutorial_lib.measure import cost
from tutorial_lib.measure.ceilings import spec_ceilings
from tutorial_lib.measure.memory import fmt_bytes, memory_breakdown
from tutorial_lib.measure.peak import step_peak
from tutorial_lib.model import GPT, Block, GPTConfig, get_config, recompute
from tutorial_lib.sizes import get_sizes

DEVICE = settings.get_device()
SIZES = get_sizes()  # the size profile: TUTORIAL_PROFILE=smoke|cpu|gpu
S = SIZES.memory_budget  # this lesson's sizes
DTYPE = S.dtypes[0]
print(env_summary(DEVICE))
print(f"policies  : {S.preset}, B={S.batch}, T={S.seq_len}, {DTYPE}, {S.rounds} rounds; {list(S.policies)}")
print(f"micro     : {S.micro_step_batch} sequences per step in micro-batches of {list(S.micro_batches)}")
print(f"planner   : {S.tokens_per_step:,} tokens per step, budgets {list(S.budgets_mib)} MiB, dtypes {list(S.dtypes)}")

# %% [markdown]
# ## 1. The idea: what a step holds, moment by moment
#
# Before a step starts, the parameters and AdamW's two moments are already there. The forward then
# keeps, for backward, every tensor autograd saves (the *activations*); backward frees them layer by
# layer while the gradients fill in; the optimizer runs last. On top of that, at every moment, come
# temporaries: the logits and their gradients at the loss, a block's own gradients, the sum of the
# tied embedding's two gradients, AdamW's intermediate tensors. The allocator's **peak** is the
# largest of these moments. `measure.peak.step_peak` predicts each from the one cost model
# (`measure.cost`: the bytes every tensor holds, exactly); here for GPT-2 small at the seed's setting:

# %%
small = get_config("gpt2_small")
seed_steps = {
    "plain": step_peak(small, 4, 512, "float32"),
    "chunked loss": step_peak(small.replace(loss_impl="chunked"), 4, 512, "float32"),
    "+ checkpoint every block": step_peak(small.replace(loss_impl="chunked", checkpoint="block"), 4, 512, "float32"),
    "+ 4 micro-batches": step_peak(small.replace(loss_impl="chunked", checkpoint="block"), 4, 512, "float32",
                                   grad_accum=4),
}
M.moments_figure(seed_steps, title="GPT-2 small, B=4, T=512, float32 (predicted): each moment's memory")

# %%
GIB = 2**30
print(format_rows(M.moments_rows(seed_steps), columns=["step", "resident", *M.MOMENTS, "peak", "at"],
                  formats={k: "{:,.0f}" for k in ("resident", *M.MOMENTS, "peak")}))
print("\n(bytes; 'resident' is what exists before the step: parameters, AdamW's state, buffers, the batch)")

# %% [markdown]
# The full logits (4 × 512 × 50,257 fp32 numbers) and their two gradients make the plain step's peak
# at the start of backward; the chunked loss removes them, and the peak moves elsewhere. With
# checkpointing, the blocks keep only their inputs. With micro-batches, every activation shrinks —
# and the tied embedding's gradient sum and AdamW's temporaries (the size of the 50,257 × 768 table)
# become the floor that neither trick moves.
#
# The seed's memory table (its numbers, for B=4, T=512) beside these predictions:

# %%
plain = seed_steps["plain"]
kinds = cost.training_memory(small, 4, 512, "float32")["by_kind"]
for key, ours, what in (("mem.total", sum(kinds.values()), "params + grads + AdamW + activations (sum)"),
                        ("results.peak_mem.before", plain.peak_bytes, "the allocator's peak of a plain step")):
    c = claims.get(key)
    print(f"the seed: {c.text!r}\n  predicted here, {what}: {ours / 1e9:.2f} GB (fp32; an analytic number, "
          f"not a measurement: the GPU run of the guide suite measures the seed's setting)")

# %% [markdown]
# ## 2. Activation checkpointing: the implementation
#
# One helper in the model, `recompute`, wraps `torch.utils.checkpoint` (non-reentrant, PyTorch's
# recommended kind): it keeps the tensor inputs of the function it runs, drops everything the
# function would have saved, and runs it again during backward when the first of those tensors is
# needed. The helper also tells the memory kit that what it keeps is the residual stream:

# %%
show_source(recompute)

# %% [markdown]
# `GPTConfig(checkpoint=...)` picks what each block recomputes — `"block"` (all of it), `"attention"`
# or `"mlp"` (that half with its norm) — and `checkpoint_every=k` applies it to blocks 0, k, 2k, …:

# %%
show_source(Block.forward)

# %%
show_source(Block.sublayers)

# %% [markdown]
# Non-reentrant checkpointing stops the recompute as soon as backward has every tensor it needs
# (*early stop*). A `Linear` saves its input *before* its matmul runs, so each half's last matmul
# (the output projection, the MLP's down projection) is never run again — unless the other half
# comes after it in the same checkpointed block. The cost model charges exactly that
# (`measure.cost.step_kernels`; the tests compare it with every operator PyTorch dispatches).
#
# ## 3. Correctness: the same loss and the same gradients
#
# The recompute runs the same operations on the same inputs, and `torch.utils.checkpoint` restores
# the random-number state, so even dropout draws the same masks. In float64 the loss and every
# gradient must equal the plain model's to rounding:

# %%
tiny = GPTConfig(n_layer=3, n_head=4, n_embd=32, vocab_size=97, block_size=64, dropout=0.1, name="check")
g = torch.Generator().manual_seed(0)
x, y = (torch.randint(0, 97, (2, 12), generator=g) for _ in range(2))


def loss_and_grads(cfg):
    torch.manual_seed(0)
    model = GPT(cfg).double().train()
    torch.manual_seed(1)
    loss = model(x, y)[1]
    loss.backward()
    return loss.detach(), [p.grad for p in model.parameters()]


ref = loss_and_grads(tiny)
for policy in M.POLICIES:
    loss, grads = loss_and_grads(M.policy_config(tiny, policy))
    diff = max([abs(loss - ref[0]).item()] + [(a - b).abs().max().item() for a, b in zip(grads, ref[1])])
    print(f"{policy:14}: loss and every gradient == plain (dropout 0.1, float64, max |diff| < 1e-12): {diff < 1e-12}")

# %% [markdown]
# ## 4. What each policy keeps: predicted, and counted
#
# `measure.memory.memory_breakdown` runs a training step and counts every tensor autograd saves
# (saved-tensor hooks, each storage once, by component); `cost.activation_bytes` predicts the same
# from the config. For every policy, on a small model, they must agree byte for byte — component by
# component:

# %%
for policy in M.POLICIES:
    cfg = M.policy_config(get_config("tiny", n_layer=3), policy)
    predicted = cost.activation_bytes(cfg, 3, 10)
    counted = memory_breakdown(cfg, 3, 10, device="cpu").activations_by_component
    print(f"{policy:14}: predicted {sum(predicted.values()):>11,} bytes, counted {sum(counted.values()):>11,}; "
          f"every component equal: {predicted == counted}")

# %% [markdown]
# And at this profile's size, every policy — its kept bytes, its step timed in interleaved rounds
# with the machine's ceilings' probes (so each round's time is predicted from that round's
# ceilings), and its peak, predicted and measured:

# %% tags=["nbval-ignore-output"]
probes = lesson_probes(DEVICE, SIZES.roofline, DTYPE)
pol = M.policy_study(S, probes, DEVICE)
print(f"{S.preset}, B={S.batch}, T={S.seq_len}, {DTYPE}, {pol['saved'][0]['device_name']}, {S.rounds} rounds")
print(format_rows(pol["rows"], columns=["policy", "saved_predicted_MiB", "saved_measured_MiB", "saved_exact",
                                        "recompute_GFLOP", "peak_predicted_MiB", "peak_measured_MiB", "peak_error"],
                  headers={"saved_predicted_MiB": "kept MiB (pred)", "saved_measured_MiB": "kept MiB (counted)",
                           "saved_exact": "exact", "recompute_GFLOP": "recompute GFLOP",
                           "peak_predicted_MiB": "peak MiB (pred)", "peak_measured_MiB": "peak MiB (meas)",
                           "peak_error": "peak error"},
                  formats={"saved_predicted_MiB": "{:,.1f}", "saved_measured_MiB": "{:,.1f}",
                           "recompute_GFLOP": "{:,.2f}", "peak_predicted_MiB": "{:,.1f}",
                           "peak_measured_MiB": "{:,.1f}", "peak_error": "{:+.1%}"}))
M.policy_figure(pol["saved"], pol["steps"], pol["peaks"])

# %% [markdown]
# ## 5. What the recompute costs
#
# The recompute is a second forward of the checkpointed part: its FLOPs are in the table above
# (`recompute GFLOP`), and the roofline model turns its kernels into time. The measured cost is the
# speedup of the step with checkpointing over the step without it, **per round** (both timed in the
# same round): the median with its range, below 1 when it is slower. Its ceiling is 1.0 --
# checkpointing only adds work -- so a median above 1 is noise, never a gain. Beside it the same
# ratio predicted from each round's ceilings:

# %% tags=["nbval-ignore-output"]
print(f"ceilings of these rounds: {pol['ceilings'].describe()}")
for r in pol["rows"][1:]:
    if not r.get("time_ratio"):
        print(f"{r['policy']}: {r['error']}")
        continue
    measured = M.ratio_words(r["time_ratio"], r["time_ratio_min"], r["time_ratio_max"], r["rounds"])
    print(f"{r['policy']:14}: measured {measured}; the roofline predicted {1 / r['predicted_ratio']:.2f}x")

# %% [markdown]
# Checkpointing the attention half keeps away q, k, v and the attention output (with eager attention
# also its (B, H, T, T) probabilities) and runs the q/k/v projections and the attention core again;
# the MLP half keeps away the widest tensors (4 × n_embd per token) and runs its up projection again;
# a whole block also runs the attention's output projection again. The `recompute GFLOP` column says
# how much work each adds; `checkpoint_every=2` recomputes half the blocks.
#
# ## 6. Gradient accumulation
#
# One optimizer step over k micro-batches: each micro-batch's forward and backward, its loss scaled
# by 1/k, so that the gradients autograd adds into `.grad` sum to the whole batch's. The training loop
# (`train.py`) and every measured step call the same function:

# %%
show_source(accumulate_gradients)

# %% [markdown]
# Two details matter. `model(x, y)[1]` takes only the loss: `_, loss = model(x, y)` would keep the
# (B, T, V) logits alive through backward and into the next micro-batch. And under
# `DistributedDataParallel`, `no_sync()` skips the gradient all-reduce on every micro-batch but the
# last: one all-reduce per step instead of k (`python -m tutorial_lib train --grad-accum K` runs it,
# alone or under `torchrun`; `tests/test_ddp.py` checks that 2 gloo ranks with accumulation follow
# one process).
#
# The gradients must be the whole batch's — in float64, to rounding (and the `1/k` matters: without
# it they are k times too large):

# %%
for k in (1, 2, 4):
    print(f"k={k}: largest |accumulated - whole batch| gradient difference < 1e-13: "
          f"{M.gradient_difference(tiny.replace(dropout=0.0), 4, 12, k) < 1e-13}")


def unscaled(model, xb, yb, k):
    for xs, ys in zip(xb.chunk(k), yb.chunk(k)):
        model(xs, ys)[1].backward()


wrong = M.gradient_difference(tiny.replace(dropout=0.0), 4, 12, 2, unscaled)
print(f"without the 1/k, k=2: the gradients are off (difference > 1e-3): {wrong > 1e-3}")

# %% [markdown]
# What it costs: the same tokens per step in smaller micro-batches means smaller matmuls and more
# operators per token. Measured in the same rounds as the ceilings' probes, with the predicted peak:

# %% tags=["nbval-ignore-output"]
micro = M.micro_batch_study(S, probes, DEVICE)
print(f"{S.preset}, {S.micro_step_batch} sequences x T={S.seq_len} per step, {DTYPE}, {S.rounds} rounds")
print(format_rows(micro["rows"], columns=["micro_batch", "grad_accum", "measured_ms", "roofline_ms", "roofline_error",
                                          "tokens_per_s", "predicted_tokens_per_s", "predicted_peak_bytes"],
                  headers={"roofline_ms": "predicted_ms", "roofline_error": "time error",
                           "predicted_peak_bytes": "predicted peak"},
                  formats={"measured_ms": "{:,.1f}", "roofline_ms": "{:,.1f}", "roofline_error": "{:+.1%}",
                           "tokens_per_s": "{:,.0f}", "predicted_tokens_per_s": "{:,.0f}",
                           "predicted_peak_bytes": "{:,}"}))
M.micro_batch_figure(micro["rows"], title=f"{S.preset}, {S.micro_step_batch * S.seq_len:,} tokens per step, "
                     f"{DTYPE}, {pol['saved'][0]['device_name']}")

# %% [markdown]
# ## 7. The planner: the fastest plan that fits
#
# A plan is a micro-batch (and so an accumulation count), a checkpointing policy, a loss (full
# logits or chunked, notebook 08), an attention backend and a dtype. `M.Planner` predicts every plan
# once — its step time with the roofline model on the machine's ceilings, its peak with
# `measure.peak` — and `choose(budget)` returns the fitting plans, fastest first. On paper first:
# GPT-2 small at the seed's setting (2,048 tokens per step) on an H200's datasheet:

# %%
h200 = M.Planner(small, 512, 4 * 512, {"bfloat16": spec_ceilings("NVIDIA H200", "bfloat16")}, device_type="cuda")
print(f"{len(h200.plans)} plans; the floor (parameters + gradients + AdamW state): {fmt_bytes(h200.floor_bytes)}")
for gib in (2.25, 2.5, 3, 4):
    print(h200.choose(int(gib * GIB)).message())

# %% [markdown]
# A budget below the floor is refused before anything else, with the floor; a budget between the
# floor and the smallest plan's peak fits nothing, and says what the smallest plan needs:

# %%
for budget in (GIB, h200.floor_bytes + 1):
    try:
        print(h200.choose(budget).message())
    except ValueError as e:
        print(f"ValueError: {e}")

# %% [markdown]
# On this machine: the planner on the ceilings measured in section 4's rounds, for this profile's
# budgets — then each chosen plan measured, its peak by the allocator and its step time in the same
# rounds as a new measurement of the ceilings (so the time error compares a prediction and a
# measurement of the same minute):

# %% tags=["nbval-ignore-output"]
planner = M.Planner(get_config(S.preset), S.seq_len, S.tokens_per_step, {DTYPE: pol["ceilings"]}, DEVICE.type)
for mib in S.budgets_mib:
    print(planner.choose(mib * 2**20).message())
M.plan_figure(planner, planner.choose(S.budgets_mib[0] * 2**20))

# %% tags=["nbval-ignore-output"]
budget_rows = M.budget_checks(planner, [b * 2**20 for b in S.budgets_mib],
                              lambda dt: lesson_probes(DEVICE, SIZES.roofline, dt), DEVICE, S.rounds, S.min_run_time)
print(format_rows(budget_rows, columns=["budget_bytes", "plan", "predicted_peak_bytes", "measured_peak_bytes",
                                        "peak_error", "fits", "roofline_ms", "measured_ms", "time_error"],
                  headers={"budget_bytes": "budget", "predicted_peak_bytes": "peak (pred)",
                           "measured_peak_bytes": "peak (meas)", "roofline_ms": "ms (pred)", "measured_ms": "ms (meas)"},
                  formats={"budget_bytes": "{:,}", "predicted_peak_bytes": "{:,}", "measured_peak_bytes": "{:,}",
                           "peak_error": "{:+.1%}", "roofline_ms": "{:,.1f}", "measured_ms": "{:,.1f}",
                           "time_error": "{:+.1%}"}))
for r in budget_rows:
    if r.get("plan"):
        print(f"budget {fmt_bytes(r['budget_bytes'])}: peak error {M.within(r['peak_error'], M.PEAK_GOAL)}, "
              f"time error {M.within(r['time_error'], M.TIME_GOAL)} (rounds {r['time_error_min']:+.1%} to "
              f"{r['time_error_max']:+.1%})")

# %% [markdown]
# ## 8. The budget explorer
#
# Slide the **budget** (or type it, in MiB): the fastest plan that fits, the next ones, and the chosen
# plan's peak part by part beside the budget (dashed) and the floor (dotted). Every plan is predicted
# once; moving the slider only filters.

# %% tags=["nbval-ignore-output"]
from tutorial_lib.widgets import budget_explorer  # the explorers need ipywidgets (part of the notebook stack)

budget_explorer(planner, budget_mib=S.budgets_mib[len(S.budgets_mib) // 2])

# %% [markdown]
# ## 9. Recorded results
#
# The guide suite (`python -m tutorial_lib bench --suite guide`) records this lesson's tables for
# `OPTIMIZATION_GUIDE.md` (on a GPU: one budget at the seed's setting); here are those recorded so far.

# %% tags=["nbval-ignore-output"]
from tutorial_lib.guide.report import recorded

recorded("memory_budget", "memory_budget_policies", "memory_budget_micro")

# %% [markdown]
# ## Summary

# %% tags=["nbval-ignore-output"]
print(f"On {pol['saved'][0]['device_name']} ({DTYPE}), {S.preset}:")
best = min(pol["rows"], key=lambda r: r["saved_predicted_MiB"])
print(f"- checkpointing keeps as little as {best['saved_predicted_MiB']:,.1f} MiB ({best['policy']}) of "
      f"{pol['rows'][0]['saved_predicted_MiB']:,.1f} MiB at B={S.batch}, T={S.seq_len}; predicted = counted for "
      f"every policy: {all(r['saved_exact'] for r in pol['rows'])}.")
errs = [r["peak_error"] for r in pol["rows"] + budget_rows if r.get("peak_error") is not None]
print(f"- peaks predicted within {max(abs(e) for e in errs):.1%} of the allocator's ({len(errs)} steps).")
for r in budget_rows:
    if r.get("plan"):
        print(f"- budget {fmt_bytes(r['budget_bytes'])}: {r['plan']}; time error {r['time_error']:+.1%}.")

# %% [markdown]
# - A step's memory is not the seed's sum: what runs a machine out of memory is the peak, the
#   activations plus the temporaries of one moment — the full logits' gradients, a block's own
#   gradients, the tied embedding's gradient sum, AdamW's temporaries.
# - Activation checkpointing trades a second forward of the checkpointed part for its activations;
#   `torch.utils.checkpoint` makes it one line, and early stop spares each half's last matmul.
# - Gradient accumulation keeps the gradients of the whole batch (exactly, in float64) with the
#   activations of a micro-batch; it costs the speed of smaller matmuls, and under DDP one
#   all-reduce per step with `no_sync`.
# - With one cost model for time and memory, the choice is a search: predict every plan, keep those
#   that fit, take the fastest — then measure it.
#
# ## Exercises
#
# 1. **Write gradient accumulation** (auto-checked): `my_accumulate(model, x, y, k)` leaves in every
#    `.grad` the gradients of the whole batch (x, y) while running it as k micro-batches. The checker
#    compares it with one pass over the whole batch in float64.

# %%
def my_accumulate(model, x, y, k):
    raise NotImplementedError  # your code here


M.check_accumulation(my_accumulate)

# %% [markdown]
# 2. **Where the plan changes.** Move the explorer's budget from the floor up: at which budgets does
#    the plan stop accumulating, stop checkpointing, change its loss? Check each with
#    `planner.choose(budget).best.peak.parts` — which moment is the peak, and why?
# 3. **Every k-th block.** Add policies `{"checkpoint": "block", "checkpoint_every": 3}` and
#    `{"checkpoint": "attention", "checkpoint_every": 2}` to `M.POLICIES` and rerun sections 4 and 5:
#    how do the kept bytes and the recompute scale with the fraction of blocks recomputed?
# 4. **bf16.** Measure the ceilings in bfloat16 (`lesson_probes(DEVICE, SIZES.roofline, "bfloat16")`
#    with `roofline.check_steps`, or `measure.ceilings.measure_ceilings`) and give the planner both
#    dtypes: does it pick bf16 on this machine, and does the measurement agree?
