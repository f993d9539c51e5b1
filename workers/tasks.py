"""Example tasks for jobbalancer workers: small, module-level, JSON in and JSON out.

A worker started with ``jb worker --path workers`` can import this module as ``tasks``, so a
client enqueues these by path (``client.enqueue("tasks:fib", 25)``) or, when ``workers/`` is on
its own ``sys.path`` too, by the function itself (``client.enqueue(tasks.fib, 25)``).

Arguments and return values travel as JSON: use numbers, strings, booleans, None, lists and
dicts with string keys.
"""

from __future__ import annotations

import time
from typing import Any


def fib(n: int) -> int:
    """The n-th Fibonacci number, computed the slow recursive way on purpose: a CPU burner.

    Cost grows about 1.6x per step of ``n``: on a 2020s server core ``fib(25)`` takes some 15 ms,
    ``fib(30)`` some 0.2 s, ``fib(35)`` some 2 s.

    Raises:
        ValueError: for a negative ``n``.
    """
    if n < 0:
        raise ValueError(f"fib needs n >= 0, got {n}")
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def sleep(seconds: float) -> float:
    """Sleep for ``seconds`` (an I/O-bound job that uses no CPU) and return how long it slept."""
    started = time.monotonic()
    time.sleep(seconds)
    return time.monotonic() - started


def burn(seconds: float) -> int:
    """Busy-loop on one core for ``seconds`` of wall time; returns the number of loop turns."""
    deadline = time.monotonic() + seconds
    turns = 0
    while time.monotonic() < deadline:
        turns += 1
    return turns


def noop() -> None:
    """Do nothing: the unit of overhead for throughput benchmarks."""


def echo(value: Any) -> Any:
    """Return ``value`` unchanged, after its round trip through JSON."""
    return value


def add(a: float, b: float) -> float:
    """``a + b``: a call with positional arguments."""
    return a + b


def fail(message: str = "task failed on purpose") -> None:
    """Raise ``RuntimeError(message)``: the job ends ``failed`` with the message in its error."""
    raise RuntimeError(message)
