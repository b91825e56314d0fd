# %% [markdown]
# # 11 · The speed ladder: precision, torch.compile, a fused optimizer and nice numbers
#
# **What you will learn**
#
# - the levers practitioners pull first — TF32 matmuls, bf16 autocast (and fp16 with a loss scaler),
#   a fused attention kernel, `torch.compile`, a vocabulary padded to a nice number, a fused
#   optimizer — and that they change *how* the model is computed, not the model;
# - each one measured as a rung on top of the rungs below it, on this machine: step time, tokens/s,
#   peak memory, the speedup over the rung below and over the baseline, MFU against the peak of the
#   rung's own dtype, and what the roofline model expected — every ratio from the same interleaved
#   rounds, with its range;
# - what fp32, TF32, bf16 and fp16 can hold, what this machine has for them (a CPU's flags say),
#   why bf16 needs no loss scaling and fp16 does, and which operations autocast leaves in fp32;
# - what `torch.compile` costs before it pays, and when padding the vocabulary changes the loss;
# - Karpathy's published A100 ladder beside it: the shape of a ladder on other hardware.
#
# Sizes come from the size profile (`TUTORIAL_PROFILE=smoke|cpu|gpu`); the first cell says where the
# stored outputs were measured.

# %% tags=["nbval-ignore-output"]
# %matplotlib inline
import torch

from tutorial_lib import runtime, settings
from tutorial_lib.lessons import speed_ladder as SL
from tutorial_lib.lessons.common import env_summary, format_rows, show_source
from tutorial_lib.model import GPT, GPTConfig, get_config
from tutorial_lib.runtime import StepSettings
from tutorial_lib.sizes import get_sizes

DEVICE = settings.get_device()
SIZES = get_sizes()  # the size profile: TUTORIAL_PROFILE=smoke|cpu|gpu
S = SIZES.ladder  # this lesson's sizes
print(env_summary(DEVICE))
print(f"ladder : {S.preset}, B={S.batch}, T={S.seq_len}, fwd+bwd+AdamW, {S.rounds} interleaved rounds, "
      f"matmul peaks at n={list(S.peak_sizes)}, compile: {S.compile}")

# %% [markdown]
# ## 1. The ladder
#
# A training step can get faster without changing the model at all. Each rung below adds one lever
# to the rungs under it:
#
# 1. **fp32 eager** — the baseline: eager attention, GPT-2's 50,257 logits, AdamW's loop over the
#    parameter tensors;
# 2. **TF32** — float32 matmuls on NVIDIA's tensor cores with a shorter mantissa (CUDA only);
# 3. **bf16 autocast** — matmuls in bfloat16, the weights and everything else in fp32; beside it,
#    **fp16** with a `GradScaler`;
# 4. **SDPA** — lesson 03's fused attention kernel;
# 5. **`torch.compile`** — Inductor fuses the elementwise work and writes its own kernels;
# 6. **the vocabulary padded to 50,304** — a multiple of 64, friendlier to matmul tiles; the padded
#    logits are masked so the loss does not change;
# 7. **fused AdamW** — one kernel for the whole update instead of a handful per tensor; beside it,
#    **foreach**.
#
# "Everything together" is the last rung against the first. The levers live in two places:
# `GPTConfig` where they change the model (`attn_backend`, `pad_vocab_multiple`,
# `mask_vocab_padding`) and `runtime.StepSettings` where they change only how it runs (`dtype`,
# `tf32`, `compile`, `adamw`) — `bench`, `train` and the explorers take both.
#
# The anchor: Karpathy's "Let's reproduce GPT-2 (124M)" walked down such a ladder on one A100.
# Published figures, his order (compile before flash attention), other hardware:

# %%
print(format_rows(SL.published_rows(), formats={"ms_per_step": "{:,.0f}", "claimed_speedup": "{:.2f}x",
                                                 "vs_fp32": "{:.2f}x"}))
print(f"\nsource: {SL.PUBLISHED_SOURCE}")

# %% [markdown]
# ## 2. Precision: what a number can hold
#
# A floating-point number is a sign, an exponent (its range) and a mantissa (its resolution). bf16
# keeps fp32's exponent and drops mantissa bits; fp16 keeps more mantissa but a much smaller
# exponent; TF32 is what a tensor core uses *inside* an fp32 matmul (fp32's range, fp16's
# resolution). From `torch.finfo`:

# %%
print(format_rows(SL.precision_rows(), formats={"max": "{:.3g}", "smallest_normal": "{:.3g}",
                                                "smallest_subnormal": "{:.3g}", "eps": "{:.3g}"}))

# %% [markdown]
# `eps` is the gap between 1 and the next number: bf16 keeps between 2 and 3 significant digits. So sums
# of many small terms — a softmax over 50,257 logits, a norm's mean of squares — lose their small
# terms in bf16, while products of two numbers barely notice. And fp16's smallest numbers sit far
# above fp32's: small gradients vanish (section 7).

# %%
one, p = torch.tensor(1.0, dtype=torch.bfloat16), 1 / 50257  # one token's probability under a uniform guess
print(f"bf16: 1 + 1/50,257 == 1 ? {bool(one + p == one)}    fp32: {bool(torch.tensor(1.0) + p == 1.0)}")
print(f"bf16: 256 + 1 == 256 ? {bool(torch.tensor(256.0, dtype=torch.bfloat16) + 1 == 256)}")
g = torch.tensor(1e-8)  # a small gradient
print(f"1e-8 in fp16: {g.half().item()}    in bf16: {g.bfloat16().item():.3g}")
print(f"fp16's largest number x 2: {(torch.tensor(torch.finfo(torch.float16).max, dtype=torch.float16) * 2).item()}")

# %% [markdown]
# ## 3. This machine
#
# Whether low precision is faster depends on the hardware. A GPU since Ampere has TF32 and bf16
# tensor cores. On a CPU it is the instructions: Intel's **AMX** tiles multiply bf16 matrices
# several times faster than fp32; **AVX-512 BF16** (AMD's recent EPYCs, some Xeons) has dot-product
# instructions for bf16 pairs — up to about twice; a CPU with neither converts bf16 to fp32 to compute,
# and gains nothing. fp16 matmuls need their own instructions on a CPU (AVX-512 FP16 or AMX-FP16);
# without them PyTorch falls back to slow code. The CPU's flags (`/proc/cpuinfo`) say which:

# %% tags=["nbval-ignore-output"]
prec = SL.device_precision(DEVICE)
print(f"{prec['model']}: {prec['summary']}")
if "units" in prec:
    for u in prec["units"]:
        print(f"  flag {u['flag']:12} {u['what']}")
    print(f"  torch's CPU capability: {prec['torch_capability']}")
print(f"TF32 here: {StepSettings(tf32=True).unavailable(DEVICE) or 'available'}")

# %% [markdown]
# **TF32 on a CPU:** TF32 is a mode of NVIDIA's tensor cores, not a format a CPU computes in, so the
# ladder's TF32 rung runs on CUDA only; on a CPU its row says why and the ladder goes on without it.
#
# ## 4. The levers in the library
#
# How a step runs is one small object, separate from the model's config:

# %%
show_source(StepSettings, lines=slice(0, 12))

# %% [markdown]
# The padded vocabulary is the model's (it changes the embedding's shape). With
# `mask_vocab_padding=True` the padded logits are set to −inf before the loss, so exp(−inf) = 0
# keeps them out of the softmax; without it they take part, as in nanoGPT:

# %%
show_source(GPT.forward, lines=slice(-23, -10))

# %% [markdown]
# The optimizer's implementations differ only in how many operators they launch; the cost model
# counts each (and the tests check it against what PyTorch dispatches):

# %%
show_source(runtime.make_adamw)

# %% [markdown]
# ## 5. Correctness: each lever changes the speed, not the answer
#
# **bf16 autocast against fp32**, the same model and batch: within bf16's resolution (its eps is
# 2⁻⁷), logits within 2 eps of the largest logit, the loss within one eps, every gradient within
# 4 eps in norm (the tests state the same tolerances):

# %%
torch.manual_seed(0)
tiny = get_config("tiny")
check = GPT(tiny)
idx = torch.randint(0, tiny.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
tgt = torch.randint(0, tiny.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
logits, loss = check(idx, tgt)
loss.backward()
ref = [q.grad.clone() for q in check.parameters()]
check.zero_grad()
with torch.autocast("cpu", dtype=torch.bfloat16):
    low, loss_low = check(idx, tgt)
loss_low.backward()
eps = torch.finfo(torch.bfloat16).eps
print(f"logits {low.dtype}, loss {loss_low.dtype}, gradients {check.wte.weight.grad.dtype}")
print(f"loss within 1 eps        : {abs(loss_low.item() - loss.item()) <= eps * loss.item()}")
print(f"logits within 2 eps      : {bool((low.float() - logits).abs().max() <= 2 * eps * logits.abs().max())}")
grads_ok = all(bool((q.grad - r).norm() <= 4 * eps * r.norm()) for q, r in zip(check.parameters(), ref))
print(f"gradients within 4 eps   : {grads_ok}")

# %% [markdown]
# **The padded vocabulary**, in float64: the masked model gives the unpadded model's loss and
# gradients (the padded rows get none); the unmasked one does not — its loss rises by the mean over
# tokens of log(1 + Σ e^pad / Σ e^real), computed here from its own logits:

# %%
small = GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=97, block_size=32, name="small")
gen = torch.Generator().manual_seed(2)
ids, tgts = torch.randint(0, 97, (2, 9), generator=gen), torch.randint(0, 97, (2, 9), generator=gen)
torch.manual_seed(0)
plain = GPT(small).double()
for mask in (True, False):
    torch.manual_seed(0)
    padded = GPT(small.replace(pad_vocab_multiple=64, mask_vocab_padding=mask)).double()
    with torch.no_grad():
        for a, b in zip(padded.parameters(), plain.parameters()):
            a[tuple(slice(0, n) for n in b.shape)].copy_(b)
    plain.zero_grad()
    out = [m(ids, tgts) for m in (plain, padded)]
    for _, lss in out:
        lss.backward()
    same_grads = all(torch.allclose(a.grad[tuple(slice(0, n) for n in b.shape)], b.grad, rtol=1e-10, atol=1e-14)
                     for a, b in zip(padded.parameters(), plain.parameters()))
    if mask:
        print(f"masked   (V={padded.config.padded_vocab_size}): loss == unpadded: "
              f"{torch.allclose(out[1][1], out[0][1], rtol=1e-13, atol=0)}, gradients == unpadded: {same_grads}")
    else:
        lg = out[1][0]
        rise = torch.log1p(lg[..., 97:].exp().sum(-1) / lg[..., :97].exp().sum(-1)).mean()
        print(f"unmasked (V={padded.config.padded_vocab_size}): loss rises by log(1 + pad/real) exactly: "
              f"{torch.allclose(out[1][1] - out[0][1], rise, rtol=1e-10, atol=1e-14)}")

# %% [markdown]
# **AdamW**, three implementations of one update, in float64 after three steps:

# %%
gen = torch.Generator().manual_seed(3)
grads = [[torch.randn(s, generator=gen, dtype=torch.float64) for s in ((5, 3), (7,))] for _ in range(3)]
after = {}
for impl in ("for-loop", "foreach", "fused"):
    ps = [torch.ones(s, dtype=torch.float64, requires_grad=True) for s in ((5, 3), (7,))]
    opt = runtime.make_adamw(ps, "cpu", impl, lr=1e-2)
    for gs in grads:
        for q, gr in zip(ps, gs):
            q.grad = gr.clone()
        opt.step()
    after[impl] = ps
for impl in ("foreach", "fused"):
    diff = max((a - b).abs().max().item() for a, b in zip(after[impl], after["for-loop"]))
    print(f"{impl:8} == for-loop (max |diff| < 1e-14): {diff < 1e-14}")

# %% [markdown]
# **`torch.compile`** against eager, one training step each from the same weights (on a CPU
# Inductor writes C++ and compiles it with the system's compiler — this takes a while):

# %% tags=["nbval-ignore-output"]
from tutorial_lib.measure.timing import prepare_step

if S.compile and StepSettings(compile="default").unavailable(DEVICE) is None:
    res_c = []
    for mode in (None, "default"):
        m, step, _, _ = prepare_step(small, 2, 16, "train", DEVICE, "float32", compile=mode)
        step()
        res_c.append([q.detach().clone() for q in m.parameters()])
    print("compiled step == eager step (to fp32 rounding): "
          f"{all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(*res_c))}")
else:
    print("compile is off at this size profile (or not available here): "
          f"{StepSettings(compile='default').unavailable(DEVICE) or 'sizes.ladder.compile is False'}")

# %% [markdown]
# ## 6. Measured: the ladder on this machine
#
# `SL.measure_ladder` builds every rung (a lever this device cannot run, or whose first step fails,
# is recorded in its row and left out of the rungs above it), runs each once (compiling where it
# compiles), then times every rung's training step, each dtype's matmul peak and the roofline's
# other probes **in the same interleaved rounds**. `x prev` is the speedup over the rung below and
# `x base` over the baseline, each the median of per-round ratios with the range over the rounds
# in brackets; `model` is what the roofline model expected of the lever (its prediction on the
# ceilings measured in the same rounds); `MFU` is against the matmul peak of the rung's own dtype.
# Below the figure: each rung in words, and why a rung did not run. On a CPU with bf16
# instructions, at the `cpu` profile, the lesson's goal is "everything together" at 1.5x the
# baseline or more.

# %% tags=["nbval-ignore-output"]
res = SL.measure_ladder(S, SIZES.roofline, DEVICE, progress=True)
st = res["setting"]
print(f"{st['device_name']}, {st['model']}, B={st['B']}, T={st['T']}, {st['step']}, {res['rounds']} rounds")
print(format_rows(SL.ladder_table(res["rows"]), formats={"tokens/s": "{:,.0f}", "peak MiB": "{:,.0f}",
                                                       "model": "{:.2f}"}))

# %% tags=["nbval-ignore-output"]
SL.waterfall_figure(res)

# %% tags=["nbval-ignore-output"]
cpu_with_bf16 = DEVICE.type == "cpu" and prec["kind"] != "no bf16 instructions" and SIZES.name == "cpu"
print("\n".join(SL.summary_lines(res, goal=SL.GOAL if cpu_with_bf16 else None)))

# %% [markdown]
# Read each rung next to its range: a range that spans 1.0 is noise, whatever the median says. The
# roofline's expectation is not a verdict either — it knows FLOPs, bytes and launches, not
# `torch.compile`'s fusion, so a compiled rung is predicted as its eager kernels. Where "everything
# together" falls short of the goal, the rows say where: the bf16 rung cannot beat the peaks' ratio
# on the matmul share of the step (the peaks table below, and exercise 1), a CPU without bf16
# instructions has no ratio to offer (section 3), and a lever within noise bought nothing here.
#
# **Compile time** is paid once per process (and per new shape): the first call of a compiled rung
# less one steady step, measured cold — the ladder points `torch.compile`'s on-disk caches at an
# empty folder for that call, as on a fresh machine (a second run reuses the caches and compiles in
# seconds; a rung that reuses what the rung below it compiled pays only what is new). It pays back
# after compile time / time saved per step steps:

# %% tags=["nbval-ignore-output"]
for r in res["rows"]:
    if r.get("compile_s") is None or r["key"] == "together":
        continue
    if r["key"].startswith("compile"):
        pay = ("never: the compiled step was not faster than the rung below" if r.get("payback_steps") is None
               else f"pays back after {r['payback_steps']:,.0f} steps (rounds: {r['payback_steps_min']:,.0f}-"
                    + ("never" if r["payback_steps_max"] is None else f"{r['payback_steps_max']:,.0f}") + ")")
        print(f"{r['rung']}: compile {r['compile_s']:,.1f} s, saves {r['saved_ms_per_step']:,.1f} ms per step "
              f"(median of the rounds) -> {pay}")
    else:
        print(f"{r['rung']}: compiled anew for {r['compile_s']:,.1f} s (what is new to it)")
if not any(r.get("compile_s") is not None for r in res["rows"]):
    print("no compiled rung ran here (the lines under the figure say why)")

# %% [markdown]
# **The peaks** behind the MFU and the roofline, one per dtype, measured in the same rounds (a dtype
# whose rung did not run shows the quick probe that checked it):

# %% tags=["nbval-ignore-output"]
print(format_rows(SL.peak_rows(res), formats={"peak_TFLOPs": "{:.3f}", "vs_float32": "{:.2f}x"}))

# %% [markdown]
# ## 7. Numerics: what low precision changes
#
# **The logits at initialisation**, fp32 against bf16 autocast, one batch at the ladder's setting:

# %% tags=["nbval-ignore-output"]
ld = SL.init_logit_difference(get_config(S.preset), S.batch, S.seq_len, DEVICE)
print(f"{S.preset}, B={S.batch}, T={S.seq_len}, {ld['dtype']} autocast on {ld['device_name']}:")
print(f"  largest logit {ld['max_abs_logit']:.3f}; largest difference {ld['max_abs_diff']:.4f} "
      f"({ld['max_abs_diff'] / ld['max_abs_logit']:.2%} of it), mean {ld['mean_abs_diff']:.5f}")
print(f"  loss {ld['loss_fp32']:.5f} (fp32) vs {ld['loss_low']:.5f}: {ld['loss_diff']:+.2e}; "
      f"the same most likely next token at {ld['argmax_agree']:.1%} of the positions")

# %% [markdown]
# **Which operations autocast leaves in fp32.** Every operator one forward dispatches under bf16
# autocast, with the dtype it computes in (the tiny model; casts show up as `_to_copy`):

# %%
rows = SL.autocast_dtypes(get_config("tiny"), 1, 8, "cpu")
print(format_rows(rows))

# %% [markdown]
# The matmuls (`mm`, the attention kernel) run in bf16: they hold the FLOPs, and accumulate in fp32
# inside. The residual stream stays fp32 — the weights and the embedding are fp32 — so the norms
# (`pow`, `mean`, `rsqrt`) run in fp32 on it; and the model casts the logits to fp32 before the
# log-softmax and the loss, which autocast keeps in fp32 too. Those are sums over many terms and an
# exponential: exactly where bf16's few digits lose the small terms (section 2).
#
# **Why fp16 needs a loss scale and bf16 does not.** The gradients flowing out of every Linear
# layer in one fp32 step at the ladder's setting, against each format's smallest numbers: below the
# smallest subnormal a value becomes 0; between it and the smallest normal it keeps fewer bits.
# `GradScaler` multiplies the loss (and so every gradient) by a large factor before backward and
# divides it out before the update:

# %% tags=["nbval-ignore-output"]
under = SL.gradient_underflow(get_config(S.preset), S.batch, S.seq_len, DEVICE)
print(f"{under[0]['entries']:,} gradient entries, from {under[0]['smallest']:.2e} to {under[0]['largest']:.2e}")
print(format_rows(under, columns=["dtype", "loss_scale", "to_zero", "subnormal", "overflow"],
                  formats={"loss_scale": "{:,.0f}", "to_zero": "{:.4%}", "subnormal": "{:.2%}",
                           "overflow": "{:.4%}"}))

# %% [markdown]
# bf16 has fp32's exponent: nothing underflows and no scale is needed. fp16 loses most of a step's
# gradients to its small range unless they are scaled; a scale too large overflows instead, which
# is why the scaler skips a step whose gradients hold an inf and halves its scale (`train` records
# those steps in `skipped_steps`).
#
# **Does bf16 learn as well?** The same short training run in fp32 and under bf16 autocast, several
# seeds each (`common.quality_runs`; the same seed sees the same batches), validation loss mean ±
# sd and the paired difference:

# %% tags=["nbval-ignore-output"]
from tutorial_lib.lessons.common import format_quality, loss_curves, quality_table

q = SIZES.quality
runs = SL.precision_runs(q, S.numerics_steps, DEVICE, progress=True)
print(f"{q.preset}, B={q.batch}, T={q.seq_len}, {S.numerics_steps} steps, seeds {list(q.seeds)}")
print(format_quality(quality_table(runs), baseline_label="fp32"))
loss_curves(runs, title="validation loss, fp32 vs bf16 autocast (mean over seeds, min-max band)")

# %% [markdown]
# **The chunked loss under autocast** (lesson 08): the chunks' matmuls run in bf16, their
# log-sum-exps in fp32; the loss matches the full path's within bf16's resolution, and it still keeps
# almost nothing for backward (exact byte counts from the cost model):

# %% tags=["nbval-ignore-output"]
print(format_rows(SL.chunked_loss_under_autocast(get_config(S.preset), S.batch, S.seq_len, DEVICE),
                  formats={"loss": "{:.5f}", "vs_fp32": "{:+.2e}", "saved_bytes": "{:,}",
                           "head_loss_saved_bytes": "{:,}"}))

# %% [markdown]
# **The padded logits without the mask.** nanoGPT pads the vocabulary and lets the padded logits
# into the softmax. At initialisation they take a share of the probability like any token; no target
# ever points at them, so training pushes them down. Measured: the loss against the unpadded model
# with the same weights, and the probability on the padded logits at initialisation and after a
# short run of the unmasked model:

# %% tags=["nbval-ignore-output"]
pad = SL.padding_difference(get_config(q.preset), q.batch, q.seq_len, S.numerics_steps, DEVICE)
print(f"{q.preset}, vocabulary {pad['vocab']:,} padded to {pad['padded_vocab']:,}:")
print(f"  loss vs unpadded at init: masked {pad['masked_loss_diff']:+.2e}, unmasked {pad['unmasked_loss_diff']:+.2e}")
print(f"  probability on the padded logits (unmasked): {pad['mass_at_init']:.3e} at init, "
      f"{pad['mass_after']:.3e} after {pad['steps']} steps")

# %% [markdown]
# ## 8. Recorded results
#
# The guide suite (`python -m tutorial_lib bench --suite guide`, section `speed_ladder`) records the
# ladder for `OPTIMIZATION_GUIDE.md`; on a GPU at the seed's own setting. Here are those recorded so
# far, with where they were measured:

# %% tags=["nbval-ignore-output"]
from tutorial_lib.guide.report import recorded

recorded("speed_ladder", "speed_ladder.peaks")

# %% [markdown]
# ## Summary

# %% tags=["nbval-ignore-output"]
tog = next((r for r in res["rows"] if r["key"] == "together"), None)
print(f"On {st['device_name']} ({prec['summary'].split(':')[0]}), {st['model']}, B={st['B']}, T={st['T']}:")
if tog:
    print(f"- everything together, over the fp32 eager baseline: {SL.rung_speedup(tog, 'base').text()}; MFU "
          f"{tog['mfu']:.1%} of the {tog['dtype']} peak")
best = max((r for r in res["rows"] if r.get("speedup_prev") and not r.get("beside")),
           key=lambda r: r["speedup_prev"], default=None)
if best:
    print(f"- the largest single rung: {best['rung']}, {SL.rung_speedup(best, 'prev').text()}")

# %% [markdown]
# - The ladder's levers change how the model is computed, not the model: each is checked against
#   its reference (bf16 within its resolution, the masked padding exactly, AdamW's implementations to
#   rounding, the compiled step to fp32 rounding).
# - Low precision pays where the hardware has units for it — tensor cores on a GPU, AMX or BF16
#   dot-product instructions on a CPU — and only on the matmul share of a step (Amdahl); the CPU's
#   flags say which kind of machine this is, the peaks how much.
# - bf16 needs no loss scale (fp32's range); fp16 does. Autocast keeps sums, norms and the loss in
#   fp32.
# - `torch.compile` is paid up front; it pays back after a number of steps the summary computes. The
#   padded vocabulary is exact only with the mask.
# - Karpathy's A100 ladder is another machine at another size: its shape, not its numbers, is the
#   comparison.
#
# ## Exercises
#
# 1. **A precision rung's ceiling** (auto-checked). Only the matmuls get the new dtype's peak; the
#    rest of the step (norms, the loss, the optimizer, per-operator overhead) stays roughly as it
#    was. So a precision rung cannot beat `step_ms × ((1 − share) + share / peak_ratio)`, with `share`
#    the matmul part of the step and `peak_ratio` the new peak over the old one (Amdahl's law).
#    Write it; the checker tries several cases and names the usual slips. Then try it on the ladder
#    above: the fp32 rung's time, the matmul share of its roofline prediction
#    (`roofline.predict_step(...).rows`, the components with FLOPs) and the bf16 / fp32 peak ratio
#    from the peaks table. Is the measured bf16 rung above or below your ceiling?

# %%
def my_rung_ceiling(step_ms, matmul_share, peak_ratio):
    raise NotImplementedError  # your code here


SL.check_rung_ceiling(my_rung_ceiling)

# %% [markdown]
# 2. **Your GPU.** On a CUDA machine the TF32 rung runs and `S.compile_modes` adds `reduce-overhead`
#    (CUDA graphs: fewer launches). Which rung pays most there, and does the order of Karpathy's
#    ladder still hold at the seed's B=4, T=512?
# 3. **fp16 with a scaler.** With `train(..., dtype="float16")` on a device that has fp16 units,
#    watch `history.skipped_steps`: when does the scaler skip, and what happens to the loss if you
#    drop the scaler (`torch.autocast` alone)?
# 4. **Padding pays where?** `python -m tutorial_lib bench --pad-vocab 64 --mask-vocab-padding` at a
#    few batch sizes: on which device does 50,304 beat 50,257, and why would a CPU care less than a
#    tensor core?
