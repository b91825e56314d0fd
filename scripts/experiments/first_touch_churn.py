"""Is the in-step first-touch rate the probe's? A churn probe (several large blocks alive at once, then
freed) as the first-touch ceiling, against the standard probe, on four step checks."""

import os
import sys
import time

import torch

from tutorial_lib.measure import ceilings, roofline
from tutorial_lib.model import get_config

torch.set_num_threads(2)
MB = 2**20
SIZES = [77 * MB, 154 * MB, 51 * MB, 154 * MB, 77 * MB, 154 * MB]  # a GPT-2 small step's large blocks


def churn():
    keep = [torch.empty(n // 4).fill_(1.0) for n in SIZES]
    return len(keep)


churn_probe = ceilings.Probe("first_touch_bandwidth", "fill fresh churn", churn, sum(SIZES), {"bytes": sum(SIZES)})
std = ceilings.probes("cpu", None, (128, 256, 512, 1024, 2048), 128 * MB, (64 * MB,))
alt = [p for p in std if p.ceiling != "first_touch_bandwidth"] + [churn_probe]
checks = [
    roofline.StepCheck("mini sdpa B2 T256", get_config("gpt2_mini"), 2, 256),
    roofline.StepCheck("small sdpa B1 T256", get_config("gpt2_small"), 1, 256),
    roofline.StepCheck("small GQA2 mlp3.5 B1 T384", get_config("gpt2_small", n_kv_head=2, mlp_ratio=3.5), 1, 384),
    roofline.StepCheck(
        "mini swiglu W64 T512 local", get_config("gpt2_mini", mlp="swiglu", window=64, attn_backend="local"), 1, 512
    ),
]
print("load", os.getloadavg())
for name, ps in (("standard", std), ("churn", alt), ("standard", std)):
    t0 = time.time()
    res = roofline.check_steps(checks, ps, "cpu", rounds=3, min_run_time=0.3, progress=False)
    print(f"{name}: {time.time() - t0:.0f} s; {res['ceilings'].describe()}")
    for r in res["rows"]:
        print(
            f"   {r['variant']:28s} meas {r['measured_ms']:7.0f} pred {r['roofline_ms']:7.0f} "
            f"err {r['roofline_error']:+.0%} ({r['roofline_error_min']:+.0%}..{r['roofline_error_max']:+.0%}) "
            f"flop-only {r['flop_only_error']:+.0%} ft {r['first_touch_ms']:.0f}"
        )
    sys.stdout.flush()
