# %% [markdown]
# # 01 · Where the time and memory of a GPT-2 training step go
#
# The seed guide opens with a picture: one GPT-2 small forward pass cut into embedding, attention,
# MLP, norms and LM head, with a share of time on each, then a memory budget and an O(T²) curve.
# This notebook rebuilds all three **from measurements on your machine** and sets the seed's numbers
# beside them.
#
# **What you will learn**
#
# - how to count a transformer's FLOPs per component by hand, and check the count against
#   PyTorch's `FlopCounterMode` (exactly);
# - how to measure per-component time with `torch.profiler` and named scopes in the model —
#   forward *and* backward — and why the time shares differ from the FLOP shares;
# - where a training step's memory goes: parameters, gradients, optimizer state and the
#   activations autograd keeps for backward, by component;
# - what "attention is O(T²)" means in memory and in time, measured;
# - which of the seed's numbers hold up, and which do not.
#
# Sizes come from the size profile (`TUTORIAL_PROFILE=smoke|cpu|gpu`); analytic numbers always use
# the real GPT-2 small at the seed's setting (B=4, T=512). The first cell says where the stored
# outputs were measured.
#
# ### A map of the tutorial
#
# Each notebook answers one question. The table below (printed by the first cell, from
# `tutorial_lib.notebook_map`) gives, for each: what it answers, how long it took to run at the `cpu`
# profile (read from the stored outputs' timestamps: a 2-core CPU) and at the `smoke` profile, what
# it builds on, and what to skip or expect on a CPU. Start here, then follow the order; 07 is the
# synthesis, 99 the playground. On a GPU (`gpu` profile) every notebook measures the seed's own
# setting and the times differ.

# %% tags=["nbval-ignore-output"]
# %matplotlib inline
import torch

from tutorial_lib import claims, settings
from tutorial_lib.lessons import profile as plots
from tutorial_lib.lessons.common import env_summary, format_rows, show_source
from tutorial_lib.lessons.flash_attention import attention_sweep, loglog_slopes, sweep_figure
from tutorial_lib.measure import cost, flops, memory, profile, timing
from tutorial_lib.measure.memory import fmt_bytes
from tutorial_lib.model import get_config
from tutorial_lib.notebook_map import map_lines
from tutorial_lib.sizes import get_sizes

DEVICE = settings.get_device()
SIZES = get_sizes()  # the size profile: TUTORIAL_PROFILE=smoke|cpu|gpu
P = SIZES.step  # the measured training step
DTYPE = P.torch_dtype  # bf16 autocast on CUDA, fp32 on CPU
print(env_summary(DEVICE))
print(f"measured model: {P.preset}, B={P.batch}, T={P.seq_len}")
print("\nthe map (cpu: the stored outputs' run at the cpu profile; smoke: recorded at the smoke profile):")
print("\n".join(map_lines()))

# %% [markdown]
# ## 1. The idea: a step is a list of matrix multiplies — and everything around them
#
# A training step runs the model forward (embedding → 12 blocks of attention and MLP, each behind a
# norm → final norm → LM head → loss), then backward through the same components, then the
# optimizer. Almost all the *arithmetic* is matrix multiplication, so counting matmul FLOPs per
# component gives a first picture of where the work is. Here it is for GPT-2 small at the seed's
# setting, drawn the way the seed draws its time breakdown (each panel is a share of the level
# above; the black marks are the seed's claimed *time* shares). This picture is analytic — the same
# on every machine.

# %%
SEED_B, SEED_T = 4, 512
small = get_config("gpt2_small")
fwd = cost.flops_by_scope(small, SEED_B, SEED_T, "forward", "counted")  # matmul FLOPs per component
print(small.describe())
plots.nested_breakdown(fwd, n_layer=small.n_layer,
                       what="forward matmul FLOPs",
                       title=f"GPT-2 small, B={SEED_B}, T={SEED_T}: share of forward matmul FLOPs")

# %% [markdown]
# The profiler needs names for the components. The model's code stays plain: `GPT.module_scopes`
# names the modules (the projections, norms, embedding, LM head), and only while profiling
# `tutorial_lib.scopes` hooks a `record_function` range around each of them. Where no module exists
# — RoPE, the attention kernel, the MLP's activation, the loss — the forward says
# `with scope("attention.core"):`, which costs nothing unless a profiler is on.

# %% tags=["nbval-ignore-output"]
from tutorial_lib.model import GPT

show_source(GPT.module_scopes)

# %% [markdown]
# ## 2. Counting FLOPs by hand
#
# A linear layer with `n_in` inputs and `n_out` outputs costs `2 · tokens · n_in · n_out` FLOPs
# forward (a multiply and an add per weight per token) and twice that backward (gradient of the input
# and of the weight). Attention's two products, `Q Kᵀ` and `P V`, each cost `2 · B · H · T² · D`
# — the term that grows with T². The library's one analytic model, `measure.cost`, lists the kernels
# of every component and adds up their FLOPs; the elementwise work (softmax, GELU, norms, RoPE) is
# estimated separately because it is small in FLOPs — but not, as we will see, in time.

# %%
bwd = cost.flops_by_scope(small, SEED_B, SEED_T, "backward", "counted")
visible = cost.flops_by_scope(small, SEED_B, SEED_T, "forward", "visible")
elementwise = cost.elementwise_flops(small, SEED_B, SEED_T)
params = cost.params_by_scope(small)
table = [{"component": k, "fwd GFLOP": fwd.get(k, 0) / 1e9, "bwd GFLOP": bwd.get(k, 0) / 1e9,
          "fwd causal GFLOP": visible.get(k, 0) / 1e9, "elementwise GFLOP (est.)": elementwise.get(k, 0) / 1e9,
          "params M": params.get(k, 0) / 1e6}
         for k in dict.fromkeys([*fwd, *elementwise, *params])]
fmt = {k: "{:,.2f}" for k in table[0] if k != "component"}
print(f"GPT-2 small, B={SEED_B}, T={SEED_T}, {small.attn_backend} attention, per component (all 12 layers; "
      "'other' is the residual adds):")
print(format_rows(table, formats=fmt))

# %%
share = claims.flop_shares_in_seed_terms(fwd)
block = {k: v for k, v in fwd.items() if k.startswith(("attention", "mlp"))}
print(f"LM head         : {share['time.lm_head']:.1%} of the forward matmul FLOPs")
print(f"MLP             : {share['time.block.mlp']:.1%} of a block's matmul FLOPs")
print(f"QKᵀ + PV        : {block['attention.core'] / sum(block.values()):.1%} of a block's matmul FLOPs")
print(f"q/k/v + out proj: {(block['attention.qkv'] + block['attention.out']) / sum(block.values()):.1%} of a block")

# %% [markdown]
# Two conventions matter when you compare FLOP numbers:
#
# - **full T×T** — PyTorch's `FlopCounterMode` (and most kernels) charge attention for every
#   (query, key) pair, although a causal mask throws half of them away;
# - **causal-aware** — only the T(T+1)/2 pairs a query may see: the useful work.
#
# And the rule of thumb "2N FLOPs per token forward, 6N forward + backward" (N = matmul weights)
# ignores attention's T² term. Here are all three for one step:

# %%
t = {"fwd": sum(fwd.values()), "bwd": sum(bwd.values())}
rot = cost.rule_of_thumb_flops(small, SEED_B, SEED_T)
print(f"forward, full T×T (counter convention): {t['fwd'] / 1e9:,.1f} GFLOP")
print(f"forward, causal-aware                 : {sum(visible.values()) / 1e9:,.1f} GFLOP")
print(f"forward, 2·N·tokens rule of thumb     : {rot['fwd'] / 1e9:,.1f} GFLOP")
print(f"backward / forward (counter)          : {t['bwd'] / t['fwd']:.3f}")
print(f"fwd + bwd, full T×T                   : {(t['fwd'] + t['bwd']) / 1e9:,.1f} GFLOP")
print(f"fwd + bwd, 6·N·tokens rule of thumb   : {rot['fwdbwd'] / 1e9:,.1f} GFLOP")

# %% [markdown]
# The backward pass costs a bit more than twice the forward: SDPA's backward **recomputes** the
# attention scores instead of keeping them (flash attention's trade: FLOPs for memory).
#
# **Correctness check.** The analytic count must agree *exactly* with PyTorch's own
# `FlopCounterMode` on the real model. (PyTorch does not know the FLOPs of its CPU flash-attention
# kernel; `flops.flop_counter()` registers them. The test suite repeats this for every config
# variant: GQA, MQA, MLP ratios, SwiGLU, windows, tiled attention, LayerNorm, learned positions,
# vocabulary padding.)

# %%
B_chk, T_chk = 1, 64
got = flops.count_flops(small, B_chk, T_chk, device="cpu")
ana = {phase: cost.flops_by_scope(small, B_chk, T_chk, phase, "counted") for phase in ("forward", "backward")}
print(f"GPT-2 small, B={B_chk}, T={T_chk}:")
for phase, key in (("forward", "fwd"), ("backward", "bwd")):
    a = sum(ana[phase].values())
    print(f"  {phase:8}: analytic {a:,}  FlopCounterMode {got[key]:,}  equal: {a == got[key]}")
print(f"  per component (forward) equal: {got['fwd_by_component'] == ana['forward']}")

# %% [markdown]
# **The seed's operation counts.** The seed writes "~134M ops" for the attention scores, "~1.6B" per
# layer and "~19B" for the model. 134M is exactly the FLOPs of `Q Kᵀ` for *one head* at B=4, T=512
# — and 12 heads × 12 layers of that alone give its per-layer and per-model totals. The whole forward
# pass is much larger:

# %%
H, D = small.n_head, small.head_dim
AT_SEED = claims.Setting(model="gpt2_small", batch=SEED_B, seq_len=SEED_T)  # analytic: exact at the seed's setting
qk_one_head = plots.attention_score_flops(SEED_B, SEED_T, 1, D)
per_layer = (t["fwd"] - fwd["lm_head"]) / small.n_layer
print(claims.format_table(claims.claims_table({
    "ops.scores": qk_one_head,
    "ops.per_layer": per_layer,
    "ops.model": t["fwd"],
}, notes={"ops.per_layer": "ours: the whole block's forward matmul FLOPs"}, where=AT_SEED) + [
    # the score counts hold at their own T: each is computed there (T x T per head)
    claims.compare("scores.T512", SEED_T * SEED_T, where=claims.Setting(seq_len=SEED_T)),
    claims.compare("scores.T1024", 1024 * 1024, where=claims.Setting(seq_len=1024)),
]))
print(f"\n12 heads x 12 layers of Q Kᵀ alone: {12 * 12 * qk_one_head / 1e9:.1f} GFLOP")

# %% [markdown]
# ## 3. The measured breakdown on this machine
#
# `profile.profile_step` runs a few warm-up steps, then profiles with the model's scopes turned on.
# Forward time is the time inside each scope. Backward is attributed through autograd's
# **sequence numbers**: every backward node runs in an `evaluate_function` event that carries the
# sequence number of the forward op that created it, and each forward op's number is mapped to the
# scope it ran in. On CPU the time is CPU time; on CUDA it is the GPU kernel time launched from
# those ranges. Anything outside every scope gets its own "other" row, so the shares add up to 100 %.
#
# We profile the seed's baseline, **eager attention** (scores materialised, masked, softmaxed), at
# the size profile's batch and length.

# %% tags=["nbval-ignore-output"]
show_source(profile.attribute, lines=slice(0, 12))

# %% tags=["nbval-ignore-output"]
cfg = get_config(P.preset, attn_backend="eager")
prof_fwd = profile.profile_step(cfg, P.batch, P.seq_len, mode="fwd", device=DEVICE, dtype=DTYPE)
print(f"{cfg.describe()} | B={P.batch}, T={P.seq_len}, {prof_fwd.device_name}, {prof_fwd.dtype}, "
      f"{prof_fwd.time_source}")
print(format_rows(prof_fwd.table(), ["name", "forward_ms", "share"],
                  {"forward_ms": "{:.2f}", "share": "{:.1%}"}))
plots.time_breakdown(prof_fwd)

# %% [markdown]
# The same for a whole **training step** — forward, backward (attributed to the component whose
# forward created it) and the AdamW update:

# %% tags=["nbval-ignore-output"]
prof_train = profile.profile_step(cfg, P.batch, P.seq_len, mode="train", device=DEVICE, dtype=DTYPE)
print(f"profiled {prof_train.step_ms:.1f} ms per step ({prof_train.time_source}); by phase: " +
      ", ".join(f"{k} {v / prof_train.step_ms:.0%}" for k, v in prof_train.phase_ms().items()))
print(format_rows(prof_train.table(), ["name", "forward_ms", "backward_ms", "total_ms", "share"],
                  {"forward_ms": "{:.2f}", "backward_ms": "{:.2f}", "total_ms": "{:.2f}", "share": "{:.1%}"}))

# %% [markdown]
# ### The seed's time shares beside this measurement
#
# Each claim is the seed's own wording; "ratio" is measured ÷ claimed. The seed does not say on which
# device or at which size its shares were measured, so a share is judged only at its headline setting
# (GPT-2 small, B=4, T=512): measured at another size, the row names the difference and gives no
# verdict. The guide's `breakdown` table profiles that very setting.

# %% tags=["nbval-ignore-output"]
measured_shares = claims.time_shares_from_profile(prof_fwd, n_layer=cfg.n_layer)
where = claims.Setting(model=cfg.name, batch=P.batch, seq_len=P.seq_len, device=DEVICE.type)
print(f"forward pass of {cfg.name}, B={P.batch}, T={P.seq_len}, {prof_fwd.device_name}, {prof_fwd.dtype}")
print(claims.format_table(claims.claims_table(measured_shares, where=where)))

# %% [markdown]
# ## 4. Memory: parameters, gradients, optimizer state, activations
#
# Parameters, gradients and AdamW's two moment buffers depend only on the model — here they are for
# GPT-2 small in fp32 (AdamW keeps its state in fp32 even under bf16 autocast), against the seed's
# budget at B=4, T=512 (MB = 10⁶ bytes):

# %%
n = cost.num_params(small)
from tutorial_lib.model import GPT

with torch.device("meta"):
    meta_model = GPT(small)  # shapes only: no memory, no time
n_tensors = len(list(meta_model.parameters()))
param_bytes = 4 * n
print(f"GPT-2 small: {n:,} parameters in {n_tensors} tensors")
print(claims.format_table(claims.claims_table({
    "mem.params": param_bytes / 1e6,
    "mem.grads": param_bytes / 1e6,
    "mem.optimizer": (2 * param_bytes + 4 * n_tensors) / 1e6,
}, where=AT_SEED)))

# %% [markdown]
# Activations are what autograd keeps for backward. `memory.memory_breakdown` runs one real training
# step and sees every saved tensor through `torch.autograd.graph.saved_tensors_hooks` — each storage
# counted once, parameters excluded — and charges it to the scope that saved it (a norm's input is
# the residual stream; `(T, T)` tensors in attention are the scores/probabilities). On CUDA it also
# records the allocator's peak. Measured at the size profile's setting:

# %% tags=["nbval-ignore-output"]
mb_eager = memory.memory_breakdown(cfg, P.batch, P.seq_len, device=DEVICE, dtype=DTYPE)
mb_sdpa = memory.memory_breakdown(cfg.replace(attn_backend="sdpa"), P.batch, P.seq_len, device=DEVICE, dtype=DTYPE)
for mb in (mb_eager, mb_sdpa):
    print(f"{mb.attn_backend:>5}: " + ", ".join(f"{k} {fmt_bytes(v)}" for k, v in mb.by_kind().items()) +
          (f", CUDA peak {fmt_bytes(mb.peak_bytes)}" if mb.peak_bytes else ""))
    print("       activations: " + ", ".join(f"{k} {fmt_bytes(v)}" for k, v in mb.activations_by_group().items()))
plots.memory_figure(mb_eager)

# %% [markdown]
# **A worked example (and a check of the tool).** Eager attention keeps one `(B, H, T, T)`
# probability tensor per layer (the softmax output, needed for both of its backward products) plus
# the boolean causal mask. The measured saved bytes of one eager attention call must equal that
# formula exactly:

# %%
from tutorial_lib.attention import attention_core

q, k, v = (torch.randn(1, 12, 128, 64, requires_grad=True) for _ in range(3))
measured = memory.saved_bytes(attention_core, q, k, v, "eager")
formula = plots.attention_probs_bytes(1, 12, 128, bytes_per_element=4) + 128 * 128  # + bool mask
print(f"eager attention, B=1, H=12, T=128, fp32: measured {measured:,} bytes, formula {formula:,}: equal {measured == formula}")
for bpe, name in ((4, "fp32"), (2, "bf16")):
    b = plots.attention_probs_bytes(SEED_B, 12, SEED_T, bpe)
    print(f"probabilities per layer at B={SEED_B}, T={SEED_T}, {name}: {b / 1e6:.1f} MB "
          f"(seed: '{claims.get('mem.attention_per_layer').text}')")

# %% [markdown]
# ## 5. Why the time shares are not the FLOP shares
#
# A matmul does many FLOPs per byte it reads and writes; a softmax, a mask, a GELU or a norm does a
# handful. Such *memory-bound* operations take time in proportion to the bytes they move, not to
# their FLOPs, so they show up in the time breakdown far above their FLOP share. Eager attention is
# the extreme case: it writes the `(B, H, T, T)` scores, the masked scores and the probabilities to
# memory, and reads them back. Arithmetic intensity (FLOPs per byte the forward's kernels read and
# write, under bf16 autocast) for GPT-2 small at the seed's setting, from the same analytic model
# (notebook 09 puts these numbers on the roofline):

# %%
inten = [{"component": r.scope, "GFLOP (matmul, or elementwise est.)": r.roofline_flops / 1e9,
          "MB moved": r.bytes / 1e6, "FLOPs per byte": r.intensity}
         for r in cost.step_kernels(small.replace(attn_backend="eager"), SEED_B, SEED_T, "bfloat16")
         if r.phase == "forward" and r.bytes]
print(format_rows(inten, formats={"GFLOP (matmul, or elementwise est.)": "{:,.2f}", "MB moved": "{:,.1f}",
                                  "FLOPs per byte": "{:,.1f}"}))

# %% [markdown]
# Measured: the share of forward FLOPs (matmuls) beside the share of forward time, per component,
# for the run profiled above:

# %% tags=["nbval-ignore-output"]
flop_share = cost.shares(cost.flops_by_scope(cfg, P.batch, P.seq_len, "forward", "counted", DEVICE.type))
time_share = prof_fwd.shares("forward")
for name in ("attention.core", "mlp.act", "norm", "lm_head", "mlp.up"):
    print(f"{name:15s} FLOP share {flop_share.get(name, 0):6.1%}   time share {time_share.get(name, 0):6.1%}")
plots.flop_vs_time(flop_share, time_share,
                   title=f"{cfg.name}, B={P.batch}, T={P.seq_len}, {prof_fwd.device_name}: forward pass")

# %% [markdown]
# ## 6. The O(T²) curve, measured
#
# Attention alone, `(B=1, H=12, T, D=64)`, eager vs PyTorch's fused SDPA. **Memory** first: the bytes
# autograd keeps for backward (measured exactly with saved-tensor hooks, in fp32 on the CPU, so this
# cell is the same on every machine). Eager keeps the T×T probabilities; SDPA keeps only its output
# and one log-sum-exp per query. The fitted log-log slope is the exponent of T:

# %%
mem_rows = attention_sweep([64, 128, 256, 512], ["eager", "sdpa"], batch_size=1, n_head=12, head_dim=64,
                           device="cpu", dtype=torch.float32, measure_time=False)
print(format_rows([{"backend": r.backend, "T": r.seq_len, "saved for backward": fmt_bytes(r.saved_bytes)}
                   for r in mem_rows]))
print("fitted slopes (memory vs T):", {b: round(s, 2) for b, s in loglog_slopes(mem_rows, "saved_bytes").items()})

# %% [markdown]
# **Time** of forward + backward on this device, over the size profile's lengths. Both do O(T²)
# arithmetic (flash attention saves memory traffic, not FLOPs), so both curves should steepen
# towards slope 2 as T grows — but at small T fixed overheads flatten them, and where eager's T×T
# matrices fall out of cache its curve can even be steeper than 2. The fitted slopes are printed
# below the figure:

# %% tags=["nbval-ignore-output"]
time_rows = attention_sweep(list(SIZES.sweep.seq_lens), ["eager", "sdpa"], batch_size=SIZES.sweep.batch, n_head=12,
                            head_dim=64, device=DEVICE, measure_time=True, min_run_time=P.min_run_time)
print(format_rows([{"backend": r.backend, "T": r.seq_len, "ms": r.median_ms, "error": r.error} for r in time_rows],
                  formats={"ms": "{:.2f}"}))
slopes = loglog_slopes(time_rows, "median_ms", last=3)
print("fitted slopes over the last 3 lengths (time vs T):", {b: round(s, 2) for b, s in slopes.items()})
sweep_figure(time_rows, "median_ms", title=f"attention fwd+bwd, B={SIZES.sweep.batch}, H=12, D=64, {settings.device_name(DEVICE)}")

# %% [markdown]
# ### Part of eager attention's time on a CPU is page faults, not arithmetic
#
# Eager attention makes fresh `(B, H, T, T)` tensors on every call — scores, masked scores,
# probabilities and their gradients. A fresh tensor's memory is only *reserved*: the operating
# system maps each 4 KiB page on the first write to it (a page fault, and the kernel zeroes the
# page), and by default glibc hands PyTorch's large blocks back to the system when they are freed,
# so the next call faults them in again. That cost is the operating system's, and it grows with the
# bytes, not the FLOPs. On a virtual machine the hypervisor may also take freed pages back a few
# seconds later, and then the next write to them is slower still, at random moments.
# `tutorial_lib` changes two settings of the CPU allocator:
#
# - **huge pages** (2 MiB, 512× fewer faults): `THP_MEM_ALLOC_ENABLE=1`, read once per process, at
#   its first allocation;
# - **kept memory**: glibc keeps what it frees in the process (`tutorial_lib.cpu_memory`), so after
#   the first call the large blocks come back already mapped: no faults at all.
#
# Measured: writing a fresh tensor vs one already written in this process (with memory kept, the two
# should be alike), then eager attention in fresh processes with each setting off and on, in three
# interleaved rounds (`measure.allocator.huge_page_ab`):

# %% tags=["nbval-ignore-output"]
from tutorial_lib import cpu_memory
from tutorial_lib.measure import allocator, ceilings
from tutorial_lib.speedups import Speedup

if DEVICE.type == "cpu":
    fills = {p.ceiling: p.rate(timing.time_fn(p.run, DEVICE, min_run_time=0.2).median_ms) / 1e9
             for p in ceilings.fill_probes(DEVICE, (64 * 2**20,))}  # the ceilings' own probes
    print(f"writing 64 MiB: fresh tensor {fills['first_touch_bandwidth']:.1f} GB/s, already written "
          f"{fills['fill_bandwidth']:.1f} GB/s "
          f"(huge pages requested by PyTorch here: {allocator.huge_pages_requested()}, kernel THP mode: {allocator.system_thp_mode()})")
    print(f"glibc keeps freed memory in this process: {cpu_memory.KEPT}")
    for setting, what in (("huge_pages", "huge pages"), ("keep_freed", "kept memory")):
        ab = allocator.huge_page_ab("eager_attention", seq_len=SIZES.own_paths.ab_attention_seq, rounds=3, reps=2,
                                    setting=setting)
        gain = Speedup.from_row(ab)
        print(f"eager attention fwd+bwd, B=1, H=12, T={ab['seq_len']}, {ab['threads']} threads: "
              f"{ab['off_ms']:.1f} ms without {what}, {ab['on_ms']:.1f} ms with it: {gain.text()}; "
              f"a fresh 64 MiB tensor written at {ab['fresh_GBps_off']:.1f} GB/s without, {ab['fresh_GBps_on']:.1f} with")
else:
    print("huge pages are a CPU allocator setting; on CUDA the caching allocator reuses its blocks")

# %% [markdown]
# ## 7. The seed's headline numbers beside a measured step
#
# A timed training step (`torch.utils.benchmark`, median of repeated runs) at the size profile's
# setting, eager vs SDPA attention. On a GPU with a known peak the kit also reports MFU (model FLOPs
# utilisation: causal-aware FLOPs per second ÷ the GPU's dense bf16 peak); on a CPU it reports the
# achieved FLOP/s alone.

# %% tags=["nbval-ignore-output"]
steps = timing.measure_sweep([{"config": cfg}, {"config": cfg.replace(attn_backend="sdpa")}],
                            batch_size=P.batch, seq_len=P.seq_len, mode="train", device=DEVICE, dtype=DTYPE,
                            min_run_time=P.min_run_time)
print(format_rows([{"attention": r.attn_backend, "ms/step": r.median_ms, "IQR ms": r.iqr_ms,
                    "tokens/s": r.tokens_per_s, "TFLOP/s": r.achieved_tflops, "MFU": r.mfu,
                    "peak": fmt_bytes(r.peak_mem_bytes) if r.peak_mem_bytes else None, "error": r.error}
                   for r in steps],
                  formats={"ms/step": "{:.1f}", "IQR ms": "{:.1f}", "tokens/s": "{:,.0f}",
                           "TFLOP/s": "{:.3f}", "MFU": "{:.1%}"}))
print()
print(claims.format_table(claims.claims_table({
    "results.tokens_per_s.before": steps[0].tokens_per_s,
    "results.step_ms.before": steps[0].median_ms,
    "time.attention.core": measured_shares["time.attention.core"],
    "time.lm_head": measured_shares["time.lm_head"],
}, where=where)))
print(f"(measured at {where.describe()}, {steps[0].device_name}, {steps[0].dtype}; the seed's setting is "
      "GPT-2 small, B=4, T=512 on an unstated device)")

# %% [markdown]
# ### How close is a step to the machine? MFU against a measured peak
#
# MFU (model FLOPs utilisation) is a step's FLOPs per second over the machine's peak. A GPU has a
# spec-sheet peak; a CPU has none that means much (the BLAS and the clock decide), so the peak here is
# *measured*: large square `torch.mm` in the step's dtype, timed **in the same rounds** as the steps
# (this machine's speed drifts by tens of percent within minutes, so a step and a peak timed minutes
# apart do not make a ratio). Each round's MFU divides that round's step by that round's peak; the
# table gives the median over the rounds and their range. The FLOPs are `FlopCounterMode`'s count of
# one forward+backward (`lessons.own_paths.step_mfu`):

# %% tags=["nbval-ignore-output"]
from tutorial_lib.lessons import own_paths

o = SIZES.own_paths
mfu = own_paths.step_mfu(o.mfu_preset, o.mfu_batch, o.mfu_seq, {"eager": {"attn_backend": "eager"},
                                                                "sdpa": {"attn_backend": "sdpa"}},
                         device=DEVICE, rounds=3, min_run_time=P.min_run_time, peak_sizes=o.peak_sizes)
pk = mfu["peak"]
print(f"matmul peak, timed in the same rounds: {pk['median_TFLOPs'] * 1e3:,.1f} GFLOP/s (rounds "
      f"{pk['range_TFLOPs'][0] * 1e3:,.1f}–{pk['range_TFLOPs'][1] * 1e3:,.1f})"
      + (f"; spec {pk['spec_TFLOPs']:,.0f} TFLOP/s" if pk["spec_TFLOPs"] else ""))
print(format_rows([{"attention": r["variant"], "model": f"{r['preset']}, B={r['batch_size']}, T={r['seq_len']}",
                    "GFLOP": r.get("GFLOP"), "ms": r.get("ms"), "MFU (same-round peak)": r.get("MFU_measured_peak"),
                    "MFU range": r.get("MFU_range"), "MFU (spec)": r.get("MFU_spec"), "error": r["error"]}
                   for r in mfu["rows"]],
                  formats={"GFLOP": "{:.2f}", "ms": "{:.1f}", "MFU (same-round peak)": "{:.0%}", "MFU (spec)": "{:.0%}"}))

# %% [markdown]
# The seed's "Expected Results" table is inconsistent with itself — its own time per step and
# batch imply a different throughput:

# %%
tokens = SEED_B * SEED_T
for when in ("before", "after"):
    ms = claims.claimed(f"results.step_ms.{when}")
    print(f"{when:6s}: {tokens:,} tokens in {ms:g} ms = {tokens / (ms / 1e3):,.0f} tokens/s; "
          f"the table says {claims.claimed(f'results.tokens_per_s.{when}'):,.0f}")

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

recorded("breakdown", "memory", "attention_vs_T", "own_paths.allocator", "own_paths.mfu")

# %% [markdown]
# ## Summary
#
# - **FLOPs** (analytic, exact against `FlopCounterMode`): the LM head, the MLP and the q/k/v/out
#   projections carry almost all the arithmetic of GPT-2 small at T=512; attention's `QKᵀ` and `PV`
#   are a minor share there, but it is the only term that grows with T² (section 2 prints the
#   numbers).
# - **Time** (measured, section 3): the shares on your machine differ from the FLOP shares, because
#   memory-bound work — softmax and masking in eager attention, GELU, norms, the loss over a
#   50,257-way vocabulary — costs time out of proportion to its FLOPs (section 5).
# - **Page faults** (section 6): on a CPU, part of eager attention's cost is the operating system
#   mapping fresh pages for its T×T tensors on every call; huge pages cut it.
# - **MFU** (section 7): a step's FLOP/s as a fraction of the matmul peak measured on the same
#   machine in the same run — the only peak a CPU has.
# - **Memory** (section 4): parameters + gradients + AdamW state are fixed by the model; the
#   activations grow with B·T, and eager attention adds a T² term that SDPA removes (section 6's
#   slopes).
# - **The seed**: compare its claims with the tables above — its operation counts describe `QKᵀ`
#   alone, its expected-results table contradicts itself, and its LM-head share is far from the
#   FLOPs; which of its time shares hold on this machine, the breakdown in section 3 says.
#
# Next: [02 · GQA](02_gqa.ipynb) changes the K/V heads, [03 · flash attention](03_flash_attention.ipynb)
# removes the T×T memory.
#
# ## Exercises
#
# 1. **Attention-score FLOPs** (auto-checked). How many FLOPs does `S = Q Kᵀ` cost in *one layer*
#    of GPT-2 small at B=4, T=512 (H=12 heads of D=64), counting the full T×T? Put your number in
#    `my_flops`.

# %%
my_flops = None  # your answer here
print(plots.check_attention_score_flops(my_flops, B=4, T=512, H=12, D=64))

# %% [markdown]
# 2. **Eager attention's memory** (auto-checked). How many bytes do the attention probabilities of
#    one layer take at B=4, T=512, H=12 in bf16 (2 bytes per element)? Compare with the seed's
#    "~70 MB per layer".

# %%
my_bytes = None  # your answer here
print(plots.check_attention_probs_bytes(my_bytes, B=4, H=12, T=512, bytes_per_element=2))

# %% [markdown]
# 3. **Profile it yourself.** From a terminal:
#    `python -m tutorial_lib profile --attn eager --out-fig results/eager.png --trace results/eager_trace.json`
#    then the same with `--attn sdpa`. Open the trace in https://ui.perfetto.dev and find one
#    attention block's backward. Which component's share changes most?
# 4. **Where does T² win?** Using `cost.flops_by_scope`, find the sequence length at which
#    `attention.scores + attention.av` overtake the MLP's matmul FLOPs in GPT-2 small. Then measure
#    with `timing.measure_step` at a few lengths around it: does the measured time cross over at the
#    same T?
# 5. **Small models lie.** Rerun section 3 with `get_config("tiny")`. Why does the LM head dominate
#    there? (Compare `n_embd · vocab_size` with the blocks' weights.)
