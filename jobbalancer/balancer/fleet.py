"""The leader's picture of the live workers, kept current at a cost that follows changes, not fleet size.

Each pass looks once, in one MULTI/EXEC (atomic, so what is counted and what is cleared agree):
Redis's clock, the queues with waiting jobs, the tick flag cleared, ``<p>:freed`` read and
cleared (the entries each worker's stream lost since the last look: every script that removes an
entry counts it there), the workers that beat since the last look, and the config hash when it
is due. Only the workers that beat get their facts re-read (their heartbeat rewrote them), in a
second round trip; a worker new to the leader has its stream length read there too, atomically
with dropping its stale freed count. What the leader places it adds itself (``placed``).

Prefetch follows each worker's pace: a worker is given, beyond its free slots, about what it
finishes in ``PREFETCH_HORIZON_S`` (its ``jobs_done`` counter, read with each heartbeat), at
least ``PREFETCH_FLOOR`` and at most the ``prefetch`` setting. Short jobs then come in batches
its slots take together, while a job that takes seconds never waits in a busy worker's stream
behind more than a couple of others (unfair prefetch), nor does a reclaimed one.

Every few seconds (and at the start of a term) the look is full: every registered worker and its
stream length, in the same MULTI as the freed clear. That also corrects anything done to a stream
by hand, and drops workers that left without the leader noticing (a worker that left is noticed
at once when dispatch refuses a job for it: ``gone``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from jobbalancer import lane
from jobbalancer.balancer.plan import WORKER_FIELDS, worker_view
from jobbalancer.balancer.policies import WorkerView
from jobbalancer.keys import Keys

FULL_EVERY_S = 5.0
PREFETCH_HORIZON_S = 0.05
PREFETCH_FLOOR = 2


def paced_prefetch(rate: float, setting: int) -> int:
    """Jobs to give a worker beyond its free slots: what it finishes in ``PREFETCH_HORIZON_S``.

    Args:
        rate: jobs per second the worker finished between its last two heartbeats.
        setting: the ``prefetch`` setting: the most it may get (0 keeps placement strict).
    """
    return min(setting, max(PREFETCH_FLOOR, math.ceil(rate * PREFETCH_HORIZON_S)))


@dataclass(frozen=True)
class Look:
    """What one pass saw: Redis's clock (ms), the queues with waiting jobs, the config if due, and
    the reply to the command ``look(first=...)`` queued ahead of the look (None without one)."""

    now_ms: int
    waitq: list[str]
    config: Mapping[str, str] | None
    first: Any = None


class Fleet:
    """The live workers as the leader knows them between passes.

    Args:
        keys: the cluster's keys.
    """

    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next look is full (a new term, or after an outage)."""
        self._facts: dict[str, Sequence[str | None]] = {}
        self._outstanding: dict[str, int] = {}
        self._beats: dict[str, float] = {}
        self._done: dict[str, tuple[float, int]] = {}  # heartbeat (Redis ms) and jobs_done it came with
        self._paced: dict[str, float] = {}  # jobs per second, between the last two heartbeats
        self._views: dict[str, WorkerView] = {}
        self._built_from: dict[str, Sequence[str | None]] = {}  # the facts each view was built from
        self._dirty: set[str] = set()
        self._limits = (0, 0)  # (max_jobs_per_worker, prefetch) the views were built with
        self._since_ms = 0
        self._full_due = 0.0

    def look(
        self,
        client: redis.Redis,
        config_due: bool,
        timeout_s: float,
        first: lane.Command | None = None,
        may_be_full: bool = True,
        wait: bool = False,
    ) -> Look:
        """Bring the picture up to date; ``timeout_s`` is the heartbeat timeout (older beats are dead).

        ``first`` may be one command sent with the look, its reply coming first (the loop's inbox
        read): one write for both. ``wait`` says it blocks, so it goes ahead of the look's MULTI,
        which Redis then runs once the read returns; else it is part of the MULTI. With ``may_be_full`` False the look
        is not full even when one is due (the loop's look ahead of a dispatch still in flight,
        which stream lengths would not include yet).
        """
        full = may_be_full and self.full_due
        known = list(self._facts)
        keys = self._keys
        commands: list[lane.Command] = [
            ("TIME",),
            ("SMEMBERS", keys.waitq),
            ("DEL", keys.tick),  # this pass sees every freed slot so far: the next one may tick again
            ("HGETALL", keys.freed),
            ("DEL", keys.freed),
        ]
        if full:
            commands.append(("ZRANGE", keys.workers, 0, -1, "WITHSCORES"))
            commands += [("XLEN", keys.worker_jobs(name)) for name in known]
        else:
            commands.append(("ZRANGEBYSCORE", keys.workers, self._since_ms, "+inf", "WITHSCORES"))
        if config_due:
            commands.append(("HGETALL", keys.config))
        if first is not None and wait:
            replies = lane.transaction(client, commands, ahead=first)
        else:
            replies = lane.transaction(client, [*([first] if first else []), *commands])
        head = replies.pop(0) if first is not None else None
        secs, micros = replies[0]
        now_ms = int(secs) * 1000 + int(micros) // 1000
        beats = lane.scored(replies[5])
        if full:
            self._full_due = time.monotonic() + FULL_EVERY_S
            self._reread(known, replies[6 : 6 + len(known)], beats)
            # new workers, and the known ones that beat since the last look (facts re-read)
            beats = [(name, score) for name, score in beats if name not in self._facts or score >= self._since_ms]
        else:
            self._count_freed(lane.pairs(replies[3]))
        self._since_ms = now_ms
        self._beaten(client, beats)
        self._expire(now_ms - timeout_s * 1000)
        return Look(now_ms, sorted(replies[1]), lane.pairs(replies[-1]) if config_due else None, head)

    def _reread(self, known: list[str], lengths: Sequence[Any], beats: list[tuple[str, float]]) -> None:
        """A full look: every known worker's stream length, and who is registered now."""
        registered = dict(beats)
        for name, length in zip(known, lengths, strict=True):
            if name in registered:
                self._outstanding[name], self._beats[name] = int(length), registered[name]
                self._dirty.add(name)
            else:
                self._forget(name)

    def _count_freed(self, freed: Mapping[str, str]) -> None:
        for name, count in freed.items():
            if name in self._outstanding:
                self._outstanding[name] = max(0, self._outstanding[name] - int(count))
                self._dirty.add(name)

    def _beaten(self, client: redis.Redis, beats: Iterable[tuple[str, float]]) -> None:
        """Re-read the facts of workers that beat; read new ones whole, with their stream length."""
        beats = list(beats)
        if not beats:
            return
        pipe = client.pipeline(transaction=True)
        for name, _ in beats:
            pipe.hmget(self._keys.worker(name), list(WORKER_FIELDS))
            pipe.hget(self._keys.worker(name), "jobs_done")
            if name not in self._outstanding:
                pipe.xlen(self._keys.worker_jobs(name))
                pipe.hdel(self._keys.freed, name)  # already counted in the length read with it
        replies = iter(pipe.execute())
        for name, score in beats:
            facts = next(replies)
            self._pace(name, score, int(next(replies) or 0))
            if name not in self._outstanding:
                self._outstanding[name] = int(next(replies))
                next(replies)
            self._beats[name] = score
            if not any(facts):
                self._forget(name)  # registered, but its hash is gone: it gets nothing
            elif facts != self._facts.get(name):
                self._facts[name] = facts
                self._dirty.add(name)

    def _pace(self, name: str, beat_ms: float, done: int) -> None:
        before = self._done.get(name)
        self._done[name] = (beat_ms, done)
        if before is None or beat_ms <= before[0]:
            return
        rate = max(0, done - before[1]) * 1000 / (beat_ms - before[0])
        setting = self._limits[1]
        if paced_prefetch(rate, setting) != paced_prefetch(self._paced.get(name, 0.0), setting):
            self._built_from.pop(name, None)  # its view is rebuilt with the new prefetch
            self._dirty.add(name)
        self._paced[name] = rate

    def _expire(self, cutoff_ms: float) -> None:
        """Drop workers whose last beat is older than the cutoff (the leader reclaims them soon)."""
        if self._beats and min(self._beats.values()) < cutoff_ms:
            for name in [n for n, beat in self._beats.items() if beat < cutoff_ms]:
                self._forget(name)

    def _forget(self, name: str) -> None:
        for table in (
            self._facts,
            self._outstanding,
            self._beats,
            self._views,
            self._built_from,
            self._done,
            self._paced,
        ):
            table.pop(name, None)
        self._dirty.discard(name)

    def placed(self, name: str) -> None:
        """The leader placed a job on this worker."""
        if name in self._outstanding:
            self._outstanding[name] += 1
            self._dirty.add(name)

    def unplaced(self, name: str) -> None:
        """A job counted by ``placed`` was not placed after all (dispatch skipped it)."""
        if name in self._outstanding:
            self._outstanding[name] = max(0, self._outstanding[name] - 1)
            self._dirty.add(name)

    @property
    def full_due(self) -> bool:
        """Whether the next look is a full one (it reads every stream's length)."""
        return time.monotonic() >= self._full_due

    def gone(self, name: str) -> None:
        """The worker left ``<p>:workers`` (dispatch said so): nothing more for it until it beats again."""
        self._forget(name)

    def workers(self, max_jobs_per_worker: int, prefetch: int) -> list[WorkerView]:
        """The workers that may get jobs, as the plan sees them."""
        limits = (max_jobs_per_worker, prefetch)
        if limits != self._limits:
            self._limits, self._dirty, self._built_from = limits, set(self._facts), {}
        for name in self._dirty:
            view, facts = self._views.get(name), self._facts[name]
            if view is not None and self._built_from.get(name) is facts:  # only its load changed
                self._views[name] = view.with_outstanding(self._outstanding[name])
                continue
            prefetch = paced_prefetch(self._paced.get(name, 0.0), limits[1])
            fresh = worker_view(name, facts, self._outstanding[name], limits[0], prefetch)
            self._built_from[name] = facts
            if fresh is None:
                self._views.pop(name, None)
            else:
                self._views[name] = fresh
        self._dirty = set()
        return list(self._views.values())
