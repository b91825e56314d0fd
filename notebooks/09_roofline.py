# %% [markdown]
# # 09 · The roofline: why time is not FLOPs
#
# Every lesson so far counted FLOPs, and every measurement disagreed with them somewhere: the loss
# took a large share of the step with no matrix multiply at all (notebook 01), eager attention cost
# more than its FLOPs (03), and a GPU step on record reaches only a small fraction of the chip's
# peak. This notebook makes time *predictable*: FLOPs **and** bytes, against the machine's own
# measured ceilings.
#
# **What you will learn**
#
# - the roofline model: a kernel takes at least max(FLOPs / peak, bytes / bandwidth), and its
#   *arithmetic intensity* (FLOPs per byte) says which of the two roofs it is under;
# - how to measure your machine's ceilings — peak matmul FLOP/s, memory bandwidth, the cost of one
#   operator, and (on a CPU) the price of touching freshly allocated memory;
# - how many bytes each component of a GPT-2 training step must move, forward and backward, checked
#   against every operator PyTorch dispatches and every tensor autograd saves;
# - where each component of a real training step sits on the roofline, which ones are
#   memory-bound, and how flash attention, GQA and a sliding window move their point;
# - how well the model predicts whole steps — on this machine and against every step time on
#   record — beside the FLOP-only prediction; and that the cost explorer and the decision tree of
#   notebook 99 now predict with it.
#
# Sizes come from the size profile (`TUTORIAL_PROFILE=smoke|cpu|gpu`); analytic numbers use fixed
# sizes (GPT-2 small at the seed's B=4, T=512). The first cell says where the stored outputs were
# measured.

# %% tags=["nbval-ignore-output"]
# %matplotlib inline
from tutorial_lib import settings
from tutorial_lib.guide.report import recorded
from tutorial_lib.lessons import decision
from tutorial_lib.lessons import explorer as explore
from tutorial_lib.lessons import roofline as lesson
from tutorial_lib.lessons.common import env_summary, format_rows, show_source
from tutorial_lib.measure import ceilings, cost, records, roofline
from tutorial_lib.measure import traffic as TR
from tutorial_lib.measure.memory import memory_breakdown
from tutorial_lib.model import get_config
from tutorial_lib.sizes import get_sizes

DEVICE = settings.get_device()
SIZES = get_sizes()  # the size profile: TUTORIAL_PROFILE=smoke|cpu|gpu
RS = SIZES.roofline  # the ceilings' sizes, the profiled step, the whole-step checks
DTYPE = settings.dtype_name(settings.default_dtype(DEVICE))
print(env_summary(DEVICE))
print(f"roofline sizes: mm {list(RS.mm_sizes)}, stream {RS.stream_bytes // 2**20} MiB; profiled step "
      f"{RS.preset} B={RS.batch} T={RS.seq_len}; checks {list(RS.checks)} with {list(RS.backends)}")

# %% [markdown]
# ## 1. The idea: two roofs
#
# A kernel has to do its arithmetic *and* move its data between memory and the cores. A machine
# can do at most **P** FLOP/s (its peak) and move at most **β** bytes/s (its bandwidth), so a kernel
# with F FLOPs and Q bytes takes at least
#
# $$t \;\ge\; \max\left(\frac{F}{P},\; \frac{Q}{\beta}\right).$$
#
# Divide F by t: the FLOP/s a kernel can reach is min(P, I · β), where **I = F / Q** is its
# *arithmetic intensity*. On log-log axes that is a roof — a slope for memory-bound kernels, flat
# for compute-bound ones — with a corner at the *ridge point* I = P / β. A large matmul does
# O(n³) FLOPs on O(n²) bytes: far to the right. An elementwise add does one FLOP per 12 bytes: far
# to the left, and no faster matmul unit will help it. Eager PyTorch adds a fixed cost per operator
# (Python, the dispatcher, a kernel launch), so the model this notebook tests is
#
# $$t_{\text{step}} = \sum_{\text{kernels}} \max\left(\frac{F_k}{P}, \frac{Q_k}{\beta}\right) + n_{\text{kernels}} \cdot t_{\text{op}}.$$
#
# Here are three operations on an H200's datasheet roofs (*spec*, not measured): a 4096 × 4096
# bf16 matmul, an elementwise add of two 64 Mi-element bf16 tensors, and GPT-2 small's fp32
# log-softmax over the vocabulary at B=4, T=512 (read the logits, write the log-probabilities).

# %%
h200 = ceilings.spec_ceilings("NVIDIA H200", "bfloat16")
print(h200.describe())
n, m, NV = 4096, 64 * 2**20, 4 * 512 * 50257
examples = [lesson.predicted_point(2 * n**3, 3 * 2 * n * n, h200, "mm 4096^3 (bf16)"),
            lesson.predicted_point(m, 3 * 2 * m, h200, "add, 64 Mi elements (bf16)"),
            lesson.predicted_point(5 * NV, 2 * 4 * NV, h200, "log-softmax over 50,257 (fp32)")]
for p in examples:
    print(f"  {p['label']:32s} intensity {p['intensity']:10,.2f} FLOP/B -> at most "
          f"{p['achieved_flops'] / 1e12:8,.2f} TFLOP/s, {p['predicted_ms']:.4f} ms")
lesson.roofline_figure([], h200, extra=examples, ylabel="attainable FLOP/s (at the roof)", title=lesson.figure_title(
    "Three operations on datasheet roofs (spec, not a measurement)", "NVIDIA H200", "bfloat16",
    "mm 4096^3, add 64 Mi elements, log-softmax B=4 T=512 V=50257"))

# %% [markdown]
# The matmul is compute-bound; the add and the log-softmax sit on the slope, more than two orders of
# magnitude below the peak — and the log-softmax is a real part of a GPT-2 training step.
#
# ## 2. The implementation, from the library
#
# The library's one analytic model, `tutorial_lib.measure.cost`, lists for every component of a
# training step (embedding, the attention's projections, RoPE, core and output, the MLP's three
# parts, the norms, the LM head, the loss, the residual adds and AdamW), forward and backward, **the
# kernels the eager implementation launches**, each with its matmul FLOPs and the bytes it must move
# at least: its inputs read once, its outputs written once. The FLOP counts of notebook 01, the
# cost explorer and the decision tree are these kernels' FLOPs; the memory is the same model's
# count of what autograd keeps. `tutorial_lib.measure.roofline` turns a kernel into time on a
# machine's ceilings — and names what bounds it, by the larger of its two times:

# %%
show_source(roofline.roof_seconds)
show_source(roofline.kernel_bound)

# %% [markdown]
# A Linear layer is a forward matmul and two backward matmuls (the weight's gradient and the
# input's); under autocast each forward also casts its fp32 weight to bf16, and backward casts the
# gradients back:

# %%
show_source(cost.linear_kernels)

# %% [markdown]
# And PyTorch's RMSNorm is not one kernel but six in forward (x², mean, + ε, rsqrt, ×, × weight) and
# thirteen in backward. The model's rows for GPT-2 small at B=4, T=512 (fp32), per component and
# phase — bytes, kernels, and intensity:

# %%
small = get_config("gpt2_small")
rows = cost.step_kernels(small, 4, 512, "float32")
print(format_rows([{"component": r.scope, "phase": r.phase, "GFLOP": r.flops / 1e9, "MB moved": r.bytes / 1e6,
                    "kernels": r.n_kernels, "FLOP/byte": r.intensity} for r in rows],
                  formats={"GFLOP": "{:,.1f}", "MB moved": "{:,.1f}", "FLOP/byte": "{:,.2f}"}))
print(f"total: {sum(r.flops for r in rows) / 1e12:.3f} TFLOP, {sum(r.bytes for r in rows) / 1e9:.2f} GB, "
      f"{sum(r.n_kernels for r in rows):,} kernels per training step")

# %% [markdown]
# ## 3. Is the model right? Checked against PyTorch itself
#
# Two independent truths. `measure.traffic.TrafficCounter` is a `TorchDispatchMode`: it sees every
# ATen operator a real training step runs — forward, backward (autograd's operators are dispatched
# too) and the optimizer — and records the size of each one's input and output tensors, charged to
# the component whose forward created it. And the memory lesson's saved-tensor hooks see every
# tensor autograd keeps for backward. At a tiny size, for several configurations and both dtypes:

# %%
show_source(TR.kernel_bytes)

# %%
checks = [({}, "float32"), ({"attn_backend": "eager", "n_kv_head": 2}, "float32"), ({}, "bfloat16"),
          ({"mlp": "swiglu", "norm": "layernorm", "bias": True, "pos": "learned"}, "bfloat16")]
for changes, dt in checks:
    cfg = get_config("tiny", **changes)
    counted = TR.count_step_traffic(cfg, 3, 10, dtype=dt).traffic
    model = {(r.scope, r.phase): r for r in cost.step_kernels(cfg, 3, 10, dt)}
    same = all((model[k].read, model[k].write, model[k].n_kernels) == (t.read, t.written, t.kernels)
               for k, t in counted.items()) and set(model) == set(counted)
    saved = cost.activation_bytes(cfg, 3, 10, dt) == memory_breakdown(cfg, 3, 10, device="cpu", dtype=dt).activations_by_component
    print(f"{cfg.describe().split(': ')[1]:55s} {dt:9s} kernels and bytes: {'exact' if same else 'DIFFER'}; "
          f"saved for backward: {'exact' if saved else 'DIFFER'} ({len(counted)} components x phases)")

# %% [markdown]
# (tests/test_roofline.py checks twelve configurations this way.)
#
# ## 4. This machine's ceilings, measured
#
# `tutorial_lib.measure.ceilings` has one probe and one rule per ceiling:
#
# - **peak**: `torch.mm` on square matrices in the compute dtype; the best size's FLOP/s;
# - **bandwidth**: STREAM-style copy and add on arrays far larger than the caches, into buffers that
#   already exist; the better of the two;
# - **first touch** (CPU only): allocate and fill a tensor of at least 32 MiB. By default glibc gives
#   such allocations their own fresh pages every time, and the first write to each page faults — so
#   in eager PyTorch, which allocates every output, the big outputs (logits, the embedding's gradient,
#   AdamW's temporaries) pay that. `tutorial_lib` has glibc keep freed memory instead
#   (`tutorial_lib.cpu_memory`; notebook 01 measures both), and then this probe, the same
#   allocation, runs at about the warm rate. The model charges first touch as a **term of its own**:
#   the extra time of a fresh fill over a warm fill of the same size, never a roof and never what
#   labels a kernel;
# - **overhead**: a tiny `torch.add`, repeated — what every operator pays before doing any work.
#
# Every probe runs once per round, in turn, for several rounds; each ceiling is the median of the
# rounds, and one whose rounds spread more than 25 % is flagged **unstable** — on a shared virtual
# machine the first-touch rate of memory given back to the system moves more than tenfold within
# minutes (the hypervisor takes freed pages back): the reason `tutorial_lib` keeps it.

# %% tags=["nbval-ignore-output"]
probes = lesson.lesson_probes(DEVICE, RS)
ceil = lesson.lesson_ceilings(DEVICE, RS)
print(ceil.describe())
print(format_rows(lesson.ceiling_rows(ceil)))
print(f"unstable here: {', '.join(ceil.unstable()) or 'none'}")
spec = ceilings.spec_ceilings(settings.device_name(DEVICE), DTYPE) if DEVICE.type == "cuda" else None
if spec is not None:
    print(f"datasheet: {spec.describe()}; measured peak = {ceil.peak_flops / spec.peak_flops:.0%} of it, "
          f"bandwidth {ceil.bandwidth / spec.bandwidth:.0%}")

# %% [markdown]
# ## 5. A training step on the roofline
#
# Now a real step, measured: time it in the same rounds as the ceilings' probes, profile it per
# component and phase (`measure.profile.profile_step`, scaled to the measured time), and place every
# component at its intensity (from the model) and its achieved FLOP/s (measured). Marker size is the
# component's share of the step; circles are forward, triangles backward, the square is AdamW;
# the largest are numbered, and the key beside the figure names them. Components with no matrix
# multiply are placed by an estimate of their elementwise FLOPs.

# %% tags=["nbval-ignore-output"]
step_cfg = get_config(RS.preset)
pp = lesson.profile_points(step_cfg, RS.batch, RS.seq_len, probes, DEVICE, steps=SIZES.step.profile_steps,
                           min_run_time=RS.min_run_time, rounds=RS.rounds)
pts = sorted(pp["points"], key=lambda p: -p["measured_ms"])
chk = pp["check"]
print(f"{RS.preset}, B={RS.batch}, T={RS.seq_len}, train step, {chk['dtype']}: measured {chk['measured_ms']:,.1f} ms; "
      f"the roofline, from the ceilings of the same rounds, predicted {chk['roofline_ms']:,.1f} ms "
      f"(per-round error {lesson.format_error(chk['roofline_error'])}, range "
      f"{lesson.format_error(chk['roofline_error_min'])} to {lesson.format_error(chk['roofline_error_max'])})")
print(format_rows([{"component": p["scope"], "phase": p["phase"], "measured ms": p["measured_ms"],
                    "predicted ms": p["predicted_ms"], "of it first touch": p["first_touch_ms"],
                    "FLOP/byte": p["intensity"], "achieved GFLOP/s": p["achieved_flops"] / 1e9,
                    "of its roof": p["achieved_flops"] / p["roof_flops"], "bound": p["bound"]} for p in pts],
                  formats={"measured ms": "{:,.2f}", "predicted ms": "{:,.2f}", "of it first touch": "{:,.2f}",
                           "FLOP/byte": "{:,.2f}", "achieved GFLOP/s": "{:,.2f}", "of its roof": "{:.0%}"}))

# %% tags=["nbval-ignore-output"]
docs = records.load_all()
gpu_recorded = []
for doc in docs:
    if records.device_kind(doc["meta"].get("device", "")) == "cuda" and ceilings.doc_ceilings(doc):
        rp = [r for r in doc["rows"] if r.get("kind") == "roofline_points"]
        if rp:
            gpu_recorded.append((f"recorded {doc['meta'].get('device_name')}", rp, ceilings.doc_ceilings(doc)))
print(f"recorded GPU roofline points: {len(gpu_recorded)} file(s)" +
      ("" if gpu_recorded else " -- none yet: the guide suite's roofline section records them on a GPU"))
lesson.roofline_figure(pts, pp["ceilings"], recorded=gpu_recorded, title=lesson.figure_title(
    "Components of a training step on the roofline", settings.device_name(DEVICE), chk["dtype"],
    f"{RS.preset} B={RS.batch} T={RS.seq_len}"))

# %% [markdown]
# ## 6. Which components are memory-bound?
#
# The model's verdict per component: the larger of its kernels' compute time and memory time, or
# its per-operator overhead when that is larger still. First touch is shown beside it but never
# decides the label — a large matmul that writes a fresh 400 MB output is still compute-bound. Beside
# each verdict, its share of the measured time and of the FLOPs:

# %% tags=["nbval-ignore-output"]
total_ms = sum(p["measured_ms"] for p in pts)
matmul = {(r.scope, r.phase): r.flops for r in pp["prediction"].rows}
total_fl = sum(matmul.values()) or 1
bound = {}
for p in pts:
    bound.setdefault(p["bound"], []).append(p)
for kind in ("memory", "compute", "overhead"):
    group = bound.get(kind, [])
    names = ", ".join(f"{p['scope']} {p['phase'][:3]}" for p in group[:8])
    print(f"{kind}-bound: {len(group)} component-phases, {sum(p['measured_ms'] for p in group) / total_ms:.0%} of the "
          f"measured time, {sum(matmul.get((p['scope'], p['phase']), 0) for p in group) / total_fl:.0%} of the "
          f"matmul FLOPs{': ' + names if names else ''}")
ft = sum(p["first_touch_ms"] for p in pts)
print(f"first touch, shown apart: {ft:,.1f} ms of the predicted step (page faults writing fresh outputs)")

# %% [markdown]
# ## 7. How the earlier lessons move a point
#
# - **Eager → flash (03)**: the same FLOPs on the causal half, but the T × T scores and probabilities
#   never reach memory. Fewer bytes: the point moves **right** (and up).
# - **A sliding window (06)**: only the pairs inside the window are computed — fewer FLOPs *and*
#   fewer bytes than eager attention, so the point moves left or right depending on which drops more,
#   and the time drops with both.
# - **GQA at decoding time (02)**: one new token attends to a cache of K/V; the FLOPs stay, the bytes
#   of the cache shrink by n_head / n_kv_head: the point moves **right** by that factor.
#
# Measured here for the attention core alone (forward + backward; bytes counted from the dispatched
# operators):

# %% tags=["nbval-ignore-output"]
T_move, W_move = SIZES.sweep.seq_lens[-1], SIZES.suite.window
H_move, D_move = SIZES.window.n_head, SIZES.window.head_dim
moves = lesson.attention_moves(T_move, W_move, batch_size=1, n_head=H_move, head_dim=D_move, device=DEVICE,
                           min_run_time=SIZES.step.min_run_time)
print(format_rows([{"backend": r["backend"] + (f" W={r['window']}" if r["window"] else ""), "GFLOP": r.get("flops", 0) / 1e9,
                    "MB moved": r.get("bytes", 0) / 1e6, "kernels": r.get("kernels"), "FLOP/byte": r.get("intensity"),
                    "ms": r.get("ms"), "error": r["error"]} for r in moves],
                  formats={"GFLOP": "{:,.3f}", "MB moved": "{:,.1f}", "FLOP/byte": "{:,.2f}", "ms": "{:,.2f}"}))
extra = [dict(r, label=r["backend"] + (f" W={r['window']}" if r["window"] else "")) for r in moves if not r["error"]]
names = [e["backend"] for e in extra]
if "eager" in names:  # arrows from eager attention to flash and to the window
    extra += [dict(extra[names.index("eager")], label="", arrow_to=names.index(t)) for t in ("sdpa", "local")
              if t in names]
lesson.roofline_figure([], pp["ceilings"], extra=extra, title=lesson.figure_title(
    "Attention core, fwd+bwd: eager -> flash -> window", settings.device_name(DEVICE), DTYPE,
    f"B=1 H={H_move} T={T_move} D={D_move} W={W_move}"))

# %% [markdown]
# And decoding (analytic, GPT-2 small's attention core for one new token against a cache of
# 2,048 tokens, bf16): the FLOPs stay, the bytes shrink.

# %%
dec = lesson.decode_points(small, 2048, (12, 4, 1), batch_size=1, dtype="bfloat16")
for p in dec:
    q = lesson.predicted_point(p["flops"], p["bytes"], h200, p["label"])
    print(f"{p['label']:6s} {p['flops'] / 1e6:7,.1f} MFLOP, {p['bytes'] / 1e6:6,.2f} MB -> {p['intensity']:5.2f} FLOP/byte; "
          f"on an H200's datasheet roofs at least {q['predicted_ms'] * 1e3:6.2f} us per token")

# %% [markdown]
# ## 8. Predicted, then measured: whole training steps
#
# The real test of a model is a prediction made before the measurement — on the same machine, in
# the same minute. This machine's speed drifts by tens of percent within minutes, so a prediction
# from ceilings measured at one moment and a step measured at another are not comparable. Each
# round therefore times the ceilings' probes and every checked step in turn, and predicts each step
# from *that round's* ceilings; the error is the median of the per-round errors, with their range.
# Beside it, the FLOP-only model (every matmul FLOP at the same round's peak, nothing else).

# %% tags=["nbval-ignore-output"]
checked = lesson.step_checks(RS.checks, probes, DEVICE, min_run_time=RS.min_run_time, rounds=RS.rounds,
                             backends=RS.backends)
live = checked["rows"]
print(f"ceilings of these rounds: {checked['ceilings'].describe()}")
print(format_rows([{"step": r["variant"], "rounds": r.get("rounds"), "measured ms": r.get("measured_ms"),
                    "roofline ms": r.get("roofline_ms"), "roofline error": lesson.format_error(r.get("roofline_error")),
                    "range": (f"{lesson.format_error(r['roofline_error_min'])} to "
                              f"{lesson.format_error(r['roofline_error_max'])}" if r.get("roofline_error") is not None
                              else None),
                    "FLOP-only error": lesson.format_error(r.get("flop_only_error")), "error": r.get("error")}
                   for r in live], formats={"measured ms": "{:,.1f}", "roofline ms": "{:,.1f}"}))
for r in live:
    if r.get("roofline_error") is None:
        continue
    ok = r["roofline_error_max"] <= lesson.GOAL and r["roofline_error_min"] >= -lesson.GOAL
    better = abs(r["roofline_error"]) < abs(r["flop_only_error"])
    print(f"{r['variant']}: roofline {lesson.format_error(r['roofline_error'])} "
          f"({'every round within' if ok else 'not every round within'} the ±{lesson.GOAL:.0%} goal), FLOP-only "
          f"{lesson.format_error(r['flop_only_error'])} -> the roofline is {'closer' if better else 'NOT closer'}")

# %% [markdown]
# ## 9. Against every measurement on record
#
# The same two predictions beside every step time in `results/`: the guide suite's files, each
# step predicted from the ceilings recorded in the same file (a file from a machine whose ceilings
# were never recorded cannot be predicted, and says so), and the H200 training histories, predicted
# from the datasheet, which states no per-operator overhead (a lower bound, with the overhead per
# launch that would close the gap). **These errors are not measurements of the model the way
# section 8's are**: a recorded step and the recorded ceilings come from different sections of a
# run, minutes apart, so each error also holds how far the machine drifted in between — one reason
# why their summary differs from section 8's same-round errors. The table is the guide's own
# (`OPTIMIZATION_GUIDE.md`, computed the same way from the same files), so the two never disagree.

# %% tags=["nbval-ignore-output"]
recorded("roofline.errors")

# %% [markdown]
# ## 10. The explorer and the decision tree now predict with it
#
# `lessons.explorer.predict_cost` (the cost explorer of notebook 99) predicts time per component with
# this model on the device's ceilings, and scales by a measurement only when it is comparable work —
# the same model, dtype and size class, or a reduced size "Measure now" measured for exactly those
# settings — saying which one and how far apart. `lessons.decision`
# ranks changes for speed by the roofline's step-time ratio. On an H200's datasheet roofs (no
# measured GPU ceilings are needed for this cell, so its output is the same everywhere):

# %%
s = explore.ExplorerSettings(preset="gpt2_small", seq_len=512, batch_size=4, dtype="bfloat16")
p = explore.predict_cost(s, device_type="cuda", ceilings=h200)
print(p.summary())
print(p.basis)
print(f"FLOP-only: {p.flop_only_ms:,.2f} ms; largest predicted time shares: " + ", ".join(
    f"{k} {v:.0%} (FLOPs {p.flop_share.get(k, 0):.0%})" for k, v in sorted(p.time_share.items(), key=lambda kv: -kv[1])[:5]))
for line in decision.recommend(1024, "cuda", "speed", results=[]).lines()[:4]:
    print(line)

# %% [markdown]
# ## Summary

# %% tags=["nbval-ignore-output"]
lines = [f"- Ceilings here: {ceil.describe()}" + (f"; unstable: {', '.join(ceil.unstable())}." if ceil.unstable()
                                                  else ".")]
mem = bound.get("memory", [])
lines.append(f"- Memory-bound components took {sum(p['measured_ms'] for p in mem) / total_ms:.0%} of the measured "
             f"{RS.preset} step: " + ", ".join(sorted({p['scope'] for p in mem})) + ".")
for r in live:
    if r.get("roofline_error") is not None:
        lines.append(f"- {r['variant']}: roofline {lesson.format_error(r['roofline_error'])} (rounds "
                     f"{lesson.format_error(r['roofline_error_min'])} to {lesson.format_error(r['roofline_error_max'])}), "
                     f"FLOP-only {lesson.format_error(r['flop_only_error'])}, same rounds.")
print("\n".join(lines))

# %% [markdown]
# - Time is FLOPs **and** bytes **and** launches. FLOPs alone predict the matmul-heavy components
#   and nothing else; the loss, the norms, the activations, the embedding's gradient and AdamW are
#   bandwidth problems, and on a CPU whose freed memory goes back to the system the largest of them
#   are first-touch problems (the reason `tutorial_lib` keeps it).
# - The bytes of a component are countable exactly: the model's count is tested against every
#   operator PyTorch dispatches and every tensor autograd saves.
# - Fusing removes bytes (flash attention's point moves right); GQA removes bytes at decoding time;
#   a window removes FLOPs and bytes. Only compute-bound components gain from a faster matmul unit.
# - A datasheet has no overhead figure: on a GPU, what the roofs leave unexplained is mostly the
#   cost of launching many small kernels from eager Python — which is what `torch.compile` and CUDA
#   graphs remove.
#
# ## Exercises
#
# 1. **The roofline time of a kernel** (auto-checked): write `my_roofline_time(flops, nbytes,
#    peak_flops, bandwidth)`, the least time in seconds a kernel can take.

# %%
def my_roofline_time(flops, nbytes, peak_flops, bandwidth):
    raise NotImplementedError  # your code here


lesson.check_roofline_time(my_roofline_time)

# %% [markdown]
# The checker names the usual slips — adding the two times instead of taking the larger:

# %%
lesson.check_roofline_time(lambda f, b, p, w: f / p + b / w)

# %% [markdown]
# 2. **Predict a component from its intensity.** Take the loss's forward pass from section 5: its
#    bytes and elementwise FLOPs are in `pts`. Predict its time with your function and this
#    machine's ceilings, then compare with the measured time. (On a CPU its outputs are larger than
#    32 MiB: the library adds their first-touch term, `first_touch_ms`, and each operator's overhead.)

# %% tags=["nbval-ignore-output"]
loss_fwd = next((p for p in pts if (p["scope"], p["phase"]) == ("loss", "forward")), None)
try:
    c = pp["ceilings"]
    guess = my_roofline_time(loss_fwd["flops"], loss_fwd["bytes"], c.peak_flops, c.bandwidth)
    print(f"your prediction {guess * 1e3:,.2f} ms; measured {loss_fwd['measured_ms']:,.2f} ms; "
          f"the library's (first touch included) {loss_fwd['predicted_ms']:,.2f} ms")
except NotImplementedError:
    print(f"write my_roofline_time first; the measured loss forward took {loss_fwd['measured_ms']:,.2f} ms")

# %% [markdown]
# 3. **Where is the ridge?** With the ceilings measured above, which GPT-2 components are left of the
#    ridge point at B=1, T=256, and which move right of it at B=16? (Use `cost.step_kernels` and
#    `Component.intensity`; the weights are read once per step, the activations grow with B·T.)
# 4. **The GPU gap.** Section 9's H200 rows leave tens of µs per kernel launch unexplained. Count the
#    kernels of that step (`roofline.predict_step(...).kernels`), and estimate what removing half of them
#    (fusing the elementwise chains, as `torch.compile` does) would save.
