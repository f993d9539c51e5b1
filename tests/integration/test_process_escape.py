"""A process that leaves its job's tree by a double fork and clears its environment
(``(setsid env -i sleep N &)``) still dies with its job, because the job runs in a cgroup of its
own: on a watchdog kill, a cancel, a normal exit, and when the worker itself is SIGKILLed (its
guardian kills the cgroup). Without cgroups (``JB_CGROUP_ROOT=off``, or a host where the worker
may not create them) nothing ties such a process to the job: the last test shows that gap.

The forms of escape the worker catches without cgroups too (background children, subshells,
``setsid``, a ``setsid`` double fork, ``nohup``) are in tests/chaos/test_process_trees.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from jobbalancer import Status
from jobbalancer.job import Options, Spec
from jobbalancer.worker.cgroup import Cgroups, JobCgroup
from tests.chaos.harness import ChaosCluster
from tests.helpers import wait_for


@pytest.fixture
def cgroups() -> Cgroups:
    found = Cgroups.discover()  # the workers this test starts are in the test's cgroup: the same root
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root with a writable cgroup v2: the worker must find it")
        pytest.skip("no writable cgroup v2 here (not root, or no cgroup2 mount); CI has one")
    return found


def _mark() -> str:
    return f"{random.randrange(10**6, 10**7)}.5"  # a sleep no other process runs: how an escapee is found


def _escape(mark: str) -> str:
    return f"(setsid env -i sleep {mark} &)"


def _sleeping(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] == ["sleep", mark]:
            found.append(proc)
    return found


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE  # killed; waiting for init to reap it
    except psutil.Error:
        return True


def _job_cgroups(cgroups: Cgroups, chaos: ChaosCluster, worker: str) -> list[Path]:
    return list(cgroups.root.glob(f"jb-{worker}-{chaos.procs[worker].pid}-*"))


@contextlib.contextmanager
def _escapees(*marks: str) -> Iterator[dict[str, psutil.Process]]:
    """Wait until each escapee runs; kill any still alive at the end, so a failed test leaves none."""
    found: dict[str, psutil.Process] = {}
    try:
        for mark in marks:
            found[mark] = wait_for(lambda m=mark: _sleeping(m), 20, what=f"escapee {mark} to start")[0]
        yield found
    finally:
        for proc in found.values():
            with contextlib.suppress(psutil.Error):
                proc.kill()


def test_an_escapee_dies_with_its_job_however_the_job_ends(chaos: ChaosCluster, cgroups: Cgroups) -> None:
    chaos.balancer()
    chaos.worker("w1", 4)
    go = chaos.tmp / "go"
    marks = {"watchdog": _mark(), "cancel": _mark(), "exit": _mark(), "argv": _mark()}
    line = f'echo "$JB_JOB_ID $JB_ATTEMPT $$" >> {chaos.ledger}'
    ids = {
        "watchdog": chaos.submit_one(f"{line}; {_escape(marks['watchdog'])}; sleep 1000", watchdog_s=3),
        "cancel": chaos.submit_one(f"{line}; {_escape(marks['cancel'])}; sleep 1000"),
        "exit": chaos.submit_one(f"{line}; {_escape(marks['exit'])}; while [ ! -e {go} ]; do sleep 0.05; done"),
    }
    # A program run without a shell enters its cgroup another way (between fork and exec).
    argv = Spec.for_argv(
        ["/bin/sh", "-c", f"{line}; {_escape(marks['argv'])}; sleep 1000"], env={"JB_CHAOS": chaos.token}
    )
    ids["argv"] = chaos.client.submit_many([(argv, Options(watchdog_s=3))])[0].id
    chaos.accepted.append(ids["argv"])
    with _escapees(*marks.values()) as escapees:
        for proc in escapees.values():  # each in its job's cgroup, which the worker named
            own = Path(f"/proc/{proc.pid}/cgroup").read_text().splitlines()[-1]
            assert own.startswith("0::/") and f"/jb-w1-{chaos.procs['w1'].pid}-" in own
        assert len(_job_cgroups(cgroups, chaos, "w1")) == 4
        chaos.client.cancel(ids["cancel"])
        go.touch()  # the third job exits 0, leaving its escapee behind
        expect = {ids["watchdog"]: Status.TIMED_OUT, ids["argv"]: Status.TIMED_OUT, ids["cancel"]: Status.CANCELLED}
        chaos.verify("double fork with env -i", expect=expect, max_duplicates=0)
        assert chaos.client.record(ids["exit"]).exit_code == 0  # leftovers are killed, the outcome stays
        for how, mark in marks.items():
            wait_for(lambda m=mark: _gone(escapees[m]), 5, what=f"the escapee of the {how} job to die")
    # Emptied, the job cgroups stay for the worker's next jobs; they go when the worker stops.
    kept = _job_cgroups(cgroups, chaos, "w1")
    assert len(kept) == 4 and all(not JobCgroup(path).pids() for path in kept)
    chaos.signal("w1", signal.SIGTERM)
    assert chaos.procs["w1"].wait(20) == 0
    assert _job_cgroups(cgroups, chaos, "w1") == []  # none leaks


def test_a_killed_workers_guardian_kills_an_escapee_in_a_cgroup(chaos: ChaosCluster, cgroups: Cgroups) -> None:
    chaos.balancer()
    chaos.worker("w1", 1)
    mark = _mark()
    job_id = chaos.submit_one(f'echo "$JB_JOB_ID $JB_ATTEMPT $$" >> {chaos.ledger}; {_escape(mark)}; sleep 1000')
    with _escapees(mark) as escapees:
        assert len(_job_cgroups(cgroups, chaos, "w1")) == 1
        chaos.signal("w1", signal.SIGKILL, "SIGKILL worker")
        killed_at = time.monotonic()
        wait_for(lambda: _gone(escapees[mark]), 2.0, interval=0.05, what="the escapee to die with the worker")
        assert time.monotonic() - killed_at <= 2.0
        wait_for(lambda: not _job_cgroups(cgroups, chaos, "w1"), 5, what="the guardian to remove the cgroup")
    chaos.client.cancel(job_id)  # no worker left to re-run it on
    chaos.verify("worker SIGKILL, double fork with env -i", expect={job_id: Status.CANCELLED})


def test_without_cgroups_a_double_fork_with_a_cleared_environment_outlives_the_watchdog(
    chaos: ChaosCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JB_CGROUP_ROOT", "off")  # as on a host where the worker may not create cgroups
    chaos.balancer()
    chaos.worker("w1", 1)
    assert "cgroups: not used (JB_CGROUP_ROOT=off)" in chaos.log("w1")
    mark = _mark()
    job_id = chaos.submit_one(
        f'echo "$JB_JOB_ID $JB_ATTEMPT $$" >> {chaos.ledger}; {_escape(mark)}; sleep 1000', watchdog_s=1
    )
    with _escapees(mark) as escapees:
        chaos.verify("double fork with env -i, no cgroups", expect={job_id: Status.TIMED_OUT}, max_duplicates=0)
        record = chaos.client.record(job_id)
        assert (record.status, record.exit_code) == (Status.TIMED_OUT, 124)
        # The gap: the job is recorded as killed, yet this process of it still runs.
        assert escapees[mark].is_running() and not _gone(escapees[mark])
        assert "JB_JOB_ID" not in escapees[mark].environ()
