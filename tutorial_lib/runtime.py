"""How a training step runs, apart from what the model computes: precision, compiler, optimizer kernels.

``GPTConfig`` (``tutorial_lib.model``) holds the architecture: two configs that differ are two
different models (different parameters, or the same function with differently shaped tensors, like
a padded vocabulary). ``StepSettings`` holds the levers that change *how* the same model is
computed -- the speed ladder's rungs (notebook 11) -- and nothing a checkpoint would store:

- ``dtype``: autocast's compute dtype: "float32" (no autocast), "bfloat16", or "float16" (which
  needs loss scaling: a step in float16 runs with a ``torch.amp.GradScaler``); "auto" is the
  library's default, bfloat16 on CUDA and float32 elsewhere. Weights stay float32 in every case.
- ``tf32``: float32 matmuls on TF32 tensor cores (NVIDIA Ampere and later): 10 mantissa bits
  instead of 23 inside the matmul, fp32 everywhere else.
- ``compile``: a ``torch.compile`` mode ("default", "reduce-overhead", "max-autotune"), or None
  for eager PyTorch.
- ``adamw``: AdamW's implementation (``torch.optim.AdamW``'s ``foreach`` / ``fused`` flags):
  "for-loop" (a handful of small operators per parameter tensor), "foreach" (one operator per list
  of tensors), "fused" (one kernel for the whole update); "auto" = fused on CUDA, for-loop elsewhere
  (what the library always did). The cost model knows each (``measure.cost.adamw_kernels``).

``unavailable(device)`` says, before any work starts, why a setting cannot run on a device ("not
available here: ..."): TF32 off CUDA, bf16 on a GPU without it, compile without a C++ compiler.
A setting that runs but slowly (float16 on a CPU without fp16 instructions) is not refused here:
the speed ladder measures how slow, and reports it in its row.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Optional

import torch

from tutorial_lib import settings

DTYPES = ("auto", "float32", "bfloat16", "float16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
ADAMW_IMPLS = ("auto", "for-loop", "foreach", "fused")
NOT_AVAILABLE = "not available here"  # how a refused setting's reason starts, in rows and errors


@dataclass(frozen=True)
class StepSettings:
    """How a training step runs (see the module docstring); the defaults are the library's own."""
    dtype: str = "auto"  # autocast dtype: "auto" (bf16 on CUDA, fp32 elsewhere), "float32", "bfloat16", "float16"
    tf32: bool = False  # fp32 matmuls on TF32 tensor cores (CUDA, Ampere+)
    compile: Optional[str] = None  # torch.compile mode, None = eager
    adamw: str = "auto"  # "for-loop", "foreach", "fused"; "auto" = fused on CUDA, for-loop elsewhere

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"StepSettings.dtype={self.dtype!r} is not one of {list(DTYPES)}")
        if not isinstance(self.tf32, bool):
            raise ValueError(f"StepSettings.tf32={self.tf32!r} must be True or False")
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise ValueError(f"StepSettings.compile={self.compile!r} is not None or one of {list(COMPILE_MODES)}")
        if self.adamw not in ADAMW_IMPLS:
            raise ValueError(f"StepSettings.adamw={self.adamw!r} is not one of {list(ADAMW_IMPLS)}")

    def replace(self, **changes) -> "StepSettings":
        """A validated copy with some fields changed."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"StepSettings has no field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def compute_dtype(self, device) -> torch.dtype:
        """The autocast dtype on ``device`` ("auto" resolved)."""
        if self.dtype == "auto":
            return settings.default_dtype(device)
        return settings.parse_dtype(self.dtype)

    def adamw_impl(self, device) -> str:
        """"for-loop", "foreach" or "fused" on ``device`` ("auto" resolved)."""
        if self.adamw != "auto":
            return self.adamw
        return "fused" if torch.device(device).type == "cuda" else "for-loop"

    def describe(self, device=None) -> str:
        """"bfloat16 autocast, TF32, compile (default), fused AdamW" -- resolved for ``device``."""
        dev = settings.get_device() if device is None else torch.device(device)
        dt = settings.dtype_name(self.compute_dtype(dev))
        parts = [dt if dt == "float32" else f"{dt} autocast"]
        if self.tf32:
            parts.append("TF32")
        if self.compile:
            parts.append(f"compile ({self.compile})")
        parts.append(f"{self.adamw_impl(dev)} AdamW")
        return ", ".join(parts)

    def unavailable(self, device) -> Optional[str]:
        """Why these settings cannot run on ``device`` ("not available here: ..."), or None."""
        dev = torch.device(device)
        dt = self.compute_dtype(dev)
        if self.tf32:
            if dev.type != "cuda":
                return (f"{NOT_AVAILABLE}: TF32 is a mode of NVIDIA tensor cores (Ampere and later) for "
                        f"float32 matmuls; a {dev.type.upper()} has no TF32 unit, so PyTorch's TF32 switch "
                        "changes nothing here")
            if torch.cuda.get_device_capability(dev)[0] < 8:
                return f"{NOT_AVAILABLE}: TF32 needs an Ampere or later GPU; this is {torch.cuda.get_device_name(dev)}"
        if dt == torch.bfloat16 and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
            return f"{NOT_AVAILABLE}: {torch.cuda.get_device_name(dev)} has no bfloat16 support"
        if dt != torch.float32 and not torch.amp.is_autocast_available(dev.type):
            return f"{NOT_AVAILABLE}: torch {torch.__version__} has no autocast for {dev.type}"
        if self.compile is not None:
            why = compiler_missing(dev)
            if why:
                return f"{NOT_AVAILABLE}: {why}"
        return None

    def check(self, device) -> None:
        """Raise ``NotAvailable`` with ``unavailable``'s reason (before any work starts)."""
        why = self.unavailable(device)
        if why:
            raise NotAvailable(why)


class NotAvailable(RuntimeError):
    """A step setting this device cannot run (a sweep records it in its row and goes on)."""


def compiler_missing(device) -> Optional[str]:
    """Why ``torch.compile`` cannot build code on ``device`` here, or None. Inductor writes C++
    for a CPU (and a C launcher for Triton's GPU kernels): it needs a C++ compiler on PATH
    (``$CXX``, else g++, clang++ or c++; MSVC's cl on Windows)."""
    names = ([os.environ["CXX"]] if os.environ.get("CXX") else
             ["cl"] if os.name == "nt" else ["g++", "clang++", "c++"])
    if not any(shutil.which(n) for n in names):
        return (f"torch.compile needs a C++ compiler to build {torch.device(device).type} code, and none of "
                f"{', '.join(names)} is on PATH")
    return None


COMPILE_CACHES = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")  # where torch.compile keeps what it built


@contextlib.contextmanager
def empty_compile_caches():
    """Point torch.compile's on-disk caches (Inductor's, and Triton's on a GPU) at an empty folder
    inside the block, so that a compile there costs what a first run on a fresh machine pays; a
    later run reuses the default caches and compiles in seconds. What the block compiled stays
    loaded after the folder is gone."""
    before = {k: os.environ.get(k) for k in COMPILE_CACHES}
    with tempfile.TemporaryDirectory(prefix="tutorial_compile_") as folder:
        for k in COMPILE_CACHES:
            os.environ[k] = os.path.join(folder, k.lower())
        try:
            yield folder
        finally:
            for k, v in before.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@contextlib.contextmanager
def matmul_precision(tf32: bool):
    """TF32 for float32 matmuls inside the block (``torch.set_float32_matmul_precision("high")``),
    restored after; a no-op when ``tf32`` is False."""
    if not tf32:
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def make_adamw(params, device, impl: str = "auto", lr: float = 3e-4, weight_decay: float = 0.1,
               betas=(0.9, 0.95)) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` with the implementation ``impl`` (``StepSettings.adamw``) on ``device``."""
    impl = StepSettings(adamw=impl).adamw_impl(device)
    flags = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[impl]
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, **flags)
