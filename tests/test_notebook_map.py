"""The learner's map (``tutorial_lib.notebook_map``): every notebook on it, its times read from the
stored outputs (never typed), README's table in step with them, and the run-time budget: each
notebook at the cpu profile within 10 minutes on 2 cores, all of them within 60."""
import json
import re
from pathlib import Path

import pytest
from awaiting_rerun import OVER_BUDGET, first_execution, over_budget, waiting

from tutorial_lib import notebook_map as M

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_notebook_is_on_the_map_and_nothing_else():
    assert [lesson.stem for lesson in M.LESSONS] == [p.stem for p in NOTEBOOKS]
    for lesson in M.LESSONS:
        assert lesson.question.endswith("?") and lesson.needs and lesson.on_a_cpu


def test_times_are_read_from_the_execution_timestamps():
    def cell(start, end):
        return {"cell_type": "code", "metadata": {"execution": {
            "iopub.status.busy": start, "iopub.execute_input": start, "shell.execute_reply": end}}}
    book = {"cells": [cell("2026-12-01T10:00:00.000000Z", "2026-12-01T10:00:05.000000Z"),
                      {"cell_type": "markdown", "metadata": {}},
                      cell("2026-12-01T10:00:06.000000Z", "2026-12-01T10:09:30.500000Z")]}
    assert M.stored_seconds(book) == pytest.approx(9 * 60 + 30.5)  # 10:00:00 to 10:09:30.5, by hand
    assert M.stored_seconds({"cells": [{"cell_type": "code", "metadata": {}}]}) is None
    first = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "stream", "name": "stdout",
                                                          "text": ["size profile  : cpu  (set ...)\n"]}]}]}
    assert M.stored_profile(first) == "cpu"


def test_the_readme_map_is_the_generated_one():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- map -->\n(.*?)<!-- /map -->", text, re.DOTALL)
    assert m, "README.md has no <!-- map --> block"
    assert m.group(1) == M.map_markdown(), "README's map drifted: run scripts/time_notebooks.py --readme"


def test_every_notebook_has_a_recorded_smoke_time():
    smoke = M.smoke_times()
    assert sorted(smoke) == sorted(p.stem for p in NOTEBOOKS), "run scripts/time_notebooks.py"
    assert all(v["seconds"] > 0 for v in smoke.values())


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_each_notebook_is_stored_from_a_cpu_run_within_its_budget(nb):
    book = json.loads(nb.read_text(encoding="utf-8"))
    if waiting(nb.name, book):
        pytest.skip(f"{nb.name} waits for its re-execution at the cpu profile (tests/awaiting_rerun.py)")
    assert M.stored_profile(book) == "cpu", f"{nb.name} is stored from the {M.stored_profile(book)} profile"
    minutes = M.stored_seconds(book) / 60
    if over_budget(nb.name, book):
        assert minutes > M.MAX_MINUTES, f"{nb.name} fits its budget now: remove it from OVER_BUDGET"
        pytest.xfail(f"{nb.name} took {minutes:.1f} min at the cpu profile (budget {M.MAX_MINUTES}): "
                     "listed in tests/awaiting_rerun.OVER_BUDGET")
    assert minutes <= M.MAX_MINUTES, f"{nb.name} took {minutes:.1f} min at the cpu profile (budget {M.MAX_MINUTES})"


def test_all_notebooks_together_within_the_budget():
    if any(waiting(p.name) for p in NOTEBOOKS):
        pytest.skip("some notebooks wait for their re-execution at the cpu profile (tests/awaiting_rerun.py)")
    cpu_total, _ = M.totals(M.map_rows())
    assert cpu_total is not None
    if any(over_budget(p.name) for p in NOTEBOOKS) and cpu_total > M.TOTAL_MINUTES:
        pytest.xfail(f"{cpu_total:.1f} min in all (budget {M.TOTAL_MINUTES}): the notebooks in "
                     "tests/awaiting_rerun.OVER_BUDGET are over theirs")
    assert cpu_total <= M.TOTAL_MINUTES, f"{cpu_total} min in all"


def test_the_over_budget_list_holds_only_the_runs_it_names():
    for name, stamp in OVER_BUDGET.items():
        book = json.loads((ROOT / "notebooks" / name).read_text(encoding="utf-8"))
        assert first_execution(book) == stamp, f"{name} was re-executed: remove it from OVER_BUDGET"


def test_the_map_as_text_names_every_notebook_and_the_totals():
    lines = M.map_lines()
    assert len(lines) == 2 * len(M.LESSONS) + 1 and lines[-1].startswith("all")
    assert all(any(line.startswith(lesson.stem) for line in lines) for lesson in M.LESSONS)
