"""Measuring a jobbalancer cluster from the outside, as ``make bench`` and ``benchmarks/core.py`` do.

- ``jb_up``: run ``jb up`` as a child process, wait until its workers have registered and a
  balancer leads, stop it as Ctrl-C would. Start-up is never part of a measurement.
- ``throughput``: submit a batch in one pipelined round trip and wait for it: jobs per second
  from Redis's ``TIME`` just before the submit to the last ``finished_at``, both Redis's clock,
  so submitting is timed, start-up is not, and how often this side polls does not matter.
- ``latency``: jobs one after the other on an idle cluster: submit→start from the records and
  submit→result as the client sees it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from jobbalancer.bench.follow import End, Tracker
from jobbalancer.bench.report import percentile
from jobbalancer.client import Client
from jobbalancer.connection import connect
from jobbalancer.job import Options, Spec, Status
from jobbalancer.keys import Keys

PREFIX = "jb"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.05
NOOP = "tasks:noop"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def jb_command() -> list[str]:
    """The ``jb`` entry point next to this interpreter, else ``python -m jobbalancer``."""
    script = Path(sys.executable).parent / "jb"
    return [str(script)] if script.exists() else [sys.executable, "-m", "jobbalancer"]


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout_s:.0f}s waiting for {what}")
        time.sleep(POLL_S)


@dataclass(frozen=True)
class UpOptions:
    """How to run ``jb up``: the defaults are ``jb up``'s own, but for two workers.

    Attributes:
        workers: worker processes.
        concurrency: slots per worker; ``jb up``'s default (the CPU count) if None.
        paths: directories for the workers' ``sys.path`` (where ``tasks`` lives).
        allow_root: pass ``--allow-root``.
        own_redis: no Redis answers at the URL: let ``jb up`` start one in a temp dir, and make
            sure it is gone at the end.
    """

    workers: int = 2
    concurrency: int | None = None
    paths: Sequence[str] = ()
    allow_root: bool = False
    own_redis: bool = False


@contextlib.contextmanager
def jb_up(url: str, log_path: Path, options: UpOptions, prefix: str = PREFIX) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``jb up`` against ``url``; yield once its workers are registered and a balancer leads."""
    argv = [*jb_command(), "--redis", url, "--prefix", prefix, "up", "--workers", str(options.workers)]
    if options.concurrency:
        argv += ["--concurrency", str(options.concurrency)]
    for path in options.paths:
        argv += ["--path", str(Path(path).resolve())]
    if options.allow_root:
        argv.append("--allow-root")
    with tempfile.TemporaryDirectory(prefix="jb-bench-") as data_dir, log_path.open("wb") as log:
        argv += ["--data-dir", str(Path(data_dir) / "redis")]
        env = {**os.environ, "JB_REDIS_URL": url, "JB_PREFIX": prefix}
        proc = subprocess.Popen(
            argv, cwd=data_dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            wait_for_cluster(proc, url, prefix, options.workers)
            yield proc
        finally:
            stop(proc, url if options.own_redis else None)


def wait_for_cluster(proc: subprocess.Popen[bytes], url: str, prefix: str, workers: int) -> None:
    keys = Keys(prefix)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"`jb up` exited with {proc.returncode} before the cluster was ready")
        try:
            with connect(url, check=False) as r:  # any URL jb takes, Sentinel too
                return bool(r.zcard(keys.workers) >= workers and r.exists(keys.leader))
        except redis.RedisError:
            return False

    wait_until(ready, START_TIMEOUT_S, f"{workers} workers and a balancer")


def stop(proc: subprocess.Popen[bytes], redis_url: str | None) -> None:
    """SIGINT to jb up's process group, as a terminal's Ctrl-C; escalate if it does not stop.

    Args:
        proc: the ``jb up`` process.
        redis_url: the Redis ``jb up`` started, to shut down if ``jb up`` could not; None for a
            Redis someone else runs.
    """
    for sig, grace_s in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace_s)
    if redis_url is not None:  # the embedded Redis runs in a session of its own
        with contextlib.suppress(redis.RedisError), redis.Redis.from_url(redis_url, socket_connect_timeout=0.5) as r:
            r.shutdown(nosave=True)


def redis_time(client: Client) -> float:
    """Redis's clock, in seconds: the clock every record's times are written by."""
    reply: Any = client.redis.time()
    return float(reply[0]) + float(reply[1]) / 1e6


def drain(tracker: Tracker, ids: Sequence[str], timeout_s: float) -> list[End]:
    """Wait until every job has finished; return how each ended. Make ``tracker`` before submitting."""
    tracker.add(ids)
    tracker.wait(timeout_s)
    return tracker.ends()


@dataclass(frozen=True)
class Throughput:
    """One bulk run: jobs per second end to end, and how fast they went in."""

    jobs: int
    rate: float
    submit_rate: float


def throughput(client: Client, spec: Spec, count: int, what: str) -> Throughput:
    """Submit ``count`` jobs in one pipelined batch and wait for them all.

    Raises:
        RuntimeError: a job did not succeed.
    """
    began = redis_time(client)
    tracker = Tracker(client)
    jobs = client.submit_many((spec, Options()) for _ in range(count))
    done = drain(tracker, [job.id for job in jobs], timeout_s=max(120.0, count / 10))
    failed = [end for end in done if end.status != Status.SUCCEEDED]
    if failed:
        first = client.record(failed[0].id).to_dict()
        raise RuntimeError(f"{len(failed)} {what} jobs did not succeed; first: {first}")
    last_created = max(end.created_at for end in done)
    last_finished = max(end.finished_at for end in done)
    submit_s = last_created - began
    return Throughput(count, count / (last_finished - began), count / submit_s if submit_s > 0 else float("inf"))


def latency(client: Client, count: int) -> dict[str, float]:
    """Run ``count`` no-op calls one at a time; milliseconds, keys ``start_p50``, ``start_p99``,
    ``result_p50``, ``result_p99``.

    Submit→start is ``started_at − created_at`` from the record (both written by Lua with Redis's
    TIME); submit→result is the wall time around ``enqueue`` and ``result()`` as the client sees it.
    """
    start_ms, result_ms = [], []
    for _ in range(count):
        began = time.perf_counter()
        job = client.enqueue(NOOP)
        job.result(timeout=30)
        result_ms.append((time.perf_counter() - began) * 1000)
        rec = job.record()
        start_ms.append(((rec.started_at or 0.0) - (rec.created_at or 0.0)) * 1000)
    return {
        "start_p50": percentile(start_ms, 50),
        "start_p99": percentile(start_ms, 99),
        "result_p50": percentile(result_ms, 50),
        "result_p99": percentile(result_ms, 99),
    }


def slots(client: Client) -> int:
    """The cluster's slots: the sum of its workers' concurrency."""
    return sum(w["concurrency"] or 1 for w in client.workers())


def warm_up(client: Client) -> None:
    """Fill every slot twice with each kind, so that child start-up and imports are not timed."""
    items = [(Spec.for_call(NOOP), Options()), (Spec.for_command("true"), Options())] * (2 * slots(client))
    tracker = Tracker(client)
    jobs = client.submit_many(items)
    drain(tracker, [job.id for job in jobs], timeout_s=60.0)
