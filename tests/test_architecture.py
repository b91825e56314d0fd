"""The package's layout rules, checked on its source (ast): no import cycles, no private names
across modules, imports inside functions only for optional or heavy dependencies (with a reason),
the notebook stack kept out of the core, and every module importable on its own."""
import ast
import functools
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet

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


@dataclass(frozen=True)
class Package:
    """Module name -> source, and which names are packages (``__init__.py``): the real package, or
    a few lines of made-up source in the tests below that prove each check catches what it must."""

    sources: Dict[str, str]
    packages: FrozenSet[str]

    def is_package(self, name: str) -> bool:
        return name in self.packages


def real_package() -> Package:
    return Package({m: p.read_text() for m, p in MODULES.items()},
                   frozenset(m for m, p in MODULES.items() if p.name == "__init__.py"))


REAL = real_package()


def is_package(name: str) -> bool:
    return REAL.is_package(name)


def resolve(target: str, name: str = None, pkg: Package = REAL) -> str:
    """The module an import refers to: ``from target import name`` may name a submodule."""
    if name and f"{target}.{name}" in pkg.sources:
        return f"{target}.{name}"
    return target


def absolute(module: str, node: ast.ImportFrom, pkg: Package = REAL) -> str:
    """The absolute module of ``from ..x import y`` written in ``module`` (level 2: two dots)."""
    if not node.level:
        return node.module
    base = module if pkg.is_package(module) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{node.module}" if node.module else base


@functools.lru_cache(maxsize=None)
def _tree(source: str) -> ast.Module:
    return ast.parse(source)  # parsed once per test session


def imports(name: str, pkg: Package = REAL):
    """(absolute target module, imported name or None, node, inside a function?) for every import
    in module ``name``; relative imports (``from .flops import x``) are resolved."""
    tree = _tree(pkg.sources[name])
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None, node, id(node) in inner
        elif isinstance(node, ast.ImportFrom) and (node.module or node.level):
            target = absolute(name, node, pkg)
            for a in node.names:
                yield target, a.name, node, id(node) in inner


def build_graph(pkg: Package):
    edges = {m: set() for m in pkg.sources}
    for m in pkg.sources:
        for target, name, _, _ in imports(m, pkg):
            if not target.startswith("tutorial_lib"):
                continue
            dst = resolve(target, name, pkg)
            if dst == m or dst not in pkg.sources:
                continue
            if pkg.is_package(m) and dst.startswith(m + "."):
                continue  # a package's __init__ importing its own submodules (the registry pattern)
            edges[m].add(dst)
    return edges


@functools.lru_cache(maxsize=None)
def graph():
    return build_graph(REAL)


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


def private_imports(pkg: Package = REAL):
    """``from x import _name`` (relative or not) of another module's private name."""
    bad = []
    for m in pkg.sources:
        for target, name, node, _ in imports(m, pkg):
            if target.startswith("tutorial_lib") and name and name.startswith("_") \
                    and not name.startswith("__") and resolve(target, name, pkg) != m:
                bad.append(f"{m}:{node.lineno} imports {target}.{name}")
    return bad


def dotted(node: ast.AST):
    """["tutorial_lib", "measure", "flops", "_lin"] for the expression tutorial_lib.measure.flops._lin,
    None when the chain does not start at a plain name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def private_attributes(pkg: Package = REAL):
    """Another module's private name reached through a module object: ``flops._lin`` after
    ``from tutorial_lib.measure import flops``, or ``tutorial_lib.measure.flops._lin`` after
    ``import tutorial_lib.measure.flops`` (dotted chains are followed module by module)."""
    bad = set()
    for m in pkg.sources:
        bound = {}  # local name -> the module it is
        for target, name, node, _ in imports(m, pkg):
            if not target.startswith("tutorial_lib"):
                continue
            for a in node.names:
                if isinstance(node, ast.ImportFrom):
                    mod = resolve(target, a.name, pkg)
                    if mod in pkg.sources and mod != target:  # the name is a module itself
                        bound[a.asname or a.name] = mod
                elif a.asname:
                    bound[a.asname] = a.name  # import tutorial_lib.measure.flops as F
                else:
                    bound[a.name.split(".")[0]] = a.name.split(".")[0]  # import a.b.c binds a
        for node in ast.walk(_tree(pkg.sources[m])):
            chain = dotted(node) if isinstance(node, ast.Attribute) else None
            if not chain or chain[0] not in bound:
                continue
            mod = bound[chain[0]]
            for attr in chain[1:]:
                if f"{mod}.{attr}" in pkg.sources:
                    mod = f"{mod}.{attr}"
                    continue
                if attr.startswith("_") and not attr.startswith("__") and mod != m:
                    bad.add(f"{m}:{node.lineno} uses {mod}.{attr}")
                break
    return sorted(bad)


def test_no_private_name_is_imported_from_another_module():
    assert private_imports() == []


def test_no_private_attribute_of_another_module_is_used():
    assert private_attributes() == []


# ---- the checks themselves: each catches what it must (made-up modules) -------------------------
def _made_up(**modules) -> Package:
    """A package of made-up modules: keyword ``tutorial_lib__measure__flops`` is module
    tutorial_lib.measure.flops; names ending in ``__init__`` are packages."""
    sources, packages = {}, set()
    for key, source in modules.items():
        name = key.replace("__", ".")
        if name.endswith(".init"):
            name = name[:-len(".init")]
            packages.add(name)
        sources[name] = source
    for name in list(sources):  # the folders on the way are packages too
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            sources.setdefault(parent, "")
            packages.add(parent)
    return Package(sources, frozenset(packages))


MADE_UP = dict(tutorial_lib__measure__flops="def _lin(): pass\ndef lin(): pass\n")


@pytest.mark.parametrize("source", [
    "from .flops import _lin",
    "from tutorial_lib.measure.flops import _lin",
    "from ..measure.flops import _lin",
])
def test_a_private_import_is_caught_relative_or_not(source):
    pkg = _made_up(**MADE_UP, tutorial_lib__measure__roofline=source)
    assert private_imports(pkg) == ["tutorial_lib.measure.roofline:1 imports tutorial_lib.measure.flops._lin"]
    assert private_imports(_made_up(**MADE_UP, tutorial_lib__measure__roofline=source.replace("_lin", "lin"))) == []


@pytest.mark.parametrize("source", [
    "import tutorial_lib.measure.flops\nx = tutorial_lib.measure.flops._lin",
    "import tutorial_lib.measure.flops as F\nx = F._lin()",
    "from tutorial_lib import measure\nx = measure.flops._lin",
    "from tutorial_lib.measure import flops\nx = flops._lin",
    "from . import flops\nx = flops._lin",
])
def test_a_private_attribute_is_caught_through_dotted_chains(source):
    pkg = _made_up(**MADE_UP, tutorial_lib__measure__roofline=source)
    assert private_attributes(pkg) == ["tutorial_lib.measure.roofline:2 uses tutorial_lib.measure.flops._lin"]
    assert private_attributes(_made_up(**MADE_UP, tutorial_lib__measure__roofline=source.replace("_lin", "lin"))) == []


def test_relative_imports_resolve_to_the_right_module():
    pkg = _made_up(tutorial_lib__model="",
                   tutorial_lib__measure__flops="from ..model import GPT\nfrom . import roofline",
                   tutorial_lib__measure__roofline="", tutorial_lib__measure__init="from .flops import lin")
    assert build_graph(pkg)["tutorial_lib.measure.flops"] == {"tutorial_lib.model", "tutorial_lib.measure.roofline"}
    assert build_graph(pkg)["tutorial_lib.measure"] == set()  # __init__ importing its own submodule


def test_a_relative_import_cycle_is_caught():
    pkg = _made_up(tutorial_lib__measure__a="from . import b", tutorial_lib__measure__b="from .a import x")
    assert cycles(build_graph(pkg)) == [["tutorial_lib.measure.a", "tutorial_lib.measure.b"]]


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
