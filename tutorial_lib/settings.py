"""Where measurements run: the device, the compute dtype, and the size profile's name.

- ``get_device`` / ``resolve(device, dtype)``: one place that turns what a caller passed (None, a
  string, a ``torch.device``) into a device and dtype; ``TUTORIAL_DEVICE`` overrides the default.
- ``profile_name``: ``smoke`` (CI), ``cpu`` (a laptop) or ``gpu`` (the seed's own setting), from
  ``TUTORIAL_PROFILE`` or the device; ``tutorial_lib.sizes`` holds the sizes of each.
- ``synchronize``, ``autocast``, ``device_name``, ``cpu_oversubscribed``: small helpers every
  measurement uses.
"""
from __future__ import annotations

import contextlib
import os
import platform
from typing import Optional, Tuple

import torch

PROFILE_ENV = "TUTORIAL_PROFILE"
DEVICE_ENV = "TUTORIAL_DEVICE"
PROFILE_NAMES = ("smoke", "cpu", "gpu")

DTYPE_NAMES = ("float32", "bfloat16", "float16")  # what a compute dtype may be called in results
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


# ---- device ---------------------------------------------------------------------------------
def get_device(name: Optional[str] = None) -> torch.device:
    """The device to measure on: ``name`` if given, else $TUTORIAL_DEVICE, else cuda if present, else cpu.

    Never touches CUDA unless it is asked for or available.
    """
    name = name or os.environ.get(DEVICE_ENV) or None
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"device={name!r} is not a torch device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r}: CUDA is not available on this machine; use 'cpu'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device={name!r}: MPS is not available on this machine; use 'cpu'")
    return dev


def device_name(device=None) -> str:
    """A human label for the hardware: the GPU's name, or the CPU model and core count."""
    dev = torch.device(device) if device is not None else get_device()
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "cpu":
        return f"{cpu_model()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    return dev.type


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def synchronize(device) -> None:
    """Wait for queued work on ``device``; a no-op on CPU (no CUDA call is made there)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


def cpu_oversubscribed(load: float, cores: int) -> bool:
    """True when a 1-minute load average means more runnable threads than cores (with half a
    core of slack): other work was competing, so CPU timings are noisy. One rule for the
    notebooks' first cell and the report's notes."""
    return load > cores + 0.5


# ---- dtypes and autocast -------------------------------------------------------------------
def parse_dtype(dtype) -> torch.dtype:
    """'bf16' / 'bfloat16' / torch.bfloat16 ... -> torch.dtype; ValueError for anything else."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ValueError(f"dtype={dtype!r} is not one of {sorted(set(_DTYPES))}")


def dtype_name(dtype) -> str:
    return str(parse_dtype(dtype)).replace("torch.", "")


def dtype_bytes(dtype) -> int:
    """Bytes per element: 4 for float32, 2 for bfloat16 and float16."""
    return torch.empty((), dtype=parse_dtype(dtype)).element_size()


def default_dtype(device=None) -> torch.dtype:
    """bf16 (autocast) on CUDA, fp32 elsewhere."""
    dev = torch.device(device) if device is not None else get_device()
    return torch.bfloat16 if dev.type == "cuda" else torch.float32


def autocast(device, dtype) -> contextlib.AbstractContextManager:
    """Mixed precision for a low-precision ``dtype`` (weights stay fp32), a no-op for fp32."""
    dt = parse_dtype(dtype)
    if dt == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dt)


# ---- size profile name -----------------------------------------------------------------------
def profile_name(name: Optional[str] = None, device=None) -> str:
    """The size profile: ``name``, else $TUTORIAL_PROFILE, else ``gpu`` on CUDA and ``cpu`` otherwise.

    ``tutorial_lib.sizes.get_sizes`` turns it into every size a lesson measures at."""
    source = "profile"
    if name is None:
        name, source = os.environ.get(PROFILE_ENV) or None, PROFILE_ENV
    if name is None:
        dev = torch.device(device) if device is not None else get_device()
        return "gpu" if dev.type == "cuda" else "cpu"
    key = str(name).strip().lower()
    if key not in PROFILE_NAMES:
        raise ValueError(f"{source}={name!r} is not one of {list(PROFILE_NAMES)}")
    return key


def resolve(device=None, dtype=None) -> Tuple[torch.device, torch.dtype]:
    """(device, dtype) from what a caller passed: None = the default device, and bf16 autocast on
    CUDA / fp32 elsewhere; strings are parsed, bad ones raise ValueError naming the value."""
    dev = device if isinstance(device, torch.device) else get_device(device)
    dt = parse_dtype(dtype) if dtype is not None else default_dtype(dev)
    return dev, dt


def describe_environment(device=None) -> dict:
    """Device, torch version and size profile -- what a notebook's first cell prints."""
    dev, dt = resolve(device)
    return {"device": str(dev), "device_name": device_name(dev), "torch": torch.__version__,
            "profile": profile_name(device=dev), "dtype": dtype_name(dt),
            "threads": torch.get_num_threads()}
