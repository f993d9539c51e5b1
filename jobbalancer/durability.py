"""Waiting for replicas after a submit, so an acknowledged job survives a failover.

Redis replicates asynchronously: the primary answers a write before any replica has it, so a job
whose submit returned can vanish when the primary dies and a replica is promoted. With
``WaitReplicas(replicas=N)``, a submit returns only once Redis's ``WAIT`` says N replicas have the
job, and raises :class:`~jobbalancer.errors.NotReplicated` when they do not confirm in time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from jobbalancer.errors import InvalidSetting, NotReplicated
from jobbalancer.keys import Keys

REPLICAS_ENV = "JB_WAIT_REPLICAS"
TIMEOUT_ENV = "JB_WAIT_REPLICAS_TIMEOUT"
DEFAULT_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class WaitReplicas:
    """How many replicas must confirm a submit, and how long to wait for them.

    Args:
        replicas: replicas that must have the job before ``submit`` returns; 0 does not wait.
        timeout_s: the longest wait (Redis's ``WAIT`` timeout); must be above 0.
    """

    replicas: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_env(cls, replicas: int | None = None, timeout_s: float | None = None) -> WaitReplicas:
        """The given values, else ``JB_WAIT_REPLICAS`` and ``JB_WAIT_REPLICAS_TIMEOUT``, else 0 and 1 s.

        Raises:
            InvalidSetting: a value that is not a number, or out of range.
        """
        if replicas is None:
            replicas = _number(REPLICAS_ENV, int, 0)
        if timeout_s is None:
            timeout_s = _number(TIMEOUT_ENV, float, DEFAULT_TIMEOUT_S)
        return cls(replicas, timeout_s).validated()

    def validated(self) -> WaitReplicas:
        if self.replicas < 0:
            raise InvalidSetting(f"wait replicas must be 0 or more, not {self.replicas}")
        if not self.timeout_s > 0:  # WAIT with timeout 0 would block for ever
            raise InvalidSetting(f"wait replicas timeout must be above 0 s, not {self.timeout_s}")
        return self

    def confirm(self, client: redis.Redis, keys: Keys, job_ids: Sequence[str]) -> None:
        """Return once ``replicas`` replicas have the jobs; raise if they do not confirm in time.

        One round trip on one connection (one server): are the jobs there, then a write, then
        ``WAIT``. ``WAIT`` covers the writes made on its own connection, and the submit may have
        run on another one (or been repeated after ``NOSCRIPT``), so the harmless ``INCR`` of the
        FIFO counter moves this connection's replication offset past everything written so far.
        A failover before this check shows as jobs missing on the new primary.

        Raises:
            NotReplicated: fewer replicas confirmed within ``timeout_s``, or the jobs are gone.
        """
        if self.replicas == 0 or not job_ids:
            return
        pipe: Any = client.pipeline(transaction=False)
        pipe.exists(*(keys.job(job_id) for job_id in job_ids))
        pipe.incr(keys.seq)
        pipe.execute_command("WAIT", self.replicas, max(1, round(self.timeout_s * 1000)))
        reply: Any = pipe.execute()
        present, _seq, acked = (int(value) for value in reply)
        if present < len(job_ids) or acked < self.replicas:
            raise NotReplicated(list(job_ids), acked, self.replicas, self.timeout_s, present == len(job_ids))


def _number(env: str, kind: type[int] | type[float], default: float) -> Any:
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        raise InvalidSetting(f"{env} must be a number, not {text!r}") from None
