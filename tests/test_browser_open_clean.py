"""Opening a notebook in JupyterLab must not mark it modified (headless Chromium, driven by Playwright).

JupyterLab writes ``metadata.kernelspec`` and ``metadata.language_info`` from the kernel as soon as
it connects; when the stored ones differ (the old builders wrote ``"display_name": "Python 3"``, the
``python3`` kernel says ``"Python 3 (ipykernel)"``), every tab turns dirty at once and autosave
rewrites the committed file. This test serves what ``make lab`` serves — a byte copy of
``notebooks/`` (stored outputs, the paired ``.py`` sources) as the server's root, with the
repository's ``pyproject.toml`` one level up — and, for every notebook:

1. opens it, waits until its kernel has connected and settled, then two seconds more: neither the
   document model (``context.model.dirty``) nor the tab (``jp-mod-dirty``) may say modified, and no
   dialog (e.g. jupytext's "more recent than" error) may be up;
2. saves it (File > Save) and checks that what JupyterLab wrote is the stored notebook, value for
   value, and that the ``.py`` source is untouched.

The ``.ipynb`` files are made a day newer than their ``.py`` sources (what a ``git pull`` that only
refreshed outputs leaves behind, the case in which jupytext's contents manager would refuse a
paired notebook whose sources differ).

The one field no stored notebook can match everywhere is ``language_info.version``: the Python of
the kernel. Where it differs from the stored one (the Python that executed the outputs) and all
else matches, the served copy gets this kernel's version and the test says so in a warning.

A last test walks the file browser as ``make lab`` shows it: each lesson is listed once (its
``.ipynb``; the ``.py`` sources are hidden there), and a ``.py`` opened anyway (by its URL) opens
as text in the editor, not as a second notebook without the stored outputs -- while saving a
notebook still writes its paired source (jupytext), which ``make sync`` relies on.

Skipped when Chromium or Playwright is missing (``make test`` installs Debian's chromium first).
"""
from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path

import pytest
from browser.lab import CELL, MAKE_LAB_ARGS, JupyterLabServer, chromium_path, launch_chromium, wait_kernel_settled

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

_PANEL = "window.jupyterapp.shell.currentWidget"
_READY = f"() => !!({_PANEL} && {_PANEL}.context && {_PANEL}.context.isReady)"
_STATE = f"""() => ({{
    model: {_PANEL}.context.model.dirty,
    path: {_PANEL}.context.path,
    tabs: [...document.querySelectorAll('.lm-TabBar-tab.jp-mod-dirty')].map(t => t.innerText.trim()),
    dialogs: [...document.querySelectorAll('.jp-Dialog')].map(d => d.innerText.slice(0, 500)),
}})"""


def _kernel_language_info() -> dict:
    from ipykernel.ipkernel import IPythonKernel
    return dict(IPythonKernel.language_info)


def _served_copy(src: Path, dst: Path, kernel_info: dict) -> None:
    """``src`` byte for byte, except a ``language_info.version`` that only this kernel's Python changes."""
    text = src.read_text(encoding="utf-8")
    book = json.loads(text)
    stored = book["metadata"].get("language_info", {})
    strip = lambda d: {k: v for k, v in d.items() if k != "version"}  # noqa: E731
    if stored != kernel_info and strip(stored) == strip(kernel_info):
        warnings.warn(f"{src.name}: stored language_info.version {stored.get('version')} is not this "
                      f"kernel's {kernel_info['version']}; JupyterLab on this Python marks the "
                      "notebook modified on open. Served with this kernel's version.")
        import nbformat
        book = nbformat.reads(text, as_version=4)
        book.metadata.language_info["version"] = kernel_info["version"]
        text = nbformat.writes(book) + "\n"
    dst.write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if chromium_path() is None:
        pytest.skip("no Chromium (/usr/bin/chromium); `make test` installs Debian's chromium when root")
    pytest.importorskip("playwright.sync_api")
    work = tmp_path_factory.mktemp("lab-open")
    server = JupyterLabServer(work, [], env={"TUTORIAL_PROFILE": "smoke"}, serve="notebooks",
                              extra_args=["--LabApp.expose_app_in_browser=True", *MAKE_LAB_ARGS])
    served = server.root / "notebooks"
    served.mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", server.root / "pyproject.toml")
    kernel_info = _kernel_language_info()
    day_ago = time.time() - 86_400
    for nb in NOTEBOOKS:
        _served_copy(nb, served / nb.name, kernel_info)
        script = nb.with_suffix(".py")
        if script.exists():
            shutil.copy(script, served / script.name)
            os.utime(served / script.name, (day_ago, day_ago))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_opening_a_notebook_does_not_modify_it(lab, browser, nb):
    served = lab.served / nb.name
    script = served.with_suffix(".py")
    stored = json.loads(served.read_text(encoding="utf-8"))
    script_text = script.read_text(encoding="utf-8") if script.exists() else None
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(lab.url(nb.name))
        page.wait_for_selector(CELL, timeout=60_000)
        page.wait_for_function(_READY, timeout=60_000)
        wait_kernel_settled(page)  # the kernel has connected: kernelspec and language_info are set
        page.wait_for_timeout(2_000)
        state = page.evaluate(_STATE)
        assert state["path"] == nb.name, state
        assert state["dialogs"] == [], state["dialogs"]
        assert state["model"] is False and state["tabs"] == [], (
            f"{nb.name} is marked modified right after opening: {state}")

        before = served.stat().st_mtime_ns
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        page.wait_for_function(f"() => !{_PANEL}.context.model.dirty", timeout=30_000)
        deadline = time.monotonic() + 10
        while served.stat().st_mtime_ns == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert served.stat().st_mtime_ns != before, f"File > Save did not write {nb.name}"
        saved = json.loads(served.read_text(encoding="utf-8"))
        assert saved == stored, f"JupyterLab saved {nb.name} with different content than it opened"
        if script_text is not None:
            assert script.read_text(encoding="utf-8") == script_text, f"saving rewrote {script.name}"
    finally:
        page.close()
        lab.shutdown_kernels()


def test_the_file_browser_lists_each_lesson_once_and_sources_open_as_text(lab, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{lab.base}/lab?reset&token={lab.token}")
        page.wait_for_selector(".jp-DirListing-item", timeout=60_000)
        listed = page.eval_on_selector_all(".jp-DirListing-item .jp-DirListing-itemText",
                                           "els => els.map(e => e.innerText.trim())")
        lessons = sorted(p.name for p in NOTEBOOKS)
        assert sorted(n for n in listed if n.endswith(".ipynb")) == lessons, listed
        assert not [n for n in listed if n.endswith(".py")], f"sources listed beside their notebooks: {listed}"

        source = NOTEBOOKS[0].with_suffix(".py").name
        assert (lab.served / source).exists()
        page.goto(lab.url(source))
        page.wait_for_selector(".jp-FileEditor", timeout=60_000)
        page.wait_for_function(_READY, timeout=60_000)
        assert page.evaluate(f"() => {_PANEL}.context.path") == source
        assert page.locator(".jp-NotebookPanel").count() == 0, f"{source} opened as a notebook"
        assert "# %%" in page.locator(".jp-FileEditor").first.inner_text()
    finally:
        page.close()
