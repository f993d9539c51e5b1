"""A real cluster per test: balancer and workers as ``jb`` subprocesses on the session's Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from jobbalancer import Client
from tests.helpers import REPO, stop_processes, wait_for

FAST = {"heartbeat_timeout": "2", "kill_grace": "0.5"}


@dataclass
class Cluster:
    url: str
    prefix: str
    tmp: Path
    client: Client
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: list[IO[bytes]] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "jobbalancer", "--redis", self.url, "--prefix", self.prefix, *args]

    def spawn(self, label: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{label}.log", "ab")  # noqa: SIM115 - closed in stop()
        self.logs.append(log)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(self.argv(*args), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.procs[label] = proc
        return proc

    def worker(self, name: str, concurrency: int = 2, *extra: str) -> subprocess.Popen[bytes]:
        proc = self.spawn(
            name, "worker", "--name", name, "--concurrency", str(concurrency), "--path", "workers", *extra
        )
        wait_for(lambda: self.client.redis.zscore(f"{self.prefix}:workers", name), 15, what=f"worker {name} registered")
        return proc

    def balancer(self, name: str = "b1", *extra: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, "balancer", "--name", name, *extra)

    def log(self, label: str) -> str:
        return (self.tmp / f"{label}.log").read_text(errors="replace")

    def jb(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the CLI as a user would and capture what it prints."""
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO)

    def stop(self) -> None:
        stop_processes(self.procs.values())
        for log in self.logs:
            log.close()


@pytest.fixture
def cluster(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Cluster]:
    client = Client(redis_url, prefix)
    client.redis.hset(f"{prefix}:config", mapping=FAST)
    the_cluster = Cluster(redis_url, prefix, tmp_path, client)
    yield the_cluster
    the_cluster.stop()
    client.close()


@pytest.fixture
def running(cluster: Cluster) -> Cluster:
    """One balancer and two workers (2 slots each), all registered."""
    cluster.balancer()
    cluster.worker("w1")
    cluster.worker("w2")
    return cluster
