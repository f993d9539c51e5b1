"""The audit: a slow walk over every job that puts back the ones whose place vanished.

The scripts move a job from one place to the next atomically, so a job is always somewhere. An
entry trimmed or deleted from a worker's stream or from the inbox (``XTRIM``, ``XDEL``, a hand
edit), or a member removed from a waiting zset, breaks that from outside: the job would wait, or
show ``running``, forever. The leader walks ``<p>:jobs`` a slice per maintenance tick and lets
``audit.lua`` re-queue such jobs (see its header for the rules).

The cost is bounded per tick, whatever the number of jobs: one ``ZRANGE`` of ``SLICE`` ids by
rank, then one script that looks at each of them with a few O(1) or O(log n) reads (the record,
its stream or inbox entry by id, its waiting member). At 100 jobs per tick (two ticks a second) a
cluster keeping 100,000 records is walked in about 8 minutes, which bounds how long a job whose
place vanished waits to be found.
"""

from __future__ import annotations

import logging

import redis

from jobbalancer.keys import Keys
from jobbalancer.scripts import Scripts

log = logging.getLogger("jobbalancer.balancer")

SLICE = 100
GRACE_S = 5.0
"""A queued job's inbox entry must be this old before its absence counts. The check is exact (the
record names its entry), so this only keeps the audit out of a balancer's way in odd windows."""


class Audit:
    """The walk's position, kept between ticks by the leader.

    Args:
        slice_size: jobs looked at per step.
        grace_s: how old a missing inbox entry must be before its job is re-queued.
    """

    def __init__(self, slice_size: int = SLICE, grace_s: float = GRACE_S) -> None:
        self.slice_size = slice_size
        self.grace_ms = int(grace_s * 1000)
        self._start = 0

    def step(self, client: redis.Redis, scripts: Scripts, keys: Keys, token: str) -> dict[str, str]:
        """Audit the next slice of jobs; return what was done, by job id. Raises FENCED like the others."""
        ids: list[str] = client.zrange(keys.jobs, self._start, self._start + self.slice_size - 1)  # type: ignore[assignment]
        self._start = 0 if len(ids) < self.slice_size else self._start + self.slice_size
        if not ids:
            return {}
        flat = scripts.audit(keys.prefix, token, self.grace_ms, *ids)
        done = dict(zip(flat[::2], flat[1::2], strict=True))
        for job_id, what in done.items():
            log.warning(
                "job %s had lost its place (an inbox or stream entry or a waiting member was deleted, "
                "or its worker no longer runs it): %s",
                job_id,
                what,
            )
        return done
