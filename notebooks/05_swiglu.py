# %% [markdown]
# # 05 · SwiGLU, and a better optimizer (Muon)
#
# The seed's tree ends: "Both paths should also add: SwiGLU (faster learning), Better optimizer".
# Both are about **learning**, not about step time, and they are two different levers: SwiGLU
# changes the model, Muon changes how it is updated. This notebook takes them one at a time.
#
# **What you will learn**
#
# *Part A, SwiGLU (sections 1–6):*
# - what SwiGLU changes in the MLP (a gate), and how to match its parameters to GELU 4× (8/3);
# - its cost on paper and on your machine: GELU 4× vs SwiGLU 8/3× (same parameters) vs SwiGLU 3× —
#   on paper it cannot make a step faster, and a measurement that says otherwise is read as such;
# - what "faster learning" means, precisely: lower validation loss **at equal steps** (equal tokens)
#   is not the same as lower loss **at equal wall time** — both are plotted, from runs made here.
#
# *Part B, Muon (section 7):*
# - the optimizer behind the modded-nanogpt speedruns: which parameters it takes, what one step costs
#   (FLOPs, computed and checked, and seconds, measured), and what recorded runs say about it.
#
# *Both (sections 8–9):* 1000-step runs of every variant on an H200, and the seed's "SwiGLU (faster
# learning)" and "Better optimizer" beside the measurements — one run each is a reading, not a
# verdict.
#
# Sizes come from the size profile (`TUTORIAL_PROFILE=smoke|cpu|gpu`); analytic numbers always use
# the real GPT-2 small. The first cell says where the stored outputs were measured.

# %% tags=["nbval-ignore-output"]
# %matplotlib inline
import torch

from tutorial_lib import claims, settings
from tutorial_lib.lessons import mlp_expansion
from tutorial_lib.lessons import swiglu as L
from tutorial_lib.lessons.common import (
    QUALITY_BASELINE,
    env_summary,
    format_quality,
    format_rows,
    loss_curves,
    measure_variants,
    noise_note,
    quality_runs,
    quality_table,
    recorded_quality,
    row_speedup,
    show_source,
)
from tutorial_lib.measure.records import results_dir
from tutorial_lib.model import GPT, get_config
from tutorial_lib.sizes import get_sizes

DEVICE = settings.get_device()
SIZES = get_sizes()  # the size profile: TUTORIAL_PROFILE=smoke|cpu|gpu
S, Q = SIZES.step, SIZES.quality  # the timed training step; the quality runs
print(env_summary(DEVICE))
print(f"step timing : {S.preset}, batch {S.batch} x {S.seq_len} tokens, {S.rounds} interleaved rounds")
print(f"quality runs: {Q.preset}, {Q.steps} steps of {Q.batch} x {Q.seq_len} tokens, seeds {list(Q.seeds)} "
      f"(GELU 4x and SwiGLU 8/3x, run here)")

# %% [markdown]
# ## 1. The idea: a gated MLP
#
# GPT-2's MLP is `down(GELU(up(x)))`. SwiGLU (Shazeer, 2020, "GLU Variants Improve Transformer")
# computes two projections of the input and lets one *gate* the other:
#
#     h = silu(x W_gate) * (x W_up)      # elementwise product, (B, T, hidden)
#     y = h W_down
#
# Three matrices instead of two. To compare at equal parameters (and equal matmul FLOPs), the
# hidden width shrinks from 4 × n_embd to 2/3 × 4 = 8/3 × n_embd (LLaMA's choice): `3 × C × 8C/3 =
# 2 × C × 4C`. A third variant keeps the 3× width of lesson 04 with the gate — more parameters.

# %%
small = get_config("gpt2_small")
variants = mlp_expansion.mlp_variants(small, L.VARIANTS_05)
mlp_expansion.mlp_figure(variants, title="GPT-2 small: one block's MLP, widths to scale")

# %% [markdown]
# ## 2. The implementation, from the library

# %%
from tutorial_lib.model import SwiGLU

show_source(SwiGLU)

# %% [markdown]
# ## 3. Correctness checks
#
# SwiGLU must compute exactly `(silu(x W_gateᵀ) ⊙ x W_upᵀ) W_downᵀ`; the 8/3 variant must have
# exactly GELU 4×'s parameters; and the analytic FLOP model must match `FlopCounterMode` for all
# three variants (whole model, forward and backward; GPT-2 small's dimensions with 2 layers and 32
# tokens — the formula is per layer).

# %%
import torch.nn.functional as F

from tutorial_lib.measure.cost import step_flops
from tutorial_lib.measure.flops import count_flops

g = torch.Generator().manual_seed(0)
torch.manual_seed(0)
mlp = SwiGLU(variants["SwiGLU 8/3x"]).double()
x = torch.randn(2, 5, 768, generator=g, dtype=torch.float64)
ref = (F.silu(x @ mlp.gate_proj.weight.T) * (x @ mlp.up_proj.weight.T)) @ mlp.down_proj.weight.T
print("SwiGLU(x) == (silu(x W_gate^T) * x W_up^T) W_down^T:", torch.allclose(mlp(x), ref, rtol=0, atol=1e-12))
for label, cfg in variants.items():
    n = sum(p.numel() for p in GPT(cfg.replace(n_layer=1, vocab_size=64)).blocks[0].mlp.parameters())
    print(f"{label:12}: hidden {cfg.mlp_hidden}, MLP params per block {n:,} == formula: {n == mlp_expansion.mlp_params(cfg)}")
print("SwiGLU 8/3x has exactly GELU 4x's MLP parameters:",
      mlp_expansion.mlp_params(variants["SwiGLU 8/3x"]) == mlp_expansion.mlp_params(variants["GELU 4x"]))
for label, cfg in variants.items():
    short = cfg.replace(n_layer=2)
    counted = count_flops(short, 1, 32)
    ok = (counted["fwd"] == step_flops(short, 1, 32, "fwd", "counted")
          and counted["bwd"] == step_flops(short, 1, 32, "bwd", "counted"))
    print(f"{label:12}: analytic FLOPs == FlopCounterMode (forward and backward): {ok}")

# %% [markdown]
# ## 4. On paper: the whole of GPT-2 small
#
# Parameters and training FLOPs (forward + backward, causal attention) at the seed's B=4, T=512:

# %%
rows = mlp_expansion.cost_rows(variants, batch_size=4, seq_len=512)
print(f"{'':12} {'hidden':>6} {'MLP params':>11} {'model params':>13} {'vs GELU 4x':>10} "
      f"{'train GFLOP':>12} {'vs GELU 4x':>10}")
for r in rows:
    print(f"{r['variant']:12} {r['hidden']:>6} {r['mlp_params']:>11,} {r['params']:>13,} "
          f"{r['params_ratio']:>10.3f} {r['train_flops'] / 1e9:>12,.0f} {r['flops_ratio']:>10.3f}")

# %% [markdown]
# The param-matched SwiGLU has the same matmul FLOPs as GELU 4×; it adds a little elementwise work
# (the gate product) and one more, smaller matmul — three launches instead of two. SwiGLU 3× costs
# more than both. So on paper neither can make a training step faster: SwiGLU 8/3×'s analytic
# ceiling is 1 (the largest of its FLOP, byte and launch ratios against GELU 4×), SwiGLU 3×'s is
# below 1.
#
# ## 5. Measured: one training step
#
# Timed interleaved in rounds (speedup = median of per-round ratios against GELU 4×, with their
# range, the rounds and the ceiling), with the exact memory of one step. The verdict follows the
# tutorial's three rules (`tutorial_lib.speedups`): a range over 1.0 is *within noise*, fewer than
# three rounds give *no verdict*, and a median above the ceiling is *above the ceiling* — noise, or a
# different kernel ran than the cost model describes, never "SwiGLU is faster".

# %% tags=["nbval-ignore-output"]
step_variants = mlp_expansion.mlp_variants(get_config(S.preset), L.VARIANTS_05)
meas = measure_variants(step_variants, S.batch, S.seq_len, rounds=S.rounds,
                          min_run_time=S.min_run_time, device=DEVICE)
m0 = meas[0]
print(f"{m0['preset']}, B={m0['batch_size']}, T={m0['seq_len']}, {m0['dtype']}, {m0['device_name']}")
base_cfg = step_variants["GELU 4x"]
print(format_rows([{"": r["variant"], "params": r.get("params"), "ms/step": r.get("median_ms"),
                    "tokens/s": r.get("tokens_per_s"),
                    "speedup over GELU 4x (median [range, rounds; ceiling] verdict)": (
                        "baseline" if i == 0 else
                        row_speedup(r, base_cfg, step_variants[r["variant"]]).text() if not r["error"] else None),
                    "memory MiB": r["memory_bytes"] / 2**20 if r.get("memory_bytes") else None, "error": r["error"]}
                   for i, r in enumerate(meas)],
                  formats={"params": "{:,}", "ms/step": "{:.1f}", "tokens/s": "{:.0f}", "memory MiB": "{:.1f}"}))
print(noise_note(meas) or "every variant's rounds agreed within 25%")

# %% [markdown]
# The step times themselves (ms/step) are this run's: the same GELU 4× configuration is timed in
# notebooks 01 and 04 too, and the three need not agree — this machine's speed drifts by tens of
# percent within minutes (its load is printed in the first cell). Only ratios taken in the same
# rounds, like the speedups above, compare two variants.
#
# ## 6. "Faster learning": at equal steps, and at equal wall time
#
# A variant "learns faster" if its validation loss is lower — but lower *after what*? After the
# same number of steps (the same tokens seen), or after the same seconds of training? A variant
# that is better per step but slower per step can lose at equal time. `train` records both the
# step count and the training time (evaluation excluded) of every validation point, so the same
# runs give both views. Same seed, same batches, same validation batches, AdamW. Measured here: GELU
# 4× and the param-matched SwiGLU 8/3×, over the profile's seeds.

# %% tags=["nbval-ignore-output"]
learn_variants = {k: v for k, v in mlp_expansion.mlp_variants(get_config(Q.preset), L.VARIANTS_05).items()
                  if k in ("GELU 4x", "SwiGLU 8/3x")}
quality = quality_runs(learn_variants, Q, device=DEVICE)
runs = {label: hs[0] for label, hs in quality.items()}  # seed 0 of each, for the curves over time
h0 = runs["GELU 4x"]
print(f"{Q.preset}, {Q.steps} steps of {Q.batch} x {Q.seq_len} tokens, AdamW, {h0.dtype}, {h0.device_name}, "
      f"seeds {list(Q.seeds)}")
print("at equal steps (mean ± sd over seeds; the difference is paired by seed):")
print(format_quality(quality_table(quality)))
print("at equal wall time (seed 0):")
for r in L.at_equal_time(runs):
    print(f"  {r['run']:12} val loss {r['val_loss']:.3f} at {r['seconds']:.1f} s ({r['steps_done']:.0f} steps done by then)")
loss_curves(quality, title=f"{Q.preset}: MLP variants, AdamW, mean over {len(Q.seeds)} seeds (band: min-max)")

# %% [markdown]
# On the right, each curve is stretched by its own time per step; "at equal wall time" reads each
# curve at the shortest run's total time (linearly between validation points, as plotted). In short runs the differences are
# small and close to run-to-run noise — the verdict column says whether the seeds can tell; the
# recorded GPU runs in section 8 are longer.
#
# ## 7. Part B: a better optimizer, Muon
#
# AdamW scales each parameter's update by its own gradient history. **Muon** (Keller Jordan, 2024)
# treats a weight *matrix* as a matrix: it keeps a momentum of the gradient and replaces it by the
# nearest semi-orthogonal matrix (all singular values ≈ 1), computed with 5 Newton–Schulz
# iterations in bf16. Every direction of the matrix then moves by about the same amount, instead of
# a few dominant directions taking the whole step. It is meant for the hidden matrices only; like
# modded-nanogpt we keep the embedding, the LM head, norm gains and biases on AdamW. PyTorch ships
# it as `torch.optim.Muon`; `tutorial_lib.optim` splits the parameters:

# %%
from tutorial_lib.optim import OptimizerSpec, build_optimizer, muon_step_flops, split_parameters

show_source(split_parameters)

# %%
with torch.device("meta"):  # shapes only, no memory
    meta_small = GPT(small)
split = split_parameters(meta_small, "muon")
params = dict(meta_small.named_parameters())
for group in ("muon", "adamw_decay", "adamw_no_decay"):
    names = getattr(split, group)
    print(f"{group:15} {len(names):3} tensors, {sum(params[n].numel() for n in names):>11,} parameters, e.g. {names[:2]}")

# %% [markdown]
# ### What one Muon step costs, on paper
#
# Newton–Schulz on an `m × n` matrix (`m ≤ n`, Muon transposes a tall one) costs per iteration
# `X Xᵀ` (2m²n), `A·A` (2m³) and `B·X` (2m²n) FLOPs, for every hidden matrix, every step —
# independent of the batch. Checked against `FlopCounterMode` around `torch.optim.Muon.step()` on
# a small model, then computed for GPT-2 small:

# %%
from torch.utils.flop_counter import FlopCounterMode

check = GPT(get_config("tiny", mlp="swiglu"))
opt = build_optimizer(check, OptimizerSpec("muon"))
for p in check.parameters():
    p.grad = torch.randn_like(p)
with FlopCounterMode(display=False) as fc:
    opt.optimizers["muon"].step()
print("muon_step_flops == FlopCounterMode on torch.optim.Muon.step():", fc.get_total_flops() == muon_step_flops(check))

ns = muon_step_flops(meta_small)
print(f"\nGPT-2 small: Newton-Schulz adds {ns / 1e12:.2f} TFLOP per optimizer step")
for B, T in ((4, 512), (16, 512), (64, 1024)):
    step = step_flops(small, B, T, "fwdbwd", "visible")
    print(f"  B={B:>2}, T={T:>4}: forward+backward {step / 1e12:6.2f} TFLOP -> Muon adds {ns / step:6.1%}")

# %% [markdown]
# The larger the batch, the smaller Muon's share: its cost is per step, the model's per token.
# What it costs in seconds depends on the hardware — bf16 matmuls of these sizes are fast on a GPU
# and slow on many CPUs — so we measure the optimizer step alone:

# %% tags=["nbval-ignore-output"]

opt_model = GPT(get_config(Q.preset)).to(DEVICE)
opt_cost = {name: L.time_optimizer_step(opt_model, OptimizerSpec(name), min_run_time=S.min_run_time)
            for name in ("adamw", "muon")}
for name, r in opt_cost.items():
    print(f"{Q.preset} on {settings.device_name(DEVICE)}: {name:5} step {1e3 * r['median_s']:8.2f} ms "
          f"(IQR {1e3 * r['iqr_s']:.2f} ms), optimizer state {r['state_bytes'] / 2**20:.1f} MiB")
print(f"Muon's extra cost per step: {1e3 * (opt_cost['muon']['median_s'] - opt_cost['adamw']['median_s']):.2f} ms "
      f"(Newton-Schulz: {muon_step_flops(opt_model) / 1e9:.1f} GFLOP per step)")
del opt_model

# %% [markdown]
# ### AdamW vs Muon: validation loss after the same steps, recorded
#
# The guide suite trains GELU 4× with Muon (lr 0.02 for the hidden matrices, AdamW for the rest)
# beside AdamW, from the same seeds on the same batches, at this profile's quality sizes. Its
# recorded runs, read from `results/` (not trained now: notebook 05's own runs above already show
# how such a comparison is made, and the H200 curves below show Muon at equal steps and equal time):

# %% tags=["nbval-ignore-output"]
rec = recorded_quality(DEVICE.type)
on_record = {"GELU 4x + AdamW": rec.rows.get(QUALITY_BASELINE), "GELU 4x + Muon": rec.rows.get("Muon")}
print(f"quality runs {rec.caption}; not measured now")
print(format_rows([{"": k, "seeds": r["seeds"], "val loss": r["val_loss"], "sd": r.get("val_loss_sd"),
                    "vs AdamW": r.get("vs_baseline"), "sd ": r.get("vs_baseline_sd"),
                    "verdict": r.get("verdict") or "baseline", "ms/step": r.get("ms_per_step")}
                   for k, r in on_record.items() if r],
                  formats={"val loss": "{:.3f}", "sd": "{:.3f}", "vs AdamW": "{:+.3f}", "sd ": "{:.3f}",
                           "ms/step": "{:.1f}"}))

# %% [markdown]
# ## 8. Recorded on an H200: GPT-2 small, 1000 steps, every variant
#
# The same `train` command on an NVIDIA H200 (`results/train_h200_1000/`, made by
# `scripts/train_gpu_runs.py`; PROVENANCE.md in the folder says how): GPT-2 small, 16 × 512
# tokens per step, bf16 autocast, the seed's "val loss @ 1000". Read from the files:

# %%
from tutorial_lib import data

NAMES = {"GELU 4x": "train_gpu_gelu4_adamw", "GELU 3x": "train_gpu_gelu3_adamw",
         "SwiGLU 8/3x": "train_gpu_swiglu83_adamw", "SwiGLU 3x": "train_gpu_swiglu3_adamw",
         "GELU 4x + Muon": "train_gpu_gelu4_muon"}
gpu = L.load_histories("train_h200_1000", NAMES)
if gpu:
    g0 = gpu["GELU 4x"]
    print(f"{g0.model['name']}, {len(g0.steps)} steps of {g0.config['batch_size']} x {g0.config['seq_len']} tokens, "
          f"{g0.dtype}, {g0.device_name}, torch {g0.torch_version}")
    print(f"{'':15} {'params':>12} {'val@end':>8} {'best':>7} {'at step':>8} {'ms/step':>8} {'optim ms':>9}")
    for label, h in gpu.items():
        best = min(range(len(h.val_loss)), key=h.val_loss.__getitem__)
        print(f"{label:15} {h.n_params:>12,} {h.final_val_loss:>8.3f} {h.val_loss[best]:>7.3f} {h.val_steps[best]:>8} "
              f"{1e3 * h.median_step_s:>8.1f} {1e3 * h.median_optimizer_s:>9.2f}")
    print(f"\n{len(g0.steps)} steps x {g0.tokens_per_step:,} tokens = {L.epochs(g0):.1f} passes over the "
          f"{len(data.get_split('train')):,}-token training split")
    print("at equal wall time:")
    for r in L.at_equal_time(gpu):
        print(f"  {r['run']:15} val loss {r['val_loss']:.3f} at {r['seconds']:.1f} s ({r['steps_done']:.0f} steps)")
else:
    print(f"no recorded GPU runs found in {results_dir() / 'train_h200_1000'}")

# %%
loss_curves(gpu, title="GPT-2 small on an H200: 1000 steps (recorded)") if gpu else None

# %% [markdown]
# How to read this:
#
# - **SwiGLU at equal parameters** (8/3×) ends with a lower validation loss than GELU 4× at the same
#   steps in these runs — one run of each, one seed, so this is a reading of the seed's "faster
#   learning", not a measurement that can tell its own noise (section 6's runs over several seeds
#   say whether short CPU runs can). Their step times come from separate runs, so they are not
#   divided into a speedup; section 5's interleaved timing is the controlled comparison.
# - **Muon** drops the loss much faster per step, and stays ahead at equal wall time for the first
#   part of the run even though each of its steps is slower (the `optim ms` column). Then its
#   validation loss *rises*: the model is memorising the small training split (it has seen it
#   several times, printed above), and Muon gets there first. One run each, again: a reading. The seed's single number "val loss @
#   1000" hides this — the best loss and where it happened are the honest summary, and on a corpus
#   this small a shorter schedule (or more data) is what Muon needs.

# %%
short = L.load_histories("train_h200_550", NAMES)
if short:
    s0 = short["GELU 4x"]
    print(f"Same variants with a {len(s0.steps)}-step schedule (warmup and cosine decay over {len(s0.steps)} steps), "
          f"{s0.device_name}:")
    for label, h in short.items():
        print(f"  {label:15} val loss {h.final_val_loss:.3f} after {len(h.steps)} steps")

# %% [markdown]
# ## 9. The seed's claims beside the measurements
#
# The seed's decision tree ends: "Both paths should also add: • SwiGLU (faster learning) • Better
# optimizer" — no numbers, no setting. Here is what the recorded runs and this machine's runs say:
# the H200 runs are one run (one seed) each, so their differences are readings, not verdicts; the
# CPU runs are over several seeds and carry a verdict.

# %%
if gpu:
    base = gpu["GELU 4x"]
    for key, label in (("tree.swiglu", "SwiGLU 8/3x"), ("tree.optimizer", "GELU 4x + Muon")):
        h = gpu[label]
        t = min(base.wall_time_s, h.wall_time_s)
        print(f"seed: {claims.get(key).text!r}")
        print(f"  {label} vs GELU 4x + AdamW on {h.device_name} ({h.model['name']}, {len(h.steps)} steps):")
        print(f"    at equal steps ({len(h.steps)}): val loss {h.final_val_loss - base.final_val_loss:+.3f}; "
              f"best val loss {min(h.val_loss) - min(base.val_loss):+.3f}")
        print(f"    at equal time ({t:.1f} s): val loss {h.val_loss_at_time(t) - base.val_loss_at_time(t):+.3f}")
        print(f"    step time {1e3 * h.median_step_s:.1f} ms vs {1e3 * base.median_step_s:.1f} ms")

# %% tags=["nbval-ignore-output"]
sw = next(r for r in quality_table(quality) if r["variant"] == "SwiGLU 8/3x")
print(f"This machine ({Q.preset}, {Q.steps} steps, {sw['seeds']} seeds, {settings.device_name(DEVICE)}):")
print(f"  SwiGLU 8/3x vs GELU 4x at equal steps: {sw['vs_baseline']:+.3f}"
      + (f" ± {sw['vs_baseline_sd']:.3f}" if sw["vs_baseline_sd"] is not None else "") + f" -- {sw['verdict']}")
muon_row = on_record.get("GELU 4x + Muon")
if muon_row:
    print(f"  GELU 4x + Muon vs AdamW at equal steps ({rec.caption}): {muon_row['vs_baseline']:+.3f} ± "
          f"{muon_row['vs_baseline_sd'] or 0:.3f} -- {muon_row['verdict']}")

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

recorded("swiglu", "optimizer")


# %% [markdown]
# ## Summary
#
# - SwiGLU gates the MLP's hidden layer; at 8/3 × n_embd it has exactly GELU 4×'s parameters and
#   matmul FLOPs, plus one more matmul launch and an elementwise product per layer: on paper it
#   cannot make a step faster (its ceiling is 1), so a measured "gain" is noise or a different kernel
#   — section 5's verdict says what this machine's rounds could tell. Its case is learning per step,
#   not speed.
# - "Faster learning" has two meanings: lower loss at equal steps (tokens), and lower loss at equal
#   wall time. Always look at both: a change that costs time per step must win by more per step.
# - Muon orthogonalises the update of every hidden matrix; its extra cost is per step
#   (Newton–Schulz FLOPs, computed above) and does not shrink with the batch, so large batches
#   amortise it; even on the H200 at B=16, T=512 it was a large part of each recorded step (the
#   `optim ms` column of section 8). In the recorded GPT-2 small runs it reaches a given validation
#   loss in far fewer steps — and on this small corpus also starts overfitting sooner.
# - The seed's one-number "val loss @ 1000" is not enough to judge either change: report the curve,
#   the best loss, the step time, and the data budget.
#
# ## Exercises
#
# 1. **Param-matched SwiGLU** (auto-checked): write `my_swiglu_hidden(n_embd, gelu_ratio)`, the
#    hidden size of a SwiGLU MLP with the parameters of a GELU MLP of `gelu_ratio × n_embd`.

# %%
def my_swiglu_hidden(n_embd, gelu_ratio):
    raise NotImplementedError  # your code here


L.check_swiglu_hidden(my_swiglu_hidden)


# %% [markdown]
# 2. **Muon's FLOPs** (auto-checked): write `my_ns_flops(rows, cols, ns_steps)`, the matmul FLOPs of
#    Newton–Schulz on one `rows × cols` matrix (mind which way Muon turns the matrix).

# %%
def my_ns_flops(rows, cols, ns_steps):
    raise NotImplementedError  # your code here


L.check_newton_schulz_flops(my_ns_flops)

# %% [markdown]
# 3. **Equal compute, not equal steps.** SwiGLU 3× costs more per token than GELU 4× (section 4).
#    How many fewer steps should it get for a fair comparison at equal FLOPs? Rerun section 6 that
#    way (`quality_runs(..., steps=...)`).
# 4. **Muon on this machine.** Run it yourself beside section 6's AdamW runs:
#    `quality_runs({"GELU 4x + Muon": (learn_variants["GELU 4x"], "muon")}, Q)`, then
#    `L.at_equal_time` on seed 0 of each. Then rerun with `muon_lr` 0.01 and 0.04
#    (`quality_runs(..., muon_lr=...)`). Is 0.02 (Keller Jordan's default) best for this model and budget?
# 5. **Where does Muon break even?** With `muon_step_flops` and `step_flops`, find the batch size at
#    which Newton–Schulz is 5 % of GPT-2 small's training FLOPs at T=1024. On a GPU, run
#    `python -m tutorial_lib train --preset gpt2_small --optimizer muon --batch ...` at two batch
#    sizes and compare the recorded `optimizer_time_s` with your prediction.
