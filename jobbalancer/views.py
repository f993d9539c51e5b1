"""The read side over the whole cluster: the job index, waiting depths, events and workers.

A mixin of :class:`jobbalancer.client.Client`, kept apart so the producer side stays small; it
needs only the client's connection, key names and settings.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis

from jobbalancer.config import Settings
from jobbalancer.errors import CorruptRecord, InvalidJob
from jobbalancer.job import Record, Status
from jobbalancer.keys import Keys

log = logging.getLogger("jobbalancer.client")


class Views:
    """Listing and inspecting jobs and workers (read-only, apart from pruning expired index entries)."""

    redis: redis.Redis
    keys: Keys

    def settings(self) -> Settings:
        """The live settings; :class:`~jobbalancer.client.Client` provides them."""
        raise NotImplementedError

    def jobs(self, status: Status | str | None = None, limit: int = 50) -> list[Record]:
        """The most recent jobs, newest first, optionally of one status."""
        wanted = Status(status) if status else None
        return self.jobs_page(limit, match=None if wanted is None else lambda record: record.status is wanted)[0]

    def jobs_page(
        self,
        limit: int = 50,
        cursor: str | None = None,
        match: Callable[[Record], bool] | None = None,
        scan: int | None = None,
    ) -> tuple[list[Record], str | None]:
        """One page of jobs, newest first, that ``match`` accepts, and the cursor of the next page.

        The cursor (``<created_at>:<id>`` of the last index entry looked at) stays valid while new
        jobs arrive; None means the index is exhausted. ``scan`` bounds the index entries one call
        looks at, so a sparse filter returns a short page and a cursor to go on from.

        Raises:
            InvalidJob: a cursor this method did not make.
        """
        high, last = parse_cursor(cursor)
        found: list[Record] = []
        looked, batch_size = 0, 200 if match else limit + 8
        while True:
            top = "+inf" if high == math.inf else repr(high)
            batch: Any = self.redis.zrevrangebyscore(self.keys.jobs, top, "-inf", 0, batch_size, withscores=True)
            # Equal scores come in reverse id order: those at the cursor's score with ids >= its id were seen.
            fresh = [(job_id, score) for job_id, score in batch if not (score == high and job_id >= last)]
            pipe = self.redis.pipeline(transaction=False)
            for job_id, _score in fresh:
                pipe.hgetall(self.keys.job(job_id))
            expired = []
            for (job_id, score), raw in zip(fresh, pipe.execute() if fresh else [], strict=True):
                high, last, looked = score, job_id, looked + 1
                if not raw:
                    expired.append(job_id)
                elif (record := _readable(job_id, raw)) is not None and (match is None or match(record)):
                    found.append(record)
                if len(found) >= limit or (scan is not None and looked >= scan):
                    break
            if expired:  # the record's TTL ran out: drop it from the index too
                self.redis.zrem(self.keys.jobs, *expired)
            if len(found) >= limit or (scan is not None and looked >= scan):
                return found, f"{high!r}:{last}"
            if not fresh or len(batch) < batch_size:
                return found, None

    def job_counts(self) -> dict[tuple[str, str], int]:
        """How many job records there are per (status, queue), over the whole index."""
        counts: dict[tuple[str, str], int] = {}
        start, ids = 0, ["-"]
        while ids:
            ids = self._index_slice(start, 1000)
            start += 1000
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(self.keys.job(job_id), "status", "queue")
            for status, queue in pipe.execute():
                if status is not None:
                    counts[(status, queue or "")] = counts.get((status, queue or ""), 0) + 1
        return counts

    def _index_slice(self, start: int, count: int) -> list[str]:
        ids: Any = self.redis.zrange(self.keys.jobs, start, start + count - 1)
        return list(ids)

    def waiting(self) -> dict[str, int]:
        """Jobs waiting for a free slot, per queue."""
        queues: Any = sorted(self.redis.smembers(self.keys.waitq))
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.zcard(self.keys.waiting(queue))
        return dict(zip(queues, pipe.execute() if queues else [], strict=True))

    def events(self, after: str, block_ms: int | None = None, count: int = 500) -> list[tuple[str, dict[str, str]]]:
        """Job state changes (``id``, ``status``, ``worker``) in the (at most ``count``) entries after
        stream id ``after``, waiting up to ``block_ms``; the changes of one entry share its id."""
        reply: Any = self.redis.xread({self.keys.events: after}, count=count, block=block_ms)
        return job_events(entry for _key, entries in reply or [] for entry in entries)

    def recent_events(self, count: int = 100, job_id: str | None = None) -> list[tuple[str, dict[str, str]]]:
        """The latest ``count`` job state changes, oldest first; of one job, among the last 10,000 entries."""
        entries: Any = self.redis.xrevrange(self.keys.events, count=10_000 if job_id else count)
        changes = job_events(reversed(entries))
        mine = [(entry, fields) for entry, fields in changes if job_id is None or fields["id"] == job_id]
        return mine[-count:]

    def workers(self) -> list[dict[str, Any]]:
        """Every registered worker with its facts, load and heartbeat age (Redis's clock)."""
        clock: Any = self.redis.time()
        seconds, micros = clock
        now_ms = seconds * 1000 + micros // 1000
        timeout_s = self.settings().heartbeat_timeout
        names: Any = self.redis.zrange(self.keys.workers, 0, -1, withscores=True)
        pipe = self.redis.pipeline(transaction=False)
        for name, _score in names:
            pipe.hgetall(self.keys.worker(name))
        return [
            worker_info(name, score, raw, now_ms, timeout_s)
            for (name, score), raw in zip(names, pipe.execute(), strict=True)
        ]


def job_events(entries: Iterable[tuple[str, Mapping[str, str]]]) -> list[tuple[str, dict[str, str]]]:
    """Each job's state change in ``<p>:events`` entries, in order: ``(entry id, {id, status, worker})``.

    An entry names every job that changed to one status on one worker in one script call (``ids``,
    space-separated); entries written before that named one (``id``).
    """
    changes = []
    for entry, fields in entries:
        status, worker = fields.get("status", ""), fields.get("worker", "")
        for job_id in fields.get("ids", fields.get("id", "")).split():
            changes.append((str(entry), {"id": job_id, "status": status, "worker": worker}))
    return changes


def _readable(job_id: str, raw: Mapping[str, str]) -> Record | None:
    """The record, or None (logged) when it cannot be read: one bad record must not hide the others."""
    try:
        return Record.from_hash(job_id, raw)
    except CorruptRecord as exc:
        log.warning("skipping job %s in the listing: %s", job_id, exc)
        return None


def parse_cursor(cursor: str | None) -> tuple[float, str]:
    """The (created_at, id) a :meth:`Client.jobs_page` cursor points at; (inf, '') for the first page."""
    if not cursor:
        return math.inf, ""
    score, sep, job_id = cursor.partition(":")
    try:
        high = float(score)
    except ValueError:
        high = math.nan
    if not sep or not job_id or not math.isfinite(high):
        raise InvalidJob(f"cursor {cursor!r} is not one the job list returned")
    return high, job_id


def _number(raw: Mapping[str, str], name: str) -> float | None:
    try:
        return float(raw[name])
    except (KeyError, ValueError):
        return None


def worker_info(name: str, score: float, raw: Mapping[str, str], now_ms: int, timeout_s: float) -> dict[str, Any]:
    """One worker as ``jb workers --json`` shows it."""
    last_seen_s = max(0.0, (now_ms - score) / 1000)
    state = "dead" if last_seen_s > timeout_s else raw.get("state", "unknown")
    slots = _number(raw, "slots")
    return {
        "name": name,
        "host": raw.get("host"),
        "pid": int(raw["pid"]) if raw.get("pid", "").isdigit() else None,
        "state": state,
        "concurrency": int(slots) if slots is not None else None,
        "running": int(_number(raw, "running") or 0),
        "queues": [q for q in raw.get("queues", "").split(",") if q],
        "cpu": _number(raw, "cpu"),
        "mem": _number(raw, "mem"),
        "load": _number(raw, "load1"),
        "last_seen_s": round(last_seen_s, 3),
        "jobs_done": int(_number(raw, "jobs_done") or 0),
    }
