"""Dead letters (``<p>:dead``): jobs that ran out of attempts or could not be parsed, with the reason.

Each entry is ``{id, reason, raw, at}``: the job's id (empty when an inbox entry had none), why it
is there, what could not be parsed (the raw fields, or the spec the worker could not read) and
when, in Redis's epoch seconds. Jobs land here when their retries are spent, when they were lost
with their worker ``poison_limit`` times, when the worker could not parse them, or when their
inbox entry was malformed. The stream is capped at about 100,000 entries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from jobbalancer.client import Client, Job
from jobbalancer.errors import JobStateError, NoSuchJob

ENTRY_PATTERN = re.compile(r"^\d+-\d+$")
PAGE = 1000


@dataclass(frozen=True)
class DeadLetter:
    """One entry of ``<p>:dead``."""

    entry: str
    job_id: str | None
    reason: str
    raw: str
    at: float | None

    @classmethod
    def from_entry(cls, entry: str, fields: dict[str, str]) -> DeadLetter:
        try:
            at = float(fields.get("at", ""))
        except ValueError:
            at = None
        return cls(entry, fields.get("id") or None, fields.get("reason", ""), fields.get("raw", ""), at)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _newest_first(client: Client) -> Iterator[DeadLetter]:
    high = "+"
    while True:
        rows: Any = client.redis.xrevrange(client.keys.dead, high, "-", count=PAGE)
        for entry, fields in rows:
            yield DeadLetter.from_entry(entry, fields)
        if len(rows) < PAGE:
            return
        high = f"({rows[-1][0]}"


def dead_letters(client: Client, limit: int = 50) -> list[DeadLetter]:
    """The most recent dead letters, newest first."""
    rows: Any = client.redis.xrevrange(client.keys.dead, count=limit)
    return [DeadLetter.from_entry(entry, fields) for entry, fields in rows]


def find(client: Client, ident: str) -> list[DeadLetter]:
    """The dead letters of one job id, or the one entry with that stream id; newest first."""
    if ENTRY_PATTERN.match(ident):
        rows: Any = client.redis.xrange(client.keys.dead, ident, ident)
        if rows:
            return [DeadLetter.from_entry(entry, fields) for entry, fields in rows]
    return [letter for letter in _newest_first(client) if letter.job_id == ident]


def retry(client: Client, ident: str) -> Job:
    """Run a dead job again under its id (counters of failures and losses reset), and drop its letters.

    Raises:
        NoSuchJob: nothing dead under that id, or its record is gone (a malformed inbox entry has
            none: there is nothing to run).
        JobStateError: the job is not finished (it was already retried).
    """
    letters = find(client, ident)
    job_ids = {letter.job_id for letter in letters if letter.job_id}
    if not letters:
        raise NoSuchJob(ident)
    if not job_ids:
        raise JobStateError(f"dead letter {ident} names no job (a malformed entry); nothing to run again")
    (job_id,) = job_ids
    job = client.restart(job_id)
    remove(client, find(client, job_id))
    return job


def remove(client: Client, letters: Iterable[DeadLetter]) -> int:
    """Delete these dead letters; return how many were deleted."""
    entries = [letter.entry for letter in letters]
    return int(client.redis.xdel(client.keys.dead, *entries)) if entries else 0


def purge(client: Client) -> int:
    """Delete every dead letter; return how many there were."""
    pipe = client.redis.pipeline(transaction=True)
    pipe.xlen(client.keys.dead)
    pipe.delete(client.keys.dead)
    count, _deleted = pipe.execute()
    return int(count)
