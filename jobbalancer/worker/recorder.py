"""Recording outcomes apart from taking jobs: many per ``take.lua`` call (count 0), on a thread of its own.

Slot threads record their outcomes with their next take; they hand them here when they take no
more (the worker is stopping) or Redis failed them. The recorder writes whatever outcomes have
piled up in one script call. While Redis is away it retries, for up to a minute, with
growing pauses. The worker closes it (which flushes) before handing back what it still holds, so no
outcome is left unwritten when ``release.lua`` runs.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import redis

from jobbalancer.worker.running import Assignment, Context, Outcome

log = logging.getLogger("jobbalancer.worker")

MAX_BATCH = 256
# How long outcomes wait for Redis to come back before they are given up (the job then re-runs),
# trying again after pauses that double from 0.2 s up to 5 s. A Redis restart takes seconds; an
# outcome lost to a short outage would run its job twice.
WRITE_FOR_S = 60.0
MAX_PAUSE_S = 5.0
Item = tuple[Assignment, Outcome]


class Recorder:
    """Writes outcomes in batches; ``record`` never blocks on Redis."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._unwritten: set[str] = set()  # stream entries whose outcome is handed over, not yet written
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"jb-recorder-{ctx.worker}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def record(self, job: Assignment, outcome: Outcome) -> None:
        with self._lock:
            self._unwritten.add(job.entry)
        self._queue.put((job, outcome))

    def unwritten(self) -> set[str]:
        """Entries of jobs that have ended here but whose outcome is not written yet."""
        with self._lock:
            return set(self._unwritten)

    def close(self) -> None:
        """Write everything handed over so far, then stop."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[Item] = []
            while item is not None:
                batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(batch)
                with self._lock:
                    self._unwritten.difference_update(job.entry for job, _outcome in batch)
            if item is None:
                return

    def _write(self, batch: list[Item]) -> None:
        ctx = self._ctx
        delay, give_up = 0.2, time.monotonic() + WRITE_FOR_S
        args = [arg for job, outcome in batch for arg in outcome_args(job, outcome)]
        while True:
            try:
                answers: list[Any] = ctx.scripts.take(ctx.keys.prefix, ctx.worker, 0, *args)[0]
                break
            except redis.ResponseError as exc:
                answers = [exc] * len(batch)
                break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() + delay > give_up:
                    for job, outcome in batch:
                        log.error(
                            "job %s attempt %s: outcome %s lost; the job re-runs when reclaimed",
                            *(job.id, job.attempt, outcome.status),
                        )
                    return
                log.warning("worker %s: cannot record %d outcome(s) yet (%s)", ctx.worker, len(batch), exc)
                time.sleep(delay)  # bounded; jobs keep running meanwhile, only their records wait
                delay = min(MAX_PAUSE_S, delay * 2)
        for (job, outcome), answer in zip(batch, answers, strict=True):
            report(job, outcome, answer)


def outcome_args(job: Assignment, outcome: Outcome) -> list[str]:
    """The nine fields of one outcome, as take.lua (and complete.lua after its prefix and worker) take them."""
    code = "" if outcome.exit_code is None else str(outcome.exit_code)
    return [job.id, job.attempt, job.entry, outcome.status.value, code] + [
        outcome.error,
        outcome.result,
        outcome.stdout,
        outcome.stderr,
    ]


def report(job: Assignment, outcome: Outcome, answer: object) -> None:
    """Log what complete.lua answered for one outcome."""
    if isinstance(answer, Exception):
        log.error("job %s attempt %s: recording its outcome failed: %s", job.id, job.attempt, answer)
    elif int(str(answer)) == 0:
        log.info("job %s attempt %s: fenced out (no longer this worker's); outcome dropped", job.id, job.attempt)
    else:
        what = "re-queued for a retry" if int(str(answer)) == 2 else outcome.status.value
        log.debug("job %s attempt %s: %s", job.id, job.attempt, what)
