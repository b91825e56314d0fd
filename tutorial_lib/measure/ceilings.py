"""A machine's ceilings: what it can do per second, each measured one way and looked up one way.

The roofline model (``measure.roofline``) predicts a kernel's time from these numbers and an MFU
divides by the first of them. Each ceiling has one probe and one rule:

==================  ==========================================  =====================================
ceiling             probe (timed with ``timing.time_fn``)       rule over the probe's sizes
==================  ==========================================  =====================================
``peak_flops``      ``torch.mm`` of two n x n matrices, its     the largest FLOP/s: a roof is the
                    operands rotated out of the caches          best a kernel of this shape reaches
``bandwidth``       STREAM ``copy`` and ``add`` into warm       the larger of the two (bytes read +
                    buffers                                     written per second)
``fill_bandwidth``  ``fill_`` of a warm buffer (CPU)            writing only, memory already mapped
``first_touch``     ``torch.empty(n).fill_`` with n >= 32 MiB   writing a fresh allocation: memory the
                    (CPU)                                       OS maps on the first write (page faults
                                                                included), unless the process kept it
``overhead_s``      100 tiny ``torch.add`` per call             seconds per eager operator
==================  ==========================================  =====================================

Each probe's time is the median of its timed blocks. ``measure_ceilings(rounds=N)`` times every
probe once per round, in turn, N rounds, and each ceiling is the **median over the rounds**, with
its min–max range kept (``Ceilings.ranges``); a ceiling whose rounds spread more than
``UNSTABLE`` (max - min over the median) is flagged ``unstable`` wherever it is shown.

The first touch is the unstable one on a shared virtual machine: the fill rate of fresh memory was
seen anywhere from 0.7 to 37 GB/s minutes apart, because the hypervisor takes back pages that were
freed a few seconds ago (``tutorial_lib.cpu_memory`` measured 17-20 GB/s against about 1 GB/s).
``tutorial_lib`` keeps freed memory in the process (``cpu_memory.keep_freed_memory``), so a step's
fresh outputs reuse mapped pages, and this probe -- the same allocation -- measures about the warm
rate. Where the memory is not kept, the model charges it as a separate term --
the page faults' *extra* time, fresh fill against warm fill in the same round
(``Ceilings.fault_s_per_byte``) -- not as a roof, and a figure that must not move with the
machine measures its probes in the same rounds as the work it predicts: ``probes`` gives the probes
as plain callables for ``timing.time_rounds``, and ``from_round`` turns one round's times into
``Ceilings``.

**Lookup** (``ceilings_for``): the live ceilings of this very device (by device name), else the
newest results file's ``ceilings`` row for that device name and dtype, else -- for a GPU only --
its datasheet (``spec_ceilings``, labelled "spec"), else None. ``any_of_kind=True`` also accepts
ceilings recorded on *another* device of the same kind (the decision tree asks per kind: "cpu"
or "cuda"); the result says which device it came from.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import itertools
import math
import statistics
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from tutorial_lib import settings
from tutorial_lib.measure import flops
from tutorial_lib.measure.timing import progress_bar, time_fn, time_rounds

FRESH_ALLOC_BYTES = 32 * 2**20  # glibc's largest mmap threshold on 64-bit (mallopt(3)): bigger
#                                 CPU allocations are new pages every time, unless freed memory is kept
UNSTABLE = 0.25  # a ceiling whose rounds spread more than this (max - min over the median) is unstable
CEILINGS = ("peak_flops", "bandwidth", "fill_bandwidth", "first_touch_bandwidth", "overhead_s")
OVERHEAD_REPS = 100  # tiny adds per timed call (amortises the timer's own per-call cost)
COLD_OPERAND_BYTES = 64 * 2**20  # a matmul probe's operand sets in all: twice a 32 MiB last-level cache


@dataclass
class Ceilings:
    """What a device can do, per second: the roofs of the roofline and the cost of one operator."""
    device: str  # "cpu", "cuda:0"
    device_name: str
    dtype: str  # the matmul dtype the peak was measured in
    peak_flops: float  # matmul FLOP/s
    bandwidth: float  # bytes/s read + written, memory already mapped
    overhead_s: float  # seconds per eager operator when the work is tiny (dispatch + launch)
    first_touch_bandwidth: Optional[float] = None  # bytes/s writing freshly mapped memory (CPU)
    fresh_alloc_bytes: Optional[int] = None  # outputs this large are fresh pages (CPU); None: never
    fill_bandwidth: Optional[float] = None  # bytes/s writing memory already mapped (CPU)
    source: str = "measured"  # "measured" (here, now, or in a results file) or "spec" (datasheet)
    threads: Optional[int] = None
    date: str = ""
    rounds: int = 1  # rounds each ceiling is the median of
    # the matmul probes one by one: {n: FLOP/s of an n x n torch.mm} (median over the rounds) -- the
    # peak is the best of them; a smaller or thinner matmul runs at the rate of its size
    matmul_rates: Dict[str, float] = field(default_factory=dict)
    ranges: Dict[str, List[float]] = field(default_factory=dict)  # ceiling -> [min, max] over the rounds
    details: List[dict] = field(default_factory=list)  # every probe's size and rate, per round

    @property
    def async_launch(self) -> bool:
        """GPUs run kernels asynchronously: launch overhead and kernel time overlap."""
        return not str(self.device).startswith("cpu")

    @property
    def ridge(self) -> float:
        """The arithmetic intensity (FLOP/byte) where the two roofs meet."""
        return self.peak_flops / self.bandwidth

    @property
    def fault_s_per_byte(self) -> float:
        """Extra seconds per byte a kernel pays to write memory the OS maps on first touch: fresh
        fill against warm fill (0 where first touch is not slower, or not measured)."""
        if not self.first_touch_bandwidth or not self.fresh_alloc_bytes:
            return 0.0
        warm = self.fill_bandwidth or self.bandwidth
        return max(0.0, 1 / self.first_touch_bandwidth - 1 / warm)

    def matmul_rate(self, shape: Optional[Tuple[int, int, int]] = None) -> float:
        """FLOP/s of a matmul (M, K) @ (K, N): the probes' rate at the square size of the same
        arithmetic intensity, n = 1.5 * 2MKN / (MK + KN + MN) -- the square that does as many
        FLOPs per element it moves (interpolated in log n between the probes, held at the ends).
        A thin matmul (a head of 64, a block of the flash kernel) does few FLOPs per element and
        runs far below the peak. Without a shape, or without per-size probes (a datasheet, an
        older record): the peak."""
        if not shape or not self.matmul_rates:
            return self.peak_flops
        M, K, N = shape
        n_eq = 1.5 * 2 * M * K * N / (M * K + K * N + M * N)
        pts = sorted((int(n), r) for n, r in self.matmul_rates.items())
        if n_eq <= pts[0][0]:
            return pts[0][1]
        for (n0, r0), (n1, r1) in zip(pts, pts[1:]):
            if n_eq <= n1:
                w = math.log(n_eq / n0) / math.log(n1 / n0)
                return r0 + w * (r1 - r0)
        return pts[-1][1]

    def spread(self, ceiling: str) -> Optional[float]:
        """(max - min) / median of ``ceiling`` over the rounds, None with one round."""
        lo_hi, value = self.ranges.get(ceiling), getattr(self, ceiling)
        return None if not lo_hi or not value else (lo_hi[1] - lo_hi[0]) / value

    def unstable(self) -> List[str]:
        """The ceilings whose rounds spread more than ``UNSTABLE``."""
        return [c for c in CEILINGS if (self.spread(c) or 0.0) > UNSTABLE]

    def describe(self) -> str:
        def rate(name: str, v: float, unit: str, scale: float, fmt: str) -> str:
            r = self.ranges.get(name)
            shown = format(v / scale, fmt) + unit
            if r and self.rounds > 1:
                shown += f" ({format(r[0] / scale, fmt)}–{format(r[1] / scale, fmt)}"
                shown += ", unstable)" if name in self.unstable() else ")"
            return shown
        ft = (f", first touch {rate('first_touch_bandwidth', self.first_touch_bandwidth, ' GB/s', 1e9, ',.2f')} "
              f"above {self.fresh_alloc_bytes / 2**20:.0f} MiB" if self.first_touch_bandwidth else "")
        ov = (f", {rate('overhead_s', self.overhead_s, ' µs/op', 1e-6, ',.1f')}" if self.overhead_s
              else ", overhead not known")
        n = f", median of {self.rounds} rounds" if self.rounds > 1 else ""
        return (f"{self.device_name} ({self.source}, {self.dtype}{n}): peak "
                f"{rate('peak_flops', self.peak_flops, ' TFLOP/s', 1e12, ',.3g')}, bandwidth "
                f"{rate('bandwidth', self.bandwidth, ' GB/s', 1e9, ',.1f')}{ft}{ov}; ridge "
                f"{self.ridge:,.1f} FLOP/byte")

    def to_row(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(kind="ceilings", ridge=self.ridge, peak_TFLOPs=self.peak_flops / 1e12,
                 bandwidth_GBs=self.bandwidth / 1e9, overhead_us=self.overhead_s * 1e6,
                 first_touch_GBs=None if self.first_touch_bandwidth is None else self.first_touch_bandwidth / 1e9,
                 unstable=self.unstable())
        return d

    @classmethod
    def from_row(cls, row: dict) -> "Ceilings":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


# ---- the probes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    """One timed call that measures a ceiling: ``amount`` FLOPs, bytes or operators per call."""
    ceiling: str  # one of CEILINGS
    label: str  # what it does, with its size: "mm 2048x2048 float32"
    run: Callable[[], object]
    amount: float
    size: dict  # the size, for the record

    def rate(self, ms: float) -> float:
        """The ceiling's value from one timing of the call (ms): per second, or s/op for overhead."""
        seconds = ms / 1e3
        return seconds / self.amount if self.ceiling == "overhead_s" else self.amount / seconds


def _check_sizes(name: str, values) -> tuple:
    values = tuple(values)
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
        raise ValueError(f"{name}={values!r} must be positive integers")
    return values


def matmul_probes(device, dtype, sizes: Iterable[int]) -> List[Probe]:
    """``torch.mm`` of two n x n matrices (2 n^3 FLOPs) into a preallocated output, per n.

    Each call takes the next of several operand sets, ``COLD_OPERAND_BYTES`` of them in all (more
    than a CPU's last-level cache; a GPU's L2 is smaller still): a matmul in a training step reads
    weights and activations that other work has pushed out of the caches, not the operands of the
    call before. Measured here, a 256 x 256 matmul ran 19 % slower that way, a 512 one 8 %, a 2048
    one the same (``scripts/experiments/cold_operands.py``)."""
    dev, dt = settings.resolve(device, dtype)
    out = []
    for n in _check_sizes("mm_sizes", sizes):
        g = torch.Generator().manual_seed(n)
        k = max(1, math.ceil(COLD_OPERAND_BYTES / (3 * n * n * settings.dtype_bytes(dt))))
        # the outputs written too (randn, not empty): a first pass must not pay their page faults
        sets = [tuple(torch.randn(n, n, generator=g).to(dev, dt) for _ in range(3)) for _ in range(k)]
        turn = itertools.cycle(sets)

        def run(turn=turn):
            a, b, c = next(turn)
            return torch.mm(a, b, out=c)
        out.append(Probe("peak_flops", f"mm {n}x{n} {settings.dtype_name(dt)}", run, 2 * n ** 3,
                         {"n": n, "dtype": settings.dtype_name(dt), "operand_sets": k}))
    return out


def bandwidth_probes(device, nbytes: int) -> List[Probe]:
    """STREAM-style copy (reads n, writes n bytes) and add (reads 2n, writes n) on float32 arrays
    of ``nbytes`` each, outputs preallocated (already mapped)."""
    _check_sizes("stream_bytes", (nbytes,))
    dev = settings.resolve(device)[0]
    n = max(1, nbytes // 4)
    a, b, c = (torch.rand(n, device=dev) for _ in range(3))
    return [Probe("bandwidth", f"copy {nbytes / 2**20:,.0f} MiB", lambda: c.copy_(a), 2 * 4 * n, {"bytes": 4 * n}),
            Probe("bandwidth", f"add {nbytes / 2**20:,.0f} MiB", lambda: torch.add(a, b, out=c), 3 * 4 * n,
                  {"bytes": 4 * n})]


def fill_probes(device, sizes: Iterable[int]) -> List[Probe]:
    """On a CPU, at the largest of ``sizes``: ``fill_`` into a warm buffer and into a fresh
    ``torch.empty`` (its pages mapped by the write when it is at least ``FRESH_ALLOC_BYTES``, unless the
    process keeps freed memory: ``tutorial_lib.cpu_memory``);
    none on a GPU, whose caching allocator hands memory back without the OS."""
    sizes = tuple(sizes)
    dev = settings.resolve(device)[0]
    if dev.type != "cpu" or not sizes:
        return []
    nb = max(_check_sizes("first_touch_sizes", sizes))
    n = max(1, nb // 4)
    warm = torch.empty(n, device=dev)
    out = [Probe("fill_bandwidth", f"fill warm {nb / 2**20:,.0f} MiB", lambda: warm.fill_(1.0), 4 * n,
                 {"bytes": 4 * n})]
    if 4 * n >= FRESH_ALLOC_BYTES:
        out.append(Probe("first_touch_bandwidth", f"fill fresh {nb / 2**20:,.0f} MiB",
                         lambda: torch.empty(n, device=dev).fill_(1.0), 4 * n, {"bytes": 4 * n}))
    return out


def overhead_probe(device) -> Probe:
    """``OVERHEAD_REPS`` eager ``torch.add`` on 8 numbers: what every operator pays before any
    work -- Python, the dispatcher, the allocator and (on a GPU) the launch."""
    dev = settings.resolve(device)[0]
    x = torch.ones(8, device=dev)
    return Probe("overhead_s", "tiny add (8 numbers)", lambda: [torch.add(x, 1.0) for _ in range(OVERHEAD_REPS)],
                 OVERHEAD_REPS, {"elements": 8})


def probes(device=None, dtype=None, mm_sizes: Iterable[int] = (1024, 2048), stream_bytes: int = 128 * 2**20,
           first_touch_sizes: Iterable[int] = (64 * 2**20,)) -> List[Probe]:
    """Every probe, for ``time_rounds`` beside other work (``dtype``: the matmul peak's; default
    bf16 on CUDA, fp32 on a CPU)."""
    return (matmul_probes(device, dtype, mm_sizes) + bandwidth_probes(device, stream_bytes)
            + fill_probes(device, first_touch_sizes) + [overhead_probe(device)])


def rule(ceiling: str, rates: Sequence[float]) -> float:
    """One ceiling from its probes' rates in one round: the largest (a roof is the best a kernel
    reaches); the overhead is its one probe's seconds per operator (the median, were there more)."""
    if not rates:
        raise ValueError(f"{ceiling}: no probe rates to combine")
    return statistics.median(rates) if ceiling == "overhead_s" else max(rates)


def from_round(probe_list: Sequence[Probe], ms: Mapping[str, float], device=None, dtype=None) -> Ceilings:
    """The ceilings of one round: ``ms`` = {probe label: its median ms in that round}, combined by
    each ceiling's ``rule``."""
    dev, dt = settings.resolve(device, dtype)
    rates: Dict[str, List[float]] = {}
    details, mm = [], {}
    for p in probe_list:
        if p.label not in ms:
            continue
        r = p.rate(ms[p.label])
        details.append({"ceiling": p.ceiling, "what": p.label, **p.size, "median_ms": ms[p.label], "rate": r})
        rates.setdefault(p.ceiling, []).append(r)
        if p.ceiling == "peak_flops" and "n" in p.size:
            mm[str(p.size["n"])] = r
    best = {c: rule(c, rs) for c, rs in rates.items()}
    over = best.get("overhead_s", 0.0)
    for p in probe_list:  # a size's rate net of one launch's overhead, which the roofline charges on
        # its own (it is most of a small matmul's time otherwise, and would be counted twice)
        if p.label in ms and p.ceiling == "peak_flops" and "n" in p.size and ms[p.label] / 1e3 > 2 * over:
            mm[str(p.size["n"])] = p.amount / (ms[p.label] / 1e3 - over)
    for need in ("peak_flops", "bandwidth"):
        if need not in best:
            raise ValueError(f"ceilings: no {need} probe was timed in this round (probes: {sorted(ms)})")
    return Ceilings(device=str(dev), device_name=settings.device_name(dev), dtype=settings.dtype_name(dt),
                    peak_flops=best["peak_flops"], bandwidth=best["bandwidth"], overhead_s=best.get("overhead_s", 0.0),
                    first_touch_bandwidth=best.get("first_touch_bandwidth"),
                    fresh_alloc_bytes=FRESH_ALLOC_BYTES if "first_touch_bandwidth" in best else None,
                    fill_bandwidth=best.get("fill_bandwidth"), threads=torch.get_num_threads(),
                    date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), matmul_rates=mm,
                    details=details)


def combine(per_round: Sequence[Ceilings]) -> Ceilings:
    """Ceilings measured in several rounds -> one: each ceiling the median over the rounds, with
    its [min, max] in ``ranges`` and every round's probes in ``details``."""
    if not per_round:
        raise ValueError("combine: no rounds to combine")
    first = per_round[0]
    values, ranges = {}, {}
    for c in CEILINGS:
        vs = [getattr(r, c) for r in per_round if getattr(r, c) is not None]
        if vs:
            values[c] = statistics.median(vs)
            ranges[c] = [min(vs), max(vs)]
    details = [dict(d, round=i) for i, r in enumerate(per_round) for d in r.details]
    mm = {n: statistics.median(r.matmul_rates[n] for r in per_round if n in r.matmul_rates)
          for n in first.matmul_rates}
    return dataclasses.replace(first, **values, rounds=len(per_round), ranges=ranges, matmul_rates=mm,
                               details=details)


def measure_ceilings(device=None, dtype=None, mm_sizes: Iterable[int] = (1024, 2048),
                     stream_bytes: int = 128 * 2**20, first_touch_sizes: Iterable[int] = (64 * 2**20,),
                     min_run_time: float = 0.3, rounds: int = 3, progress: bool = True) -> Ceilings:
    """The device's ceilings, measured now: every probe once per round, ``rounds`` rounds, each
    ceiling the median over the rounds (``ranges``: min–max; ``unstable()``: spread > UNSTABLE).
    ``dtype``: the matmul peak's (default: bf16 on CUDA, fp32 on CPU)."""
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"rounds={rounds!r} must be a positive integer")
    ps = probes(device, dtype, mm_sizes, stream_bytes, first_touch_sizes)
    dev = settings.resolve(device)[0]
    bar = progress_bar(rounds * len(ps), "ceilings", progress)
    times, errors = time_rounds({p.label: p.run for p in ps}, dev, rounds, min_run_time, max_rounds=rounds,
                                bar=bar, warmup=2)
    if bar is not None:
        bar.close()
    if errors:
        raise RuntimeError(f"ceilings: {'; '.join(f'{k}: {v}' for k, v in errors.items())}")
    per_round = [from_round(ps, {label: ts[i] for label, ts in times.items()}, dev, dtype) for i in range(rounds)]
    return combine(per_round)


QUICK_MM, QUICK_COPY_BYTES = 512, 16 * 2**20  # quick_ceilings' probes: a fraction of a second in all


def quick_ceilings(device=None, dtype=None, min_run_time: float = 0.05) -> Ceilings:
    """Rough ceilings in a fraction of a second: one ``QUICK_MM`` matmul, one ``QUICK_COPY_BYTES``
    copy and the overhead probe, each timed once for ``min_run_time`` -- ``source="quick"``. Enough
    to say how long a measurement will take before the real ceilings are measured; never a roof
    to report (a small matmul is below the peak, a 16 MiB copy partly in cache)."""
    dev = settings.resolve(device)[0]
    ps = (matmul_probes(dev, dtype, (QUICK_MM,)) + bandwidth_probes(dev, QUICK_COPY_BYTES)[:1]
          + [overhead_probe(dev)])
    ms = {p.label: time_fn(p.run, dev, min_run_time=min_run_time, warmup=1).median_ms for p in ps}
    return dataclasses.replace(from_round(ps, ms, dev, dtype), source="quick")


# ---- a GPU's datasheet ------------------------------------------------------------------------
def spec_ceilings(device_name: str, dtype="bfloat16", overhead_s: float = 0.0) -> Optional[Ceilings]:
    """A GPU's datasheet roofs (``measure.flops.GPU_SPECS``), labelled "spec"; None when the
    table does not know the GPU, its bandwidth or the dtype. A datasheet states no per-operator
    overhead: it is 0 unless given (a prediction from spec ceilings is a lower bound)."""
    spec = flops.gpu_spec(device_name)
    peak = flops.peak_flops(device_name, dtype)
    if spec is None or peak is None or spec.bandwidth_gbs is None:
        return None
    return Ceilings(device="cuda", device_name=device_name,
                    dtype="tf32" if dtype == "tf32" else settings.dtype_name(dtype), peak_flops=peak,
                    bandwidth=spec.bandwidth_gbs * 1e9, overhead_s=overhead_s, source="spec",
                    details=[{"what": "datasheet", "source": spec.source}])


def spec_rows(dtype: str = "bfloat16") -> List[dict]:
    """The datasheet table, one row per GPU: peak TFLOP/s in ``dtype``, bandwidth, ridge, source."""
    out = []
    for s in flops.GPU_SPECS:
        tf = s.tflops.get(dtype)
        out.append({"gpu": s.name, "dtype": dtype, "peak_TFLOPs": tf, "bandwidth_GBs": s.bandwidth_gbs,
                    "ridge": tf * 1e12 / (s.bandwidth_gbs * 1e9) if tf and s.bandwidth_gbs else None,
                    "source": s.source})
    return out


# ---- the one lookup -----------------------------------------------------------------------------
def doc_ceilings(doc: dict) -> Optional[Ceilings]:
    """The ceilings measured in a results document (its ``ceilings`` row), or None."""
    for r in doc.get("rows", []):
        if r.get("kind") == "ceilings" and not r.get("error"):
            try:
                return Ceilings.from_row(r)
            except TypeError:
                return None
    return None


def _same_dtype(c: Ceilings, dtype: Optional[str]) -> bool:
    return dtype is None or c.dtype == dtype or (c.dtype == "tf32" and dtype == "float32")


def ceilings_for(device_name: str, dtype: Optional[str] = None, docs: Sequence[dict] = (),
                 live: Optional[Ceilings] = None, device_type: str = "cpu",
                 any_of_kind: bool = False) -> Optional[Ceilings]:
    """The ceilings for work on ``device_name`` in ``dtype`` (None: any dtype): ``live`` ones of
    that very device, else the newest results file's for it (``docs`` newest first), else for a
    GPU its datasheet's ("spec"), else None. ``any_of_kind``: a results file of another device of
    the same kind is accepted before the datasheet (the ceilings name their device)."""
    if live is not None and live.device_name == device_name and _same_dtype(live, dtype):
        return live
    kind = "cpu" if str(device_type).startswith("cpu") else "cuda"
    for same_name in (True, False) if any_of_kind else (True,):
        for doc in docs:
            meta = doc.get("meta", {})
            if same_name and meta.get("device_name") != device_name:
                continue
            if not same_name and ("cpu" if str(meta.get("device", "")).startswith("cpu") else "cuda") != kind:
                continue
            c = doc_ceilings(doc)
            if c is not None and _same_dtype(c, dtype):
                return c
    if kind == "cuda":
        return spec_ceilings(device_name, dtype or "bfloat16")
    return None
