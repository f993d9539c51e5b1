"""Fixtures shared by every test directory.

``redis_url`` is a real redis-server the session starts on a free port in a temp dir; each test
gets its own key ``prefix`` and a client. The suite never touches a server it did not start.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobbalancer.server import EmbeddedRedis, ServerError
from tests.chaos.harness import LONG, ChaosCluster
from tests.chaos.observe import SUMMARIES
from tests.helpers import free_port

os.environ["JB_ALLOW_ROOT"] = "1"  # the suite runs as root in CI containers; one test checks the refusal


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), free_port())
    try:
        server.start()
    except ServerError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"cannot start redis-server: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[ChaosCluster]:
    """A cluster of real processes on its own Redis (tests/chaos/harness.py), closed after the test."""
    cluster = ChaosCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


# The chaos tests' summaries, printed at the end of the run. Here, not in tests/chaos/conftest.py:
# under pytest-xdist (``make test`` runs two processes) the controller loads only this conftest;
# each worker hands its lines over when it finishes, and the controller prints them all.
FROM_WORKERS: list[tuple[str, str]] = []


def pytest_sessionfinish(session: pytest.Session) -> None:
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["chaos_summaries"] = [(summary.name, summary.line()) for summary in SUMMARIES]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    FROM_WORKERS.extend(tuple(pair) for pair in getattr(node, "workeroutput", {}).get("chaos_summaries", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [(summary.name, summary.line()) for summary in SUMMARIES] + FROM_WORKERS
    if lines:
        terminalreporter.section(f"chaos summaries ({'long' if LONG else 'small'} run)")
        for name, line in lines:
            terminalreporter.write_line(f"{name}: {line}")
