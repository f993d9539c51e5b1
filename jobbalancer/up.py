"""``jb up``: a whole cluster on one machine: Redis (embedded if none answers), a balancer, workers.

Every process is a child in its own session, so Ctrl-C reaches only this supervisor, which then
stops the workers (a graceful drain), the balancer, and last the Redis it started.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from jobbalancer.connection import is_sentinel_url, redact
from jobbalancer.errors import JobBalancerError
from jobbalancer.server import EmbeddedRedis, answers, default_data_dir, host_port

log = logging.getLogger("jobbalancer.up")

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0)
WEB_MODULES = ("fastapi", "uvicorn", "prometheus_client")  # the web extra: `jb up` starts `jb web` only with it


class UpError(JobBalancerError):
    """The cluster could not be started."""


@dataclass
class Child:
    """One supervised process, restarted with backoff if it dies on its own."""

    label: str
    argv: list[str]
    env: dict[str, str] | None = None  # None: this process's environment
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, start_new_session=True, env=self.env)
        log.info("started %s (pid %d)", self.label, self.process.pid)

    def check(self, now: float) -> None:
        if self.process is None or self.process.poll() is None:
            if self.process is None and now >= self.next_start:
                self.start()
            return
        delay = RESTART_BACKOFF_S[min(self.restarts, len(RESTART_BACKOFF_S) - 1)]
        log.warning("%s exited with code %s; restarting in %.0fs", self.label, self.process.returncode, delay)
        self.restarts += 1
        self.process = None
        self.next_start = now + delay

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs; killing it", self.label, timeout_s)
            self.process.kill()
            self.process.wait()


@dataclass
class Cluster:
    """The processes ``jb up`` runs; ``run()`` blocks until SIGINT/SIGTERM."""

    url: str
    prefix: str
    workers: int = 2
    concurrency: int | None = None
    policy: str | None = None
    paths: Sequence[str] = ()
    allow_root: bool = False
    web_port: int | None = 8080  # None: no dashboard
    web_host: str = "127.0.0.1"
    data_dir: Path = field(default_factory=default_data_dir)
    shutdown_timeout_s: float = 30.0
    config_file: Path | None = None  # `jb --config FILE up`: every child reads the same file
    redis: EmbeddedRedis | None = None
    children: list[Child] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def base_argv(self) -> list[str]:
        config = [] if self.config_file is None else ["--config", str(self.config_file)]
        return [sys.executable, "-m", "jobbalancer", "--redis", self.url, "--prefix", self.prefix, *config]

    def plan(self) -> list[Child]:
        balancer = [*self.base_argv(), "balancer", "--scheduler"]  # scheduled jobs run without another process
        if self.policy:
            balancer += ["--policy", self.policy]
        children = [Child("balancer", balancer)]
        host = socket.gethostname()
        for index in range(1, self.workers + 1):
            argv = [*self.base_argv(), "worker", "--name", f"{host}-{index}"]
            if self.concurrency:
                argv += ["--concurrency", str(self.concurrency)]
            for path in self.paths:
                argv += ["--path", path]
            if self.allow_root:
                argv.append("--allow-root")
            children.append(Child(f"worker {host}-{index}", argv))
        web = self.web_child()
        return children if web is None else [*children, web]

    def web_child(self) -> Child | None:
        """``jb web``, if wanted and the web extra is installed; one token for all its restarts, via its environment."""
        if self.web_port is None:
            return None
        if not all(importlib.util.find_spec(name) for name in WEB_MODULES):
            log.info("no dashboard: the web extra is not installed (pip install 'jobbalancer[web]')")
            return None
        argv = [*self.base_argv(), "web", "--host", self.web_host, "--port", str(self.web_port)]
        if self.allow_root:
            argv.append("--allow-root")
        token = os.environ.get("JB_WEB_TOKEN") or secrets.token_urlsafe(24)
        shown = "from JB_WEB_TOKEN" if os.environ.get("JB_WEB_TOKEN") else token
        log.info("dashboard: http://%s:%d/  token: %s", self.web_host, self.web_port, shown)
        return Child("web", argv, {**os.environ, "JB_WEB_TOKEN": token})

    def ensure_redis(self) -> None:
        if answers(self.url):
            log.info("using the Redis that answers at %s", self.url)
            return
        if is_sentinel_url(self.url):
            raise UpError(f"no primary answers at {redact(self.url)}; jb up starts a Redis only for a redis:// URL")
        host, port = host_port(self.url)
        if host not in LOCAL_HOSTS:
            raise UpError(f"no Redis answers at {self.url}, and it is not a local address to start one on")
        self.redis = EmbeddedRedis(self.data_dir.resolve(), port, "127.0.0.1" if host == "localhost" else host)
        self.redis.start()
        log.info("started redis-server on %s:%d (AOF on, data in %s)", host, port, self.data_dir)

    def run(self) -> int:
        self.ensure_redis()
        self.children = self.plan()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in self.children:
                child.start()
            log.info("cluster up: 1 balancer, %d workers; Ctrl-C stops everything", self.workers)
            while not self.stopping.wait(0.5):
                now = time.monotonic()
                for child in self.children:
                    child.check(now)
        finally:
            self.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        self.stopping.set()

    def shutdown(self) -> None:
        workers = [c for c in self.children if c.label.startswith("worker")]
        others = [c for c in self.children if not c.label.startswith("worker")]
        for group in (workers, others):  # workers first: they hand back work while the balancer runs
            for child in group:
                child.terminate()
            for child in group:
                child.wait(self.shutdown_timeout_s + 5)
        if self.redis is not None:
            self.redis.stop()
            log.info("redis-server stopped")
        log.info("all stopped")
