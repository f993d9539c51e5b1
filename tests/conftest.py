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
from tests.chaos.harness import ChaosCluster
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
