"""Why the big model's step is under-predicted: fresh fills by size, embedding backward, AdamW loop."""

import os
import statistics

import torch

from tutorial_lib.measure import ceilings, cost, roofline
from tutorial_lib.measure.timing import time_rounds
from tutorial_lib.model import GPT, get_config

torch.set_num_threads(2)
print("THP env", os.environ.get("THP_MEM_ALLOC_ENABLE"), "load", os.getloadavg())
V, C = 50257, 768
runs = {}
for mb in (64, 154, 300):
    n = mb * 2**20 // 4
    runs[f"fresh fill {mb} MiB"] = (lambda n=n: torch.empty(n).fill_(1.0), 4 * n)
    runs[f"zeros {mb} MiB"] = (lambda n=n: torch.zeros(n), 4 * n)
warm = torch.empty(154 * 2**20 // 4)
runs["warm fill 154 MiB"] = (lambda: warm.fill_(1.0), warm.numel() * 4)
for N, VV, CC in ((384, V, 768), (512, V, 384)):
    g = torch.randn(N, CC)
    idx = torch.randint(0, VV, (N,))
    runs[f"emb_bwd N{N} {VV}x{CC}"] = (
        lambda g=g, idx=idx, VV=VV: torch.ops.aten.embedding_dense_backward(g, idx, VV, -1, False),
        4 * VV * CC,
    )
for preset in ("gpt2_mini", "gpt2_small"):
    m = GPT(get_config(preset))
    for p in m.parameters():
        p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, foreach=False)
    opt.step()
    runs[f"adamw for-loop {preset}"] = (opt.step, sum(p.numel() for p in m.parameters()))
ps = ceilings.probes("cpu", None, (1024, 2048), 128 * 2**20, (64 * 2**20,))
allruns = {**{k: v[0] for k, v in runs.items()}, **{p.label: p.run for p in ps}}
times, err = time_rounds(allruns, "cpu", 3, 0.3, max_rounds=3)
print(err)
per = [ceilings.from_round(ps, {p.label: times[p.label][i] for p in ps}) for i in range(3)]
c = ceilings.combine(per)
print(c.describe())
for k, (fn, amount) in runs.items():
    ms = statistics.median(times[k])
    rate = amount / (ms / 1e3) / 1e9
    print(f"{k:32s} {ms:8.1f} ms  [{min(times[k]):.1f}-{max(times[k]):.1f}]  {rate:6.2f} G(B or params)/s")
# the cost model's own prediction of AdamW's for-loop, on the ceilings of the same rounds
for preset in ("gpt2_mini", "gpt2_small"):
    ks = cost.adamw_kernels(cost.param_sizes(get_config(preset)), "cpu", "for-loop")
    print(preset, "adamw predicted ms", round(sum(roofline.kernel_seconds(k, c) for k in ks) * 1e3, 1))
