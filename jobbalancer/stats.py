"""Cluster statistics kept in Redis, so every dashboard (and every restart of one) sees the same.

Two keys (see :mod:`jobbalancer.keys`):

- ``<p>:stats``, a hash of counters the Lua scripts write where things happen
  (``stats_finished`` and ``stats_count`` in ``lua/_lib.lua``): per finished job
  ``<queue>|<status>|<le>`` (its run time's duration bucket, not cumulative; ``nr`` when it never
  ran) and ``<queue>|<status>|ms`` (the sum of run times); ``watchdog|<by>`` (``worker``: its
  worker's watchdog killed the job; ``balancer``: the overdue backstop did) and
  ``reclaimed|<outcome>`` (jobs taken back from a lost worker: ``requeued``, ``failed``,
  ``timed_out``, ``cancelled``). The counters only grow; ``/metrics`` exposes them.
- ``<p>:stats:history``, a capped stream the active balancer appends to every :data:`SAMPLE_MS`
  (:class:`Sampler`): the finished-jobs total and the waiting depth at that moment. The
  dashboard's charts read it through :func:`history`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from jobbalancer.keys import Keys

# Upper bounds (seconds) of the run time buckets; lua/_lib.lua's DURATION_BUCKETS, in the same text.
DURATION_BUCKETS = ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "300", "900", "3600", "14400")
NEVER_RAN = "nr"
RECLAIM_OUTCOMES = ("requeued", "failed", "timed_out", "cancelled")
WATCHDOG_BY = ("worker", "balancer")
SAMPLE_MS = 5000
HISTORY_SAMPLES = 8640  # 12 hours of samples
HISTORY_MINUTES = HISTORY_SAMPLES * SAMPLE_MS // 60_000


@dataclass
class Durations:
    """Run times of the jobs of one queue that ended with one status."""

    buckets: dict[str, int] = field(default_factory=dict)  # upper bound ("+Inf" last) -> jobs, not cumulative
    sum_s: float = 0.0

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, jobs at or below it) for every bound, ``inf`` last, as Prometheus wants them."""
        out, total = [], 0
        for bound in (*DURATION_BUCKETS, "+Inf"):
            total += self.buckets.get(bound, 0)
            out.append((float(bound), total))
        return out

    @property
    def count(self) -> int:
        return sum(self.buckets.values())


@dataclass
class Stats:
    """The counters of ``<p>:stats``, parsed."""

    finished: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, status) -> jobs, ran or not
    durations: dict[tuple[str, str], Durations] = field(default_factory=dict)  # of the jobs that ran
    reclaimed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RECLAIM_OUTCOMES, 0))
    watchdog: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WATCHDOG_BY, 0))

    @property
    def total_finished(self) -> int:
        return sum(self.finished.values())


def parse_stats(raw: Mapping[str, str]) -> Stats:
    """:class:`Stats` from the hash's fields; a field it does not know (or a bad number) is skipped."""
    stats = Stats()
    bounds = {*DURATION_BUCKETS, "+Inf"}
    for name, text in raw.items():
        try:
            value = int(text)
        except ValueError:
            continue
        parts = name.split("|")
        if len(parts) == 2 and parts[0] == "reclaimed":
            stats.reclaimed[parts[1]] = value
        elif len(parts) == 2 and parts[0] == "watchdog":
            stats.watchdog[parts[1]] = value
        elif len(parts) == 3:
            key, what = (parts[0], parts[1]), parts[2]
            if what == "ms":
                stats.durations.setdefault(key, Durations()).sum_s = value / 1000
            elif what in bounds or what == NEVER_RAN:
                stats.finished[key] = stats.finished.get(key, 0) + value
                if what != NEVER_RAN:
                    stats.durations.setdefault(key, Durations()).buckets[what] = value
    return stats


def read_stats(conn: redis.Redis, keys: Keys) -> Stats:
    """The cluster's counters now (``conn`` decodes replies)."""
    raw: Any = conn.hgetall(keys.stats)
    return parse_stats(raw)


class Sampler:
    """Appends a history sample at most every ``every_ms`` (Redis clock); the active balancer calls it each pass."""

    def __init__(self, every_ms: int = SAMPLE_MS) -> None:
        self.every_ms = every_ms
        self._last_ms: int | None = None

    def step(self, conn: redis.Redis, keys: Keys, now_ms: int) -> bool:
        """Take a sample if one is due; returns whether it did."""
        if self._last_ms is not None and 0 <= now_ms - self._last_ms < self.every_ms:
            return False
        self._last_ms = now_ms
        pipe = conn.pipeline(transaction=False)
        pipe.hgetall(keys.stats)
        pipe.smembers(keys.waitq)
        raw, queues = pipe.execute()
        pipe = conn.pipeline(transaction=False)
        for queue in sorted(queues):
            pipe.zcard(keys.waiting(queue))
        waiting = sum(pipe.execute()) if queues else 0
        sample = {"finished": parse_stats(raw).total_finished, "waiting": waiting}
        conn.xadd(keys.history, sample, maxlen=HISTORY_SAMPLES, approximate=True)  # type: ignore[arg-type]
        return True


@dataclass(frozen=True)
class Point:
    """One history sample: when (epoch s), jobs finished since the sample before (None: no sample before), waiting."""

    at: float
    finished: int | None
    waiting: int


def history(conn: redis.Redis, keys: Keys, minutes: float) -> tuple[float, list[Point]]:
    """Redis's time now (epoch s) and the samples of the last ``minutes``, oldest first."""
    reply: Any = conn.time()
    now_ms = int(reply[0]) * 1000 + int(reply[1]) // 1000
    start_ms = max(1, now_ms - math.ceil(minutes * 60_000))
    pipe = conn.pipeline(transaction=False)
    pipe.xrevrange(keys.history, max=str(start_ms - 1), min="-", count=1)  # the sample before, for the first diff
    pipe.xrange(keys.history, min=str(start_ms), max="+")
    before, inside = pipe.execute()
    previous: int | None = _field(before[0][1], "finished") if before else None
    points = []
    for entry_id, fields in inside:
        total = _field(fields, "finished")
        finished = None if previous is None else total - previous if total >= previous else total  # reset: count anew
        points.append(Point(int(str(entry_id).split("-")[0]) / 1000, finished, _field(fields, "waiting")))
        previous = total
    return now_ms / 1000, points


def _field(fields: Mapping[str, str], name: str) -> int:
    try:
        return int(fields.get(name, 0))
    except ValueError:
        return 0
