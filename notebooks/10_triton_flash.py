# %% [markdown]
# # 10 · Write your own kernel: flash attention in Triton
#
# **What you will learn**
#
# - Triton's programming model in two small kernels: a *program* per block of data, blocks of
#   indices from `tl.arange`, loads and stores guarded by **masks**, and `tl.dot` on tiles;
# - the flash-attention forward kernel of `tutorial_lib/attention/triton_flash.py`, read side by side
#   with the tiled PyTorch version from lesson 03 — the same loops, now one fused kernel;
# - its backward (FlashAttention-2: dQ in one kernel, dK and dV in another), grouped K/V heads
#   without copying them, and a sliding window that skips whole tiles;
# - how to run a Triton kernel without a GPU (Triton's **interpreter**), and check it against
#   attention computed in float64 — outputs *and* gradients;
# - why interpreter timings say nothing about speed, and what the GPU measurements show where a GPU
#   run has been recorded.
#
# Triton has wheels for **Linux only**. On macOS or Windows this notebook still shows and explains
# every kernel, but the cells that *run* them print what they need instead: Linux (`pip install
# triton`) or a GPU machine.

# %% tags=["nbval-ignore-output"]
# %matplotlib inline
import os

import torch

# Triton reads TRITON_INTERPRET when a kernel is *defined* -- when the modules below are imported.
# Without a GPU, ask for the interpreter (it runs the kernels on the CPU, in NumPy) before that.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tutorial_lib import attention, settings
from tutorial_lib.attention import flash_tiled, triton_flash
from tutorial_lib.lessons import flash_attention as fl
from tutorial_lib.lessons import triton_flash as tfl
from tutorial_lib.lessons.common import env_summary

DEVICE = settings.get_device()
print(env_summary(DEVICE))
print(tfl.status_text())
CAN_RUN = tfl.triton_status()["can_run"]  # the cells that launch kernels check this

# %% [markdown]
# ## 1. Triton's programming model
#
# A Triton kernel is a Python function decorated with `@triton.jit` (here `@jit`, which is
# `triton.jit` where Triton is installed). You launch it on a **grid**: `kernel[grid](args)` starts
# one **program** per grid cell, all running the same code at the same time on a GPU. Each program
# asks `tl.program_id(axis)` which one it is and works on a **block** of data: `tl.arange(0, BLOCK)`
# is a vector of BLOCK indices, and every operation applies to the whole block at once. Tensors
# arrive as pointers; `tl.load(ptr + offsets, mask=...)` reads a block, `tl.store` writes one. The
# **mask** switches off the lanes that fall outside the data — the last block usually runs past the
# end.

# %%
tfl.kernel_source(tfl.add_kernel)

# %% [markdown]
# Ten numbers in blocks of four: three programs, and the third one masks two of its lanes.

# %%
for p in tfl.program_map(10, 4):
    print(f"program {p['program']}: offsets {p['offsets']}  masked off: {p['masked'] or 'none'}")

# %% tags=["nbval-ignore-output"]
if CAN_RUN:
    r = tfl.run_add(n=10, block=4)
    print(f"add_kernel on {r['programs']} programs: max |out - (x + y)| = {r['max_abs_error']}")
else:
    print("not run here:", tfl.triton_status()["why"])

# %% [markdown]
# Matrix products work on **tiles**. `tl.dot(a, b)` multiplies a (BM, BK) block by a (BK, BN) block
# (on a GPU, on tensor cores; every side at least 16). In the kernel below program (i, j) owns one
# (BM, BN) block of C, keeps it in registers, and walks along K one tile at a time — the shape of
# every kernel in this lesson.

# %%
tfl.kernel_source(tfl.block_matmul_kernel)

# %% tags=["nbval-ignore-output"]
if CAN_RUN:
    r = tfl.run_block_matmul(M=40, N=24, K=48, block=16)
    print(f"C = A @ B on a {r['grid']} grid of programs: max |C - A @ B (float64)| = {r['max_abs_error']:.1e}")
else:
    print("not run here:", tfl.triton_status()["why"])

# %% [markdown]
# ## 2. The forward kernel, beside the tiled PyTorch version
#
# Lesson 03's `tiled_attention_forward` (left) loops over query tiles in Python, and for each over
# the key tiles it can see, calling `online_softmax_update` on every tile. The Triton kernel (right)
# is the same algorithm with the outer loop turned into the **grid**: program `(i, b·H + h)` owns
# query block `i` of head `h`. Read them line by line:
#
# | tiled PyTorch (lesson 03) | Triton kernel |
# |---|---|
# | `for q0 in range(0, T, tile)` | the grid's first axis: `q0 = tl.program_id(0) * BLOCK` |
# | `q[:, :, q0:q1]` | `tl.load(Q + q_offs, mask=rows < T)` — one block of queries, once |
# | `for k0 in key_tiles(q0, q1, T, tile, window)` | `for k0 in range(lo, hi, BLOCK)`, the same bounds |
# | `s.masked_fill(~mask, -inf)` | `tl.where(visible, s, -inf)` |
# | `online_softmax_update(m, l, acc, s, v)` | the same update in `tl.` operations |
# | `out[...] = acc / l`; `lse = m + log(l)` | `tl.store(O + ..., acc / l)`, `tl.store(LSE + ..., m + log(l))` |
#
# Two differences matter on a GPU. The running `m`, `l`, `acc` and the tile of scores live in
# **registers** of one program: nothing T × T, and nothing per tile, ever goes to memory. And the
# grouped K/V head is found by arithmetic (`kv = bh // N_REP`), so GQA reads the shared K/V head in
# place instead of copying it `n_rep` times as `repeat_kv` does.

# %%
tfl.side_by_side(flash_tiled.tiled_attention_forward, triton_flash.flash_forward_kernel)

# %%
tfl.side_by_side(flash_tiled.online_softmax_update, triton_flash.online_softmax_update)

# %% [markdown]
# With a sliding window the key loop starts at `lo`, the tile holding the oldest key the block's
# first query can see, so tiles wholly outside the band are never loaded (the tests check this by
# planting NaNs in them). These are exactly the tiles lesson 03's picture colours; the registry
# entry counts them for the cost model:

# %%
fl.tiling_figure(T=512, tile=64, window=128)

# %%
b = attention.get("triton")
for T, W in ((512, None), (512, 128), (2048, 256)):
    visible = attention.reference.visible_pairs(T, W)
    computed = b.computed_pairs(T, W, 64, "cpu")
    print(f"T={T:>5} window={str(W):>4}: visible (query, key) pairs {visible:>9,}, computed in "
          f"64x64 tiles {computed:>9,} ({computed / visible:.2f}x), all pairs {T * T:>9,}")
print(f"pairs FlopCounterMode charges the Triton kernel: {b.counted_pairs(512, None, 64, 'cpu')} "
      "(it counts PyTorch ops and cannot see inside a Triton kernel)")

# %% [markdown]
# ## 3. The backward kernels
#
# Backward needs, for every (query, key) tile, the probabilities `P = exp(S - lse)` — recomputed
# from the saved log-sum-exp, as in lesson 03 — then `dV = Pᵀ dO`, `dP = dO Vᵀ`,
# `dS = P ∘ (dP − δ)` with `δ = rowsum(dO ∘ O)`, `dQ = dS K / √d` and `dK = dSᵀ Q / √d`.
# FlashAttention-2 splits this into two kernels so that every program *owns* what it writes:
#
# - `flash_backward_dq_kernel`: one program per query block, the forward's loop over key tiles,
#   accumulating dQ;
# - `flash_backward_dkdv_kernel`: one program per key block of a **K/V head**, looping over the
#   query heads that share it and the query tiles that see it, accumulating dK and dV. Summing the
#   group's heads inside the program is what GQA's backward needs, and it needs no atomic adds.
#
# The price: S and dP are computed in both kernels, 7 tile-sized matmuls per tile instead of 5.

# %%
tfl.kernel_source(triton_flash.flash_backward_dkdv_kernel)

# %% [markdown]
# `TritonFlashAttention` (a `torch.autograd.Function`) saves q, k, v, the output and the
# log-sum-exp, and calls the kernels; `triton_attention` is the function registered as backend
# `"triton"`. The registry imports `triton_flash` only on the first call (`attention.lazy`), so
# setting `TRITON_INTERPRET` above, before any kernel was defined, was enough.

# %%
tfl.kernel_source(triton_flash.TritonFlashAttention)

# %% [markdown]
# ## 4. Run it in the interpreter, check it against float64
#
# Each case runs the backend through `attention.attention_core` — forward and backward — and
# compares out, dq, dk and dv with eager attention computed in float64 on the same inputs: plain
# causal, grouped heads with a length that is not a multiple of the tile, a sliding window, and
# bfloat16 inputs (whose rounding sets their tolerance). In the interpreter every `tl.` operation
# runs in NumPy, which has no bfloat16: the kernels multiply bfloat16 tiles in float32 there (a
# `COMPUTE` dtype), and in bfloat16 on a GPU.

# %% tags=["nbval-ignore-output"]
if CAN_RUN:
    check_rows = tfl.check_kernels()
    print(tfl.format_check(check_rows))
    print("all within tolerance:", all(r["ok"] for r in check_rows))
else:
    print("not run here:", tfl.triton_status()["why"])

# %% [markdown]
# The model uses it like any other backend: `GPTConfig(attn_backend="triton")`. Below, a small GPT
# (grouped heads, a window) with the same weights computes the same logits and loss with eager and
# with Triton attention, up to float32 rounding.

# %% tags=["nbval-ignore-output"]
from tutorial_lib.model import GPT, GPTConfig

if CAN_RUN:
    cfg = GPTConfig(n_layer=2, n_head=4, n_kv_head=2, n_embd=64, vocab_size=101, block_size=64,
                    window=9, tile_size=16, attn_backend="eager")
    torch.manual_seed(0)
    eager_model = GPT(cfg).to(tfl.kernel_device())
    triton_model = GPT(cfg.replace(attn_backend="triton")).to(tfl.kernel_device())
    triton_model.load_state_dict(eager_model.state_dict())
    idx = torch.randint(0, 101, (2, 40), generator=torch.Generator().manual_seed(1)).to(tfl.kernel_device())
    with torch.no_grad():
        (logits_e, loss_e), (logits_t, loss_t) = eager_model(idx, idx), triton_model(idx, idx)
    print(f"loss with eager attention {loss_e.item():.6f}, with the Triton kernel {loss_t.item():.6f}; "
          f"largest |logit difference| {(logits_e - logits_t).abs().max().item():.1e}")
else:
    print("not run here:", tfl.triton_status()["why"])

# %% [markdown]
# ## 5. Interpreter timings are not performance
#
# The interpreter runs the programs **one after another**, each `tl.` operation a NumPy call on a
# block: a check of correctness, not of speed. The cell below times it beside PyTorch's SDPA on the
# same CPU — one call each, not a benchmark — to show how far the interpreter is from a fused CPU
# kernel; it says nothing about the compiled Triton kernel, which only a GPU runs (and which this
# cell does not time), nor about flash attention. Speed is measured on a GPU (next section).

# %% tags=["nbval-ignore-output"]
if CAN_RUN and tfl.kernel_device().type == "cpu":
    t = tfl.interpreter_timing(B=1, H=2, T=128, D=64)
    print(f"one forward, B=1 H=2 T=128 D=64 float32 on the CPU: Triton interpreter {t['triton_s']:.3f} s, "
          f"SDPA {t['sdpa_s'] * 1e3:.2f} ms (one call each, not a benchmark; the interpreter against a CPU kernel, "
          "not against the compiled Triton kernel)")
elif CAN_RUN:
    print("the kernels are compiled for the GPU here: see the timings below")
else:
    print("not run here:", tfl.triton_status()["why"])

# %% [markdown]
# ## 6. What changes on a GPU
#
# On a GPU, Triton compiles each kernel once per set of `tl.constexpr` values (head dim, block size,
# dtype) and launches every program at once: B·H·⌈T / BLOCK⌉ of them in the forward, spread over the
# streaming multiprocessors. The same source then decides speed through things the interpreter
# ignores: `tl.dot` runs on tensor cores (bfloat16 here; float32 inputs use exact `"ieee"` products
# instead of TF32), the block size and `num_warps` set how much each program keeps in registers and
# shared memory, and loads of K and V tiles are pipelined. PyTorch's SDPA (FlashAttention-2 kernels
# in CUDA) and FlexAttention (which generates Triton code like this) are the two to measure against.
#
# `tfl.time_kernels()` does that on a CUDA machine — at the seed's setting (GPT-2 small's heads:
# B=4, H=12, T=512, D=64, bfloat16) and at long T, forward and forward+backward, in interleaved
# rounds — and `tfl.record_gpu_timings(path)` writes it to `results/`. Below is what such a file
# holds, if one has been recorded; nothing here is measured now.

# %% tags=["nbval-ignore-output"]
print(tfl.format_gpu_timings(tfl.recorded_gpu_timings()))

# %% [markdown]
# ## Summary
#
# - A Triton kernel is written for **one program and one block**; the grid runs it over all of
#   them. Masks make the ragged edges safe; `tl.dot` multiplies tiles.
# - The flash forward kernel is lesson 03's tiled loop with the outer loop as the grid and the
#   online softmax in registers: it writes the output and one log-sum-exp per query, nothing T × T.
# - Backward recomputes the probabilities from the log-sum-exp in two kernels (dQ; dK and dV per
#   K/V head), so neither needs atomics, and GQA costs no copy of K and V.
# - A sliding window skips whole tiles; the registry counts what is computed, and a test checks
#   that skipped tiles are never read.
# - The interpreter makes all of this testable on any Linux laptop and in CI, in float64-checked
#   detail — and says nothing about speed, which is the GPU's to measure.
#
# ## Exercises
#
# 1. **The online-softmax update in Triton** (auto-checked). Write `my_update(m, l, acc, s, v)`:
#    `m`, `l` are the running max and sum of one block of queries, shape (BLOCK,); `acc` the
#    unnormalised output (BLOCK, D); `s` this tile's scores (BLOCK, BLOCK) with `-inf` where masked;
#    `v` the tile's values (BLOCK, D). Return `(m_new, l_new, acc_new)` using `tl.maximum`,
#    `tl.max(x, 1)`, `tl.exp`, `tl.sum(x, 1)`, `tl.where` and `tl.dot`. The checker runs it inside
#    the forward kernel's loop (`tfl.exercise_forward_kernel`) on random scores, a window that
#    leaves whole tiles masked for most rows, a maximum that grows with every tile and scores near
#    ±400, and names the mistake if there is one.

# %% tags=["nbval-ignore-output"]
from tutorial_lib.attention.triton_flash import jit, tl


@jit
def my_update(m, l, acc, s, v):
    # your code here: the new running max, sum and output after this tile
    raise NotImplementedError


tfl.check_online_softmax_kernel(my_update)


# %% [markdown]
# A row that has seen no visible key yet has `m_new = -inf`, and `exp(-inf - (-inf))` is NaN. This
# version forgets that, and the checker says so:

# %% tags=["nbval-ignore-output"]
@jit
def unguarded_update(m, l, acc, s, v):
    m_new = tl.maximum(m, tl.max(s, 1))
    p = tl.exp(s - m_new[:, None])
    alpha = tl.exp(m - m_new)
    return m_new, alpha * l + tl.sum(p, 1), alpha[:, None] * acc + tl.dot(p, v)


tfl.check_online_softmax_kernel(unguarded_update)

# %% [markdown]
# 2. **The window's first tile.** In `flash_forward_kernel` the key loop starts at
#    `lo = max(q0 - WINDOW + 1, 0) // BLOCK * BLOCK`. Why round *down* to a tile boundary? What goes
#    wrong if you drop the rounding, and what if you start at `q0 - WINDOW + 1 + BLOCK`?
#    `tests/test_triton_flash.py::test_skipped_tiles_are_never_read` tells you which tiles are read.
# 3. **Where does the dK/dV loop stop?** Derive `hi = min(k0 + BLOCK + WINDOW - 1, T)` in
#    `flash_backward_dkdv_kernel` from the forward's `lo`: both kernels must visit the same tiles.
# 4. **exp2.** Production kernels use `tl.exp2` with the scale multiplied by log2(e) (one multiply
#    fewer per score on a GPU). Change the forward kernel and the LSE it stores accordingly, and
#    check it with `tfl.check_kernels()`.
# 5. **On a GPU:** run `tfl.time_kernels()` and compare TFLOP/s with SDPA and FlexAttention at T=512
#    and T=8192. Then try `tile_size` 32 and 128 (`GPTConfig.tile_size` is the block edge).
