"""The package's layout rules, checked on its source (ast): no import cycles, no private names
across modules, imports inside functions only for optional or heavy dependencies (with a reason),
the notebook stack kept out of the core, and every module importable on its own."""
import ast
import functools
import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "tutorial_lib"
# inner imports allowed, each for a reason stated on its line: optional or heavy dependencies
OPTIONAL = ("ipywidgets", "IPython", "pygments", "triton", "torch.nn.attention.flex_attention")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def resolve(target: str, name: str = None) -> str:
    """The module an import refers to: ``from target import name`` may name a submodule."""
    if name and f"{target}.{name}" in MODULES:
        return f"{target}.{name}"
    return target


@functools.lru_cache(maxsize=None)
def _tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text())  # parsed once per test session


def imports(name: str):
    """(target module, imported name or None, node, inside a function?) for every tutorial_lib import."""
    tree = _tree(name)
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None, node, id(node) in inner
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                yield node.module, a.name, node, id(node) in inner


@functools.lru_cache(maxsize=None)
def graph():
    edges = {m: set() for m in MODULES}
    for m in MODULES:
        for target, name, _, _ in imports(m):
            if not target.startswith("tutorial_lib"):
                continue
            dst = resolve(target, name)
            if dst == m or dst not in MODULES:
                continue
            if is_package(m) and dst.startswith(m + "."):
                continue  # a package's __init__ importing its own submodules (the registry pattern)
            edges[m].add(dst)
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycles():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    edges = {m: set(dst) for m, dst in graph().items()}  # a copy: graph() is cached
    edges["tutorial_lib.scopes"].add("tutorial_lib.model")  # model imports scopes: now a cycle
    assert any("tutorial_lib.scopes" in c and "tutorial_lib.model" in c for c in cycles(edges))


def test_no_private_name_is_imported_from_another_module():
    bad = []
    for m in MODULES:
        for target, name, node, _ in imports(m):
            if target.startswith("tutorial_lib") and name and name.startswith("_") \
                    and not name.startswith("__") and resolve(target, name) != m:
                bad.append(f"{m}:{node.lineno} imports {target}.{name}")
    assert bad == []


def test_no_private_attribute_of_another_module_is_used():
    bad = []
    for m, path in MODULES.items():
        tree = ast.parse(path.read_text())
        aliases = {}
        for target, name, node, _ in imports(m):
            if not target.startswith("tutorial_lib"):
                continue
            for a in node.names:
                mod = resolve(target, a.name) if isinstance(node, ast.ImportFrom) else a.name
                if mod in MODULES:
                    aliases[a.asname or a.name.split(".")[-1]] = mod
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                bad.append(f"{m}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert bad == []


def test_imports_inside_functions_are_only_optional_dependencies_with_a_reason():
    bad = []
    for m, path in MODULES.items():
        lines = path.read_text().splitlines()
        for target, name, node, inner in imports(m):
            if not inner:
                continue
            text = " ".join(lines[node.lineno - 1:node.end_lineno])
            optional = any(target == o or target.startswith(o + ".") for o in OPTIONAL)
            if not optional or "#" not in text:  # the reason is a comment on the import
                bad.append(f"{m}:{node.lineno}: {' '.join(text.split())}")
    assert bad == []


def test_the_core_never_imports_the_notebook_stack():
    """Only widgets.py may import ipywidgets/IPython at module level (the GPU machine has neither)."""
    bad = []
    for m in MODULES:
        if m == "tutorial_lib.widgets":
            continue
        for target, _, node, inner in imports(m):
            if not inner and target.split(".")[0] in ("ipywidgets", "IPython", "jupyter", "notebook"):
                bad.append(f"{m}:{node.lineno} imports {target}")
        assert "tutorial_lib.widgets" not in graph()[m], f"{m} imports tutorial_lib.widgets"
    assert bad == []


@pytest.mark.parametrize("name", sorted(m for m in MODULES if not m.endswith("__main__")))
def test_every_module_imports_on_its_own(name):
    if name == "tutorial_lib.widgets" and importlib.util.find_spec("ipywidgets") is None:
        pytest.skip("widgets.py is the notebook stack's (ipywidgets is not installed: the device image has "
                    "none); test_the_core_never_imports_the_notebook_stack covers the rest")
    saved = {k: v for k, v in sys.modules.items() if k == "tutorial_lib" or k.startswith("tutorial_lib.")}
    for k in saved:
        del sys.modules[k]
    try:
        importlib.import_module(name)
    finally:
        for k in [k for k in sys.modules if k == "tutorial_lib" or k.startswith("tutorial_lib.")]:
            del sys.modules[k]
        sys.modules.update(saved)
