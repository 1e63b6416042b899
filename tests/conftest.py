"""Session-wide real infrastructure: one Kafka broker and one PostgreSQL cluster per test run,
started by the project's own scripts (deploy/local/stack.py) on free loopback ports and torn
down after. Set KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL to use existing servers instead.

Tests isolate themselves: unique topic prefixes, consumer groups and database schemas."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

import stack  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts or "e2e" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def infra_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("infra")


@pytest.fixture(scope="session")
def kafka_bootstrap(infra_dir: Path) -> Iterator[str]:
    """Bootstrap servers of the session's broker."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = stack.Kafka(home=infra_dir / "kafka", port=stack.free_port(),
                         libs=stack.kafka_libs())
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def database_url(infra_dir: Path) -> Iterator[str]:
    """SQLAlchemy URL (asyncpg driver) of the session's PostgreSQL database."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    pg = stack.Postgres(home=infra_dir / "postgres", port=stack.free_port())
    pg.start()
    try:
        yield pg.url
    finally:
        pg.destroy()
