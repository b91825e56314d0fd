"""Per-component time of a GPT step from ``torch.profiler`` and the model's named scopes.

``profile_step(config, B, T)`` runs warm-up steps, then profiles ``steps`` training steps with the
model's scopes on (``tutorial_lib.scopes``: embedding; attention.qkv/rope/core/out;
mlp.up/act/down; norm; lm_head; loss) and returns a ``ProfileResult`` whose rows give each
component's time per step in forward and in backward, plus the optimizer, as fractions that add
up to 100 % (what no scope covers is its own "other" row, never dropped).

Forward: the time inside each scope's ``record_function`` range.
Backward: autograd runs each backward node in an ``autograd::engine::evaluate_function: XBackward0``
event that carries the *sequence number* of the forward op that created the node; every forward
op's sequence number is mapped to the scope it ran in, so each backward node's time is charged to
the scope whose forward created it. ``AccumulateGrad`` (writing .grad) is its own row.
Nested scopes: a scope opened inside another scope, or inside a backward node (the chunked loss
scopes its matmuls "lm_head" within "loss", in forward and in its own backward), is charged its
own time, and its parent -- the enclosing scope or backward node -- keeps only the rest.
Time is CPU time on CPU, and on CUDA the GPU kernel time (``device_time_total``) launched from
those ranges. Profiling adds overhead per op; shares are meaningful, absolute times are slower
than ``measure_step``'s.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from tutorial_lib import scopes, settings
from tutorial_lib.data import random_batch
from tutorial_lib.files import atomic_path
from tutorial_lib.measure import cost
from tutorial_lib.measure.timing import make_optimizer, resolve_config
from tutorial_lib.model import GPT, GPTConfig
from tutorial_lib.sizes import get_sizes

PHASES = ("forward", "backward", "optimizer")
_PHASE_EVENT = {p: f"phase.{p}" for p in PHASES}
_EVAL_PREFIX = "autograd::engine::evaluate_function: "
OTHER_FWD = "other (residual adds, glue)"
OTHER_BWD = "other (autograd engine)"
GRAD_ACC = "grad accumulation"


def scope_group(scope: str) -> str:
    """'attention.core' -> 'attention'; top-level names map to themselves."""
    return scope.split(".")[0] if "." in scope else scope


@dataclass
class ProfileResult:
    """Per-component time of one GPT step. ``rows``: dicts with scope, group, phase, ms, share."""
    preset: str
    config: str
    device: str
    device_name: str
    dtype: str
    batch_size: int
    seq_len: int
    mode: str  # "train" (forward + backward + optimizer) or "fwd"
    steps: int  # profiled steps (times are per step)
    time_source: str  # "cpu time" or "cuda kernel time"
    step_ms: float  # profiled time per step (sum of the rows)
    wall_ms: float  # wall-clock per profiled step, with the profiler's overhead
    rows: List[dict] = field(default_factory=list)
    trace_path: Optional[str] = None
    attn_backend: str = ""
    config_fields: dict = field(default_factory=dict)  # GPTConfig.to_dict() of the profiled model
    kind: str = "profile"

    def shares(self, phase: Optional[str] = None, by: str = "scope") -> Dict[str, float]:
        """Fraction of the step (or, with ``phase``, of that phase) per scope or per group."""
        if by not in ("scope", "group"):
            raise ValueError(f"by={by!r} is not one of ['scope', 'group']")
        rows = [r for r in self.rows if phase is None or r["phase"] == phase]
        total = sum(r["ms"] for r in rows)
        out: Dict[str, float] = {}
        for r in rows:
            out[r[by]] = out.get(r[by], 0.0) + (r["ms"] / total if total else 0.0)
        return out

    def ms(self, phase: Optional[str] = None, by: str = "scope") -> Dict[str, float]:
        """Milliseconds per step per scope (or group), optionally for one phase."""
        out: Dict[str, float] = {}
        for r in self.rows:
            if phase is None or r["phase"] == phase:
                out[r[by]] = out.get(r[by], 0.0) + r["ms"]
        return out

    def phase_ms(self) -> Dict[str, float]:
        out = {p: 0.0 for p in PHASES if any(r["phase"] == p for r in self.rows)}
        for r in self.rows:
            out[r["phase"]] += r["ms"]
        return out

    def table(self, by: str = "scope") -> List[dict]:
        """Rows for printing: name, forward ms, backward ms, total ms, share of the step."""
        names = list(dict.fromkeys(r[by] for r in self.rows))
        fwd, bwd, tot = self.ms("forward", by), self.ms("backward", by), self.ms(None, by)
        return [{"name": n, "forward_ms": fwd.get(n, 0.0), "backward_ms": bwd.get(n, 0.0),
                 "total_ms": tot[n], "share": tot[n] / self.step_ms if self.step_ms else 0.0}
                for n in names]

    def component_rows(self) -> List[dict]:
        """One row per model scope: time per step, share of the step's time, and the scope's share
        of the analytic matmul FLOPs of the same work (forward, + backward in train mode)."""
        flop = {}
        if self.config_fields:
            amounts = cost.flops_by_scope(GPTConfig(**self.config_fields), self.batch_size, self.seq_len,
                                          "forward" if self.mode == "fwd" else None, "counted",
                                          torch.device(self.device).type)
            flop = cost.shares(amounts)
        tot = self.ms()
        return [{"component": name, "time_ms": ms, "time_share": ms / self.step_ms if self.step_ms else 0.0,
                 "flop_share": flop.get(name, 0.0)} for name, ms in tot.items()]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@contextlib.contextmanager
def quiet_stderr():
    """Silence the profiler's C++ ``USDT ... profiler_start/stop`` lines: they are written to file
    descriptor 2 (in Jupyter too, where ``sys.stderr`` is the kernel's stream, not fd 2)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _nearest_scope(e, names) -> Optional[str]:
    p = e.cpu_parent
    while p is not None:
        if p.name in names:
            return p.name
        p = p.cpu_parent
    return None


def _ancestors(e):
    p = e.cpu_parent
    while p is not None:
        yield p
        p = p.cpu_parent


def _enclosing(e, names):
    """The nearest enclosing scope range or backward node of an event (None at the top level)."""
    for p in _ancestors(e):
        if p.name in names or p.name.startswith(_EVAL_PREFIX):
            return p
    return None


def _time(e, cuda: bool) -> float:
    """Microseconds an event accounts for: its CPU range, or the GPU kernels it launched."""
    return e.device_time_total if cuda else e.cpu_time_total


def host_events(events) -> list:
    """The host-side (CPU) events only. With CUDA on, torch.profiler (2.11 seen) also returns a
    device-side copy of every ``record_function`` range (a GPU user annotation, same name, no CPU
    parent); the kernels it spans are already in the host range's ``device_time_total``, so an
    attribution by name that kept both would count each scope twice."""
    return [e for e in events if getattr(e, "device_type", DeviceType.CPU) == DeviceType.CPU]


def attribute(events, cuda: bool = False) -> Dict[tuple, float]:
    """{(scope, phase): microseconds} from profiler events (see the module doc for the method).
    Only host events count (``host_events``): their device time holds the kernels they launched."""
    events = host_events(events)
    names = set(scopes.SCOPE_NAMES)
    acc: Dict[tuple, float] = {}

    def add(key, us):
        acc[key] = acc.get(key, 0.0) + us

    seq_scope: Dict[int, str] = {}
    phase_total = {p: 0.0 for p in PHASES}
    fwd_scoped = bwd_nodes = 0.0

    def key(e) -> tuple:
        """The (scope, phase) row an event's time is charged to."""
        if e.name.startswith(_EVAL_PREFIX):
            return (GRAD_ACC if "AccumulateGrad" in e.name else seq_scope.get(e.sequence_nr, OTHER_FWD),
                    "backward")
        in_backward = any(p.name.startswith(_EVAL_PREFIX) for p in _ancestors(e))
        return (e.name, "backward" if in_backward else "forward")

    for e in sorted(events, key=lambda e: e.time_range.start):
        n = e.name
        if n in _PHASE_EVENT.values():
            phase_total[n.split(".", 1)[1]] += _time(e, cuda)
        elif n in names:
            parent = _enclosing(e, names)
            add(key(e), _time(e, cuda))
            if parent is None:  # a top-level forward scope
                fwd_scoped += _time(e, cuda)
            else:  # nested: the parent scope or backward node keeps only the rest
                add(key(parent), -_time(e, cuda))
        elif n.startswith(_EVAL_PREFIX):
            add(key(e), _time(e, cuda))
            bwd_nodes += _time(e, cuda)
        elif e.sequence_nr is not None and e.sequence_nr >= 0 and _phase_of(e) == "forward":
            # the last forward op showing a sequence number is the one that created that node
            # (or one of its children): map the node to the scope it ran in
            seq_scope[e.sequence_nr] = _nearest_scope(e, names) or OTHER_FWD
    if cuda:
        # backward kernels are launched from autograd's own thread, outside the phase range:
        # the backward rows are the kernels of the evaluate_function events themselves
        add((OTHER_FWD, "forward"), max(0.0, phase_total["forward"] - fwd_scoped))
    else:
        add((OTHER_FWD, "forward"), max(0.0, phase_total["forward"] - fwd_scoped))
        if phase_total["backward"]:
            add((OTHER_BWD, "backward"), max(0.0, phase_total["backward"] - bwd_nodes))
    if phase_total["optimizer"]:
        add(("optimizer (AdamW)", "optimizer"), phase_total["optimizer"])
    return acc


def _phase_of(e) -> Optional[str]:
    p = e.cpu_parent
    while p is not None:
        if p.name.startswith("phase."):
            return p.name.split(".", 1)[1]
        p = p.cpu_parent
    return None


def save_trace(prof, path: Union[str, os.PathLike]) -> str:
    """Export ``prof``'s Chrome/Perfetto trace to ``path`` atomically (``files.atomic_path``): a
    failed export leaves an older trace whole. A path ending in ``.gz`` is gzipped (by torch).

    Kineto's C++ exporter writes ``NAME.tmp`` and renames it, but does not raise when the write
    fails (a full disk, a file-size limit): so the exported file is checked -- present, not
    empty, a complete JSON document -- and an ``OSError`` raised when it is not."""
    gz = str(path).endswith(".gz")
    with atomic_path(path, tmp_suffix=".gz" if gz else "") as tmp:
        tmp.unlink()  # the exporter creates it: no file afterwards means the export failed
        try:
            prof.export_chrome_trace(str(tmp))
        finally:
            Path(str(tmp) + ".tmp").unlink(missing_ok=True)  # Kineto's own partial file
        complete = tmp.is_file() and tmp.stat().st_size > 0
        if complete and not gz:
            with open(tmp, "rb") as f:
                f.seek(max(0, tmp.stat().st_size - 64))
                complete = f.read().rstrip()[-1:] in (b"}", b"]")
        if not complete:
            raise OSError(errno.EIO, "torch.profiler could not export the whole trace (a full disk or a "
                                     "file-size limit?)", str(path))
    return str(path)


def profile_step(config: Union[GPTConfig, str], batch_size: int, seq_len: int, mode: str = "train",
                 device=None, dtype=None, steps: Optional[int] = None, warmup: int = 2,
                 seed: int = 0, trace_path: Optional[str] = None, model=None) -> ProfileResult:
    """Profile ``steps`` steps of ``config`` and attribute their time to the model's scopes.

    mode "train": forward + backward + AdamW (fused on CUDA); "fwd": forward only (no_grad).
    ``trace_path`` exports a Chrome/Perfetto trace (open in https://ui.perfetto.dev).
    """
    if mode not in ("train", "fwd"):
        raise ValueError(f"mode={mode!r} is not one of ['train', 'fwd']")
    cfg = resolve_config(config)
    if seq_len > cfg.block_size:
        raise ValueError(f"seq_len={seq_len} exceeds block_size={cfg.block_size} of {cfg.name}")
    dev, dt = settings.resolve(device, dtype)
    steps = steps if steps is not None else get_sizes(device=dev).step.profile_steps
    if steps < 1:
        raise ValueError(f"steps={steps!r} must be >= 1")
    cuda = dev.type == "cuda"
    if model is None:
        torch.manual_seed(seed)
        model = GPT(cfg)
    model = model.to(dev).train()
    idx, targets = random_batch(cfg.vocab_size, batch_size, seq_len, dev, seed)
    opt = make_optimizer(model, dev) if mode == "train" else None

    def step():
        if mode == "fwd":
            with record_function("phase.forward"), torch.no_grad(), settings.autocast(dev, dt):
                model(idx, targets)
            return
        opt.zero_grad(set_to_none=True)
        with record_function("phase.forward"), settings.autocast(dev, dt):
            loss = model(idx, targets)[1]  # as every measured step: the logits are not kept
        with record_function("phase.backward"):
            loss.backward()
        with record_function("phase.optimizer"):
            opt.step()

    for _ in range(warmup):
        step()
    settings.synchronize(dev)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with quiet_stderr(), profile(activities=acts) as prof:
        with scopes.enabled(model):
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            settings.synchronize(dev)
            wall = (time.perf_counter() - t0) / steps
    if trace_path:
        save_trace(prof, trace_path)
    acc = attribute(prof.events(), cuda)
    order = list(scopes.SCOPE_NAMES) + [OTHER_FWD, GRAD_ACC, OTHER_BWD, "optimizer (AdamW)"]
    rows = []
    total_us = sum(acc.values())
    for phase in PHASES:
        for sc in order:
            us = acc.get((sc, phase))
            if us is None:
                continue
            rows.append({"scope": sc, "group": scope_group(sc) if sc in scopes.SCOPE_NAMES else "other",
                         "phase": phase, "ms": us / 1e3 / steps,
                         "share": us / total_us if total_us else 0.0})
    return ProfileResult(
        preset=cfg.name, config=cfg.describe(), device=str(dev), device_name=settings.device_name(dev),
        dtype=settings.dtype_name(dt), batch_size=batch_size, seq_len=seq_len, mode=mode,
        steps=steps, time_source="cuda kernel time" if cuda else "cpu time",
        step_ms=total_us / 1e3 / steps, wall_ms=wall * 1e3, rows=rows,
        trace_path=trace_path, attn_backend=cfg.attn_backend, config_fields=cfg.to_dict())
