# One-off CUDA measurement script for notebooks 02/03 (run by hand on a GPU; not imported, not tested).
"""The GPU measurements behind notebooks 02_gqa and 03_flash_attention, in one time-boxed script.

    OUT=results PYTHONPATH=. python scripts/gpu_check_02_03.py 380   # seconds of budget

Needs CUDA, not Jupyter. At the seed's setting (GPT-2 small, B=4, T=512, bf16): KV-cache decoding
tokens/s for n_kv_head 12/4/2/1 at long contexts (batch 16), eager vs SDPA whole-model memory, the
training step per n_kv_head, attention memory/time vs T for eager/tiled/sdpa and flex, and short
quality runs if time is left. Each section prints its rows and writes $OUT/<section>.json (every
row stamped with device, dtype and sizes), so a run cut short keeps what it measured.
"""
import json
import os
import sys
import time
import traceback

import torch

t_start = time.time()
OUT = os.environ.get("OUT", "results")
os.makedirs(OUT, exist_ok=True)
BUDGET = float(sys.argv[1]) if len(sys.argv) > 1 else 400.0
from tutorial_lib.lessons import flash_attention as fl
from tutorial_lib import settings
from tutorial_lib.files import atomic_write_text
from tutorial_lib.lessons import gqa
from tutorial_lib.model import get_config

print("device", settings.device_name("cuda"), "torch", torch.__version__, flush=True)
small = get_config("gpt2_small")

def g(x, scale=1.0, nd=2):
    return "n/a" if x is None else f"{x/scale:.{nd}f}"

def save(name, obj):  # atomic: a run cut short mid-write keeps the previous file whole
    atomic_write_text(os.path.join(OUT, name + ".json"), json.dumps(obj, indent=1, default=str))

def left():
    return BUDGET - (time.time() - t_start)

def section(name, fn):
    t0 = time.time()
    if left() < 20:
        print(f"SKIP {name}: budget", flush=True); return
    try:
        fn()
    except Exception:
        traceback.print_exc()
    print(f"[{name}] {time.time()-t0:.1f}s, left {left():.0f}s", flush=True)

def decode():
    rows = gqa.measure_decode(small, [512, 2048, 8192], kv_heads=[12, 4, 2, 1], batch_size=16,
                              new_tokens=32, device="cuda", dtype="bfloat16", min_run_time=0.3)
    save("decode", [r.to_dict() for r in rows])
    for r in rows:
        print(f"decode {r.attention:6s} ctx={r.context:5d} B=16 tok/s={g(r.tokens_per_s, nd=0)} "
              f"ms/step={g(r.ms_per_step, nd=3)} cache={g(r.cache_bytes, 2**20, 0)}MiB peak={g(r.peak_mem_bytes, 2**30)}GiB err={r.error}", flush=True)

def steps():
    rows = gqa.measure_training(small, [12, 4, 2, 1], 4, 512, device="cuda", min_run_time=0.5)
    save("steps", rows)
    for r in rows:
        print(f"step {r['attention']} {g(r['median_ms'])} ms iqr {g(r['iqr_ms'])} speedup {g(r['speedup'], nd=3)} "
              f"peak {g(r['peak_bytes'], 2**30)} GiB total {g(r['total_bytes'], 2**30)} GiB act {g(r['activations_bytes'], 2**30)} err={r['error']}", flush=True)

def model_cmp():
    rows = fl.model_backend_comparison(small, 4, 512, backends=("eager", "sdpa"), device="cuda", min_run_time=0.5)
    save("model_cmp", rows)
    for r in rows:
        print("model", {k: r.get(k) for k in ("backend", "median_ms", "activations_bytes", "scores_bytes", "total_bytes", "peak_bytes", "timed_peak_bytes", "error")}, flush=True)

def sweep(backends, Ts, name):
    def run():
        rows = fl.attention_sweep(Ts, backends=backends, batch_size=4, n_head=12, head_dim=64,
                                  device="cuda", min_run_time=0.2, tile=128)
        save(name, [r.to_dict() for r in rows])
        for r in rows:
            print(f"attn {r.backend:5s} T={r.seq_len:5d} saved={g(r.saved_bytes, 2**20, 1)}MiB "
                  f"peak={g(r.peak_bytes, 2**20, 1)}MiB ms={g(r.median_ms, nd=3)} err={r.error}", flush=True)
        print("slopes saved", fl.loglog_slopes(rows), "peak", fl.loglog_slopes(rows, "peak_bytes"),
              "time", fl.loglog_slopes(rows, "median_ms"), flush=True)
    return run

def quality():
    from tutorial_lib.train import train
    out = {}
    for h in (12, 4, 1):
        hist = train(small.replace(n_kv_head=h), steps=150, batch_size=16, seq_len=512, eval_every=50,
                     eval_batches=8, progress=False)
        out[h] = {"val_steps": hist.val_steps, "val_loss": hist.val_loss,
                  "step_ms": 1e3 * sorted(hist.step_time_s)[len(hist.step_time_s)//2]}
        print("quality", h, out[h], flush=True)
        save("quality", out)

section("decode", decode)
section("model_cmp", model_cmp)
section("steps", steps)
section("sweep", sweep(["eager", "tiled", "sdpa"], [1024, 2048, 4096, 8192], "sweep"))
section("flex", sweep(["flex"], [1024, 4096], "sweep_flex"))
section("quality", quality)
print("total", time.time() - t_start)
