"""Celery-style tasks as an application module would define them (workers import it by path)."""

from __future__ import annotations

import os

from jobbalancer.tasks import task


@task(watchdog=30, retries=3, queue="default")
def add(a: int, b: int) -> int:
    return a + b


@task
def whoami() -> str:
    """The id of the job running it (empty when called in-process)."""
    return os.environ.get("JB_JOB_ID", "")


@task(retries=2)
def flaky(marker: str) -> str:
    """Fails on the first two attempts (counted in a file), then succeeds."""
    with open(marker, "a") as out:
        out.write("x")
    with open(marker) as seen:
        attempts = len(seen.read())
    if attempts < 3:
        raise RuntimeError(f"attempt {attempts} fails")
    return f"ok after {attempts}"
