"""The code keeps its shape: one recipe saves a run, nothing reads the old untyped run dict, no
module borrows another module's private names, and no two modules import each other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import imgcluster

SRC = Path(imgcluster.__file__).parent

# Private names still borrowed across modules (none left; a new one must be made public instead).
PENDING: set[tuple[str, str]] = set()


def _sources() -> dict[str, str]:
    return {str(p.relative_to(SRC)): p.read_text(encoding="utf-8") for p in sorted(SRC.rglob("*.py"))}


def test_only_the_run_recipe_saves_a_run() -> None:
    callers = [name for name, text in _sources().items() if re.search(r"\.save_run\(", text)]
    assert callers == ["run/save.py"]


def test_no_code_reads_a_run_as_an_untyped_dict() -> None:
    readers = [name for name, text in _sources().items()
               if re.search(r"\.info\[|\.info\.get\(|record\.info\b", text)]
    assert readers == []


def test_no_module_imports_another_modules_private_names() -> None:
    borrowed = set()
    bench = SRC.parents[1] / "bench"
    scripts = {f"bench/{p.name}": p.read_text(encoding="utf-8") for p in sorted(bench.glob("*.py"))} if bench.is_dir() else {}
    for name, text in {**_sources(), **scripts}.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                borrowed |= {(name, a.name) for a in node.names if a.name.startswith("_") and not a.name.startswith("__")}
    assert borrowed <= PENDING, sorted(borrowed - PENDING)


def _module_name(path: str) -> str:
    parts = ["imgcluster", *Path(path).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports_at_load(path: str, text: str, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports when it loads: top-level imports only (an import inside
    a function runs later and cannot close a cycle at load), ``from . import x`` counted as module
    ``x`` when ``x`` is one, else as the package."""
    package = _module_name(path) if path.endswith("__init__.py") else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.parse(text).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
    return found & modules


def test_no_import_cycles() -> None:
    sources = _sources()
    modules = {_module_name(path) for path in sources}
    graph = {_module_name(path): _imports_at_load(path, text, modules) for path, text in sources.items()}
    # A package's __init__ importing its own modules (to gather their names) is not a cycle unless one
    # of them imports the package back: edges from an __init__ into its package are left out.
    cycles = []
    for module, targets in graph.items():
        for target in targets:
            if target != module and module in _reachable(graph, target) and not _is_reexport(module, target):
                cycles.append((module, target))
    assert cycles == [], sorted(cycles)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), set()) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def _is_reexport(module: str, target: str) -> bool:
    """A package's __init__ importing its own module (or a module of a subpackage) to re-export it."""
    return target.startswith(module + ".")


def test_faiss_is_imported_only_by_the_neighbours_module() -> None:
    importers = set()
    for name, text in _sources().items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                found = any(a.name.split(".")[0] == "faiss" for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                found = not node.level and (node.module or "").split(".")[0] == "faiss"
            else:
                continue
            if found:
                importers.add(name)
    assert importers == {"neighbours.py"}
