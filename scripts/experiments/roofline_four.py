"""Issue 22's check: the roofline's predicted step time against the measured one on four configs that
no test uses, with the ceilings' probes timed in the same rounds as the steps (``roofline.check_steps``),
FLOP-only beside it. Prints the configs first, then one line per config: measured ms [min-max over the
rounds], predicted ms, the median of the per-round errors (min..max) and the FLOP-only error."""

import os
import time

import torch

from tutorial_lib import cpu_memory
from tutorial_lib.measure import allocator, ceilings, roofline
from tutorial_lib.model import get_config

torch.set_num_threads(2)
MB = 2**20
probes = ceilings.probes("cpu", None, (128, 256, 512, 1024, 2048), 128 * MB, (64 * MB,))
checks = [
    roofline.StepCheck("gpt2_mini sdpa B=2 T=256", get_config("gpt2_mini"), 2, 256),
    roofline.StepCheck("gpt2_small sdpa B=1 T=256", get_config("gpt2_small"), 1, 256),
    roofline.StepCheck("gpt2_small n_kv_head=2 mlp_ratio=3.5 B=1 T=384",
                       get_config("gpt2_small", n_kv_head=2, mlp_ratio=3.5), 1, 384),
    roofline.StepCheck("gpt2_mini SwiGLU window=64 local B=1 T=512",
                       get_config("gpt2_mini", mlp="swiglu", window=64, attn_backend="local"), 1, 512),
]
print("configs:", "; ".join(c.label for c in checks))
print("kept freed memory:", cpu_memory.KEPT, "| allocator env:", allocator.allocator_settings()["env"],
      "| load", os.getloadavg())
t0 = time.time()
res = roofline.check_steps(checks, probes, "cpu", rounds=3, min_run_time=0.3, progress=False)
print(f"{time.time() - t0:.0f} s; {res['ceilings'].describe()}")
for r in res["rows"]:
    print(f"  {r['variant']:48s} measured {r['measured_ms']:6.0f} ms "
          f"[{r['measured_ms_min']:.0f}-{r['measured_ms_max']:.0f}]  predicted {r['roofline_ms']:6.0f}  "
          f"error {r['roofline_error']:+.0%} ({r['roofline_error_min']:+.0%}..{r['roofline_error_max']:+.0%})  "
          f"FLOP-only {r['flop_only_error']:+.0%}  first touch {r['first_touch_ms']:.0f} ms")
