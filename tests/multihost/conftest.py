"""Fixtures for the multi-host test: five namespaced hosts, Redis on A, and a cluster per test.

``net`` (per module) builds the hosts and starts Redis on A, bound to A's address only and with a
password; the test process itself reaches it through a unix socket (a path on the shared
filesystem, so it needs no network and sees Redis whatever a test does to the links).
``cluster`` (per test, its own key prefix) starts a balancer on B and workers on C and D as real
``jb`` processes and configures the cluster from E with ``jb config set``.
"""

from __future__ import annotations

import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from jobbalancer.server import find_redis_server
from jobbalancer.views import job_events
from tests.helpers import wait_for
from tests.multihost.network import JB, Network, require_tools

REDIS_PORT = 6379
HEARTBEAT_TIMEOUT_S = 2.0
HEARTBEAT_S = 0.25
SLOTS = {"c": 4, "d": 2}
SUBMIT = """
import sys
from jobbalancer import Client
from jobbalancer.job import Options, Spec
url, prefix, n, seconds, ledger = sys.argv[1:]
command = (
    f'echo "$JB_JOB_ID $JB_ATTEMPT $JB_MH_HOST start" >> {ledger}; sleep {seconds}; '
    f'echo "$JB_JOB_ID $JB_ATTEMPT $JB_MH_HOST end" >> {ledger}; echo "ran on $JB_MH_HOST"'
)
client = Client(url, prefix)
for job in client.submit_many([(Spec.for_command(command), Options())] * int(n)):
    print(job.id)
"""
"""A small client run on E: submits N ledger jobs in one round trip and prints their ids."""


@dataclass
class Hosts:
    """The network, Redis on A and how to reach it: ``url`` from the hosts, ``observer`` from here."""

    net: Network
    password: str
    observer: redis.Redis

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.net.addr('a')}:{REDIS_PORT}/0"


def start_redis(net: Network, password: str) -> redis.Redis:
    """redis-server on A (bound to A's address and a unix socket); returns a client on the socket."""
    sock = net.tmp / "redis.sock"
    net.spawn("a", "redis", [
        find_redis_server(), "--port", str(REDIS_PORT), "--bind", net.addr("a"), "--unixsocket", str(sock),
        "--unixsocketperm", "700", "--requirepass", password, "--dir", str(net.tmp), "--save", "",
        "--appendonly", "no", "--daemonize", "no",
    ])  # fmt: skip
    observer = redis.Redis(unix_socket_path=str(sock), password=password, decode_responses=True, socket_timeout=5)

    def answers() -> bool:
        try:
            return bool(observer.ping())
        except (redis.ConnectionError, OSError):
            return False

    wait_for(answers, 15, what=f"redis-server on A: {net.log('redis', 'out')[-500:]}")
    return observer


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    require_tools()
    net = Network(tmp_path_factory.mktemp("mh"))
    try:
        net.build()
        password = secrets.token_hex(12)
        the_hosts = Hosts(net, password, start_redis(net, password))
        yield the_hosts
        the_hosts.observer.close()
    finally:
        net.close()


@dataclass
class Cluster:
    """A balancer on B and workers on C and D under one key prefix; jobs come from E."""

    hosts: Hosts
    prefix: str
    ledger: Path

    @property
    def net(self) -> Network:
        return self.hosts.net

    @property
    def r(self) -> redis.Redis:
        return self.hosts.observer

    def jb(
        self, host: str, *args: str, url: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``jb`` on ``host`` as a user there would."""
        return self.net.run(host, JB, "--redis", url or self.hosts.url, "--prefix", self.prefix, *args, timeout=timeout)

    def label(self, name: str) -> str:
        """A process's label (and log file name), unique to this test."""
        return f"{self.prefix}-{name}"

    def log(self, name: str, stream: str = "err") -> str:
        return self.net.log(self.label(name), stream)

    def spawn_jb(self, host: str, name: str, *args: str, url: str | None = None) -> subprocess.Popen[bytes]:
        argv = [str(JB), "--redis", url or self.hosts.url, "--prefix", self.prefix, *args]
        return self.net.spawn(host, self.label(name), argv, env={"JB_MH_HOST": host.upper()})

    def worker(self, host: str, url: str | None = None) -> subprocess.Popen[bytes]:
        """Start the worker named after ``host`` (C, D) there; wait with :meth:`wait_registered`."""
        return self.spawn_jb(
            host, host, "worker", "--name", host.upper(), "--concurrency", str(SLOTS[host]),
            "--heartbeat", str(HEARTBEAT_S), url=url,
        )  # fmt: skip

    def wait_registered(self, host: str, timeout: float = 20) -> None:
        name = host.upper()
        wait_for(lambda: self.r.zscore(f"{self.prefix}:workers", name), timeout, what=f"worker {name} registered")

    def submit(self, n: int, seconds: float) -> list[str]:
        """Submit ``n`` ledger jobs from E with a small Python client; their ids."""
        done = self.net.run(
            "e", JB.parent / "python", "-c", SUBMIT, self.hosts.url, self.prefix, str(n), str(seconds), str(self.ledger)
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    def record(self, job_id: str) -> dict[str, str]:
        return self.r.hgetall(f"{self.prefix}:job:{job_id}")

    def ledger_lines(self) -> list[tuple[str, str, str, str]]:
        """(job id, attempt, host, start|end) for every line the jobs wrote."""
        rows = [line.split() for line in self.ledger.read_text().splitlines() if line.strip()]
        return [(job, attempt, host, what) for job, attempt, host, what in rows]

    def events(self, job_id: str) -> list[dict[str, str]]:
        changes = job_events(self.r.xrange(f"{self.prefix}:events"))  # type: ignore[arg-type]
        return [change for _entry, change in changes if change["id"] == job_id]

    def wait_done(self, ids: list[str], timeout: float) -> dict[str, dict[str, str]]:
        def finished() -> dict[str, dict[str, str]] | None:
            records = {job_id: self.record(job_id) for job_id in ids}
            return records if all(r.get("status") == "succeeded" for r in records.values()) else None

        return wait_for(finished, timeout, interval=0.1, what=f"jobs {ids} to succeed")


@pytest.fixture
def cluster(hosts: Hosts) -> Iterator[Cluster]:
    the_cluster = Cluster(hosts, f"mh{uuid.uuid4().hex[:8]}", hosts.net.tmp / f"ledger-{uuid.uuid4().hex[:6]}")
    the_cluster.ledger.touch()
    try:
        done = the_cluster.jb("e", "config", "set", "heartbeat_timeout", str(HEARTBEAT_TIMEOUT_S))
        assert done.returncode == 0, done.stderr
        the_cluster.spawn_jb("b", "b", "balancer", "--name", "B")
        the_cluster.worker("c")
        the_cluster.worker("d")
        the_cluster.wait_registered("c")
        the_cluster.wait_registered("d")
        wait_for(lambda: the_cluster.r.get(f"{the_cluster.prefix}:leader"), 20, what="balancer B to lead")
        yield the_cluster
    finally:
        for host in ("c", "d"):
            hosts.net.heal(host)
            hosts.net.clear_netem(host)
        hosts.net.stop([label for label in list(hosts.net.procs) if label.startswith(the_cluster.prefix)])
