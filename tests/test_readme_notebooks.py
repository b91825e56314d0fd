"""README.md against the repository: its notebook list names every notebook in notebooks/ (and
none that is gone), its way back to the stored outputs works, its set-up numbers hold here."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_readme_lists_every_notebook():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("- `notebooks/`"):readme.index("- `tutorial_lib/`")]
    listed = set(re.findall(r"^  - `(\d\d_\w+)`", section, flags=re.M))
    on_disk = {p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.py")}
    assert on_disk, "no notebooks found"
    assert listed == on_disk, f"missing from README: {sorted(on_disk - listed)}; gone: {sorted(listed - on_disk)}"


def test_readme_says_how_to_get_the_stored_outputs_back():
    """Run All + autosave replaces a notebook's stored outputs; the README says how to restore them,
    and what it says works here: every notebook is tracked by git, so `git checkout notebooks/`
    brings its stored outputs back."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "autosave" in readme and "git checkout notebooks/" in readme
    tracked = subprocess.run(["git", "ls-files", "notebooks"], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    names = set(tracked.stdout.split())
    untracked = [p.name for p in (REPO / "notebooks").glob("*.ipynb") if f"notebooks/{p.name}" not in names]
    assert not untracked, f"not in git, so `git checkout notebooks/` cannot restore them: {untracked}"


def test_readme_states_the_venv_size_this_venv_has():
    """The README's set-up numbers are measured ones: the venv `make install` built (when this test
    runs in it) is within the disk size the README states (it once said 1.5 GB for a 2.5 GB venv)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"(\d+) to (\d+) minutes and ([\d.]+) GB of disk", readme)
    assert m, "the README's set-up paragraph states no minutes and GB"
    venv = REPO / ".venv"
    if Path(sys.prefix).resolve() != venv.resolve() or not (venv / ".tutorial_lib-installed").exists():
        pytest.skip("not running in the .venv that `make install` built")
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
    stated = float(m.group(3)) * 2**30
    assert 0.6 * stated <= size <= 1.25 * stated, f".venv is {size / 2**30:.2f} GB; the README says {m.group(3)} GB"
