"""Session-wide real infrastructure: one Kafka broker and one PostgreSQL cluster per test run,
started by the project's own scripts (deploy/local/stack.py) on free loopback ports and torn
down after. Set KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL to use existing servers instead.

Tests isolate themselves: unique topic prefixes, consumer groups and database schemas."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

import stack  # noqa: E402
import tools  # noqa: E402

# needs kube-apiserver, built once from the Go module proxy (minutes on a fresh machine)
KUBE_TESTS = "test_chart_install.py"
BROWSER_TESTS = "test_browser_clients.py"  # needs Chromium and the npm browser libraries
_background: list[subprocess.Popen[bytes]] = []
LOG_TAIL_BYTES = 6000


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts or "e2e" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test shows the end of each child-process log (`*.log`) in its `tmp_path`, and
    the last of our own warnings in it: the worker a test ran is gone with its temporary folder
    by the time anybody reads a CI run."""
    outcome = yield
    report = outcome.get_result()
    folder = getattr(item, "funcargs", {}).get("tmp_path")
    if report.when == "teardown" or not report.failed or not isinstance(folder, Path):
        return
    for log in sorted(folder.rglob("*.log")):
        text = log.read_bytes().decode(errors="replace")
        report.sections.append((f"log {log.relative_to(folder)} (last bytes)",
                                text[-LOG_TAIL_BYTES:]))
        # our own warnings (a stall report, a dead letter) even when faust's lines bury them
        ours = [line for line in text.splitlines()
                if "services." in line and ("WARNING" in line or "ERROR" in line)]
        if ours:
            report.sections.append((f"log {log.relative_to(folder)} (our warnings, last 20)",
                                    "\n".join(ours[-20:])))


@pytest.hookimpl(trylast=True)  # after -m / -k deselected: `make test-unit` builds nothing
def pytest_collection_finish(session: pytest.Session) -> None:
    kube = [item for item in session.items if item.path.name == KUBE_TESTS]
    if kube:
        session.items[:] = [i for i in session.items if i.path.name != KUBE_TESTS] + kube
        if not tools.kube_apiserver_built():
            _prebuild("kube-apiserver", "etcd")
    if any(item.path.name == BROWSER_TESTS for item in session.items) \
            and shutil.which("chromium") is None:
        _prebuild("chromium", "analytics-next", "rudderstack")


def _prebuild(*names: str) -> None:
    """Start a one-time install or build of tools (deploy/local/tools.py) now, at low priority,
    so that it overlaps the rest of the suite: the kube-apiserver build (minutes of CPU; the
    chart install tests run last), Chromium and the browser libraries. The tests that need them
    wait for it (tools.py works under a lock, so nothing is built twice); a failure is retried,
    and reported, by the test."""
    tools.TOOLS.mkdir(parents=True, exist_ok=True)
    with open(tools.TOOLS / f"{names[0]}-build.log", "ab") as out:
        _background.append(subprocess.Popen(
            ["nice", "-n", "19", sys.executable, str(ROOT / "deploy" / "local" / "tools.py"),
             *names], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True))


def pytest_sessionfinish() -> None:
    """A pre-build still running when the session ends (tests deselected or stopped early) is
    stopped with its go processes (Go's build cache keeps what it compiled); an install is
    waited for, never cut off in the middle of apt-get."""
    for proc in _background:
        # a build is stopped (Go's cache keeps its work); an install (apt-get) is let finish
        if proc.poll() is None and "kube-apiserver" in proc.args:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The root logger's handlers and level as they were, after a test that configures
    logging (`configure_logging`)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)


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
