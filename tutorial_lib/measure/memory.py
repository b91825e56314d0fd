"""Where the memory of a training step goes: parameters, gradients, optimizer state, activations.

``memory_breakdown(config, B, T)`` runs one real training step and measures, on any device:

- parameters, gradients and optimizer state from the tensors themselves (each storage once);
- activations saved for backward with ``torch.autograd.graph.saved_tensors_hooks``: every tensor
  autograd keeps is seen as it is saved, each storage counted once (a view of a kept tensor costs
  nothing extra), parameters and buffers excluded, and attributed to the model scope that saved it
  (``tutorial_lib.scopes.current()``, or the label the model gives it: a checkpointed region's
  input is the residual stream). Inside a checkpointed region (``torch.utils.checkpoint``) the
  region's own hooks take the tensors it saves: they are not kept, and not seen;
- on CUDA also the allocator's view: ``max_memory_allocated`` over the step (after
  ``reset_peak_memory_stats``), and optionally a memory snapshot for PyTorch's visualiser
  (https://pytorch.org/memory_viz).

``peak_bytes(fn, device)`` is the allocator's peak of any callable, on any device: on CUDA from
``torch.cuda.max_memory_allocated``, on CPU (``cpu_peak_bytes``) from ``torch.profiler``'s memory
events (``profile_memory=True``: every allocation and free, as signed byte counts; the peak is the
largest running sum). Saved tensors say what backward keeps; the peak also counts the temporaries
a function makes and frees, which is what runs a machine out of memory.

Components of the activation breakdown (the scope that *saves* a tensor owns it):
``attention.scores`` (T x T tensors: scores, probabilities, masks -- eager attention only),
``attention.core`` (q, k, v, output, logsumexp kept by the kernel), ``attention.qkv`` / ``.rope`` /
``.out``, ``mlp.up`` / ``.act`` / ``.down``, ``residual`` (the residual stream: a norm's input,
kept by the norm), ``norm`` (the norms' own intermediates), ``embedding``, ``lm_head``, ``loss``
(the fp32 log-probabilities; with the chunked loss, what it keeps instead: the hidden states and a
log-sum-exp per token, or Liger's gradient buffers), ``other`` (outside every scope).
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Union

import torch
from torch.profiler import ProfilerActivity, profile

from tutorial_lib import scopes, settings
from tutorial_lib.data import random_batch
from tutorial_lib.files import atomic_path
from tutorial_lib.measure.profile import quiet_stderr
from tutorial_lib.measure.timing import make_optimizer, resolve_config
from tutorial_lib.model import GPT, GPTConfig

# component -> group, for plots and the seed's categories
COMPONENT_GROUPS = {
    "embedding": "embedding",
    "attention.qkv": "attention", "attention.rope": "attention", "attention.core": "attention",
    "attention.scores": "attention scores/probs", "attention.out": "attention",
    "mlp.up": "mlp", "mlp.act": "mlp", "mlp.down": "mlp",
    "residual": "residual stream", "norm": "norms",
    "lm_head": "head + loss", "loss": "head + loss", "other": "other",
}


@dataclass
class MemoryBreakdown:
    """Bytes by kind for one training step; the same type on CPU and CUDA."""
    device: str
    device_name: str
    dtype: str
    preset: str
    batch_size: int
    seq_len: int
    params_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    activations_bytes: int  # saved for backward, each storage once (saved_tensors_hooks)
    activations_by_component: Dict[str, int] = field(default_factory=dict)
    peak_bytes: Optional[int] = None  # CUDA: max_memory_allocated over the step; None on CPU
    baseline_bytes: Optional[int] = None  # CUDA: allocated before the step (params, grads, state)
    snapshot_path: Optional[str] = None  # CUDA memory snapshot for the visualiser, if requested
    attn_backend: str = ""
    kind: str = "memory"

    @property
    def total_bytes(self) -> int:
        """params + grads + optimizer state + saved activations: the seed's sum. The allocator's
        real peak differs: activations are freed while gradients are made, and temporaries and
        the allocator's caching add to it (``peak_bytes`` on CUDA)."""
        return self.params_bytes + self.grads_bytes + self.optimizer_bytes + self.activations_bytes

    def by_kind(self) -> Dict[str, int]:
        return {"parameters": self.params_bytes, "gradients": self.grads_bytes,
                "optimizer state": self.optimizer_bytes, "activations": self.activations_bytes}

    def activations_by_group(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for k, v in self.activations_by_component.items():
            g = COMPONENT_GROUPS.get(k, "other")
            out[g] = out.get(g, 0) + v
        return out

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["total_bytes"] = self.total_bytes
        return d


# ---- saved-tensor accounting -----------------------------------------------------------------
class SavedTensorLog:
    """Records every tensor autograd saves (inside ``with log:``), each storage once, by scope."""

    def __init__(self, exclude: Optional[set] = None, seq_len: Optional[int] = None,
                 model: Optional[torch.nn.Module] = None):
        self.exclude = set(exclude or ())  # storage ids never counted (parameters, buffers)
        self.seq_len = seq_len  # tensors ending in (T, T) inside attention.core are scores/probs
        self.model = model  # its norms' inputs are marked as the residual stream
        self.by_component: Dict[str, int] = {}
        self._seen: set = set()
        self._residual: set = set()
        self._hooks = None
        self._handles: list = []

    @staticmethod
    def storage_key(t: torch.Tensor):
        s = t.untyped_storage()
        return (t.device.type, t.device.index, s.data_ptr(), s.nbytes())

    def _component(self, t: torch.Tensor, name: Optional[str]) -> str:
        if name is None:
            return "other"
        T = self.seq_len
        if name == "attention.core" and T is not None and t.dim() >= 2 and tuple(t.shape[-2:]) == (T, T):
            return "attention.scores"
        return name

    def _mark_residual(self, module, args):
        if args and isinstance(args[0], torch.Tensor):
            self._residual.add(self.storage_key(args[0]))

    def _unmark_residual(self, module, args, out):
        # the norm has saved its input by now (or not, inside a checkpointed region): forget the
        # mark, so that a later tensor at the same address (a freed one's memory) is not taken for it
        if args and isinstance(args[0], torch.Tensor):
            self._residual.discard(self.storage_key(args[0]))

    def _pack(self, t: torch.Tensor):
        if t.layout == torch.strided and t.device.type != "meta":
            key = self.storage_key(t)
            if key[2] != 0 and key not in self._seen and key not in self.exclude:
                self._seen.add(key)
                comp = "residual" if key in self._residual else self._component(
                    t, scopes.saving() or scopes.current())
                self.by_component[comp] = self.by_component.get(comp, 0) + key[3]
        return t

    @property
    def total(self) -> int:
        return sum(self.by_component.values())

    def __enter__(self):
        if self.model is not None:  # a norm's input is the residual stream (or the embedding)
            for m in self.model.modules():
                if isinstance(m, (torch.nn.LayerNorm, torch.nn.RMSNorm)):
                    self._handles.append(m.register_forward_pre_hook(self._mark_residual))
                    self._handles.append(m.register_forward_hook(self._unmark_residual, always_call=True))
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        for h in self._handles:
            h.remove()
        self._handles.clear()
        return False


def _storage_keys(tensors) -> set:
    return {SavedTensorLog.storage_key(t) for t in tensors}


def saved_bytes(fn: Callable, *args, by_component: bool = False, **kwargs):
    """Bytes autograd saves for backward during ``fn(*args, **kwargs)`` (each storage once).

    Inputs that are leaves requiring grad, and parameters of ``fn`` when it is a module, are not
    counted (they exist anyway). Example -- attention memory vs T::

        q, k, v = (torch.randn(1, 12, T, 64, requires_grad=True) for _ in range(3))
        saved_bytes(attention_core, q, k, v, "eager")

    Returns an int, or (int, {component: bytes}) with ``by_component``.
    """
    exclude = _storage_keys(a for a in list(args) + list(kwargs.values())
                            if isinstance(a, torch.Tensor) and a.is_leaf)
    if isinstance(fn, torch.nn.Module):
        exclude |= _storage_keys(list(fn.parameters()) + list(fn.buffers()))
    labelled = fn if isinstance(fn, torch.nn.Module) and hasattr(fn, "module_scopes") else None
    with scopes.enabled(labelled, record=False), SavedTensorLog(exclude) as log:
        out = fn(*args, **kwargs)
    del out
    return (log.total, dict(log.by_component)) if by_component else log.total


def _tensor_bytes(tensors) -> int:
    seen, n = set(), 0
    for t in tensors:
        if t is None:
            continue
        key = SavedTensorLog.storage_key(t)
        if key not in seen:
            seen.add(key)
            n += key[3]
    return n


def optimizer_state_tensors(optimizer: torch.optim.Optimizer):
    for state in optimizer.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor):
                yield v


# ---- the allocator's peak of any callable --------------------------------------------------------
@dataclass
class AllocatorPeak:
    """Bytes the allocator held above the start of a call: the most at any moment, and at the end.

    ``peak_bytes`` counts every tensor made during the call (temporaries freed before it returned
    included); ``net_bytes`` is what the call left allocated (its outputs, gradients it wrote).
    """
    peak_bytes: int
    net_bytes: int
    allocations: int  # allocator events seen (CPU), or None on CUDA
    device: str
    source: str  # "torch.profiler memory events" or "torch.cuda.max_memory_allocated"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _profiler_memory_events(prof) -> list:
    """(time ns, signed bytes) of every CPU allocation (+) and free (-) a finished profile saw."""
    events = []
    for e in prof.profiler.kineto_results.events():
        if e.name() == "[memory]" and str(e.device_type()).endswith("CPU"):
            events.append((e.start_ns(), int(e.nbytes())))
    events.sort(key=lambda x: x[0])
    return events


def cpu_peak_bytes(fn: Callable, *args, **kwargs) -> AllocatorPeak:
    """The CPU allocator's peak during ``fn(*args, **kwargs)``, above what was allocated before.

    Runs ``fn`` once under ``torch.profiler.profile(profile_memory=True)``: PyTorch's CPU
    allocator reports each allocation and free to the profiler as a ``[memory]`` event with a
    signed byte count; ordered by time, their running sum is the memory the call holds, and its
    largest value is the peak. Allocations on every thread count (autograd's backward runs ops on
    its own thread). Memory that is not a tensor (Python objects, oneDNN's own scratch) is not
    seen. The call's return value is dropped before the profile ends, so it counts in the peak,
    not in ``net_bytes``.
    """
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn(*args, **kwargs)
        del out
    running = peak = 0
    events = _profiler_memory_events(prof)
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return AllocatorPeak(peak_bytes=peak, net_bytes=running, allocations=sum(n > 0 for _, n in events),
                         device="cpu", source="torch.profiler memory events")


def cuda_peak_bytes(fn: Callable, *args, device=None, **kwargs) -> AllocatorPeak:
    """The CUDA allocator's peak during ``fn(*args, **kwargs)`` above what was allocated before
    (``max_memory_allocated`` after ``reset_peak_memory_stats``, synchronised around the call)."""
    dev = torch.device(device) if device is not None else torch.device("cuda")
    settings.synchronize(dev)
    base = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    out = fn(*args, **kwargs)
    del out
    settings.synchronize(dev)
    return AllocatorPeak(peak_bytes=int(torch.cuda.max_memory_allocated(dev) - base),
                         net_bytes=int(torch.cuda.memory_allocated(dev) - base), allocations=None,
                         device=str(dev), source="torch.cuda.max_memory_allocated")


def peak_bytes(fn: Callable, device=None) -> Optional[int]:
    """The allocator's peak (bytes above the start) during one call of ``fn()``, on ``device``'s
    allocator: ``cuda_peak_bytes`` on CUDA, ``cpu_peak_bytes`` on CPU, None elsewhere (MPS). Call
    ``fn`` once before (a warm-up) when the first call allocates caches that later calls reuse,
    and drop gradients it would replace (``t.grad = None``): a free of a tensor made before the
    measurement is not seen on CPU."""
    dev = torch.device(device) if device is not None else settings.get_device()
    if dev.type == "cuda":
        return cuda_peak_bytes(fn, device=dev).peak_bytes
    if dev.type == "cpu":
        return cpu_peak_bytes(fn).peak_bytes
    return None


def available_bytes(device=None) -> Optional[int]:
    """Memory a new allocation could still get on ``device``: CUDA's free memory
    (``torch.cuda.mem_get_info``), on CPU the kernel's MemAvailable (Linux); None where unknown."""
    dev = torch.device(device) if device is not None else settings.get_device()
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    if dev.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


# ---- one training step -----------------------------------------------------------------------
def memory_breakdown(config: Union[GPTConfig, str], batch_size: int, seq_len: int, device=None,
                     dtype=None, seed: int = 0, snapshot_path: Optional[str] = None,
                     model=None) -> MemoryBreakdown:
    """Run one AdamW training step of ``config`` at (batch_size, seq_len) and break its memory down.

    Activations are the tensors saved for backward during the forward pass (loss included).
    On CUDA the step runs twice: once to create gradients and optimizer state, then measured
    in steady state with the allocator's peak; ``snapshot_path`` saves a CUDA memory snapshot
    (``torch.cuda.memory._dump_snapshot``) of the measured step. On CPU no CUDA call is made.
    """
    cfg = resolve_config(config)
    if seq_len > cfg.block_size:
        raise ValueError(f"seq_len={seq_len} exceeds block_size={cfg.block_size} of {cfg.name}")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    dev, dt = settings.resolve(device, dtype)
    cuda = dev.type == "cuda"
    if model is None:
        torch.manual_seed(seed)
        model = GPT(cfg)
    model = model.to(dev).train()
    opt = make_optimizer(model, dev)
    idx, targets = random_batch(cfg.vocab_size, batch_size, seq_len, dev, seed)
    static = _storage_keys(list(model.parameters()) + list(model.buffers()))

    def step(log=None):
        opt.zero_grad(set_to_none=True)
        ctx = log if log is not None else contextlib.nullcontext()
        with scopes.enabled(model, record=False), ctx, settings.autocast(dev, dt):
            loss = model(idx, targets)[1]  # the loss alone: the logits are not kept through backward
        loss.backward()
        opt.step()

    peak = baseline = None
    if cuda:
        step()  # create grads and optimizer state, so the measured step is a steady-state one
        opt.zero_grad(set_to_none=True)
        settings.synchronize(dev)
        baseline = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        if snapshot_path:
            torch.cuda.memory._record_memory_history(max_entries=200_000)
    log = SavedTensorLog(exclude=static, seq_len=seq_len, model=model)
    step(log)
    if cuda:
        settings.synchronize(dev)
        peak = torch.cuda.max_memory_allocated(dev)
        if snapshot_path:
            try:
                save_memory_snapshot(snapshot_path)
            finally:
                torch.cuda.memory._record_memory_history(enabled=None)
    params = list(model.parameters())
    return MemoryBreakdown(
        device=str(dev), device_name=settings.device_name(dev), dtype=settings.dtype_name(dt),
        preset=cfg.name, batch_size=batch_size, seq_len=seq_len,
        params_bytes=_tensor_bytes(params),
        grads_bytes=_tensor_bytes(p.grad for p in params),
        optimizer_bytes=_tensor_bytes(optimizer_state_tensors(opt)),
        activations_bytes=log.total,
        activations_by_component=dict(sorted(log.by_component.items(), key=lambda kv: -kv[1])),
        peak_bytes=peak, baseline_bytes=baseline, snapshot_path=snapshot_path if cuda else None,
        attn_backend=cfg.attn_backend)


def save_memory_snapshot(path: str) -> str:
    """Write the CUDA allocator's recorded history (``torch.cuda.memory._dump_snapshot``, a pickle
    for https://pytorch.org/memory_viz) to ``path`` atomically: a failed write leaves an older
    snapshot whole."""
    with atomic_path(path) as tmp:
        torch.cuda.memory._dump_snapshot(str(tmp))
    return str(path)


def fmt_bytes(n: Optional[float]) -> str:
    """1536 -> '1.5 KiB'; None -> 'n/a'."""
    if n is None:
        return "n/a"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
