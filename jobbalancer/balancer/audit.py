"""The audit: a slow walk over every job that puts back the ones whose place vanished.

The scripts move a job from one place to the next atomically, so a job is always somewhere. An
entry trimmed or deleted from a worker's stream (``XTRIM``, ``XDEL``, a hand edit) or a member
removed from a waiting zset breaks that from outside: the job would wait forever. The leader walks
``<p>:jobs`` a slice per maintenance tick and lets ``audit.lua`` re-queue such jobs (see its
header for the rules). At 100 jobs per tick (two ticks a second) a cluster keeping 100,000
records is walked in about 8 minutes.
"""

from __future__ import annotations

import logging

import redis

from jobbalancer.keys import Keys
from jobbalancer.scripts import Scripts

log = logging.getLogger("jobbalancer.balancer")

SLICE = 100


class Audit:
    """The walk's position, kept between ticks by the leader."""

    def __init__(self, slice_size: int = SLICE) -> None:
        self.slice_size = slice_size
        self._start = 0

    def step(self, client: redis.Redis, scripts: Scripts, keys: Keys, token: str) -> dict[str, str]:
        """Audit the next slice of jobs; return what was done, by job id. Raises FENCED like the others."""
        ids: list[str] = client.zrange(keys.jobs, self._start, self._start + self.slice_size - 1)  # type: ignore[assignment]
        self._start = 0 if len(ids) < self.slice_size else self._start + self.slice_size
        if not ids:
            return {}
        flat = scripts.audit(keys.prefix, token, *ids)
        done = dict(zip(flat[::2], flat[1::2], strict=True))
        for job_id, what in done.items():
            log.warning("job %s had lost its place (a stream entry or waiting member was deleted): %s", job_id, what)
        return done
