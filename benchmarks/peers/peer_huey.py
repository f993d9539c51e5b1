"""Huey: ``huey_consumer`` with 2 worker processes (``-k process -w 2``), ``RedisHuey``.

The tasks return True, so Huey stores each result (its default, ``results=True``) in one hash;
done is that hash's size. Submitting calls the task, one LPUSH per job (Huey has no bulk enqueue).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from huey import RedisHuey

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
WORKERS = 2

huey = RedisHuey("bench", url=URL)


@huey.task()
def noop() -> bool:
    return True


@huey.task()
def run_true() -> bool:
    subprocess.run(["true"], check=True)
    return True


class Peer:
    def __init__(self, url: str, variant: str) -> None:
        self.slots = WORKERS
        self.label = "Huey {version}"
        self.setup = f"`huey_consumer -k process -w {WORKERS}`, RedisHuey (results stored)"
        self.storage = huey.storage

    def worker_commands(self, bin_dir: Path) -> list[list[str]]:
        return [[str(bin_dir / "huey_consumer"), "peer_huey.huey", "-k", "process", "-w", str(WORKERS)]]

    def reset(self) -> None:
        self.storage.flush_results()

    def submit(self, kind: str, count: int) -> None:
        task = noop if kind == "noop" else run_true
        for _ in range(count):
            task()

    def finished(self, count: int) -> bool:
        return huey.result_count() >= count

    def failures(self) -> int:
        values = self.storage.conn.hvals(self.storage.result_key)
        return sum(1 for value in values if huey.serializer.deserialize(value) is not True)
