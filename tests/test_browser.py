"""The explorers in a real browser: JupyterLab + headless Chromium (Debian's), driven by Playwright.

Starts JupyterLab on 127.0.0.1 (free port, random token) serving a copy of
notebooks/99_explorer.ipynb with its stored outputs cleared, opens it, runs all cells from the
Run menu, then, like a learner:

1. cost explorer: picks the ``tiny`` model in the "model" dropdown -> the readout names tiny and the
   figure's PNG changes; moves the "sequence length T" slider three steps left with the keyboard
   (512 -> 64) -> the readout says T=64 and the figure changes again; types 1 into the "batch B"
   slider's readout -> B=1 and a new figure; clicks "Measure now" -> the
   progress bar fills, the measured text shows ms/step on this machine, and the prediction is now
   "by measured now";
2. decision tree: picks goal "memory" -> the recommendation is for memory; moves its T slider one
   step right -> it is for T=1024 and its figure changes;
3. asserts that every code cell ran, no cell shows an error or a traceback, every explorer drew a
   figure; saves screenshots of both explorers and of the page to artifacts/browser/.

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
ARTIFACTS = REPO / "artifacts" / "browser"
EXPLORERS = ("tl-cost-explorer", "tl-decision-tree", "tl-gqa-explorer", "tl-flash-explorer",
             "tl-window-explorer")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if chromium_path() is None:
        pytest.skip("no Chromium (/usr/bin/chromium); `make test` installs Debian's chromium when root")
    pytest.importorskip("playwright.sync_api")
    server = JupyterLabServer(tmp_path_factory.mktemp("lab"), [NOTEBOOK],
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
            assert "gpt2_small" in old_text and "T=512" in old_text, old_text
            page.select_option(f"{cost} .tl-preset select", "tiny")
            text = _wait_text(page, readout, "tiny:", old_text)
            src = _wait_src_change(page, figure, old_src)
            assert "gpt2_small" not in text

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

            page.click(f"{cost} button.tl-measure")
            measured = _wait_text(page, f"{cost} .tl-measured", "ms/step", timeout=90_000)
            assert "measured on" in measured and "B=1, T=64" in measured, measured
            text = _wait_text(page, readout, "by measured now", text)
            width = page.locator(f"{cost} .tl-progress .progress-bar").first.evaluate(
                "e => e.style.width")
            assert width == "100%", width
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
    elapsed = time.monotonic() - t0
    assert elapsed < 120, f"the browser test took {elapsed:.0f} s (budget: 2 minutes)"
