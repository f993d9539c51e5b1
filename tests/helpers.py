"""Small helpers for tests: wait on an observable condition instead of sleeping."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def once_printed(marker: Path, action: Callable[[], object]) -> None:
    """Do ``action`` (from another thread) once the running call has printed and made ``marker``."""
    threading.Thread(target=lambda: (wait_for(marker.exists, 30, what="the call to print"), action())).start()


REPO = Path(__file__).resolve().parent.parent


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], timeout_s: float = 15.0) -> None:
    """SIGCONT (a stopped process cannot act on SIGTERM), then SIGTERM to each live one; SIGKILL stragglers."""
    procs = list(procs)  # iterated twice
    for proc in procs:
        if proc.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGTERM):
                proc.send_signal(sig)
    for proc in procs:
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
