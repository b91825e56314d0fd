"""What the stored notebooks show without a kernel: no frozen progress bars, and each explorer as a
figure (its display bundle carries a PNG and an HTML copy beside the widget view)."""
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
EXPLORERS = {"02_gqa": "gqa_explorer(", "03_flash_attention": "flash_explorer(",
             "06_sliding_window": "window_explorer(", "12_memory_budget": "budget_explorer(",
             "99_explorer": "cost_explorer("}
BAR = re.compile(r"\d+%\|")  # tqdm's text form: "measuring:   0%|          | 0/2"


def _outputs(nb: Path):
    book = json.loads(nb.read_text(encoding="utf-8"))
    for cell in book["cells"]:
        for out in cell.get("outputs", []):
            yield "".join(cell["source"]), out


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_progress_bar_is_stored(nb):
    for _, out in _outputs(nb):
        text = "".join(out.get("data", {}).get("text/plain", [])) if "data" in out else ""
        assert not BAR.search(text), f"{nb.name} stores a progress bar: {text[:80]!r}"


@pytest.mark.parametrize("stem", sorted(EXPLORERS))
def test_each_lesson_explorer_is_stored_as_a_figure(stem):
    call = EXPLORERS[stem]
    shown = [out for src, out in _outputs(REPO / "notebooks" / f"{stem}.ipynb")
             if call in src and "application/vnd.jupyter.widget-view+json" in out.get("data", {})]
    assert shown, f"{stem} displays no {call.rstrip('(')}"
    for out in shown:
        data = out["data"]
        assert data.get("image/png") and "data:image/png;base64," in "".join(data["text/html"])
        assert "children=" not in "".join(data["text/plain"])
