"""No import cycle inside ``src/kxnet``.

The graph is built from the source with :mod:`ast`, without importing anything: one node per
module (``kxnet/a/b.py`` is ``kxnet.a.b``, ``kxnet/a/__init__.py`` is ``kxnet.a``), one edge per
``import kxnet.x`` / ``from kxnet.x import y`` / ``from .x import y`` statement naming a module of
the package (relative imports resolved against the importing module's package). An import of a
package counts as an import of its ``__init__.py``; ``from package import name`` counts as an
import of the package and, where ``name`` is a submodule, of that submodule too. Importing
``kxnet.a.b`` also runs ``kxnet/a/__init__.py``, but that edge is left out: a package that
imports its own submodules would otherwise be a cycle with each of them, and Python sees the
parent half-initialised in exactly the same way whichever order the import takes.

What is checked, and what is not:

- **module-level imports** (every statement outside a function body, including those under
  ``try``/``if`` and in class bodies, but not those under ``if TYPE_CHECKING:``, which never run)
  must form a graph without a cycle. A failure names the cycle, module by module.
- **function-level imports** (inside a ``def``) run later, when the function is called, so they
  cannot fail an import half-way; but one that points back along an import path (``a`` imports
  ``b`` at module level, a function of ``b`` imports ``a``) is a cycle that only the deferral
  hides. Checkable, and checked: the graph of module-level *and* function-level imports together
  has no cycle either — stricter than "no function-level import closes a module-level cycle"
  (:func:`hidden_cycles`, which names the deferred import when that is the case), since it also
  refuses two modules that import each other only inside functions (``loading`` and ``zoo``
  did). Function-level imports that keep a heavy optional dependency lazy (gradio, openvino,
  av, tqdm at CLI start-up) import modules outside the package and are not in the graph.
- Imports by string (``importlib.import_module``, as ``kxnet/__init__.py`` does for its lazy
  public names) are not seen: they are the deliberate laziness of the top-level package, and
  ``kxnet`` itself imports nothing of its own at module level.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "kxnet"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """``(node, in_function)`` for every import statement of a module, skipping
    ``if TYPE_CHECKING:`` blocks."""
    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:          # the else branch runs
                    yield from walk(ast.Module(body=[other], type_ignores=[]), in_function)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
    yield from walk(tree, False)


def import_graph(root: Path = SRC, package: str = PACKAGE):
    """``(module_level, function_level)``: two dicts ``module -> {(imported module, line)}`` over
    the modules of ``package`` under ``root``."""
    files = {_module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    modules = set(files)
    module_level = {m: set() for m in modules}
    function_level = {m: set() for m in modules}

    for name, path in files.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        for node, in_function in _imports(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = here.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                # the longest prefix that is a module of the package (``import kxnet.a.b`` of a
                # name that is an attribute, not a module, lands on its module)
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    (function_level if in_function else module_level)[name].add((target, node.lineno))
    return module_level, function_level


def _edges(graph):
    return {m: {t for t, _ in targets} if targets and isinstance(next(iter(targets)), tuple) else set(targets)
            for m, targets in graph.items()}


def find_cycle(graph) -> list[str] | None:
    """One cycle of ``graph`` (``node -> iterable of nodes``, or of ``(node, line)``) as
    ``[a, b, …, a]``, or None. Depth-first search, nodes and edges in sorted order so that the
    cycle named is the same on every run."""
    edges = _edges(graph)
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def reaches(graph, start: str, goal: str) -> list[str] | None:
    """A path ``[start, …, goal]`` along ``graph``'s edges, or None."""
    edges = _edges(graph)
    seen, stack = {start}, [[start]]
    while stack:
        path = stack.pop()
        if path[-1] == goal:
            return path
        for nxt in sorted(edges.get(path[-1], ()), reverse=True):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(path + [nxt])
    return None


def hidden_cycles(module_level, function_level) -> list[str]:
    """Each function-level import ``a -> b`` (line) for which ``b`` already reaches ``a`` through
    module-level imports: a cycle that only the deferral keeps from failing."""
    found = []
    for a in sorted(function_level):
        for b, line in sorted(function_level[a]):
            back = reaches(module_level, b, a)
            if back:
                found.append(f"{a}:{line} imports {b} inside a function; {' -> '.join(back)} at module level")
    return found


def deferred_cycle(module_level, function_level) -> str | None:
    """A cycle of module-level and function-level imports together, each step marked where
    only a function-level import makes it, or None."""
    both = {m: set(module_level.get(m, ())) | set(function_level.get(m, ())) for m in {*module_level, *function_level}}
    cycle = find_cycle(both)
    if cycle is None:
        return None
    eager = _edges(module_level)
    steps = []
    for a, b in zip(cycle, cycle[1:]):
        lines = sorted(line for t, line in function_level.get(a, ()) if t == b)
        steps.append(f"{a} -> {b}" + (f" (inside a function, line {lines[0]})" if b not in eager.get(a, ()) else ""))
    return "; ".join(steps)


# ---- the finder itself, on tiny graphs ----

def test_find_cycle_names_a_synthetic_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": {"y"}}) == ["y", "z", "y"]


def test_find_cycle_passes_a_graph_without_one():
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a"}}) is None
    assert find_cycle({}) is None


def test_hidden_cycles_names_a_deferred_import_that_closes_a_cycle():
    module_level = {"a": {("b", 1)}, "b": {("c", 2)}, "c": set()}
    assert hidden_cycles(module_level, {"a": set(), "b": set(), "c": {("a", 9)}}) == [
        "c:9 imports a inside a function; a -> b -> c at module level"]
    assert hidden_cycles(module_level, {"a": {("c", 5)}, "b": set(), "c": set()}) == []


def test_deferred_cycle_names_a_cycle_made_only_inside_functions():
    module_level = {"loading": set(), "zoo": set(), "io": set()}
    function_level = {"loading": {("zoo", 12)}, "zoo": {("loading", 40), ("io", 3)}, "io": set()}
    assert hidden_cycles(module_level, function_level) == []        # no module-level path back
    assert deferred_cycle(module_level, function_level) == (
        "loading -> zoo (inside a function, line 12); zoo -> loading (inside a function, line 40)")
    assert deferred_cycle(module_level, {"loading": {("zoo", 12)}, "zoo": set(), "io": set()}) is None


def test_the_graph_builder_resolves_relative_and_absolute_imports(tmp_path):
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\nfrom . import c\n")
    (pkg / "c.py").write_text("import toy.sub\nfrom typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from .a import x\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..a import thing\n\ndef f():\n    from ..c import y\n")
    module_level, function_level = import_graph(tmp_path, "toy")
    assert _edges(module_level) == {"toy": set(), "toy.a": {"toy.sub", "toy.sub.b", "toy", "toy.c"},
                                    "toy.c": {"toy.sub"}, "toy.sub": set(), "toy.sub.b": {"toy.a"}}
    assert _edges(function_level)["toy.sub.b"] == {"toy.c"}
    assert find_cycle(module_level) == ["toy.a", "toy.sub.b", "toy.a"]


# ---- the package ----

def test_no_import_cycle_at_module_level():
    module_level, _ = import_graph()
    assert len(module_level) > 50, "the package's modules were not found"
    cycle = find_cycle(module_level)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_function_level_import_hides_a_cycle():
    module_level, function_level = import_graph()
    hidden = hidden_cycles(module_level, function_level)
    assert not hidden, "\n".join(hidden)
    cycle = deferred_cycle(module_level, function_level)
    assert cycle is None, "import cycle through function-level imports: " + cycle
