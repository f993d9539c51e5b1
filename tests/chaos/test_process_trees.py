"""A watchdog kill leaves nothing running: background children, subshells, setsid escapes, double forks."""

from __future__ import annotations

import signal
import time

import pytest

from jobbalancer import Status
from tests.chaos.harness import ChaosCluster
from tests.helpers import wait_for

pytestmark = pytest.mark.chaos

TREES = {
    "background and subshell": "sleep 1000 & (sleep 1000 &); sleep 1000",
    "setsid child": "setsid sh -c 'sleep 1000' & sleep 1000",
    "setsid double fork": "(setsid sh -c 'sleep 1000 &' &); sleep 1000",
    "nohup in a subshell": "(nohup sleep 1000 >/dev/null 2>&1 &); sleep 1000",
}


def test_watchdog_kills_every_process_a_job_started(chaos: ChaosCluster) -> None:
    chaos.balancer()
    chaos.worker("w1", len(TREES))
    ids = {
        what: chaos.submit_one(f'echo "$JB_JOB_ID $JB_ATTEMPT $$" >> {chaos.ledger}; sh -c "{tree}"', watchdog_s=1)
        for what, tree in TREES.items()
    }
    chaos.verify("watchdog process trees", expect=dict.fromkeys(ids.values(), Status.TIMED_OUT), max_duplicates=0)
    for job_id in ids.values():
        record = chaos.client.record(job_id)
        assert (record.exit_code, record.error) == (124, "watchdog: killed after 1 s")


def test_a_killed_workers_job_trees_die_with_it(chaos: ChaosCluster) -> None:
    chaos.balancer()
    chaos.worker("w1", len(TREES))
    for tree in TREES.values():
        chaos.submit_one(f'echo "$JB_JOB_ID $JB_ATTEMPT $$" >> {chaos.ledger}; sh -c "{tree}"; sleep 1000')
    held = wait_for(lambda: len(chaos.running_on("w1")) == len(TREES) and chaos.running_on("w1"), 20, what="jobs")
    wait_for(lambda: len(chaos.job_processes(held)) >= 3 * len(TREES), 5, what="every tree grown")
    chaos.signal("w1", signal.SIGKILL, "SIGKILL worker")
    killed_at = time.monotonic()
    wait_for(lambda: not chaos.job_processes(held), 2.0, interval=0.05, what="every job process to die")
    assert time.monotonic() - killed_at <= 2.0
    for job_id in held:
        chaos.client.cancel(job_id)  # no worker left to re-run them on
    chaos.verify("worker SIGKILL process trees", expect=dict.fromkeys(held, Status.CANCELLED))
