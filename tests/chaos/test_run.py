"""The chaos run: steady load while workers, balancers and Redis are killed, frozen and stopped.

The small run (one cycle of every fault) is part of ``make test``; ``make chaos`` runs more cycles.
Three kinds of jobs run through it: short ledger jobs on the ``default`` queue (the load); a long
healthy job on a worker no fault touches (it must run exactly once, however Redis behaves); a
poison job that kills its worker, on workers of its own (so it takes no innocent job with it),
which must end dead-lettered; and a watchdog job whose process tree must not outlive it.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest
import redis

from jobbalancer import Status
from jobbalancer.errors import RedisUnavailable
from tests.chaos.harness import HEARTBEAT_TIMEOUT_S, LONG, ChaosCluster
from tests.chaos.observe import Fault
from tests.helpers import wait_for

pytestmark = pytest.mark.chaos

CYCLES = 6 if LONG else 1
POISON = 'echo "$JB_JOB_ID $JB_ATTEMPT $$" >> {ledger}; kill -9 $PPID; sleep 5'
TREE = "sleep 1000 & (sleep 1000 &); (setsid sh -c 'sleep 1000 &' &); sleep 1000"


class Run:
    """The load and the supervisor of one chaos run, each on a thread."""

    def __init__(self, chaos: ChaosCluster, seed: int) -> None:
        self.chaos = chaos
        self.rng = random.Random(seed)
        self.names = iter(range(1, 1000))
        self.stop = threading.Event()
        self.refused = 0
        self.longest_submit_s = 0.0  # a submit rides out a short outage (SUBMIT_RETRY_S): it waits instead
        self.lock = threading.Lock()  # spawning, and the process table, from two threads
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._load, self._supervise)]
        for thread in self._threads:
            thread.start()

    def worker(self, queue: str = "default", slots: int = 2) -> str:
        with self.lock:
            name = f"{queue[0]}{next(self.names)}"
            self.chaos.worker(name, slots, "--queue", queue, wait=False)
            return name

    def workers(self, queue: str = "default") -> list[str]:
        with self.lock:
            return [n for n, p in self.chaos.procs.items() if n[0] == queue[0] and n[1:].isdigit() and p.poll() is None]

    def _load(self) -> None:
        # About 5 jobs a second of 0.85 s on average: 4 of the 6 default slots busy, so a re-run
        # waits for its reclaim, not for a slot.
        while not self.stop.wait(0.2):
            began = time.monotonic()
            try:
                self.chaos.submit(1, round(self.rng.uniform(0.2, 1.5), 2))
            except (RedisUnavailable, redis.RedisError, OSError):  # Redis stayed down: this submit was not accepted
                self.refused += 1
            self.longest_submit_s = max(self.longest_submit_s, time.monotonic() - began)

    def _supervise(self) -> None:
        """Replace any worker that died (killed, or poisoned) by a new one on its queue."""
        while not self.stop.wait(0.1):
            with self.lock:
                dead = [
                    n for n, p in self.chaos.procs.items() if n[0] in "dp" and n[1:].isdigit() and p.poll() is not None
                ]
                for name in dead:
                    self.chaos.procs[f"{name}-gone"] = self.chaos.procs.pop(name)
            for name in dead:
                if name[0] == "p":
                    self.chaos.faults.append(Fault(time.time(), "poison", name))
                self.worker({"d": "default", "p": "poison"}[name[0]], 2 if name[0] == "d" else 1)

    def close(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)


def _cycle(run: Run, balancers: list[str]) -> None:
    chaos, rng = run.chaos, run.rng
    busy = wait_for(lambda: [w for w in run.workers() if chaos.running_on(w)], 20, what="a busy worker")
    chaos.signal(rng.choice(busy), signal.SIGKILL, "SIGKILL worker")
    time.sleep(1.0)  # load flows between faults

    leader = chaos.leader()
    standby = next(b for b in balancers if b != leader)
    chaos.signal(leader, signal.SIGKILL, "SIGKILL balancer")
    started = time.monotonic()
    wait_for(lambda: chaos.leader() == standby, 10, interval=0.02, what="the standby to take over")
    chaos.takeovers_s.append(time.monotonic() - started)
    balancers.remove(leader)
    balancers.append(f"b{next(run.names)}")
    chaos.balancer(balancers[-1])

    frozen = rng.choice(run.workers())
    chaos.signal(frozen, signal.SIGSTOP, "SIGSTOP worker")
    time.sleep(HEARTBEAT_TIMEOUT_S + 1.0)  # frozen past the heartbeat timeout
    chaos.signal(frozen, signal.SIGCONT)

    chaos.redis.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    chaos.redis.process.wait()  # type: ignore[union-attr]
    time.sleep(HEARTBEAT_TIMEOUT_S)  # the outage
    chaos.redis.start()
    time.sleep(1.0)

    stopped = rng.choice(run.workers())
    chaos.signal(stopped, signal.SIGTERM, "SIGTERM worker")
    wait_for(lambda: "stopping gracefully" in chaos.log(stopped), 10, what="a graceful stop")
    chaos.signal(stopped, signal.SIGTERM, "SIGTERM worker")  # the second: a cold stop, jobs handed back
    time.sleep(1.0)


def test_chaos_run(chaos: ChaosCluster) -> None:
    seed = int(os.environ.get("JB_CHAOS_SEED", time.time_ns() % 1_000_000))
    print(f"chaos run seed {seed} (JB_CHAOS_SEED={seed} repeats the choices)")
    chaos.client.set_setting("poison_limit", "3")
    balancers = ["b1", "b2"]
    chaos.balancer("b1")
    chaos.wait_leader("b1")
    chaos.balancer("b2")
    chaos.worker("healthy", 1, "--queue", "long", wait=False)
    run = Run(chaos, seed)
    try:
        for _ in range(3):
            run.worker("default")
        run.worker("poison", 1)
        chaos.wait_registered("healthy")
        long_job = chaos.submit_one(chaos.command(5 * HEARTBEAT_TIMEOUT_S), queue="long")
        poison = chaos.submit_one(POISON.format(ledger=chaos.ledger), queue="poison")
        tree = chaos.submit_one(f'echo "$JB_JOB_ID $JB_ATTEMPT $$" >> {chaos.ledger}; {TREE}', watchdog_s=2)
        for _ in range(CYCLES):
            _cycle(run, balancers)
    finally:
        run.close()
    summary = chaos.verify("chaos run", timeout=90, expect={poison: Status.FAILED, tree: Status.TIMED_OUT})
    assert chaos.client.record(long_job).attempts == 1, "the healthy long job was never reclaimed"
    assert "poison limit" in (chaos.client.record(poison).error or "")
    assert run.refused > 0 or run.longest_submit_s >= 1.0, "the outage was felt: submits waited or failed"
    assert summary.lost == 0 and summary.orphans == 0
