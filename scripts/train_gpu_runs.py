# One-off CUDA training script for notebooks 04/05 (run by hand on a GPU; not imported, not tested).
"""Run the MLP/SwiGLU/optimizer comparison on a GPU with the `train` command, inside a time budget.

    python scripts/train_gpu_runs.py --out results --budget-s 380

Each variant is one `python -m tutorial_lib train` run at the ``gpu`` size profile (GPT-2 small,
B=16, T=512, bf16 autocast). A short probe run first measures the step time, and the step count
is then chosen so that every variant fits the budget (at most the profile's 1000 steps). Every
run writes its full history (device, dtype, sizes, losses, step times) to ``OUT/train_gpu_<name>.json``;
notebooks 04 and 05 show these files beside what they measure live.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [  # (name, optimizer, --set overrides) in priority order
    ("gelu4_adamw", "adamw", []),
    ("gelu4_muon", "muon", []),
    ("gelu3_adamw", "adamw", ["mlp_ratio=3.0"]),
    ("swiglu83_adamw", "adamw", ["mlp=swiglu"]),
    ("swiglu3_adamw", "adamw", ["mlp=swiglu", "mlp_ratio=3.0"]),
]


def run(name, optimizer, sets, steps, args, out_dir):
    cmd = [sys.executable, "-m", "tutorial_lib", "train", "--preset", args.preset,
           "--steps", str(steps), "--batch", str(args.batch), "--seq", str(args.seq),
           "--optimizer", optimizer, "--eval-every", str(max(1, steps // 10)),
           "--eval-batches", str(args.eval_batches), "--warmup", str(max(1, steps // 20)),
           "--no-progress", "--out", str(out_dir / f"train_gpu_{name}.json")]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    print(f"[{name}] rc={p.returncode} {time.time() - t0:.1f}s", p.stdout.strip()[-400:],
          p.stderr.strip()[-1500:] if p.returncode else "", flush=True)
    return p.returncode == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results")
    ap.add_argument("--budget-s", type=float, default=380.0)
    ap.add_argument("--preset", default="gpt2_small")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--eval-batches", type=int, default=20)
    ap.add_argument("--max-steps", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=None, help="fixed steps per run (no probe)")
    args = ap.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    if args.steps:
        for name, opt, sets in VARIANTS:
            run(name, opt, sets, args.steps, args, out_dir)
        return
    probe = out_dir / "probe.json"
    subprocess.run([sys.executable, "-m", "tutorial_lib", "train", "--preset", args.preset,
                    "--steps", "30", "--batch", str(args.batch), "--seq", str(args.seq),
                    "--optimizer", "muon", "--eval-every", "30", "--eval-batches", "2",
                    "--no-progress", "--out", str(probe)], cwd=ROOT, check=True)
    step_s = json.loads(probe.read_text())["summary"]["median_step_ms"] / 1e3
    probe.unlink()
    left = args.budget_s - (time.time() - start)
    per_run = left / len(VARIANTS) - 25.0  # start-up, data, evaluation
    steps = min(args.max_steps, int(max(50, per_run / (1.15 * step_s) // 50 * 50)))
    print(f"probe: muon step {step_s * 1e3:.1f} ms; {left:.0f}s left -> {steps} steps per run", flush=True)
    for name, opt, sets in VARIANTS:
        if time.time() - start > args.budget_s:
            print(f"[{name}] skipped: budget spent", flush=True)
            continue
        run(name, opt, sets, steps, args, out_dir)


if __name__ == "__main__":
    main()
