"""The explorers in a real browser: JupyterLab + headless Chromium (Debian's), driven by Playwright.

Starts JupyterLab on 127.0.0.1 (free port, random token) serving a copy of
notebooks/99_explorer.ipynb with its stored outputs cleared, opens it, runs all cells from the
Run menu, then, like a learner:

1. cost explorer: presses "Measure now" on the default gpt2_small, B=4, T=512 -> the plan (predicted
   time and memory) and a "Measure ... (~N s)" confirmation appear, and nothing is measured (the
   progress bar stays hidden, no measured text); then picks the ``tiny`` model in the "model"
   dropdown -> the plan is gone, the readout names tiny and the figure's PNG changes; moves the
   "sequence length T" slider three steps left with the keyboard (512 -> 64) -> the readout says
   T=64 and the figure changes again; types 1 into the "batch B" slider's readout -> B=1 and a new
   figure; types 48 into the box beside the T slider -> T=48 is added to the slider, then 64
   again; clicks "Measure now" -> the plan shows; clicks the confirmation -> the progress bar
   fills, the measured text shows ms/step on this machine, and the prediction is now "by measured
   now";
2. decision tree: picks goal "memory" -> the recommendation is for memory; moves its T slider one
   step right -> it is for T=1024 and its figure changes;
3. asserts that every code cell ran, no cell shows an error or a traceback, every explorer drew a
   figure; saves screenshots of both explorers and of the page to artifacts/browser/.

A second test opens lesson 06 (outputs cleared), runs its window-explorer cell alone and drives
it (slider, typed window); a third serves 06 as stored (outputs kept, not trusted, no kernel
run) and checks that the explorer's output shows its stored figure, not the widget's repr text.

Skipped when Chromium or Playwright is missing (``make test`` installs Debian's chromium first).
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from browser.lab import JupyterLabServer, cell_errors, chromium_path, launch_chromium, open_notebook, run_all

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/99_explorer.ipynb"
LESSON = "notebooks/06_sliding_window.ipynb"  # a lesson holding an explorer
ARTIFACTS = REPO / "artifacts" / "browser"
EXPLORERS = ("tl-cost-explorer", "tl-decision-tree", "tl-gqa-explorer", "tl-flash-explorer",
             "tl-window-explorer")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if chromium_path() is None:
        pytest.skip("no Chromium (/usr/bin/chromium); `make test` installs Debian's chromium when root")
    pytest.importorskip("playwright.sync_api")
    server = JupyterLabServer(tmp_path_factory.mktemp("lab"), [NOTEBOOK, LESSON],
                              env={"TUTORIAL_PROFILE": "smoke"})
    server.start()
    yield server
    server.stop()


def _text(page, selector: str) -> str:
    return page.locator(selector).first.inner_text()


def _src(page, selector: str) -> str:
    return page.locator(selector).first.get_attribute("src") or ""


def _wait_text(page, selector: str, needle: str, old: str = None, timeout: int = 30_000) -> str:
    """Wait until ``selector``'s text contains ``needle`` (and differs from ``old``)."""
    page.wait_for_function(
        """([sel, needle, old]) => {
            const e = document.querySelector(sel);
            return !!e && e.innerText.includes(needle) && (old === null || e.innerText !== old);
        }""", arg=[selector, needle, old], timeout=timeout)
    return _text(page, selector)


def _wait_src_change(page, selector: str, old: str, timeout: int = 30_000) -> str:
    page.wait_for_function(
        """([sel, old]) => { const e = document.querySelector(sel);
                             return !!e && !!e.getAttribute('src') && e.getAttribute('src') !== old; }""",
        arg=[selector, old], timeout=timeout)
    return _src(page, selector)


def _visibility(page, selector: str) -> str:
    return page.locator(selector).first.evaluate("e => getComputedStyle(e).visibility")


def _type_into(page, selector: str, value: str) -> None:
    page.click(selector)
    page.keyboard.press("Control+A")
    page.keyboard.type(value)
    page.keyboard.press("Enter")


def test_explorer_notebook_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    t0 = time.monotonic()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        try:
            open_notebook(page, lab, NOTEBOOK)
            run_all(page, timeout_ms=120_000)
            for css in EXPLORERS:  # every explorer rendered, with a figure
                page.wait_for_selector(f".{css} img.tl-figure[src]", timeout=30_000)
            assert cell_errors(page) == []

            # -- cost explorer: a dropdown, a slider, the Measure button --------------------------
            cost = ".tl-cost-explorer"
            readout, figure = f"{cost} .tl-readout", f"{cost} img.tl-figure"
            old_text, old_src = _text(page, readout), _src(page, figure)
            assert "gpt2_small" in old_text and "B=4, T=512" in old_text, old_text
            assert _visibility(page, f"{cost} .tl-progress") == "hidden"  # no empty bar before a measurement

            # "Measure now" on the default setting: first the estimate and a confirmation, nothing measured
            page.click(f"{cost} button.tl-measure")
            plan = _wait_text(page, f"{cost} .tl-plan-note", "before measuring")
            assert "gpt2_small" in plan and "B=4, T=512" in plan and "predicted memory" in plan, plan
            assert " per step" in plan or "time unknown" in plan, plan
            confirm = page.locator(f"{cost} button.tl-measure.tl-confirm")
            confirm.wait_for(timeout=10_000)
            assert confirm.inner_text().startswith("Measure") and "s)" in confirm.inner_text()
            assert "ms/step" not in _text(page, f"{cost} .tl-measured")
            assert _visibility(page, f"{cost} .tl-progress") == "hidden"  # nothing started

            page.select_option(f"{cost} .tl-preset select", "tiny")  # a settings change drops the plan
            text = _wait_text(page, readout, "tiny:", old_text)
            src = _wait_src_change(page, figure, old_src)
            assert "gpt2_small" not in text
            page.wait_for_function("s => !document.querySelector(s)", arg=f"{cost} button.tl-confirm")
            # two widget models update independently in the page: wait for the plan to go, do not race it
            page.wait_for_function("s => !(document.querySelector(s)?.innerText || '').includes('before measuring')",
                                   arg=f"{cost} .tl-plan-note", timeout=10_000)

            page.focus(f"{cost} .tl-seq-len .noUi-handle")
            for _ in range(3):  # 512 -> 256 -> 128 -> 64
                page.keyboard.press("ArrowLeft")
            text = _wait_text(page, readout, "T=64,", text)
            assert _text(page, f"{cost} .tl-seq-len .widget-readout").strip() == "64"
            src = _wait_src_change(page, figure, src)

            page.click(f"{cost} .tl-batch .widget-readout")  # type into the slider's readout
            page.keyboard.press("Control+A")
            page.keyboard.type("1")
            page.keyboard.press("Enter")
            text = _wait_text(page, readout, "B=1, T=64,", text)
            src = _wait_src_change(page, figure, src)

            _type_into(page, f"{cost} .tl-typed-seq-len input", "48")  # between the slider's steps
            text = _wait_text(page, readout, "B=1, T=48,", text)
            assert "added" in _text(page, f"{cost} .tl-note")
            _type_into(page, f"{cost} .tl-typed-seq-len input", "64")
            text = _wait_text(page, readout, "B=1, T=64,", text)
            assert _text(page, f"{cost} .tl-seq-len .widget-readout").strip() == "64"

            page.click(f"{cost} button.tl-measure")  # the plan first ...
            _wait_text(page, f"{cost} .tl-plan-note", "before measuring")
            page.click(f"{cost} button.tl-measure.tl-confirm")  # ... then the measurement
            measured = _wait_text(page, f"{cost} .tl-measured", "ms/step", timeout=90_000)
            assert "measured on" in measured and "B=1, T=64" in measured, measured
            text = _wait_text(page, readout, "by measured now", text)
            page.wait_for_function(  # the bar is filled (its own widget model: waited for, not raced)
                "s => document.querySelector(s)?.style.width === '100%'",
                arg=f"{cost} .tl-progress .progress-bar", timeout=10_000)
            _wait_src_change(page, figure, src)

            # -- decision tree: a dropdown and a slider --------------------------------------------
            tree = ".tl-decision-tree"
            t_readout, t_figure = f"{tree} .tl-readout", f"{tree} img.tl-figure"
            old_text, old_src = _text(page, t_readout), _src(page, t_figure)
            assert "for speed at T=512" in old_text, old_text
            page.select_option(f"{tree} .tl-tree-goal select", "memory")
            text = _wait_text(page, t_readout, "for memory at T=512", old_text)
            src = _wait_src_change(page, t_figure, old_src)
            page.focus(f"{tree} .tl-tree-seq-len .noUi-handle")
            page.keyboard.press("ArrowRight")
            _wait_text(page, t_readout, "for memory at T=1024", text)
            _wait_src_change(page, t_figure, src)

            for css in ("tl-cost-explorer", "tl-decision-tree"):
                page.locator(f".{css}").first.screenshot(path=str(ARTIFACTS / f"{css[3:]}.png"))
            assert cell_errors(page) == []
            stderr = [e.inner_text() for e in page.query_selector_all(
                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")]
            assert not any("Traceback" in s or "Error" in s for s in stderr), stderr
        finally:
            page.screenshot(path=str(ARTIFACTS / "99_explorer.png"), full_page=True)
            browser.close()
    # how long the walk took is recorded for whoever tunes it; it is not a pass/fail criterion here
    (ARTIFACTS / "99_explorer_seconds.txt").write_text(f"{time.monotonic() - t0:.1f}\n")


def test_lesson_notebook_explorer_in_jupyterlab(lab):
    """Lesson 06 holds the window explorer: run that cell alone and drive it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        try:
            open_notebook(page, lab, LESSON)
            cell = page.locator(".jp-CodeCell", has_text="window_explorer()").first
            cell.locator(".jp-InputArea-editor").click()
            page.keyboard.press("Shift+Enter")
            win = ".tl-window-explorer"
            page.wait_for_selector(f"{win} img.tl-figure[src]", timeout=60_000)
            readout, figure = f"{win} .tl-readout", f"{win} img.tl-figure"
            text, src = _text(page, readout), _src(page, figure)
            assert "T=2,048, W=256" in text, text
            page.focus(f"{win} .tl-win-window .noUi-handle")
            page.keyboard.press("ArrowLeft")  # 256 -> 128
            text = _wait_text(page, readout, "W=128", text)
            src = _wait_src_change(page, figure, src)
            _type_into(page, f"{win} .tl-typed-window input", "100")  # not a slider step: added
            _wait_text(page, readout, "W=100", text)
            _wait_src_change(page, figure, src)
            assert "added" in _text(page, f"{win} .tl-note")
            assert cell_errors(page) == []
        finally:
            page.screenshot(path=str(ARTIFACTS / "06_window_explorer.png"), full_page=True)
            browser.close()


def test_stored_lesson_shows_the_explorer_figure(tmp_path):
    """As stored (outputs kept, an untrusted notebook, no cell run), the explorer's output is its
    figure, not ``WindowExplorer(children=(HBox(...`` text."""
    if chromium_path() is None:
        pytest.skip("no Chromium (/usr/bin/chromium)")
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import sync_playwright

    server = JupyterLabServer(tmp_path, [], env={"TUTORIAL_PROFILE": "smoke"})
    (server.root / "notebooks").mkdir(parents=True)
    (server.root / LESSON).write_bytes((REPO / LESSON).read_bytes())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with server, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        try:
            page.goto(server.url(LESSON))
            cell = page.locator(".jp-CodeCell", has_text="window_explorer()").first
            img = cell.locator(".jp-OutputArea-output .tl-fallback img")
            img.wait_for(timeout=60_000)
            assert img.evaluate("e => e.complete && e.naturalWidth > 100"), "the stored figure did not load"
            out = cell.locator(".jp-OutputArea-output").first.inner_text()
            assert "children=" not in out and "W=256" in out, out
        finally:
            page.screenshot(path=str(ARTIFACTS / "06_stored.png"), full_page=True)
            browser.close()
