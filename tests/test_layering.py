"""The shape of the house, kept by a test: imports only point down the layers, nothing imports in a
circle, and each floor keeps to its own business (README, "How it is built").

Every import counts, including the lazy ones inside functions and those under TYPE_CHECKING: a cycle
there still means two modules that cannot be understood apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "memcli"

# Higher may import lower or equal, never higher. Within a layer, any direction (no cycles, below).
LAYERS: list[tuple[str, ...]] = [
    ("memcli.cli", "memcli.__main__"),
    # Another shell over the API, beside the CLI: the MCP server (`memcli mcp` starts it).
    ("memcli.mcp_server",),
    ("memcli.api",),
    ("memcli.services",),
    ("memcli.context",),
    ("memcli.store",),
    ("memcli.backends", "memcli.models", "memcli.prompts"),
    ("memcli.text", "memcli.importers", "memcli.config", "memcli.paths", "memcli.ui"),
    ("memcli.records", "memcli.errors", "memcli"),
]
# What the CLI may import besides itself: the documented API and what renders its results.
CLI_MAY_IMPORT = ("memcli.api", "memcli.records", "memcli.ui", "memcli.errors", "memcli.cli", "memcli.mcp_server")


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """Every module ``name`` imports (memcli's own resolved to a module, others by top-level name)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
    return {m for m in found if m != name}


GRAPH = {m: {i for i in _imports(m) if i in MODULES} for m in MODULES}
EXTERNAL = {m: {i.split(".")[0] for i in _imports(m) if not i.startswith("memcli")} for m in MODULES}


def _layer(name: str) -> int:
    if name == "memcli":  # the package itself: only __version__
        return 1
    for rank, prefixes in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes if p != "memcli"):
            return len(LAYERS) - rank
    raise AssertionError(f"{name} is in no layer: add it to LAYERS")


def test_the_layering_test_sees_the_whole_package() -> None:
    assert {"memcli.cli.app", "memcli.api", "memcli.store.catalog", "memcli.services.recall"} <= set(MODULES)
    assert "memcli.store.catalog" in GRAPH["memcli.store.core"]  # it does resolve memcli's own imports


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name: str) -> None:
    up = sorted(i for i in GRAPH[name] if _layer(i) > _layer(name))
    assert not up, f"{name} imports from a layer above it: {up}"


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components: any component of more than one module is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert cycles == []


def test_only_the_store_speaks_sql() -> None:
    speaking = sorted(m for m in MODULES if "sqlite3" in EXTERNAL[m] and not m.startswith("memcli.store"))
    assert speaking == []
    for name, path in MODULES.items():
        if name.startswith("memcli.services"):
            assert "execute(" not in path.read_text(encoding="utf-8"), f"{name} runs SQL: ask the store instead"


def test_the_store_knows_nothing_above_it() -> None:
    for name in MODULES:
        if name.startswith("memcli.store"):
            above = [i for i in GRAPH[name] if i.startswith(("memcli.services", "memcli.context", "memcli.api", "memcli.cli"))]
            assert not above, f"{name} imports {above}"


def test_the_catalog_does_not_know_server_mode() -> None:
    """Server mode listens to the catalog's transactions; the catalog only knows the listener interface."""
    for name in ("memcli.store.catalog", "memcli.store.schema", "memcli.store.keyword", "memcli.store.recording"):
        assert "memcli.store.replica" not in GRAPH[name]


def test_the_cli_uses_only_the_api() -> None:
    for name in MODULES:
        if name.startswith("memcli.cli"):
            other = sorted(i for i in GRAPH[name] if not any(i == p or i.startswith(p + ".") for p in CLI_MAY_IMPORT))
            assert other in ([], ["memcli"]), f"{name} imports {other}: go through memcli.api"


def test_the_mcp_server_uses_only_the_api() -> None:
    """Like the CLI, the MCP server is a shell: what it may do to the store is what the API offers."""
    other = sorted(i for i in GRAPH["memcli.mcp_server"] if i not in ("memcli", "memcli.api", "memcli.records", "memcli.errors"))
    assert other == [], other
    assert "rich" not in EXTERNAL["memcli.mcp_server"] and "typer" not in EXTERNAL["memcli.mcp_server"]  # stdout is protocol


def test_services_never_print_or_render() -> None:
    for name in MODULES:
        if name.startswith("memcli.services"):
            assert not {"rich", "typer"} & EXTERNAL[name], name
            assert "memcli.ui" not in GRAPH[name], name


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name: str) -> None:
    """A few hundred lines; a pure rule table (the time-expression rules) may be one longer file."""
    limit = 950 if name == "memcli.text.timequery" else 520
    n = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert n <= limit, f"{name} has {n} lines"
