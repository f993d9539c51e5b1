"""Submitting jobs continuously from a thread, and sorting what became of every accepted one afterwards."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from jobbalancer import Client
from jobbalancer.errors import NotReplicated
from jobbalancer.job import TERMINAL


@dataclass
class Submitted:
    """One submit: its job id (None if refused), the phase when it started, and how it ended."""

    job_id: str | None
    phase: str
    outcome: str  # accepted | unconfirmed (NotReplicated) | refused (any other error)
    at: float


@dataclass
class Feed:
    """Submits ``true`` jobs one by one through ``client`` until stopped; ``phase`` tags each submit."""

    client: Client
    phase: str = "healthy"
    pace_s: float = 0.02
    log: list[Submitted] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Feed:
        self._thread = threading.Thread(target=self._run, name="feed", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            phase = self.phase  # the phase when the submit starts: a later cut cannot concern it
            try:
                job_id, outcome = self.client.submit("true").id, "accepted"
            except NotReplicated as exc:
                job_id, outcome = exc.job_ids[0], "unconfirmed"
            except Exception:  # noqa: BLE001 - during a failover any Redis error is a refused submit
                job_id, outcome = None, "refused"
            self.log.append(Submitted(job_id, phase, outcome, time.monotonic()))
            self._stop.wait(self.pace_s)  # paces the feed; decides nothing

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.client.close()

    def count(self, phase: str, outcome: str) -> int:
        return sum(1 for s in list(self.log) if s.phase == phase and s.outcome == outcome)

    def tally(self) -> dict[tuple[str, str], int]:
        """How many submits ended how, by phase: for messages."""
        return dict(Counter((s.phase, s.outcome) for s in list(self.log)))

    def first_accepted_after(self, t: float) -> float | None:
        return next((s.at for s in list(self.log) if s.outcome == "accepted" and s.at > t), None)

    def ids(self, outcome: str, phase: str | None = None) -> list[str]:
        return [s.job_id for s in self.log if s.job_id and s.outcome == outcome and phase in (None, s.phase)]


def fates(client: Client, job_ids: list[str]) -> Counter[str]:
    """Each job's fate on the current primary: its final status, ``lost`` (no record) or ``stuck``."""
    pipe = client.redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(client.keys.job(job_id), "status")
    statuses: list[Any] = pipe.execute()
    terminal = {status.value for status in TERMINAL}
    return Counter("lost" if status is None else status if status in terminal else "stuck" for status in statuses)
