"""AdamW's for-loop on GPT-2 small under torch.profiler: where its time goes, op by op, and for the
embedding's 154 MB tensors against the other shapes (run it a few times: the fresh outputs stall now and then)."""

import os

import torch
from torch.profiler import ProfilerActivity, profile

from tutorial_lib.model import GPT, get_config

torch.set_num_threads(2)
m = GPT(get_config("gpt2_small"))
for p in m.parameters():
    p.grad = torch.randn_like(p)
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, foreach=False)
opt.step()
opt.step()

with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(3):
        opt.step()
agg = {e.key: (e.count, e.self_cpu_time_total / 1e3) for e in prof.key_averages() if e.key.startswith("aten::")}
tot = sum(v[1] for v in agg.values())
print("load", os.getloadavg(), "total self ms per step", round(tot / 3, 1))
for k, (n, ms) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:12]:
    print(f"{k:28s} calls/step {n // 3:5d}  ms/step {ms / 3:7.1f}")
# per-op by size class for sqrt/div: the embedding's 154 MB tensors vs the rest
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof2:
    opt.step()
for e in prof2.key_averages(group_by_input_shape=True):
    if (
        e.key in ("aten::sqrt", "aten::div", "aten::addcdiv_", "aten::lerp_", "aten::mul_", "aten::addcmul_")
        and e.input_shapes
        and e.input_shapes[0]
        and len(e.input_shapes[0]) == 2
        and e.input_shapes[0][0] in (50257, 768, 3072, 2304)
    ):
        print(
            f"  {e.key:16s} {str(e.input_shapes[0]):16s} calls {e.count:3d} self ms {e.self_cpu_time_total / 1e3:7.1f}"
        )
