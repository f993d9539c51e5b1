"""Dramatiq: 2 processes × 8 threads (``dramatiq peer_dramatiq --processes 2 --threads 8``), Redis broker.

Dramatiq keeps every enqueued message in the hash ``dramatiq:<queue>.msgs`` until a worker acks
it, after the actor has run; done is that hash being empty. A failed message would be retried
(Dramatiq's default) and then dead-lettered to ``dramatiq:<queue>.XQ.msgs``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = "bench"
PROCESSES, THREADS = 2, 8

broker = RedisBroker(url=URL)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE)
def noop() -> bool:
    return True


@dramatiq.actor(queue_name=QUEUE)
def run_true() -> bool:
    subprocess.run(["true"], check=True)
    return True


class Peer:
    def __init__(self, url: str, variant: str) -> None:
        self.slots = PROCESSES * THREADS
        self.label = "Dramatiq {version}"
        self.setup = f"`dramatiq --processes {PROCESSES} --threads {THREADS}`, Redis broker"
        self.conn = broker.client
        self.messages = f"{broker.namespace}:{QUEUE}.msgs"
        self.dead = f"{broker.namespace}:{QUEUE}.XQ.msgs"

    def worker_commands(self, bin_dir: Path) -> list[list[str]]:
        return [[str(bin_dir / "dramatiq"), "peer_dramatiq", "--processes", str(PROCESSES), "--threads", str(THREADS)]]

    def reset(self) -> None:
        self.conn.delete(self.dead)

    def submit(self, kind: str, count: int) -> None:
        actor = noop if kind == "noop" else run_true
        for _ in range(count):
            actor.send()

    def finished(self, count: int) -> bool:
        return int(self.conn.hlen(self.messages)) == 0

    def failures(self) -> int:
        return int(self.conn.hlen(self.dead))
