"""Runners without a real Redis (fakeredis for the output stream): supervise, kill_tree, call children."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import psutil
import pytest

from jobbalancer.config import Settings
from jobbalancer.job import Spec, Status
from jobbalancer.keys import Keys
from jobbalancer.scripts import Scripts
from jobbalancer.worker.call_pool import CallPool
from jobbalancer.worker.guardian import Guardian
from jobbalancer.worker.kill import kill_tree
from jobbalancer.worker.run_call import run_call
from jobbalancer.worker.running import Assignment, Context, JobRun, StopReason, supervise
from tests.helpers import wait_for


def job_run(watchdog_s: float | None = None, job_id: str = "j1") -> JobRun:
    return JobRun(Assignment("1-0", job_id, "1", "call", "{}", watchdog_s))


def test_supervise_returns_none_when_the_job_ends_by_itself() -> None:
    run, ended = job_run(watchdog_s=5), threading.Event()
    threading.Timer(0.05, lambda: (ended.set(), run.wake.set())).start()
    assert supervise(run, ended, lambda: pytest.fail("must not kill")) is None


@pytest.mark.parametrize(
    ("watchdog_s", "cancel_after_s", "reason"), [(0.05, None, StopReason.WATCHDOG), (None, 0.05, StopReason.CANCEL)]
)
def test_supervise_kills_on_the_watchdog_or_a_request(watchdog_s, cancel_after_s, reason) -> None:
    run, ended, kills = job_run(watchdog_s), threading.Event(), []
    if cancel_after_s is not None:
        threading.Timer(cancel_after_s, run.request_kill, args=(StopReason.CANCEL,)).start()
    assert supervise(run, ended, lambda: (kills.append(1), ended.set())) is reason
    assert kills == [1] and run.kill_reason is reason


def test_a_newer_attempt_waits_until_the_superseded_one_has_freed_its_slot() -> None:
    old, started = job_run(), threading.Event()
    old.request_kill(StopReason.SUPERSEDED)

    def newer() -> None:
        old.wait_finished()
        started.set()

    threading.Thread(target=newer, daemon=True).start()
    assert not started.wait(0.1)  # the old attempt still holds its slot
    old.finish()
    assert started.wait(5)
    old.wait_finished()  # once finished, waiting returns at once
    assert old.kill_reason is StopReason.SUPERSEDED


def test_kill_tree_uses_sigkill_when_the_job_ignores_sigterm() -> None:
    proc = subprocess.Popen(["/bin/sh", "-c", "trap '' TERM; sleep 1000 & wait"], start_new_session=True)
    exited = threading.Event()
    threading.Thread(target=lambda: (proc.wait(), exited.set()), daemon=True).start()
    child = wait_for(lambda: psutil.Process(proc.pid).children())[0]
    began = time.monotonic()
    kill_tree(proc.pid, 0.3, exited)
    assert time.monotonic() - began >= 0.3  # it waited out the grace: SIGTERM did nothing
    assert exited.wait(5) and proc.returncode == -9
    wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE)


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[CallPool]:
    (tmp_path / "unit_tasks.py").write_text(
        "import os, sys\ndef pid():\n    print('pid', end='')\n    return os.getpid()\ndef leave():\n    os._exit(3)\n"
    )
    calls = CallPool(str(tmp_path), [str(tmp_path)], Guardian())  # not started: watches nothing
    yield calls
    calls.close()


def call(pool: CallPool, func: str) -> tuple[Status, str, str, str]:
    client = fakeredis.FakeRedis(decode_responses=True)
    ctx = Context(client, Scripts(client), Keys("t"), "w1", settings=Settings, guardian=Guardian())
    outcome = run_call(job_run(), Spec.for_call(func), ctx, pool)
    assert outcome is not None
    return outcome.status, outcome.result, outcome.error, outcome.stdout


def test_a_call_child_is_reused_and_replaced_once_it_died(pool: CallPool) -> None:
    first, second = call(pool, "unit_tasks:pid"), call(pool, "unit_tasks:pid")
    assert first == second and first[0] is Status.SUCCEEDED and first[3] == "pid"
    assert int(first[1]) != os.getpid()
    assert call(pool, "unit_tasks:leave")[:3] == (Status.FAILED, "", "worker child died (exit code 3)")
    third = call(pool, "unit_tasks:pid")
    assert third[0] is Status.SUCCEEDED and third[1] != first[1]
