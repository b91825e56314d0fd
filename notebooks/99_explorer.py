# %% [markdown]
# # 99 · Explore: the cost of a GPT-2 step under your sliders, and what to do first
#
# **What you will learn**
#
# - how the analytic cost model of the measuring kit splits a training step into components, and how
#   the roofline model of notebook 09 turns their FLOPs and bytes into milliseconds on *your*
#   machine's measured ceilings;
# - why a component's share of the FLOPs is not its share of the time (press **Measure now** and
#   compare the bars);
# - where the training memory goes as T, B, the number of K/V heads, the MLP and the attention kernel
#   change;
# - which change to make first for your sequence length, device and goal — the seed's decision tree
#   recomputed, with payoffs measured where `results/*.json` has them and analytic ones (labelled)
#   where it does not.
#
# Everything here runs in seconds; only **Measure now** runs the model (one short benchmark).

# %% tags=["nbval-ignore-output"]
from tutorial_lib.lessons import decision
from tutorial_lib.lessons import explorer as explore
from tutorial_lib.lessons.common import env_summary
from tutorial_lib.widgets import cost_explorer, decision_tree, flash_explorer, gqa_explorer, window_explorer

print(env_summary())

# %% [markdown]
# ## 1. The idea: work per component, then the machine's ceilings
#
# For every profiler scope of the model (embedding; attention qkv / rope / core / out; MLP up / act /
# down; norm; LM head; loss) the one analytic model, `measure.cost`, gives the matrix-multiply FLOPs of
# forward and backward — as the kernel does them: the full T × T for eager attention, the causal half
# for SDPA's fused kernel — and an estimate of the elementwise work. The roofline model
# (`measure.roofline`, notebook 09) adds the bytes every kernel moves and one overhead per kernel,
# and predicts each component's time from this machine's *ceilings*: its peak FLOP/s, bandwidth and
# per-operator cost. Without ceilings the explorer can only say *shares of FLOPs*. **Measure now**
# times the ceilings' probes and one training step here in turn, three rounds
# (`torch.utils.benchmark`), so that the roofline model's error it reports compares a prediction and
# a measurement of the same minutes; then it profiles the step per component (`torch.profiler`) and
# accounts its memory (saved-tensor hooks). Later predictions of comparable work (the same model,
# dtype and size class) are scaled by it, component by component, and say so; the others say how
# far the roofline model was off here. The source: `tutorial_lib/lessons/explorer.py`.
#
# GPT-2 small at the seed's setting, from the analytic model alone (no ceilings given):

# %%
s = explore.ExplorerSettings(preset="gpt2_small", seq_len=512, batch_size=4, dtype="bfloat16")
p = explore.predict_cost(s)  # no ceilings: FLOP shares only
print(p.summary())
print(p.basis)
for name, share in sorted(p.flop_share.items(), key=lambda kv: -kv[1]):
    if share >= 0.001:
        print(f"  {name:15s} {share:6.1%} of the step's FLOPs")

# %% [markdown]
# ## 2. The cost explorer
#
# Move **sequence length T** and watch `attention.core` grow against the MLP; switch **attention**
# to `eager` and watch the memory bar's attention scores appear; set **K/V heads** to GQA-4 or MQA;
# set a **window**; set **LM head + loss** to `chunked` (notebook 08) and watch the head's memory go;
# type a T that is not a power of two into the box beside the slider. Then press **Measure now**: it
# first shows the predicted time of everything the press will do (building the model, the ceilings'
# probes, the timed rounds, the profile) and its memory (a smaller size, scaled back by the cost
# model, when the requested one would take too long; settings that cannot fit in this machine's
# memory disable the button), and nothing runs until you press **Measure (~N s)**. The red bars are
# then the measured time shares on this machine, and the text below says how far the roofline model
# was off (in the same rounds) and how long the measurement took against the plan's estimate. The
# measurement runs the model shown (pick `tiny` or `gpt2_mini` for a quick one on a CPU).

# %% tags=["nbval-ignore-output"]
explorer = cost_explorer()
explorer

# %% [markdown]
# ## 3. What to do first: the decision tree, recomputed
#
# The seed's tree: below T = 512 do GQA, then the 3× MLP, then flash attention; from T = 512 on do a
# sliding window, then flash, then GQA; and everywhere SwiGLU and a better optimizer. Here is what the
# analytic model says for two lengths (no results files used, so this output is the same everywhere;
# with no recorded ceilings a CPU's speed payoffs are FLOP ratios, labelled so — a results file with
# the suite's `roofline` section turns them into the roofline model's step-time ratios):

# %%
for T in (256, 4096):
    for line in decision.recommend(T, "cpu", "speed", results=[]).lines():
        print(line)
    print()

# %% [markdown]
# The widget uses the results files of this kind of device when there are any
# (`python -m tutorial_lib bench --suite guide --out results/NAME.json`); every payoff says whether
# it was measured (and at which sizes) or analytic.

# %% tags=["nbval-ignore-output"]
tree = decision_tree()
tree

# %% [markdown]
# ## 4. The lesson explorers
#
# The same explorers appear in the lessons: GQA (02), flash attention (03) and the sliding window (06).

# %% tags=["nbval-ignore-output"]
gqa_explorer()

# %% tags=["nbval-ignore-output"]
flash_explorer()

# %% tags=["nbval-ignore-output"]
window_explorer()

# %% [markdown]
# ## Summary
#
# - A component's share of the FLOPs is a prediction of its share of the time only if every
#   component runs at the same rate; the measurement shows which ones do not (the loss, the norms and
#   the optimizer move memory, not FLOPs).
# - Attention's core is a small part of GPT-2 small's FLOPs at T = 512 and grows linearly per token
#   with T; the MLP and the LM head do not.
# - The order of the optimisations depends on T, on the device and on whether you care about training
#   speed, memory or decoding: the decision tree recomputes it from the model and your measurements.
#
# ## Exercises
#
# 1. *(auto-checked)* Using the cost explorer (attention `sdpa`, GPT-2 small), find the smallest
#    power-of-two T at which `attention.core` costs more FLOPs than the whole MLP. Put it in `answer`.
# 2. Press **Measure now** for `tiny` at T = 64, then look at T = 128 (the same size class: the
#    measurement scales the prediction) and T = 512 (eight times the tokens: the roofline model alone,
#    with its error on this machine beside it). Measure both. Which component's time share grows
#    most? Which prediction was closer? (`tiny`'s LM head multiplies by a 64-wide matrix: such thin
#    matmuls run well below the square-matmul peak the roofline assumes.)
# 3. In the decision tree, find a T where GQA is the best choice for decoding but not for training
#    speed. Why?

# %%
answer = None  # your T, e.g. 2048
print(explore.check_crossover(answer))
