"""The code is linted like code: the package, the tests and the scripts with the project's ruff rules
(pyproject.toml), and the notebooks' jupytext sources for real errors (undefined or unused names,
redefinitions) -- they are code too, not string literals."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
pytestmark = pytest.mark.skipif(RUFF is None, reason="ruff is not installed (pip install -e '.[dev]')")


def _ruff(*args):
    return subprocess.run([RUFF, "check", "--no-cache", *args], cwd=ROOT, capture_output=True, text=True)


def test_package_tests_and_scripts_pass_ruff():
    r = _ruff("tutorial_lib", "tests", "scripts")
    assert r.returncode == 0, r.stdout[-4000:]


def test_notebook_sources_have_no_pyflakes_errors():
    r = _ruff("--select", "F", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("*.py")))
    assert r.returncode == 0, r.stdout[-4000:]


def test_the_lint_catches_an_unused_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    assert _ruff("--select", "F", str(bad)).returncode == 1
