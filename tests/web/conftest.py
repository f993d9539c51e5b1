"""Fixtures for the dashboard tests: the app in-process (TestClient) and served by uvicorn on a port.

The e2e ``cluster``/``running`` fixtures (real ``jb balancer``/``jb worker`` subprocesses) are
re-exported from tests/e2e/conftest.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2
import pytest
import uvicorn
from fastapi.testclient import TestClient

from jobbalancer import Client
from jobbalancer.web import create_app
from tests.e2e.conftest import Cluster, cluster, running  # noqa: F401 - fixtures, re-exported
from tests.helpers import free_port, wait_for

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def jb(redis_url: str, prefix: str) -> Iterator[Client]:
    """A library client on the test's prefix, to arrange and check what the API did."""
    client = Client(redis_url, prefix)
    yield client
    client.close()


@pytest.fixture
def api(redis_url: str, prefix: str) -> Iterator[TestClient]:
    """The app in-process, answering to Host ``testserver``, with the token sent on every request."""
    app = create_app(url=redis_url, prefix=prefix, token=TOKEN, hosts={"testserver", "127.0.0.1", "localhost"})
    with TestClient(app, headers=AUTH) as client:
        yield client


@dataclass
class Live:
    """The app served by uvicorn on a free loopback port."""

    url: str
    server: uvicorn.Server
    client: httpx2.Client


def serve(app: object) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, what="uvicorn started")
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def live(redis_url: str, prefix: str) -> Iterator[Live]:
    server, thread, url = serve(create_app(url=redis_url, prefix=prefix, token=TOKEN))
    with httpx2.Client(base_url=url, headers=AUTH, timeout=30) as client:
        yield Live(url, server, client)
    server.should_exit = True
    thread.join(15)


@pytest.fixture
def live_cluster(live: Live, running: Cluster) -> tuple[Live, Cluster]:  # noqa: F811 - the fixture
    """A served dashboard in front of one balancer and two workers (w1, w2; 2 slots each)."""
    return live, running
