"""The CPU allocator: first-touch page faults, huge pages, kept memory, and the settings a result is stamped with.

A tensor's memory is only *reserved* when it is allocated; the operating system maps each page on
the first write to it (a page fault, and the kernel zeroes the page). By default PyTorch frees
large tensors back to the system (glibc's ``malloc`` hands anything above 32 MiB to
``mmap``/``munmap``), so an eager attention step that makes a fresh (B, H, T, T) score matrix pays
those faults again on every call: part of its time is the operating system, not arithmetic.
``tutorial_lib`` changes two settings, each measured here off against on:

- **huge pages**: ``THP_MEM_ALLOC_ENABLE=1`` makes PyTorch's CPU allocator align large blocks to
  pages and ``madvise(MADV_HUGEPAGE)`` them (c10/core/impl/alloc_cpu.cpp): 2 MiB pages, 512 times
  fewer faults. PyTorch reads the variable *once*, at its first CPU allocation (not at
  ``import torch``), so it must be in the environment before any tensor exists:
  ``tutorial_lib/__init__.py`` sets it (unless already set), and ``make`` exports it too.
  ``huge_pages_in_use`` says whether this process really got huge pages (the kernel's THP mode must
  be ``madvise`` or ``always``).
- **kept memory**: ``tutorial_lib.cpu_memory`` tells glibc to keep freed memory in the process,
  so a step's large outputs reuse pages already mapped (``TUTORIAL_KEEP_FREED_MEMORY=0`` turns it
  off; that module says why it matters most on a virtual machine).

- ``allocator_settings()``: what a result is stamped with (``measure.records.stamp``).
- ``huge_page_ab(workload, ..., setting=)``: the same workload in fresh processes with one setting
  off and on, in interleaved rounds (neither can be undone inside one process).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from tutorial_lib import cpu_memory
from tutorial_lib.attention import attention_core
from tutorial_lib.measure.ceilings import fill_probes
from tutorial_lib.measure.timing import prepare_step, steady_warmup, time_fn

THP_ENV = "THP_MEM_ALLOC_ENABLE"
SETTINGS = {"huge_pages": THP_ENV, "keep_freed": cpu_memory.KEEP_ENV}  # what huge_page_ab turns off and on
# what changes how CPU memory is allocated or how many threads compete for it
ALLOCATOR_ENV = (THP_ENV, cpu_memory.KEEP_ENV, "PYTORCH_CPU_ALLOC_CONF", "MALLOC_ARENA_MAX", "MALLOC_TOP_PAD_",
                 *cpu_memory.USER_MALLOC_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS")
WORKLOADS = ("eager_attention", "train_step")
_SYS_THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def system_thp_mode() -> Optional[str]:
    """The kernel's transparent-huge-page mode ("always", "madvise", "never"), None off Linux."""
    try:
        text = Path(_SYS_THP).read_text()
    except OSError:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return None


def _anon_huge_kib() -> Optional[int]:
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def huge_pages_in_use(nbytes: int = 64 * 2**20) -> Optional[bool]:
    """Does a fresh ``nbytes`` tensor, once written, sit on huge pages? (The process's
    AnonHugePages grows.) None where the kernel does not say (not Linux). Meant for a fresh
    process (``huge_page_ab``'s children): the default size is above glibc's largest ``mmap``
    threshold (32 MiB), but a process that has freed large blocks may hand this one out of memory
    it already mapped, and then nothing grows."""
    before = _anon_huge_kib()
    if before is None:
        return None
    x = torch.empty(nbytes // 4, dtype=torch.float32)
    x.fill_(1.0)
    after = _anon_huge_kib()
    del x
    return after is not None and after > before


def huge_pages_requested(n: int = 4, nbytes: int = 4 * 2**20) -> bool:
    """Does PyTorch's CPU allocator ask for huge pages in this process? With
    ``THP_MEM_ALLOC_ENABLE`` read as on, it aligns every block to a page (then madvises the large
    ones); glibc alone aligns to 64 bytes. ``n`` fresh blocks all page-aligned: on (a chance
    alignment of all of them is ~64^-n)."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    blocks = [torch.empty(nbytes // 4, dtype=torch.float32) for _ in range(n)]
    return all(b.data_ptr() % page == 0 for b in blocks)


def allocator_settings() -> Dict[str, object]:
    """The allocator and threading settings a CPU result depends on: the environment variables
    that change them (unset ones left out), the kernel's THP mode, whether PyTorch's allocator asks
    for huge pages here (``huge_pages_requested``) and how much of the process sits on them now
    (AnonHugePages, KiB), whether glibc keeps freed memory in the process (``cpu_memory.KEPT``), and
    torch's intra-/inter-op thread counts. (``huge_pages_in_use`` is for fresh processes: later, a
    block may come from memory the process already mapped.)"""
    return {"env": {k: os.environ[k] for k in ALLOCATOR_ENV if k in os.environ},
            "system_thp": system_thp_mode(), "huge_pages_requested": huge_pages_requested(),
            "keeps_freed_memory": cpu_memory.KEPT,
            "anon_huge_pages_kib": _anon_huge_kib(),
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}


# ---- one process's measurement (run by huge_page_ab in a fresh interpreter) --------------------
def _workload(name: str, seq_len: int, preset: str, batch: int):
    if name == "eager_attention":
        q, k, v = (torch.randn(batch, 12, seq_len, 64, requires_grad=True) for _ in range(3))

        def step():
            for t in (q, k, v):
                t.grad = None
            attention_core(q, k, v, "eager").sum().backward()
        return step
    if name == "train_step":
        return prepare_step(preset, batch, seq_len, "train", "cpu", "float32")[1]
    raise ValueError(f"workload={name!r} is not one of {list(WORKLOADS)}")


def measure_in_this_process(workload: str, seq_len: int, preset: str, batch: int, reps: int,
                            threads: Optional[int]) -> dict:
    """What one child of ``huge_page_ab`` measures: whether huge pages are in use (first, while no
    large block has been freed yet), fill rates, then the workload's median time over ``reps``
    calls after a steady warm-up."""
    if threads:
        torch.set_num_threads(threads)
    huge = huge_pages_in_use()
    fills = {p.ceiling: p.rate(time_fn(p.run, "cpu", min_run_time=0.05, warmup=1).median_ms) / 1e9
             for p in fill_probes("cpu", (64 * 2**20,))}
    step = _workload(workload, seq_len, preset, batch)
    steady_warmup(step, torch.device("cpu"))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"workload": workload, "median_ms": statistics.median(times), "min_ms": min(times),
            "fresh_GBps": fills["first_touch_bandwidth"], "touched_GBps": fills["fill_bandwidth"],
            "huge_pages_in_use": huge, "thp_env": os.environ.get(THP_ENV),
            "keeps_freed_memory": cpu_memory.KEPT, "threads": torch.get_num_threads()}


def huge_page_ab(workload: str = "eager_attention", seq_len: int = 1024, preset: str = "gpt2_mini",
                 batch: int = 1, rounds: int = 3, reps: int = 3, threads: Optional[int] = None,
                 timeout_s: float = 600.0, setting: str = "huge_pages") -> dict:
    """The same workload in fresh Python processes with one allocator ``setting`` off and on:
    "huge_pages" (``THP_MEM_ALLOC_ENABLE`` 0 and 1) or "keep_freed"
    (``TUTORIAL_KEEP_FREED_MEMORY`` 0 and 1); the other setting stays as ``tutorial_lib`` leaves it.

    Each is set once per process, so each measurement is its own process; the two run back to
    back in every round (order alternating), and ``speedup`` is the median over rounds of (time
    without) / (time with the setting), so load that comes and goes cancels. Returns {"setting",
    "workload", "rounds", "rows": [one per process, ``on`` saying which], "speedup", "speedup_min",
    "speedup_max", "off_ms", "on_ms", "fresh_GBps_off" / "_on" (writing a fresh 64 MiB tensor),
    "touched_GBps_off", "huge_pages_in_use" (in the "on" processes), "system_thp"}.
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting={setting!r} is not one of {list(SETTINGS)}")
    if workload not in WORKLOADS:
        raise ValueError(f"workload={workload!r} is not one of {list(WORKLOADS)}")
    for name, val in (("seq_len", seq_len), ("batch", batch), ("rounds", rounds), ("reps", reps)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name}={val!r} must be a positive integer")
    threads = threads or torch.get_num_threads()
    root = str(Path(__file__).resolve().parents[2])
    rows: List[dict] = []
    for r in range(rounds):
        for on in ((False, True) if r % 2 == 0 else (True, False)):
            env = {**os.environ, SETTINGS[setting]: "1" if on else "0",
                   "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
            cmd = [sys.executable, "-m", "tutorial_lib.measure.allocator", "--workload", workload,
                   "--seq-len", str(seq_len), "--preset", preset, "--batch", str(batch),
                   "--reps", str(reps), "--threads", str(threads)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
            if out.returncode != 0:
                raise RuntimeError(f"huge_page_ab: the child process failed ({out.stderr.strip()[-300:]})")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row.update(round=r, on=on)
            rows.append(row)
    off = {x["round"]: x["median_ms"] for x in rows if not x["on"]}
    on = {x["round"]: x["median_ms"] for x in rows if x["on"]}
    ratios = [off[r] / on[r] for r in range(rounds)]
    return {"setting": setting, "workload": workload, "seq_len": seq_len, "batch": batch, "rounds": rounds,
            "preset": preset if workload == "train_step" else None, "threads": threads, "rows": rows,
            "off_ms": statistics.median(off.values()), "on_ms": statistics.median(on.values()),
            "speedup": statistics.median(ratios), "speedup_min": min(ratios), "speedup_max": max(ratios),
            "fresh_GBps_off": statistics.median(x["fresh_GBps"] for x in rows if not x["on"]),
            "fresh_GBps_on": statistics.median(x["fresh_GBps"] for x in rows if x["on"]),
            "touched_GBps_off": statistics.median(x["touched_GBps"] for x in rows if not x["on"]),
            "huge_pages_in_use": all(x["huge_pages_in_use"] for x in rows if x["on"]),
            "system_thp": system_thp_mode()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="one process of huge_page_ab: prints a JSON line")
    p.add_argument("--workload", choices=WORKLOADS, required=True)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--preset", default="gpt2_mini")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    print(json.dumps(measure_in_this_process(a.workload, a.seq_len, a.preset, a.batch, a.reps, a.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
