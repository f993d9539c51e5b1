"""Retries whose backoff is over go back among the waiting (``lua/delayed.lua``), on Redis's clock.

``complete.lua`` puts a failed attempt with retries left and a ``backoff`` into ``<p>:delayed``
(score: when it is due, Redis ms); the leader moves due ones every maintenance tick, so a retry
starts at most about half a second after its backoff ends.
"""

from __future__ import annotations

import logging

import redis

from jobbalancer.keys import Keys
from jobbalancer.scripts import Scripts

log = logging.getLogger("jobbalancer.balancer")

PER_TICK = 1000


def requeue_due_retries(client: redis.Redis, scripts: Scripts, keys: Keys, token: str) -> int:
    """Re-queue every retry that is due (up to ``PER_TICK`` a call); return how many."""
    moved = int(scripts.delayed(keys.prefix, token, PER_TICK))
    if moved:
        log.debug("%d retries are due and waiting for a slot", moved)
    return moved
