"""A matmul probe's rate with its operands hot in the caches (the same matrices every call) and cold
(rotating through sets of 128 MiB in all, more than the 32 MiB L3): what a step's matmuls, whose
operands other work has evicted, can reach (the reason ``ceilings.matmul_probes`` rotates)."""

import itertools

import torch
import torch.utils.benchmark as tb

import tutorial_lib  # noqa: F401  (the allocator settings the tutorial runs with)

torch.set_num_threads(2)
for n in (128, 256, 512, 1024, 2048):
    k = max(1, (128 * 2**20) // (3 * 4 * n * n))
    sets = [(torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)) for _ in range(k)]
    turn = itertools.cycle(sets)

    def cold():
        a, b, c = next(turn)
        torch.mm(a, b, out=c)

    a, b, c = sets[0]
    g = {"torch": torch, "a": a, "b": b, "c": c}
    hot = tb.Timer("torch.mm(a,b,out=c)", globals=g).blocked_autorange(min_run_time=0.3).median
    cd = tb.Timer("f()", globals={"f": cold}).blocked_autorange(min_run_time=0.3).median
    hot2 = tb.Timer("torch.mm(a,b,out=c)", globals=g).blocked_autorange(min_run_time=0.3).median
    fl = 2 * n**3
    print(n, k, f"TFLOP/s: hot {fl / hot / 1e12:.3f}, cold {fl / cd / 1e12:.3f}, hot again {fl / hot2 / 1e12:.3f}",
          flush=True)
