"""The chaos harness: a cluster of real processes on a Redis of its own, faults, and the checks.

Every job a chaos test submits is a shell command that first appends ``JOB_ID ATTEMPT PID`` to a
ledger file, so each execution leaves a line, and carries ``JB_CHAOS=<token>`` in its environment,
so any process it started (however it escaped) can be found afterwards. A thread follows
``<p>:events``: the checks count terminal statuses from it and time re-runs against the faults.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from jobbalancer import Client, Status
from jobbalancer.job import TERMINAL, Options, Spec
from jobbalancer.server import EmbeddedRedis
from tests.chaos.observe import SUMMARIES, Event, EventLog, Execution, Fault, Summary, chaos_processes
from tests.helpers import REPO, free_port, stop_processes, wait_for

LONG = os.environ.get("JB_CHAOS_LONG") == "1"
"""``make chaos`` sets ``JB_CHAOS_LONG=1``: more jobs, more faults, longer outages."""

HEARTBEAT_TIMEOUT_S = 2.0
HEARTBEAT_S = 0.25
# A dead worker's jobs must run again within the heartbeat timeout plus one balancer pass. The
# pass is the maintenance tick (0.5 s) plus the time to place and start the job; the slack absorbs
# a 2-core machine shared with other test runs.
RECLAIM_SLACK_S = 1.5
WORKER_FAULTS = frozenset({"SIGKILL worker", "SIGSTOP worker", "SIGTERM worker", "poison"})


@dataclass
class ChaosCluster:
    """A Redis (``appendfsync always``), balancers and workers as processes, for one test."""

    tmp: Path
    heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S
    settings: Mapping[str, str] = field(default_factory=dict)
    prefix: str = "chaos"
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    accepted: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    takeovers_s: list[float] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.redis = EmbeddedRedis(self.tmp / "redis", free_port(), fsync="always").start()
        self.url = self.redis.url
        self.ledger = self.tmp / "ledger"
        self.ledger.touch()
        self.client = Client(self.url, self.prefix)
        config = {"heartbeat_timeout": str(self.heartbeat_timeout_s), "kill_grace": "0.5", **self.settings}
        self.client.redis.hset(f"{self.prefix}:config", mapping=config)
        self.events = EventLog(self.url, f"{self.prefix}:events")

    # -- processes ----------------------------------------------------------------------------

    def spawn(self, label: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{label}.log", "ab")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        argv = [sys.executable, "-m", "jobbalancer", "--redis", self.url, "--prefix", self.prefix, *args]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.procs[label] = proc
        return proc

    def worker(self, name: str, concurrency: int = 2, *extra: str, wait: bool = True) -> subprocess.Popen[bytes]:
        proc = self.spawn(
            name, "worker", "--name", name, "--concurrency", str(concurrency), "--heartbeat", str(HEARTBEAT_S), *extra
        )
        if wait:
            self.wait_registered(name)
        return proc

    def wait_registered(self, *names: str) -> None:
        for name in names:
            wait_for(lambda n=name: self.client.redis.zscore(f"{self.prefix}:workers", n), 20, what=f"worker {name}")

    def balancer(self, name: str = "b1") -> subprocess.Popen[bytes]:
        return self.spawn(name, "balancer", "--name", name)

    def leader(self) -> str | None:
        token = self.client.redis.get(f"{self.prefix}:leader")
        return str(token).split(":", 1)[1] if token else None

    def wait_leader(self, name: str, timeout: float = 20) -> None:
        wait_for(lambda: self.leader() == name, timeout, what=f"balancer {name} to lead")

    def signal(self, label: str, sig: signal.Signals, kind: str | None = None) -> None:
        """Send ``sig`` to one process and note it as a fault (kind: e.g. ``SIGKILL worker``)."""
        self.procs[label].send_signal(sig)
        if kind:
            self.faults.append(Fault(time.time(), kind, label))

    def log(self, label: str) -> str:
        return (self.tmp / f"{label}.log").read_text(errors="replace")

    def alive(self, label: str) -> bool:
        return self.procs[label].poll() is None

    # -- jobs ---------------------------------------------------------------------------------

    def command(self, seconds: float, then: str = "") -> str:
        """A job that leaves a ledger line for each execution, sleeps, then runs ``then``."""
        return f'echo "$JB_JOB_ID $JB_ATTEMPT $$" >> {self.ledger}; sleep {seconds}{"; " + then if then else ""}'

    def submit(self, n: int, seconds: float, then: str = "", **options: Any) -> list[str]:
        """Submit ``n`` ledger jobs in one round trip; their ids count as accepted once it returns."""
        spec = Spec.for_command(self.command(seconds, then), env={"JB_CHAOS": self.token})
        jobs = self.client.submit_many([(spec, Options(**options))] * n)
        ids = [job.id for job in jobs]
        self.accepted += ids
        return ids

    def submit_one(self, command: str, **options: Any) -> str:
        spec = Spec.for_command(command, env={"JB_CHAOS": self.token})
        job_id = self.client.submit_many([(spec, Options(**options))])[0].id
        self.accepted.append(job_id)
        return job_id

    def statuses(self, ids: Iterable[str]) -> dict[str, str | None]:
        ids = list(ids)
        pipe = self.client.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(f"{self.prefix}:job:{job_id}", "status")
        return dict(zip(ids, pipe.execute(), strict=True))

    def running_on(self, worker: str) -> dict[str, str]:
        """Job id -> attempt of the jobs the records say run on ``worker``."""
        out = {}
        for job_id in self.accepted:
            status, owner, attempt = self.client.redis.hmget(
                f"{self.prefix}:job:{job_id}", "status", "worker", "attempts"
            )
            if status == Status.RUNNING and owner == worker:
                out[job_id] = attempt
        return out

    def executions(self) -> list[Execution]:
        rows = [line.split() for line in self.ledger.read_text().splitlines() if line.strip()]
        return [Execution(job, int(attempt), int(pid)) for job, attempt, pid in rows]

    def job_processes(self, jobs: Mapping[str, str] | None = None) -> list[psutil.Process]:
        """Live processes of our jobs; with ``jobs`` (id -> attempt), only of those attempts."""
        return [
            proc
            for proc, env in chaos_processes(self.token)
            if jobs is None or jobs.get(env.get("JB_JOB_ID", "")) == env.get("JB_ATTEMPT")
        ]

    def wait_finished(self, ids: Iterable[str], timeout: float) -> dict[str, str | None]:
        """Wait until every job is terminal (or the timeout passes); return their statuses."""
        ids = list(ids)
        deadline = time.monotonic() + timeout
        while True:
            statuses = self.statuses(ids)
            if all(s in TERMINAL for s in statuses.values()) or time.monotonic() > deadline:
                return statuses
            time.sleep(0.1)

    # -- the checks ---------------------------------------------------------------------------

    def verify(
        self,
        name: str,
        *,
        timeout: float = 60,
        expect: Mapping[str, Status] | None = None,
        max_duplicates: int | None = None,
    ) -> Summary:
        """Check every invariant the chaos suite promises; return (and keep) the run's summary.

        Args:
            name: the run's name in the summary.
            timeout: how long the accepted jobs may take to finish.
            expect: a status other than succeeded for some jobs.
            max_duplicates: fail when more executions than this were duplicates.
        """
        expect = dict(expect or {})
        statuses = self.wait_finished(self.accepted, timeout)
        unfinished = {j: s for j, s in statuses.items() if s not in TERMINAL}
        wrong = {j: s for j, s in statuses.items() if s in TERMINAL and s != expect.get(j, Status.SUCCEEDED)}
        errors = {j: self.client.redis.hget(f"{self.prefix}:job:{j}", "error") for j in wrong}
        wait_for(self.events.caught_up, 10, what="the event log to catch up")
        terminal_events = Counter(e.job_id for e in self.events.events if e.status in TERMINAL)
        not_once = {j: terminal_events[j] for j in self.accepted if terminal_events[j] != 1}
        duplicates, unexplained = self._duplicates()
        orphans = self._orphans()
        zombies = self._zombies()
        summary = Summary(
            name, len(self.accepted), len(unfinished), duplicates, self.reclaim_times(), self.takeovers_s,
            len(orphans), len(zombies),
        )  # fmt: skip
        SUMMARIES.append(summary)
        print(f"\n[chaos {name}] {summary.line()}")
        assert not unfinished, f"jobs lost or stuck: {unfinished}"
        assert not wrong, f"jobs ended in an unexpected status: {wrong}; errors {errors}"
        assert not not_once, f"jobs without exactly one terminal status event: {not_once}"
        assert not unexplained, f"duplicate executions not explained by a reclaim: {unexplained}"
        assert not orphans, f"job processes left running: {orphans}"
        assert not zombies, f"zombies under cluster processes: {zombies}"
        if max_duplicates is not None:
            assert duplicates <= max_duplicates, f"{duplicates} duplicate executions, at most {max_duplicates} allowed"
        return summary

    def _duplicates(self) -> tuple[int, dict[str, list[int]]]:
        """Executions beyond the first of each job; and jobs whose executions a reclaim does not explain.

        A re-run is explained when it ran under a newer attempt (each attempt is one assignment,
        so a second assignment happened: a reclaim, a hand-back or a retry) that the record knows.
        """
        by_job: dict[str, list[int]] = defaultdict(list)
        for execution in self.executions():
            by_job[execution.job_id].append(execution.attempt)
        duplicates = sum(len(attempts) - 1 for attempts in by_job.values())
        unexplained = {}
        for job_id, attempts in by_job.items():
            recorded = int(self.client.redis.hget(f"{self.prefix}:job:{job_id}", "attempts") or 0)
            if len(set(attempts)) != len(attempts) or max(attempts) > recorded:
                unexplained[job_id] = attempts
        return duplicates, unexplained

    def _orphans(self) -> list[psutil.Process]:
        """Job processes still alive once every job is finished (they get 3 s to go)."""
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not self.job_processes(), 3, interval=0.1)
        return self.job_processes()

    def _zombies(self) -> list[psutil.Process]:
        """Zombies whose parent is one of the cluster's live processes: a child nobody reaped."""
        found = []
        for proc in self.procs.values():
            if proc.poll() is not None:
                continue
            with contextlib.suppress(psutil.Error):
                found += [c for c in psutil.Process(proc.pid).children(recursive=True) if _is_zombie(c)]
        return found

    def reclaim_times(self) -> list[float]:
        """Per re-run caused by a worker fault: seconds from the fault to the job running again.

        The fault is the last one that hit the worker of the previous run, while that run was on.
        """
        faults: dict[str, list[float]] = defaultdict(list)
        for fault in self.faults:
            if fault.kind in WORKER_FAULTS:
                faults[fault.target].append(fault.at)
        runs: dict[str, list[Event]] = defaultdict(list)
        for event in list(self.events.events):
            if event.status == Status.RUNNING:
                runs[event.job_id].append(event)
        times = []
        for starts in runs.values():
            for previous, started in zip(starts, starts[1:], strict=False):
                hits = [at for at in faults[previous.worker] if previous.at <= at <= started.at]
                if hits:
                    times.append(started.at - hits[-1])
        return times

    def close(self) -> None:
        stop_processes(self.procs.values(), 20)
        for proc in self.job_processes():  # a failed test must not leave its jobs running
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self.events.close()
        self.client.close()
        if self.redis.process is not None and self.redis.process.poll() is None:
            self.redis.process.send_signal(signal.SIGCONT)
        self.redis.stop()
        for log in self._logs:
            log.close()


def _is_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
