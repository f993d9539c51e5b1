"""The worker against a real Redis, with jobs placed by hand (no balancer): submit.lua, then dispatch.lua."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from jobbalancer.balancer.apply import encode_ops
from jobbalancer.job import Options, Record, Spec, Status, new_id, submit_argv
from jobbalancer.scripts import Scripts
from jobbalancer.worker import Worker, WorkerError
from tests.helpers import wait_for

TASKS = """
import os
import sys
import time


def info(x):
    print("hello from", x)
    print("to stderr", file=sys.stderr)
    return {"pid": os.getpid(), "job": os.environ["JB_JOB_ID"], "x": x}


def boom():
    raise ValueError("bad input")


def not_json():
    return object()


def die():
    os.kill(os.getpid(), 9)


def sleepy(pid_file):
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(1000)
"""


def place(r: redis.Redis, prefix: str, worker: str, spec: Spec, watchdog: float | None = None) -> str:
    """Submit a job and assign it to ``worker`` as a balancer would, under a lease the test holds."""
    scripts = Scripts(r)
    job_id = new_id()
    assert scripts.submit(prefix, *submit_argv(job_id, spec, Options(watchdog_s=watchdog))) == [1]
    entry = next(e for e, fields in r.xrange(f"{prefix}:inbox") if fields.get("id") == job_id)
    token = r.get(f"{prefix}:leader") or scripts.lease(prefix, "test", 600_000, "", "hold")
    assert scripts.dispatch(prefix, token, *encode_ops([{"o": "a", "id": job_id, "w": worker, "e": entry}])) == [1]
    return job_id


def record(r: redis.Redis, prefix: str, job_id: str) -> Record:
    return Record.from_hash(job_id, r.hgetall(f"{prefix}:job:{job_id}"))


def finished(r: redis.Redis, prefix: str, job_id: str, timeout: float = 10) -> Record:
    return wait_for(lambda: (rec := record(r, prefix, job_id)).finished and rec, timeout, what=f"job {job_id} to end")


def job_processes(job_id: str) -> list[psutil.Process]:
    """Live processes (zombies are dead) that carry the job's JB_JOB_ID."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get("JB_JOB_ID") == job_id:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@dataclass
class Running:
    worker: Worker
    thread: threading.Thread
    errors: list[BaseException]

    def stop(self, graceful: bool = True) -> None:
        self.worker.stop(graceful)
        self.thread.join(15)
        assert not self.thread.is_alive() and not self.errors


@pytest.fixture
def start_worker(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(name: str = "w1", **kwargs: Any) -> Running:
        kwargs = {"concurrency": 2, "heartbeat_s": 0.2, "paths": [str(tmp_path)], **kwargs}
        worker = Worker(redis_url, prefix, name=name, **kwargs)
        errors: list[BaseException] = []

        def serve() -> None:
            try:
                worker.run()
            except BaseException as exc:
                errors.append(exc)

        running = Running(worker, threading.Thread(target=serve, daemon=True), errors)
        running.thread.start()
        assert running.worker.wait_registered(10), running.errors
        started.append(running)
        return running

    (tmp_path / "tasks.py").write_text(TASKS)
    yield start
    for running in started:
        running.stop(graceful=False)


@pytest.fixture
def quick_kill(r: redis.Redis, prefix: str) -> None:
    r.hset(f"{prefix}:config", "kill_grace", "0.5")


def test_command_output_exit_code_and_job_id_are_recorded(r, prefix, start_worker) -> None:
    start_worker()
    spec = Spec.for_command('echo "out $JB_JOB_ID $JB_ATTEMPT $FOO"; echo err >&2', env={"FOO": "bar"})
    job_id = place(r, prefix, "w1", spec)
    rec = finished(r, prefix, job_id)
    assert (rec.status, rec.exit_code, rec.worker) == (Status.SUCCEEDED, 0, "w1")
    assert (rec.stdout, rec.stderr, rec.error, rec.result) == (f"out {job_id} 1 bar\n", "err\n", None, None)
    chunks = r.xrange(f"{prefix}:job:{job_id}:out")
    assert "".join(c["data"] for _, c in chunks if c.get("fd") == "1") == rec.stdout
    assert "".join(c["data"] for _, c in chunks if c.get("fd") == "2") == rec.stderr
    assert chunks[-1][1] == {"end": "succeeded"}
    assert r.xlen(f"{prefix}:w:w1:jobs") == 0  # the entry is acked and deleted


def test_failing_command_and_missing_cwd_are_failed(r, prefix, start_worker, tmp_path) -> None:
    start_worker()
    failing = place(r, prefix, "w1", Spec.for_command("echo oops >&2; exit 3"))
    nowhere = place(r, prefix, "w1", Spec.for_command("true", cwd=str(tmp_path / "nope")))
    rec = finished(r, prefix, failing)
    assert (rec.status, rec.exit_code, rec.error, rec.stderr) == (Status.FAILED, 3, "exit code 3", "oops\n")
    rec = finished(r, prefix, nowhere)
    assert rec.status is Status.FAILED and "does not exist" in (rec.error or "") and "nope" in (rec.error or "")


@pytest.mark.usefixtures("quick_kill")
def test_watchdog_kills_the_whole_process_group(r, prefix, start_worker) -> None:
    start_worker()
    job_id = place(r, prefix, "w1", Spec.for_command("sleep 1000 & (sleep 1000 &); sleep 1000"), watchdog=1)
    wait_for(lambda: len(job_processes(job_id)) == 4, 5, what="sh and its three sleeps")
    rec = finished(r, prefix, job_id)
    assert (rec.status, rec.exit_code, rec.error) == (Status.TIMED_OUT, 124, "watchdog: killed after 1 s")
    wait_for(lambda: not job_processes(job_id), 2, what="no process of the job left")


@pytest.mark.usefixtures("quick_kill")
def test_cancel_kills_a_job_that_escaped_with_setsid(r, prefix, start_worker) -> None:
    start_worker()
    job_id = place(r, prefix, "w1", Spec.for_command("setsid sleep 1000 & sleep 1000"))
    procs = wait_for(lambda: len(ps := job_processes(job_id)) == 3 and ps, 5, what="sh and two sleeps")
    assert len({os.getsid(p.pid) for p in procs}) == 2  # one of them left the job's session
    assert Scripts(r).cancel(prefix, job_id) == "cancelling"
    rec = finished(r, prefix, job_id)
    assert (rec.status, rec.exit_code, rec.error) == (Status.CANCELLED, 130, "cancelled")
    wait_for(lambda: not job_processes(job_id), 2, what="no process of the job left")


def test_call_result_output_and_child_reuse(r, prefix, start_worker) -> None:
    start_worker(concurrency=1)
    first = place(r, prefix, "w1", Spec.for_call("tasks:info", [1]))
    second = place(r, prefix, "w1", Spec.for_call("tasks:info", [2]))
    one, two = finished(r, prefix, first), finished(r, prefix, second)
    assert (one.status, one.exit_code, one.result["job"], one.result["x"]) == (Status.SUCCEEDED, 0, first, 1)
    assert (two.status, two.result["job"], two.result["x"]) == (Status.SUCCEEDED, second, 2)
    assert one.result["pid"] == two.result["pid"] != os.getpid()  # one long-lived child ran both
    assert (one.stdout, one.stderr) == ("hello from 1\n", "to stderr\n")
    chunks = r.xrange(f"{prefix}:job:{first}:out")
    assert "".join(c["data"] for _, c in chunks if c.get("fd") == "1") == "hello from 1\n"


def test_failing_calls_are_failed_with_a_clear_error(r, prefix, start_worker) -> None:
    start_worker()
    boom = place(r, prefix, "w1", Spec.for_call("tasks:boom"))
    not_json = place(r, prefix, "w1", Spec.for_call("tasks:not_json"))
    missing = place(r, prefix, "w1", Spec.for_call("no_such_module:f"))
    dying = place(r, prefix, "w1", Spec.for_call("tasks:die"))
    rec = finished(r, prefix, boom)
    assert (rec.status, rec.exit_code) == (Status.FAILED, 1)
    assert rec.error and rec.error.startswith("Traceback") and "tasks.py" in rec.error
    assert rec.error.rstrip().endswith("ValueError: bad input")
    rec = finished(r, prefix, not_json)
    assert rec.status is Status.FAILED and "not JSON-serialisable" in (rec.error or "")
    rec = finished(r, prefix, missing)
    assert rec.status is Status.FAILED and "cannot import no_such_module:f" in (rec.error or "")
    rec = finished(r, prefix, dying)
    assert (rec.status, rec.exit_code, rec.error) == (Status.FAILED, 137, "worker child died (signal 9)")


@pytest.mark.usefixtures("quick_kill")
def test_watchdog_on_a_call_kills_its_child_and_the_next_call_runs(r, prefix, start_worker, tmp_path) -> None:
    start_worker(concurrency=1)
    warm = finished(r, prefix, place(r, prefix, "w1", Spec.for_call("tasks:info", ["warm"])))
    child = warm.result["pid"]  # the watchdog counts from the start: have the child up before it starts
    pid_file = tmp_path / "pid"
    slow = place(r, prefix, "w1", Spec.for_call("tasks:sleepy", [str(pid_file)]), watchdog=0.5)
    after = place(r, prefix, "w1", Spec.for_call("tasks:info", ["after"]))
    rec = finished(r, prefix, slow)
    assert (rec.status, rec.exit_code, rec.error) == (Status.TIMED_OUT, 124, "watchdog: killed after 0.5 s")
    assert int(pid_file.read_text()) == child and gone(child)
    rec = finished(r, prefix, after)
    assert rec.status is Status.SUCCEEDED and rec.result["pid"] != child


def test_a_late_completion_is_fenced_out(r, prefix, start_worker, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="jobbalancer.worker")
    start_worker()
    go = tmp_path / "go"
    job_id = place(r, prefix, "w1", Spec.for_command(f"while [ ! -e {go} ]; do sleep 0.02; done; echo late"))
    wait_for(lambda: record(r, prefix, job_id).status is Status.RUNNING, 5)
    r.hset(f"{prefix}:job:{job_id}", "attempts", "7")  # as if a balancer had re-run it meanwhile
    go.touch()
    wait_for(lambda: "fenced out" in caplog.text, 5, what="the fenced-out log line")
    rec = record(r, prefix, job_id)
    assert (rec.status, rec.attempts, rec.exit_code, rec.stdout) == (Status.RUNNING, 7, None, "")


def test_output_beyond_the_cap_keeps_the_tail_with_a_marker(r, prefix, start_worker) -> None:
    r.hset(f"{prefix}:config", "output_cap", "100")
    start_worker()
    command = "head -c 1000 /dev/zero | tr '\\0' x; printf abc; head -c 50 /dev/zero | tr '\\0' y >&2"
    rec = finished(r, prefix, place(r, prefix, "w1", Spec.for_command(command)))
    assert rec.stdout == "[jobbalancer: 903 earlier bytes truncated]\n" + "x" * 97 + "abc"
    assert rec.stderr == "y" * 50


@pytest.mark.usefixtures("quick_kill")
def test_graceful_stop_finishes_running_jobs_and_hands_back_the_rest(r, prefix, start_worker, tmp_path) -> None:
    worker = start_worker(concurrency=2, shutdown_timeout_s=1.0)
    go = tmp_path / "go"
    finishing = place(r, prefix, "w1", Spec.for_command(f"while [ ! -e {go} ]; do sleep 0.02; done; echo done"))
    overrunning = place(r, prefix, "w1", Spec.for_command("sleep 1000"))
    for job_id in (finishing, overrunning):
        wait_for(lambda job_id=job_id: record(r, prefix, job_id).status is Status.RUNNING, 5)
    unread = place(r, prefix, "w1", Spec.for_command("echo never"))
    worker.worker.stop()
    wait_for(lambda: r.hget(f"{prefix}:w:w1", "state") == "draining", 5)
    go.touch()
    worker.thread.join(10)
    assert not worker.thread.is_alive() and not worker.errors
    assert (record(r, prefix, finishing).status, record(r, prefix, finishing).stdout) == (Status.SUCCEEDED, "done\n")
    for job_id in (overrunning, unread):
        assert record(r, prefix, job_id).status is Status.QUEUED
        assert any(m.endswith(job_id) for m in r.zrange(f"{prefix}:waiting:default", 0, -1))
    assert not job_processes(overrunning)
    assert r.zscore(f"{prefix}:workers", "w1") is None and not r.exists(f"{prefix}:w:w1")


@pytest.mark.usefixtures("quick_kill")
@pytest.mark.usefixtures("quick_kill")
def test_a_graceful_stop_kills_an_idle_workers_first_job_after_the_shutdown_timeout(r, prefix, start_worker) -> None:
    # The first job to reach an idle worker is run by the thread whose wait received it; that must
    # never be the thread that drains, or nothing would kill the job once the timeout passed.
    worker = start_worker(concurrency=1, shutdown_timeout_s=0.5)
    job_id = place(r, prefix, "w1", Spec.for_command("sleep 1000"))
    wait_for(lambda: job_processes(job_id), 5)
    worker.stop()  # joins the worker's thread (15 s at most) and asserts it ended cleanly
    assert not job_processes(job_id)
    assert record(r, prefix, job_id).status is Status.QUEUED  # handed back, to run again elsewhere


def test_a_reclaimed_worker_kills_its_jobs_quietly_and_carries_on(r, prefix, start_worker, caplog) -> None:
    start_worker()
    job_id = place(r, prefix, "w1", Spec.for_command("sleep 1000"))
    wait_for(lambda: job_processes(job_id), 5)
    Scripts(r).release(prefix, "", "w1", "lost", "1")  # what a balancer does to a worker it thinks dead
    wait_for(lambda: not job_processes(job_id), 5, what="the reclaimed job killed here")
    assert "declared it dead" in caplog.text
    rec = record(r, prefix, job_id)
    assert (rec.status, r.hget(f"{prefix}:job:{job_id}", "lost")) == (Status.QUEUED, "1")
    later = place(r, prefix, "w1", Spec.for_command("echo again"))  # its stream is gone: NOGROUP, reopened
    assert finished(r, prefix, later).stdout == "again\n"


WORKER_SCRIPT = """
import logging, sys
from jobbalancer.worker import Worker
logging.basicConfig(level=logging.INFO)
url, prefix, name, path = sys.argv[1:]
worker = Worker(url, prefix, name=name, concurrency=1, paths=[path], heartbeat_s=0.1)
worker.install_signal_handlers()
worker.run()
"""


def spawn_worker(redis_url: str, prefix: str, tmp_path: Path, r: redis.Redis) -> subprocess.Popen[bytes]:
    (tmp_path / "tasks.py").write_text(TASKS)
    log_file = (tmp_path / "worker.log").open("ab")
    argv = [sys.executable, "-c", WORKER_SCRIPT, redis_url, prefix, "w1", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=log_file, stderr=log_file)
    log_file.close()
    wait_for(lambda: r.zscore(f"{prefix}:workers", "w1"), 10, what="the worker subprocess registered")
    return proc


def test_a_worker_restarted_under_its_name_settles_what_it_left(r, prefix, redis_url, tmp_path) -> None:
    r.hset(f"{prefix}:config", "heartbeat_timeout", "1")
    proc = spawn_worker(redis_url, prefix, tmp_path, r)
    pid_file = tmp_path / "pid"
    job_id = place(r, prefix, "w1", Spec.for_call("tasks:sleepy", [str(pid_file)]))
    child = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 10, what="the call started"))
    with pytest.raises(WorkerError, match="in use"):
        Worker(redis_url, prefix, name="w1").run()
    proc.kill()
    proc.wait(10)
    wait_for(lambda: gone(child), 5, what="the call child to die with its worker")

    def silent() -> bool:
        secs, micros = r.time()
        return secs * 1000 + micros / 1000 - (r.zscore(f"{prefix}:workers", "w1") or 0) > 1000

    wait_for(silent, 5, what="the killed worker's heartbeat to go stale")
    restarted = Worker(redis_url, prefix, name="w1", heartbeat_s=0.2)
    thread = threading.Thread(target=restarted.run, daemon=True)
    thread.start()
    assert restarted.wait_registered(10)
    rec = record(r, prefix, job_id)
    assert (rec.status, rec.worker, r.hget(f"{prefix}:job:{job_id}", "lost")) == (Status.QUEUED, None, "1")
    restarted.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_sigterm_drains_and_a_second_one_stops_at_once(r, prefix, redis_url, tmp_path) -> None:
    proc = spawn_worker(redis_url, prefix, tmp_path, r)
    job_id = place(r, prefix, "w1", Spec.for_command("sleep 1000"))
    wait_for(lambda: job_processes(job_id), 10)
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: r.hget(f"{prefix}:w:w1", "state") == "draining", 5)
    assert proc.poll() is None  # still letting its job run (shutdown timeout 30 s)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert record(r, prefix, job_id).status is Status.QUEUED  # handed back
    assert r.zscore(f"{prefix}:workers", "w1") is None
    wait_for(lambda: not job_processes(job_id), 2)


def test_refuses_to_run_as_root_unless_allowed(redis_url, prefix, monkeypatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("JB_ALLOW_ROOT", raising=False)
    with pytest.raises(WorkerError, match="JB_ALLOW_ROOT=1"):
        Worker(redis_url, prefix)
    assert Worker(redis_url, prefix, allow_root=True).name.endswith(f"-{os.getpid()}")
    monkeypatch.setenv("JB_ALLOW_ROOT", "1")
    Worker(redis_url, prefix)
