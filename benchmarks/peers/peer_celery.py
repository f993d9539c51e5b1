"""Celery: one ``celery worker`` with the default prefork pool (concurrency = CPU count), Redis broker.

Results go to Redis too (``backend=`` the same URL), the usual pairing; done is counted by the
result keys ``celery-task-meta-<id>``, oldest first. Submitting calls ``apply_async`` with one
producer, Celery's way to send many.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from celery import Celery

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CHECK_BATCH = 500

app = Celery("peer_celery", broker=URL, backend=URL)


@app.task(name="bench.noop")
def noop() -> bool:
    return True


@app.task(name="bench.true")
def run_true() -> bool:
    subprocess.run(["true"], check=True)
    return True


class Peer:
    def __init__(self, url: str, variant: str) -> None:
        self.slots = os.cpu_count() or 2
        self.label = "Celery {version}"
        self.setup = f"`celery worker` (prefork, concurrency {self.slots}), Redis broker and result backend"
        self.conn = app.backend.client
        self.keys: list[str] = []
        self.done = 0

    def worker_commands(self, bin_dir: Path) -> list[list[str]]:
        return [[str(bin_dir / "celery"), "--app", "peer_celery", "worker"]]

    def reset(self) -> None:
        self.keys, self.done = [], 0

    def submit(self, kind: str, count: int) -> None:
        task = noop if kind == "noop" else run_true
        with app.producer_or_acquire() as producer:
            ids = [task.apply_async(producer=producer).id for _ in range(count)]
        self.keys = [f"celery-task-meta-{task_id}" for task_id in ids]

    def finished(self, count: int) -> bool:
        while self.done < len(self.keys):
            batch = self.keys[self.done : self.done + CHECK_BATCH]
            if int(self.conn.exists(*batch)) < len(batch):
                return False
            self.done += len(batch)
        return True

    def failures(self) -> int:
        failed = 0
        for offset in range(0, len(self.keys), CHECK_BATCH):
            for raw in self.conn.mget(self.keys[offset : offset + CHECK_BATCH]):
                failed += raw is None or json.loads(raw).get("status") != "SUCCESS"
        return failed
