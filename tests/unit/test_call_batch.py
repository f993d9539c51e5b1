"""A slot's batch of call jobs sent to one child at once (``run_calls``): order, cancels, kills, deaths."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import fakeredis

from jobbalancer.config import Settings
from jobbalancer.job import EXIT_CANCELLED, EXIT_TIMED_OUT, Spec, Status
from jobbalancer.keys import Keys
from jobbalancer.scripts import Scripts
from jobbalancer.worker.call_pool import CallPool, Child
from jobbalancer.worker.guardian import Guardian
from jobbalancer.worker.run_call import run_calls
from jobbalancer.worker.running import Assignment, Context, JobRun, Outcome, StopReason
from tests.helpers import once_printed, wait_for


def runs(n: int, watchdog_s: float | None = None) -> list[JobRun]:
    return [JobRun(Assignment(f"{i}-0", f"j{i}", "1", "call", "{}", watchdog_s)) for i in range(n)]


class Batch:
    """run_calls over ``calls`` (function, args), noting each turn and each job skipped."""

    def __init__(self, calls: list[tuple[str, tuple[object, ...]]], jobs: list[JobRun] | None = None) -> None:
        client = fakeredis.FakeRedis(decode_responses=True)
        self.ctx = Context(client, Scripts(client), Keys("t"), "w1", settings=Settings, guardian=Guardian())
        self.specs = [Spec.for_call(func, args) for func, args in calls]
        self.runs = jobs or runs(len(calls))
        self.turns: list[int] = []
        self.skipped: dict[int, Outcome | None] = {}

    def run(self, calls: CallPool) -> list[Outcome | None]:
        return run_calls(
            self.runs,
            self.specs,
            self.ctx,
            calls,
            self.turns.append,
            self.skipped.__setitem__,
        )


def test_the_jobs_of_a_batch_run_in_order_in_one_child_each_with_its_own_output(pool: CallPool, tmp_path: Path) -> None:
    marks = [tmp_path / f"m{i}" for i in range(5)]
    batch = Batch([("call_tasks:touch", (str(mark), f"job {i}")) for i, mark in enumerate(marks)])
    outcomes = batch.run(pool)
    assert [o.status if o else None for o in outcomes] == [Status.SUCCEEDED] * 5
    assert [o.stdout if o else None for o in outcomes] == [f"job {i}" for i in range(5)]
    assert len({o.result if o else None for o in outcomes}) == 1  # one child ran them all
    assert batch.turns == [1, 2, 3, 4] and all(mark.exists() for mark in marks)
    assert [run.started for run in batch.runs] == sorted(run.started for run in batch.runs)


def test_a_cancel_of_a_job_behind_a_slow_one_ends_it_at_once_and_it_never_runs(pool: CallPool, tmp_path: Path) -> None:
    printed, never, after = tmp_path / "printed", tmp_path / "never", tmp_path / "after"
    batch = Batch(
        [
            ("call_tasks:slow", (60, str(printed))),
            ("call_tasks:touch", (str(never),)),
            ("call_tasks:touch", (str(after),)),
        ]
    )
    slow, victim = batch.runs[0], batch.runs[1]
    once_printed(printed, lambda: victim.request_kill(StopReason.CANCEL))
    # the slow job is stopped only once the victim's cancel was answered: that came while it ran
    threading.Thread(
        target=lambda: (wait_for(lambda: batch.skipped, 30, what="the cancel"), slow.request_kill(StopReason.SHUTDOWN))
    ).start()
    outcomes = batch.run(pool)
    outcome = batch.skipped.get(1)
    assert list(batch.skipped) == [1] and outcome is not None
    assert (outcome.status, outcome.exit_code) == (Status.CANCELLED, EXIT_CANCELLED)
    assert outcomes[:2] == [None, None] and not never.exists()  # the victim: recorded through on_skipped; never ran
    assert outcomes[2] is not None and outcomes[2].status is Status.SUCCEEDED and after.exists()
    assert batch.turns == [2]


def test_a_watchdog_kill_sends_the_jobs_behind_to_a_fresh_child(pool: CallPool, tmp_path: Path) -> None:
    batch = Batch(
        [("call_tasks:pid", ()), ("call_tasks:slow", (60,)), ("call_tasks:pid", ()), ("call_tasks:pid", ())],
        [*runs(1), JobRun(Assignment("1-0", "j1", "1", "call", "{}", 1.0)), *runs(4)[2:]],
    )
    outcomes = batch.run(pool)
    first, killed, *rest = outcomes
    assert killed is not None and (killed.status, killed.exit_code, killed.stdout) == (
        Status.TIMED_OUT,
        EXIT_TIMED_OUT,
        "before\n",
    )
    assert first is not None and all(o is not None and o.status is Status.SUCCEEDED for o in rest)
    assert rest[0].result == rest[1].result != first.result  # type: ignore[union-attr]  (a fresh child)


def test_a_child_that_dies_fails_its_job_only(pool: CallPool, tmp_path: Path) -> None:
    mark = tmp_path / "after"
    outcomes = Batch([("call_tasks:pid", ()), ("call_tasks:die", ()), ("call_tasks:touch", (str(mark),))]).run(pool)
    assert [o.status if o else None for o in outcomes] == [Status.SUCCEEDED, Status.FAILED, Status.SUCCEEDED]
    assert outcomes[1] is not None and outcomes[1].error == "worker child died (exit code 3)"
    assert mark.exists()


def test_jobs_asked_to_stop_before_the_batch_was_sent_never_run(pool: CallPool, tmp_path: Path) -> None:
    marks = [tmp_path / f"m{i}" for i in range(3)]
    batch = Batch([("call_tasks:touch", (str(mark),)) for mark in marks])
    batch.runs[0].request_kill(StopReason.SHUTDOWN)  # handed back: not recorded
    outcomes = batch.run(pool)
    assert outcomes[0] is None and not marks[0].exists()
    assert all(o is not None and o.status is Status.SUCCEEDED for o in outcomes[1:]) and marks[2].exists()


def test_a_stop_of_every_job_ends_the_batch_without_running_the_rest(pool: CallPool, tmp_path: Path) -> None:
    printed, marks = tmp_path / "printed", [tmp_path / f"m{i}" for i in range(3)]
    batch = Batch([("call_tasks:slow", (60, str(printed))), *[("call_tasks:touch", (str(m),)) for m in marks]])

    def stop_all() -> None:
        for run in batch.runs:
            run.request_kill(StopReason.SHUTDOWN)

    threading.Thread(target=lambda: (wait_for(printed.exists, 30, what="the call to print"), stop_all())).start()
    outcomes = batch.run(pool)
    assert outcomes == [None] * 4 and not any(mark.exists() for mark in marks)


def test_the_child_answers_each_cancel_skipped_or_begun(tmp_path: Path) -> None:
    (tmp_path / "call_tasks.py").write_text(
        "import time\n\ndef slow(marker):\n    open(marker, 'w').close()\n    time.sleep(60)\n"
    )
    marker = tmp_path / "running"
    child = Child(str(tmp_path), [str(tmp_path)])
    try:
        jobs = [["j0", "1", "call_tasks:slow", [str(marker)], {}], ["j1", "1", "call_tasks:slow", ["x"], {}]]
        assert child.send(b"".join(json.dumps(job).encode() + b"\n" for job in jobs))
        wait_for(marker.exists, 30, what="the first job to begin")
        assert child.send(b'K["j1", "1"]\nK["j0", "1"]\nK["j9", "1"]\n')  # behind it; running; unknown
        answers: list[bytes] = []
        wait_for(lambda: answers.extend(child.read(1.0) or []) or len(answers) >= 3, 30, what="three answers")
        assert answers == [b'S["j1", "1"]', b'B["j0", "1"]', b'B["j9", "1"]']
    finally:
        child.close()
