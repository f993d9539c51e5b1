"""rq: two ``rq worker`` processes, the default forking ``Worker`` or ``SimpleWorker`` (no fork).

Done is counted with rq's own bookkeeping, its finished and failed job registries (rq keeps
results for 500 s by default). Submitting uses ``Queue.enqueue_many``, one pipeline.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry

QUEUE = "bench"
WORKERS = 2
CLASSES = {"fork": "rq.Worker", "simple": "rq.worker.SimpleWorker"}


def noop() -> bool:
    return True


def run_true() -> bool:
    subprocess.run(["true"], check=True)
    return True


class Peer:
    def __init__(self, url: str, variant: str) -> None:
        self.url = url
        self.worker_class = CLASSES[variant]
        self.conn = Redis.from_url(url)
        self.queue = Queue(QUEUE, connection=self.conn)
        self.finished_key = FinishedJobRegistry(queue=self.queue).key
        self.failed_key = FailedJobRegistry(queue=self.queue).key
        self.slots = WORKERS
        self.label = "rq {version} " + ("SimpleWorker" if variant == "simple" else "Worker (fork)")
        self.setup = f"{WORKERS} × `rq worker --worker-class {self.worker_class}`"
        self.base = (0, 0)

    def worker_commands(self, bin_dir: Path) -> list[list[str]]:
        argv = [str(bin_dir / "rq"), "worker", "--url", self.url, "--worker-class", self.worker_class, QUEUE]
        return [argv] * WORKERS

    def counts(self) -> tuple[int, int]:
        pipe = self.conn.pipeline(transaction=False)
        pipe.zcard(self.finished_key)
        pipe.zcard(self.failed_key)
        finished, failed = pipe.execute()
        return int(finished), int(failed)

    def reset(self) -> None:
        self.base = self.counts()

    def submit(self, kind: str, count: int) -> None:
        func = noop if kind == "noop" else run_true
        self.queue.enqueue_many([Queue.prepare_data(func) for _ in range(count)])

    def finished(self, count: int) -> bool:
        finished, failed = self.counts()
        return finished + failed - sum(self.base) >= count

    def failures(self) -> int:
        return self.counts()[1] - self.base[1]
