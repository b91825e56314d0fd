"""Short, seeded training runs with validation loss: does a change learn as well, per step and per second?

The seed judges every optimisation by speed *and* by "val loss @ 1000". ``train`` answers the
second question honestly on the bundled corpus: the same seed gives the same model, the same
batches and (on CPU) bit-identical losses, so two runs differ only by what you changed.

    >>> h = train("tiny", TrainConfig(steps=50, batch_size=8, seq_len=64))
    >>> h.final_val_loss, h.tokens_per_s

A run is AdamW (fused on CUDA) or Muon for the hidden matrices + AdamW for the rest
(``tutorial_lib.optim``), linear warmup then cosine/linear decay, gradient clipping, bf16 autocast
on CUDA, validation on fixed held-out batches every ``eval_every`` steps, and a tqdm bar. How its
steps run -- autocast dtype (float16 with a GradScaler), TF32, torch.compile's mode, AdamW's
kernels -- are TrainConfig fields (``dtype``, ``tf32``, ``compile``, ``adamw``: a
``runtime.StepSettings``), measured like any other change.

Gradient accumulation (``grad_accum``): each step's batch runs as ``grad_accum`` micro-batches, each
loss scaled by 1/grad_accum, so the gradients add up to the whole batch's (``accumulate_gradients``)
with the memory of one micro-batch; under DDP the gradients are all-reduced once, on the last
micro-batch (``DistributedDataParallel.no_sync`` on the others). Activation checkpointing is the
model's (``GPTConfig.checkpoint``).

Scale-out: under ``torchrun --nproc_per_node N`` (env ``WORLD_SIZE`` > 1) the model is wrapped in
DistributedDataParallel (gloo on CPU, nccl on CUDA). ``batch_size`` is the *global* batch: each
rank takes its own ``batch_size / N`` slice of the same seeded stream (``data.BatchSampler``), and
DDP averages the gradients, so N ranks follow the trajectory of one process with the same
global batch, only faster.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Union

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from tutorial_lib import data, runtime, settings
from tutorial_lib.accumulate import accumulate_gradients
from tutorial_lib.files import atomic_write_text
from tutorial_lib.measure import records
from tutorial_lib.measure.validate import check_history
from tutorial_lib.model import GPT, GPTConfig, get_config
from tutorial_lib.optim import (
    DECAYS,
    OPTIMIZERS,
    OptimizerSpec,
    build_optimizer,
    lr_scale,
)
from tutorial_lib.settings import device_name, get_device, synchronize

SCHEMA_VERSION = 1
DTYPES = runtime.DTYPES  # "auto" = bfloat16 on CUDA, float32 elsewhere; float16 runs with a GradScaler
HISTORY_KIND = records.TRAIN_HISTORY  # the "kind" a saved history carries


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 200  # optimizer steps
    batch_size: int = 8  # GLOBAL sequences per step (split evenly across DDP ranks)
    seq_len: int = 128  # tokens per sequence (<= the model's block_size)
    optimizer: str = "adamw"  # "adamw" or "muon" (Muon on hidden matrices, AdamW on the rest)
    lr: float = 3e-3  # AdamW peak learning rate (embeddings/head/norms in a Muon run)
    muon_lr: float = 0.02  # Muon peak learning rate for the blocks' matrices
    weight_decay: float = 0.1  # decoupled weight decay on matrices
    warmup_steps: int = 20  # linear warmup steps
    decay: str = "cosine"  # "cosine", "linear" or "constant" after warmup
    min_lr_ratio: float = 0.1  # the schedule ends at min_lr_ratio * peak
    grad_clip: Optional[float] = 1.0  # max global gradient norm; None or 0 = no clipping
    eval_every: int = 50  # validation loss every this many steps (also at step 0 and the end)
    eval_batches: int = 4  # fixed validation batches per evaluation
    eval_batch_size: Optional[int] = None  # global sequences per validation batch (None = batch_size)
    seed: int = 0  # model init, batch order and validation batches
    device: Optional[str] = None  # None = CUDA if available, else CPU (under DDP on CUDA: cuda:LOCAL_RANK)
    dtype: str = "auto"  # autocast: "auto" = bfloat16 on CUDA, float32 on CPU; "float16" with a GradScaler
    compile: Union[bool, str] = False  # torch.compile the model: True (default mode) or a mode name
    adamw: str = "auto"  # AdamW's kernels: "for-loop", "foreach", "fused" ("auto": fused on CUDA)
    tf32: bool = False  # fp32 matmuls on TF32 tensor cores (CUDA, Ampere and later)
    progress: bool = True  # tqdm bar (rank 0 only)
    # memory budget (lesson 12): micro-batches per step, each batch_size / (world_size * grad_accum)
    grad_accum: int = 1

    def __post_init__(self):
        for f, lo in (("steps", 1), ("batch_size", 1), ("seq_len", 1), ("warmup_steps", 0),
                      ("eval_every", 1), ("eval_batches", 1), ("seed", 0), ("grad_accum", 1)):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"TrainConfig.{f}={v!r} must be an integer >= {lo}")
        if self.eval_batch_size is not None and (not isinstance(self.eval_batch_size, int)
                                                 or isinstance(self.eval_batch_size, bool)
                                                 or self.eval_batch_size < 1):
            raise ValueError(f"TrainConfig.eval_batch_size={self.eval_batch_size!r} must be None "
                             "or an integer >= 1")
        for f in ("progress", "tf32"):
            if not isinstance(getattr(self, f), bool):
                raise ValueError(f"TrainConfig.{f}={getattr(self, f)!r} must be True or False")
        if self.device is not None and not isinstance(self.device, str):
            raise ValueError(f"TrainConfig.device={self.device!r} must be None or a device name "
                             "('cpu', 'cuda:0', ...)")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer={self.optimizer!r} is not one of {list(OPTIMIZERS)}")
        if self.decay not in DECAYS:
            raise ValueError(f"TrainConfig.decay={self.decay!r} is not one of {list(DECAYS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"TrainConfig.dtype={self.dtype!r} is not one of {list(DTYPES)}")
        if not isinstance(self.compile, bool) and self.compile not in runtime.COMPILE_MODES:
            raise ValueError(f"TrainConfig.compile={self.compile!r} must be True, False or one of "
                             f"{list(runtime.COMPILE_MODES)}")
        if self.adamw not in runtime.ADAMW_IMPLS:
            raise ValueError(f"TrainConfig.adamw={self.adamw!r} is not one of {list(runtime.ADAMW_IMPLS)}")
        if not (_is_number(self.min_lr_ratio) and 0.0 <= self.min_lr_ratio <= 1.0):
            raise ValueError(f"TrainConfig.min_lr_ratio={self.min_lr_ratio!r} must be a number in [0, 1]")
        if self.grad_clip is not None and not (_is_number(self.grad_clip) and self.grad_clip >= 0):
            raise ValueError(f"TrainConfig.grad_clip={self.grad_clip!r} must be None or a number >= 0")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"TrainConfig.grad_accum={self.grad_accum} does not divide batch_size="
                             f"{self.batch_size}: every micro-batch must hold the same number of sequences")
        try:
            self.optimizer_spec()  # validates lr, muon_lr, weight_decay
        except ValueError as e:
            raise ValueError(f"TrainConfig.{e}") from None

    def optimizer_spec(self) -> OptimizerSpec:
        return OptimizerSpec(self.optimizer, lr=self.lr, muon_lr=self.muon_lr,
                             weight_decay=self.weight_decay, adamw_impl=self.adamw)

    def step_settings(self) -> runtime.StepSettings:
        """How this run's steps run: autocast dtype, TF32, compile mode and AdamW's kernels."""
        mode = "default" if self.compile is True else (self.compile or None)
        return runtime.StepSettings(dtype=self.dtype, tf32=self.tf32, compile=mode, adamw=self.adamw)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def _is_number(v) -> bool:
    """A real number that is not a bool and not NaN (True is an int to Python, not a rate)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def _finite(x: float) -> bool:
    return x is not None and math.isfinite(x)


# the per-step and per-validation float series: a non-finite value is stored as JSON null
FLOAT_SERIES = ("train_loss", "lr", "grad_norm", "step_time_s", "optimizer_time_s", "val_loss", "val_wall_s")


@dataclass
class TrainHistory:
    """What a run did, step by step; JSON-serialisable (``save`` / ``load``).

    A run *diverges* when a training loss, a gradient norm or a validation loss is not finite
    (NaN or inf). It then stops at once: ``diverged`` is True, ``diverged_at_step`` is the step,
    ``final_val_loss`` is NaN (the weights are ruined; the last validation before is no verdict on
    them) and the summary says so with the last finite losses. Saved histories are strict JSON:
    a non-finite value is written as ``null``, which only a history with ``diverged`` True holds.
    """

    model: dict  # GPTConfig.to_dict()
    config: dict  # TrainConfig as a dict
    optimizer: str
    device: str
    dtype: str  # compute dtype of the forward/backward (autocast)
    world_size: int
    n_params: int
    tokens_per_step: int  # global batch_size * seq_len
    steps: List[int] = field(default_factory=list)  # 1..N: optimizer steps done
    train_loss: List[float] = field(default_factory=list)  # mean over the global batch
    lr: List[float] = field(default_factory=list)  # AdamW group lr used at that step
    grad_norm: List[float] = field(default_factory=list)  # before clipping
    step_time_s: List[float] = field(default_factory=list)  # batch + fwd + bwd + clip + update
    optimizer_time_s: List[float] = field(default_factory=list)  # the update alone
    val_steps: List[int] = field(default_factory=list)  # steps done when validated (0 = init)
    val_loss: List[float] = field(default_factory=list)
    val_wall_s: List[float] = field(default_factory=list)  # training time so far (eval excluded)
    diverged: bool = False  # stopped on a non-finite loss or gradient norm (see the class doc)
    diverged_at_step: Optional[int] = None  # the step whose loss/grad norm/val loss was not finite
    skipped_steps: List[int] = field(default_factory=list)  # float16: steps the GradScaler skipped (inf/NaN grads)
    device_name: str = ""  # hardware: GPU name, or CPU model and cores
    torch_version: str = torch.__version__
    schema_version: int = SCHEMA_VERSION

    @property
    def wall_time_s(self) -> float:
        """Training time, evaluation excluded."""
        return float(sum(self.step_time_s))

    @property
    def median_step_s(self) -> float:
        t = sorted(self.step_time_s[1:] or self.step_time_s)  # the first step includes warm-up
        return t[len(t) // 2]

    @property
    def median_optimizer_s(self) -> float:
        t = sorted(self.optimizer_time_s[1:] or self.optimizer_time_s)
        return t[len(t) // 2]

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.median_step_s

    @property
    def final_val_loss(self) -> float:
        """The validation loss at the end of the run; NaN when the run diverged."""
        return float("nan") if self.diverged else self.val_loss[-1]

    def divergence(self) -> str:
        """"" for a run that did not diverge, else when and what was not finite:
        "diverged at step 5 (gradient norm not finite)"."""
        if not self.diverged:
            return ""
        n, bad = self.diverged_at_step, []
        if n in self.steps:
            i = self.steps.index(n)
            bad += [name for name, v in (("training loss", self.train_loss[i]),
                                         ("gradient norm", self.grad_norm[i])) if not _finite(v)]
        if self.val_steps and self.val_steps[-1] == n and not _finite(self.val_loss[-1]):
            bad.append("validation loss")
        return f"diverged at step {n}" + (f" ({', '.join(bad)} not finite)" if bad else "")

    def last_finite(self, series: str) -> tuple:
        """(step, value) of the last finite entry of "train_loss" or "val_loss", or (None, None)."""
        steps = self.steps if series == "train_loss" else self.val_steps
        for step, v in zip(reversed(steps), reversed(getattr(self, series))):
            if _finite(v):
                return step, v
        return None, None

    def val_loss_at_time(self, seconds: float) -> float:
        """Validation loss after ``seconds`` of training, read off the loss-vs-time curve: linear
        interpolation between validation points (clamped to the first and last point)."""
        return _interp(seconds, self.val_wall_s, self.val_loss)

    def steps_at_time(self, seconds: float) -> float:
        """Optimizer steps done after ``seconds`` of training (interpolated like val_loss_at_time)."""
        return _interp(seconds, self.val_wall_s, self.val_steps)

    @property
    def label(self) -> str:
        return f"{self.model.get('name', 'model')} / {self.optimizer}"

    def summary(self) -> dict:
        """The run in one line of JSON. A diverged run has ``final_val_loss`` None, ``status``
        "diverged at step N (what was not finite)" and the last finite training and validation
        losses."""
        out = {"model": self.model.get("name"), "optimizer": self.optimizer, "device": self.device,
               "device_name": self.device_name,
               "dtype": self.dtype, "world_size": self.world_size, "params": self.n_params,
               "steps": len(self.steps), "batch_size": self.config["batch_size"],
               "seq_len": self.config["seq_len"],
               "final_val_loss": None if self.diverged else round(self.final_val_loss, 4),
               "median_step_ms": round(1e3 * self.median_step_s, 2),
               "median_optimizer_ms": round(1e3 * self.median_optimizer_s, 2),
               "tokens_per_s": round(self.tokens_per_s, 1), "wall_time_s": round(self.wall_time_s, 2)}
        if self.skipped_steps:  # float16: updates the GradScaler skipped (inf/NaN gradients)
            out["skipped_steps"] = len(self.skipped_steps)
        if self.diverged:
            (ts, tl), (vs, vl) = self.last_finite("train_loss"), self.last_finite("val_loss")
            out.update(status=self.divergence(), diverged=True,
                       diverged_at_step=self.diverged_at_step, steps_planned=self.config.get("steps"),
                       last_finite_train_loss=None if tl is None else round(tl, 4),
                       last_finite_train_step=ts,
                       last_finite_val_loss=None if vl is None else round(vl, 4), last_finite_val_step=vs)
        return out

    def to_dict(self) -> dict:
        """The fields, ``kind`` "train_history" and the summary; non-finite floats become None."""
        d = dataclasses.asdict(self)
        for key in FLOAT_SERIES:
            d[key] = [v if _finite(v) else None for v in d[key]]
        return {"kind": HISTORY_KIND, **d, "summary": self.summary()}

    def save(self, path: Union[str, Path]) -> Path:
        """Write the history as strict JSON, atomically (a failed write leaves the old file intact)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), allow_nan=False))

    @classmethod
    def from_dict(cls, d: dict, source: str = "history") -> "TrainHistory":
        """A history from ``to_dict``'s output (the stored summary is ignored: it is recomputed);
        ValueError naming ``source`` for a wrong schema version, a missing field or an unknown one,
        or a value ``measure.validate.check_history`` refuses."""
        if not isinstance(d, dict):
            raise ValueError(f"{source}: a training history is a JSON object, not {type(d).__name__}")
        v = d.get("schema_version")
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= SCHEMA_VERSION:
            raise ValueError(f"{source}: training history schema_version={v!r} is not one this "
                             f"library reads (1..{SCHEMA_VERSION})")
        checked = d
        d = {k: v for k, v in d.items() if k not in ("summary", "kind")}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n, f in fields.items() if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING] + ["val_loss", "steps"]
        missing = [n for n in required if n not in d]
        unknown = sorted(set(d) - set(fields))
        if missing or unknown:
            raise ValueError(f"{source}: not a training history (missing {missing}, unknown {unknown})")
        if isinstance(d["val_loss"], list) and not d["val_loss"]:
            raise ValueError(f"{source}: a training history needs at least one validation loss")
        check_history(checked, source)  # types, finite values, times >= 0, one length per series
        for key in FLOAT_SERIES:
            d[key] = [float("nan") if x is None else x for x in d.get(key, [])]
        return cls(**d)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "TrainHistory":
        """Read a history written by ``save`` (ValueError naming the file when it is not one)."""
        return cls.from_dict(records.read_json(path), source=str(path))


def _interp(x: float, xs: List[float], ys: List[float]) -> float:
    if not xs:
        return float("nan")
    if x <= xs[0]:
        return float(ys[0])
    for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]):
        if x <= x1:
            return float(y1 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0))
    return float(ys[-1])


# ---- distributed ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1


def dist_info() -> DistInfo:
    """Rank and world size from torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE)."""
    env = os.environ
    return DistInfo(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)),
                    int(env.get("WORLD_SIZE", 1)))


def resolve_device(name: Optional[str], info: DistInfo = DistInfo()) -> torch.device:
    """``settings.get_device`` (cuda if present, $TUTORIAL_DEVICE overrides); on CUDA under DDP each
    rank takes ``cuda:LOCAL_RANK``."""
    device = get_device(None if name in (None, "auto") else name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info.local_rank if info.world_size > 1 else 0)
    return device


# ---- validation ----------------------------------------------------------------------------
# An evaluation reads at most this many times the validation split's tokens: its batches are random
# windows, which by then have covered 1 - e^-4 = 98% of the split, so more batches only add time
# (every evaluation of the run reads them all) and device memory (they are kept there).
EVAL_SPLIT_PASSES = 4


def check_sizes(cfg: GPTConfig, tc: TrainConfig, world_size: int = 1) -> None:
    """The errors a run would otherwise hit late: sequence too long, batch bigger than a split,
    validation batches beyond ``EVAL_SPLIT_PASSES`` times the validation split."""
    if tc.seq_len > cfg.block_size:
        raise ValueError(f"TrainConfig.seq_len={tc.seq_len} exceeds the model's block_size="
                         f"{cfg.block_size}")
    for split, b in (("train", tc.batch_size), ("val", tc.eval_batch_size or tc.batch_size)):
        n = len(data.get_split(split))
        if b * tc.seq_len > n:
            raise ValueError(f"batch_size * seq_len = {b} * {tc.seq_len} = {b * tc.seq_len} tokens "
                             f"is larger than the {split!r} split ({n} tokens)")
        if b % world_size:
            raise ValueError(f"global batch size {b} ({split}) is not divisible by "
                             f"world_size={world_size}")
    eval_b = tc.eval_batch_size or tc.batch_size
    per_eval, n_val = tc.eval_batches * eval_b * tc.seq_len, len(data.get_split("val"))
    if per_eval > EVAL_SPLIT_PASSES * n_val:
        most = EVAL_SPLIT_PASSES * n_val // (eval_b * tc.seq_len)
        raise ValueError(f"TrainConfig.eval_batches={tc.eval_batches!r} reads {per_eval:,} validation tokens "
                         f"per evaluation ({tc.eval_batches:,} x {eval_b} x {tc.seq_len}), more than "
                         f"{EVAL_SPLIT_PASSES}x the 'val' split ({n_val:,} tokens): by then its random windows "
                         f"cover {1 - math.exp(-EVAL_SPLIT_PASSES):.0%} of it, so more batches only cost time "
                         f"and memory. Use at most {most:,} at these sizes")
    per_rank = tc.batch_size // world_size
    if per_rank % tc.grad_accum:
        raise ValueError(f"each rank's batch ({tc.batch_size} / world_size={world_size} = {per_rank} sequences) "
                         f"is not divisible by grad_accum={tc.grad_accum}")


def val_loss(model: torch.nn.Module, batch_size: int = 8, seq_len: int = 128, eval_batches: int = 4,
             seed: int = 0, dtype=None) -> float:
    """Mean loss of ``model`` on the fixed validation batches ``train`` uses for these sizes and seed."""
    dev, dt = settings.resolve(next(model.parameters()).device, dtype)
    s = data.BatchSampler("val", batch_size, seq_len, seed=seed + 1, device=dev)  # train's val stream
    return evaluate(model, [s.next_batch() for _ in range(eval_batches)], lambda: settings.autocast(dev, dt))


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, autocast) -> float:
    """Mean loss over fixed batches (mean over ranks under DDP)."""
    was_training = model.training
    model.eval()
    total = None
    for x, y in batches:
        with autocast():
            _, loss = model(x, y)
        total = loss.float() if total is None else total + loss.float()
    total = total / len(batches)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        total = total / dist.get_world_size()
    model.train(was_training)
    return float(total)


# ---- the run -------------------------------------------------------------------------------
def train(model: Union[GPT, GPTConfig, str], config: Optional[TrainConfig] = None,
          **changes) -> TrainHistory:
    """Train for ``config.steps`` steps and return the history.

    ``model`` is a preset name or a GPTConfig (a fresh ``GPT`` is built, seeded with
    ``config.seed``), or a ``GPT`` to keep training in place -- e.g. a model converted from MHA
    to GQA (the GQA paper's "uptraining"); its history's first validation loss is the one it
    started with. ``changes`` override TrainConfig fields (``train("tiny", steps=20,
    optimizer="muon")``). Under torchrun (WORLD_SIZE > 1) the process group is set up here (and
    torn down again if this call created it); every rank returns the same history, and only
    rank 0 shows progress.
    """
    net = model if isinstance(model, GPT) else None
    cfg = net.config if net is not None else (get_config(model) if isinstance(model, str) else model)
    if not isinstance(cfg, GPTConfig):
        raise ValueError(f"model={model!r} must be a GPT, a GPTConfig or a preset name")
    tc = (config or TrainConfig()).replace(**changes) if changes else (config or TrainConfig())
    info = dist_info()
    check_sizes(cfg, tc, info.world_size)
    device = resolve_device(tc.device, info)
    created_group = False
    if info.world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        created_group = True
    try:
        # the run seeds its own generator state; the caller's global RNG is left as it was
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            history = _run(cfg, tc, info, device, net)
        if created_group:  # every rank done with its collectives before any rank tears the group down
            dist.barrier()
        return history
    finally:
        if created_group:
            # the DDP wrapper sits in reference cycles and holds the process group: collect it while
            # the group is alive. Left to a later collection, its gloo group's destructor joined a
            # thread after destroy_process_group -- a hang in one process, SIGABRT ("terminate called
            # without an active exception") in a torchrun rank.
            gc.collect()
            dist.destroy_process_group()


def _run(cfg: GPTConfig, tc: TrainConfig, info: DistInfo, device: torch.device,
         net: Optional[GPT] = None) -> TrainHistory:
    run = tc.step_settings()
    run.check(device)  # runtime.NotAvailable: e.g. TF32 on a CPU, before any work
    compute = run.compute_dtype(device)
    amp_dtype = None if compute == torch.float32 else compute
    autocast = ((lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype is not None
                else contextlib.nullcontext)
    # float16's range ends at 65,504 and its smallest step near 6e-8: the loss is scaled up so small
    # gradients survive, then unscaled before clipping; a step with inf/NaN gradients is skipped
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None

    def sync():  # wait for the device before reading the clock (a no-op on CPU)
        synchronize(device)

    torch.manual_seed(tc.seed)  # identical initial weights on every rank and every run
    raw = (net if net is not None else GPT(cfg)).to(device)
    model = raw
    no_sync = None  # DDP's: skip the all-reduce on the micro-batches before the last
    if info.world_size > 1:
        # the only buffers are RoPE tables, identical on every rank: nothing to broadcast per step
        model = DDP(raw, device_ids=[device.index] if device.type == "cuda" else None,
                    broadcast_buffers=False)
        no_sync = model.no_sync
    opt = build_optimizer(raw, tc.optimizer_spec())
    if run.compile:
        model = torch.compile(model, mode=run.compile)

    W = info.world_size
    sampler = data.BatchSampler("train", tc.batch_size // W, tc.seq_len, seed=tc.seed,
                                rank=info.rank, world_size=W, device=device)
    eval_b = tc.eval_batch_size or tc.batch_size
    val_sampler = data.BatchSampler("val", eval_b // W, tc.seq_len, seed=tc.seed + 1,
                                    rank=info.rank, world_size=W, device=device)
    val_batches = [val_sampler.next_batch() for _ in range(tc.eval_batches)]

    h = TrainHistory(model=cfg.to_dict(), config=dataclasses.asdict(tc), optimizer=tc.optimizer,
                     device=str(device), dtype=str(amp_dtype or torch.float32).replace("torch.", ""),
                     world_size=W, n_params=raw.num_params(),
                     tokens_per_step=tc.batch_size * tc.seq_len, device_name=device_name(device))

    def validate(step: int) -> None:
        h.val_steps.append(step)
        h.val_loss.append(evaluate(model, val_batches, autocast))
        h.val_wall_s.append(h.wall_time_s)

    bar = None
    if tc.progress and info.rank == 0:
        bar = tqdm(total=tc.steps, desc=f"{cfg.name}/{tc.optimizer}", unit="step",
                   mininterval=1.0, dynamic_ncols=True)
    clip = tc.grad_clip or None
    model.train()
    validate(0)
    if not math.isfinite(h.val_loss[0]):
        raise ValueError(f"the model's validation loss before training is {h.val_loss[0]}: its weights "
                         "are not finite, so there is nothing to train")
    for step in range(tc.steps):
        opt.set_lr_scale(lr_scale(step, tc.steps, tc.warmup_steps, tc.decay, tc.min_lr_ratio))
        sync()
        t0 = time.perf_counter()
        x, y = sampler.next_batch()
        with runtime.matmul_precision(tc.tf32):
            loss = accumulate_gradients(model, x, y, tc.grad_accum, autocast, no_sync, scaler=scaler)
            if scaler is not None:
                for o in opt.optimizers.values():
                    scaler.unscale_(o)  # clip and report the true gradients
            # max_norm=inf measures the norm without clipping
            gnorm = torch.nn.utils.clip_grad_norm_(raw.parameters(), clip or float("inf"))
            sync()
            t1 = time.perf_counter()
            if scaler is None:
                opt.step()
            else:  # each optimizer skips the update when its gradients hold an inf or NaN
                for o in opt.optimizers.values():
                    scaler.step(o)
                scaler.update()
            opt.zero_grad()
        sync()
        t2 = time.perf_counter()
        if W > 1:
            dist.all_reduce(loss, op=dist.ReduceOp.SUM)
            loss = loss / W
        h.steps.append(step + 1)
        h.train_loss.append(float(loss))
        h.lr.append(opt.param_groups[0]["lr"])
        h.grad_norm.append(float(gnorm))
        h.step_time_s.append(t2 - t0)
        h.optimizer_time_s.append(t2 - t1)
        # a NaN/inf gradient norm has already been applied: the weights are ruined even when this
        # step's loss (computed before the update) is still finite. Every rank sees the same
        # all-reduced loss and norm, so every rank stops at the same step.
        if scaler is not None and math.isfinite(h.train_loss[-1]) and not math.isfinite(h.grad_norm[-1]):
            h.skipped_steps.append(step + 1)  # the scaler skipped this update and lowered its scale
        elif not (math.isfinite(h.train_loss[-1]) and math.isfinite(h.grad_norm[-1])):
            h.diverged, h.diverged_at_step = True, step + 1
            break
        if (step + 1) % tc.eval_every == 0 or step + 1 == tc.steps:
            validate(step + 1)
            if not math.isfinite(h.val_loss[-1]):
                h.diverged, h.diverged_at_step = True, step + 1
                break
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{h.train_loss[-1]:.3f}", val=f"{h.val_loss[-1]:.3f}", refresh=False)
    if bar is not None:
        bar.close()
    return h
