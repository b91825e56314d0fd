"""Device detection and the size profile (``TUTORIAL_PROFILE=smoke|cpu|gpu``).

One profile picks every size a notebook or the CLI measures at, so the same notebook teaches on a
laptop CPU, runs in seconds under CI, and measures the seed's own setting on a GPU:

- ``smoke``: the ``tiny`` model at toy sizes -- CI and tests, seconds.
- ``cpu``:   GPT-2 small dimensions at a batch and length that keep a notebook to a few minutes on
             2 cores; quality (training) runs use the smaller ``gpt2_mini``.
- ``gpu``:   the seed's setting -- GPT-2 small, B=4, T=512, bf16 autocast -- and longer T.

The default comes from the device (``gpu`` when CUDA is available, else ``cpu``); the environment
variable ``TUTORIAL_PROFILE`` overrides it, ``TUTORIAL_DEVICE`` overrides the device.
Analytic numbers (FLOPs, parameters, memory formulas) never depend on the profile.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

PROFILE_ENV = "TUTORIAL_PROFILE"
DEVICE_ENV = "TUTORIAL_DEVICE"
PROFILE_NAMES = ("smoke", "cpu", "gpu")

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


# ---- size profiles ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SizeProfile:
    """Every size a notebook or the CLI measures at, for one kind of machine."""
    name: str  # smoke | cpu | gpu
    preset: str  # model preset for measurements (time, memory, profile)
    batch: int  # batch size of the measured training step
    seq_len: int  # sequence length of the measured training step
    seq_sweep: Tuple[int, ...]  # lengths for "cost vs T" curves (a model sweep raises block_size)
    sweep_batch: int  # batch size for the "cost vs T" sweeps
    min_run_time: float  # seconds torch.utils.benchmark spends per measurement
    dtype: str  # "bfloat16" (autocast) on CUDA, "float32" on CPU
    train_preset: str  # model preset for short quality (validation-loss) runs
    train_batch: int  # batch size of quality runs
    train_seq_len: int  # sequence length of quality runs
    train_steps: int  # optimizer steps of a quality run
    eval_every: int  # validate every k steps
    eval_batches: int  # batches per validation-loss estimate
    decode_tokens: int  # new tokens generated when timing KV-cache decoding
    decode_contexts: Tuple[int, ...]  # context lengths for decode-speed sweeps
    window: int  # sliding-window width used by the window lessons
    profile_steps: int  # profiled steps (after warm-up) for the per-component profile

    @property
    def torch_dtype(self) -> torch.dtype:
        return parse_dtype(self.dtype)

    def replace(self, **changes) -> "SizeProfile":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"SizeProfile has no field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PROFILES = {
    "smoke": SizeProfile(
        name="smoke", preset="tiny", batch=2, seq_len=32, seq_sweep=(32, 64, 128), sweep_batch=1,
        min_run_time=0.05, dtype="float32", train_preset="tiny", train_batch=4, train_seq_len=32,
        train_steps=20, eval_every=10, eval_batches=2, decode_tokens=8, decode_contexts=(16, 64),
        window=16, profile_steps=1),
    "cpu": SizeProfile(
        name="cpu", preset="gpt2_small", batch=1, seq_len=256, seq_sweep=(128, 256, 512, 1024),
        sweep_batch=1, min_run_time=1.0, dtype="float32", train_preset="gpt2_mini",
        train_batch=8, train_seq_len=128, train_steps=200, eval_every=50, eval_batches=8,
        decode_tokens=32, decode_contexts=(64, 256, 512), window=128, profile_steps=2),
    "gpu": SizeProfile(
        name="gpu", preset="gpt2_small", batch=4, seq_len=512,
        seq_sweep=(256, 512, 1024, 2048, 4096), sweep_batch=4, min_run_time=1.0,
        dtype="bfloat16", train_preset="gpt2_small", train_batch=16, train_seq_len=512,
        train_steps=1000, eval_every=100, eval_batches=20, decode_tokens=128,
        decode_contexts=(128, 512, 1024, 2048), window=256, profile_steps=3),
}


def get_profile(name: Optional[str] = None, device=None) -> SizeProfile:
    """The size profile: ``name``, else $TUTORIAL_PROFILE, else ``gpu`` on CUDA and ``cpu`` otherwise."""
    source = "name"
    if name is None:
        name, source = os.environ.get(PROFILE_ENV) or None, PROFILE_ENV
    if name is None:
        dev = torch.device(device) if device is not None else get_device()
        name = "gpu" if dev.type == "cuda" else "cpu"
    key = str(name).strip().lower()
    if key not in PROFILES:
        raise ValueError(f"{source}={name!r} is not one of {list(PROFILE_NAMES)}")
    return PROFILES[key]


def describe_environment(device=None) -> dict:
    """Device, torch version and size profile -- what a notebook's first cell prints."""
    dev = get_device(device) if not isinstance(device, torch.device) else device
    prof = get_profile(device=dev)
    return {"device": str(dev), "device_name": device_name(dev), "torch": torch.__version__,
            "profile": prof.name, "dtype": prof.dtype, "threads": torch.get_num_threads()}
