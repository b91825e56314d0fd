# %% [markdown]
# # 04 · MLP expansion: 4× → 3×
#
# **What you will learn**
#
# - what the MLP's *expansion ratio* is, and what shrinking it from 4× to 3× removes (a picture
#   drawn from the configs);
# - why "25 % fewer parameters" is true of the MLP and not of the model: parameters and FLOPs of the
#   **whole** GPT-2 small, computed, and checked against PyTorch's FLOP counter;
# - what it buys **on your machine**: training-step time and memory, the MLP alone vs the whole step,
#   and Amdahl's law connecting the two;
# - whether the smaller model still learns as well: validation loss after the same number of steps,
#   in short runs recorded by the guide suite and in 1000-step runs recorded on an H200;
# - the seed's "25 % fewer parameters, 25 % faster" beside the measurements, and why they differ.
#
# Sizes come from the size profile (`TUTORIAL_PROFILE=smoke|cpu|gpu`); analytic numbers always use
# the real GPT-2 small. The first cell says where the stored outputs were measured.

# %% tags=["nbval-ignore-output"]
# %matplotlib inline
import torch

from tutorial_lib import claims, settings
from tutorial_lib.lessons import mlp_expansion as L
from tutorial_lib.lessons import swiglu
from tutorial_lib.lessons.common import (
    QUALITY_BASELINE,
    env_summary,
    format_rows,
    measure_variants,
    noise_note,
    recorded_quality,
    row_speedup,
    show_source,
)
from tutorial_lib.measure.records import results_dir
from tutorial_lib.model import get_config
from tutorial_lib.sizes import get_sizes

DEVICE = settings.get_device()
SIZES = get_sizes()  # the size profile: TUTORIAL_PROFILE=smoke|cpu|gpu
S = SIZES.step  # the timed training step
print(env_summary(DEVICE))
print(f"step timing : {S.preset}, batch {S.batch} x {S.seq_len} tokens, {S.rounds} interleaved rounds")

# %% [markdown]
# ## 1. The idea
#
# Every transformer block has two halves: attention mixes information *between* positions, the MLP
# transforms each position on its own. GPT-2's MLP widens the 768-wide residual stream to a hidden
# layer `ratio × 768` wide, applies GELU, and projects back:
#
#     h = GELU(x W_up)        # (B, T, 768) -> (B, T, ratio*768)
#     y = h W_down            # (B, T, ratio*768) -> (B, T, 768)
#
# Both matrices have `768 × hidden` weights, so the MLP's parameters and FLOPs are proportional to
# the ratio: 3× instead of 4× removes exactly a quarter of them. The picture is drawn from the
# configs (`GPTConfig.mlp_ratio`):

# %%
small = get_config("gpt2_small")
variants = L.mlp_variants(small, L.VARIANTS_04)
L.mlp_figure(variants, title="GPT-2 small: one block's MLP, widths to scale")

# %% [markdown]
# ## 2. The implementation, from the library
#
# One class serves every ratio; the hidden width comes from the config (`mlp_hidden = round(ratio ×
# n_embd)`). The lesson is a one-field change: `get_config("gpt2_small", mlp_ratio=3.0)`.

# %%
from tutorial_lib.model import MLP

show_source(MLP)

# %%
from tutorial_lib.model import GPTConfig

show_source(GPTConfig.mlp_hidden.fget)

# %% [markdown]
# ## 3. Correctness checks
#
# The MLP must compute exactly `GELU(x W_upᵀ) W_downᵀ`, its parameter count must be the formula
# `2 × n_embd × hidden`, and the analytic FLOP model we use below must agree with PyTorch's
# `FlopCounterMode` for both ratios (forward and backward of the whole model; GPT-2 small's
# dimensions with 2 of its 12 layers and 32 tokens, to keep it quick — the formula is per layer).

# %%
import torch.nn.functional as F

from tutorial_lib.measure.cost import step_flops
from tutorial_lib.measure.flops import count_flops

g = torch.Generator().manual_seed(0)
for label, cfg in variants.items():
    torch.manual_seed(0)
    mlp = MLP(cfg)
    x = torch.randn(2, 5, cfg.n_embd, generator=g, dtype=torch.float64)
    mlp = mlp.double()
    ref = F.gelu(x @ mlp.up_proj.weight.T) @ mlp.down_proj.weight.T
    n = sum(p.numel() for p in mlp.parameters())
    print(f"{label}: hidden {cfg.mlp_hidden}, output == GELU(x W_up^T) W_down^T: "
          f"{torch.allclose(mlp(x), ref, rtol=0, atol=1e-12)}; params {n:,} == 2 x {cfg.n_embd} x "
          f"{cfg.mlp_hidden}: {n == 2 * cfg.n_embd * cfg.mlp_hidden}")
for label, cfg in variants.items():
    short = cfg.replace(n_layer=2)
    counted = count_flops(short, 1, 32)
    ok = (counted["fwd"] == step_flops(short, 1, 32, "fwd", "counted")
          and counted["bwd"] == step_flops(short, 1, 32, "bwd", "counted"))
    print(f"{label}: analytic FLOPs == FlopCounterMode (forward and backward, whole model): {ok}")

# %% [markdown]
# ## 4. On paper: the whole model, not only the MLP
#
# Parameters and the FLOPs of one training step (forward + backward, causal attention counted as
# the pairs a query may see) for GPT-2 small at the seed's setting, B=4, T=512:

# %%
rows = L.cost_rows(variants, batch_size=4, seq_len=512)
print(f"{'':8} {'hidden':>6} {'MLP params':>11} {'vs 4x':>6} {'model params':>13} {'vs 4x':>6} "
      f"{'train GFLOP':>12} {'vs 4x':>6} {'MLP share':>9}")
for r in rows:
    print(f"{r['variant']:8} {r['hidden']:>6} {r['mlp_params']:>11,} {r['mlp_params_ratio']:>6.3f} "
          f"{r['params']:>13,} {r['params_ratio']:>6.3f} {r['train_flops'] / 1e9:>12,.0f} "
          f"{r['flops_ratio']:>6.3f} {r['mlp_flop_share']:>9.1%}")
four, three = rows
print(f"\nThe MLP loses {1 - three['mlp_params_ratio']:.0%} of its parameters; the model loses "
      f"{1 - three['params_ratio']:.1%} of its parameters and {1 - three['flops_ratio']:.1%} of a step's FLOPs.")
emb = small.padded_vocab_size * small.n_embd
print(f"The token embedding (shared with the LM head) alone is {emb:,} parameters, "
      f"{emb / four['params']:.1%} of GPT-2 small; the LM head is "
      f"{four['head_flop_share']:.1%} of a step's FLOPs at B=4, T=512.")
print(f"The MLP is {four['mlp_flop_share']:.1%} of GPT-2 small's training FLOPs at B=4, T=512: if time "
      f"followed FLOPs, the 3x step would be {1 / three['flops_ratio']:.3f}x as fast, not 1.333x.")

# %% [markdown]
# Where does the rest go? The embedding and LM head, the attention projections and attention
# itself do not change, and together they are more than half of the work. Amdahl's law: a part that is a fraction *s* of the work and gets
# *k* times cheaper makes the whole `1 / ((1 − s) + s / k)` times cheaper.
#
# ## 5. Measured: one training step, and the MLP alone
#
# A full training step (forward, backward, AdamW) of each variant, timed with
# `torch.utils.benchmark` (median of repeated blocks). The variants are timed *interleaved*, round
# after round, and the speedup is the median of per-round ratios, so a machine that is busy some of
# the time slows both sides of each ratio alike. It is printed with its range over the rounds, the
# rounds, and its **analytic ceiling** — the most the 3× MLP can give by the cost model (the largest
# of the step's FLOP, byte and kernel-launch ratios) — and a verdict by the tutorial's three rules
# (`tutorial_lib.speedups`): a range that spans 1.0 is *within noise*, fewer than three rounds give
# *no verdict*, a median above the ceiling is *above the ceiling* (noise, or a different kernel ran).
# Memory is the exact sum for one step: parameters + gradients + optimizer state + activations
# saved for backward (plus the allocator's peak on CUDA).

# %% tags=["nbval-ignore-output"]
step_variants = L.mlp_variants(get_config(S.preset), L.VARIANTS_04)
meas = measure_variants(step_variants, S.batch, S.seq_len, rounds=S.rounds,
                          min_run_time=S.min_run_time, device=DEVICE)
m0 = meas[0]
print(f"{m0['preset']}, B={m0['batch_size']}, T={m0['seq_len']}, {m0['dtype']}, {m0['device_name']}")
step = row_speedup(meas[1], step_variants["GELU 4x"], step_variants["GELU 3x"]) if not meas[1]["error"] else None
print(format_rows([{"": r["variant"], "params": r.get("params"), "ms/step": r.get("median_ms"),
                    "tokens/s": r.get("tokens_per_s"),
                    "speedup (median [range, rounds; ceiling] verdict)": (
                        "baseline" if i == 0 else step.text() if step else None),
                    "memory MiB": r["memory_bytes"] / 2**20 if r.get("memory_bytes") else None,
                    "peak MiB": r["peak_bytes"] / 2**20 if r.get("peak_bytes") else None, "error": r["error"]}
                   for i, r in enumerate(meas)],
                  formats={"params": "{:,}", "ms/step": "{:.1f}", "tokens/s": "{:.0f}", "memory MiB": "{:.1f}",
                           "peak MiB": "{:.0f}"}))
print(noise_note(meas) or "every variant's rounds agreed within 25%")

# %% tags=["nbval-ignore-output"]
alone = L.mlp_alone_timing(L.mlp_variants(get_config(S.preset), L.VARIANTS_04),
                           tokens=S.batch * S.seq_len, rounds=S.rounds,
                           min_run_time=S.min_run_time, device=DEVICE)
mlp_alone = L.alone_speedup(alone)
for r in alone:
    print(f"MLP alone, {r['variant']}: {r['n_embd']} -> {r['hidden']} -> {r['n_embd']}, {r['tokens']} tokens, "
          f"fwd+bwd {r['median_ms']:.2f} ms  ({r['device_name']})")
print(f"MLP alone, 3x over 4x: {mlp_alone.text()}")
step_cost = L.cost_rows(step_variants, S.batch, S.seq_len)
share = step_cost[0]["mlp_flop_share"]
amdahl = 1 / ((1 - share) + share / mlp_alone.value)
print(f"\nAt this size the MLP is {share:.1%} of the step's FLOPs. Amdahl with the MLP's measured median "
      f"predicts a whole-step speedup of {amdahl:.3f}x; the step, measured: "
      + (step.text() if step else "n/a"))

# %% [markdown]
# Two comparisons to read in the printout. The MLP by itself can approach the 4/3 its FLOPs promise
# only if matrix multiplies of both sizes run at the same rate — its ceiling is that 4/3, the ratio
# of the hidden widths, which sets both its FLOPs and the bytes of its hidden activations. The whole
# step can gain at most what Amdahl's law allows from the MLP's share — compare the measured step
# speedup with that prediction and with its ceiling; a measurement above the ceiling is noise or a
# different kernel, not a free lunch. On a small model (CI's `tiny`, or `gpt2_mini` on a CPU) the share is smaller still,
# because the 50,257-way LM head dominates.
#
# ## 6. Does it still learn? Validation loss after the same number of steps
#
# The guide suite trains both from the same seeds on the same batches of the Shakespeare corpus and
# measures the validation loss on fixed held-out batches; here are its recorded runs (read, not run
# now: several seeds of both variants take minutes on a CPU, and notebook 05 runs such a comparison
# live, with its loss curves, for SwiGLU).

# %% tags=["nbval-ignore-output"]
rec = recorded_quality(DEVICE.type)
on_record = {"GELU 4x": rec.rows.get(QUALITY_BASELINE), "GELU 3x": rec.rows.get("MLP 3x")}
print(f"quality runs {rec.caption}; not measured now")
print(format_rows([{"": k, "seeds": r["seeds"], "val loss": r["val_loss"], "sd": r.get("val_loss_sd"),
                    "vs GELU 4x": r.get("vs_baseline"), "sd ": r.get("vs_baseline_sd"),
                    "verdict": r.get("verdict") or "baseline"} for k, r in on_record.items() if r],
                  formats={"val loss": "{:.3f}", "sd": "{:.3f}", "vs GELU 4x": "{:+.3f}", "sd ": "{:.3f}"}))

# %% [markdown]
# ### Recorded on an H200: GPT-2 small, 1000 steps
#
# The seed judges every change by the validation loss after 1000 steps. A notebook on a CPU cannot
# train GPT-2 small that long, so these runs were recorded with the same `train` command on an
# NVIDIA H200 (`results/train_h200_1000/`, how: `scripts/train_gpu_runs.py`, details in the
# folder's PROVENANCE.md). The numbers below are read from those files.

# %%
from tutorial_lib import data

gpu = swiglu.load_histories("train_h200_1000", {"GELU 4x": "train_gpu_gelu4_adamw",
                                                      "GELU 3x": "train_gpu_gelu3_adamw"})
if not gpu:
    print(f"no recorded GPU runs found in {results_dir() / 'train_h200_1000'}")
for label, h in gpu.items():
    c = h.config
    print(f"{label}: {h.model['name']} ({h.n_params:,} params), {len(h.steps)} steps of {c['batch_size']} x "
          f"{c['seq_len']} tokens, {h.dtype}, {h.device_name}: val loss {h.final_val_loss:.3f} "
          f"(best {min(h.val_loss):.3f}), median step {1e3 * h.median_step_s:.1f} ms")
if len(gpu) == 2:
    a, b = gpu["GELU 4x"], gpu["GELU 3x"]
    print(f"\nGELU 3x vs 4x after {len(a.steps)} steps: val loss {b.final_val_loss - a.final_val_loss:+.3f} "
          "(one run each, one seed); their step times come from two separate runs, so no ratio of them is shown")
    print(f"{len(a.steps)} steps x {a.tokens_per_step:,} tokens = {swiglu.epochs(a):.1f} passes over the "
          f"{len(data.get_split('train')):,}-token training split")

# %% [markdown]
# Two cautions in reading these. The step times come from two separate training runs, one after the
# other — GPU clocks and the host vary from run to run by as much as the difference being measured,
# so they are not divided into a speedup; section 5's interleaved timing is the controlled
# comparison. And the runs pass over the small
# training split several times (printed above): the model starts to memorise it, and the smaller
# MLP, with less capacity to memorise, can end with the lower *validation* loss.
#
# ## 7. The seed's claims beside the measurements
#
# The seed: "3072 dim 2.36M params", "2304 dim 1.77M params", "Parameters: 1.77M (25% fewer!)" and
# "Time: ~75% (25% faster!)". All four are about the MLP block alone, so each is judged against the
# MLP alone: its parameters (both of its matrices) and its FLOPs. First what holds exactly, on paper:

# %%
paper = claims.Setting(model="gpt2_small", batch=4, seq_len=512)  # counted, not timed: any device
mlp_flops = three["mlp_flops"] / four["mlp_flops"]
print(claims.format_table([
    claims.compare("mlp.params.4x", four["mlp_params"] // small.n_layer, where=paper,
                   note="one block's MLP: two 768 x 3072 matrices; the seed's 2.36M is one of them"),
    claims.compare("mlp.params.3x", three["mlp_params"] // small.n_layer, where=paper,
                   note="one block's MLP: two 768 x 2304 matrices; the seed's 1.77M is one of them"),
    claims.compare("mlp.params_fewer", 1 - three["mlp_params_ratio"], note="the MLP's parameters", where=paper),
    claims.compare("mlp.time", mlp_flops, where=paper, exact=True,
                   note="the MLP's FLOPs, 3x / 4x: the most its time can drop"),
]))
print(f"\nNot the seed's claims, for scale: the whole model keeps {three['params_ratio']:.1%} of its parameters "
      f"and a training step {three['flops_ratio']:.1%} of its FLOPs (Amdahl: the rest does not shrink).")

# %% tags=["nbval-ignore-output"]
where = claims.Setting(model=S.preset, batch=S.batch, seq_len=S.seq_len, device=DEVICE.type)
print(f"Measured here ({where.describe()}, {settings.device_name(DEVICE)}; {mlp_alone.rounds} interleaved rounds):")
print(claims.format_table([
    claims.compare("mlp.time", 1 / mlp_alone.value, note="the MLP alone, fwd+bwd time 3x / 4x", where=where,
                   spread=(1 / mlp_alone.high, 1 / mlp_alone.low), rounds=mlp_alone.rounds,
                   ceiling=mlp_alone.ceiling),
]))
print("The whole step is not what the claim is about; measured, 3x over 4x: " + (step.text() if step else "n/a"))

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

recorded("mlp")


# %% [markdown]
# ## Summary
#
# - Going from 4× to 3× removes exactly a quarter of the MLP's parameters and FLOPs — the seed's
#   numbers are right *for the MLP*.
# - The whole model loses only the MLP's share of that quarter: by Amdahl's law the step cannot get
#   25 % faster. Small models gain less still, because their LM head dominates.
# - Whether 3× pays depends on what limits you: it saves memory and time in proportion to the
#   MLP's share; to buy back the quality, spend the savings on more steps or a wider model.
#
# What this run measured (printed from the measurements above, so it cannot disagree with them):

# %% tags=["nbval-ignore-output"]
print(f"- on paper (GPT-2 small, B=4, T=512): the MLP is {four['mlp_flop_share']:.1%} of the training FLOPs; "
      f"3x leaves {three['flops_ratio']:.1%} of them, so at most {1 / three['flops_ratio']:.2f}x faster")
if step:
    print(f"- measured here ({S.preset}, B={S.batch}, T={S.seq_len}), the whole step: {step.text()}")
    print(f"- the MLP alone: {mlp_alone.text()}; Amdahl from its median and the MLP's {share:.1%} share of the "
          f"step's FLOPs predicts {amdahl:.2f}x for the step")
if on_record["GELU 3x"]:
    r = on_record["GELU 3x"]
    print(f"- quality (recorded, {r.get('steps')} steps, {r['seeds']} seeds): GELU 3x {r['vs_baseline']:+.3f} ± "
          f"{r['vs_baseline_sd'] or 0:.3f} vs GELU 4x -- {r['verdict']}")

# %% [markdown]
# ## Exercises
#
# 1. **Amdahl's law** (auto-checked): write `my_speedup(share, part_speedup)`, the speedup of the
#    whole step when a part taking `share` of the time gets `part_speedup` times faster.

# %%
def my_speedup(share, part_speedup):
    raise NotImplementedError  # your code here


L.check_amdahl(my_speedup)

# %% [markdown]
# The checker names typical mistakes, for example scaling the part's speedup by its share:

# %%
L.check_amdahl(lambda share, k: 1 + share * (k - 1))

# %% [markdown]
# 2. **Where is the break-even?** With `L.cost_rows`, find the sequence length at which the MLP's
#    share of GPT-2 small's training FLOPs falls below 1/3 (attention's T² term grows with T). What
#    does that mean for the 3× MLP at long contexts?
# 3. **Spend the savings.** GELU 3× GPT-2 small has fewer FLOPs per token. How many extra steps
#    does that buy at the same compute as 1000 steps of 4×? Run both with `python -m tutorial_lib
#    train` (on a GPU: `--preset gpt2_small --set mlp_ratio=3.0 --steps N`) and compare the validation
#    loss at equal compute.
# 4. **Memory.** From section 5's memory breakdown, which kind of memory (parameters, gradients,
#    optimizer state, activations) shrinks most in absolute terms? Predict it from the parameter
#    counts first.
