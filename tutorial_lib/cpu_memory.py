"""Keep freed CPU memory in the process, so that a training loop stops paying page faults every step.

PyTorch's CPU allocator calls ``malloc`` and ``free``. glibc's ``malloc`` serves every block above
its ``mmap`` threshold (at most 32 MiB) with fresh pages from the kernel and hands them back on
``free``. So each step's large outputs -- logits, the embedding's gradient, AdamW's temporaries,
eager attention's T x T scores -- are new pages every time, and the first write to each one
faults (the kernel maps and zeroes it).

On a virtual machine it is worse. The guest kernel reports free pages back to the hypervisor
(virtio-balloon's *free page reporting*: pages of 2 MiB and more that stay free for about two
seconds), and the hypervisor takes them away. Touching such a page again costs a fault in the
host as well. Measured on this project's 2-vCPU KVM machine, writing a fresh 512 MiB tensor:
about 17-20 GB/s when its pages were freed a moment ago, about 1 GB/s when they had been free for
3 s (``scripts/experiments/cold_pages.py``). A step that happens to meet a report pays 10-20x for its
fresh outputs, at random: rounds of one gpt2_small step measured 1.5 s and 2.2 s in the same run.

``keep_freed_memory()`` asks glibc to keep what it frees: no ``mmap`` for large blocks
(``M_MMAP_MAX`` = 0, so they come from the heap) and no returning the heap's top to the kernel
below ``TRIM_THRESHOLD`` bytes (``M_TRIM_THRESHOLD``). After the first step, a step's large
outputs reuse memory that is already mapped: no page faults, nothing for the hypervisor to take.
The cost: the process keeps its peak heap until it exits. jemalloc and tcmalloc (through
``LD_PRELOAD``), which PyTorch's CPU performance guides recommend, keep memory in a similar way.

``tutorial_lib/__init__.py`` calls it on import unless ``TUTORIAL_KEEP_FREED_MEMORY=0``, or the
process already sets glibc's malloc through the environment (``MALLOC_MMAP_MAX_``,
``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``) or preloads another allocator (``LD_PRELOAD``):
then the user's choice stands. ``mallopt`` takes effect for the allocations that follow, so unlike
``THP_MEM_ALLOC_ENABLE`` it need not come before torch. Measured, not assumed: the guide's
``own_paths.allocator`` section runs the same work in fresh processes with it off and on
(``measure.allocator.huge_page_ab(setting="keep_freed")``).

This module imports only the standard library (``tutorial_lib/__init__.py`` runs it before torch).
"""
from __future__ import annotations

import ctypes
import os
from typing import Optional

KEEP_ENV = "TUTORIAL_KEEP_FREED_MEMORY"  # "0": leave glibc's malloc as it is
USER_MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES",
                   "LD_PRELOAD")  # the user chose how memory is allocated: theirs stands
M_TRIM_THRESHOLD = -1  # mallopt(3) parameter numbers, from glibc's <malloc.h>
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt takes (an int): 2 GiB of free heap top before any is returned


def glibc() -> Optional[ctypes.CDLL]:
    """The C library when it is glibc (it has ``mallopt`` and ``gnu_get_libc_version``), else None
    (macOS, Windows, musl). The symbols already loaded into the process are searched
    (``dlopen(NULL)``), so nothing is looked up on disk at import time."""
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):  # Windows has no dlopen(NULL)
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def wanted() -> bool:
    """Should ``tutorial_lib`` keep freed memory here? Yes unless ``TUTORIAL_KEEP_FREED_MEMORY`` is
    "0" or the environment already configures malloc (``USER_MALLOC_ENV``)."""
    if os.environ.get(KEEP_ENV, "1").strip() == "0":
        return False
    return not any(os.environ.get(k) for k in USER_MALLOC_ENV)


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory in the process (see the module's text). True when
    both settings were accepted; False where there is no glibc or it refused."""
    libc = glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


KEPT = keep_freed_memory() if wanted() else False  # what this process does: results are stamped with it
