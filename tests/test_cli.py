"""``python -m tutorial_lib profile`` and ``bench`` at smoke sizes."""
import json
import subprocess
import sys

import pytest

from tutorial_lib.cli import main
from tutorial_lib.measure import records


def test_help_lists_commands_and_explains():
    out = subprocess.run([sys.executable, "-m", "tutorial_lib", "profile", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--preset" in out and "--out-json" in out and "--trace" in out and "profile_model.py" in out
    out = subprocess.run([sys.executable, "-m", "tutorial_lib", "bench", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--out" in out and "--suite" in out and "--seq" in out


def test_profile_prints_breakdown_and_writes_outputs(tmp_path, capsys):
    js, fig, trace = tmp_path / "p.json", tmp_path / "p.png", tmp_path / "t.json"
    rc = main(["profile", "--preset", "tiny", "--batch", "1", "--seq", "16", "--device", "cpu",
               "--steps", "1", "--min-run-time", "0.02", "--no-progress", "--out-json", str(js),
               "--out-fig", str(fig), "--trace", str(trace)])
    out = capsys.readouterr().out
    assert rc == 0
    for text in ("attention.core", "lm_head", "optimizer (AdamW)", "Attention computation (O(n²)): 60%",
                 "optimizer state", "tokens/s"):
        assert text in out, text
    doc = records.load_results(js)
    kinds = [r["kind"] for r in doc["rows"]]
    assert kinds == ["profile", "memory", "step"] and doc["meta"]["device"] == "cpu"
    assert sum(r["share"] for r in doc["rows"][0]["rows"]) == pytest.approx(1.0)
    assert fig.stat().st_size > 10_000 and "traceEvents" in json.loads(trace.read_text())


def test_profile_bad_input(capsys):
    assert main(["profile", "--preset", "gpt2_classic", "--seq", "9999", "--device", "cpu",
                 "--no-progress", "--no-memory", "--no-timing"]) == 2
    assert "seq_len=9999 exceeds block_size=1024" in capsys.readouterr().err
    assert main(["profile", "--preset", "tiny", "--batch", "0", "--device", "cpu", "--no-progress"]) == 2
    assert "--batch=0" in capsys.readouterr().err


def test_bench_grid_writes_stamped_rows_and_records_failures(tmp_path, capsys):
    out = tmp_path / "results" / "b.json"
    rc = main(["bench", "--preset", "tiny", "--batch", "1", "--seq", "8", "16", "--mode", "fwd", "train",
               "--attn", "sdpa", "flex", "--device", "cpu", "--min-run-time", "0.01", "--no-progress",
               "--out", str(out)])
    assert rc == 0
    doc = records.load_results(out)
    rows = doc["rows"]
    assert len(rows) == 2 * 2 * 2 and doc["meta"]["command"] == "bench"
    assert {k for k in ("device", "dtype", "torch", "date")} <= set(doc["meta"])
    flex_train = [r for r in rows if r["attn_backend"] == "flex" and r["mode"] == "train"]
    assert flex_train and all(r["error"] and r["median_ms"] is None for r in flex_train)
    ok = [r for r in rows if r["attn_backend"] == "sdpa"]
    assert all(r["error"] is None and r["median_ms"] > 0 for r in ok)
    assert "error" in capsys.readouterr().out


def test_bench_bad_options(capsys):
    assert main(["bench", "--preset", "tiny", "--seq", "4096", "--device", "cpu", "--no-progress",
                 "--attn", "eager", "--kv-heads", "3"]) == 2
    assert "n_kv_head" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--mode", "sideways"])


def test_sigterm_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    """``kill PID`` while a command writes: before, SIGTERM ended the process on the spot and left
    the hidden temporary behind; now it is SystemExit(143) and the writer cleans up."""
    import os
    import signal
    import types

    from tutorial_lib import cli
    from tutorial_lib.files import atomic_path

    out = tmp_path / "r.json"
    out.write_text("old")

    def run(args):
        with atomic_path(out) as tmp:
            tmp.write_text("half of the new")
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not stop the command")

    fake = types.SimpleNamespace(HELP="writes", add_arguments=lambda p: None, run=run)
    monkeypatch.setitem(cli.COMMANDS, "fake", fake)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as info:
        main(["fake"])
    assert info.value.code == 128 + signal.SIGTERM
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert signal.getsignal(signal.SIGTERM) == before  # the caller's handler is back
