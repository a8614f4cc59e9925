"""The package's import graph: no cycle (late imports included), and the
loader is a leaf that only the tools reading whole suites import."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "conformance"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every conformance module `path` imports, at any depth of its code."""
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            names = [target + "." + a.name for a in node.names] if not node.module else [target]
            found.update(names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("conformance"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("conformance"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_only_whole_suite_tools_import_the_loader() -> None:
    """Tables, the fuzzer, the TOML writer and the rules build on the schema
    and the rules; the loader (file handling) is imported only by the tools
    that read suite files."""
    graph = _graph()
    users = sorted(name for name, deps in graph.items() if "conformance.load" in deps)
    assert users == ["conformance.cache", "conformance.cli", "conformance.coverage", "conformance.livecov",
                     "conformance.pytest_plugin"]
    for module in ("conformance.schema", "conformance.rules", "conformance.tables", "conformance.fuzz",
                   "conformance.dump", "conformance.build", "conformance.axes"):
        assert "conformance.load" not in graph[module] and "conformance.reading" not in graph[module] or \
            module == "conformance.build", module


def test_rules_never_see_toml() -> None:
    graph = _graph()
    assert not graph["conformance.rules"] & {"conformance.reading", "conformance.lines", "conformance.load"}
    assert not graph["conformance.schema"] & {"conformance.reading", "conformance.lines", "conformance.load",
                                               "conformance.rules"}
