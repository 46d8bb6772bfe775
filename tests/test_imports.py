"""The project's import graph has no cycle, the method registry is a leaf, and no module is
long enough to hide two concerns.

The graph is read from the source with `ast` (nothing is imported): every `import` and
`from ... import` statement, at module level and inside functions (a function-level cycle
is a cycle too: it only fails later, at the call). Importing `a.b.c` from outside package
`a.b` also runs `a/__init__.py` and `a/b/__init__.py`: those are edges as well. Imports
through `importlib` (the registry loading its method modules on first use, lazy public
names in package `__init__`s) happen after the importer is fully initialised and are not
edges.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "methods", "reports", "measure", "benchmarks")
MAX_LINES = 500


def project_modules() -> dict[str, Path]:
    """module name -> file, for every module of the project's packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imported_names(name: str, path: Path, is_package: bool) -> set[str]:
    """The modules that `name` imports anywhere in its source (absolute names)."""
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:      # relative: from the importer's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules whose code runs when it imports what it imports."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in imported_names(name, path, path.name == "__init__.py"):
            if target not in modules:
                continue
            edges.add(target)
            parts = target.split(".")
            for i in range(1, len(parts)):   # the packages above the target run first...
                pkg = ".".join(parts[:i])
                if not (name == pkg or name.startswith(pkg + ".")):   # ...unless we are inside
                    edges.add(pkg)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}        # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_function_level_and_package_imports():
    graph = import_graph()
    assert "harness.runner" in graph["harness.check"]         # imported inside run_checks
    assert "harness" in graph["methods.cnn"]                  # harness/__init__ runs first
    assert "harness.errors" in graph["methods.cnn"]
    assert "harness.schedule" not in graph["harness.schedule.local"]   # inside the package


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_method_registry_is_a_leaf():
    """methods/__init__.py imports only the standard library and harness.errors."""
    path = REPO / "methods" / "__init__.py"
    imported = imported_names("methods", path, True)
    ours = {m for m in imported if m.split(".")[0] in PACKAGES}
    assert ours <= {"harness.errors", "harness.errors.UserError"}, ours
    others = {m.split(".")[0] for m in imported} - set(PACKAGES)
    assert others <= set(sys.stdlib_module_names) | {"__future__"}, others


@pytest.mark.parametrize("name", sorted(project_modules()))
def test_no_module_over_500_lines(name):
    n = len(project_modules()[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{name} has {n} lines; split it along its concerns"
