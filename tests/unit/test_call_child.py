"""Call jobs in pooled children, driven by the slot thread (no reader thread in the worker): kills, output, results."""

from __future__ import annotations

import json
import time
from pathlib import Path

import fakeredis

from jobbalancer.config import Settings
from jobbalancer.job import EXIT_CANCELLED, EXIT_TIMED_OUT, Spec, Status
from jobbalancer.keys import Keys
from jobbalancer.scripts import Scripts
from jobbalancer.worker.call_pool import CallPool
from jobbalancer.worker.guardian import Guardian
from jobbalancer.worker.run_call import run_call
from jobbalancer.worker.running import Assignment, Context, JobRun, Outcome, StopReason
from tests.helpers import once_printed, wait_for


def job_run(watchdog_s: float | None = None) -> JobRun:
    return JobRun(Assignment("1-0", "j1", "1", "call", "{}", watchdog_s))


def call(pool: CallPool, func: str, *args: object, run: JobRun | None = None) -> Outcome:
    client = fakeredis.FakeRedis(decode_responses=True)
    ctx = Context(client, Scripts(client), Keys("t"), "w1", settings=Settings, guardian=Guardian())
    outcome = run_call(run or job_run(), Spec.for_call(func, args), ctx, pool)
    assert outcome is not None
    return outcome


def test_a_cancel_wakes_the_slot_at_once_and_the_child_is_replaced(pool: CallPool, tmp_path: Path) -> None:
    first = int(call(pool, "call_tasks:pid").result)
    run, marker = job_run(), tmp_path / "printed"
    once_printed(marker, lambda: run.request_kill(StopReason.CANCEL))
    began = time.monotonic()
    outcome = call(pool, "call_tasks:slow", 60, str(marker), run=run)
    assert (outcome.status, outcome.exit_code, outcome.stdout) == (Status.CANCELLED, EXIT_CANCELLED, "before\n")
    assert time.monotonic() - began < 30  # not the 60 s the call wanted
    assert int(call(pool, "call_tasks:pid").result) != first


def test_a_watchdog_kills_the_call_and_keeps_what_it_printed(pool: CallPool) -> None:
    call(pool, "call_tasks:pid")  # a child started and warm: its start-up is not in the watchdog's time
    outcome = call(pool, "call_tasks:slow", 60, run=job_run(watchdog_s=1.0))
    assert (outcome.status, outcome.exit_code, outcome.stdout) == (Status.TIMED_OUT, EXIT_TIMED_OUT, "before\n")
    assert call(pool, "call_tasks:pid").status is Status.SUCCEEDED


def test_a_late_kill_request_for_an_ended_job_does_not_disturb_the_next(pool: CallPool) -> None:
    ended = job_run()
    first = call(pool, "call_tasks:pid", run=ended)
    ended.request_kill(StopReason.CANCEL)  # e.g. a cancel that arrived just after the call returned
    second = call(pool, "call_tasks:pid")
    assert (second.status, second.result, second.stdout) == (Status.SUCCEEDED, first.result, "pid")


def test_output_from_a_thread_a_finished_job_left_is_no_other_jobs(pool: CallPool, tmp_path: Path) -> None:
    marker = tmp_path / "printed"
    assert call(pool, "call_tasks:leak", str(marker)).result == '"left a thread"'
    wait_for(marker.exists, 10, what="the left-behind thread to print")
    assert call(pool, "call_tasks:pid").stdout == "pid"


def test_errors_carry_the_traceback_and_results_are_exact_json(pool: CallPool) -> None:
    failed = call(pool, "call_tasks:boom")
    assert (failed.status, failed.exit_code) == (Status.FAILED, 1)
    assert failed.error.startswith("Traceback") and failed.error.rstrip().endswith("ValueError: nope")
    result = call(pool, "call_tasks:value").result
    assert json.loads(result) == {"b": [1, 2.5, None, True], "a": "déjà vu", "3": 1e16}
    assert result == json.dumps(json.loads(result))  # what a worker re-encoding the value would store


def test_a_big_result_and_output_arrive_whole(pool: CallPool) -> None:
    outcome = call(pool, "call_tasks:big", 300_000)  # several pipe-fulls each
    assert outcome.result == json.dumps("y" * 300_000)
    assert outcome.stdout == "x" * 300_000 + "\n"


def test_a_pool_closed_under_a_running_call_ends_it_as_a_dead_child(pool: CallPool, tmp_path: Path) -> None:
    marker = tmp_path / "printed"
    once_printed(marker, pool.close)
    outcome = call(pool, "call_tasks:slow", 60, str(marker))
    assert (outcome.status, outcome.exit_code, outcome.stdout) == (Status.FAILED, 128 + 9, "before\n")
    assert outcome.error == "worker child died (signal 9)"
