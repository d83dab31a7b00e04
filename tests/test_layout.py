"""The layout of shared/ shows the architecture: imports flow one way, no cycles, statuses agree with SQL."""

from __future__ import annotations

import ast
from pathlib import Path

from shared.db import Database
from shared.schemas import JobStatus

ROOT = Path(__file__).resolve().parent.parent

#: Each layer may import only from its own layer and those below it (a lower number).
LAYERS: dict[str, int] = {
    "shared.settings": 0,
    "shared.errors": 0,
    "shared.logs": 0,
    "shared.metrics": 0,
    "shared.tracing": 0,
    "shared.timing": 0,
    "shared.db": 0,
    "shared.migrations": 3,  # applies sql/ and syncs the catalog: an operator's service
    "shared.auth": 0,
    "shared.http": 0,
    "shared.invoke": 0,  # asynchronous Lambda invocations (hand-offs, the webhook sender's wake-up)
    "shared.schemas": 0,
    "shared.limits": 0,
    "shared.api_keys": 0,
    "shared.ratelimit": 0,
    "shared.team_schemas": 0,
    "shared.records": 0,
    "shared.web": 0,
    "shared.media": 1,
    "shared.providers": 2,
    "shared.billing": 3,
    "shared.jobs": 3,
    "shared.operations": 3,  # the operator overview: reads jobs, the ledger and this process's metrics
    "shared.teams": 3,
    "shared.webhooks": 3,
    "functions": 4,
}


def layer(module: str) -> int | None:
    """The layer a module belongs to (by its longest listed prefix), or None for third-party modules."""
    best = None
    for prefix, rank in LAYERS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), rank)
    return None if best is None else best[1]


def module_name(path: Path) -> str:
    """The dotted module name of a source file."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in ("shared", "functions")}


def sources() -> dict[str, set[str]]:
    """Module -> the project modules it imports, for shared/ and functions/."""
    graph: dict[str, set[str]] = {}
    for top in ("shared", "functions"):
        for path in sorted((ROOT / top).rglob("*.py")):
            graph[module_name(path)] = imports(path)
    known = set(graph)
    return {m: {d for d in deps if d in known} for m, deps in graph.items()}


def test_imports_never_point_up_a_layer() -> None:
    """functions -> services (jobs, billing) -> providers -> media -> core: no import points back up."""
    upward = [
        f"{module} (layer {layer(module)}) imports {dep} (layer {layer(dep)})"
        for module, deps in sources().items()
        for dep in deps
        if (layer(module) or 0) < (layer(dep) or 0)
    ]
    assert upward == []


def test_providers_do_not_know_each_other_or_the_services() -> None:
    """A provider package imports only the provider contract, the catalog and lower layers: never another
    provider, the job service or billing."""
    crossing = []
    for module, deps in sources().items():
        parts = module.split(".")
        if parts[:2] != ["shared", "providers"] or len(parts) < 4:
            continue
        own = ".".join(parts[:3])
        for dep in deps:
            dep_parts = dep.split(".")
            shared_part = dep_parts[2] in ("base", "catalog", "registry") if len(dep_parts) >= 3 else True
            if dep_parts[:2] == ["shared", "providers"] and not shared_part and not dep.startswith(own):
                crossing.append(f"{module} imports {dep}")
    assert crossing == []


def test_no_import_cycles() -> None:
    """The module import graph of shared/ and functions/ (lazy imports included) has no cycle."""
    graph = sources()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_job_status_enum_matches_the_database(db: Database) -> None:
    """JobStatus lists exactly the values of the database's job_status enum, in order."""
    with db.transaction() as tx:
        rows = tx.query("select unnest(enum_range(null::job_status))::text")
    assert [r[0] for r in rows] == [s.value for s in JobStatus]
