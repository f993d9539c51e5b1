"""A simulated cluster for balancer tests: workers as the balancer sees them, on a real Redis.

A simulated worker is what the balancer sees of a real one: heartbeats through ``heartbeat.lua``
(slots, queues, state, cpu) and a stream it reads and settles with ``start.lua``/``complete.lua``.
The balancer runs in a thread; every wait is on an observable condition with a deadline.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from jobbalancer.balancer import Balancer
from jobbalancer.job import Record, Status
from jobbalancer.keys import Keys
from jobbalancer.scripts import Scripts
from tests.helpers import wait_for

LEASE_MS = 600  # standbys retry every 200 ms, so takeovers stay quick


@dataclass
class Sim:
    """A simulated worker: heartbeats, and jobs settled by hand."""

    r: redis.Redis
    scripts: Scripts
    keys: Keys
    name: str
    slots: int = 1
    queues: Sequence[str] = ("default",)
    cpu: float = 0.0
    state: str = "running"
    alive: bool = True

    def beat(self) -> None:
        fields = {"slots": self.slots, "queues": ",".join(self.queues), "state": self.state, "cpu": self.cpu}
        flat = [x for pair in fields.items() for x in pair]
        self.scripts.heartbeat(self.keys.prefix, self.name, 60_000, *flat, "mem", 1.0, "load1", 0.1)

    def entries(self) -> list[tuple[str, dict[str, str]]]:
        return self.r.xrange(self.keys.worker_jobs(self.name))  # type: ignore[return-value]

    def outstanding(self) -> int:
        return int(self.r.xlen(self.keys.worker_jobs(self.name)))  # type: ignore[arg-type]

    def job_ids(self) -> list[str]:
        return [fields["id"] for _, fields in self.entries()]

    def _entry(self, job_id: str) -> tuple[str, dict[str, str]]:
        return next((e, f) for e, f in self.entries() if f["id"] == job_id)

    def start(self, job_id: str) -> None:
        entry, fields = self._entry(job_id)
        assert self.scripts.start(self.keys.prefix, self.name, job_id, fields["attempt"], entry) == 1

    def finish(self, job_id: str) -> None:
        """Run the job to success: start it, then complete it."""
        self.start(job_id)
        entry, fields = self._entry(job_id)
        outcome = self.scripts.complete(
            self.keys.prefix, self.name, job_id, fields["attempt"], entry, "succeeded", "0", "", "", "", ""
        )
        assert outcome == 1


@dataclass
class Cluster:
    url: str
    r: redis.Redis
    keys: Keys
    scripts: Scripts
    sims: list[Sim] = field(default_factory=list)
    running: list[tuple[Balancer, threading.Thread]] = field(default_factory=list)
    heart_stop: threading.Event = field(default_factory=threading.Event)

    def balancer(self, url: str | None = None, **kwargs: Any) -> Balancer:
        kwargs.setdefault("lease_ms", LEASE_MS)
        balancer = Balancer(url or self.url, self.keys.prefix, **kwargs)
        thread = threading.Thread(target=balancer.run, name=f"balancer-{balancer.name}", daemon=True)
        thread.start()
        self.running.append((balancer, thread))
        return balancer

    def leader(self, balancer: Balancer) -> Balancer:
        wait_for(lambda: balancer.is_leader, what=f"{balancer.name} to lead")
        return balancer

    def worker(self, name: str, **kwargs: Any) -> Sim:
        sim = Sim(self.r, self.scripts, self.keys, name, **kwargs)
        sim.beat()
        self.sims.append(sim)
        return sim

    def heartbeats(self) -> None:
        while not self.heart_stop.wait(0.1):
            for sim in list(self.sims):
                if sim.alive:
                    sim.beat()

    def submit(
        self, job_id: str, *, queue: str = "default", priority: int = 0, realtime: bool = False, watchdog: str = ""
    ) -> None:
        spec = json.dumps({"command": f"echo {job_id}"})
        created = self.scripts.submit(
            self.keys.prefix, job_id, "command", spec, queue, str(priority), "0", watchdog, "1" if realtime else "0", ""
        )
        assert created == [1]

    def record(self, job_id: str) -> Record:
        return Record.from_hash(job_id, self.r.hgetall(self.keys.job(job_id)))  # type: ignore[arg-type]

    def placed_on(self, job_id: str) -> str | None:
        record = self.record(job_id)
        return record.worker if record.status in (Status.ASSIGNED, Status.RUNNING) else None

    def waiting(self, queue: str = "default") -> int:
        return int(self.r.zcard(self.keys.waiting(queue)))  # type: ignore[arg-type]

    def close(self) -> None:
        self.heart_stop.set()
        for balancer, thread in self.running:
            balancer.stop()
            thread.join(10)
            assert not thread.is_alive(), f"balancer {balancer.name} did not stop"


def running_cluster(redis_url: str, prefix: str, r: redis.Redis) -> Iterator[Cluster]:
    """A simulated cluster with its heartbeat thread, closed after the test (the fixtures' body)."""
    c = Cluster(redis_url, r, Keys(prefix), Scripts(r))
    heart = threading.Thread(target=c.heartbeats, name="sim-heartbeats", daemon=True)
    heart.start()
    try:
        yield c
    finally:
        c.close()
        heart.join(5)
