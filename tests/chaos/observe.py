"""What a chaos run observes: faults, ledger lines, the event log, job processes, and the summary."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil
import redis

from jobbalancer.views import job_events


@dataclass(frozen=True)
class Fault:
    at: float  # epoch seconds (the test host's clock, which is Redis's here: same machine)
    kind: str
    target: str


@dataclass(frozen=True)
class Execution:
    job_id: str
    attempt: int
    pid: int


@dataclass(frozen=True)
class Event:
    at: float
    job_id: str
    status: str
    worker: str


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Summary:
    """What one chaos run measured; ``line()`` is the summary line the issue asks for."""

    name: str
    jobs: int
    lost: int
    duplicates: int
    reclaims_s: list[float]
    takeovers_s: list[float]
    orphans: int
    zombies: int

    def line(self) -> str:
        takeover = f"{max(self.takeovers_s):.2f}" if self.takeovers_s else "-"
        return (
            f"jobs={self.jobs} lost={self.lost} duplicates={self.duplicates} "
            f"reclaim_p50_s={percentile(self.reclaims_s, 50):.2f} reclaim_p99_s={percentile(self.reclaims_s, 99):.2f} "
            f"takeover_s={takeover} orphans={self.orphans} zombies={self.zombies}"
        )


SUMMARIES: list[Summary] = []
"""Every summary of this session, printed at its end by ``conftest.pytest_terminal_summary``."""


class EventLog:
    """Follows ``<p>:events`` on a thread, through Redis outages."""

    def __init__(self, url: str, key: str) -> None:
        self._client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2, socket_connect_timeout=1)
        self._key = key
        self._last = "0"
        self._stop = threading.Event()
        self.events: list[Event] = []
        self._thread = threading.Thread(target=self._follow, name="chaos-events", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                reply: Any = self._client.xread({self._key: self._last}, block=200, count=1000)
            except (redis.RedisError, OSError):
                self._stop.wait(0.1)
                continue
            for _key, entries in reply or []:
                self._last = entries[-1][0]
                for entry, change in job_events(entries):
                    at = int(entry.split("-")[0]) / 1000
                    self.events.append(Event(at, change["id"], change["status"], change["worker"]))

    def caught_up(self) -> bool:
        newest: Any = self._client.xrevrange(self._key, count=1)
        return not newest or newest[0][0] == self._last

    def of(self, job_id: str) -> list[Event]:
        return [e for e in list(self.events) if e.job_id == job_id]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._client.close()


def chaos_processes(token: str) -> Iterator[tuple[psutil.Process, dict[str, str]]]:
    """Every live (non-zombie) process whose environment carries ``JB_CHAOS=token``."""
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            env = proc.environ()
        except psutil.Error:
            continue
        if env.get("JB_CHAOS") == token:
            yield proc, env
