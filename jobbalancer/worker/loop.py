"""The worker: reads its own stream, runs up to ``concurrency`` jobs at once, records each outcome.

The job's way through here: ``take.lua`` reads and starts up to the free slots' worth of entries
in one step (when the stream is empty, a blocking ``XREAD`` with ``take.lua`` behind it; fenced:
a job no longer ours is skipped; ``intake.py``) -> a slot thread runs it (``slots.py``)
-> the slot's next ``take.lua`` records its outcome (fenced: 0 means a balancer re-ran the job
meanwhile) and takes the slot's next jobs, a batch of them while they are short. This module
holds the lifecycle: start, waiting for free slots, stop, hand-back.

Serving (waiting for free slots and taking entries into them) is done by one pool thread at a
time, which moves: the thread whose wait brought jobs runs the first batch itself and another pool
thread serves on, so that a job arriving at an idle worker is run by the thread that received it.
The thread that called ``run`` only waits for serving to end, then drains and hands back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

import redis

from jobbalancer.config import Settings
from jobbalancer.connection import connect, redact
from jobbalancer.errors import JobBalancerError, RedisUnavailable
from jobbalancer.job import EXIT_CANCELLED, Status
from jobbalancer.keys import WORKER_GROUP, Keys
from jobbalancer.scripts import Scripts
from jobbalancer.worker.call_pool import CallPool
from jobbalancer.worker.control import Blocking, Control
from jobbalancer.worker.guardian import Guardian
from jobbalancer.worker.heartbeat import Heartbeat
from jobbalancer.worker.intake import Intake
from jobbalancer.worker.recorder import Recorder
from jobbalancer.worker.running import Assignment, Context, JobRun, Outcome, StopReason

log = logging.getLogger("jobbalancer.worker")

MAX_BACKOFF_S = 5.0
BEAT_REPLY_TIMEOUT_S = 2.0
REPLY_TIMEOUT_S = 5.0  # above every blocking read's BLOCK (1 s), like the balancer's own 5 s


class WorkerError(JobBalancerError):
    """The worker refuses to start: running as root without permission, or its name is in use."""


def _refuse_root(allow_root: bool) -> None:
    if os.geteuid() == 0 and not allow_root and os.environ.get("JB_ALLOW_ROOT") != "1":
        raise WorkerError(
            "refusing to run jobs as root: every job would run with full control of this machine. "
            "Run the worker as an unprivileged user, or allow it explicitly with --allow-root "
            "(Worker(allow_root=True)) or JB_ALLOW_ROOT=1."
        )


class Worker(Intake):
    """A worker process's engine: one stream of assigned jobs, ``concurrency`` slots.

    Args:
        url: Redis URL.
        prefix: key prefix.
        name: unique worker name [default ``<hostname>-<pid>``]; reuse it to settle a previous run's jobs.
        concurrency: slots: jobs run at once.
        queues: queues this worker serves.
        paths: directories put first on ``sys.path`` of the children that run call jobs.
        heartbeat_s: seconds between heartbeats.
        shutdown_timeout_s: how long a graceful stop lets running jobs finish before killing them.
        allow_root: run even as root (also allowed by ``JB_ALLOW_ROOT=1``).

    Raises:
        WorkerError: running as root without permission, or a name that is not usable.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        name: str | None = None,
        concurrency: int = os.cpu_count() or 2,
        queues: Sequence[str] = ("default",),
        paths: Sequence[str] = (),
        heartbeat_s: float = 1.0,
        shutdown_timeout_s: float = 30.0,
        allow_root: bool = False,
    ) -> None:
        _refuse_root(allow_root)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        if any(ch.isspace() for ch in self.name) or not (concurrency >= 1 and heartbeat_s > 0 and queues):
            raise WorkerError("a worker needs a name without spaces, concurrency >= 1, heartbeat > 0 and a queue")
        self.url, self.prefix, self.concurrency = url, prefix, concurrency
        self.shutdown_timeout_s = shutdown_timeout_s
        self.registered = threading.Event()
        self.keys = Keys(prefix)
        # A reply that never comes (a partition drops packets silently) fails the call, which the
        # callers retry on a new connection; without a timeout it waits out TCP's retransmissions.
        self._client = connect(url, check=False, socket_timeout_s=REPLY_TIMEOUT_S)
        self._scripts = Scripts(self._client)
        self._cond = threading.Condition(threading.RLock())
        self._running: dict[str, JobRun] = {}
        self._busy = 0  # slots taken: jobs running plus entries being started
        self._stopping = False  # take no new jobs
        self._drained = False  # told to drain: the heartbeat says "draining", so the balancer sends nothing new
        self._cold = False  # do not wait for running jobs
        self._signals = 0
        self._ran = False
        self._reader: Blocking | None = None
        self._recover = False  # a job thread lost a take's reply
        self._want = 1  # jobs per slot in the slots' last batches (slots.next_take)
        self._delivered: str | None = None  # where an idle wait for the next entry starts (intake.py)
        facts = {"queues": ",".join(queues), "slots": str(concurrency), "started_at": f"{time.time():.6f}"}
        # The heartbeat's own, shorter timeout: cut off, the worker says so soon, and after the link
        # heals it beats on a new connection at once instead of at TCP's next retransmission.
        self._beat_client = connect(url, check=False, socket_timeout_s=BEAT_REPLY_TIMEOUT_S)
        self._heartbeat = Heartbeat(
            Scripts(self._beat_client), prefix, self.name, facts, heartbeat_s, self._live_facts, self._on_reclaimed
        )
        self._control = Control(self._client, self.keys.worker_ctl(self.name), self._on_cancel, self._on_drain)
        # a thread for each slot, and one for serving when the thread that served runs a batch
        self._executor = ThreadPoolExecutor(max_workers=concurrency + 1, thread_name_prefix=f"jb-job-{self.name}")
        self._served = threading.Event()  # serving has ended (stopped, or failed: _serve_error)
        self._serve_error: BaseException | None = None
        self._guardian = Guardian()
        self._calls = CallPool(os.getcwd(), paths, self._guardian)
        self._ctx = Context(self._client, self._scripts, self.keys, self.name, self.settings, self._guardian)
        self._recorder = Recorder(self._ctx)

    def settings(self) -> Settings:
        """The live cluster settings, as of the last heartbeat."""
        return self._heartbeat.settings

    def wait_registered(self, timeout: float | None = None) -> bool:
        """Wait until the first heartbeat is in; True when it is."""
        return self.registered.wait(timeout)

    def run(self) -> None:
        """Serve jobs until stopped; then drain, hand back what is left, unregister. Call once.

        Raises:
            WorkerError: a live worker already uses this name.
            RedisUnavailable: Redis did not answer at start.
        """
        if self._ran:
            raise WorkerError("Worker.run() can be called once; make a new Worker to run again")
        self._ran = True
        with contextlib.ExitStack() as stack:
            stack.callback(self._client.close)
            stack.callback(self._beat_client.close)
            self._guardian.start()
            stack.callback(self._guardian.close)
            try:
                self._refuse_live_name()
                self._settle()
                stack.callback(self._hand_back)
                self._recorder.start()
                stack.callback(self._recorder.close)  # every outcome is written before the hand-back
                self._heartbeat.beat()
                stack.callback(self._heartbeat.stop)
                stack.callback(self._control.stop)
                self._control.start()
                self._reader = Blocking(self._client)
                stack.callback(self._close_reader)
                self._reader.refresh()
            except redis.AuthenticationError as exc:  # a ConnectionError to redis-py, but no retry will help
                raise RedisUnavailable(f"Redis at {redact(self.url)} refused the credentials: {exc}") from None
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise RedisUnavailable(f"cannot reach Redis at {redact(self.url)}: {exc}") from None
            self._heartbeat.start()
            stack.callback(self._calls.close)
            stack.callback(self._executor.shutdown)
            stack.callback(self._drain)
            self.registered.set()
            log.info("worker %s: %d slots, ready", self.name, self.concurrency)
            # Serving starts on a pool thread: this one must stay free to drain (and, after the
            # shutdown timeout, kill) the running jobs once serving ends.
            self._executor.submit(self._serve)
            self._served.wait()
            if self._serve_error is not None:
                raise self._serve_error

    def stop(self, graceful: bool = True) -> None:
        """Stop taking jobs. Graceful: running jobs get ``shutdown_timeout_s`` to finish; else killed now.

        Thread-safe; returns at once (``run`` returns when the worker is done).
        """
        with self._cond:
            self._stopping = True
            self._cold = self._cold or not graceful
            runs = list(self._running.values()) if self._cold else []
            self._cond.notify_all()
        for run in runs:
            run.request_kill(StopReason.SHUTDOWN)
        if self._reader is not None:
            self._reader.unblock()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: the first stops gracefully, a second one stops at once. Main thread only."""

        def handle(signum: int, _frame: FrameType | None) -> None:
            self._signals += 1
            graceful = self._signals == 1
            how = "gracefully (again to stop at once)" if graceful else "now, killing running jobs"
            log.warning("worker %s: %s, stopping %s", self.name, signal.Signals(signum).name, how)
            # stop() takes locks the interrupted code may hold; a thread of its own cannot deadlock on them.
            threading.Thread(target=self.stop, args=(graceful,), name="jb-stop", daemon=True).start()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    # -- start and stop ------------------------------------------------------------------------

    def _refuse_live_name(self) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.zscore(self.keys.workers, self.name)
        pipe.hmget(self.keys.worker(self.name), "host", "pid")
        pipe.time()
        pipe.hgetall(self.keys.config)
        score, (host, pid), (secs, micros), config = pipe.execute()
        if score is None:
            return
        age_s = (int(secs) * 1000 + int(micros) // 1000 - float(score)) / 1000
        ours = (socket.gethostname(), str(os.getpid()))  # this process again (a restart in place) is fine
        if age_s < Settings.from_hash(config).heartbeat_timeout and (host, pid) != ours:
            raise WorkerError(
                f"worker name {self.name!r} is in use: pid {pid} on {host} sent a heartbeat {age_s:.1f} s ago. "
                "Choose another name, or stop that worker first."
            )

    def _settle(self) -> None:
        """Take back what an earlier run under this name left in its stream, then open the stream."""
        counts = self._scripts.release(self.prefix, "", self.name, "lost", "0")
        if any(int(n) for n in counts):
            requeued, failed, timed_out, cancelled = (int(n) for n in counts)
            log.warning(
                "worker %s: settled what its previous run left: %d re-queued, %d failed, %d timed out, %d cancelled",
                *(self.name, requeued, failed, timed_out, cancelled),
            )
        self._create_group()

    def _create_group(self) -> None:
        try:
            self._client.xgroup_create(self.keys.worker_jobs(self.name), WORKER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    def _drain(self) -> None:
        """Let running jobs finish (graceful, up to the timeout), then kill the rest and wait for them."""
        deadline = time.monotonic() + self.shutdown_timeout_s
        with self._cond:
            self._stopping = True  # also when run() ends by an error: the heartbeat says "draining"
            while self._busy and not self._cold and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            for run in self._running.values():
                run.request_kill(StopReason.SHUTDOWN)
            while self._busy:
                self._cond.wait()

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None  # a late stop() must not reach a closed connection
        if reader is not None:
            reader.close()

    def _hand_back(self) -> None:
        try:
            counts = self._scripts.release(self.prefix, "", self.name, "handback", "1")
        except redis.RedisError as exc:
            log.error("worker %s: could not hand back its jobs (%s); a balancer will reclaim them", self.name, exc)
            return
        log.info("worker %s stopped; handed back %d job(s)", self.name, int(counts[0]))

    # -- taking jobs ---------------------------------------------------------------------------

    def _serve(self) -> None:
        """Serve until the worker stops or a wait brings jobs: then a pool thread serves on, and
        this thread runs the first batch of them as a slot thread would."""
        try:
            kept = self._serve_until_handed_on()
        except BaseException as exc:
            self._serve_error, kept = exc, None
        if kept is None:
            self._served.set()
            return
        self._execute(self._adopt(kept))

    def _serve_until_handed_on(self) -> list[Assignment] | None:
        """The serving loop; returns the batch this thread is to run once a pool thread serves on
        (None: the worker stops)."""
        unstarted: list[Assignment] = []  # read, slots taken, but start.lua's answer was lost
        held = 0  # the slots taken for them
        reopen, recover, backoff = False, False, 0.0
        try:
            while True:
                free = 0 if unstarted else self._wait_for_slots()
                if self._stopping:
                    return None  # entries read but not started stay in the stream: they are handed back
                try:
                    if reopen:
                        self._create_group()
                        reopen, self._delivered = False, None
                    if recover or self._recover:  # a reply was lost: what did we read and not run?
                        self._recover = False
                        self._free_slots(held)  # what was unstarted is read again, with the rest
                        unstarted, held = [], 0
                        unstarted = self._read_pending()
                        held, recover = len(unstarted), False
                    if unstarted:
                        self._restart(unstarted, held)
                    elif self._delivered is not None or not self._take(free):
                        kept = self._wait_and_take(free)  # at once if entries came after the last seen
                        if kept:
                            self._executor.submit(self._serve)
                            return kept
                    unstarted, held, backoff = [], 0, 0.0
                except redis.RedisError as exc:
                    # NOGROUP: a balancer reclaimed this worker while it stalled and deleted its stream.
                    # From take.lua the error reads "Error running script ...: NOGROUP ...", hence `in`.
                    reopen = isinstance(exc, redis.ResponseError) and "NOGROUP" in str(exc)
                    # A lost reply, or a script that failed part-way, may have started jobs it never
                    # handed over: the next round looks for entries read but not run.
                    recover = not reopen
                    backoff = self._back_off(exc, 0.0 if reopen else backoff)
        finally:
            self._free_slots(held)

    def _back_off(self, exc: redis.RedisError, backoff: float) -> float:
        """Wait a little longer each time Redis fails (up to MAX_BACKOFF_S), or until a stop."""
        backoff = min(MAX_BACKOFF_S, max(0.05, backoff * 2))
        log.warning("worker %s: %s; reading again in %.2f s", self.name, exc, backoff)
        with self._cond:
            self._cond.wait_for(lambda: self._stopping, backoff)
        assert self._reader is not None
        self._reader.refresh()
        return backoff

    def _wait_for_slots(self) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self._busy < self.concurrency or self._stopping)
            return self.concurrency - self._busy

    def _free_slots(self, n: int) -> None:
        with self._cond:
            self._busy -= n
            self._cond.notify_all()

    # -- callbacks from the heartbeat and control threads --------------------------------------

    def _live_facts(self) -> dict[str, str]:
        # "jobs": the balancer's audit takes back a job whose stream entry is gone once it is not listed here
        with self._cond:
            jobs = " ".join(self._running)
        state = "draining" if self._stopping or self._drained else "running"
        return {"running": str(self._busy), "state": state, "jobs": jobs}

    def _on_drain(self, drain: bool) -> None:
        self._drained = drain
        log.info("worker %s: %s", self.name, "draining: takes no new jobs" if drain else "takes new jobs again")
        with contextlib.suppress(redis.RedisError):  # say so now; else the next regular beat does
            self._heartbeat.beat()

    def _on_reclaimed(self) -> None:
        with self._cond:
            runs = list(self._running.values())
        log.warning(
            "worker %s: a balancer declared it dead and re-ran its jobs; killing its %d running job(s) here",
            *(self.name, len(runs)),
        )
        for run in runs:
            run.request_kill(StopReason.LOST)

    def _on_cancel(self, job_id: str, attempt: str) -> None:
        with self._cond:
            run = self._running.get(job_id)
        if run is not None and run.assignment.attempt == attempt:
            log.info("job %s attempt %s: cancel requested", job_id, attempt)
            if run.settle_unbegun():  # it waits behind others of its batch: cancelled now, not in its turn
                self._recorder.record(run.assignment, Outcome(Status.CANCELLED, EXIT_CANCELLED, "cancelled"))
            else:
                run.request_kill(StopReason.CANCEL)
