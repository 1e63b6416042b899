"""The code keeps the shape the project chose (docs/architecture.md, "Service shape"): small
functions, apps that only assemble routers, services that never import each other."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MAX_FUNCTION_LINES = 60
SERVICES = ("ingest", "scoring", "orchestrator", "dispatch")


def modules() -> Iterator[tuple[Path, ast.Module]]:
    for folder in ("services", "schemas"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"))


def functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_no_function_is_longer_than_60_lines() -> None:
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} "
            f"({node.end_lineno - node.lineno + 1} lines)"  # type: ignore[operator]
            for path, tree in modules() for node in functions(tree)
            if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]  # type: ignore[operator]
    assert long == []


ROUTE_DECORATORS = frozenset({"get", "post", "put", "patch", "delete", "head", "options",
                              "api_route", "route", "websocket"})


def is_route(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute)
               and d.func.attr in ROUTE_DECORATORS for d in node.decorator_list)


def test_create_app_only_assembles_routers() -> None:
    """Routes live in router modules; a create_app defines no route functions of its own."""
    closures = [f"{path.relative_to(ROOT)}: route {inner.name} inside create_app"
                for path, tree in modules() for node in functions(tree)
                if node.name == "create_app"
                for inner in functions(node) if inner is not node and is_route(inner)]
    assert closures == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_never_imports_another(service: str) -> None:
    others = tuple(f"services.{other}" for other in SERVICES if other != service)
    found = [f"{path.relative_to(ROOT)}: {name}"
             for path in sorted((ROOT / "services" / service).rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Import | ast.ImportFrom)
             for name in ([node.module or ""] if isinstance(node, ast.ImportFrom)
                          else [alias.name for alias in node.names])
             if name.startswith(others)]
    assert found == []


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_the_same_shape(service: str) -> None:
    folder = ROOT / "services" / service
    missing = [part for part in ("domain", "adapters", "service_layer", "entrypoints",
                                 "bootstrap.py", "settings.py", "__main__.py")
               if not (folder / part).exists()]
    assert missing == []
