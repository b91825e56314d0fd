"""Scale-out: `python -m tutorial_lib train` under torchrun (2 CPU ranks, gloo) follows the
single-process loss trajectory with the same global batch.

Why they can differ at all: DDP averages the two ranks' gradients with an all-reduce, which adds
the same numbers in a different order than one process's backward over the whole batch, and the
two ranks' losses are averaged likewise. In float32 that moves AdamW's losses by ~1e-6 here.
Muon orthogonalises the momentum in bfloat16, so a last-bit difference in a gradient can flip a
bf16 rounding (a relative 2**-8 in that element); its trajectories drift apart faster (~1.5e-4
after 4 steps, measured on 2 CPU cores).

Stated tolerance, at every step, train and validation loss:
    AdamW |loss_ddp - loss_single| <= 1e-4,   Muon <= 2e-3.
The control in the test shows what the bound excludes: one process training on half the global
batch (what a rank would do if DDP did not average gradients) differs by ~0.09 after 4 steps.
"""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tutorial_lib.train import TrainConfig, TrainHistory, train

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = {"adamw": 1e-4, "muon": 2e-3}
STEPS, BATCH, SEQ = 4, 4, 32


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(nproc: int, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--nnodes=1", "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
           "-m", "tutorial_lib", "train", "--preset", "tiny", "--steps", str(STEPS),
           "--batch", str(BATCH), "--seq", str(SEQ), "--warmup", "1", "--eval-every", "2",
           "--eval-batches", "2", "--device", "cpu", "--no-progress", "--out", str(out), *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_two_gloo_ranks_follow_the_single_process_trajectory(optimizer, tmp_path):
    out = tmp_path / "ddp.json"
    proc = _torchrun(2, out, "--optimizer", optimizer)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = TrainHistory.load(out)
    assert ddp.world_size == 2 and ddp.device == "cpu"
    cfg = TrainConfig(steps=STEPS, batch_size=BATCH, seq_len=SEQ, warmup_steps=1, eval_every=2,
                      eval_batches=2, device="cpu", progress=False, optimizer=optimizer)
    single = train("tiny", cfg)
    assert single.world_size == 1
    assert ddp.tokens_per_step == single.tokens_per_step == BATCH * SEQ
    assert ddp.val_steps == single.val_steps == [0, 2, 4]
    tol = TOLERANCE[optimizer]
    assert ddp.train_loss == pytest.approx(single.train_loss, abs=tol, rel=0)
    assert ddp.val_loss == pytest.approx(single.val_loss, abs=tol, rel=0)
    # control: a single rank's half of the batch without gradient averaging misses the bound widely
    half = train("tiny", cfg.replace(batch_size=BATCH // 2, eval_batch_size=BATCH))
    assert max(abs(a - b) for a, b in zip(half.train_loss, single.train_loss)) > 10 * tol
    # and the run really learned something (the comparison is not between two flat lines)
    assert single.val_loss[-1] < single.val_loss[0] - 0.05


def test_global_batch_not_divisible_by_ranks_is_a_clear_error(monkeypatch):
    # checked before any process group is made, so a fake torchrun environment is enough
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ValueError, match=r"global batch size 3 \(train\) is not divisible by world_size=2"):
        train("tiny", TrainConfig(steps=1, batch_size=3, seq_len=SEQ, device="cpu", progress=False))


@pytest.mark.slow
def test_two_gloo_ranks_accumulating_follow_the_single_process_trajectory(tmp_path):
    """Each rank's half of the batch in 2 micro-batches (``no_sync`` on the first, one all-reduce
    per step), with recomputed blocks: the same trajectory as one process over the whole batch
    without either, within the AdamW tolerance above."""
    out = tmp_path / "ddp_accum.json"
    proc = _torchrun(2, out, "--grad-accum", "2", "--checkpoint", "block")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = TrainHistory.load(out)
    assert ddp.world_size == 2 and ddp.config["grad_accum"] == 2 and ddp.model["checkpoint"] == "block"
    single = train("tiny", TrainConfig(steps=STEPS, batch_size=BATCH, seq_len=SEQ, warmup_steps=1, eval_every=2,
                                       eval_batches=2, device="cpu", progress=False))
    assert ddp.train_loss == pytest.approx(single.train_loss, abs=TOLERANCE["adamw"], rel=0)
    assert ddp.val_loss == pytest.approx(single.val_loss, abs=TOLERANCE["adamw"], rel=0)


def test_a_rank_batch_not_divisible_by_grad_accum_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ValueError, match=r"each rank's batch \(4 / world_size=2 = 2 sequences\) is not divisible "
                                         r"by grad_accum=4"):
        train("tiny", TrainConfig(steps=1, batch_size=4, seq_len=SEQ, device="cpu", progress=False, grad_accum=4))
