"""The roofline: why time is not FLOPs -- a cost model from FLOPs, bytes and kernel launches.

A kernel cannot run faster than the machine's arithmetic allows, nor faster than its memory can
feed it: its time is at least ``max(FLOPs / peak FLOP/s, bytes / bandwidth)`` (Williams, Waterman
and Patterson, "Roofline", CACM 2009). Its *arithmetic intensity* FLOPs / bytes says which roof
it sits under: below the ridge point peak / bandwidth it is memory-bound, above it compute-bound.
Eager PyTorch adds a fixed cost per operator (Python, the dispatcher, a kernel launch), so

    predicted time = sum over kernels of  max(FLOPs / peak, bytes / bandwidth) + overhead

This module has the three parts of that sum:

- **The ceilings, measured** (``measure_ceilings``): peak matmul FLOP/s (a large ``torch.mm`` per
  dtype), memory bandwidth (STREAM-style ``copy`` / ``add`` into a warm buffer) and the per-operator
  overhead (a tiny op, repeated), on CPU or CUDA. On a CPU also the *first-touch* bandwidth:
  writing memory the allocator has just mapped (glibc hands allocations of 32 MiB and more to
  ``mmap``, so every such eager output is new pages, page-faulted one by one). ``spec_ceilings``
  gives a GPU's datasheet numbers (``measure.flops.GPU_SPECS``), labelled "spec".
- **The traffic model** (``traffic_table``): for every component of a training step, forward and
  backward, the kernels the eager implementation launches, each with its matmul FLOPs and the
  bytes it must move at least -- its inputs read once and its outputs written once (for eager
  attention the T x T scores and probabilities, several times). Tested against what PyTorch
  dispatches (``measure.traffic.count_step_traffic``) and against the tensors autograd saves.
- **The prediction** (``predict_step``): each kernel's time from the ceilings, summed per
  component, beside the FLOP-only prediction (all matmul FLOPs at the peak, nothing else).

The formulas follow PyTorch 2.13's CPU operators (its composite RMSNorm, RoPE written as slices
and ``cat``, the CPU flash-attention kernel, AdamW's per-tensor loop). On CUDA the same kernels run
(AdamW is fused there); where a backend runs its own tiled loops (``tiled``, ``local``, ``flex``) the
kernels are an estimate and the row says ``exact=False``.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

import torch

from tutorial_lib import attention, settings
from tutorial_lib.measure import flops as F
from tutorial_lib.measure.timing import progress_bar, time_fn
from tutorial_lib.model import GPTConfig

PHASES = ("forward", "backward", "optimizer")
FRESH_ALLOC_BYTES = 32 * 2**20  # glibc's largest mmap threshold on 64-bit (mallopt(3)): bigger
#                                 CPU allocations are new pages every time


# ---- the ceilings ------------------------------------------------------------------------------
@dataclass
class Ceilings:
    """What a device can do, per second: the roofs of the roofline and the cost of one operator."""
    device: str  # "cpu", "cuda:0"
    device_name: str
    dtype: str  # the matmul dtype the peak was measured in
    peak_flops: float  # matmul FLOP/s
    bandwidth: float  # bytes/s, reading and writing memory that is already mapped
    overhead_s: float  # seconds per eager operator when the work is tiny (dispatch + launch)
    first_touch_bandwidth: Optional[float] = None  # bytes/s writing freshly mapped memory (CPU)
    fresh_alloc_bytes: Optional[int] = None  # outputs this large are fresh pages (CPU); None: never
    source: str = "measured"  # "measured" (here, now, or in a results file) or "spec" (datasheet)
    threads: Optional[int] = None
    date: str = ""
    details: List[dict] = field(default_factory=list)  # every measurement behind the numbers

    @property
    def async_launch(self) -> bool:
        """GPUs run kernels asynchronously: launch overhead and kernel time overlap."""
        return not str(self.device).startswith("cpu")

    @property
    def ridge(self) -> float:
        """The arithmetic intensity (FLOP/byte) where the two roofs meet."""
        return self.peak_flops / self.bandwidth

    def describe(self) -> str:
        ft = (f", first touch {self.first_touch_bandwidth / 1e9:,.2f} GB/s above "
              f"{self.fresh_alloc_bytes / 2**20:.0f} MiB" if self.first_touch_bandwidth else "")
        ov = f", {self.overhead_s * 1e6:,.1f} µs/op" if self.overhead_s else ", overhead not known"
        return (f"{self.device_name} ({self.source}, {self.dtype}): peak {self.peak_flops / 1e12:,.3g} "
                f"TFLOP/s, bandwidth {self.bandwidth / 1e9:,.1f} GB/s{ft}{ov}; ridge "
                f"{self.ridge:,.1f} FLOP/byte")

    def to_row(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(kind="ceilings", ridge=self.ridge, peak_TFLOPs=self.peak_flops / 1e12,
                 bandwidth_GBs=self.bandwidth / 1e9, overhead_us=self.overhead_s * 1e6,
                 first_touch_GBs=None if self.first_touch_bandwidth is None else self.first_touch_bandwidth / 1e9)
        return d

    @classmethod
    def from_row(cls, row: dict) -> "Ceilings":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


def _check_positive_ints(name: str, values) -> Tuple[int, ...]:
    values = tuple(values)
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
        raise ValueError(f"{name}={values!r} must be positive integers")
    return values


def measure_peak_flops(device=None, dtype=None, sizes: Iterable[int] = (1024, 2048, 4096),
                       min_run_time: float = 0.3) -> Tuple[float, List[dict]]:
    """The best FLOP/s of ``torch.mm`` on n x n matrices over ``sizes``: (peak, one row per n).

    A matmul of two n x n matrices does 2 n^3 FLOPs; large ones reach the machine's matmul peak."""
    sizes = _check_positive_ints("sizes", sizes)
    dev, dt = settings.resolve(device, dtype)
    rows = []
    for n in sizes:
        a, b = (torch.randn(n, n, device=dev).to(dt) for _ in range(2))
        t = time_fn(lambda: torch.mm(a, b), dev, min_run_time=min_run_time, warmup=2)
        rows.append({"what": "mm", "n": n, "dtype": settings.dtype_name(dt), "median_ms": t.median_ms,
                     "flops_per_s": 2 * n ** 3 / (t.median_ms / 1e3)})
    return max(r["flops_per_s"] for r in rows), rows


def measure_bandwidth(device=None, nbytes: int = 256 * 2**20, min_run_time: float = 0.3
                      ) -> Tuple[float, List[dict]]:
    """STREAM-style bandwidth on float32 arrays of ``nbytes`` each, outputs preallocated (warm):
    copy (reads n, writes n bytes) and add (reads 2n, writes n). Returns (the best, the rows)."""
    _check_positive_ints("nbytes", (nbytes,))
    dev = settings.resolve(device)[0]
    n = max(1, nbytes // 4)
    a, b, c = (torch.rand(n, device=dev) for _ in range(3))
    rows = []
    for what, fn, moved in (("copy", lambda: c.copy_(a), 2 * n * 4),
                            ("add", lambda: torch.add(a, b, out=c), 3 * n * 4)):
        t = time_fn(fn, dev, min_run_time=min_run_time, warmup=2)
        rows.append({"what": what, "bytes": n * 4, "median_ms": t.median_ms,
                     "bytes_per_s": moved / (t.median_ms / 1e3)})
    return max(r["bytes_per_s"] for r in rows), rows


def measure_first_touch(device=None, sizes: Iterable[int] = (16 * 2**20, 64 * 2**20),
                        min_run_time: float = 0.3) -> Tuple[Optional[float], List[dict]]:
    """On a CPU: bytes/s of ``torch.empty(n).fill_(1)`` -- allocate and write n bytes -- at sizes
    below and above ``FRESH_ALLOC_BYTES``, beside filling a warm buffer. Above the threshold each
    call gets new pages from the OS, and the first write to each page faults. Returns (the
    first-touch bandwidth at the largest size, the rows); (None, []) on a GPU, whose caching
    allocator hands memory back without the OS. None too when no size reaches the threshold."""
    sizes = tuple(sizes)
    if sizes:
        _check_positive_ints("sizes", sizes)
    dev = settings.resolve(device)[0]
    if dev.type != "cpu" or not sizes:
        return None, []
    rows = []
    for nb in sizes:
        n = max(1, nb // 4)
        warm = torch.empty(n, device=dev)
        for what, fn in (("fill fresh", lambda: torch.empty(n, device=dev).fill_(1.0)),
                         ("fill warm", lambda: warm.fill_(1.0))):
            t = time_fn(fn, dev, min_run_time=min_run_time, warmup=2)
            rows.append({"what": what, "bytes": n * 4, "median_ms": t.median_ms,
                         "bytes_per_s": n * 4 / (t.median_ms / 1e3),
                         "above_threshold": n * 4 >= FRESH_ALLOC_BYTES})
    fresh = [r for r in rows if r["what"] == "fill fresh" and r["above_threshold"]]
    return (fresh[-1]["bytes_per_s"] if fresh else None), rows


def measure_overhead(device=None, min_run_time: float = 0.3) -> Tuple[float, List[dict]]:
    """Seconds per call of a tiny eager op (``torch.add`` on 8 numbers): what every operator pays
    before any work -- Python, the dispatcher, the allocator and (on a GPU) the launch."""
    dev = settings.resolve(device)[0]
    x = torch.ones(8, device=dev)
    reps = 100  # amortise the timer's own per-call cost
    t = time_fn(lambda: [torch.add(x, 1.0) for _ in range(reps)], dev, min_run_time=min_run_time, warmup=2)
    s = t.median_ms / 1e3 / reps
    return s, [{"what": "tiny add", "elements": 8, "seconds_per_op": s}]


def measure_ceilings(device=None, dtype=None, mm_sizes: Iterable[int] = (1024, 2048, 4096),
                     stream_bytes: int = 256 * 2**20,
                     first_touch_sizes: Iterable[int] = (16 * 2**20, 64 * 2**20),
                     min_run_time: float = 0.3, progress: bool = True) -> Ceilings:
    """The device's roofs, measured now: peak matmul FLOP/s in ``dtype`` (default: bf16 on CUDA,
    fp32 on CPU), bandwidth, first-touch bandwidth (CPU) and per-operator overhead.

    ``Ceilings.details`` keeps every measurement (sizes and times) so a results file can show them."""
    dev, dt = settings.resolve(device, dtype)
    bar = progress_bar(4, "ceilings", progress)
    peak, r1 = measure_peak_flops(dev, dt, mm_sizes, min_run_time)
    bar is None or bar.update(1)
    bw, r2 = measure_bandwidth(dev, stream_bytes, min_run_time)
    bar is None or bar.update(1)
    ft, r3 = measure_first_touch(dev, first_touch_sizes, min_run_time)
    bar is None or bar.update(1)
    ov, r4 = measure_overhead(dev, min_run_time)
    if bar is not None:
        bar.update(1)
        bar.close()
    return Ceilings(device=str(dev), device_name=settings.device_name(dev), dtype=settings.dtype_name(dt),
                    peak_flops=peak, bandwidth=bw, overhead_s=ov, first_touch_bandwidth=ft,
                    fresh_alloc_bytes=FRESH_ALLOC_BYTES if dev.type == "cpu" else None,
                    threads=torch.get_num_threads(),
                    date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    details=r1 + r2 + r3 + r4)


def spec_ceilings(device_name: str, dtype="bfloat16", overhead_s: float = 0.0) -> Optional[Ceilings]:
    """A GPU's datasheet roofs (``measure.flops.GPU_SPECS``), labelled "spec"; None when the
    table does not know the GPU, its bandwidth or the dtype. A datasheet states no per-operator
    overhead: it is 0 unless given (a prediction from spec ceilings is a lower bound)."""
    spec = F.gpu_spec(device_name)
    peak = F.peak_flops(device_name, dtype)
    if spec is None or peak is None or spec.bandwidth_gbs is None:
        return None
    return Ceilings(device="cuda", device_name=device_name, dtype=settings.dtype_name(dtype) if dtype != "tf32"
                    else "tf32", peak_flops=peak, bandwidth=spec.bandwidth_gbs * 1e9, overhead_s=overhead_s,
                    source="spec", details=[{"what": "datasheet", "source": spec.source}])


def spec_rows(dtype: str = "bfloat16") -> List[dict]:
    """The datasheet table, one row per GPU: peak TFLOP/s in ``dtype``, bandwidth, ridge, source."""
    out = []
    for s in F.GPU_SPECS:
        tf = s.tflops.get(dtype)
        out.append({"gpu": s.name, "dtype": dtype, "peak_TFLOPs": tf, "bandwidth_GBs": s.bandwidth_gbs,
                    "ridge": tf * 1e12 / (s.bandwidth_gbs * 1e9) if tf and s.bandwidth_gbs else None,
                    "source": s.source})
    return out


# ---- the traffic model: kernels per component ---------------------------------------------------
@dataclass(frozen=True)
class Kernel:
    """``count`` launches of one operator, each reading ``read`` and writing ``write`` bytes.

    ``alloc``: the sizes of the new outputs each launch allocates (default: one output of ``write``
    bytes; none for in-place operators, whose names end in "_"): on a CPU, allocations of
    ``Ceilings.fresh_alloc_bytes`` and more are written at the first-touch rate."""
    op: str
    count: int
    read: int
    write: int
    flops: int = 0  # matmul FLOPs per launch (elementwise work is memory-bound: its bytes count)
    alloc: Optional[Tuple[int, ...]] = None

    @property
    def allocs(self) -> Tuple[int, ...]:
        if self.alloc is not None:
            return self.alloc
        return () if self.op.endswith("_") else (self.write,)

    def fresh_bytes(self, threshold: Optional[int]) -> int:
        """Bytes each launch writes into new allocations of at least ``threshold`` bytes."""
        return 0 if threshold is None else sum(a for a in self.allocs if a >= threshold)

    def roof_seconds(self, c: Ceilings) -> float:
        """One launch's time under the roofs of ``c``, without the per-operator overhead."""
        fresh = self.fresh_bytes(c.fresh_alloc_bytes) if c.first_touch_bandwidth else 0
        t = max(self.flops / c.peak_flops, (self.read + self.write - fresh) / c.bandwidth)
        return t + (fresh / c.first_touch_bandwidth if fresh else 0.0)

    def seconds(self, c: Ceilings) -> float:
        """This kernel's launches on ``c``: on a CPU each runs after its operator's overhead; on
        a GPU the CPU queues launches ahead of the kernels, so a launch costs the longer of the two."""
        t = self.roof_seconds(c)
        return self.count * (max(t, c.overhead_s) if c.async_launch else t + c.overhead_s)


@dataclass(frozen=True)
class Component:
    """The kernels of one profiler scope in one phase of a training step (all layers)."""
    scope: str  # a tutorial_lib.scopes name, "other" or "optimizer"
    phase: str  # forward | backward | optimizer
    kernels: Tuple[Kernel, ...]
    other_flops: int = 0  # elementwise FLOP estimate (cost_table's), for the roofline's x axis
    exact: bool = True  # False where the kernels are an estimate (tiled/local/flex loops)

    @property
    def flops(self) -> int:
        """Matmul FLOPs (as the kernels do them)."""
        return sum(k.count * k.flops for k in self.kernels)

    @property
    def read(self) -> int:
        return sum(k.count * k.read for k in self.kernels)

    @property
    def write(self) -> int:
        return sum(k.count * k.write for k in self.kernels)

    @property
    def bytes(self) -> int:
        return self.read + self.write

    @property
    def n_kernels(self) -> int:
        return sum(k.count for k in self.kernels)

    @property
    def roofline_flops(self) -> int:
        """The FLOPs that place it on the roofline: its matmul FLOPs, or where it has none (norms,
        activations, the loss) the elementwise estimate -- so every component has an intensity."""
        return self.flops or self.other_flops

    @property
    def intensity(self) -> float:
        """``roofline_flops`` per byte moved."""
        return self.roofline_flops / self.bytes if self.bytes else math.inf

    def seconds(self, c: Ceilings) -> float:
        return sum(k.seconds(c) for k in self.kernels)

    def bound(self, c: Ceilings) -> str:
        """What most of this component's predicted time is: "compute" (matmul FLOPs at the peak),
        "memory" (bytes at the bandwidth) or "overhead" (per-operator costs)."""
        parts = {"compute": 0.0, "memory": 0.0, "overhead": 0.0}
        for k in self.kernels:
            roof = k.roof_seconds(c)
            if c.async_launch and c.overhead_s > roof:
                parts["overhead"] += k.count * c.overhead_s
                continue
            parts["compute" if k.flops and k.flops / c.peak_flops >= roof else "memory"] += k.count * roof
            if not c.async_launch:
                parts["overhead"] += k.count * c.overhead_s
        return max(parts, key=parts.get)


def linear_kernels(N: int, fan_in: int, fan_out: int, e: int, x_bytes: int, bias: bool, n: int = 1
            ) -> Tuple[List[Kernel], List[Kernel]]:
    """(forward, backward) kernels of ``n`` Linear layers on N tokens. Weights are fp32; under
    autocast (e < 4) each forward casts its weight (and bias, and an fp32 input) to the compute
    dtype, and backward casts the gradients back."""
    lp, W = e < 4, fan_in * fan_out
    f = 2 * N * fan_in * fan_out
    fwd, bwd = [], []
    if lp:
        fwd.append(Kernel("_to_copy", n, 4 * W, e * W))
        if bias:
            fwd.append(Kernel("_to_copy", n, 4 * fan_out, e * fan_out))
        if x_bytes == 4:
            fwd.append(Kernel("_to_copy", n, 4 * N * fan_in, e * N * fan_in))
    b = e * fan_out if bias else 0
    fwd.append(Kernel("addmm" if bias else "mm", n, e * (N * fan_in + W) + b, e * N * fan_out, f))
    bwd.append(Kernel("mm", n, e * (N * fan_out + N * fan_in), e * W, f))  # grad weight
    bwd.append(Kernel("mm", n, e * (N * fan_out + W), e * N * fan_in, f))  # grad input
    if bias:
        bwd.append(Kernel("sum", n, e * N * fan_out, e * fan_out))
    if lp:
        bwd.append(Kernel("_to_copy", n, e * W, 4 * W))
        if bias:
            bwd.append(Kernel("_to_copy", n, e * fan_out, 4 * fan_out))
        if x_bytes == 4:
            bwd.append(Kernel("_to_copy", n, e * N * fan_in, 4 * N * fan_in))
    return fwd, bwd


def rope_kernels(M: int, T: int, D: int, e: int, L: int) -> Tuple[List[Kernel], List[Kernel]]:
    """RoPE on one (B, heads, T, D) tensor of M elements, in all L layers: x1*cos - x2*sin and
    x1*sin + x2*cos on the halves, then ``cat``. The cos/sin tables are (T, D/2)."""
    half, tab = e * M // 2, e * T * (D // 2)
    fwd = ([Kernel("_to_copy", 2 * L, 4 * T * (D // 2), tab)] if e < 4 else []) + [
        Kernel("mul", 4 * L, half + tab, half), Kernel("sub", L, 2 * half, half),
        Kernel("add", L, 2 * half, half), Kernel("cat", L, 2 * half, 2 * half)]
    bwd = [Kernel("mul", 4 * L, half + tab, half), Kernel("neg", L, half, half),
           Kernel("add", 2 * L, 2 * half, half),  # x1 and x2 each feed two products
           Kernel("slice_backward", 2 * L, half, 2 * half),  # the halves back to full width
           Kernel("add", L, 4 * half, 2 * half)]
    return fwd, bwd


def mask_kernels(T: int, window: Optional[int], L: int) -> List[Kernel]:
    """Building the (T, T) bool causal mask (``attention.reference.causal_mask``) in each layer of
    eager attention, and inverting it: two position vectors, one comparison to (T, T) bool, and with
    a window the vector (query - window) compared and and-ed in place. (SDPA's additive mask comes
    from ``shared_mask``'s cache: built once per process, not per step, so no kernels here.)"""
    ks = [Kernel("arange", 2 * L, 0, 8 * T), Kernel("le", L, 16 * T, T * T)]
    if window is not None:
        ks += [Kernel("sub", L, 8 * T, 8 * T), Kernel("gt", L, 16 * T, T * T),
               Kernel("bitwise_and_", L, 2 * T * T, T * T)]
    return ks + [Kernel("bitwise_not", L, T * T, T * T)]


def contiguous_copy_needed(heads: int, T: int) -> bool:
    """Whether a (B, heads, T, D) tensor and its (B, T, heads, D) transpose differ in memory
    layout, so that turning one into the other copies it (not when heads or T is 1)."""
    return heads > 1 and T > 1


def batched_copy_needed(B: int, heads: int, T: int) -> bool:
    """Whether a transposed view (B, heads, T, D) of a (B, T, heads, D) tensor must be copied to
    become the (B * heads, T, D) batch of a ``bmm`` (its B and heads dimensions merge without a
    copy only when one of B, heads, T is 1)."""
    return B > 1 and heads > 1 and T > 1


def attention_core_kernels(c: GPTConfig, B: int, T: int, e: int, device_type: str
                    ) -> Tuple[List[Kernel], List[Kernel], bool]:
    """(forward, backward, exact) kernels of the attention core in all layers."""
    L, H, Hkv, D = c.n_layer, c.n_head, c.kv_heads, c.head_dim
    q, kv = e * B * H * T * D, e * B * Hkv * T * D  # bytes of q (and out), of k (and v)
    lse = 4 * B * H * T  # the log-sum-exp a flash kernel keeps per query (fp32)
    backend = attention.get(c.attn_backend)
    pairs = backend.computed_pairs(T, c.window, c.tile_size, device_type)
    pf = 2 * B * H * D * pairs  # one of the two products (QK^T or PV) over the computed pairs
    rope = c.pos == "rope"
    fwd: List[Kernel] = []
    bwd: List[Kernel] = []
    if c.attn_backend == "eager":
        tt, rep = e * B * H * T * T, Hkv != H
        # repeat_kv expands K and V to every query head; reshaping the expansion copies it, except
        # for one K/V head in a batch of one, where bmm reads the shared head in place
        shared = rep and Hkv == 1 and B == 1
        kop = kv if shared else q  # bytes of the K (and V) operand bmm reads
        if rep and not shared:
            fwd.append(Kernel("clone", 2 * L, kv, q))
        # bmm wants (B*H, T, D) operands: q, k, v still transposed views of (B, T, H, D) are
        # copied first (RoPE's cat already made q and k contiguous)
        views = ([] if rope else [H]) + ([] if rep else ([] if rope else [Hkv]) + [Hkv])
        copies = sum(batched_copy_needed(B, h, T) for h in views)
        if copies:
            fwd.append(Kernel("clone", copies * L, q, q))
        fwd += [Kernel("bmm", L, q + kop, tt, pf), Kernel("mul", L, tt, tt)]  # scores, scale
        fwd += mask_kernels(T, c.window, L)
        fwd += [Kernel("masked_fill", L, tt + T * T, tt), Kernel("_softmax", L, tt, tt),
                Kernel("bmm", L, tt + kop, q, pf)]
        if batched_copy_needed(B, H, T):  # the output's gradient, a transposed view, made contiguous
            bwd.append(Kernel("clone", L, q, q))
        bwd += [Kernel("bmm", L, q + kop, tt, pf),  # dP = dO V^T
                Kernel("bmm", 2 * L, tt + q, q, pf),  # dV = P^T dO, dK = dS^T Q
                Kernel("bmm", L, tt + kop, q, pf),  # dQ = dS K
                Kernel("_softmax_backward_data", L, 2 * tt, tt), Kernel("masked_fill", L, tt + T * T, tt),
                Kernel("mul", L, tt, tt)]
        if rep:
            bwd.append(Kernel("sum", 2 * L, q, kv))  # repeat_kv backward: sum over the copies
        exact = True
    elif c.attn_backend == "sdpa":
        masked = c.window is not None
        m = e * T * T if masked else 0  # the cached additive mask, read by every layer
        fwd.append(Kernel("scaled_dot_product_flash_attention", L, q + 2 * kv + m, q + lse, 2 * pf, (q, lse)))
        # backward recomputes the scores, then dV, dP, dQ, dK: bwd_matmuls() products over the pairs
        bwd.append(Kernel("scaled_dot_product_flash_attention_backward", L, 3 * q + 2 * kv + lse + m,
                          q + 2 * kv, backend.bwd_matmuls() * pf, (q, kv, kv)))
        exact = True
    else:  # a kernel of its own: read q, k, v, write out (+ lse); backward reads them again
        n_calls = {"local": 1 + 2 * c.n_rep, "tiled": _tile_pairs(T, c.tile_size, c.window),
                   "flex": 1}.get(c.attn_backend, 1)
        fwd.append(Kernel(f"{c.attn_backend} attention", L, q + 2 * kv, q + lse, 2 * pf, (q, lse)))
        if n_calls > 1:  # its other launches (tiles, merges): overhead only
            fwd.append(Kernel(f"{c.attn_backend} tiles", L * (n_calls - 1) * (4 if c.attn_backend == "tiled"
                                                                              else 3), 0, 0))
        bwd.append(Kernel(f"{c.attn_backend} attention backward", L, 3 * q + 2 * kv + lse, q + 2 * kv,
                          backend.bwd_matmuls() * pf, (q, kv, kv)))
        if n_calls > 1:
            bwd.append(Kernel(f"{c.attn_backend} tiles backward", L * (n_calls - 1) * 6, 0, 0))
        exact = False
    # out.transpose(1, 2).contiguous(): a copy unless the kernel wrote the output in (B, T, H, D)
    # order already (the CPU flash kernel follows q's layout: a transposed view without RoPE)
    if contiguous_copy_needed(H, T) and (c.attn_backend != "sdpa" or rope):
        fwd.append(Kernel("clone", L, q, q))
    return fwd, bwd, exact


def _tile_pairs(T: int, tile: int, window: Optional[int]) -> int:
    n = -(-T // tile)
    if window is None:
        return n * (n + 1) // 2
    w = -(-window // tile) + 1
    return sum(min(i + 1, w) for i in range(n))


def norm_kernels(c: GPTConfig, N: int, n: int) -> Tuple[List[Kernel], List[Kernel]]:
    """``n`` norms over (N, C) in fp32 (the residual stream's dtype, also under autocast)."""
    C, x, r = c.n_embd, 4 * N * c.n_embd, 4 * N
    if c.norm == "layernorm":
        wb = 4 * C * (2 if c.bias else 1)
        fwd = [Kernel("native_layer_norm", n, x + wb, x + 2 * r, alloc=(x, r, r))]
        bwd = [Kernel("native_layer_norm_backward", n, 2 * x + 2 * r + 4 * C * 2, x + wb,
                      alloc=(x,) + (4 * C,) * (2 if c.bias else 1))]
        return fwd, bwd
    # RMSNorm, PyTorch's composite: x * rsqrt(mean(x^2) + eps) * weight
    fwd = [Kernel("pow", n, x, x), Kernel("mean", n, x, r), Kernel("add_", n, r, r),
           Kernel("rsqrt", n, r, r), Kernel("mul", n, x + r, x), Kernel("mul", n, x + 4 * C, x)]
    bwd = [Kernel("mul", n, x + 4 * C, x), Kernel("mul", 3 * n, 2 * x, x), Kernel("sum", n, x, 4 * C),
           Kernel("mul", n, x + r, x), Kernel("sum", n, x, r), Kernel("pow", n, r, r), Kernel("mul", n, r, r),
           Kernel("mul", n, 2 * r, r), Kernel("div", n, r, x), Kernel("pow", n, x, x), Kernel("mul", n, x, x),
           Kernel("add", n, 2 * x, x)]  # x feeds both x^2 and x * rsqrt: its two gradients add
    return fwd, bwd


def adamw_kernels(param_sizes: List[int], device_type: str) -> List[Kernel]:
    """AdamW's step on fp32 parameters of these element counts: PyTorch's per-tensor loop on a CPU
    (9 operators per tensor, 13 reads and 8 writes of the tensor's size), one fused kernel per
    step on CUDA (reads p, g, m, v; writes p, m, v)."""
    if device_type == "cuda":
        P = 4 * sum(param_sizes)
        return [Kernel("_foreach_add_", 1, 4 * len(param_sizes), 4 * len(param_sizes)),
                Kernel("_fused_adamw_", 1, 4 * P, 3 * P)]
    ks = []
    for n in param_sizes:
        p = 4 * n
        ks += [Kernel("add_", 1, 4, 4), Kernel("mul_", 2, p, p), Kernel("lerp_", 1, 2 * p, p),
               Kernel("addcmul_", 1, 3 * p, p), Kernel("sqrt", 1, p, p), Kernel("div", 1, p, p),
               Kernel("add_", 1, p, p), Kernel("addcdiv_", 1, 3 * p, p)]
    return ks


def param_sizes(c: GPTConfig) -> List[int]:
    """Element counts of the model's parameter tensors, in ``GPT.parameters()`` order (a tied
    head counted once): what AdamW loops over."""
    C, H, Hkv, D, Hid, V = c.n_embd, c.n_head, c.kv_heads, c.head_dim, c.mlp_hidden, c.padded_vocab_size
    norm = [C] + ([C] if c.norm == "layernorm" and c.bias else [])  # weight (+ bias)

    def linear(fan_in, fan_out):
        return [fan_in * fan_out] + ([fan_out] if c.bias else [])

    block = norm + linear(C, H * D) + linear(C, Hkv * D) + linear(C, Hkv * D) + linear(H * D, C) + norm
    block += linear(C, Hid) * (2 if c.mlp == "swiglu" else 1) + linear(Hid, C)
    return ([V * C] + ([c.block_size * C] if c.pos == "learned" else []) + block * c.n_layer + norm
            + ([] if c.tie_embeddings else [V * C]))


def chunked_loss_kernels(N: int, C: int, V: int, chunk: int, e: int, liger: bool
                         ) -> Dict[Tuple[str, str], List[Kernel]]:
    """The kernels of ``tutorial_lib.loss.chunked_linear_cross_entropy`` on N fp32 hidden states,
    an fp32 (V, C) head and int64 targets, chunk by chunk (``chunk`` tokens; the last chunk may be
    shorter), in compute dtype ``e`` bytes (autocast casts the hidden states and the weight once per
    pass). Matmuls are charged to "lm_head", the rest to "loss", forward and backward, as the
    Function scopes them. ``liger``: gradients made in forward, backward only scales them."""
    lp = e < 4
    sizes = [min(chunk, N - s) for s in range(0, N, chunk)]
    out: Dict[Tuple[str, str], List[Kernel]] = {}

    def add(scope, phase, *ks):
        out.setdefault((scope, phase), []).extend(ks)

    def per_chunk(phase: str, recompute: bool):
        """A chunk's logits (forward: its loss; with gradients: softmax - one_hot, two matmuls)."""
        for k, n in ((k, sizes.count(k)) for k in dict.fromkeys(sizes)):
            add("lm_head", phase, Kernel("mm", n, e * (k * C + V * C), e * k * V, 2 * k * C * V))
            z = 4 * k * V
            if lp:
                add("loss", phase, Kernel("_to_copy", n, e * k * V, z))
            add("loss", phase, Kernel("clamp", n, 8 * k, 8 * k))  # the targets, ignored ones at 0
            if not recompute:  # forward: log-sum-exp, the target's logit, the chunk's loss
                add("loss", phase, Kernel("logsumexp", n, z, 4 * k), Kernel("gather", n, 12 * k, 4 * k),
                    Kernel("sub", n, 8 * k, 4 * k), Kernel("scalar_tensor", n, 0, 4),
                    Kernel("where", n, k + 4 * k + 4, 4 * k), Kernel("sum", n, 4 * k, 4),
                    Kernel("add_", n, 8, 4))
                if not liger:
                    add("loss", phase, Kernel("copy_", n, 8 * k, 4 * k))  # keep the log-sum-exp
                    continue
            # d loss / d logits, in place: softmax (from the log-sum-exp), minus the one-hot target, scaled
            add("loss", phase, Kernel("sub_", n, z + 4 * k, z), Kernel("exp_", n, z, z),
                Kernel("_to_copy", n, k, 4 * k), Kernel("neg", n, 4 * k, 4 * k),
                Kernel("scatter_add_", n, z + 8 * k + 4 * k, z), Kernel("_to_copy", n, k, 4 * k),
                Kernel("mul", n, 4 * k + 4, 4 * k), Kernel("mul_", n, z + 4 * k, z))
            if lp:
                add("loss", phase, Kernel("_to_copy", n, z, e * k * V))
            # the two gradients' matmuls; the weight's accumulates over chunks in fp32
            add("lm_head", phase, Kernel("mm", n, e * (k * V + V * C), e * k * C, 2 * k * V * C),
                Kernel("copy_", n, 4 * k * C + e * k * C, 4 * k * C))
            if lp:
                add("lm_head", phase, Kernel("mm", n, e * (k * V + k * C), e * V * C, 2 * k * V * C),
                    Kernel("_to_copy", n, e * V * C, 4 * V * C), Kernel("add_", n, 8 * V * C, 4 * V * C))
            else:
                add("lm_head", phase, Kernel("addmm", n, 4 * (2 * V * C + k * V + k * C), 4 * V * C,
                                             2 * k * V * C, alloc=()))

    # forward: the casts, which targets count, the loss's accumulator
    if lp:
        add("loss", "forward", Kernel("_to_copy", 1, 4 * N * C, e * N * C), Kernel("_to_copy", 1, 4 * V * C, e * V * C))
    add("loss", "forward", Kernel("ne", 1, 8 * N, N), Kernel("sum", 1, N, 8), Kernel("zeros", 1, 0, 4))
    if liger:  # the gradient buffer and 1 / (targets that count)
        add("loss", "forward", Kernel("zeros", 1, 0, 4 * V * C), Kernel("clamp", 1, 8, 8),
            Kernel("_to_copy", 1, 8, 4), Kernel("reciprocal", 1, 4, 4), Kernel("mul", 1, 4, 4))
    per_chunk("forward", recompute=False)
    add("loss", "forward", Kernel("div", 1, 12, 4))  # the mean
    if liger:
        add("loss", "backward", Kernel("mul", 1, 4 * N * C + 4, 4 * N * C), Kernel("mul", 1, 4 * V * C + 4, 4 * V * C))
        return out
    # backward: d loss / n_valid, the weight cast again, a zeroed fp32 weight gradient; then recompute
    if lp:
        add("loss", "backward", Kernel("_to_copy", 1, 4 * V * C, e * V * C))
    add("loss", "backward", Kernel("ne", 1, 8 * N, N), Kernel("clamp", 1, 8, 8), Kernel("_to_copy", 1, 8, 4),
        Kernel("div", 1, 8, 4), Kernel("zeros", 1, 0, 4 * V * C))
    per_chunk("backward", recompute=True)
    return out


def traffic_table(config: GPTConfig, batch_size: int, seq_len: int, dtype="float32",
                  device_type: str = "cpu", optimizer: bool = True, grad_clip: bool = False
                  ) -> List[Component]:
    """The kernels of one training step of ``config`` on a (batch_size, seq_len) batch, one
    ``Component`` per (scope, phase), all layers summed.

    ``dtype``: the compute dtype (bf16/fp16 = autocast on fp32 weights); ``optimizer`` adds
    AdamW's step, ``grad_clip`` the global-norm clipping ``train`` does before it."""
    for name, v in (("batch_size", batch_size), ("seq_len", seq_len)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    c = config
    e = settings.dtype_bytes(dtype)
    B, T, L, C = batch_size, seq_len, c.n_layer, c.n_embd
    H, Hkv, D, Hid, V = c.n_head, c.kv_heads, c.head_dim, c.mlp_hidden, c.padded_vocab_size
    N = B * T
    cpu = device_type == "cpu"
    rope = c.pos == "rope"
    other = {r.scope or "other": 0 for r in F.cost_table(c, B, T, e, device_type)}
    for r in F.cost_table(c, B, T, e, device_type):
        other[r.scope or "other"] += r.fwd_other_flops
    rows: Dict[Tuple[str, str], List[Kernel]] = {}
    exact_core = True

    def add(scope: str, phase: str, kernels: Iterable[Kernel]):
        rows.setdefault((scope, phase), []).extend(k for k in kernels if k.count)

    # embedding: gather one row per token (and per position); backward writes a dense table
    add("embedding", "forward", [Kernel("embedding", 1, 8 * N + 4 * N * C, 4 * N * C)])
    add("embedding", "backward", [Kernel("embedding_dense_backward", 1, 4 * N * C + 8 * N, 4 * V * C)])
    if c.tie_embeddings:  # the head's gradient and the embedding's land on one tensor: add them
        add("embedding", "backward", [Kernel("add", 1, 8 * V * C, 4 * V * C)])
    if c.pos == "learned":
        add("embedding", "forward", [Kernel("embedding", 1, 8 * T + 4 * T * C, 4 * T * C)])
        add("embedding", "backward", [Kernel("embedding_dense_backward", 1, 4 * T * C + 8 * T,
                                             4 * c.block_size * C)])
        add("other", "forward", [Kernel("arange", 1, 0, 8 * T), Kernel("add", 1, 4 * N * C + 4 * T * C, 4 * N * C)])
        add("other", "backward", [Kernel("sum", 1, 4 * N * C, 4 * T * C)])

    # norms: two per block and the final one; the residual stream's gradient meets the norm's
    f, b = norm_kernels(c, N, 2 * L + 1)
    add("norm", "forward", f)
    add("norm", "backward", b + [Kernel("add", 2 * L, 8 * N * C, 4 * N * C)])

    # attention: q/k/v projections from the (fp32) norm output; their input gradients add up
    for fan_out in (H * D, Hkv * D, Hkv * D):
        f, b = linear_kernels(N, C, fan_out, e, 4, c.bias, L)
        add("attention.qkv", "forward", f)
        add("attention.qkv", "backward", b)
    add("attention.qkv", "backward", [Kernel("add", 2 * L, 8 * N * C, 4 * N * C)])
    if rope:
        for heads in (H, Hkv):
            f, b = rope_kernels(B * heads * T * D, T, D, e, L)
            add("attention.rope", "forward", f)
            add("attention.rope", "backward", b)
    f, b, exact_core = attention_core_kernels(c, B, T, e, device_type)
    add("attention.core", "forward", f)
    add("attention.core", "backward", b)
    f, b = linear_kernels(N, H * D, C, e, e, c.bias, L)
    add("attention.out", "forward", f)
    add("attention.out", "backward", b)
    # gradients of q, k, v reach their (B, T, H, D) views as contiguous (B, H, T, D) tensors and
    # are copied back: after RoPE's backward (q, k), after eager attention's matmuls (all three);
    # SDPA's backward writes them in the layout its inputs had. Eager attention without RoPE or
    # grouped heads hands k's gradient to the projection's own reshape (charged there).
    eager = c.attn_backend == "eager"
    for t, heads in (("q", H), ("k", Hkv), ("v", Hkv)):
        if (rope and t != "v" or eager) and contiguous_copy_needed(heads, T):
            if eager and t == "k" and not rope and Hkv == H:  # charged to the projection's reshape
                if B > 1:
                    add("attention.qkv", "backward", [Kernel("clone", L, e * B * heads * T * D,
                                                             e * B * heads * T * D)])
                continue
            add("other", "backward", [Kernel("clone", L, e * B * heads * T * D, e * B * heads * T * D)])

    # MLP
    n_up = 2 if c.mlp == "swiglu" else 1
    f, b = linear_kernels(N, C, Hid, e, 4, c.bias, n_up * L)
    add("mlp.up", "forward", f)
    add("mlp.up", "backward", b + ([Kernel("add", L, 8 * N * C, 4 * N * C)] if n_up == 2 else []))
    h = e * N * Hid
    if c.mlp == "swiglu":
        add("mlp.act", "forward", [Kernel("silu", L, h, h), Kernel("mul", L, 2 * h, h)])
        add("mlp.act", "backward", [Kernel("mul", 2 * L, 2 * h, h), Kernel("silu_backward", L, 2 * h, h)])
    else:
        add("mlp.act", "forward", [Kernel("gelu", L, h, h)])
        add("mlp.act", "backward", [Kernel("gelu_backward", L, 2 * h, h)])
    f, b = linear_kernels(N, Hid, C, e, e, c.bias, L)
    add("mlp.down", "forward", f)
    add("mlp.down", "backward", b)

    # residual adds: x (fp32) + branch output; under autocast the branch's gradient is cast back
    add("other", "forward", [Kernel("add", 2 * L, 4 * N * C + e * N * C, 4 * N * C)])
    if e < 4:
        add("other", "backward", [Kernel("_to_copy", 2 * L, 4 * N * C, e * N * C)])
    if cpu:  # GPT.check_ids reads the ids' range on CPU tensors
        add("other", "forward", [Kernel("min", 2, 8 * N, 8), Kernel("max", 2, 8 * N, 8)])
    add("other", "backward", [Kernel("ones_like", 1, 4, 4)])  # backward's seed, d loss / d loss

    # head and loss: fp32 log-softmax over the vocabulary, then pick each target's log-probability
    if c.loss_impl != "full":  # the chunked loss (tutorial_lib.loss): no (N, V) tensor at all
        for key, ks in chunked_loss_kernels(N, C, V, c.loss_chunk, e, c.loss_impl == "chunked_liger").items():
            add(*key, ks)
    else:
        f, b = linear_kernels(N, C, V, e, 4, False, 1)
        add("lm_head", "forward", f)
        add("lm_head", "backward", b)
        logits = 4 * N * V
        loss_f = ([Kernel("_to_copy", 1, e * N * V, logits)] if e < 4 else []) + [
            Kernel("_log_softmax", 1, logits, logits), Kernel("nll_loss_forward", 1, 8 * N + 4 * N, 8, alloc=(4, 4))]
        loss_b = [Kernel("nll_loss_backward", 1, 8 * N + 8, logits),
                  Kernel("_log_softmax_backward_data", 1, 2 * logits, logits)]
        if e < 4:
            loss_b.append(Kernel("_to_copy", 1, logits, e * N * V))
        add("loss", "forward", loss_f)
        add("loss", "backward", loss_b)

    if optimizer:
        sizes = param_sizes(c)
        ks = adamw_kernels(sizes, device_type)
        if grad_clip:  # torch.nn.utils.clip_grad_norm_: a norm per tensor, then scale every grad
            P = 4 * sum(sizes)
            ks = [Kernel("_foreach_norm", 1, P, 4 * len(sizes)), Kernel("stack+norm+clamp", 4, 4 * len(sizes), 4),
                  Kernel("_foreach_mul_", 1, P, P)] + ks
        add("optimizer", "optimizer", ks)

    out = []
    for (scope, phase), ks in rows.items():
        ef = other.get(scope, 0) * (2 if phase == "backward" else 1) if phase != "optimizer" else 0
        out.append(Component(scope, phase, tuple(ks), int(ef), exact_core or scope != "attention.core"))
    return out


# ---- what forward keeps for backward -----------------------------------------------------------
def saved_table(config: GPTConfig, batch_size: int, seq_len: int, dtype="float32") -> Dict[str, int]:
    """Bytes autograd saves for backward in one forward pass (with loss), by the component that
    saves them -- the bytes backward's kernels read again. Each storage counts once, for the first
    component that saves it; parameters are not counted; a norm's input is the "residual" stream
    and eager attention's (T, T) tensors are "attention.scores" (``measure.memory``'s categories,
    which the tests compare this with, exactly)."""
    c, e = config, settings.dtype_bytes(dtype)
    B, T, L, C = batch_size, seq_len, config.n_layer, config.n_embd
    H, Hkv, D, Hid, V = c.n_head, c.kv_heads, c.head_dim, c.mlp_hidden, c.padded_vocab_size
    N, lp, rope = B * T, e < 4, c.pos == "rope"
    q, kv = e * B * H * T * D, e * B * Hkv * T * D
    out: Dict[str, int] = {}

    def add(name: str, nbytes: int):
        out[name] = out.get(name, 0) + nbytes

    add("embedding", 8 * N + (8 * T if c.pos == "learned" else 0))  # the token (and position) ids
    n_norms = 2 * L + 1
    add("residual", n_norms * 4 * N * C)  # each norm keeps its input
    add("norm", n_norms * (8 * N if c.norm == "layernorm" else 4 * N * C + 4 * N))  # mean+rstd / rsqrt+x*rsqrt

    def linear(name: str, fan_in: int, fan_out: int, n: int, x_bytes: int, fp32_input: bool,
               layers: int = L):
        """n Linear layers per block (``layers`` blocks) keep their input (``x_bytes``: a shared
        input once) for the weight's gradient; under autocast also their cast weights, and a cast
        per layer of an fp32 input."""
        if lp:
            add(name, layers * e * fan_in * fan_out)
        add(name, layers * (n * e * N * fan_in if (lp and fp32_input) else x_bytes))

    linear("attention.qkv", C, H * D + 2 * Hkv * D, 3, 4 * N * C, True)  # q, k, v read the norm's output
    if rope and lp:  # the cos/sin tables cast to the compute dtype (fp32: buffers, not counted)
        add("attention.rope", L * 4 * e * T * (D // 2))
    if c.attn_backend == "eager":
        rep = Hkv != H
        shared = rep and Hkv == 1 and B == 1
        add("attention.core", L * (q + 2 * (kv if shared else q)))  # q, k (or its copy), v (or its copy)
        add("attention.scores", L * (e * B * H * T * T + T * T))  # the probabilities and the bool mask
    elif c.attn_backend == "sdpa":
        add("attention.core", L * (q + 2 * kv + q + 4 * B * H * T))  # q, k, v, out, log-sum-exp
        if c.window is not None:
            add("attention.scores", e * T * T)  # the additive mask: one cached tensor every layer shares
    else:
        add("attention.core", L * (q + 2 * kv + q + 4 * B * H * T))  # estimate: inputs, output, lse
    # the output projection keeps its input: the contiguous copy of the attention output, or the
    # output itself (already kept by SDPA) when no copy was needed
    copied = contiguous_copy_needed(H, T) and (c.attn_backend != "sdpa" or rope)
    linear("attention.out", H * D, C, 1, e * N * C if copied else 0, False)
    n_up = 2 if c.mlp == "swiglu" else 1
    linear("mlp.up", C, n_up * Hid, n_up, 4 * N * C, True)  # gate and up read the norm's output
    h = e * N * Hid
    add("mlp.act", L * (3 * h if c.mlp == "swiglu" else h))  # gelu: its input; swiglu: g, silu(g), u
    linear("mlp.down", Hid, C, 1, h, False)
    if c.loss_impl == "chunked":  # the hidden states (cast under autocast), a log-sum-exp per
        add("loss", (e if lp else 4) * N * C + 4 * N + 8 + 8 * N)  # token, the count, the targets
    elif c.loss_impl == "chunked_liger":  # the gradients made in forward: hidden's and the weight's
        add("loss", 4 * N * C + 4 * V * C)
    else:
        linear("lm_head", C, V, 1, 4 * N * C, True, layers=1)
        add("loss", 4 * N * V + 8 * N + 4)  # the log-probabilities, the targets, the total weight
    return {k: v for k, v in out.items() if v}


# ---- predictions --------------------------------------------------------------------------------
@dataclass
class StepPrediction:
    """A training step's predicted time from the roofline model, and the FLOP-only prediction."""
    label: str
    ceilings: Ceilings
    ms: Dict[Tuple[str, str], float]  # (scope, phase) -> predicted ms
    flop_only_ms: float  # every matmul FLOP at the peak, nothing else
    kernels: int
    bytes: int
    flops: int
    roof_ms: float = 0.0  # the same kernels without any per-operator overhead
    rows: List[Component] = field(default_factory=list, repr=False)  # the traffic model's rows

    @property
    def total_ms(self) -> float:
        return sum(self.ms.values())

    def phase_ms(self, phase: str) -> float:
        return sum(v for (s, p), v in self.ms.items() if p == phase)

    def scope_ms(self) -> Dict[str, float]:
        out: Dict[str, float] = {}
        for (s, _), v in self.ms.items():
            out[s] = out.get(s, 0.0) + v
        return out

    def overhead_ms(self) -> float:
        """Per-operator overhead in the prediction (on a GPU, only where it exceeds the kernel)."""
        return self.total_ms - self.roof_ms


def predict_step(config: GPTConfig, batch_size: int, seq_len: int, ceilings: Ceilings, dtype=None,
                 optimizer: bool = True, grad_clip: bool = False, device_type: Optional[str] = None
                 ) -> StepPrediction:
    """Predicted time of one training step (forward + loss, backward, AdamW) on ``ceilings``."""
    dtype = dtype or ceilings.dtype
    if dtype == "tf32":
        dtype = "float32"
    dev = device_type or str(ceilings.device).split(":")[0]
    rows = traffic_table(config, batch_size, seq_len, dtype, dev, optimizer, grad_clip)
    ms = {(r.scope, r.phase): r.seconds(ceilings) * 1e3 for r in rows}
    fl = sum(r.flops for r in rows)
    roof = sum(k.count * k.roof_seconds(ceilings) for r in rows for k in r.kernels) * 1e3
    return StepPrediction(label=f"{config.name}, B={batch_size}, T={seq_len}, {settings.dtype_name(dtype)}",
                          ceilings=ceilings, ms=ms, flop_only_ms=fl / ceilings.peak_flops * 1e3,
                          kernels=sum(r.n_kernels for r in rows), bytes=sum(r.bytes for r in rows), flops=fl,
                          roof_ms=roof, rows=rows)


def inferred_overhead(prediction: StepPrediction, measured_ms: float, phases=None) -> Optional[float]:
    """The per-operator overhead (seconds) that would make ``prediction`` match ``measured_ms``
    (over ``phases``, default all): what the roofs leave unexplained, spread over the launches.
    None when the roofs alone already predict more than was measured. An inference, not a
    measurement: say so wherever it is shown."""
    c = prediction.ceilings
    ks = [k for r in prediction.rows if phases is None or r.phase in phases for k in r.kernels]
    if sum(k.count * k.roof_seconds(c) for k in ks) * 1e3 >= measured_ms:
        return None
    lo, hi = 0.0, measured_ms / 1e3 / max(1, sum(k.count for k in ks))
    if not c.async_launch:
        return hi - sum(k.count * k.roof_seconds(c) for k in ks) / max(1, sum(k.count for k in ks))
    for _ in range(60):  # on a GPU the time is sum(max(roof, o)): monotone in o, bisect
        mid = (lo + hi) / 2
        t = sum(k.count * max(k.roof_seconds(c), mid) for k in ks) * 1e3
        lo, hi = (mid, hi) if t < measured_ms else (lo, mid)
    return (lo + hi) / 2


def roofline_points(rows: List[Component], measured_ms: Dict[Tuple[str, str], float],
                    ceilings: Ceilings, min_ms: float = 0.0) -> List[dict]:
    """One point per (scope, phase) that has FLOPs and a measured time: arithmetic intensity (x),
    achieved FLOP/s (y), the attainable roof at that intensity, and the predicted time beside the
    measured one. FLOPs are ``Component.roofline_flops``: matmul FLOPs, or the elementwise
    estimate where there are none, so memory-bound components (norms, the loss) have a place too."""
    out = []
    for r in rows:
        ms = measured_ms.get((r.scope, r.phase))
        fl = r.roofline_flops
        if not ms or ms <= min_ms or not fl or not r.bytes:
            continue
        x = fl / r.bytes
        out.append({"scope": r.scope, "phase": r.phase, "intensity": x, "achieved_flops": fl / (ms / 1e3),
                    "roof_flops": min(ceilings.peak_flops, x * ceilings.bandwidth),
                    "measured_ms": ms, "predicted_ms": r.seconds(ceilings) * 1e3,
                    "bound": r.bound(ceilings), "flops": fl, "bytes": r.bytes, "kernels": r.n_kernels,
                    "exact": r.exact})
    return out
