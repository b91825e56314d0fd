"""Shared scaffold of the notebook builders: ``md``/``code`` append cells, ``write`` saves them.

Each ``NN_name.py`` builder imports these, adds its cells in order and ends with
``write("NN_name.ipynb")``. Cells whose output depends on the machine pass ``ignore=True``
(``# NBVAL_IGNORE_OUTPUT``); every other code cell is compared exactly by nbval.
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

IGNORE = "# NBVAL_IGNORE_OUTPUT\n"
cells = []


def md(text):
    cells.append(new_markdown_cell(text.strip("\n")))


def code(text, ignore=False):
    cells.append(new_code_cell((IGNORE if ignore else "") + text.strip("\n")))


def write(name: str) -> Path:
    """Write the cells (no outputs) to notebooks/NAME; execute with `make notebooks`."""
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}})
    out = Path(__file__).resolve().parents[1] / name
    nbformat.write(nb, out)
    print(f"wrote {out} ({len(cells)} cells)")
    return out


def recorded_section(*sections):
    """The "Recorded results, for comparison" markdown + code cells for the guide-suite ``sections``
    that this lesson measures live (``tutorial_lib.report.recorded``)."""
    md("""
## Recorded results, for comparison

The guide suite (`python -m tutorial_lib bench --suite guide --out results/<device>.json`) records
these measurements once per machine; below are the files in `results/`, each labelled with the
device, dtype, torch version, size profile, date and sizes it was recorded with. They are files,
not measurements made now: set them beside what this machine measured above. A GPU's numbers
appear here once a GPU run is recorded. `OPTIMIZATION_GUIDE.md` shows the same tables.
""")
    args = ", ".join('"' + x + '"' for x in sections)
    code(f"""
from tutorial_lib.report import recorded
recorded({args})
""", ignore=True)
