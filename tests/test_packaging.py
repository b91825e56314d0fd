"""pyproject.toml and environment.yml must promise the same runtime dependencies (environment.yml
may list a tool of the dev extra besides, e.g. jupytext, so conda installs it from conda-forge)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PYPI = {"pytorch": "torch"}  # conda-forge's names where they differ from PyPI's
NOT_RUNTIME = {"python", "pip"}


def _name(requirement: str) -> str:
    """'torch>=2.5' -> 'torch'; names compared the PEP 503 way."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject():
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_runtime_dependencies_match():
    yaml = pytest.importorskip("yaml")
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = set()
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name = _name(dep)
            conda.add(CONDA_TO_PYPI.get(name, name))
    conda -= NOT_RUNTIME
    project = pyproject()["project"]
    pip = {_name(d) for d in project["dependencies"]}
    dev = {_name(d) for d in project["optional-dependencies"]["dev"]}
    assert pip <= conda, f"runtime dependencies missing from environment.yml: {sorted(pip - conda)}"
    assert conda - pip <= dev, f"environment.yml lists what pyproject.toml does not: {sorted(conda - pip - dev)}"


def test_environment_has_the_notebook_source_tool():
    """`make sync` and tests/test_notebook_sources.py need jupytext: in both extras and the conda env."""
    yaml = pytest.importorskip("yaml")
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "jupytext" in {_name(d) for d in env["dependencies"] if isinstance(d, str)}


def test_environment_installs_the_package_with_dev_extras():
    text = (ROOT / "environment.yml").read_text()
    assert "conda-forge" in text
    assert re.search(r"^\s*- -e \.\[dev\]\s*$", text, re.M)


def test_dev_extra_has_the_test_tools():
    extras = pyproject()["project"]["optional-dependencies"]
    for extra in ("dev", "test"):
        names = {_name(d) for d in extras[extra]}
        assert {"pytest", "nbval", "nbformat", "nbclient", "ipykernel", "playwright", "jupytext"} <= names


def test_assets_are_package_data():
    data = pyproject()["tool"]["setuptools"]["package-data"]["tutorial_lib"]
    assert "assets/*" in data
    for name in ("r50k_base.tiktoken", "shakespeare.txt.gz", "PROVENANCE.md"):
        assert (ROOT / "tutorial_lib" / "assets" / name).is_file()


def test_triton_is_a_linux_only_dev_dependency_with_a_lower_bound_only():
    """`make test`/`make lab` install Triton where a wheel exists (Linux) and nowhere else; a lower
    bound only, so that pip keeps the triton a CUDA build of torch pins."""
    from packaging.requirements import Requirement

    extras = pyproject()["project"]["optional-dependencies"]
    for extra in ("dev", "test"):
        (req,) = [Requirement(d) for d in extras[extra] if _name(d) == "triton"]
        assert all(spec.operator == ">=" for spec in req.specifier), req
        assert req.marker is not None
        for system, machine, want in (("linux", "x86_64", True), ("linux", "aarch64", True),
                                      ("darwin", "arm64", False), ("win32", "AMD64", False),
                                      ("linux", "ppc64le", False)):
            env = {"sys_platform": system, "platform_machine": machine}
            assert req.marker.evaluate(env) is want, (extra, system, machine)
    assert "triton" not in {_name(d) for d in pyproject()["project"]["dependencies"]}
