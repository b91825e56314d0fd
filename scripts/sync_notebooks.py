"""`make sync`: bring every notebook's two files in notebooks/ back in step.

Each notebook is ``NN_name.py`` (jupytext percent script, the source you edit) plus ``NN_name.ipynb``
(the same cells with their stored outputs). ``jupytext --sync`` (pairing in pyproject.toml's
``[tool.jupytext]``) takes the cells from whichever of the two was modified last and keeps the
outputs of the .ipynb; a .py without a notebook gets one, a notebook without a .py gets one.

Then every .ipynb gets the kernel metadata JupyterLab writes when its kernel connects, and no
``jupytext`` metadata: a notebook made from a new .py would otherwise lack the kernelspec (JupyterLab
would mark it modified on open) and carry a ``cell_metadata_filter`` that drops cell tags on later
syncs. tests/test_notebook_sources.py checks the result.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from jupytext.cli import jupytext

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# The `python3` kernel that `make install` registers (tests/test_notebook_sources.py: KERNELSPEC).
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def main(notebooks: Path = NOTEBOOKS) -> int:
    stems = sorted({p.with_suffix("") for p in notebooks.glob("*.ipynb")}
                   | {p.with_suffix("") for p in notebooks.glob("*.py")})
    if not stems:
        print(f"no notebooks in {notebooks}")
        return 0
    files = [str(s.with_suffix(".ipynb") if s.with_suffix(".ipynb").exists() else s.with_suffix(".py"))
             for s in stems]
    rc = jupytext(["--sync", *files])  # the `jupytext --sync FILES` command, in this process
    if rc:
        return rc
    for stem in stems:
        path = stem.with_suffix(".ipynb")
        nb = nbformat.read(path, as_version=4)
        if nb.metadata.get("kernelspec") == KERNELSPEC and "jupytext" not in nb.metadata:
            continue
        nb.metadata.pop("jupytext", None)
        nb.metadata["kernelspec"] = KERNELSPEC
        nbformat.write(nb, path)
        print(f"{path.name}: kernelspec as JupyterLab writes it, no jupytext metadata")
    return 0


if __name__ == "__main__":
    sys.exit(main())
