"""The layers, read from the modules' own imports: the core (contract, dtypes, limits, batching,
loading) imports nothing from the codecs, and no two modules of the package import each other."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "omi_adapters"
CORE = ["contract", "dtypes", "types", "errors", "limits", "batching", "loading", "metadata"]


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The omi_adapters modules ``path`` imports when it is imported (top level, not in functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("omi_adapters"):
            found.add(node.module)
            for alias in node.names:  # from omi_adapters.codecs import oip_json
                candidate = f"{node.module}.{alias.name}"
                if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists():
                    found.add(candidate)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("omi_adapters"))
    return found


def _graph() -> dict[str, set[str]]:
    files = [p for p in PACKAGE.rglob("*.py") if "protos" not in p.parts]
    return {_module(p): _imports(p) - {_module(p)} for p in files}


def test_the_core_imports_nothing_from_the_codecs() -> None:
    graph = _graph()
    for name in CORE:
        module = f"omi_adapters.{name}"
        assert not {m for m in graph[module] if m.startswith("omi_adapters.codecs")}, (module, graph[module])


def test_the_package_has_no_import_cycle() -> None:
    graph = _graph()
    # The package's __init__ re-exports the contract: a dependency of everything, not a cycle.
    graph = {m: {d for d in deps if d != "omi_adapters"} for m, deps in graph.items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, "import cycle: " + " -> ".join([*visiting[visiting.index(module) :], module])
        visiting.append(module)
        for dependency in sorted(graph.get(module, ())):
            visit(dependency)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
