"""The tree's import graph: no cycle between modules, and no module importing another's private names.

Read from the source with `ast` (nothing is imported): every ``import`` and ``from ... import`` in the
package modules (`stream_widgets`, `tagging`) and the benchmarks, at any depth (also inside functions),
makes an edge to the project module it names. The implicit import of a package's ``__init__`` by its
submodules is not an edge (it would make every package a cycle), so ``from stream_widgets import search``
is an edge to `stream_widgets.search`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stream_widgets", "tagging")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _resolve(name: str, importer: str, level: int, is_package: bool) -> str:
    if level == 0:
        return name
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(target module, imported names, line) of every import in `module` that names a project module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    out.append((alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(node.module or "", module, node.level, path.name == "__init__.py")
            if source not in MODULES:
                continue
            names = []
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in MODULES:
                    out.append((sub, [], node.lineno))  # `from package import submodule`
                else:
                    names.append(alias.name)
            if names:
                out.append((source, names, node.lineno))
    return out


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        graph[module] = {target for target, _, _ in _imports(module, path) if target != module}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    assert _cycle(_graph()) is None, f"import cycle: {' -> '.join(_cycle(_graph()))}"


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_private_names_of_another():
    sources = dict(MODULES)
    sources.update({f"benchmarks.{p.stem}": p for p in (ROOT / "benchmarks").glob("*.py")})
    offences = []
    for module, path in sources.items():
        for target, names, line in _imports(module, path):
            offences += [
                f"{path.relative_to(ROOT)}:{line} imports {target}.{n}"
                for n in names
                if n.startswith("_") and not n.endswith("__")  # dunders such as __version__ are public
            ]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
            if (alias.name in MODULES)
            or (isinstance(node, ast.ImportFrom) and f"{node.module}.{alias.name}" in MODULES)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                offences.append(f"{path.relative_to(ROOT)}:{node.lineno} reads {node.value.id}.{node.attr}")
    assert not offences, "\n".join(offences)


def test_the_graph_sees_function_level_and_relative_imports():
    edges = _graph()
    assert "stream_widgets.search" in edges["stream_widgets.estimator"]
    assert "stream_widgets.estimator_cuda" in edges["stream_widgets.estimator"]  # imported inside a function
    assert "stream_widgets.estimator" not in edges["stream_widgets.estimator_cuda"]
