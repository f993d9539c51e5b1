"""Reading one job: its record, waiting for its end, and its output, live or recorded.

A mixin of :class:`jobbalancer.client.Client`, like :class:`~jobbalancer.views.Views`; it needs
only the client's connection and key names.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import redis

from jobbalancer import lane
from jobbalancer.errors import NoSuchJob, WaitTimeout
from jobbalancer.job import Record
from jobbalancer.keys import Keys

FOLLOW_BLOCK_MS = 1000


class Output(NamedTuple):
    """A job's captured output (the capped tails once it has finished)."""

    stdout: str
    stderr: str


class Chunk(NamedTuple):
    """One piece of live output: ``fd`` 1 for stdout, 2 for stderr."""

    fd: int
    data: str


class Watching:
    """One job's record, its end and its output (read-only, but for the waiter marker of :meth:`wait`)."""

    redis: redis.Redis
    keys: Keys

    def record(self, job_id: str) -> Record:
        raw = lane.pairs(lane.one(self.redis, "HGETALL", self.keys.job(job_id)))  # decoded: dict[str, str]
        if not raw:
            raise NoSuchJob(job_id)
        return Record.from_hash(job_id, raw)

    def wait(self, job_id: str, timeout: float | None = None) -> Record:
        """Block until the job is finished; wakes on the end marker of its output stream.

        The wake-up and the final record come in one round trip: the record is read right behind
        the blocking read, which Redis answers only once the read returns. A job that writes output
        wakes the read before it ends, so once it has, the record is read only when the end shows.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        record = self.record(job_id)
        if record.finished:
            return record
        last, record = self._announce_waiter(job_id)
        with_record = True
        while not record.finished:
            block_ms = FOLLOW_BLOCK_MS if deadline is None else int((deadline - time.monotonic()) * 1000)
            if block_ms <= 0:
                raise WaitTimeout(f"job {job_id} still {record.status.value} after {timeout}s")
            entries, raw = self._read_output(job_id, last, block_ms, with_record)
            if entries:
                last = entries[-1][0]
            if entries and not any("end" in fields for _id, fields in entries):
                with_record = False  # output, not the end: a record read now would be wasted
            elif raw is None:
                record = self.record(job_id)
            elif not raw:
                raise NoSuchJob(job_id)
            else:
                record = Record.from_hash(job_id, raw)
        return record

    def follow(self, job_id: str) -> Iterator[Chunk]:
        """Yield the job's output as it is produced, until the job finishes.

        A job already finished yields its recorded stdout and stderr tails.
        """
        record = self.record(job_id)
        if not record.finished:
            _marker, record = self._announce_waiter(job_id)
        if record.finished:
            yield from _record_chunks(record)
            return
        last = "0"
        while True:
            entries, _none = self._read_output(job_id, last, FOLLOW_BLOCK_MS)
            for entry_id, fields in entries:
                last = entry_id
                if "end" in fields:
                    return
                if "fd" in fields:
                    yield Chunk(int(fields["fd"]), fields.get("data", ""))
            if not entries and self.record(job_id).finished:
                return

    def output(self, job_id: str) -> Output:
        """The job's output: the recorded tails once finished, the live chunks so far before."""
        record = self.record(job_id)
        if record.finished:
            return Output(record.stdout, record.stderr)
        parts: dict[int, list[str]] = {1: [], 2: []}
        entries: Any = self.redis.xrange(self.keys.output(job_id))
        for _entry_id, fields in entries:
            if "fd" in fields:
                parts.setdefault(int(fields["fd"]), []).append(fields.get("data", ""))
        return Output("".join(parts[1]), "".join(parts[2]))

    def _announce_waiter(self, job_id: str) -> tuple[str, Record]:
        """Make sure the job's output stream exists, so whatever finishes the job writes its end marker.

        Returns the marker's stream id and the record as it stood after the marker was written. A
        read-only user (``dashboard`` in conf/acl) cannot write the marker: it gets ``0-0``, reads
        the output from its start, and its loops look at the record once per FOLLOW_BLOCK_MS.
        """
        out, key = self.keys.output(job_id), self.keys.job(job_id)
        marker, raw, ttl_s = lane.run(self.redis, [("XADD", out, "*", "waiter", "1"), ("HGETALL", key), ("TTL", key)])
        wrote = not isinstance(marker, redis.exceptions.NoPermissionError)
        for reply in (marker, raw, ttl_s) if wrote else (raw, ttl_s):
            if isinstance(reply, Exception):
                raise reply
        if not raw:
            if wrote:
                self.redis.delete(out)
            raise NoSuchJob(job_id)
        record = Record.from_hash(job_id, lane.pairs(raw))
        if wrote and record.finished and ttl_s > 0:  # it finished just before the marker: let the stream expire with it
            self.redis.expire(out, ttl_s)
        return str(marker) if wrote else "0-0", record

    def _read_output(
        self, job_id: str, after: str, block_ms: int, with_record: bool = False
    ) -> tuple[list[tuple[str, dict[str, str]]], dict[str, str] | None]:
        """The output entries after ``after`` (waiting up to ``block_ms`` for some), and with
        ``with_record`` the job's hash as it stood once they came (else None)."""
        read = ("XREAD", "COUNT", 1000, "BLOCK", max(1, block_ms), "STREAMS", self.keys.output(job_id), after)
        replies = lane.checked(
            lane.run(self.redis, [read, ("HGETALL", self.keys.job(job_id))] if with_record else [read])
        )
        found = [(entry, dict(fields or {})) for entry, fields in lane.entries(replies[0])]
        return found, (lane.pairs(replies[1]) if with_record else None)


def _record_chunks(record: Record) -> Iterator[Chunk]:
    if record.stdout:
        yield Chunk(1, record.stdout)
    if record.stderr:
        yield Chunk(2, record.stderr)
