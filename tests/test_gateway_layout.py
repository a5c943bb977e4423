"""The gateway's folder as ../shared/ARCHITECTURE.md lays it out ("The
gateway's store and its processes"): the store at the bottom, importing no
other gateway module (tests/test_store.py); the ingest wing above it, whose
verifier processes never load the writer; no module of the gateway imports
one that imports it back, even from inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def gateway_imports() -> dict[str, set[str]]:
    """module -> the gateway modules it imports, at the top or in a function."""
    modules = {module_name(p): p for p in (ROOT / "gateway").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
                targets = subs or [node.module]  # `from pkg import sub` imports the submodule
            else:
                continue
            # a submodule importing its own package's other parts is not a circle of modules
            found |= {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
        graph[name] = found
    return graph


def test_no_gateway_modules_import_each_other_round_a_circle():
    graph = gateway_imports()
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


def test_a_verifier_process_loads_neither_the_writer_nor_the_followers():
    graph = gateway_imports()
    reach, todo = set(), ["gateway.ingest.verifier"]
    while todo:
        for nxt in graph[todo.pop()] - reach:
            reach.add(nxt)
            todo.append(nxt)
    assert not reach & {"gateway.ingest.writer", "gateway.ingest.pipeline", "gateway.ingest.follow"}
