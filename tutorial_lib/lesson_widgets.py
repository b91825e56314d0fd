"""The lesson explorers (GQA, flash attention, sliding window); import them from ``tutorial_lib.widgets``.

Each shows the analytic number a lesson teaches as a slider moves, with what ``results/*.json``
measured on this kind of device beside it when there is something; the GQA explorer can also
measure decoding here ("Measure decode"). Computations live in ``tutorial_lib.explore``.
"""
from __future__ import annotations

import html
from typing import Optional

import ipywidgets as W
import numpy as np
from matplotlib.figure import Figure

from tutorial_lib import explore
from tutorial_lib.measure.memory import fmt_bytes
from tutorial_lib.widgets import (DTYPES, POW2_T, WINDOWS, Explorer, _dropdown, _intslider,
                                  _kv_options, _slider)

CONTEXTS = [2 ** i for i in range(7, 16)]  # 128 .. 32768


def _device():
    from tutorial_lib import settings
    dev = settings.get_device()
    return dev, settings.device_name(dev)


# ---- GQA: n_kv_head vs KV-cache bytes and decode speed -----------------------------------------
class GQAExplorer(Explorer):
    css = "tl-gqa-explorer"

    def __init__(self, n_kv_head: int = 4, context: int = 1024, batch_size: int = 1,
                 dtype: str = "bfloat16", preset: str = "gpt2_small", results=None,
                 measure_config=None, measure_tokens: Optional[int] = None):
        """``measure_config`` / ``measure_tokens``: the model and new tokens "Measure decode"
        times (default: the profile's -- gpt2_mini under smoke, else ``preset`` -- and its
        ``decode_tokens``)."""
        from tutorial_lib.config import get_config

        self.preset = preset
        self.measure_config, self.measure_tokens = measure_config, measure_tokens
        self.docs = explore.load_all_results() if results is None else list(results)
        self.device, self.device_name = _device()
        self.decode_rows = []  # measured here with "Measure decode"
        n_head = get_config(preset).n_head
        controls = {
            "n_kv_head": _dropdown(_kv_options(n_head), n_kv_head, "K/V heads", "gqa-kv"),
            "context": _slider(CONTEXTS, context, "context tokens", "gqa-context"),
            "batch_size": _intslider(batch_size, 1, 64, "batch (sequences)", "gqa-batch"),
            "dtype": _dropdown(DTYPES, dtype, "cache dtype", "gqa-dtype"),
        }
        self.button = W.Button(description="Measure decode", icon="play", button_style="primary",
                               tooltip="time greedy KV-cache decoding here for MHA and this n_kv_head")
        self.button.add_class("tl-measure")
        self.progress = W.IntProgress(value=0, min=0, max=2, layout=W.Layout(width="200px"))
        self.measured = W.HTML()
        self.measured.add_class("tl-measured")
        self.button.on_click(lambda _b: self.measure())
        super().__init__(controls, [W.HBox([self.button, self.progress]), self.measured])

    def compute(self, n_kv_head, context, batch_size, dtype):
        return explore.gqa_point(n_kv_head, context, batch_size, dtype, self.preset, self.docs,
                                 str(self.device))

    def render(self, r) -> str:
        meas = "; ".join(f"context {m['context']}: {m['tokens_per_s']:,.0f} tokens/s "
                         f"({m['speedup_vs_MHA']:.2f}x MHA) on {m['device_name']}"
                         for m in r["measured"] if m.get("tokens_per_s") and m.get("speedup_vs_MHA"))
        return (f"<div><b>{r['label']}</b> ({r['n_kv_head']} K/V heads for {r['n_head']} query heads), "
                f"{r['batch_size']} x {r['context']:,} tokens, {r['dtype']}: KV cache "
                f"<b>{fmt_bytes(r['cache_bytes'])}</b> vs MHA {fmt_bytes(r['cache_bytes_mha'])} "
                f"({r['cache_ratio']:.3g}x).<br>Each new token reads {fmt_bytes(r['bytes_per_token'])} "
                f"(weights + cache): analytic decode speed {r['decode_speedup_analytic']:.2f}x MHA "
                f"(memory-bound assumption).<br>measured (results files): {html.escape(meas) or 'none yet'}</div>")

    def figure(self, r) -> Figure:
        from tutorial_lib.config import get_config
        from tutorial_lib.gqa import kv_cache_bytes

        fig = Figure(figsize=(9, 3.4), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
        base = get_config(self.preset)
        for label, h in _kv_options(base.n_head):
            cfg = base.replace(n_kv_head=h)
            ys = [kv_cache_bytes(cfg, r["batch_size"], c, r["dtype"]) / 2**20 for c in CONTEXTS]
            cur = h == r["n_kv_head"]
            ax1.plot(CONTEXTS, ys, "-" if cur else ":", lw=2.5 if cur else 1, label=label)
        ax1.plot([r["context"]], [r["cache_bytes"] / 2**20], "ko")
        ax1.set_xscale("log", base=2)
        ax1.set_yscale("log")
        ax1.set_xlabel("context tokens")
        ax1.set_ylabel("KV cache (MiB)")
        ax1.legend(fontsize=7)
        ax1.set_title(f"KV cache, batch {r['batch_size']}, {r['dtype']}", fontsize=9, loc="left")
        mha = explore.gqa_point(base.n_head, r["context"], r["batch_size"], r["dtype"], self.preset, [])
        for i, (lab, p) in enumerate((("MHA", mha), (r["label"], r))):
            w = p["bytes_per_token"] - p["cache_bytes"] // p["batch_size"]
            ax2.barh(i, w / 2**20, color="#1f77b4", label="weights" if i == 0 else None)
            ax2.barh(i, p["cache_bytes"] / p["batch_size"] / 2**20, left=w / 2**20, color="#d62728",
                     label="KV cache (one sequence)" if i == 0 else None)
        ax2.set_yticks([0, 1], ["MHA", r["label"]])
        ax2.set_xlabel("MiB read per new token")
        ax2.legend(fontsize=7)
        ax2.set_title(f"decoding: {r['decode_speedup_analytic']:.2f}x MHA (analytic)", fontsize=9, loc="left")
        return fig

    def measure(self):
        """Time greedy decoding (``gqa.measure_decode``) for MHA and the chosen n_kv_head at the
        chosen context, on this profile's lesson model; the rows land in ``decode_rows``."""
        from tutorial_lib import settings
        from tutorial_lib.config import get_config
        from tutorial_lib.gqa import measure_decode

        prof = settings.get_profile(device=self.device)
        cfg = self.measure_config or get_config("gpt2_mini" if prof.name == "smoke" else self.preset)
        tokens = self.measure_tokens or prof.decode_tokens
        v = self.values()
        if cfg.n_head % v["n_kv_head"]:
            raise ValueError(f"n_kv_head={v['n_kv_head']} does not divide n_head={cfg.n_head} of {cfg.name}")
        heads = list(dict.fromkeys([cfg.n_head, v["n_kv_head"]]))
        dtype = v["dtype"] if self.device.type == "cuda" else "float32"
        self.button.disabled = True
        self.progress.value, self.progress.bar_style = 0, "info"
        rows = []
        try:
            for h in heads:
                rows += measure_decode(cfg, [v["context"]], kv_heads=[h], batch_size=v["batch_size"],
                                       new_tokens=tokens, device=self.device, dtype=dtype,
                                       min_run_time=prof.min_run_time)
                self.progress.value += 1
        finally:
            self.button.disabled = False
        self.progress.value, self.progress.bar_style = self.progress.max, "success"
        self.decode_rows = rows
        base = rows[0]
        parts = []
        for r in rows:
            if r.ok:
                parts.append(f"{r.attention}: {r.tokens_per_s:,.0f} tokens/s ({r.ms_per_step:.2f} ms/token, "
                             f"{base.ms_per_step / r.ms_per_step:.2f}x MHA), cache {fmt_bytes(r.cache_bytes)}")
            else:
                parts.append(f"{r.attention}: {r.error}")
        self.measured.value = (f"<div><b>measured on {html.escape(self.device_name)}</b> "
                               f"({html.escape(cfg.describe())}, {dtype}, batch {v['batch_size']}, "
                               f"context {v['context']}, {tokens} new tokens): "
                               f"{html.escape('; '.join(parts))}</div>")
        return rows


def gqa_explorer(**kwargs) -> GQAExplorer:
    """KV-cache bytes and decode speed vs n_kv_head: ``gqa_explorer(context=2048)``."""
    return GQAExplorer(**kwargs)


# ---- flash: T vs attention memory ---------------------------------------------------------------
class FlashExplorer(Explorer):
    css = "tl-flash-explorer"

    def __init__(self, seq_len: int = 1024, batch_size: int = 1, dtype: str = "float32", results=None):
        self.docs = explore.load_all_results() if results is None else list(results)
        self.device, self.device_name = _device()
        controls = {
            "seq_len": _slider(CONTEXTS[:-1], seq_len, "sequence length T", "flash-seq-len"),
            "batch_size": _intslider(batch_size, 1, 64, "batch B", "flash-batch"),
            "dtype": _dropdown(DTYPES, dtype, "dtype", "flash-dtype"),
        }
        super().__init__(controls)

    def compute(self, seq_len, batch_size, dtype):
        return explore.flash_point(seq_len, batch_size, dtype, docs=self.docs, device=str(self.device))

    def render(self, r) -> str:
        return (f"<div>T={r['seq_len']:,}, B={r['batch_size']}, {r['n_head']} heads, {r['dtype']}: "
                f"eager attention writes <b>{fmt_bytes(r['eager_attention_bytes_per_layer'])}</b> per layer "
                f"(scores and probabilities, T x T per head); a flash kernel keeps "
                f"<b>{fmt_bytes(r['sdpa_attention_bytes_per_layer'])}</b> (one logsumexp per query): "
                f"{r['attention_ratio']:,.0f}x less.<br>Whole training step (GPT-2 small): "
                f"{fmt_bytes(r['eager_training_bytes'])} eager vs {fmt_bytes(r['sdpa_training_bytes'])} "
                f"flash ({r['training_ratio']:.2f}x).</div>")

    def figure(self, r) -> Figure:
        fig = Figure(figsize=(6.5, 3.6), layout="constrained")
        ax = fig.subplots()
        Ts = CONTEXTS[:-1]
        pts = [explore.flash_point(T, r["batch_size"], r["dtype"], docs=[]) for T in Ts]
        ax.plot(Ts, [p["eager_attention_bytes_per_layer"] / 2**20 for p in pts], "-", color="#d62728",
                label="eager: scores + probs (analytic, ~T^2)")
        ax.plot(Ts, [p["sdpa_attention_bytes_per_layer"] / 2**20 for p in pts], "-", color="#1f77b4",
                label="flash: logsumexp (analytic, ~T)")
        for b, col in (("eager", "#d62728"), ("sdpa", "#1f77b4"), ("tiled", "#2ca02c")):
            ms = [m for m in r["measured"] if m["backend"] == b]
            if ms:
                ax.plot([m["seq_len"] for m in ms], [m["saved_bytes"] / 2**20 for m in ms], "o",
                        color=col, mfc="none", label=f"{b}: saved for backward (measured, "
                        f"B={ms[0]['batch_size']} H={ms[0]['n_head']}, whole core)")
        ax.plot([r["seq_len"]] * 2, [r["sdpa_attention_bytes_per_layer"] / 2**20,
                                     r["eager_attention_bytes_per_layer"] / 2**20], "k--o", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("MiB per layer")
        ax.legend(fontsize=7)
        ax.set_title(f"attention memory per layer, B={r['batch_size']}, {r['dtype']}: "
                     f"{r['attention_ratio']:,.0f}x at T={r['seq_len']}", fontsize=9, loc="left")
        return fig


def flash_explorer(**kwargs) -> FlashExplorer:
    """Attention memory vs T, eager vs flash: ``flash_explorer(seq_len=4096)``."""
    return FlashExplorer(**kwargs)


# ---- sliding window: W vs mask and cost ---------------------------------------------------------
class WindowExplorer(Explorer):
    css = "tl-window-explorer"

    def __init__(self, window: Optional[int] = 256, seq_len: int = 2048, n_layer: int = 12):
        window = window or 0  # 0 = full causal on the slider
        controls = {
            "window": _slider(WINDOWS, window, "window W", "win-window"),
            "seq_len": _slider(POW2_T, seq_len, "sequence length T", "win-seq-len"),
            "n_layer": _intslider(n_layer, 1, 48, "layers", "win-layers"),
        }
        super().__init__(controls)

    def compute(self, window, seq_len, n_layer):
        r = explore.window_point(window or None, seq_len, n_layer)
        r["mask"] = explore.mask_density(seq_len, window or None, grid=64)
        return r

    def render(self, r) -> str:
        W_ = "full causal" if r["window"] is None else f"W={r['window']}"
        rf = "unbounded" if r["receptive_field"] is None else f"{r['receptive_field']:,} positions"
        return (f"<div>T={r['seq_len']:,}, {W_}: {r['pairs']:,} visible (query, key) pairs vs "
                f"{r['pairs_full']:,} causal: attention FLOPs {r['flop_ratio']:.2f}x fewer "
                f"(only if the kernel skips what the mask hides -- a band mask on SDPA does not).<br>"
                f"Receptive field after {r['n_layer']} layers: {rf}.</div>")

    def figure(self, r) -> Figure:
        fig = Figure(figsize=(9, 3.5), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
        T = r["seq_len"]
        ax1.imshow(r["mask"], cmap="Blues", vmin=0, vmax=1, extent=(0, T, T, 0), interpolation="nearest")
        ax1.set_xlabel("key position")
        ax1.set_ylabel("query position")
        ax1.set_title(f"mask, T={T}, " + ("full causal" if r["window"] is None else f"W={r['window']}")
                      + " (shade: visible fraction)", fontsize=9, loc="left")
        Ts = np.array(POW2_T)
        full = [explore.window_point(None, int(t), r["n_layer"])["flops"] for t in Ts]
        win = [explore.window_point(r["window"], int(t), r["n_layer"])["flops"] for t in Ts]
        ax2.plot(Ts, full, "-", color="#d62728", label="full causal (~T^2)")
        ax2.plot(Ts, win, "-", color="#1f77b4", label="window (~T*W once T >> W)")
        ax2.plot([T], [r["flops"]], "ko")
        ax2.set_xscale("log", base=2)
        ax2.set_yscale("log")
        ax2.set_xlabel("sequence length T")
        ax2.set_ylabel(f"attention FLOPs, {r['n_layer']} layers, fwd")
        ax2.legend(fontsize=7)
        ax2.set_title(f"{r['flop_ratio']:.2f}x fewer FLOPs at T={T}", fontsize=9, loc="left")
        return fig


def window_explorer(**kwargs) -> WindowExplorer:
    """The mask and attention cost vs W and T: ``window_explorer(window=128, seq_len=4096)``."""
    return WindowExplorer(**kwargs)
