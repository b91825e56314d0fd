"""Does a round need a warm-up call beyond the Timer's sizing call? Per-round times of gpt2_mini steps."""

import os
import time

import torch

from tutorial_lib.lessons.common import prepare_step
from tutorial_lib.measure import timing
from tutorial_lib.model import get_config

torch.set_num_threads(2)
print("load", os.getloadavg())
cfgs = {
    "eager": get_config("gpt2_mini", attn_backend="eager"),
    "gqa4": get_config("gpt2_mini", attn_backend="eager", n_kv_head=4),
    "sdpa": get_config("gpt2_mini"),
    "mlp3": get_config("gpt2_mini", attn_backend="eager", mlp_ratio=3.0),
}
steps = {}
for k, c in cfgs.items():
    _, st, _, _ = prepare_step(c, 2, 256, "train", torch.device("cpu"), None)
    st()
    steps[k] = st
for scheme in ("first-round warm-up", "warm-up every round", "first-round warm-up"):
    times = {k: [] for k in steps}
    t0 = time.time()
    for r in range(5):
        for k, st in steps.items():
            w = 1 if (r == 0 or scheme == "warm-up every round") else 0
            times[k].append(timing.time_fn(st, "cpu", min_run_time=0.3, warmup=w, min_measurements=1).median_ms)
    print(f"{scheme}: {time.time() - t0:.0f} s, load {os.getloadavg()[0]:.1f}")
    for k, ts in times.items():
        print(f"   {k:6s} " + " ".join(f"{t:6.0f}" for t in ts) + f"  spread {timing.spread_of(ts):.0%}")
