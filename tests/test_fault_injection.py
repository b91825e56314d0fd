"""Fault injection: every defect of issues 19 and 26 ("nothing lost, nothing silently wrong"), replayed.

Each case does what a skeptical user did -- a write that fails part-way, a run that diverges, a
results folder that is empty or holds something odd, a corrupt token cache, an unusable ``--out``,
a bad option -- and checks what the user would notice: the old file whole and no temporary
left, a clear ``error:`` line and exit status, nothing measured before a bad option is refused.

No root and no ``chattr`` are needed: a failed write is a real one, under ``RLIMIT_FSIZE`` (the
same ``EFBIG`` path as a full disk) in one subprocess that runs every writer; the rest runs in
this process through ``tutorial_lib.cli.main``.

Under pytest every case is a test. Run as a script it prints the table of cases and what
happened, for whichever ``tutorial_lib`` is on ``PYTHONPATH``::

    PYTHONPATH=. python tests/test_fault_injection.py            # all cases, Markdown table
    PYTHONPATH=. python tests/test_fault_injection.py report     # cases whose id contains "report"
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional
from unittest import mock

import numpy as np

import tutorial_lib
from tutorial_lib.cli import main

PKG_ROOT = Path(tutorial_lib.__file__).resolve().parents[1]  # the tutorial_lib under test
GUIDE = PKG_ROOT / "OPTIMIZATION_GUIDE.md"
RESULTS = PKG_ROOT / "results"
LIMIT = 1000  # bytes a writer may write under RLIMIT_FSIZE; every writer here writes more
TINY = ["--preset", "tiny", "--device", "cpu", "--no-progress"]
TRAIN_TINY = ["train", *TINY, "--batch", "1", "--seq", "8", "--eval-batches", "1"]


SCRATCH = Path(tempfile.mkdtemp(prefix="fault-injection-"))  # shared by the cached runs below
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)


@dataclass
class Outcome:
    ok: bool  # the behaviour the issue asks for
    what: str  # what happened, in one line


@dataclass
class Case:
    id: str
    expect: str
    fn: Callable[[Path], Outcome]


CASES: List[Case] = []


def case(id: str, expect: str):
    def register(fn):
        CASES.append(Case(id, expect, fn))
        return fn
    return register


# ---- helpers -------------------------------------------------------------------------------
class WorkStarted(BaseException):
    """Raised by the stand-ins for the measuring/training functions: the command got past its
    argument checks. A BaseException, so no ``except ValueError`` in a command swallows it."""


@dataclass
class Run:
    rc: Optional[int]
    out: str
    err: str
    work_started: bool

    def last_err(self) -> str:
        lines = [ln for ln in self.err.strip().splitlines() if ln.strip()]
        return lines[-1][:150] if lines else "(nothing on stderr)"


def cli(argv, guard_work: bool = False) -> Run:
    """``python -m tutorial_lib ARGV`` in this process: exit status, stdout, stderr, and (with
    ``guard_work``) whether training, measuring or profiling started."""
    out, err = io.StringIO(), io.StringIO()

    def started(*a, **k):
        raise WorkStarted()

    patches = []
    if guard_work:
        patches = [mock.patch("tutorial_lib.commands.train.train", started),
                   mock.patch("tutorial_lib.measure.timing.measure_sweep", started),
                   mock.patch("tutorial_lib.guide.suite.run_suite", started),
                   mock.patch("tutorial_lib.measure.profile.profile_step", started)]
    rc, work = None, False
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except WorkStarted:
            work = True
        except Exception:  # a traceback is an outcome too: record it like Python would print it
            traceback.print_exc(file=err)
            rc = 1
    return Run(rc, out.getvalue(), err.getvalue(), work)


def leftovers(folder: Path) -> List[str]:
    """Temporary files a writer left behind (files.atomic_path names them .NAME.*.tmp*)."""
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


def guide_copy(tmp: Path) -> Path:
    g = tmp / "guide.md"
    shutil.copy(GUIDE, g)
    return g


def results_copy(tmp: Path, name: str = "results", runs: bool = True) -> Path:
    """results/ with the suite's files (cpu.json, which the cases change, and every other one: without
    them, report refuses to replace their tables with placeholders) and (``runs``) the training
    folders, for the same reason."""
    r = tmp / name
    r.mkdir()
    for f in sorted(RESULTS.glob("*.json")):
        shutil.copy(f, r / f.name)
    for folder in sorted(RESULTS.glob("train_*")) if runs else []:
        if folder.is_dir():
            shutil.copytree(folder, r / folder.name)
    return r


def strict_json(path: Path):
    def refuse(token):
        raise ValueError(f"{path.name} holds {token}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


# ---- failed writes: every writer under RLIMIT_FSIZE, in one subprocess --------------------------
# Each writer writes into its own folder, where the parent put an old file first. The subprocess
# runs the real writer (a command through cli.main where the writer is a command's --out).
WRITERS = {
    "atomic_write_text": "files.atomic_write_text(P, 'x' * (3 * LIMIT))",
    "save_results": "records.save_results(P, [{'kind': 'k', 'v': 'x' * (3 * LIMIT)}], device='cpu')",
    "save_document": ("records.save_document(P, {'schema_version': 1, 'meta': records.stamp('cpu'), "
                      "'rows': [{'kind': 'k', 'v': 'x' * (3 * LIMIT)}]})"),
    "TrainHistory.save": ("TrainHistory(model={'name': 'tiny'}, config={'batch_size': 1, 'seq_len': 8, "
                          "'steps': 2}, optimizer='adamw', device='cpu', dtype='float32', world_size=1, "
                          "n_params=1, tokens_per_step=8, steps=list(range(1, 301)), "
                          "train_loss=[1.0] * 300, step_time_s=[0.1] * 300, optimizer_time_s=[0.1] * 300, "
                          "val_steps=[0], val_loss=[1.0], val_wall_s=[0.0]).save(P)"),
    "save_figure": ("save_figure(_figure(), P)"),
    "chrome trace (profile --trace)": ("profile.profile_step('tiny', 1, 8, steps=1, warmup=0, device='cpu', "
                                       "trace_path=str(P))"),
    "CUDA memory snapshot": "_snapshot(P)",
    "token cache": "_tokens(P)",
    "report (the guide)": "_cli(['report', '--guide', P, '--results', ARGS['results']])",
    "bench --out": ("_cli(['bench', '--preset', 'tiny', '--batch', '1', '--seq', '8', '16', '--mode', 'fwd', "
                    "'--device', 'cpu', '--min-run-time', '0.01', '--no-progress', '--out', P])"),
    "train --out": ("_cli(['train', '--preset', 'tiny', '--steps', '2', '--batch', '1', '--seq', '8', "
                    "'--eval-batches', '1', '--device', 'cpu', '--no-progress', '--out', P])"),
    "profile --trace": ("_cli(['profile', '--preset', 'tiny', '--batch', '1', '--seq', '8', '--steps', '1', "
                        "'--device', 'cpu', '--no-progress', '--no-memory', '--no-timing', '--trace', P])"),
    "profile --out-json": ("_cli(['profile', '--preset', 'tiny', '--batch', '1', '--seq', '8', "
                           "'--steps', '1', '--device', 'cpu', '--no-progress', '--no-memory', "
                           "'--no-timing', '--out-json', P])"),
}

CHILD = textwrap.dedent('''
    import io, json, os, resource, sys, traceback, contextlib, warnings
    from pathlib import Path
    import numpy as np, torch
    from matplotlib.figure import Figure
    from tutorial_lib import data, files
    from tutorial_lib.cli import main
    from tutorial_lib.lessons.common import save_figure
    from tutorial_lib.measure import memory, profile, records
    from tutorial_lib.train import TrainHistory

    LIMIT, ARGS = int(sys.argv[1]), json.loads(sys.argv[2])

    def _figure():
        fig = Figure(figsize=(4, 3))
        fig.subplots().imshow(np.random.default_rng(0).random((64, 64)))
        return fig

    def _snapshot(p):
        def dump(filename="dump_snapshot.pickle", augment_with_fx_traces=False):
            with open(filename, "wb") as f:  # what torch's _dump_snapshot does, with a big snapshot
                f.write(b"s" * (3 * LIMIT))
        torch.cuda.memory._dump_snapshot = dump
        if hasattr(memory, "save_memory_snapshot"):
            return memory.save_memory_snapshot(str(p))
        return torch.cuda.memory._dump_snapshot(str(p))  # before: memory_breakdown called it in place

    def _tokens(p):
        data._load_tokens.cache_clear()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            n = len(data.load_tokens(p.parent))
        return f"{n} tokens; warnings: " + " | ".join(str(x.message)[:90] for x in w)

    def _cli(argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as e:
                rc = e.code
            except BaseException:
                traceback.print_exc()
                rc = "traceback"
        lines = [ln for ln in err.getvalue().strip().splitlines() if ln.strip()]
        return {"rc": rc, "traceback": "Traceback" in err.getvalue(),
                "stderr": lines[-1][:200] if lines else ""}

    torch.set_num_threads(1)
    _tokens(Path(ARGS["warm"]) / "x")  # tokenize once before the limit (the cache case then re-tokenizes)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    result = {}
    for name, (target, code) in ARGS["writers"].items():
        P = Path(target)
        try:
            value = eval(code)
            result[name] = {"returned": value if isinstance(value, (dict, str)) else repr(value)[:100]}
        except BaseException as e:
            result[name] = {"raised": f"{type(e).__name__}: {e}"[:200]}
    print("RESULT " + json.dumps(result))
''')


@functools.lru_cache(maxsize=1)
def failed_writes() -> dict:
    """Run every writer once under RLIMIT_FSIZE (in a subprocess); per writer: its folder, the
    old bytes, and what the writer returned or raised."""
    tmp = Path(tempfile.mkdtemp(prefix="writes-", dir=SCRATCH))
    results = results_copy(tmp)
    (tmp / "warm").mkdir()
    writers, old = {}, {}
    for i, name in enumerate(WRITERS):
        folder = tmp / f"w{i}"
        folder.mkdir()
        if name == "token cache":
            import tutorial_lib.data as data
            target = data.token_cache_path(folder)
            target.write_bytes(b"an old, broken cache file")
        elif name == "report (the guide)":
            target = folder / "guide.md"
            # the guide with its tables emptied: report has to rewrite it, and the write fails
            text = GUIDE.read_text()
            text = re.sub(r"(<!-- report:([\w.-]+) -->\n).*?(<!-- /report:\2 -->)", r"\1\3", text, flags=re.S)
            target.write_text(text)
        else:
            target = folder / ("old.png" if name == "save_figure" else "old.json")
            target.write_text(json.dumps({"old": "content that must survive"}))
        old[name] = target.read_bytes()
        writers[name] = (str(target), WRITERS[name])
    args = {"writers": writers, "results": str(results), "warm": str(tmp / "warm")}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PKG_ROOT), os.environ.get("PYTHONPATH", "")]),
               TUTORIAL_CACHE_DIR=str(tmp / "warm"))  # the commands find the tokens cached there
    p = subprocess.run([sys.executable, "-c", CHILD, str(LIMIT), json.dumps(args)], env=env,
                       capture_output=True, text=True, timeout=600)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"the writer subprocess failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
    got = json.loads(lines[-1][len("RESULT "):])
    return {name: (Path(writers[name][0]), old[name], got[name]) for name in WRITERS}


def _writer_case(name: str):
    def check(tmp: Path) -> Outcome:
        target, old, got = failed_writes()[name]
        intact = target.read_bytes() == old
        left = leftovers(target.parent)
        said = got.get("raised") or got.get("returned")
        if isinstance(said, dict):  # a command: its exit status and last stderr line
            cmd_ok = said["rc"] not in (0, None) and not said["traceback"] and "error:" in said["stderr"]
            tb = "a traceback" if said["traceback"] else "no traceback"
            said = f"rc {said['rc']}, {tb}: {said['stderr']}"
        else:
            cmd_ok = True
        state = "intact" if intact else f"REPLACED ({len(old)} -> {target.stat().st_size} bytes)"
        what = (f"old file {state}"
                f"; temporaries left: {left or 'none'}; {said}")
        return Outcome(intact and not left and cmd_ok, what)
    return check


for _name in WRITERS:
    case(f"write/{_name}", "a failed write (RLIMIT_FSIZE) leaves the old file whole, no temporary, "
                           "and a command says `error:` with a non-zero exit")(_writer_case(_name))


SIGTERM_CHILD = textwrap.dedent('''
    import os, signal, sys, types
    from tutorial_lib import cli
    from tutorial_lib.files import atomic_path

    def run(args):  # a command killed (kill PID, a scheduler, torchrun) half-way through a write
        with atomic_path(sys.argv[1]) as tmp:
            tmp.write_text("half of the new")
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not stop the command")

    cli.COMMANDS["fake"] = types.SimpleNamespace(HELP="", add_arguments=lambda p: None, run=run)
    sys.exit(cli.main(["fake"]))
''')


@case("interrupt/SIGTERM during a write", "the old file whole and no temporary left behind")
def _(tmp):
    target = tmp / "r.json"
    target.write_text("old")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PKG_ROOT), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, "-c", SIGTERM_CHILD, str(target)], env=env, capture_output=True,
                       text=True, timeout=300)
    intact, left = target.read_text() == "old", leftovers(tmp)
    state = "intact" if intact else "REPLACED"
    return Outcome(intact and not left,
                   f"exit {p.returncode}; old file {state}; temporaries left: {left or 'none'}")


# ---- divergence ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _diverged(extra: tuple) -> tuple:
    tmp = Path(tempfile.mkdtemp(prefix="diverge-", dir=SCRATCH))
    out = tmp / "h.json"
    r = cli([*TRAIN_TINY, "--steps", "8", "--warmup", "0", "--eval-every", "2", *extra, "--out", out])
    return r, out


def _divergence_outcome(r: Run, out: Path, want_rc_zero: bool) -> Outcome:
    try:
        h = strict_json(out)
        strict = "strict JSON"
    except (ValueError, OSError) as e:
        h, strict = None, f"not strict JSON ({e})"
    summary = (h or {}).get("summary", {})
    at = (h or {}).get("diverged_at_step")
    said_diverged = "diverged" in str(summary.get("status", "")) and "diverged" in r.err
    rc_ok = (r.rc == 0) if want_rc_zero else (r.rc not in (0, None))
    what = (f"rc {r.rc}; stderr: {r.last_err()}; --out {strict}; diverged_at_step={at!r}; summary "
            f"final_val_loss={summary.get('final_val_loss')!r}, status={summary.get('status')!r}, "
            f"last_finite_train_loss={summary.get('last_finite_train_loss')!r}")
    return Outcome(rc_ok and h is not None and isinstance(at, int) and said_diverged
                   and summary.get("final_val_loss") is None and "last_finite_train_loss" in summary, what)


@case("diverge/adamw --lr 1e2", "non-zero exit, stderr says diverged at step N, --out strict JSON with "
      "diverged_at_step, summary with no final loss and the last finite one")
def _(tmp):
    r, out = _diverged(("--lr", "1e2"))
    return _divergence_outcome(r, out, want_rc_zero=False)


@case("diverge/muon --muon-lr 1e6", "the same for Muon with a huge learning rate")
def _(tmp):
    r, out = _diverged(("--optimizer", "muon", "--muon-lr", "1e6"))
    return _divergence_outcome(r, out, want_rc_zero=False)


@case("diverge/--allow-divergence", "exit 0, still says diverged (a warning) and records it")
def _(tmp):
    r, out = _diverged(("--lr", "1e2", "--allow-divergence"))
    return _divergence_outcome(r, out, want_rc_zero=True)


@case("diverge/report marks the run", "report's training table says the run diverged")
def _(tmp):
    r, out = _diverged(("--lr", "1e2"))
    results = results_copy(tmp, runs=False)
    (results / "runs").mkdir()
    shutil.copy(out, results / "runs" / "h.json")
    g = guide_copy(tmp)
    rr = cli(["report", "--guide", g, "--results", results])
    block = g.read_text().split("<!-- report:training_runs -->")[1].split("<!-- /report:training_runs -->")[0]
    row = next((ln for ln in block.splitlines() if ln.startswith("| GELU")), "(no row)")
    return Outcome(rr.rc == 0 and "diverged" in row, f"rc {rr.rc}; the run's row: {row[:140]}")


@case("diverge/--set rope_theta=0", "refused before training: `error:` naming rope_theta, exit 2")
def _(tmp):
    r = cli([*TRAIN_TINY, "--steps", "2", "--set", "rope_theta=0"], guard_work=True)
    return Outcome(r.rc == 2 and not r.work_started and "rope_theta" in r.err,
                   f"rc {r.rc}, work started: {r.work_started}; {r.last_err()}")


# ---- report: what it reads, and what it refuses -------------------------------------------------
def _report(tmp: Path, results: Path, *extra) -> tuple:
    g = guide_copy(tmp)
    before = g.read_bytes()
    r = cli(["report", "--guide", g, "--results", results, *extra])
    return r, g.read_bytes() == before


def _refused(r: Run, intact: bool, needle: str = "") -> Outcome:
    ok = r.rc not in (0, None) and intact and "error" in r.err and needle in r.err
    return Outcome(ok, f"rc {r.rc}; guide {'unchanged' if intact else 'REWRITTEN'}; {r.last_err()}")


@case("report/empty folder", "an error, the guide untouched")
def _(tmp):
    (tmp / "empty").mkdir()
    return _refused(*_report(tmp, tmp / "empty"))


@case("report/missing folder", "an error, the guide untouched")
def _(tmp):
    return _refused(*_report(tmp, tmp / "nowhere"))


@case("report/misspelled folder", "an error naming the folder, the guide untouched")
def _(tmp):
    results_copy(tmp)
    return _refused(*_report(tmp, tmp / "reslts"), needle="reslts")


@case("report --check/empty folder", "an error (not 'out of date: run report', which would wipe the guide)")
def _(tmp):
    (tmp / "empty").mkdir()
    r, intact = _report(tmp, tmp / "empty", "--check")
    ok = r.rc == 2 and "out of date" not in r.err
    return Outcome(ok, f"rc {r.rc}; {r.last_err()}")


def _bad_results(tmp: Path, change) -> Path:
    results = results_copy(tmp)
    doc = json.loads((results / "cpu.json").read_text())
    change(doc)
    (results / "bad.json").write_text(json.dumps(doc))
    return results


@case("report/schema_version 99", "an error naming the file and the version, the guide untouched")
def _(tmp):
    return _refused(*_report(tmp, _bad_results(tmp, lambda d: d.update(schema_version=99))), "bad.json")


@case("report/schema_version 'one'", "an error naming the file, the guide untouched")
def _(tmp):
    return _refused(*_report(tmp, _bad_results(tmp, lambda d: d.update(schema_version="one"))), "bad.json")


@case("report/a row without kind", "an error naming the file and the row, the guide untouched")
def _(tmp):
    return _refused(*_report(tmp, _bad_results(tmp, lambda d: d["rows"][3].pop("kind"))), "bad.json")


@case("report/no meta", "an error naming the file, the guide untouched")
def _(tmp):
    return _refused(*_report(tmp, _bad_results(tmp, lambda d: d.pop("meta"))), "bad.json")


@case("report/invalid JSON", "an error naming the file, the guide untouched")
def _(tmp):
    results = results_copy(tmp)
    (results / "broken.json").write_text('{"schema_version": 1, "rows": [')
    return _refused(*_report(tmp, results), "broken.json")


@case("report/invalid JSON in a training folder", "an error naming the file, the guide untouched")
def _(tmp):
    results = results_copy(tmp)
    (results / "runs").mkdir()
    (results / "runs" / "broken.json").write_text("{")
    return _refused(*_report(tmp, results), "broken.json")


@case("report/history without summary", "the run is shown (its summary recomputed), not dropped")
def _(tmp):
    results = results_copy(tmp)
    folder = results / "train_h200_550"
    first = sorted(folder.glob("*.json"))[0]
    doc = json.loads(first.read_text())
    doc.pop("summary")
    first.write_text(json.dumps(doc))
    g = guide_copy(tmp)
    r = cli(["report", "--guide", g, "--results", results])
    block = g.read_text().split("<!-- report:training_runs -->")[1].split("<!-- /report:training_runs -->")[0]
    table = next((t for t in block.split("Recorded on ") if f"results/{folder.name}/" in t), "")
    n_rows = sum(1 for ln in table.splitlines() if ln.startswith("| GELU") or ln.startswith("| SwiGLU"))
    n_files = len(list(folder.glob("*.json")))
    return Outcome(r.rc == 0 and n_rows == n_files, f"rc {r.rc}; {n_rows} rows for {n_files} histories")


@functools.lru_cache(maxsize=1)
def _plain_report() -> tuple:
    """(exit status, guide) of report on ``results_copy`` alone: what every extra file is compared with."""
    tmp = Path(tempfile.mkdtemp(prefix="plain-", dir=SCRATCH))
    r, _ = _report(tmp, results_copy(tmp, "plain"))
    return r.rc, (tmp / "guide.md").read_text()


def _extra_file(tmp: Path, name: str, content) -> Outcome:
    """report with results/cpu.json plus one file of another kind: same guide as without it."""
    with_extra = results_copy(tmp, "extra")
    (with_extra / name).write_text(content if isinstance(content, str) else json.dumps(content))
    rc1, text1 = _plain_report()
    r2, _ = _report(tmp, with_extra)
    text2 = (tmp / "guide.md").read_text()
    noted = name in r2.err
    return Outcome(rc1 == 0 and r2.rc == 0 and text1 == text2 and noted,
                   f"rc {r2.rc}; guide {'the same' if text1 == text2 else 'DIFFERENT'}; "
                   f"stderr: {r2.last_err()}")


@functools.lru_cache(maxsize=1)
def _profile_json() -> str:
    """What `profile --out-json` writes (run once)."""
    out = Path(tempfile.mkdtemp(prefix="profile-", dir=SCRATCH)) / "profile.json"
    # memory and a timed step: its rows fed the memory table and the roofline calibration
    r = cli(["profile", *TINY, "--batch", "1", "--seq", "8", "--steps", "1", "--min-run-time", "0.01",
             "--out-json", out])
    if r.rc != 0:
        raise RuntimeError(f"profile failed: rc {r.rc}: {r.last_err()}")
    return out.read_text()


@case("report/a Chrome trace in results/", "skipped with a one-line note naming it; the guide unchanged")
def _(tmp):
    return _extra_file(tmp, "trace.json", {"traceEvents": [{"ph": "X", "name": "aten::mm"}]})


@case("report/a train history in results/", "recognised and skipped with a note (the README's own "
      "example saves one there); the guide unchanged")
def _(tmp):
    hist = next((RESULTS / "train_h200_550").glob("*.json")).read_text()
    return _extra_file(tmp, "train_muon.json", hist)


@case("report/profile --out-json results/profile.json", "the guide's memory table is not replaced by "
      "profile's tiny-model rows")
def _(tmp):
    with_profile = results_copy(tmp, "extra")
    (with_profile / "profile.json").write_text(_profile_json())

    def memory_block(text):
        return text.split("<!-- report:memory -->")[1].split("<!-- /report:memory -->")[0]

    r2, _ = _report(tmp, with_profile)
    m1, m2 = memory_block(_plain_report()[1]), memory_block((tmp / "guide.md").read_text())
    return Outcome(r2.rc == 0 and m1 == m2 and "tiny" not in m2,
                   f"rc {r2.rc}; memory section {'unchanged' if m1 == m2 else 'CHANGED'}"
                   f"{' (holds a tiny-model table)' if 'tiny' in m2 else ''}")


# ---- the token cache -----------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _corpus_tokens() -> np.ndarray:
    from tutorial_lib import data
    return data.tokenize_corpus()


@functools.lru_cache(maxsize=1)
def _valid_cache() -> Path:
    """A valid cache file, in whatever format this version writes (tokenized once)."""
    from tutorial_lib import data
    folder = SCRATCH / "cache0"
    data._load_tokens.cache_clear()
    data.load_tokens(folder)
    data._load_tokens.cache_clear()
    return data.token_cache_path(folder)


def _cache_case(tmp: Path, corrupt) -> Outcome:
    import warnings

    from tutorial_lib import data
    path = data.token_cache_path(tmp)
    shutil.copy(_valid_cache(), path)
    corrupt(path)
    data._load_tokens.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            got = data.load_tokens(tmp)
    except Exception as e:
        return Outcome(False, f"{type(e).__name__}: {e}"[:150])
    finally:
        data._load_tokens.cache_clear()
    ref = _corpus_tokens()
    same = got.shape == ref.shape and np.array_equal(got, ref)
    note = "; ".join(str(x.message)[:80] for x in w) or "no warning"
    used = "rebuilt: the corpus tokens" if same else f"USED: {got.size} tokens, max id {got.max()}"
    return Outcome(same, f"{used} ({note})")


@case("cache/zero-byte file", "rebuilt (not EOFError on every run)")
def _(tmp):
    return _cache_case(tmp, lambda p: p.write_bytes(b""))


@case("cache/a valid .npy of 1,000 tokens", "rebuilt, not trained on")
def _(tmp):
    def put(p):
        with open(p, "wb") as f:
            np.save(f, _corpus_tokens()[:1000])
    return _cache_case(tmp, put)


@case("cache/bytes overwritten with 0xFF", "rebuilt, never ids >= 50,257")
def _(tmp):
    def overwrite(p):
        b = bytearray(p.read_bytes())
        mid = len(b) // 2
        b[mid:mid + 4000] = b"\xff" * 4000
        p.write_bytes(bytes(b))
    return _cache_case(tmp, overwrite)


@case("cache/truncated file", "rebuilt")
def _(tmp):
    return _cache_case(tmp, lambda p: p.write_bytes(p.read_bytes()[:50_000]))


# ---- --out and other options: refused before any work ---------------------------------------
def _before_work(argv) -> Outcome:
    r = cli(argv, guard_work=True)
    ok = r.rc == 2 and not r.work_started and "error" in r.err
    return Outcome(ok, f"rc {r.rc}; {'WORK STARTED first' if r.work_started else 'no work started'}; "
                       f"{r.last_err()}")


def _dir_and_file(tmp: Path):
    (tmp / "adir").mkdir()
    (tmp / "afile").write_text("x")
    return tmp / "adir", tmp / "afile" / "x.json"


BENCH = ["bench", *TINY, "--batch", "1", "--seq", "8", "--mode", "fwd", "--min-run-time", "0.01"]
PROFILE = ["profile", *TINY, "--batch", "1", "--seq", "8", "--steps", "1", "--no-memory", "--no-timing"]


@case("out/bench --out an existing folder", "refused before measuring, nothing left behind")
def _(tmp):
    d, _ = _dir_and_file(tmp)
    o = _before_work([*BENCH, "--out", d])
    return Outcome(o.ok and not leftovers(tmp), o.what + f"; temporaries: {leftovers(tmp) or 'none'}")


@case("out/bench --out under a regular file", "refused before measuring")
def _(tmp):
    return _before_work([*BENCH, "--out", _dir_and_file(tmp)[1]])


@case("out/profile --out-json an existing folder", "refused before profiling")
def _(tmp):
    return _before_work([*PROFILE, "--out-json", _dir_and_file(tmp)[0]])


@case("out/profile --trace under a regular file", "refused before profiling")
def _(tmp):
    return _before_work([*PROFILE, "--trace", _dir_and_file(tmp)[1]])


@case("out/profile --out-fig an existing folder", "refused before profiling")
def _(tmp):
    return _before_work([*PROFILE, "--out-fig", _dir_and_file(tmp)[0]])


@case("out/train --out an existing folder", "refused before training")
def _(tmp):
    return _before_work([*TRAIN_TINY, "--steps", "2", "--out", _dir_and_file(tmp)[0]])


@case("out/train --out under a regular file", "refused before training")
def _(tmp):
    return _before_work([*TRAIN_TINY, "--steps", "2", "--out", _dir_and_file(tmp)[1]])


@case("args/bench --min-run-time -1", "refused when parsed, before measuring")
def _(tmp):
    return _before_work([*BENCH[:-2], "--min-run-time", "-1"])


@case("args/bench --min-run-time 0", "refused (0 no longer silently means 'default')")
def _(tmp):
    return _before_work([*BENCH[:-2], "--min-run-time", "0"])


@case("args/profile --min-run-time 0", "refused before profiling")
def _(tmp):
    return _before_work([*PROFILE, "--min-run-time", "0"])


@case("args/bench --only X without --suite", "an error (it used to be ignored)")
def _(tmp):
    return _before_work([*BENCH, "--only", "mlp"])


@case("args/train --set mlp_ratio=four", "the CLI's `error:` line naming the field, exit 2, no TypeError")
def _(tmp):
    r = cli([*TRAIN_TINY, "--steps", "2", "--set", "mlp_ratio=four"], guard_work=True)
    return Outcome(r.rc == 2 and "mlp_ratio" in r.err and "TypeError" not in r.err and not r.work_started,
                   f"rc {r.rc}; {r.last_err()}")


@case("args/train --set pad_vocab_multiple=2.5", "the CLI's `error:` line naming the field, exit 2")
def _(tmp):
    r = cli([*TRAIN_TINY, "--steps", "2", "--set", "pad_vocab_multiple=2.5"], guard_work=True)
    return Outcome(r.rc == 2 and "pad_vocab_multiple" in r.err and "TypeError" not in r.err,
                   f"rc {r.rc}; {r.last_err()}")


@case("args/unknown flag after a subcommand", "the subcommand's usage, not the top-level one")
def _(tmp):
    r = cli(["bench", "--bogus"])
    return Outcome(r.rc == 2 and "usage: python -m tutorial_lib bench" in r.err and "--bogus" in r.err,
                   f"rc {r.rc}; {r.err.splitlines()[0][:80] if r.err else ''} ... {r.last_err()}")


@case("args/--device help", "says its default once (not '(default: cuda if available) (default: None)')")
def _(tmp):
    texts = []
    for cmd in ("bench", "profile", "train"):
        r = cli([cmd, "--help"])
        texts.append(" ".join(r.out.split()))
    bad = [t for t in texts if "(default: None)" in t or "(default: cuda if available) (default:" in t]
    line = next((t[t.rindex("--device DEVICE"):][:90] for t in texts if "--device DEVICE" in t), "")
    return Outcome(not bad, f"{len(bad)} of 3 help texts repeat a default; bench: {line}")


# ---- ids and config values -----------------------------------------------------------------
def _raises(fn, *needles) -> Outcome:
    try:
        fn()
    except ValueError as e:
        msg = str(e)
        return Outcome(all(n in msg for n in needles), f"ValueError: {msg[:130]}")
    except Exception as e:  # the wrong kind of error is an outcome, not a crash of this script
        return Outcome(False, f"{type(e).__name__}: {str(e)[:130]}")
    return Outcome(False, "accepted")


@functools.lru_cache(maxsize=1)
def _tiny_model():
    import torch

    from tutorial_lib.model import GPT, get_config
    torch.manual_seed(0)
    return GPT(get_config("tiny"))


def _ids(*values):
    import torch
    return torch.tensor(values)


@case("ids/id >= vocab_size", "ValueError naming the vocabulary size (not 'index out of range in self')")
def _(tmp):
    return _raises(lambda: _tiny_model()(_ids([1, 50257])), "50257")


@case("ids/negative id", "ValueError naming the valid range")
def _(tmp):
    return _raises(lambda: _tiny_model()(_ids([-1, 5])), "vocab_size")


@case("ids/1-D ids", "ValueError naming the expected shape (B, T) (not an unpack error)")
def _(tmp):
    return _raises(lambda: _tiny_model()(_ids(1, 2, 3)), "(B, T)")


GPT_BAD = [("rope_theta", 0), ("rope_theta", -1.0), ("norm_eps", -1e-5), ("mlp_ratio", float("inf")),
           ("n_kv_head", True), ("bias", "no"), ("tie_embeddings", 1), ("dropout", float("nan")),
           ("mlp_ratio", "four"), ("pad_vocab_multiple", 2.5), ("window", True)]
TRAIN_BAD = [("lr", float("nan")), ("lr", float("inf")), ("lr", -1.0), ("lr", True), ("muon_lr", 0),
             ("weight_decay", float("inf")), ("weight_decay", True), ("min_lr_ratio", "0.1"),
             ("grad_clip", True), ("eval_batch_size", True), ("compile", "no"), ("progress", 1),
             ("steps", True), ("device", 0)]


def _config_case(cls_name: str, field: str, value):
    def check(tmp):
        if cls_name == "GPTConfig":
            from tutorial_lib.model import GPTConfig as cls
        else:
            from tutorial_lib.train import TrainConfig as cls
        return _raises(lambda: cls(**{field: value}), field, repr(value))
    return check


for _f, _v in GPT_BAD:
    case(f"config/GPTConfig({_f}={_v!r})", "ValueError naming the field and the value")(
        _config_case("GPTConfig", _f, _v))
for _f, _v in TRAIN_BAD:
    case(f"config/TrainConfig({_f}={_v!r})", "ValueError naming the field and the value")(
        _config_case("TrainConfig", _f, _v))


# ---- issue 26: targets that are not regular files, and symbolic links -------------------------
def _kind_of(path: Path) -> str:
    m = os.lstat(path).st_mode
    for test, what in ((stat.S_ISCHR, "a character device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(m):
            return what
    return f"a regular file of {os.path.getsize(path)} bytes" if stat.S_ISREG(m) else "something else"


def _node_like(tmp: Path, device: str) -> tuple:
    """(path, what) of a copy of ``device`` made with mknod (root), else a FIFO: neither may be
    replaced by a regular file."""
    path = tmp / Path(device).name
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.stat(device).st_rdev)
        return path, f"a mknod copy of {device}"
    except PermissionError:
        os.mkfifo(path)
        return path, f"a FIFO (mknod of {device} needs root)"


def _device_out_case(device: str):
    def check(tmp):  # the real command, unguarded: before the fix it trained and replaced the node
        node, what = _node_like(tmp, device)
        before = _kind_of(node)
        r = cli([*TRAIN_TINY, "--steps", "2", "--out", node])
        after = _kind_of(node)
        state = f"still {after}" if after == before else f"REPLACED: now {after}"
        return Outcome(r.rc == 2 and after == before and "not a regular file" in r.err and not leftovers(tmp),
                       f"{what}: rc {r.rc}; {state}; {r.last_err()}")
    return check


for _device in ("/dev/null", "/dev/full"):
    case(f"out/train --out a copy of {_device}", "refused before training (exit 2, `error:` saying it is not a "
         "regular file); the node stays a device")(_device_out_case(_device))


@case("out/train --out /dev/null itself", "refused before training; /dev/null stays a character device")
def _(tmp):
    o = _before_work([*TRAIN_TINY, "--steps", "2", "--out", "/dev/null"])  # guarded: never writes
    dev = stat.S_ISCHR(os.stat("/dev/null").st_mode)
    return Outcome(o.ok and dev, o.what + f"; /dev/null is {'still' if dev else 'NO LONGER'} a character device")


@case("out/bench --out a FIFO", "refused before measuring; the FIFO stays")
def _(tmp):
    os.mkfifo(tmp / "pipe")
    o = _before_work([*BENCH, "--out", tmp / "pipe"])
    return Outcome(o.ok and _kind_of(tmp / "pipe") == "a FIFO", o.what + f"; target is {_kind_of(tmp / 'pipe')}")


@case("out/profile --trace a socket", "refused before profiling; the socket stays")
def _(tmp):
    import socket
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp / "sock"))
        o = _before_work([*PROFILE, "--trace", tmp / "sock"])
        return Outcome(o.ok and _kind_of(tmp / "sock") == "a socket", o.what + f"; target is {_kind_of(tmp / 'sock')}")


@case("out/train --out a symbolic link", "written through: the link stays a link, the file it points to "
      "holds the new history")
def _(tmp):
    real = tmp / "runs" / "h.json"
    real.parent.mkdir()
    real.write_text('{"old": true}')
    link = tmp / "h.json"
    link.symlink_to(real)
    r = cli([*TRAIN_TINY, "--steps", "2", "--out", link])
    got = json.loads(real.read_text()).get("kind", "the old content")
    return Outcome(r.rc == 0 and link.is_symlink() and got == "train_history" and not leftovers(tmp),
                   f"rc {r.rc}; --out is {_kind_of(link)}; the file it pointed to holds {got}")


def _emptied(text: str) -> str:
    """The guide with every table emptied: report has to rewrite all of them."""
    return re.sub(r"(<!-- report:([\w.-]+) -->\n).*?(<!-- /report:\2 -->)", r"\1\3", text, flags=re.S)


@case("report --guide a symbolic link", "written through: the link stays a link, the guide it points to "
      "gets the tables")
def _(tmp):
    real = tmp / "docs" / "guide.md"
    real.parent.mkdir()
    real.write_text(_emptied(GUIDE.read_text()))
    link = tmp / "guide.md"
    link.symlink_to(real)
    r = cli(["report", "--guide", link, "--results", results_copy(tmp)])
    same = real.read_text() == GUIDE.read_text()
    return Outcome(r.rc == 0 and link.is_symlink() and same and not leftovers(tmp),
                   f"rc {r.rc}; --guide is {_kind_of(link)}; the guide it points to "
                   f"{'has the tables' if same else 'is STALE'}")


# ---- issue 26: the one results validator, seen through `report` --------------------------------
def _refused_cleanly(r: Run, intact: bool, *needles: str) -> Outcome:
    """Exit 2, one `error:` line naming every needle (the file, the field), no traceback, the guide
    untouched."""
    ok = (r.rc == 2 and intact and "Traceback" not in r.err and r.last_err().startswith("error:")
          and all(n in r.err for n in needles))
    tb = "; a TRACEBACK" if "Traceback" in r.err else ""
    return Outcome(ok, f"rc {r.rc}; guide {'unchanged' if intact else 'REWRITTEN'}{tb}; {r.last_err()}")


def _first_row(doc: dict, kind: str) -> dict:
    return next(r for r in doc["rows"] if r["kind"] == kind)


def _changed_results(tmp: Path, change, raw: Optional[str] = None) -> Path:
    """results/ whose cpu.json has ``change`` applied (alone: no copy beside it to be refused for
    being a duplicate). ``raw`` replaces the string "RAW" in the written text (for ``1e400``)."""
    results = results_copy(tmp)
    doc = json.loads((results / "cpu.json").read_text())
    change(doc)
    text = json.dumps(doc)  # allow_nan: NaN and Infinity are written as such, as a hand edit might
    if raw is not None:
        text = text.replace('"RAW"', raw)
    (results / "cpu.json").write_text(text)
    return results


def _value_case(field_value, needle: str, kind: str = "before_after", field: str = "ms_per_step", raw=None):
    def check(tmp):
        results = _changed_results(tmp, lambda d: _first_row(d, kind).update({field: field_value}), raw)
        return _refused_cleanly(*_report(tmp, results), "cpu.json", needle)
    return check


VALUE_CASES = [  # (id, value, what the error names, raw text)
    ("NaN", float("nan"), "ms_per_step", None),
    ("Infinity", float("inf"), "ms_per_step", None),
    ("1e400", "RAW", "ms_per_step", "1e400"),
    ("a string", "514.0", "ms_per_step", None),
    ("a list", [514.0], "ms_per_step", None),
    ("a negative time", -514.0, "ms_per_step", None),
]
for _id, _value, _needle, _raw in VALUE_CASES:
    case(f"report/{_id} as a step time", "an error naming the file and the field, the guide untouched "
         "(it was rendered: NaN as '—', inf skewing the roofline summary, text as a number)")(
        _value_case(_value, _needle, raw=_raw))


@case("report/a row holding only its kind", "an error naming the file and the row (it was a row of dashes "
      "that shifted the statistics), the guide untouched")
def _(tmp):
    def strip(d):
        i = d["rows"].index(_first_row(d, "before_after"))
        d["rows"][i] = {"kind": "before_after"}
    return _refused_cleanly(*_report(tmp, _changed_results(tmp, strip)), "cpu.json", "rows[", "nothing but its kind")


@case("report/meta.device 123", "an error naming the file and meta.device (it dropped all the load notes)")
def _(tmp):
    return _refused_cleanly(*_report(tmp, _changed_results(tmp, lambda d: d["meta"].update(device=123))),
                            "cpu.json", "meta.device")


@case("report/meta {}", "an error naming the file and the missing meta fields (captions read "
      "'Recorded on **?**')")
def _(tmp):
    return _refused_cleanly(*_report(tmp, _changed_results(tmp, lambda d: d.update(meta={}))),
                            "cpu.json", "device_name")


@case("report/a section whose sizes is a string", "an error naming the file and the field (it was an "
      "AttributeError traceback), the guide untouched")
def _(tmp):
    results = _changed_results(tmp, lambda d: d["sections"]["mlp"].update(sizes="B=2, T=256"))
    return _refused_cleanly(*_report(tmp, results), "cpu.json", "sizes")


@case("report/JSON nested 100,000 deep", "an error naming the file (it was a RecursionError traceback), "
      "the guide untouched")
def _(tmp):
    results = results_copy(tmp)
    (results / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    return _refused_cleanly(*_report(tmp, results), "deep.json")


@case("report/a failed measurement", "its cells read 'failed' beside its error, never '—' (not measured)")
def _(tmp):
    r, _ = _report(tmp, results_copy(tmp))
    rows = [ln for ln in (tmp / "guide.md").read_text().splitlines() if "NotImplementedError" in ln]
    dashes = [ln for ln in rows if "—" in ln]
    return Outcome(r.rc == 0 and rows and not dashes and all("failed" in ln for ln in rows),
                   f"rc {r.rc}; {len(rows)} failed rows, {len(dashes)} with '—'"
                   + (f": {dashes[0][:90]}" if dashes else ""))


# ---- issue 26: the guide's markers, and what belongs in results/ --------------------------------
def _report_guide_text(tmp: Path, text: str, results: Path, *extra) -> tuple:
    g = tmp / "guide.md"
    g.write_text(text)
    r = cli(["report", "--guide", g, "--results", results, *extra])
    return r, g.read_text() == text


@case("report/a guide with no markers", "an error (it was 'already up to date'), the guide untouched")
def _(tmp):
    text = "# A guide\n\nNo tables here.\n"
    return _refused_cleanly(*_report_guide_text(tmp, text, results_copy(tmp)), "no report blocks")


@case("report/an end marker missing", "an error naming the line and the block (the block silently stopped "
      "being managed)")
def _(tmp):
    text = GUIDE.read_text().replace("<!-- /report:memory -->\n", "", 1)
    return _refused_cleanly(*_report_guide_text(tmp, text, results_copy(tmp)), "report:memory", "line")


@case("report/a start marker missing", "an error naming the line and the block")
def _(tmp):
    text = GUIDE.read_text().replace("<!-- report:memory -->\n", "", 1)
    return _refused_cleanly(*_report_guide_text(tmp, text, results_copy(tmp)), "/report:memory", "line")


@case("report/a copy of cpu.json in results/", "an error naming both files (every CPU table was shown "
      "twice, with no note), the guide untouched")
def _(tmp):
    results = results_copy(tmp)
    shutil.copy(results / "cpu.json", results / "cpu_copy.json")
    return _refused_cleanly(*_report(tmp, results), "cpu.json", "cpu_copy.json")


@case("report/a profile JSON in results/", "skipped with a note naming it; no table changes (it added a toy "
      "row to the roofline calibration and moved its summary)")
def _(tmp):
    return _extra_file(tmp, "profile.json", _profile_json())


@case("report/a results folder without training runs", "an error naming the training table (it was "
      "silently replaced by 'No recorded training runs yet'), the guide untouched")
def _(tmp):
    return _refused_cleanly(*_report(tmp, results_copy(tmp, runs=False)), "training_runs", "--allow-placeholders")


@case("report --allow-placeholders/no training runs", "the training table replaced by its placeholder, "
      "on purpose")
def _(tmp):
    r, _ = _report(tmp, results_copy(tmp, runs=False), "--allow-placeholders")
    block = (tmp / "guide.md").read_text().split("<!-- report:training_runs -->")[1].split("<!-- /report:")[0]
    return Outcome(r.rc == 0 and "No recorded training runs yet" in block, f"rc {r.rc}; block: {block[:60]!r}")


@case("args/train --eval-batches 100000000", "refused before training, naming the bound")
def _(tmp):
    o = _before_work([*TRAIN_TINY, "--steps", "2", "--eval-batches", "100000000"])
    r = cli([*TRAIN_TINY, "--steps", "2", "--eval-batches", "100000000"], guard_work=True)
    return Outcome(o.ok and "eval_batches" in r.err and "at most" in r.err, o.what)


# ---- pytest --------------------------------------------------------------------------------
def pytest_generate_tests(metafunc):
    if "fault" in metafunc.fixturenames:
        metafunc.parametrize("fault", CASES, ids=[c.id for c in CASES])


def test_fault(fault, tmp_path):
    got = fault.fn(tmp_path)
    assert got.ok, f"{fault.id}: expected {fault.expect}; got {got.what}"


# ---- the table -----------------------------------------------------------------------------
def table(selected: List[Case]) -> str:
    lines = ["| case | asked for | what happened | ok |", "|---|---|---|---|"]
    for c in selected:
        tmp = Path(tempfile.mkdtemp(prefix="case-", dir=SCRATCH))
        t0 = time.perf_counter()
        try:
            got = c.fn(tmp)
        except Exception as e:
            got = Outcome(False, f"the case crashed: {type(e).__name__}: {str(e)[:120]}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        cell = got.what.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {c.id} | {c.expect} | {cell} | {'yes' if got.ok else 'NO'} |")
        print(f"{c.id}: {'ok' if got.ok else 'NOT OK'} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return "\n".join(lines)


if __name__ == "__main__":
    pick = sys.argv[1:]
    print(f"tutorial_lib from {PKG_ROOT}\n")
    print(table([c for c in CASES if not pick or any(p in c.id for p in pick)]))
