"""A throw-away JupyterLab server and a headless Chromium for the browser test.

``JupyterLabServer`` starts ``python -m jupyterlab`` on 127.0.0.1 (a free port, a random token,
``--allow-root`` when we are root, no browser, no news or update checks, every cell attached to the
DOM) serving a temporary copy of the notebooks, so nothing the browser does can touch the
committed files. ``launch_chromium`` starts Debian's ``/usr/bin/chromium`` through Playwright (no
Playwright browser download). The selectors below were checked against JupyterLab 4.6.

Run by hand to get a server you can open yourself::

    PYTHONPATH=. .venv/bin/python tests/browser/lab.py notebooks/99_explorer.ipynb
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
# What `make lab` gives JupyterLab (scripts/lab/): the venv's settings overrides, which every server
# here uses as its app settings, and the server config `make lab` passes (``MAKE_LAB_ARGS``).
LAB_OVERRIDES = REPO / "scripts" / "lab" / "overrides.json"
MAKE_LAB_ARGS = [f"--config={REPO / 'scripts' / 'lab' / 'jupyter_lab_config.json'}"]
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-dev-shm-usage"]

# JupyterLab user settings written into a private settings dir: no news/update fetches (the
# machine may have no network and the toast would cover the notebook), and every cell attached
# to the DOM (the default windowing detaches off-screen cells, hiding their outputs from us).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}

# ---- selectors (JupyterLab 4.6, ipywidgets 8) -----------------------------------------------
CELL = ".jp-NotebookPanel .jp-Cell"
CODE_CELL = ".jp-NotebookPanel .jp-CodeCell"
KERNEL_IDLE = ".jp-Notebook-ExecutionIndicator[data-status='idle']"
MENU_RUN = ".lm-MenuBar-itemLabel:text-is('Run')"
MENU_RUN_ALL = ".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel:text-is('Run All Cells')"
ERROR_OUTPUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
STDERR_OUTPUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"


def chromium_path() -> Optional[str]:
    for p in CHROMIUM_CANDIDATES:
        if os.access(p, os.X_OK):
            return p
    return shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLabServer:
    """``with JupyterLabServer(workdir, notebooks) as lab: page.goto(lab.url('notebooks/x.ipynb'))``.

    ``notebooks`` are copied (outputs cleared) into ``root/notebooks``; pass none and fill
    ``lab.root`` yourself before ``start()`` to serve other files. ``serve`` is the folder under
    ``root`` the server shows (``make lab`` shows ``notebooks/``); ``extra_args`` go to JupyterLab.
    """

    def __init__(self, workdir: Path, notebooks, env: Optional[dict] = None, startup_timeout: float = 90,
                 serve: str = "", extra_args=()):
        self.workdir = Path(workdir)
        self.root = self.workdir / "root"
        self.served = self.root / serve
        self.extra_args = list(extra_args)
        self.notebooks = [Path(n) for n in notebooks]
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.workdir / "jupyterlab.log"

    # ---- urls --------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """The lab URL that opens ``path`` (relative to the served folder) with a fresh workspace."""
        return f"{self.base}/lab/tree/{path}?reset&token={self.token}"

    def _api(self, path: str, method: str = "GET", timeout: float = 5):
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            return json.loads(body) if body else None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "JupyterLabServer":
        (self.root / "notebooks").mkdir(parents=True, exist_ok=True)
        self.served.mkdir(parents=True, exist_ok=True)
        import nbformat
        for nb in self.notebooks:  # served as notebooks/<name>, a copy: the originals stay untouched
            src = nb if nb.is_absolute() else REPO / nb
            book = nbformat.read(src, as_version=4)
            for cell in book.cells:  # stored outputs cleared: whatever shows up, this run made it
                if cell.cell_type == "code":
                    cell.outputs, cell.execution_count = [], None
            book.metadata.pop("widgets", None)
            nbformat.write(book, self.root / "notebooks" / src.name)
        app_settings = self.workdir / "lab-app-settings"  # the overrides `make install` puts in the venv
        app_settings.mkdir(parents=True, exist_ok=True)
        shutil.copy(LAB_OVERRIDES, app_settings / "overrides.json")
        settings = self.workdir / "lab-user-settings"
        for rel, value in LAB_SETTINGS.items():
            p = settings / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(value))
        env = dict(os.environ)
        env.update({
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.workdir / "lab-workspaces"),
            "JUPYTER_RUNTIME_DIR": str(self.workdir / "runtime"),
            # no user config (passwords, extensions) or user kernels from ~/.jupyter, ~/.local
            "JUPYTER_CONFIG_DIR": str(self.workdir / "config"),
            "JUPYTER_DATA_DIR": str(self.workdir / "data"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            # this environment's kernel first, ahead of any "python3" kernel in ~/.local
            "JUPYTER_PATH": os.pathsep.join(filter(None, [str(Path(sys.prefix) / "share" / "jupyter"),
                                                          env.get("JUPYTER_PATH")])),
            "TUTORIAL_RESULTS_DIR": env.get("TUTORIAL_RESULTS_DIR", str(REPO / "results")),
        })
        env.setdefault("TUTORIAL_PROFILE", "smoke")
        env.update(self.extra_env)
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.open_browser=False",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.served}",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               f"--LabApp.app_settings_dir={app_settings}", *self.extra_args]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.served, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self._api("/api/status", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer within {self.startup_timeout} s:\n{self.log_tail()}")

    def shutdown_kernels(self) -> None:
        """End every session this server runs (their kernels with them)."""
        for session in self._api("/api/sessions") or []:
            self._api(f"/api/sessions/{session['id']}", method="DELETE")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:  # a clean shutdown also stops the kernels it started
                self._api("/api/shutdown", method="POST", timeout=5)
                self.proc.wait(timeout=15)
            except Exception:
                pass
        if self.proc.poll() is None:  # the server we started, and its kernels (its process group)
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._log.close()
        self.proc = None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def launch_chromium(playwright, executable: Optional[str] = None):
    """Debian's chromium via Playwright (``executable_path``: no Playwright browser download)."""
    return playwright.chromium.launch(executable_path=executable or chromium_path(), headless=True,
                                      args=CHROMIUM_FLAGS)


# ---- page helpers ---------------------------------------------------------------------------
def wait_kernel_settled(page, settle_ms: int = 1_500, timeout_ms: int = 60_000) -> None:
    """Wait until the kernel indicator has read 'idle' for ``settle_ms`` without a break: right after
    a notebook opens it can flick idle -> unknown (reconnecting) -> idle, and a Run All issued in
    the gap is silently dropped."""
    page.wait_for_function(
        """(settle) => {
            const el = document.querySelector('.jp-Notebook-ExecutionIndicator');
            const now = Date.now();
            if (!el || el.getAttribute('data-status') !== 'idle') { window.__idleSince = null; return false; }
            if (!window.__idleSince) window.__idleSince = now;
            return now - window.__idleSince >= settle;
        }""", arg=settle_ms, timeout=timeout_ms, polling=100)


def open_notebook(page, lab: JupyterLabServer, path: str, timeout_ms: int = 60_000) -> None:
    page.goto(lab.url(path))
    page.wait_for_selector(CELL, timeout=timeout_ms)
    wait_kernel_settled(page, timeout_ms=timeout_ms)


def _click_run_all(page) -> None:
    for _ in range(20):
        page.click(MENU_RUN)
        try:
            item = page.wait_for_selector(MENU_RUN_ALL, timeout=2_000)
        except Exception:  # playwright TimeoutError: the item is not (yet) enabled
            page.keyboard.press("Escape")
            page.wait_for_timeout(500)
            continue
        item.hover()
        page.wait_for_timeout(200)  # a click during the menu's opening animation can be dropped
        item.click()
        return
    raise RuntimeError("'Run All Cells' never became enabled in the Run menu")


_ALL_EXECUTED = """() => {
    const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')];
    return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
}"""
_ANY_STARTED = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]
    .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"""


def run_all(page, timeout_ms: int = 90_000, attempts: int = 3) -> None:
    """Run > Run All Cells, then wait until every code cell has an execution count and the kernel
    is idle again. If no cell starts within 10 s (the request was lost), the kernel is let settle
    and the menu is used again."""
    for attempt in range(attempts):
        _click_run_all(page)
        try:
            page.wait_for_function(_ANY_STARTED, timeout=10_000)
            break
        except Exception:
            wait_kernel_settled(page)
    else:
        raise RuntimeError(f"Run All Cells started no cell in {attempts} attempts")
    page.wait_for_function(_ALL_EXECUTED, timeout=timeout_ms)
    wait_kernel_settled(page, settle_ms=500, timeout_ms=timeout_ms)


def cell_errors(page) -> list:
    """Texts of error outputs (tracebacks) and of widgets that failed to render."""
    errs = [e.inner_text() for e in page.query_selector_all(ERROR_OUTPUT)]
    for out in page.query_selector_all(".jp-OutputArea-output"):
        t = out.inner_text()
        if "Error displaying widget" in t or "Failed to load model class" in t:
            errs.append(t)
    return errs


def wait_kernel_idle(page, timeout_ms: int = 60_000) -> None:
    page.wait_for_selector(KERNEL_IDLE, timeout=timeout_ms)


if __name__ == "__main__":  # a manual server, e.g. to look at the explorer in your own browser
    import tempfile
    nbs = sys.argv[1:] or ["notebooks/99_explorer.ipynb"]
    with tempfile.TemporaryDirectory() as d, JupyterLabServer(Path(d), nbs) as lab:
        print(lab.url(nbs[0]), flush=True)
        try:
            lab.proc.wait()
        except KeyboardInterrupt:
            pass
