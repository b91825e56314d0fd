"""The LM-head lesson (08): the seed's blind spot -- the head, the loss, and the (B, T, V) logits.

Sizes: ``sizes.LMHead`` (the whole step at the seed's setting; the head and loss alone against
chunk size, T and V). The implementation is ``tutorial_lib.loss`` (wired into the model through
``GPTConfig.loss_impl``); this module measures it.

- ``VARIANTS`` / ``variant_configs``: the full logits, the chunked loss (recompute) and Liger's
  chunked loss (gradients in forward), as config changes.
- ``logits_bytes`` / ``head_share_rows``: on paper -- the logits' bytes and the head's share of
  the FLOPs, for any model, T and V ("when it matters").
- ``head_loss_sweep``: the head + loss alone (hidden states -> loss -> gradients), timed in
  interleaved rounds, with the exact bytes it keeps for backward (and the CUDA peak).
- ``step_payoff``: whole training steps, full vs chunked (``common.measure_variants``), with the
  exact memory of each (``measure.memory.memory_breakdown``).
- ``share_rows``: the measured time shares of the head and the loss beside the seed's claim.
- ``sweep_figure``, ``payoff_figure``: the pictures.
- ``LargestTensor``: the largest tensor any op made (proof that no (N, V) tensor exists).
- ``check_chunked_loss``: the exercise's checker.
"""
from __future__ import annotations

import dataclasses
import gc
import statistics
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from tutorial_lib import claims, settings
from tutorial_lib.lessons.common import CheckResult, call_checked, legend_below, measure_variants
from tutorial_lib.loss import chunked_linear_cross_entropy
from tutorial_lib.measure import cost
from tutorial_lib.measure.memory import memory_breakdown, saved_bytes
from tutorial_lib.measure.roofline import speedup_ceiling
from tutorial_lib.measure.timing import SWEEP_ERRORS, error_text, free_memory, time_fn
from tutorial_lib.model import GPTConfig, get_config
from tutorial_lib.sizes import LMHead
from tutorial_lib.speedups import Speedup

FULL, CHUNKED, LIGER = "full logits", "chunked (recompute)", "chunked (Liger: grads in forward)"
VARIANTS = {FULL: {"loss_impl": "full"}, CHUNKED: {"loss_impl": "chunked"},
            LIGER: {"loss_impl": "chunked_liger"}}
IMPL_LABEL = {v["loss_impl"]: k for k, v in VARIANTS.items()}
# the chunked loss the other lessons (07, the decision tree, the guide's before/after) use: the
# recompute version keeps the least memory (see the notebook's measurements for its time)
DEFAULT_IMPL = "chunked"
HEAD_GROUP = "head + loss"  # memory_breakdown's group for the lm_head and loss components


def variant_configs(base: GPTConfig, chunk: int, variants: Mapping[str, dict] = VARIANTS) -> Dict[str, GPTConfig]:
    """{label: base with that loss_impl and loss_chunk=chunk}."""
    return {label: base.replace(loss_chunk=chunk, **ch) for label, ch in variants.items()}


# ---- on paper ----------------------------------------------------------------------------------
def logits_bytes(batch_size: int, seq_len: int, vocab: int, bytes_per_element: int = 4) -> int:
    """Bytes of one (B, T, V) logits tensor: 4 * 512 * 50,257 * 4 = 411,705,344 for the seed's setting."""
    return batch_size * seq_len * vocab * bytes_per_element


def head_share_rows(configs: Mapping[str, GPTConfig], batch_size: int, seq_len: int) -> List[dict]:
    """Per config: the head's share of the matmul FLOPs (forward, and forward + backward of a
    full-logits step, visible attention pairs), and the logits' bytes in fp32 -- from ``measure.cost``."""
    rows = []
    for label, cfg in configs.items():
        cfg = cfg.replace(block_size=max(cfg.block_size, seq_len), loss_impl="full")
        fwd = cost.flops_by_scope(cfg, batch_size, seq_len, "forward", "visible")
        bwd = cost.flops_by_scope(cfg, batch_size, seq_len, "backward", "visible")
        rows.append({"model": label, "n_layer": cfg.n_layer, "n_embd": cfg.n_embd,
                     "vocab": cfg.padded_vocab_size, "B": batch_size, "T": seq_len,
                     "head_fwd_share": fwd["lm_head"] / sum(fwd.values()),
                     "head_step_share": (fwd["lm_head"] + bwd["lm_head"]) / (sum(fwd.values()) + sum(bwd.values())),
                     "logits_bytes": logits_bytes(batch_size, seq_len, cfg.padded_vocab_size)})
    return rows


def when_it_matters(batch_size: int = 4, seq_len: int = 512) -> List[dict]:
    """``head_share_rows`` for GPT-2 small, the 4-layer gpt2_mini, and GPT-2 small's body with the
    larger vocabularies of newer models (Llama 3: 128,256; Gemma: 262,144) -- and at longer T."""
    small, mini = get_config("gpt2_small"), get_config("gpt2_mini")
    configs = {"gpt2_small (V=50,257)": small, "gpt2_mini (4 layers, d384)": mini,
               "gpt2_small body, V=128,256": small.replace(vocab_size=128256),
               "gpt2_small body, V=262,144": small.replace(vocab_size=262144)}
    rows = head_share_rows(configs, batch_size, seq_len)
    rows += head_share_rows({"gpt2_small (V=50,257)": small}, batch_size // 4 or 1, 4 * seq_len)
    return rows


# ---- the head + loss alone ---------------------------------------------------------------------
@dataclass
class HeadPoint:
    """The head + loss alone at one size: hidden (N, C) -> loss -> gradients of hidden and weight."""
    impl: str  # "full", "chunked" or "chunked_liger"
    tokens: int  # N = B x T
    n_embd: int
    vocab: int  # rows of the head's weight (padded vocabularies included)
    chunk: Optional[int]  # tokens per chunk (None for the full path)
    device: str
    device_name: str
    dtype: str
    logits_bytes: int  # one (N, V) logits tensor in this dtype: what the chunked path never makes
    saved_bytes: Optional[int] = None  # exact bytes kept for backward (inputs excluded)
    peak_bytes: Optional[int] = None  # CUDA: allocator peak above the inputs over fwd + bwd
    median_ms: Optional[float] = None  # median over rounds of each round's median, fwd + bwd
    min_ms: Optional[float] = None  # the spread of the rounds' medians
    max_ms: Optional[float] = None
    round_ms: List[float] = dataclasses.field(default_factory=list)  # each round's median, in round order
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str:
        return IMPL_LABEL[self.impl] + ("" if self.chunk is None else f", chunk {self.chunk}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["label"] = self.label
        return d


def head_loss_fn(impl: str, chunk: int) -> Callable:
    """The loss of ``impl`` as a function of (hidden, weight, targets): the model's last lines."""
    if impl == "full":
        return lambda h, w, t: F.cross_entropy(F.linear(h, w).float(), t, ignore_index=-1)
    return lambda h, w, t: chunked_linear_cross_entropy(h, w, t, chunk, grad_in_forward=impl == "chunked_liger")


def _cuda_peak(fn, dev) -> int:
    settings.synchronize(dev)
    base = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    fn()
    settings.synchronize(dev)
    return int(torch.cuda.max_memory_allocated(dev) - base)


def head_loss_sweep(points: Sequence[Mapping], rounds: int = 3, min_run_time: Optional[float] = None,
                    device=None, dtype=None, measure_time: bool = True) -> List[HeadPoint]:
    """The head + loss alone at each point ({"impl", "tokens", "n_embd", "vocab", "chunk"}):
    exact saved bytes (``measure.memory.saved_bytes``), the CUDA peak, and forward + backward time
    in ``rounds`` interleaved rounds (every point timed once per round -- ``time_fn`` for at least
    ``min_run_time`` seconds -- so load that comes and goes touches them alike; the median and the
    range are over the rounds). dtype: None = bf16 autocast on CUDA, fp32 elsewhere. Failures (OOM)
    are rows with ``error``."""
    dev, dt = settings.resolve(device, dtype)
    name = settings.device_name(dev)
    esize = torch.empty((), dtype=dt).element_size()
    rows, runs = [], {}
    for i, p in enumerate(points):
        impl, N, Cw, V = p["impl"], p["tokens"], p["n_embd"], p["vocab"]
        chunk = None if impl == "full" else p["chunk"]
        row = HeadPoint(impl, N, Cw, V, chunk, str(dev), name, settings.dtype_name(dt),
                        logits_bytes=N * V * esize)
        rows.append(row)
        try:
            g = torch.Generator().manual_seed(0)
            x = torch.randn(N, Cw, generator=g).to(dev).requires_grad_()
            w = (0.02 * torch.randn(V, Cw, generator=g)).to(dev).requires_grad_()
            t = torch.randint(0, V, (N,), generator=g).to(dev)
            loss_fn = head_loss_fn(impl, chunk or 1)

            def forward(x, w, t, loss_fn=loss_fn):
                with settings.autocast(dev, dt):
                    return loss_fn(x * 1.0, w, t)  # x * 1: a non-leaf hidden state, as in the model

            def run(x=x, w=w, t=t, forward=forward):
                x.grad = w.grad = None
                forward(x, w, t).backward()

            row.saved_bytes = int(saved_bytes(forward, x, w, t))  # the inputs themselves are not counted
            run()  # untimed first call: allocations, thread pools
            if dev.type == "cuda":
                row.peak_bytes = _cuda_peak(run, dev)
            runs[i] = (run, [])
        except SWEEP_ERRORS as e:
            row.error = error_text(e)
            free_memory(dev)
    if measure_time:
        for _ in range(rounds):
            for i, (run, times) in runs.items():
                if rows[i].error:
                    continue
                try:
                    # warm already (the untimed call above): one measurement per round
                    times.append(time_fn(run, dev, min_run_time=min_run_time, warmup=0,
                                         min_measurements=1).median_ms)
                except SWEEP_ERRORS as e:
                    rows[i].error = error_text(e)
        for i, (_, times) in runs.items():
            if times and not rows[i].error:
                rows[i].median_ms = statistics.median(times)
                rows[i].min_ms, rows[i].max_ms = min(times), max(times)
                rows[i].round_ms = list(times)
    runs.clear()
    free_memory(dev)
    return rows


def padded_speedup(rows: Sequence[HeadPoint], impl: str, vocab: int = 50257, padded: int = 50304
                   ) -> Optional[Speedup]:
    """The head + loss with the ``padded`` vocabulary over the same with ``vocab`` (> 1: padding
    pays), from rows timed in the same rounds (``head_loss_sweep``), as a ``speedups.Speedup``. Its
    ceiling is the ratio of the two vocabularies: padding adds rows, so by its FLOPs and bytes it
    can only cost -- a gain above that comes from a better-shaped kernel, which the cost model does
    not describe. None when either was not measured."""
    by = {(r.impl, r.vocab): r for r in rows if r.ok and r.round_ms}
    a, b = by.get((impl, vocab)), by.get((impl, padded))
    if a is None or b is None:
        return None
    return Speedup.from_times(a.round_ms, b.round_ms, ceiling=vocab / padded)


def chunk_points(s: LMHead, impls: Sequence[str] = ("full", "chunked", "chunked_liger")) -> List[dict]:
    """The full path once, and each chunked variant at every chunk size of ``s.chunks``."""
    base = {"tokens": s.tokens, "n_embd": s.n_embd, "vocab": s.vocab}
    out = [dict(base, impl="full", chunk=None)] if "full" in impls else []
    return out + [dict(base, impl=i, chunk=c) for i in impls if i != "full" for c in s.chunks]


def scaling_points(s: LMHead, axis: str, impls: Sequence[str] = ("full", "chunked")) -> List[dict]:
    """Points along T (``s.seq_lens`` tokens at ``s.vocab``) or V (``s.vocabs`` at ``s.tokens``),
    each variant at the lesson's chunk size."""
    if axis not in ("T", "V"):
        raise ValueError(f"axis={axis!r} is not one of ['T', 'V']")
    grid = ([{"tokens": T, "vocab": s.vocab} for T in s.seq_lens] if axis == "T"
            else [{"tokens": s.tokens, "vocab": V} for V in s.vocabs])
    return [dict(g, n_embd=s.n_embd, impl=i, chunk=s.chunk) for i in impls for g in grid]


# ---- the whole step --------------------------------------------------------------------------
def step_payoff(s: LMHead, device=None, dtype=None, variants: Mapping[str, dict] = VARIANTS,
                rounds: Optional[int] = None, measure_time: bool = True, memory: bool = True) -> List[dict]:
    """Training steps (fwd + bwd + AdamW) of ``s.preset`` at length ``s.seq_len`` with each loss:
    the exact memory of one step at ``s.batch`` (saved activations, the head + loss's share of them,
    and on CUDA the allocator's peak), and the time at ``s.timed_batch`` in interleaved rounds --
    ``speedup_of``, a ``speedups.Speedup`` over the first variant (median per-round ratio, range,
    rounds, ceiling). One dict per variant; failures are rows with ``error``."""
    dev, dt = settings.resolve(device, dtype)
    configs = variant_configs(get_config(s.preset), s.chunk, variants)
    rows = {label: {"variant": label, "loss_impl": cfg.loss_impl, "config_fields": cfg.to_dict(),
                    "batch_size": s.batch, "timed_batch_size": s.timed_batch, "seq_len": s.seq_len,
                    "error": None}
            for label, cfg in configs.items()}
    for label, cfg in (configs.items() if memory else ()):
        r = rows[label]
        try:
            mb = memory_breakdown(cfg, s.batch, s.seq_len, device=dev, dtype=dt)
            r.update(activations_bytes=mb.activations_bytes,
                     head_loss_bytes=mb.activations_by_group().get(HEAD_GROUP, 0),
                     total_bytes=mb.total_bytes, peak_bytes=mb.peak_bytes,
                     device_name=mb.device_name, dtype=mb.dtype)
            del mb
        except SWEEP_ERRORS as e:
            r["error"] = error_text(e)
        gc.collect()
        free_memory(dev)
    if measure_time:
        timed = measure_variants(configs, s.timed_batch, s.seq_len, rounds=rounds or s.rounds,
                                 min_run_time=s.min_run_time, device=dev, dtype=dt, memory=False)
        base_cfg = next(iter(configs.values()))
        for t in timed:
            r = rows[t["variant"]]
            r["error"] = r["error"] or t.get("error")
            for k in ("median_ms", "tokens_per_s", "speedup", "speedup_min", "speedup_max", "times_ms",
                      "params", "device_name", "dtype"):
                if t.get(k) is not None:
                    r.setdefault(k, t[k])
            if not r["error"] and t["variant"] != next(iter(configs)):
                r["speedup_of"] = Speedup.from_row(t, ceiling=speedup_ceiling(
                    base_cfg, configs[t["variant"]], s.timed_batch, s.seq_len, t.get("dtype", "float32"), dev.type))
    base = rows[next(iter(configs))]
    for r in rows.values():
        if r.get("activations_bytes") is not None and base.get("activations_bytes") is not None:
            r["saved_vs_full_bytes"] = base["activations_bytes"] - r["activations_bytes"]
    return list(rows.values())


# ---- the seed's claim ----------------------------------------------------------------------------
def share_rows(prof) -> List[dict]:
    """The seed's "LM Head (5-8%)" (of the forward pass) beside a ``ProfileResult``: the head's
    share of the forward pass, the head's and the loss's together, and the same of the whole step."""
    fwd, step = prof.shares("forward"), prof.shares()
    # judged only at the seed's own setting (GPT-2 small, B=4, T=512): elsewhere "different setting"
    where = claims.Setting(model=prof.preset, batch=prof.batch_size, seq_len=prof.seq_len,
                      device=torch.device(prof.device).type)
    measured = [("lm_head, share of the forward pass", fwd.get("lm_head", 0.0), ""),
                ("lm_head + loss, share of the forward pass", fwd.get("lm_head", 0.0) + fwd.get("loss", 0.0),
                 "the seed's breakdown has no row for the loss"),
                ("lm_head + loss, share of the whole step (fwd + bwd + AdamW)",
                 step.get("lm_head", 0.0) + step.get("loss", 0.0), "the seed's share is of the forward pass")]
    out = []
    for what, value, note in measured:
        r = claims.compare("time.lm_head", value, note=note, where=where)
        out.append({"measured": what, "claim": r["claim"], "claimed_low": r["low"], "claimed_high": r["high"],
                    "share": value, "verdict": r["verdict"], "note": "; ".join(x for x in (note, r["why"]) if x)})
    return out


# ---- figures -----------------------------------------------------------------------------------
def chunking_figure(tokens: int = 2048, vocab: int = 50257, n_embd: int = 768, chunk: int = 256) -> Figure:
    """The idea, to scale: hidden (N x C) times the head's weight (C x V) makes the (N x V) logits
    (left); the chunked loss makes one (chunk x V) strip at a time and keeps one number per token
    (right)."""
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, chunked in zip(axes, (False, True)):
        ax.set_xlim(-0.2 * vocab - n_embd * 3, vocab * 1.05)
        ax.set_ylim(tokens * 1.12, -tokens * 0.08)
        ax.axis("off")
        ax.add_patch(Rectangle((-n_embd * 3 - 0.1 * vocab, 0), n_embd * 3, tokens, facecolor="#c7d9ee",
                               edgecolor="k"))
        ax.text(-n_embd * 1.5 - 0.1 * vocab, tokens * 1.07, f"hidden\n{tokens:,}x{n_embd}", ha="center",
                va="top", fontsize=8)
        if not chunked:
            ax.add_patch(Rectangle((0, 0), vocab, tokens, facecolor="#e6b8b8", edgecolor="k"))
            mib = tokens * vocab * 4 / 2**20
            ax.text(vocab / 2, tokens / 2, f"logits {tokens:,} x {vocab:,}\n{mib:,.0f} MiB in fp32,\n"
                    "kept (as log-softmax) for backward", ha="center", va="center", fontsize=9)
            ax.set_title("full: the whole (N, V) logits exist at once", fontsize=10)
        else:
            ax.add_patch(Rectangle((0, 0), vocab, tokens, facecolor="none", edgecolor="#999999", ls="--"))
            for s0 in range(0, tokens, chunk):
                ax.axhline(s0, xmin=0.2, color="#dddddd", lw=0.5)
            ax.add_patch(Rectangle((0, chunk), vocab, chunk, facecolor="#e6b8b8", edgecolor="k"))
            mib = chunk * vocab * 4 / 2**20
            ax.text(vocab / 2, chunk * 1.5, f"one chunk: {chunk} x {vocab:,} ({mib:,.0f} MiB), then dropped",
                    ha="center", va="center", fontsize=8)
            ax.text(vocab / 2, tokens * 0.7, f"kept: one log-sum-exp per token\n({tokens:,} numbers)",
                    ha="center", va="center", fontsize=9)
            ax.set_title(f"chunked: {-(-tokens // chunk)} chunks of {chunk} tokens, one at a time", fontsize=10)
    return fig


def sweep_figure(rows: Sequence[HeadPoint], x: str = "chunk", title: str = "") -> Figure:
    """Time (left) and bytes kept for backward (right) of the head + loss alone against ``x``
    ("chunk", "tokens" or "vocab"), one line per implementation; the full path is a line too
    (a flat reference line in a chunk sweep)."""
    if x not in ("chunk", "tokens", "vocab"):
        raise ValueError(f"x={x!r} is not one of ['chunk', 'tokens', 'vocab']")
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_t, ax_m = fig.subplots(1, 2)
    ok = [r for r in rows if r.ok]
    xs = sorted({getattr(r, x) for r in ok if getattr(r, x) is not None})
    for impl in dict.fromkeys(r.impl for r in ok):
        pts = sorted((r for r in ok if r.impl == impl), key=lambda r: getattr(r, x) or 0)
        if x == "chunk" and impl == "full" and pts and xs:  # no chunk: a reference line
            r = pts[0]
            for ax, v in ((ax_t, r.median_ms), (ax_m, r.saved_bytes / 2**20)):
                if v is not None:
                    ax.axhline(v, color="k", ls="--", lw=1, label=IMPL_LABEL[impl])
            continue
        for ax, key, scale in ((ax_t, "median_ms", 1.0), (ax_m, "saved_bytes", 2**20)):
            data = [(getattr(r, x), getattr(r, key) / scale) for r in pts if getattr(r, key) is not None]
            if data:
                ax.plot(*zip(*data), "o-", label=IMPL_LABEL[impl])
        if impl != "full" and any(r.min_ms is not None for r in pts):
            lo = [(getattr(r, x), r.min_ms, r.max_ms) for r in pts if r.min_ms is not None]
            ax_t.fill_between([p[0] for p in lo], [p[1] for p in lo], [p[2] for p in lo], alpha=0.15)
    names = {"chunk": "tokens per chunk", "tokens": "tokens N = B x T", "vocab": "vocabulary V"}
    for ax, ylabel in ((ax_t, "ms per forward + backward"), (ax_m, "MiB kept for backward")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel(names[x])
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        legend_below(ax, ncol=2)
    if x != "chunk":
        ax_m.set_yscale("log")
    r0 = rows[0] if rows else None
    stamp = (f"head + loss alone, C={r0.n_embd}" + (f", N={r0.tokens}" if x != "tokens" else "")
             + (f", V={r0.vocab:,}" if x != "vocab" else "") + f"; {r0.device_name}, {r0.dtype}") if r0 else ""
    fig.suptitle(title or stamp, fontsize=10)
    failed = sorted({f"{r.label}: {r.error.split(':')[0]}" for r in rows if not r.ok})
    if failed:
        fig.text(0.01, 0.005, "not measured -- " + "; ".join(failed), fontsize=8, va="bottom")
    return fig


def payoff_figure(rows: Sequence[Mapping], title: str = "") -> Figure:
    """The whole step per variant: ms per step with its per-round range (left), and the bytes
    saved for backward split into head + loss and the rest of the model (right)."""
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax_t, ax_m = fig.subplots(1, 2)
    labels = [r["variant"] for r in rows][::-1]
    by = {r["variant"]: r for r in rows}
    ms = [by[k].get("median_ms") or 0.0 for k in labels]
    ax_t.barh(labels, ms, color="#1f77b4")
    for i, k in enumerate(labels):
        r = by[k]
        if r.get("speedup"):
            ax_t.text(ms[i], i, f" {r['speedup']:.2f}x ({r['speedup_min']:.2f}-{r['speedup_max']:.2f})",
                      va="center", fontsize=8)
    ax_t.set_xlabel("ms per training step (speedup vs full, per-round range)")
    ax_t.set_xlim(0, max(ms + [1.0]) * 1.45)
    head = [(by[k].get("head_loss_bytes") or 0) / 2**20 for k in labels]
    rest = [((by[k].get("activations_bytes") or 0) - (by[k].get("head_loss_bytes") or 0)) / 2**20 for k in labels]
    ax_m.barh(labels, rest, color="#7f7f7f", label="rest of the model")
    ax_m.barh(labels, head, left=rest, color="#9467bd", label="head + loss")
    for i in range(len(labels)):
        ax_m.text(rest[i] + head[i], i, f" {rest[i] + head[i]:,.0f} MiB", va="center", fontsize=8)
    ax_m.set_xlabel("MiB saved for backward (exact)")
    ax_m.set_xlim(0, max([a + b for a, b in zip(rest, head)] + [1.0]) * 1.3)
    legend_below(ax_m, ncol=2)
    for ax in (ax_t, ax_m):
        ax.tick_params(axis="y", labelsize=8)
    r0 = rows[0] if rows else {}
    fig.suptitle(title or f"whole training step, B={r0.get('batch_size')}, T={r0.get('seq_len')}, "
                 f"{r0.get('dtype', '')}, {r0.get('device_name', '')}", fontsize=10)
    return fig


# ---- the exercise --------------------------------------------------------------------------------
class LargestTensor(TorchDispatchMode):
    """``with LargestTensor() as m: ...`` -- ``m.largest`` is the most elements of any tensor an op
    produced inside (forward and backward alike)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def check_chunked_loss(fn: Callable) -> CheckResult:
    """Check ``fn(hidden (N, C), weight (V, C), targets (N,), chunk)`` -> the mean cross-entropy of
    ``hidden @ weight.T`` over targets != -1, computed ``chunk`` tokens at a time: equal to
    ``F.cross_entropy`` in float64, and no tensor of N x V elements made on the way."""
    name = "chunked_loss"
    g = torch.Generator().manual_seed(0)
    cases = [(12, 4, 7, 5, 0), (40, 8, 30, 8, 3), (33, 6, 50, 32, 4), (9, 3, 11, 100, 2)]
    for N, Cw, V, chunk, ignore_every in cases:
        h = torch.randn(N, Cw, generator=g, dtype=torch.float64)
        w = torch.randn(V, Cw, generator=g, dtype=torch.float64)
        t = torch.randint(0, V, (N,), generator=g)
        if ignore_every:
            t[::ignore_every] = -1
        want = F.cross_entropy(h @ w.T, t, ignore_index=-1)
        mode = LargestTensor()
        with mode:
            got, err = call_checked(name, fn, h, w, t, chunk)
        if err is not None:
            return err
        where = f"(N={N}, C={Cw}, V={V}, chunk={chunk})"
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            return CheckResult(name, False, f"{where}: expected a one-element tensor, got {got!r}")
        if not torch.allclose(got.double(), want, rtol=1e-10, atol=1e-12):
            hint = ""
            total = F.cross_entropy(h @ w.T, t, ignore_index=-1, reduction="sum")
            if torch.allclose(got.double(), total, rtol=1e-10):
                hint = " -- that is the sum; divide by the number of targets that are not -1"
            elif torch.allclose(got.double(), total / N, rtol=1e-10) and ignore_every:
                hint = " -- divide by the targets that count (not -1), not by all N tokens"
            return CheckResult(name, False, f"{where}: got {float(got):.6f}, expected {float(want):.6f}{hint}")
        if N > chunk and mode.largest >= N * V:
            return CheckResult(name, False, f"{where}: the loss is right, but a tensor of {mode.largest} "
                               f"elements (>= N x V = {N * V}) was made: compute one chunk of logits at a time")
    return CheckResult(name, True, f"all {len(cases)} cases equal F.cross_entropy, no (N, V) tensor made",
                       len(cases))
