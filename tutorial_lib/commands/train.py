"""``python -m tutorial_lib train``: a short seeded training run; runs unchanged under torchrun.

    python -m tutorial_lib train --preset gpt2_mini --steps 300 --batch 16 --seq 128 \\
        --optimizer muon --out results/my_runs/train_muon.json
    torchrun --standalone --nproc_per_node 2 -m tutorial_lib train --preset gpt2_mini ...

``--batch`` is the global batch: under torchrun each of N ranks trains on its own batch/N slice
of the same seeded stream and DDP averages gradients, so the loss curve matches the
single-process run (only faster). Model fields can be changed with ``--set``, e.g.
``--set mlp=swiglu --set mlp_ratio=3``. ``--grad-accum K`` runs each step's batch as K micro-batches
(the same gradients, the activations of one micro-batch); ``--checkpoint block`` (or ``attention``,
``mlp``; ``--checkpoint-every K``) recomputes activations in backward instead of keeping them.
``report`` shows the histories of each folder ``results/<folder>/`` as one table of the guide.

A run that diverges (a NaN or inf loss, gradient norm or validation loss) stops at that step,
still writes ``--out`` (strict JSON: the non-finite values as ``null``, ``diverged`` and
``diverged_at_step`` set), prints a summary that says so, and exits with status 3 -- or 0 with
``--allow-divergence``.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys

from tutorial_lib.commands import output_file
from tutorial_lib.model import CHECKPOINT_POLICIES, PRESETS, get_config
from tutorial_lib.optim import DECAYS, OPTIMIZERS
from tutorial_lib.runtime import ADAMW_IMPLS, COMPILE_MODES, NotAvailable
from tutorial_lib.train import DTYPES, TrainConfig, check_sizes, dist_info, resolve_device, train

DIVERGED = 3  # exit status of a run that diverged (2 is a usage error)

HELP = ("short seeded training run with validation loss (AdamW or Muon); the same command runs "
        "under torchrun with DDP")


def add_arguments(p: argparse.ArgumentParser) -> None:

    d = TrainConfig()
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model preset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="change a GPTConfig field, e.g. --set mlp=swiglu --set mlp_ratio=3 (repeatable)")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps")
    p.add_argument("--batch", type=int, default=d.batch_size,
                   help="global batch (sequences per step, split across torchrun ranks)")
    p.add_argument("--seq", type=int, default=d.seq_len, help="tokens per sequence")
    p.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS,
                   help="adamw, or muon (Muon on the blocks' matrices, AdamW on the rest)")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW peak learning rate")
    p.add_argument("--muon-lr", type=float, default=d.muon_lr, help="Muon peak learning rate")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="decoupled weight decay on the matrices")
    p.add_argument("--warmup", type=int, default=d.warmup_steps, help="linear warmup steps")
    p.add_argument("--decay", default=d.decay, choices=DECAYS, help="schedule after warmup")
    p.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio,
                   help="final learning rate as a fraction of the peak")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (0 = off)")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="validate every N steps")
    p.add_argument("--eval-batches", type=int, default=d.eval_batches,
                   help="fixed validation batches per evaluation (at most 4x the validation split's "
                        "tokens: more would re-read it)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="seeds the initial weights, the batch order and the validation batches")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default=d.dtype, choices=DTYPES,
                   help="autocast dtype (auto: bfloat16 on CUDA, float32 on CPU; float16 runs with a GradScaler)")
    p.add_argument("--compile", nargs="?", const="default", default=None, choices=COMPILE_MODES,
                   help="torch.compile the model (optionally a mode: default, reduce-overhead, max-autotune)")
    p.add_argument("--adamw", default=d.adamw, choices=ADAMW_IMPLS,
                   help="AdamW's kernels: for-loop, foreach or fused (auto: fused on CUDA, for-loop elsewhere)")
    p.add_argument("--tf32", action="store_true", help="fp32 matmuls on TF32 tensor cores (CUDA, Ampere+)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", type=output_file, default=None,
                   help="write the history (JSON) here (rank 0; checked before training starts)")
    p.add_argument("--allow-divergence", action="store_true",
                   help="exit 0 even when the run diverges (a NaN/inf loss or gradient norm)")
    # the memory budget (lesson 12): micro-batches per step, and what each block recomputes
    p.add_argument("--grad-accum", type=int, default=d.grad_accum, metavar="K",
                   help="gradient accumulation: each step's batch in K micro-batches (must divide the "
                        "batch per rank); DDP all-reduces once per step")
    p.add_argument("--checkpoint", default=None, choices=CHECKPOINT_POLICIES,
                   help="activation checkpointing: recompute each block, its attention or its MLP in "
                        "backward (GPTConfig.checkpoint)")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="K",
                   help="with --checkpoint: only in blocks 0, K, 2K, ... (default: every block)")


def parse_overrides(items) -> dict:
    """["mlp=swiglu", "mlp_ratio=3"] -> {"mlp": "swiglu", "mlp_ratio": 3} (Python literals or text)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r} is not FIELD=VALUE")
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


def run(args) -> int:

    rank = dist_info().rank
    try:
        overrides = parse_overrides(args.overrides)
        for field in ("checkpoint", "checkpoint_every"):  # the flags win over --set
            if getattr(args, field) is not None:
                overrides[field] = getattr(args, field)
        cfg = get_config(args.preset, **overrides)
        tc = TrainConfig(steps=args.steps, batch_size=args.batch, seq_len=args.seq,
                         optimizer=args.optimizer, lr=args.lr, muon_lr=args.muon_lr,
                         weight_decay=args.weight_decay, warmup_steps=args.warmup,
                         decay=args.decay, min_lr_ratio=args.min_lr_ratio,
                         grad_clip=args.grad_clip, eval_every=args.eval_every,
                         eval_batches=args.eval_batches, seed=args.seed, device=args.device,
                         dtype=args.dtype, compile=args.compile or False, adamw=args.adamw, tf32=args.tf32,
                         progress=not args.no_progress, grad_accum=args.grad_accum)
        check_sizes(cfg, tc, dist_info().world_size)  # before any work: sizes the splits cannot serve
        tc.step_settings().check(resolve_device(tc.device))  # "not available here: ..." before any work
        history = train(cfg, tc)
    except (ValueError, NotAvailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if rank == 0:
        print(json.dumps(history.summary(), allow_nan=False))
        if args.out:
            print(f"history written to {history.save(args.out)}")
    if history.diverged:
        ts, tl = history.last_finite("train_loss")
        last = "no finite training loss" if tl is None else f"last finite training loss {tl:.6g} at step {ts}"
        msg = (f"training {history.divergence()} of {tc.steps} steps; {last}; "
               "try a lower --lr/--muon-lr or more --warmup")
        if args.allow_divergence:
            if rank == 0:
                print(f"warning: {msg}", file=sys.stderr)
            return 0
        if rank == 0:
            print(f"error: {msg} (or pass --allow-divergence)", file=sys.stderr)
        return DIVERGED
    return 0
