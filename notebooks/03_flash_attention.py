# %% [markdown]
# # 03 · Flash attention: the same result without the T × T matrix
#
# **What you will learn**
#
# - why eager attention's memory grows with T² — it materialises a (B, H, T, T) score matrix and
#   keeps the probabilities for backward;
# - the **online softmax**: how to compute softmax(scores) · V one tile of keys at a time, with a
#   worked example you can check by hand;
# - the library's teaching flash attention (pure PyTorch, tiled, recomputation in backward), checked
#   against eager attention for outputs *and* gradients;
# - measured on your machine: attention memory and time vs T for eager, tiled, SDPA (and FlexAttention
#   on CUDA), with fitted log-log slopes, and an honest account of why the pure-PyTorch version saves
#   memory, whether it also saves time (that depends on the device and T), and what PyTorch's fused
#   kernel does differently;
# - the whole GPT-2 model with eager vs SDPA attention, beside the seed's memory claims.

# %% tags=["nbval-ignore-output"]
# %matplotlib inline
import torch

from tutorial_lib import claims, settings
from tutorial_lib.attention import flash_tiled as flash
from tutorial_lib.lessons import flash_attention as fl
from tutorial_lib.lessons.common import env_summary, format_rows, noise_note, show_source
from tutorial_lib.model import get_config
from tutorial_lib.sizes import get_sizes

DEVICE = settings.get_device()
SIZES = get_sizes()  # the size profile: TUTORIAL_PROFILE=smoke|cpu|gpu
P = SIZES.step  # the measured training step
DTYPE = P.torch_dtype  # bf16 on CUDA, fp32 on CPU
print(env_summary(DEVICE))

# %% [markdown]
# ## 1. The idea
#
# Eager attention computes `S = Q Kᵀ / √d` for every (query, key) pair, masks it, softmaxes it into
# `P`, and multiplies `P V`. For each head that is a T × T matrix, written to memory and read back
# several times, and `P` is kept until backward. At the seed's setting (B=4, 12 heads, T=512) one
# such matrix is 4 · 12 · 512² numbers **per layer**.
#
# Flash attention (Dao et al., 2022) walks over **tiles**: a block of queries against a block of
# keys at a time. Only a tile of scores exists at any moment; causal tiles above the diagonal are
# never computed at all. What makes this possible is a softmax that can be computed in pieces.

# %%
fl.tiling_figure(T=512, tile=64)

# %%
B, H, T = 4, 12, 512
for t in (512, 1024, 2048, 4096, 8192):
    scores = B * H * t * t
    print(f"T={t:>5}: one (B={B}, H={H}, T, T) score matrix = {scores:>13,} numbers = "
          f"{scores * 4 / 2**20:>8,.0f} MiB in fp32, {scores * 2 / 2**20:>7,.0f} MiB in bf16 -- per layer")

# %% [markdown]
# ## 2. The online softmax, by hand
#
# For one query with scores `s_j` and values `v_j`, the output is `Σ_j e^{s_j} v_j / Σ_j e^{s_j}`.
# Keep three running numbers while visiting the keys tile by tile: the maximum so far `m`, the
# normaliser `l = Σ e^{s_j - m}`, and the unnormalised output `acc = Σ e^{s_j - m} v_j`. When a new
# tile raises the maximum from `m` to `m_new`, everything accumulated so far is rescaled by
# `alpha = e^{m - m_new}`; at the end, `acc / l` is exactly the softmax-weighted sum.
#
# Six keys, tiles of two (values are numbers so every step prints):

# %%
print(fl.format_walkthrough(fl.online_softmax_walkthrough(fl.WORKED_SCORES, fl.WORKED_VALUES, tile=2)))

# %% [markdown]
# The first tile sets `m = 2`; the second raises it to 3, so `l` and `acc` are multiplied by
# `e^{2-3}` before the new terms are added; the third raises it to 4 and does the same. The final
# `acc / l` equals the plain softmax result. The library's update for one tile, used by the tiled
# kernel below, is exactly this (with a guard for rows whose keys are all masked):

# %%
show_source(flash.online_softmax_update)

# %% [markdown]
# ## 3. The tiled implementation, from the library
#
# The forward pass loops over query tiles and, for each, over the key tiles that a causal query can
# see; it saves only `q, k, v`, the output and the per-query log-sum-exp. The backward pass
# recomputes each tile's probabilities from the log-sum-exp instead of storing them
# (FlashAttention-2's backward): more FLOPs, much less memory.

# %%
show_source(flash.tiled_attention_forward)

# %%
show_source(flash.tiled_attention_backward)

# %% [markdown]
# ### Correctness: outputs and gradients against eager attention
#
# In float64, so that any difference is a bug, not rounding: a length (100) that is not a multiple
# of the tile (32), grouped heads, and a sliding window as well.

# %%
from tutorial_lib.attention import attention_core

g = torch.Generator().manual_seed(0)
for n_kv, window in ((4, None), (2, None), (4, 17)):
    q = torch.randn(2, 4, 100, 16, generator=g, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(2, n_kv, 100, 16, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    dout = torch.randn(2, 4, 100, 16, generator=g, dtype=torch.float64)
    res = {}
    for backend in ("eager", "tiled", "sdpa"):
        out = attention_core(q, k, v, backend, window=window, tile=32)
        grads = torch.autograd.grad(out, (q, k, v), dout)
        res[backend] = (out, *grads)
    for backend in ("tiled", "sdpa"):
        worst = max((a - b).abs().max().item() for a, b in zip(res[backend], res["eager"]))
        print(f"n_kv_head={n_kv}, window={window}: {backend:5} vs eager, output and dq/dk/dv agree to 1e-10: {worst < 1e-10}")

# %% [markdown]
# ## 4. Measured: attention memory and time vs T
#
# `attention_sweep` runs causal attention alone — (B, 12 heads, T, 64) inputs — forward and backward
# for each backend and sequence length. Memory is what autograd **keeps for backward**, counted
# tensor by tensor with `saved_tensors_hooks` (q, k, v themselves excluded), and the allocator's
# peak over one call, temporaries included (`measure.memory.peak_bytes`: CUDA's
# `max_memory_allocated`, on CPU the running sum of `torch.profiler`'s memory events). A backend that is unsupported here (FlexAttention has no CPU backward) or runs
# out of memory is recorded in its row, and the sweep carries on. At each T the backends are timed in
# interleaved rounds (eager, tiled, sdpa, eager, ...): `ms` is the median over rounds, and `vs eager`
# is the median of the per-round ratios eager / this backend, with their range, the rounds and the
# attention core's **analytic ceiling** (the most the backend can gain over eager by the cost
# model: the largest of their FLOP, byte and launch ratios) — load that comes and goes slows both
# sides of a ratio alike. The verdict follows the tutorial's three rules (`tutorial_lib.speedups`):
# a range over 1.0 is *within noise*, fewer than three rounds give *no verdict*, a median above the
# ceiling is noise or a different kernel. A backend whose rounds still disagree after extra rounds
# is named below the table as noisy.

# %% tags=["nbval-ignore-output"]
rows = fl.attention_sweep(SIZES.sweep.seq_lens, batch_size=SIZES.sweep.batch, n_head=12, head_dim=64,
                          device=DEVICE, dtype=DTYPE, rounds=SIZES.step.rounds)
r0 = rows[0]
print(f"B={r0.batch_size}, H={r0.n_head}, D={r0.head_dim}, {r0.dtype}, {r0.device_name}, forward+backward, "
      f"{len(r0.times_ms)}+ interleaved rounds")
vs_eager = {(r.backend, r.seq_len): fl.point_speedup(r) for r in rows}
print(format_rows([{"backend": r.backend, "T": r.seq_len,
                    "kept for bwd MiB": r.saved_bytes / 2**20 if r.ok else None,
                    "peak MiB": r.peak_bytes / 2**20 if r.ok and r.peak_bytes is not None else None,
                    "ms": r.median_ms if r.ok else None,
                    "vs eager (median [range, rounds; ceiling] verdict)": (
                        "baseline" if r.ok and r.backend == "eager" else
                        vs_eager[r.backend, r.seq_len].text() if vs_eager[r.backend, r.seq_len] else None),
                    "note": (r.error or "")[:90]} for r in rows],
                  formats={"kept for bwd MiB": "{:.2f}", "peak MiB": "{:.1f}", "ms": "{:.2f}"}))
print(noise_note([{"variant": f"{r.backend} T={r.seq_len}", "spread": r.spread, "noisy": r.noisy} for r in rows])
      or "every backend's rounds agreed within 25%")

# %% tags=["nbval-ignore-output"]
fl.sweep_figure(rows, "saved_bytes")

# %% tags=["nbval-ignore-output"]
mem_slopes = fl.loglog_slopes(rows, "saved_bytes")
print("fitted exponent of memory kept for backward in T:",
      ", ".join(f"{b} {s:.2f}" for b, s in mem_slopes.items()))
print("fitted exponent of the allocator's peak in T:",
      ", ".join(f"{b} {s:.2f}" for b, s in fl.loglog_slopes(rows, "peak_bytes").items()))
big = max(r.seq_len for r in rows if r.ok)
at = {r.backend: r for r in rows if r.ok and r.seq_len == big}
if "eager" in at:
    for b in ("tiled", "sdpa", "flex"):
        if b in at:
            print(f"at T={big}: eager keeps {at['eager'].saved_bytes / at[b].saved_bytes:.1f}x the memory {b} keeps")
print(claims.format_table([claims.compare("seq.quadratic", mem_slopes.get("eager"), where=claims.ANY_SETTING,
                                          note="eager attention memory vs T")]))

# %% [markdown]
# ### Explore: attention memory for any T and batch
#
# The sweep measured a few lengths at one batch size; the explorer computes, for any T, B and dtype,
# what eager attention writes per layer (scores and probabilities) against what a flash kernel keeps
# (one number per query), and the whole GPT-2 small training step both ways. Slide **sequence length
# T** up (or type it into the box) and watch the ratio grow with T; measured points from the results
# files appear as circles.

# %% tags=["nbval-ignore-output"]
from tutorial_lib.widgets import flash_explorer  # the explorers need ipywidgets (part of the notebook stack)

flash_explorer()

# %% tags=["nbval-ignore-output"]
fl.sweep_figure(rows, "median_ms")

# %% tags=["nbval-ignore-output"]
time_slopes = fl.loglog_slopes(rows, "median_ms", last=3)
print("fitted exponent of time in T (largest three lengths):",
      ", ".join(f"{b} {s:.2f}" for b, s in time_slopes.items()))
for T in sorted({r.seq_len for r in rows}):
    for b in ("tiled", "sdpa", "flex"):
        if vs_eager.get((b, T)):
            print(f"T={T}: {b} over eager {vs_eager[b, T].text()}")
recorded_vs = fl.recorded_vs_eager(DEVICE.type)
if recorded_vs:
    print(f"\nrecorded in {recorded_vs['where']} (another run, not now):")
    for (b, T), sp_ in recorded_vs["speedups"].items():
        if b in ("tiled", "sdpa") and T in {r.seq_len for r in rows}:
            print(f"T={T}: {b} over eager {sp_.text()}")
# "Same O(n²)": judged on the compute it is about, and on the time with its spread over the rounds
per_round = fl.round_slopes(rows, 3).get("sdpa", [])
print(claims.format_table([
    claims.compare("seq.flash", fl.flop_slope(rows, "sdpa"), where=claims.ANY_SETTING, exact=True,
                   note="the attention core's FLOPs vs T (cost model): the compute the claim is about"),
    claims.compare("seq.flash", time_slopes.get("sdpa"), where=claims.ANY_SETTING,
                   spread=(min(per_round), max(per_round)) if len(per_round) > 1 else None,
                   note="SDPA's measured fwd+bwd time, largest three T; spread: the slope fitted in each round"),
]))

# %% [markdown]
# ### What pure-PyTorch tiling does for memory — and why its time is a different question
#
# - **Memory** depends only on what is *kept*: the tiled version keeps q, k, v, the output and one
#   number per query, so its memory is linear in T, exactly like a real flash kernel. That is the
#   guaranteed win, on every device.
# - **Time** depends on how the work is *executed*, and the two costs pull opposite ways. Each tile
#   step is half a dozen separate PyTorch ops launched from a Python loop — `(T / tile)²/2` of them
#   per head group, each writing its small result to memory and reading it back for the next op,
#   with a per-op overhead of microseconds — and the backward pass recomputes the scores (5 matrix
#   products per tile instead of eager's 4). Eager attention runs a few large matrix products, but
#   writes the T × T scores out and reads them back several times, and at long T they no longer fit
#   in any cache. Which cost is larger depends on the device and on T: the per-op overhead weighs
#   most where each op is fast (a GPU, short T), the T × T traffic most at long T. The lines printed
#   above say which won at each length on this machine — do not take "tiling is slower" or "tiling
#   is faster" from anyone without that measurement.
# - **What interleaving cannot catch.** Interleaved rounds cancel load that comes and goes; they
#   cannot cancel a slowdown that always hits one variant — tiled's hundreds of small ops suffer most
#   when other processes share the cores, eager's large fresh buffers pay page faults the first time
#   memory is touched. Then every round agrees and the verdict is still about the machine's state,
#   not the kernel. That is why the recorded run is printed beside this one: where the two disagree
#   about the direction at the same T, each was consistent within its own rounds, and neither tells
#   the kernel apart from the circumstances — re-run on a quiet machine. The same goes for the
#   absolute times: eager attention at one T is timed here, in notebook 01 and in the recorded run,
#   and the three need not agree; only ratios taken in the same rounds compare two backends.
# - **SDPA's fused kernel** (FlashAttention on CUDA, a tiled C++ kernel on CPU) does the same tiling
#   *inside one kernel*: a tile of scores lives in registers / shared memory (GPU) or cache (CPU),
#   is used and discarded without a round trip to main memory, and causally masked tiles are skipped.
#   Eager attention is limited by memory traffic — the T × T scores are written and read several
#   times (scale, mask, softmax, dropout, AV, and again in backward) — so removing that traffic is
#   what lets the fused kernel be fast wherever that traffic dominates (long T). It is the same
#   number of FLOPs (more, in backward), done without the bytes; at short T there is little traffic
#   to remove, and the timings above show whether it still won here.
#
# The seed's "Same O(n²) but much faster constant factors" is right about the compute — the table
# above judges it on the attention core's FLOPs, where the exponent is exactly 2. The measured time
# is shown beside it with the spread of the slope fitted in each round: at these lengths per-call
# costs that grow more slowly than T² still weigh in, so a time exponent below 2 is expected and is
# not evidence against the claim. The memory is where flash changes the *exponent*, from 2 to 1.
#
# ## 5. The whole model: eager vs SDPA attention
#
# A full training step (AdamW) of the profile's model with each backend: median step time, and the
# exact memory of the step — activations saved for backward by component (every device) and the
# allocator's peak (CUDA).

# %% tags=["nbval-ignore-output"]
model_rows = fl.model_backend_comparison(get_config(P.preset), P.batch, P.seq_len, device=DEVICE, dtype=DTYPE,
                                         rounds=P.rounds)
m0 = model_rows[0]
print(f"{m0['preset']}, B={m0['batch_size']}, T={m0['seq_len']}, {m0['dtype']}, {m0['device_name']}, training step")
print(f"{'backend':8} {'ms/step':>9} {'activations MiB':>16} {'of which T x T':>15} {'total MiB':>10} {'CUDA peak MiB':>14}")
for r in model_rows:
    if r["error"]:
        print(f"{r['backend']:8} not measured: {r['error']}")
        continue
    peak = "n/a" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 2**20:.0f}"
    print(f"{r['backend']:8} {r['median_ms']:>9.1f} {r['activations_bytes'] / 2**20:>16.1f} "
          f"{r['scores_bytes'] / 2**20:>15.1f} {r['total_bytes'] / 2**20:>10.1f} {peak:>14}")
eager_r, sdpa_r = model_rows
if not (eager_r["error"] or sdpa_r["error"]):
    print(f"\nSDPA over eager, the whole step: {fl.step_speedup(model_rows, get_config(P.preset)).text()}; "
          f"{1 - sdpa_r['activations_bytes'] / eager_r['activations_bytes']:.0%} fewer activation bytes, "
          f"{1 - sdpa_r['total_bytes'] / eager_r['total_bytes']:.0%} less memory in total.")
    print(noise_note([{"variant": r["backend"], "spread": r["spread"], "noisy": r["noisy"]} for r in model_rows])
          or "both backends' rounds agreed within 25%")
    print("activations by group (MiB), eager -> sdpa:")
    for grp in eager_r["activations_by_group"]:
        print(f"  {grp:24} {eager_r['activations_by_group'][grp] / 2**20:9.1f} -> "
              f"{sdpa_r['activations_by_group'].get(grp, 0) / 2**20:9.1f}")


# %% [markdown]
# ### The seed's memory claims beside the measurement
#
# The seed states its memory figures for B=4, T=512 (GPT-2 small, device and precision not given).
# On CUDA with the `gpu` profile this notebook measures exactly that setting; on a CPU the profile
# uses a smaller batch and length, so the absolute numbers are *not* comparable — the ratios are the
# point there. "MB" in the seed is taken as 10⁶ bytes.

# %% tags=["nbval-ignore-output"]
def mb(x):
    return None if x is None else x / 1e6


def gb(x):
    return None if x is None else x / 1e9


setting = f"{m0['preset']} B={m0['batch_size']} T={m0['seq_len']} {m0['dtype']} on {m0['device_name']}"
n_layer = get_config(P.preset).n_layer
print(f"measured at: {setting}   (seed: {claims.get('mem.activations').setting})")
where = claims.Setting(model=m0["preset"], batch=m0["batch_size"], seq_len=m0["seq_len"])  # exact bytes: any device
print(claims.format_table([
    claims.compare("mem.activations", mb(eager_r["activations_bytes"]), where=where),
    claims.compare("mem.flash.activations", mb(sdpa_r["activations_bytes"]), where=where),
    claims.compare("mem.attention_per_layer", mb(eager_r["scores_bytes"] and eager_r["scores_bytes"] / n_layer),
                   where=where),
    claims.compare("mem.total", gb(eager_r["total_bytes"]), where=where),
    claims.compare("mem.flash.total", gb(sdpa_r["total_bytes"]), where=where),
]))
print("(a verdict needs the seed's B=4, T=512: the guide suite's memory section counts them there, "
      "see the recorded results below)")
if eager_r["peak_bytes"] is not None:
    print(f"\nCUDA allocator peak: eager {eager_r['peak_bytes'] / 1e9:.2f} GB, sdpa {sdpa_r['peak_bytes'] / 1e9:.2f} GB")

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

recorded("flash_vs_T", "attention_vs_T", "flash_model", "memory")

# %% [markdown]
# ## Summary
#
# - Eager attention keeps a (B, H, T, T) probability matrix per layer for backward: its memory grows
#   with T² (measured slope ≈ 2), and at long sequences it dominates the activations.
# - The online softmax computes the same result tile by tile with a running max and normaliser;
#   the tiled kernel keeps only the output and one log-sum-exp per query, and recomputes
#   probabilities in backward: memory linear in T (slope ≈ 1), outputs and gradients equal to eager.
# - Written in pure PyTorch, tiling is a memory optimisation, not a speed one: it trades eager's
#   T × T memory traffic for many small ops from a Python loop and a recomputation in backward, and
#   whether that is faster or slower than eager depends on the device and T (measured above).
#   SDPA's fused kernel does the same tiling inside one kernel, so it keeps the memory win without
#   the per-op overhead; the FLOPs stay O(T²) — flash changes memory traffic, not arithmetic.
# - For the whole model, switching `attn_backend` from `"eager"` to `"sdpa"` removes the T × T
#   activations; how much of the total that is depends on T (try the `gpu` profile or longer T).
#
# ## Exercises
#
# 1. **The online-softmax update** (auto-checked). Write `my_update(m, l, acc, scores, v_tile)`
#    that folds one tile of keys into the running state and returns `(m_new, l_new, acc_new)`;
#    `m` and `l` have shape (..., Tq, 1), `acc` (..., Tq, D), masked scores are `-inf`. The checker
#    drives it over several tiles (random scores, a fully masked first tile, a growing maximum,
#    huge scores) and names the mistake if there is one.

# %%
from tutorial_lib.lessons.flash_attention import check_online_softmax_update


def my_update(m, l, acc, scores, v_tile):
    # your code here
    raise NotImplementedError


check_online_softmax_update(my_update)


# %% [markdown]
# Forgetting to rescale the old accumulator when the maximum grows is the classic mistake; the
# checker spots it:

# %%
def forgot_rescale(m, l, acc, scores, v_tile):
    m_new = torch.maximum(m, scores.amax(-1, keepdim=True))
    shift = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
    p = torch.exp(scores - shift)
    alpha = torch.exp(m - shift)
    return m_new, alpha * l + p.sum(-1, keepdim=True), acc + p @ v_tile  # acc not rescaled


check_online_softmax_update(forgot_rescale)

# %% [markdown]
# 2. **Tile size.** Rerun the sweep for `tiled` with `tile=16, 64, 256`
#    (`fl.attention_sweep(..., backends=["tiled"], tile=...)`). How do memory and time change, and why
#    does memory not depend on the tile size?
# 3. **Where does eager break?** On a GPU, extend `seq_lens` until eager attention reports
#    `OutOfMemoryError` in its row. What is the largest T SDPA handles in the same memory?
# 4. **Count the bytes.** From the sweep rows, predict eager's kept memory at T = 4096 from the
#    formula `B·H·T²·4` bytes (+ a bool mask of T² bytes) and compare with a measurement.
