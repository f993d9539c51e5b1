"""ACL users, one per role (``conf/acl``), and ``rediss://`` TLS with a CA, against real redis-servers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobbalancer import Client, Status
from jobbalancer.errors import RedisUnavailable
from tests.helpers import wait_for
from tests.security.servers import Processes, SecureRedis, acl_file, make_certs, tls_binary


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[SecureRedis]:
    binary = tls_binary(tmp_path)
    certs = make_certs(tmp_path)
    acl, passwords = acl_file(tmp_path)
    server = SecureRedis(tmp_path, str(binary), passwords, certs).start(acl)
    yield server
    server.stop()


def test_the_worker_user_cannot_flushall_or_config_set(acl_redis: SecureRedis) -> None:
    admin = redis.Redis.from_url(acl_redis.url("admin"), decode_responses=True)
    worker = redis.Redis.from_url(acl_redis.url("worker"), decode_responses=True)
    admin.set("jb:job:precious", "kept")
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.flushall()
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.config_set("appendonly", "no")
    with pytest.raises(redis.ResponseError, match="can't run this command"):
        worker.eval("return redis.call('flushall')", 0)  # a script runs with its caller's rights
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.set("jb:leader", "1:impostor")  # a worker cannot take the balancer's lease
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.set("other-app:key", "x")  # nor touch keys outside jobbalancer's
    dashboard = redis.Redis.from_url(acl_redis.url("dashboard"), decode_responses=True)
    with pytest.raises(redis.exceptions.NoPermissionError):
        dashboard.hset("jb:config", "policy", "random")  # read-only
    assert admin.get("jb:job:precious") == "kept" and admin.config_get("appendonly")
    for client in (admin, worker, dashboard):
        client.close()


def _run_cluster(server: SecureRedis, tmp: Path) -> None:
    """Balancer, worker, client and dashboard each under its own user: a job's whole life works."""
    procs = Processes(tmp)
    try:
        procs.spawn("b1", server.url("balancer"), "balancer", "--name", "b1")
        procs.spawn("w1", server.url("worker"), "worker", "--name", "w1", "--concurrency", "2")
        client = Client(server.url("client"))
        try:
            wait_for(lambda: client.workers(), 20, what="w1 registered under the worker user")
            assert client.submit("echo over $X", env={"X": "acl"}).result(timeout=30) == "over acl\n"
            flaky = client.submit("exit 1", retries=1, backoff=0.1)
            assert flaky.wait(30).attempts == 2  # the retry went through delayed.lua as the balancer
            long = client.submit("sleep 60")
            wait_for(lambda: long.status() is Status.RUNNING, 20, what="a running job")
            assert long.cancel() == "cancelling" and long.wait(20).status is Status.CANCELLED
            shown = procs.jb(server.url("dashboard"), "status", long.id, "--json")
            assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "cancelled"
            assert procs.jb(server.url("dashboard"), "workers", "--json").returncode == 0
            refused = procs.jb(server.url("dashboard"), "submit", "true")
            assert refused.returncode == 1 and "permission" in refused.stderr.lower()
        finally:
            client.close()
        for label in ("b1", "w1"):
            assert "NOPERM" not in procs.log(label) and "permission" not in procs.log(label).lower(), procs.log(label)
    finally:
        procs.stop()


def test_a_cluster_runs_with_one_user_per_role(acl_redis: SecureRedis, tmp_path: Path) -> None:
    _run_cluster(acl_redis, tmp_path)


def test_a_cluster_runs_over_tls_with_acl_users(tls_redis: SecureRedis, tmp_path: Path) -> None:
    _run_cluster(tls_redis, tmp_path)


def test_tls_refuses_a_server_its_ca_did_not_sign(tls_redis: SecureRedis) -> None:
    assert tls_redis.certs is not None
    with pytest.raises(RedisUnavailable, match="certificate verify failed"):
        Client(tls_redis.url("client", ca=tls_redis.certs["other_ca"]))
    plain = tls_redis.url("client").replace("rediss://", "redis://").split("?")[0]
    with pytest.raises(RedisUnavailable, match="cannot reach Redis"):
        Client(plain)  # a TLS port does not speak plain Redis


@pytest.mark.parametrize("command", ["balancer", "worker"])
def test_a_wrong_password_stops_a_process_at_once_with_one_clear_line(
    acl_redis: SecureRedis, tmp_path: Path, command: str
) -> None:
    wrong = acl_redis.url(command).replace(acl_redis.passwords[command], "not-the-password")
    ran = Processes(tmp_path).jb(wrong, command, "--name", f"{command}-x")  # would run until stopped if it got in
    assert ran.returncode == 1, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert "refused the credentials" in lines[-1] and "Traceback" not in ran.stderr
    assert "not-the-password" not in ran.stderr  # the URL is shown without its password
