"""Redis killed under load and restarted from its AOF, or frozen: every accepted job still finishes.

No live worker may lose its jobs to the outage: during it no heartbeat can land, so the
heartbeat ages the balancer sees right after are as old as the outage; it must not take them
for dead workers.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
import redis

from jobbalancer.errors import RedisUnavailable
from tests.chaos.harness import HEARTBEAT_TIMEOUT_S, LONG, ChaosCluster
from tests.helpers import wait_for

pytestmark = pytest.mark.chaos

KILLED_FOR_S = 8.0 if LONG else 2 * HEARTBEAT_TIMEOUT_S
FROZEN_FOR_S = 15.0 if LONG else 2 * HEARTBEAT_TIMEOUT_S


class Load:
    """Submits a short job every 50 ms; a submit that raised was not accepted (and is not counted).

    A submit tries again for up to ``SUBMIT_RETRY_S`` while Redis is away, then raises
    RedisUnavailable (or, from a frozen Redis, redis-py's own timeout may come first).
    """

    def __init__(self, chaos: ChaosCluster) -> None:
        self._chaos = chaos
        self._stop = threading.Event()
        self.refused = 0
        self.longest_submit_s = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            began = time.monotonic()
            try:
                self._chaos.submit(1, 0.2)
            except (RedisUnavailable, redis.RedisError, OSError):
                self.refused += 1
            self.longest_submit_s = max(self.longest_submit_s, time.monotonic() - began)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _cluster(chaos: ChaosCluster) -> None:
    chaos.balancer("b1")
    chaos.worker("w1", 4, wait=False)
    chaos.worker("w2", 4, wait=False)
    chaos.wait_registered("w1", "w2")
    chaos.wait_leader("b1")


def _check_no_live_worker_reclaimed(chaos: ChaosCluster) -> None:
    for label in ("b1", "w1", "w2"):
        assert chaos.alive(label), f"{label} exited: {chaos.log(label)[-2000:]}"
    assert "sent no heartbeat" not in chaos.log("b1")
    for name in ("w1", "w2"):
        assert "declared it dead" not in chaos.log(name)


def test_redis_sigkill_under_load_then_restart_from_the_aof(chaos: ChaosCluster) -> None:
    _cluster(chaos)
    load = Load(chaos)
    try:
        wait_for(lambda: len(chaos.accepted) >= 20, 10, what="some load")
        chaos.redis.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        chaos.redis.process.wait()  # type: ignore[union-attr]
        time.sleep(KILLED_FOR_S)  # the outage itself: nothing to wait for but time
        chaos.redis.start()
        before = len(chaos.accepted)
        wait_for(lambda: len(chaos.accepted) >= before + 20, 20, what="load after the restart")
    finally:
        load.stop()
    assert load.refused > 0 or load.longest_submit_s >= 1.0, "the outage was felt: submits waited or failed"
    chaos.verify("Redis SIGKILL + AOF restart", timeout=60, max_duplicates=0)
    _check_no_live_worker_reclaimed(chaos)


def test_redis_frozen_then_resumed(chaos: ChaosCluster) -> None:
    _cluster(chaos)
    load = Load(chaos)
    try:
        wait_for(lambda: len(chaos.accepted) >= 20, 10, what="some load")
        chaos.redis.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        time.sleep(FROZEN_FOR_S)  # the outage itself
        chaos.redis.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        before = len(chaos.accepted)
        wait_for(lambda: len(chaos.accepted) >= before + 20, 30, what="load after the freeze")
    finally:
        load.stop()
    chaos.verify("Redis SIGSTOP", timeout=60, max_duplicates=0)
    _check_no_live_worker_reclaimed(chaos)
