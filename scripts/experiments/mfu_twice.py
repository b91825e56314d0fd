"""Issue 22: the guide's own_paths.mfu measurement (own_paths.step_mfu at the cpu profile's sizes),
run as the suite runs it; run it twice, minutes apart, and compare the medians.

    THP_MEM_ALLOC_ENABLE=1 python scripts/experiments/mfu_twice.py /tmp/mfu1.json
"""

import datetime
import json
import os
import sys
import time

import torch

from tutorial_lib.lessons import own_paths
from tutorial_lib.sizes import get_sizes

S = get_sizes("cpu")
o = S.own_paths
variants = {
    "eager": {"attn_backend": "eager"},
    "sdpa": {"attn_backend": "sdpa"},
    "sdpa + torch.compile": {"attn_backend": "sdpa"},
}
t0 = time.time()
l0 = os.getloadavg()
res = own_paths.step_mfu(
    o.mfu_preset,
    o.mfu_batch,
    o.mfu_seq,
    variants,
    device="cpu",
    rounds=o.rounds,
    min_run_time=o.min_run_time,
    peak_sizes=o.peak_sizes,
    compile_variants=("sdpa + torch.compile",),
)
out = {
    "start": datetime.datetime.fromtimestamp(t0, datetime.timezone.utc).isoformat(timespec="seconds"),
    "seconds": round(time.time() - t0),
    "load_start": l0,
    "load_end": os.getloadavg(),
    "torch": torch.__version__,
    "sizes": dict(preset=o.mfu_preset, B=o.mfu_batch, T=o.mfu_seq, rounds=o.rounds),
    "peak": res["peak"],
    "rows": [
        {k: r.get(k) for k in ("variant", "ms", "rounds", "MFU_measured_peak", "MFU_min", "MFU_max", "error")}
        for r in res["rows"]
    ],
}
print(json.dumps(out, indent=1))
json.dump(out, open(sys.argv[1], "w"), indent=1)
