"""`jb web` and `jb up` serving the dashboard; root refusal; the worker never loads the web stack."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx2
import psutil
import pytest

from jobbalancer.up import Cluster
from jobbalancer.web.guard import WebError, allowed_hosts, host_name, refuse_root
from tests.helpers import REPO, free_port, wait_for


def jb_argv(redis_url: str, prefix: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "jobbalancer", "--redis", redis_url, "--prefix", prefix, *args]


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names} | {"PYTHONPATH": str(REPO)}


def answers(url: str, token: str) -> bool:
    try:
        return httpx2.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


def test_jb_web_prints_a_token_binds_loopback_and_stops_on_sigterm(redis_url: str, prefix: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "web.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            jb_argv(redis_url, prefix, "web", "--port", str(port)),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env_without("JB_WEB_TOKEN"),
            cwd=REPO,
        )
    try:
        token = wait_for(lambda: re.findall(r"token: (\S+)", log.read_text()), 20, what="token printed")[0]
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/api/config", token), 20, what="jb web answers")
        assert httpx2.get(f"http://127.0.0.1:{port}/api/config").status_code == 401
        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections() if c.status == psutil.CONN_LISTEN]
        assert [(address.ip, address.port) for address in listening] == [("127.0.0.1", port)]
        assert log.read_text().count(token) == 1  # printed once
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) in (0, -signal.SIGTERM)  # uvicorn shuts down cleanly, then re-raises the signal
        assert "Finished server process" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_jb_web_takes_its_token_from_the_environment(redis_url: str, prefix: str) -> None:
    port = free_port()
    env = env_without() | {"JB_WEB_TOKEN": "from-the-env"}
    proc = subprocess.Popen(
        jb_argv(redis_url, prefix, "web", "--port", str(port)), stderr=subprocess.PIPE, env=env, cwd=REPO
    )
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/api/workers", "from-the-env"), 20, what="jb web answers")
    finally:
        proc.terminate()
        _out, err = proc.communicate(20)
    assert b"from-the-env" not in err


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is about running as root; this run is not root")
def test_jb_web_refuses_to_run_as_root(redis_url: str, prefix: str) -> None:
    argv = jb_argv(redis_url, prefix, "web", "--port", str(free_port()))
    refused = subprocess.run(argv, capture_output=True, text=True, env=env_without("JB_ALLOW_ROOT"), timeout=30)
    assert refused.returncode == 1
    assert "refusing to serve the dashboard as root" in refused.stderr
    assert "token" not in refused.stderr


def test_refuse_root_follows_the_worker_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("JB_ALLOW_ROOT", raising=False)
    with pytest.raises(WebError, match="--allow-root or JB_ALLOW_ROOT=1"):
        refuse_root(False)
    refuse_root(True)
    monkeypatch.setenv("JB_ALLOW_ROOT", "1")
    refuse_root(False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("JB_ALLOW_ROOT")
    refuse_root(False)


def test_allowed_hosts() -> None:
    assert allowed_hosts("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
    assert "jobs.example.org" in allowed_hosts("127.0.0.1", ["Jobs.Example.org "])
    everywhere = allowed_hosts("0.0.0.0")
    assert socket.gethostname().lower() in everywhere and "127.0.0.1" in everywhere
    assert [host_name(h) for h in ("a.b:80", "[::1]:8080", "::1", "A.B")] == ["a.b", "::1", "::1", "a.b"]


def test_the_worker_never_imports_the_web_stack() -> None:
    code = (
        "import sys, jobbalancer.cli, jobbalancer.worker, jobbalancer.balancer\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette', 'uvicorn', 'pydantic')"
        " or m.startswith('jobbalancer.web')]\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert out.stdout.strip() == "[]", out.stderr


def test_jb_up_plans_the_dashboard_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    with_web = Cluster("redis://127.0.0.1:1/0", "p", workers=1, web_port=9999).plan()
    web = [child for child in with_web if child.label == "web"]
    assert len(web) == 1 and web[0].argv[-5:] == ["web", "--host", "127.0.0.1", "--port", "9999"]
    assert web[0].env is not None and web[0].env["JB_WEB_TOKEN"]
    assert all(child.env is None for child in with_web if child.label != "web")  # the token stays out of jobs
    assert [c.label for c in Cluster("redis://127.0.0.1:1/0", "p", workers=1, web_port=None).plan()] == [
        "balancer",
        f"worker {socket.gethostname()}-1",
    ]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # the web extra not installed
    assert "web" not in [c.label for c in Cluster("redis://127.0.0.1:1/0", "p", workers=1).plan()]


def test_jb_up_serves_the_dashboard(tmp_path: Path) -> None:
    url, port = f"redis://127.0.0.1:{free_port()}/0", free_port()
    log = tmp_path / "up.log"
    argv = jb_argv(url, "upweb", "up", "--workers", "1", "--concurrency", "1", "--web-port", str(port))
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [*argv, "--data-dir", str(tmp_path / "data")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env_without("JB_WEB_TOKEN"),
            cwd=REPO,
        )
    try:
        token = wait_for(lambda: re.findall(r"token: (\S+)", log.read_text()), 30, what="jb up shows the token")[0]
        api = f"http://127.0.0.1:{port}/api/workers"
        auth = {"Authorization": f"Bearer {token}"}
        wait_for(lambda: answers(api, token) and httpx2.get(api, headers=auth).json(), 40, what="a worker listed")
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert not answers(api, token)
