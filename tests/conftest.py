"""Shared pytest setup: make the repository's tutorial_lib importable even before `pip install -e`."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pytest
import torch

# Triton's interpreter runs the `triton` attention backend's kernels on a CPU. Triton reads this
# variable when a kernel is *defined*, i.e. when tutorial_lib.attention.triton_flash is imported, so
# it is set here, before any test imports it -- and only where no GPU can run the compiled kernels.
# With a GPU the kernels are compiled, so a test's CPU case of the backend skips, saying why
# (``Backend.cannot_run``); so does every interpreter case where the interpreter cannot run
# (triton <= 3.6 with numpy >= 2.4: ``triton_flash.interpreter_problem``).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny ops run faster on one intra-op thread than on two, and stay robust on a shared CPU.

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``; the thread count is restored
    after the module, so timing tests elsewhere keep every thread.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- the device run's summary (scripts/gpu_run.sh, stage 1): what every CUDA test found ----------
def pytest_addoption(parser):
    parser.addoption("--cuda-summary", default=None, metavar="PATH",
                     help="write each test's outcome and recorded properties to PATH (a results file)")


_REPORTS = []


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _REPORTS.append(report)


def pytest_configure(config):
    """For the device run: SIGINT (its deadline, ``timeout -s INT``) must end the session so that
    the summary is written, even where the runner started the process with SIGINT ignored."""
    if config.getoption("--cuda-summary", default=None):
        import signal

        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--cuda-summary")
    if not path:
        return
    import json

    from tutorial_lib.files import atomic_write_text
    from tutorial_lib.measure.records import SCHEMA_VERSION, stamp, to_row

    rows = [{"kind": "cuda_test", "test": r.nodeid.split("::", 1)[-1], "outcome": r.outcome,
             "seconds": round(r.duration, 2), **{k: v for k, v in r.user_properties},
             "error": (str(r.longrepr).splitlines()[-1][:300] if r.failed else
                       (r.longrepr[2][:200] if r.skipped and isinstance(r.longrepr, tuple) else None))}
            for r in _REPORTS]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    doc = {"schema_version": SCHEMA_VERSION, "kind": "cuda_tests",
           "meta": stamp(device, None, command="pytest -m cuda", exitstatus=int(exitstatus)),
           "rows": [to_row(r) for r in rows]}
    atomic_write_text(path, json.dumps(doc, indent=1, default=str) + "\n")
