"""``python -m tutorial_lib profile``: where the time and memory of one GPT-2 training step go.

The tutorial's version of the seed's ``python profile_model.py``:

    python -m tutorial_lib profile                       # sizes from the size profile
    python -m tutorial_lib profile --preset gpt2_small --batch 4 --seq 512 --attn eager \\
        --out-json results/profile.json --out-fig results/profile.png --trace results/trace.json

Prints the per-component time (forward and backward, from torch.profiler and the model's scopes),
the seed's time-share claims beside the measured forward shares, the memory breakdown and the
timed step (torch.utils.benchmark; with --compile also the torch.compile'd step).
"""
from __future__ import annotations

import argparse
import sys

from tutorial_lib import attention, claims, settings
from tutorial_lib.commands import output_file, positive_float
from tutorial_lib.lessons import profile as plots
from tutorial_lib.lessons.common import format_rows, save_figure
from tutorial_lib.loss import LOSS_IMPLS
from tutorial_lib.measure import memory, profile, records
from tutorial_lib.measure import timing as bench
from tutorial_lib.measure.memory import fmt_bytes
from tutorial_lib.model import PRESETS, get_config
from tutorial_lib.sizes import get_sizes

HELP = "per-component time and memory of a GPT-2 training step (the seed's profile_model.py)"


def add_arguments(p: argparse.ArgumentParser) -> None:

    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="model preset (default: the size profile's, gpt2_small on cpu/gpu)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: size profile)")
    p.add_argument("--seq", type=int, default=None, help="sequence length (default: size profile)")
    p.add_argument("--attn", default=None, choices=attention.names(),
                   help="attention backend (default: the preset's; 'eager' shows the T x T scores)")
    p.add_argument("--loss", default=None, choices=LOSS_IMPLS,
                   help="LM head + loss: full logits (default) or chunked (notebook 08)")
    p.add_argument("--mode", default="train", choices=("train", "fwd"),
                   help="profile a training step, or a forward pass only (the seed's figure)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                   help="compute dtype (default: bfloat16 autocast on CUDA, float32 on CPU)")
    p.add_argument("--compile", action="store_true",
                   help="also time the torch.compile'd step (the breakdown itself is eager)")
    p.add_argument("--steps", type=int, default=None, help="profiled steps (default: size profile)")
    p.add_argument("--min-run-time", type=positive_float, default=None,
                   help="seconds of timing per measurement, > 0 (default: size profile)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory breakdown")
    p.add_argument("--no-timing", action="store_true", help="skip the torch.utils.benchmark timing")
    # every output path is checked when parsed, so an unusable one fails before the work
    p.add_argument("--out-json", type=output_file, default=None,
                   help="save profile, memory and timing rows (JSON)")
    p.add_argument("--out-fig", type=output_file, default=None,
                   help="save the nested time-breakdown figure (PNG/SVG)")
    p.add_argument("--trace", type=output_file, default=None,
                   help="save a Chrome/Perfetto trace (open in ui.perfetto.dev; .json or .json.gz)")
    p.add_argument("--memory-snapshot", type=output_file, default=None,
                   help="CUDA only: save a memory snapshot for https://pytorch.org/memory_viz")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _resolve(args):

    dev = settings.get_device(args.device)
    prof = get_sizes(device=dev)
    changes = {"attn_backend": args.attn} if args.attn else {}
    if args.loss:
        changes["loss_impl"] = args.loss
    cfg = get_config(args.preset or prof.step.preset, **changes)
    B = prof.step.batch if args.batch is None else args.batch
    T = prof.step.seq_len if args.seq is None else args.seq
    if B < 1 or T < 1:
        raise ValueError(f"--batch={B} and --seq={T} must be >= 1")
    if T > cfg.block_size and cfg.pos == "rope":
        cfg = cfg.replace(block_size=T)
    if args.memory_snapshot and (dev.type != "cuda" or args.no_memory):
        raise ValueError(f"--memory-snapshot records the CUDA allocator during the memory step: it needs a "
                         f"CUDA device (got {dev}) and no --no-memory")
    dtype = args.dtype or settings.dtype_name(settings.default_dtype(dev))
    return dev, prof, cfg, B, T, dtype


def run(args) -> int:

    try:
        dev, prof, cfg, B, T, dtype = _resolve(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tasks = ["profile"] + ([] if args.no_memory else ["memory"]) + \
        ([] if args.no_timing else ["timing"]) + (["compiled"] if args.compile and not args.no_timing else [])
    bar = bench.progress_bar(len(tasks), "profile", not args.no_progress)
    print(f"{cfg.describe()}\nB={B}, T={T}, device {dev} ({settings.device_name(dev)}), {dtype}, "
          f"size profile {prof.name}\n")
    out_rows = []
    try:
        res = profile.profile_step(cfg, B, T, mode=args.mode, device=dev, dtype=dtype,
                                   steps=args.steps, trace_path=args.trace)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out_rows.append(res)
    if bar:
        bar.update(1)

    table = res.table()
    print(f"Per-component time per step ({res.time_source}, {res.steps} profiled step(s), "
          f"profiled wall {res.wall_ms:.1f} ms/step):")
    print(format_rows(table, ["name", "forward_ms", "backward_ms", "total_ms", "share"],
                      {"forward_ms": "{:.2f}", "backward_ms": "{:.2f}", "total_ms": "{:.2f}",
                       "share": "{:.1%}"},
                      {"name": "component", "forward_ms": "fwd ms", "backward_ms": "bwd ms",
                       "total_ms": "total ms"}))
    print("\nThe seed's forward-pass time shares beside this forward pass:")
    measured = claims.time_shares_from_profile(res, "forward", n_layer=cfg.n_layer)
    where = claims.Setting(model=cfg.name, batch=B, seq_len=T, device=dev.type)
    print(claims.format_table(claims.claims_table(measured, where=where)))
    if args.out_fig:
        save_figure(plots.time_breakdown(res), args.out_fig)
        print(f"\nfigure: {args.out_fig}")
    if args.trace:
        print(f"trace: {args.trace}")

    if not args.no_memory:
        mb = memory.memory_breakdown(cfg, B, T, device=dev, dtype=dtype,
                                     snapshot_path=args.memory_snapshot)
        out_rows.append(mb)
        print("\nMemory of one training step (activations = tensors saved for backward):")
        kinds = [{"kind": k, "bytes": fmt_bytes(v)} for k, v in mb.by_kind().items()]
        kinds.append({"kind": "sum", "bytes": fmt_bytes(mb.total_bytes)})
        if mb.peak_bytes is not None:
            kinds.append({"kind": "CUDA peak allocated", "bytes": fmt_bytes(mb.peak_bytes)})
        print(format_rows(kinds))
        print("activations by component: " + ", ".join(
            f"{k} {fmt_bytes(v)}" for k, v in mb.activations_by_group().items()))
        if mb.snapshot_path:
            print(f"memory snapshot: {mb.snapshot_path} (drag into https://pytorch.org/memory_viz)")
        if bar:
            bar.update(1)

    if not args.no_timing:
        steps = [False] + ([True] if args.compile else [])
        timed = []
        for comp in steps:
            r = bench.measure_sweep([{"compile": comp, "label": cfg.name + (" compiled" if comp else "")}],
                                    config=cfg, batch_size=B, seq_len=T, mode=args.mode, device=dev,
                                    dtype=dtype, min_run_time=args.min_run_time, progress=False)[0]
            timed.append(r)
            out_rows.append(r)
            if bar:
                bar.update(1)
        print(f"\nTimed {args.mode} step (torch.utils.benchmark, median of {timed[0].n_runs or 0} runs):")
        print(format_rows([{
            "step": r.label, "ms": r.median_ms, "IQR ms": r.iqr_ms, "tokens/s": r.tokens_per_s,
            "TFLOP/s": r.achieved_tflops, "MFU": r.mfu,
            "peak mem": fmt_bytes(r.peak_mem_bytes) if r.peak_mem_bytes else None,
            "error": r.error} for r in timed],
            formats={"ms": "{:.2f}", "IQR ms": "{:.2f}", "tokens/s": "{:,.0f}", "TFLOP/s": "{:.3f}",
                     "MFU": "{:.1%}"}))
        if dev.type != "cuda":
            print("(MFU is reported on GPUs with a known peak; on CPU the achieved FLOP/s stands alone.)")
    if bar:
        bar.close()
    if args.out_json:
        records.save_results(args.out_json, out_rows, meta={"command": "profile", "size_profile": prof.name},
                             device=dev, dtype=dtype)
        print(f"\nresults: {args.out_json}")
    return 0
