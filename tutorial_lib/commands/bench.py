"""``python -m tutorial_lib bench``: timed GPT steps -> a stamped results file.

A grid of measurements (every combination of the list-valued options):

    python -m tutorial_lib bench --preset gpt2_small --batch 4 --seq 256 512 1024 \\
        --attn eager sdpa --mode train --out results/attention_T.json

or a named suite of measurements (``tutorial_lib.guide.suite``; e.g. everything the guide cites):

    python -m tutorial_lib bench --suite guide --out results/<device>.json

Results are written with ``measure.records`` (schema version, device, dtype, torch version, date),
atomically. A point that runs out of memory or hits an unsupported backend is recorded with its
error and the run goes on; bad options (an ``--out`` that cannot be written, ``--min-run-time``
<= 0, ``--only`` without ``--suite``, grid options with ``--suite``) are refused before anything
runs.
"""
from __future__ import annotations

import argparse
import itertools
import signal
import sys

from tutorial_lib import attention, runtime, settings
from tutorial_lib.commands import output_file, positive_float
from tutorial_lib.guide import plan, suite
from tutorial_lib.lessons.common import format_rows
from tutorial_lib.loss import LOSS_IMPLS
from tutorial_lib.measure import records
from tutorial_lib.measure import timing as bench
from tutorial_lib.measure.timing import MODES
from tutorial_lib.model import PRESETS, get_config
from tutorial_lib.runtime import ADAMW_IMPLS, COMPILE_MODES
from tutorial_lib.sizes import get_sizes

HELP = "timed GPT steps over a grid (or a named suite) -> results/NAME.json"


def add_arguments(p: argparse.ArgumentParser) -> None:

    names = list(suite.SUITES)
    p.add_argument("--suite", default=None, choices=names or None,
                   help="run a named suite instead of a grid" + (f" ({', '.join(names)})" if names else ""))
    p.add_argument("--only", nargs="+", default=None, metavar="SECTION",
                   help="with --suite: run only these sections, in this order")
    p.add_argument("--budget-s", type=float, default=None, metavar="SECONDS",
                   help="with --suite: start no section after this many seconds, and skip in advance a "
                        "section predicted to take longer than the time left (guide/plan.py: recorded "
                        "times in --history, else the profile's estimates); those are recorded as not "
                        "run. The --out file is rewritten after every section; SIGINT stops the suite "
                        "and keeps what was measured (exit 130)")
    p.add_argument("--priority", action="store_true",
                   help="with --suite: run the device run's priority sections first (guide/plan.py's "
                        "PRIORITY: breakdown, memory, before/after, LM head, ...), then the rest")
    p.add_argument("--history", default="results", metavar="DIR",
                   help="with --suite --budget-s: a folder of results files whose recorded section times "
                        "predict each section's cost (default: results; none there: the estimates)")
    p.add_argument("--preset", nargs="+", default=None, choices=sorted(PRESETS),
                   help="model preset(s) (default: the size profile's)")
    p.add_argument("--batch", nargs="+", type=int, default=None, help="batch size(s)")
    p.add_argument("--seq", nargs="+", type=int, default=None, help="sequence length(s)")
    p.add_argument("--mode", nargs="+", default=None, choices=MODES,
                   help="fwd, fwdbwd (forward+backward) or train (+ AdamW step) (default: train)")
    p.add_argument("--attn", nargs="+", default=None, choices=attention.names(), help="attention backend(s)")
    p.add_argument("--kv-heads", nargs="+", type=int, default=None, help="n_kv_head value(s) (GQA/MQA)")
    p.add_argument("--mlp", nargs="+", default=None, choices=("gelu", "swiglu"), help="MLP kind(s)")
    p.add_argument("--mlp-ratio", nargs="+", type=float, default=None, help="MLP expansion ratio(s)")
    p.add_argument("--window", nargs="+", type=int, default=None, help="sliding window(s)")
    p.add_argument("--loss", nargs="+", default=None, choices=LOSS_IMPLS,
                   help="LM head + loss: full logits, or chunked (notebook 08)")
    p.add_argument("--pad-vocab", nargs="+", type=int, default=None, metavar="MULTIPLE",
                   help="pad the vocabulary to a multiple of this (64: 50,257 -> 50,304, nanoGPT's)")
    p.add_argument("--mask-vocab-padding", action="store_true",
                   help="with --pad-vocab: padded logits -> -inf before the loss (exact)")
    p.add_argument("--compile", nargs="?", const="default", default=None, choices=COMPILE_MODES,
                   help="torch.compile the model (optionally a mode: default, reduce-overhead, max-autotune)")
    p.add_argument("--adamw", nargs="+", default=None, choices=ADAMW_IMPLS[1:],
                   help="AdamW's kernels: for-loop, foreach, fused (default: fused on CUDA, for-loop elsewhere)")
    p.add_argument("--tf32", action="store_true", help="fp32 matmuls on TF32 tensor cores (CUDA, Ampere+)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                   help="compute dtype (default: bfloat16 autocast on CUDA, float32 on CPU)")
    p.add_argument("--profile", default=None, choices=("smoke", "cpu", "gpu"),
                   help="size profile (default: $TUTORIAL_PROFILE, else from the device)")
    p.add_argument("--min-run-time", type=positive_float, default=None,
                   help="seconds of timing per point, > 0 (default: size profile)")
    p.add_argument("--out", type=output_file, default=None,
                   help="write the results here, e.g. results/NAME.json (checked before anything runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def grid(args, prof) -> list:
    """The measure_step keyword sets of a grid run (every combination of the list options)."""

    axes = {
        "preset": args.preset or [prof.step.preset],
        "batch_size": args.batch or [prof.step.batch],
        "seq_len": args.seq or [prof.step.seq_len],
        "mode": args.mode or ["train"],
        "attn_backend": args.attn or [None],
        "n_kv_head": args.kv_heads or [None],
        "mlp": args.mlp or [None],
        "mlp_ratio": args.mlp_ratio or [None],
        "window": args.window or [None],
        "loss_impl": args.loss or [None],
        "pad_vocab_multiple": args.pad_vocab or [None],
        "adamw": args.adamw or ["auto"],
    }
    points = []
    for combo in itertools.product(*axes.values()):
        a = dict(zip(axes, combo))
        changes = {k: a[k] for k in ("attn_backend", "n_kv_head", "mlp", "mlp_ratio", "window", "loss_impl",
                                     "pad_vocab_multiple") if a[k] is not None}
        if args.mask_vocab_padding:
            changes["mask_vocab_padding"] = True
        cfg = get_config(a["preset"], **changes)  # ValueError for a bad combination
        if a["seq_len"] > cfg.block_size and cfg.pos == "rope":
            cfg = cfg.replace(block_size=a["seq_len"])  # RoPE has no table: longer T is fine
        label = cfg.name + "".join(f" {k}={v}" for k, v in changes.items())
        label += f" adamw={a['adamw']}" if args.adamw else ""
        points.append({"config": cfg, "batch_size": a["batch_size"], "seq_len": a["seq_len"],
                       "mode": a["mode"], "label": label, "adamw": a["adamw"]})
    return points


# options a grid uses and a suite would silently ignore (a suite measures at its size profile's sizes)
GRID_ONLY = ("preset", "batch", "seq", "mode", "attn", "kv_heads", "mlp", "mlp_ratio", "window",
             "compile", "dtype", "min_run_time", "pad_vocab", "mask_vocab_padding", "adamw", "tf32")


def check_options(args) -> None:
    """ValueError for options that would be ignored: ``--only`` without ``--suite``, grid options
    with ``--suite``."""
    if args.only and not args.suite:
        raise ValueError(f"--only {' '.join(args.only)} picks sections of a suite: add --suite "
                         f"({', '.join(suite.SUITES)})")
    for flag, given in (("--budget-s", args.budget_s is not None), ("--priority", args.priority)):
        if given and not args.suite:
            raise ValueError(f"{flag} orders and time-boxes the sections of a suite: add --suite "
                             f"({', '.join(suite.SUITES)})")
    if args.budget_s is not None and not args.budget_s > 0:
        raise ValueError(f"--budget-s={args.budget_s} must be > 0 seconds")
    if args.suite:
        given = [o for o in GRID_ONLY if getattr(args, o) not in (None, False)]
        if given:
            flags = ", ".join("--" + o.replace("_", "-") for o in given)
            raise ValueError(f"{flags} set(s) a grid, but --suite {args.suite} measures at its size "
                             "profile's settings: drop them, or drop --suite")
        if args.only:
            unknown = [n for n in args.only if n not in suite.SECTIONS]
            if unknown:
                raise ValueError(f"--only {' '.join(unknown)}: not a section of --suite {args.suite} "
                                 f"({', '.join(suite.SECTIONS)})")


def run(args) -> int:

    try:
        check_options(args)
        dev = settings.get_device(args.device)
        prof = get_sizes(args.profile, device=dev)
        if args.suite:
            return _run_suite(args, dev, prof)
        points = grid(args, prof)
        for p in points:
            bench.check_sizes(p["config"], p["batch_size"], p["seq_len"], p["mode"])
        dtype = args.dtype or settings.dtype_name(settings.default_dtype(dev))
        runtime.StepSettings(dtype=dtype, tf32=args.tf32, compile=args.compile).check(dev)
    except (ValueError, runtime.NotAvailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(points)} point(s) on {dev} ({settings.device_name(dev)}), {dtype}, size profile {prof.name}")
    rows = bench.measure_sweep(points, progress=not args.no_progress, desc="bench", device=dev,
                               dtype=dtype, compile=args.compile, tf32=args.tf32,
                               min_run_time=(prof.step.min_run_time if args.min_run_time is None
                                             else args.min_run_time))
    print(format_rows([{
        "label": r.label, "mode": r.mode, "B": r.batch_size, "T": r.seq_len, "ms": r.median_ms,
        "IQR": r.iqr_ms, "tokens/s": r.tokens_per_s, "TFLOP/s": r.achieved_tflops, "MFU": r.mfu,
        "peak MiB": None if r.peak_mem_bytes is None else r.peak_mem_bytes / 2**20,
        "error": r.error} for r in rows],
        formats={"ms": "{:.2f}", "IQR": "{:.2f}", "tokens/s": "{:,.0f}", "TFLOP/s": "{:.3f}",
                 "MFU": "{:.1%}", "peak MiB": "{:,.0f}"}))
    if args.out:
        records.save_results(args.out, rows, meta={"command": "bench", "size_profile": prof.name},
                             device=dev, dtype=dtype)
        print(f"results: {args.out}")
    return 0


def _sigint_stops() -> None:
    """SIGINT stops a suite and keeps what it measured (``suite.run_suite``): re-arm it where the
    process started with SIGINT ignored (a background job of a shell, some batch runners), as the
    device run's deadline (``timeout -s INT``) relies on it. Only the main thread can."""
    try:
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread
        pass


def _run_suite(args, dev, prof) -> int:
    _sigint_stops()
    predicted = None
    if args.budget_s is not None:
        predicted = plan.predict_seconds(args.only or suite.SECTIONS, prof.name, settings.device_name(dev),
                                         results_dir=args.history)
    doc = suite.run_suite(args.suite, profile=prof.name, device=dev, only=args.only,
                          progress=not args.no_progress, out=args.out, budget_s=args.budget_s,
                          priority=plan.PRIORITY if args.priority else None, predicted=predicted)
    n_err = sum(1 for r in doc["rows"] if r.get("error"))
    secs = doc["sections"]
    skipped = [n for n, sec in secs.items() if sec.get("skipped")]
    not_run = [n for n, sec in secs.items() if sec.get("not_run") and not sec.get("skipped")]
    print(f"suite {args.suite}: {len(doc['rows'])} rows ({n_err} with errors) on {dev}, size profile {prof.name}"
          + (f"; skipped (predicted not to fit): {', '.join(skipped)}" if skipped else "")
          + (f"; not run: {', '.join(not_run)}" if not_run else "")
          + (f"; stopped: {doc['meta']['stopped']}" if doc["meta"].get("stopped") else ""))
    if args.out:
        print(f"results: {args.out}")
    return 130 if doc["meta"].get("stopped") else 0
