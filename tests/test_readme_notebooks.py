"""README.md's notebook list names every notebook in notebooks/ (and none that is gone)."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_lists_every_notebook():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("- `notebooks/`"):readme.index("- `tutorial_lib/`")]
    listed = set(re.findall(r"^  - `(\d\d_\w+)`", section, flags=re.M))
    on_disk = {p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.py")}
    assert on_disk, "no notebooks found"
    assert listed == on_disk, f"missing from README: {sorted(on_disk - listed)}; gone: {sorted(listed - on_disk)}"
