"""Taking back what dead workers held, and the watchdog backstop; both on Redis's clock.

A worker is dead when its score in ``<p>:workers`` (its last heartbeat, Redis ms) is older than
``heartbeat_timeout``. ``release.lua`` (mode ``lost``) puts its jobs back among the waiting, fails
the ones lost too often (poison limit) and unregisters it. A running job whose deadline passed
``kill_grace + heartbeat_timeout`` ago was not ended by its worker, so ``overdue.lua`` records it as
timed out and tells the worker to kill it.

Heartbeat ages are trusted only while the balancer has been seeing Redis steadily (``Liveness``):
no heartbeat can land while Redis is down or frozen, so right after an outage every worker looks
as silent as the outage was long.

The fenced calls here take the leader's token: a FENCED reply propagates to the loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from jobbalancer.config import Settings
from jobbalancer.keys import Keys
from jobbalancer.scripts import Scripts

log = logging.getLogger("jobbalancer.balancer")


GAP_MIN_MS = 1000  # a pause between two looks at Redis shorter than this is never an outage


class Liveness:
    """Whether heartbeat ages can be trusted now, i.e. whether a silent worker is really dead.

    For one heartbeat timeout after Redis answers again (after an error), and after the balancer
    saw Redis's clock jump between two of its looks by more than half the heartbeat timeout (Redis
    or the balancer was frozen, without an error), it declares no worker dead: time for every live
    worker to beat again. The first is timed by this host's monotonic clock (a duration here, like
    a watchdog), so a standby that saw the outage is past its grace when it takes over later.

    Args:
        clock: seconds, monotonic; injected by tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_ms: int | None = None
        self._trust_from_ms = 0
        self._away = False
        self._back_at: float | None = None

    def outage(self) -> None:
        """Redis did not answer."""
        self._away = True

    def answered(self) -> None:
        """Redis answers (again): after an outage, the grace starts now."""
        if self._away:
            self._away = False
            self._back_at = self._clock()

    def trusted(self, now_ms: int, heartbeat_timeout_s: float) -> bool:
        """Note a look at Redis at ``now_ms`` (its clock); return whether ages may be trusted now."""
        timeout_ms = int(heartbeat_timeout_s * 1000)
        if self._last_ms is not None and now_ms - self._last_ms > max(GAP_MIN_MS, timeout_ms // 2):
            self._trust_from_ms = now_ms + timeout_ms
            log.info("heartbeat ages are not trusted for %ss: Redis or this balancer was frozen", heartbeat_timeout_s)
        self._last_ms = now_ms
        if self._away:  # the first pass after an outage, before answered() starts the grace
            return False
        if self._back_at is not None and self._clock() - self._back_at < heartbeat_timeout_s:
            return False
        return now_ms >= self._trust_from_ms


def reclaim_dead_workers(
    client: redis.Redis,
    scripts: Scripts,
    keys: Keys,
    token: str,
    now_ms: int,
    heartbeat_timeout_s: float,
    liveness: Liveness | None = None,
) -> list[str]:
    """Release every worker whose last heartbeat is older than the timeout; return their names.

    With ``liveness``, nobody is released while it does not trust heartbeat ages.
    """
    if liveness is not None and not liveness.trusted(now_ms, heartbeat_timeout_s):
        return []
    cutoff_ms = now_ms - int(heartbeat_timeout_s * 1000)
    names: list[str] = client.zrangebyscore(keys.workers, "-inf", f"({cutoff_ms}")  # type: ignore[assignment]
    for name in names:
        requeued, failed, timed_out, cancelled = scripts.release(keys.prefix, token, name, "lost", "1")
        log.warning(
            "worker %s sent no heartbeat for over %ss: reclaimed its jobs "
            "(%d re-queued, %d failed at the poison limit, %d timed out, %d cancelled)",
            name,
            heartbeat_timeout_s,
            requeued,
            failed,
            timed_out,
            cancelled,
        )
    return names


def time_out_overdue(
    client: redis.Redis, scripts: Scripts, keys: Keys, token: str, now_ms: int, settings: Settings
) -> list[str]:
    """Record running jobs long past their watchdog deadline as timed out; return their ids."""
    cutoff_ms = now_ms - int((settings.kill_grace + settings.heartbeat_timeout) * 1000)
    overdue: list[str] = client.zrangebyscore(keys.deadlines, "-inf", cutoff_ms)  # type: ignore[assignment]
    done = []
    for job_id in overdue:
        if scripts.overdue(keys.prefix, token, job_id, cutoff_ms):
            log.warning("job %s ran past its watchdog and its worker did not stop it: recorded as timed out", job_id)
            done.append(job_id)
    return done
