"""The notebooks are authored twice over: ``notebooks/NN_name.py`` (a jupytext percent script, the
source you edit) and ``notebooks/NN_name.ipynb`` (the same cells with their stored outputs, what
JupyterLab opens and nbval runs). ``make sync`` (``jupytext --sync``) carries an edit from one to
the other; these tests fail when that was forgotten, when a notebook has no pair, when a cell
still carries an ``# NBVAL_...`` comment instead of a cell tag, and when a notebook's kernel
metadata is not what JupyterLab writes on open (which would mark the notebook modified at once).

Fast: every file is read once, nothing is executed.
"""
from __future__ import annotations

import difflib
import functools
import re
from pathlib import Path

import pytest

NO_STACK = "the notebook stack is not installed (the device image has none); make install has it"
jupytext = pytest.importorskip("jupytext", reason=NO_STACK)
nbformat = pytest.importorskip("nbformat", reason=NO_STACK)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
IPYNB = sorted(NOTEBOOKS.glob("*.ipynb"))
SCRIPTS = sorted(NOTEBOOKS.glob("*.py"))

# nbval's cell tags (nbval 0.11: plugin.metadata_tags); a tag that looks like one must be one.
NBVAL_TAGS = {"nbval-ignore-output", "nbval-check-output", "nbval-skip", "nbval-raises-exception",
              "raises-exception"}
NBVAL_COMMENT = re.compile(r"^\s*#\s*(NBVAL_[A-Z_]*|PYTEST_VALIDATE_[A-Z_]*)", re.M)

# What JupyterLab writes into metadata.kernelspec when a notebook's kernel connects, for the
# `python3` kernel `make install` registers (`ipykernel install --name python3`, default display name).
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


@functools.lru_cache(maxsize=None)
def _ipynb(path: Path):
    return nbformat.read(path, as_version=4)


@functools.lru_cache(maxsize=None)
def _script(path: Path):
    return jupytext.read(path, fmt="py:percent")


def _cells(nb):
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def _ids(paths):
    return [p.name for p in paths]


def test_there_are_notebooks():
    assert IPYNB, f"no notebooks in {NOTEBOOKS}"


def test_every_notebook_has_its_script_and_every_script_its_notebook():
    ipynb = {p.stem for p in IPYNB}
    scripts = {p.stem for p in SCRIPTS}
    assert not ipynb - scripts, (f"notebooks without a .py source: {sorted(ipynb - scripts)}; "
                                 "write them with `make sync`")
    assert not scripts - ipynb, (f".py sources without a notebook: {sorted(scripts - ipynb)}; "
                                 "create them with `make sync`")


@pytest.mark.parametrize("path", IPYNB, ids=_ids(IPYNB))
def test_script_and_notebook_have_the_same_cells(path):
    script = path.with_suffix(".py")
    if not script.exists():
        pytest.fail(f"{script.name} is missing (`make sync` writes it)")
    want, got = _cells(_script(script)), _cells(_ipynb(path))
    if want == got:
        return
    for i, (a, b) in enumerate(zip(want, got)):
        if a != b:
            break
    else:
        i = min(len(want), len(got))
        pytest.fail(f"{script.name} has {len(want)} cells, {path.name} {len(got)}: "
                    f"they differ from cell {i} on; run `make sync`")
    (ta, sa, ga), (tb, sb, gb) = a, b
    diff = "\n".join(difflib.unified_diff(sa.splitlines(), sb.splitlines(), script.name, path.name,
                                          lineterm="", n=1))
    pytest.fail(f"cell {i} differs between {script.name} and {path.name} "
                f"(type {ta!r} vs {tb!r}, tags {ga} vs {gb}); run `make sync`\n{diff}")


@pytest.mark.parametrize("path", IPYNB + SCRIPTS, ids=_ids(IPYNB + SCRIPTS))
def test_test_plumbing_is_in_tags_not_in_the_code(path):
    nb = _ipynb(path) if path.suffix == ".ipynb" else _script(path)
    for i, cell in enumerate(nb.cells):
        m = NBVAL_COMMENT.search(cell.source)
        assert m is None, (f"{path.name} cell {i}: '{m.group(0).strip()}' is visible to learners; "
                           "put the nbval tag in the cell's metadata instead "
                           "(in the .py: `# %% tags=[\"nbval-ignore-output\"]`)")
        for tag in cell.metadata.get("tags", []):
            if tag.startswith(("nbval", "raises")):
                assert tag in NBVAL_TAGS, f"{path.name} cell {i}: nbval knows no tag {tag!r}"


@pytest.mark.parametrize("path", IPYNB, ids=_ids(IPYNB))
def test_kernel_metadata_is_what_jupyterlab_writes(path):
    """JupyterLab sets metadata.kernelspec and metadata.language_info from the kernel as soon as it
    connects; any difference marks the notebook modified (and autosave rewrites it)."""
    from ipykernel.ipkernel import IPythonKernel

    meta = _ipynb(path).metadata
    assert meta.get("kernelspec") == KERNELSPEC, path.name
    # The version is the Python that executed the stored outputs; everything else is ipykernel's.
    stored = {k: v for k, v in meta.get("language_info", {}).items() if k != "version"}
    kernel = {k: v for k, v in IPythonKernel.language_info.items() if k != "version"}
    assert stored == kernel, path.name
    assert "version" in meta.language_info, path.name
