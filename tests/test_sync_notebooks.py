"""`make sync` (scripts/sync_notebooks.py) on a scratch copy: a lesson started as a .py gets its
.ipynb with the kernelspec JupyterLab writes and no jupytext metadata, and cell tags added later on
either side reach the other side; the repository's pairs come out unchanged."""
from __future__ import annotations

import importlib.util
import os
import shutil
import time
from pathlib import Path

import pytest

NO_STACK = "the notebook stack is not installed (the device image has none); make install has it"
jupytext = pytest.importorskip("jupytext", reason=NO_STACK)
nbformat = pytest.importorskip("nbformat", reason=NO_STACK)

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("sync_notebooks", REPO / "scripts" / "sync_notebooks.py")
sync_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync_notebooks)

NEW_LESSON = '''# %% [markdown]
# # 08 · A new lesson

# %% tags=["nbval-ignore-output"]
import platform
print(platform.node())

# %%
print(1 + 1)
'''


def _touch_later(path: Path) -> None:
    """Make ``path`` the most recently modified file of its pair, as an edit would."""
    t = time.time() + 5
    os.utime(path, (t, t))


def _scratch(tmp_path: Path, *names: str) -> Path:
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")  # the pairing config
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    for name in names:
        for suffix in (".ipynb", ".py"):
            shutil.copy2(REPO / "notebooks" / (name + suffix), nbs / (name + suffix))
    return nbs


def test_a_lesson_started_as_a_script(tmp_path):
    nbs = _scratch(tmp_path)
    (nbs / "08_new.py").write_text(NEW_LESSON)
    assert sync_notebooks.main(nbs) == 0
    nb = nbformat.read(nbs / "08_new.ipynb", as_version=4)
    assert nb.metadata == {"kernelspec": sync_notebooks.KERNELSPEC}
    assert [c.metadata.get("tags", []) for c in nb.cells] == [[], ["nbval-ignore-output"], []]

    # a tag added in the .py reaches the notebook ...
    script = nbs / "08_new.py"
    script.write_text(NEW_LESSON.replace('# %%\nprint(1 + 1)', '# %% tags=["nbval-skip"]\nprint(1 + 1)'))
    _touch_later(script)
    assert sync_notebooks.main(nbs) == 0
    nb = nbformat.read(nbs / "08_new.ipynb", as_version=4)
    assert [c.metadata.get("tags", []) for c in nb.cells] == [[], ["nbval-ignore-output"], ["nbval-skip"]]

    # ... and one added in the notebook (as in JupyterLab) reaches the .py
    nb.cells[0].metadata["tags"] = ["nbval-skip"]
    nbformat.write(nb, nbs / "08_new.ipynb")
    _touch_later(nbs / "08_new.ipynb")
    assert sync_notebooks.main(nbs) == 0
    back = jupytext.read(script, fmt="py:percent")
    assert [c.metadata.get("tags", []) for c in back.cells] == [["nbval-skip"], ["nbval-ignore-output"],
                                                                ["nbval-skip"]]


def test_the_committed_pairs_are_left_as_they_are(tmp_path):
    nbs = _scratch(tmp_path, "99_explorer")
    _touch_later(nbs / "99_explorer.py")  # the source looks edited: cells are read from it
    assert sync_notebooks.main(nbs) == 0
    for suffix in (".ipynb", ".py"):
        name = "99_explorer" + suffix
        assert (nbs / name).read_bytes() == (REPO / "notebooks" / name).read_bytes(), name
