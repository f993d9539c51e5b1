"""The commands docker-compose.yml and the systemd units run work when run directly.

Each source's jb processes (balancers, a worker, the dashboard) start against the test Redis, come
up, run one job submitted with the CLI, and stop cleanly on SIGTERM, as `docker stop` or
`systemctl stop` would send it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import redis

from tests.deploy.specs import JB, Command, compose_commands, option, systemd_commands, with_option
from tests.helpers import REPO, free_port, wait_for

TOKEN = "deploy-test-token"
STOP_WITHIN_S = 15.0


class Processes:
    """The jb processes of one deployment source, each logging to a file under ``tmp``."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env = env
        self.tmp = tmp
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[IO[bytes]] = []

    def start(self, command: Command, argv: tuple[str, ...], cwd: Path) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{command.label}.log", "wb")  # noqa: SIM115 - closed in close()
        self.logs.append(log)
        proc = subprocess.Popen(argv, cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.running[command.label] = proc
        return proc

    def log(self, label: str) -> str:
        return (self.tmp / f"{label}.log").read_text(errors="replace")

    def alive(self, label: str) -> bool:
        """True while the process runs; fails the test with its log if it exited."""
        code = self.running[label].poll()
        assert code is None, f"{label} exited with {code}:\n{self.log(label)}"
        return True

    def terminate(self) -> dict[str, int | None]:
        """SIGTERM every process, then wait: label -> exit code (None if still running after the bound)."""
        for proc in self.running.values():
            proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for label, proc in self.running.items():
            try:
                codes[label] = proc.wait(STOP_WITHIN_S)
            except subprocess.TimeoutExpired:
                codes[label] = None
        return codes

    def close(self) -> None:
        for proc in self.running.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()


@pytest.fixture
def procs(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Processes]:
    env = {**os.environ, "JB_REDIS_URL": redis_url, "JB_PREFIX": prefix, "JB_WEB_TOKEN": TOKEN}
    the_procs = Processes(env, tmp_path)
    yield the_procs
    the_procs.close()


def get_json(url: str, token: str = "") -> Any:
    """GET a URL of the dashboard; None while it does not answer yet."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return json.load(response)
    except (urllib.error.URLError, ConnectionError):
        return None


def leader(r: redis.Redis, prefix: str) -> str | None:
    """The leading balancer's default name less its random suffix: ``<host>-<pid>``."""
    token = r.get(f"{prefix}:leader")  # <epoch>:<host>-<pid>-<random>
    return token.split(":", 1)[1].rsplit("-", 1)[0] if token else None


def commands(source: str, worker_name: str) -> list[Command]:
    found = compose_commands() if source == "compose" else systemd_commands(worker_name)
    assert sorted({c.role for c in found}) == ["balancer", "web", "worker"], found
    return found


def start_all(procs: Processes, found: list[Command], cwd: Path, port: int) -> tuple[dict[str, str], str]:
    """Start every command; returns the expected names (label -> worker or balancer name) and web's URL."""
    names: dict[str, str] = {}
    url = ""
    for command in found:
        argv = command.argv
        if command.role == "web":
            # A free port instead of 8080, and loopback even where the file binds every interface.
            argv = with_option(with_option(argv, "--port", str(port)), "--host", "127.0.0.1")
            url = f"http://127.0.0.1:{port}"
        proc = procs.start(command, argv, cwd)
        # Default names start with <host>-<pid> (a balancer's then adds a random suffix).
        names[command.label] = option(argv, "--name") or f"{socket.gethostname()}-{proc.pid}"
    return names, url


@pytest.mark.parametrize("source", ["compose", "systemd"])
def test_deployed_commands_run_a_job_and_stop_cleanly(
    source: str, procs: Processes, r: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    found = commands(source, worker_name=f"{source}-worker-1")
    # The image's WORKDIR holds workers/ (compose's `--path workers`); a unit's is its state dir.
    cwd = REPO if source == "compose" else tmp_path
    names, url = start_all(procs, found, cwd, free_port())
    by_role = {role: [c.label for c in found if c.role == role] for role in ("worker", "balancer", "web")}

    for label in by_role["worker"]:
        name = names[label]
        registered = f"{name} registered"
        wait_for(lambda lb=label, n=name: procs.alive(lb) and r.zscore(f"{prefix}:workers", n), 20, what=registered)
    balancers = {names[label] for label in by_role["balancer"]}
    wait_for(
        lambda: all(procs.alive(b) for b in by_role["balancer"]) and leader(r, prefix) in balancers,
        20,
        what="a balancer holding the lease",
    )
    (web,) = by_role["web"]
    wait_for(lambda: procs.alive(web) and get_json(f"{url}/openapi.json"), 20, what="the dashboard answering")
    shown = {w["name"] for w in get_json(f"{url}/api/workers", TOKEN)}
    assert {names[label] for label in by_role["worker"]} <= shown

    done = subprocess.run(
        [str(JB), "submit", "echo hi", "--wait"], env=procs.env, capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout) == (0, "hi\n"), done.stderr

    codes = procs.terminate()
    clean = {label: code == 0 for label, code in codes.items()}
    assert all(clean.values()), {label: (codes[label], procs.log(label)[-2000:]) for label in codes}
    assert "Application shutdown complete." in procs.log(web)
    assert r.zcard(f"{prefix}:workers") == 0  # the stopped worker unregistered
    assert r.get(f"{prefix}:leader") is None  # and the balancers released the lease
