"""The explorers in a real browser: JupyterLab + headless Chromium (Debian's), driven by Playwright.

Starts JupyterLab on 127.0.0.1 (free port, random token) serving a copy of
notebooks/99_explorer.ipynb with its stored outputs cleared, opens it, runs all cells from the
Run menu, then, like a learner:

1. cost explorer: presses "Measure now" on the default gpt2_small, B=4, T=512 -> the plan (predicted
   time, setup included, and memory) and a "Measure (~N s)" confirmation appear, its label whole
   (not cut off), and nothing is measured (the progress bar stays hidden, no measured text); then
   picks the ``tiny`` model in the "model" dropdown -> the plan is gone, the readout names tiny and
   the figure's PNG changes; moves the "sequence length T" slider three steps left with the
   keyboard (512 -> 64) -> the readout says T=64 and the figure changes again; types 1 into the
   "batch B" slider's readout -> B=1 and a new figure; types 48 into the box beside the T slider ->
   T=48 is added to the slider, and the readout goes from T=64 straight to T=48 (a watcher in the
   page records every readout: the slider's first step, T=32, never shows), then 64 again; clicks
   "Measure now" -> the plan shows; clicks the confirmation -> the plan's note goes, the progress
   bar fills, the measured text shows ms/step on this machine, the roofline model's error from the
   same rounds and the time it took beside the plan's, and the readout's prediction is now scaled
   by that measurement, its basis naming it (measured now: tiny, B=1, T=64);
2. GQA explorer: types a 16384-token context, then moves its batch slider to 32 -> the analytic
   decode speedup in the readout changes with the batch, and so does the figure; back at batch 1
   and a 128-token context, "Measure decode" first shows its plan and a "Measure (~N s)"
   confirmation (nothing measured), the second press measures and shows the time beside the plan's;
3. decision tree: picks goal "memory" -> the recommendation is for memory; moves its T slider one
   step right -> it is for T=1024 and its figure changes;
4. asserts that every code cell ran, no cell shows an error or a traceback, every explorer drew a
   figure; saves screenshots of the explorers and of the page to artifacts/browser/.

A second test opens lesson 06 (outputs cleared), runs its window-explorer cell alone and drives
it (slider, typed window); a third serves 06 as stored (outputs kept, not trusted, no kernel
run) and checks that the explorer's output shows its stored figure, not the widget's repr text.

Skipped when Chromium or Playwright is missing (``make test`` installs Debian's chromium first).
"""
from __future__ import annotations

import re
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
    page.wait_for_function(  # the new picture set and decoded: the page's layout has settled around it
        """([sel, old]) => { const e = document.querySelector(sel);
                             return !!e && !!e.getAttribute('src') && e.getAttribute('src') !== old
                                    && e.complete && e.naturalWidth > 0; }""",
        arg=[selector, old], timeout=timeout)
    return _src(page, selector)


def _visibility(page, selector: str) -> str:
    return page.locator(selector).first.evaluate("e => getComputedStyle(e).visibility")


def _watch(page, selector: str) -> None:
    """Record every text ``selector`` shows from now on (``_seen``): what flashed up, not only the end."""
    page.evaluate("""(sel) => {
        const e = document.querySelector(sel);
        window.__seen = window.__seen || {};
        window.__seen[sel] = [e.innerText];
        new MutationObserver(() => window.__seen[sel].push(e.innerText))
            .observe(e, {childList: true, subtree: true, characterData: true});
    }""", selector)


def _seen(page, selector: str) -> list:
    return page.evaluate("(sel) => window.__seen[sel]", selector)


def _label_is_whole(page, selector: str) -> bool:
    """The element shows all of its text: nothing clipped behind an ellipsis."""
    return page.locator(selector).first.evaluate(
        "e => [e, ...e.querySelectorAll('*')].every(x => x.scrollWidth <= x.clientWidth + 1)")


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
            assert "ceilings" in plan and "building the model" in plan, plan  # the setup is in the estimate
            confirm = page.locator(f"{cost} button.tl-measure.tl-confirm")
            confirm.wait_for(timeout=10_000)
            assert re.fullmatch(r"Measure \(~[\d,.]+ s\)", confirm.inner_text().strip()), confirm.inner_text()
            assert _label_is_whole(page, f"{cost} button.tl-measure.tl-confirm")
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

            _watch(page, readout)
            _type_into(page, f"{cost} .tl-typed-seq-len input", "48")  # between the slider's steps
            text = _wait_text(page, readout, "B=1, T=48,", text)
            assert "added" in _text(page, f"{cost} .tl-note")
            shown = [t for t in _seen(page, readout) if t.strip()]
            assert all("B=1, T=64," in t or "B=1, T=48," in t for t in shown), shown  # never T=32 between
            _type_into(page, f"{cost} .tl-typed-seq-len input", "64")
            text = _wait_text(page, readout, "B=1, T=64,", text)
            assert _text(page, f"{cost} .tl-seq-len .widget-readout").strip() == "64"

            page.click(f"{cost} button.tl-measure")  # the plan first ...
            _wait_text(page, f"{cost} .tl-plan-note", "before measuring")
            page.click(f"{cost} button.tl-measure.tl-confirm")  # ... then the measurement
            measured = _wait_text(page, f"{cost} .tl-measured", "ms/step", timeout=300_000)
            assert "measured on" in measured and "B=1, T=64" in measured, measured
            assert "on the ceilings timed in the same rounds, said" in measured, measured
            assert "this measurement took" in measured and "the plan said ~" in measured, measured
            assert "before measuring" not in _text(page, f"{cost} .tl-plan-note")
            text = _wait_text(page, readout, "by measured now", text)
            # the readout for these settings is scaled from that measurement, and its basis names it
            assert re.search(r"scaled per component by measured now: tiny\b.*B=1, T=64.*ms/step measured", text), text
            assert "not scaled" not in text
            ms_readout = float(re.search(r"([\d,.]+) ms/step,", text).group(1).replace(",", ""))
            ms_measured = float(re.search(r"([\d,.]+) ms/step \(median", measured).group(1).replace(",", ""))
            assert ms_readout == pytest.approx(ms_measured, rel=0.25), (text, measured)  # per component, same step
            page.wait_for_function(  # the bar is filled (its own widget model: waited for, not raced)
                "s => document.querySelector(s)?.style.width === '100%'",
                arg=f"{cost} .tl-progress .progress-bar", timeout=10_000)
            _wait_src_change(page, figure, src)

            # -- GQA explorer: the batch moves the decoding estimate; Measure decode plans first ---
            gqa = ".tl-gqa-explorer"
            g_readout, g_figure = f"{gqa} .tl-readout", f"{gqa} img.tl-figure"
            text, src = _text(page, g_readout), _src(page, g_figure)
            _type_into(page, f"{gqa} .tl-typed-context input", "16384")
            text = _wait_text(page, g_readout, "x 16,384 tokens", text)
            src = _wait_src_change(page, g_figure, src)
            one = re.search(r"([\d.]+)x MHA \(memory", text).group(1)
            _type_into(page, f"{gqa} .tl-gqa-batch .widget-readout", "32")
            text = _wait_text(page, g_readout, "32 x 16,384 tokens", text)
            many = re.search(r"([\d.]+)x MHA \(memory", text).group(1)
            assert float(many) > float(one), (one, many)  # the caches outweigh the shared weights more
            src = _wait_src_change(page, g_figure, src)
            _type_into(page, f"{gqa} .tl-gqa-batch .widget-readout", "1")
            text = _wait_text(page, g_readout, "1 x 16,384 tokens", text)
            src = _wait_src_change(page, g_figure, src)
            _type_into(page, f"{gqa} .tl-typed-context input", "128")
            text = _wait_text(page, g_readout, "1 x 128 tokens", text)
            _wait_src_change(page, g_figure, src)  # a click while the figure swaps can land beside the button
            page.click(f"{gqa} button.tl-measure")  # the plan first ...
            plan = _wait_text(page, f"{gqa} .tl-plan-note", "before measuring")
            assert "batch 1, context 128" in plan and "Measuring takes ~" in plan, plan
            confirm = page.locator(f"{gqa} button.tl-measure.tl-confirm")
            confirm.wait_for(timeout=10_000)
            assert re.fullmatch(r"Measure \(~[\d,.]+ s\)", confirm.inner_text().strip()), confirm.inner_text()
            assert _visibility(page, f"{gqa} .tl-progress") == "hidden"  # nothing measured yet
            assert "tokens/s" not in _text(page, f"{gqa} .tl-measured")
            confirm.click()  # ... then the measurement
            measured = _wait_text(page, f"{gqa} .tl-measured", "tokens/s", timeout=300_000)
            assert "batch 1" in measured and "context 128" in measured and "the plan said ~" in measured, measured

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

            for css in ("tl-cost-explorer", "tl-gqa-explorer", "tl-decision-tree"):
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
