"""Is the first-touch rate bimodal? Fill a fresh tensor right after the previous one was freed, and
after a pause of 0.5, 3 and 6 s (the guest kernel reports free 2 MiB pages to the hypervisor about
2 s after they are freed; the hypervisor then takes them back). Plain torch, glibc's malloc as it is
(this script does not import tutorial_lib, which would keep freed memory); run it with
THP_MEM_ALLOC_ENABLE=1 as make sets it, and again with 0."""

import os
import time

import torch

torch.set_num_threads(2)
MB = 2**20


def fill_GBps(nbytes: int) -> float:
    t0 = time.perf_counter()
    x = torch.empty(nbytes // 4).fill_(1.0)
    dt = time.perf_counter() - t0
    del x
    return nbytes / dt / 1e9


print("THP_MEM_ALLOC_ENABLE", os.environ.get("THP_MEM_ALLOC_ENABLE"), "load", os.getloadavg())
for n in (64 * MB, 512 * MB):
    for pause in (0, 0, 0.5, 3, 6, 0, 0):
        time.sleep(pause)
        print(f"{n // MB} MiB fresh, after a pause of {pause} s: {fill_GBps(n):.1f} GB/s", flush=True)
