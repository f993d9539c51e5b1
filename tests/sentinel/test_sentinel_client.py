"""Clients on a ``redis+sentinel://`` URL, submits that wait for replicas, and scripts after a lost cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from redis.sentinel import SentinelConnectionPool

from jobbalancer import Client, Status
from jobbalancer.cli import main
from jobbalancer.compat.scheduler import SchedulerLoop
from jobbalancer.connection import connect, describe
from jobbalancer.errors import NotReplicated
from jobbalancer.job import Options, Spec
from jobbalancer.schedule.store import twin
from jobbalancer.server import find_redis_server
from tests.security.servers import SecureRedis, acl_file
from tests.sentinel.topology import SentinelSetup


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    """A healthy primary, replica and three sentinels, shared by this module's tests (none kills anything)."""
    the_setup = SentinelSetup(tmp_path_factory.mktemp("sentinel"))
    try:  # stops what did start if the setup never agreed
        yield the_setup.start()
    finally:
        the_setup.stop()


@pytest.fixture
def replica(setup: SentinelSetup) -> Iterator[redis.Redis]:
    client = redis.Redis(port=setup.replica_port(), decode_responses=True)
    yield client
    client.close()


def test_a_sentinel_url_reaches_the_primary_the_sentinels_name(setup: SentinelSetup, prefix: str) -> None:
    client = Client(setup.url, prefix)
    try:
        assert isinstance(client.redis.connection_pool, SentinelConnectionPool)
        assert client.redis.connection_pool.get_master_address() == ("127.0.0.1", setup.primary_port())
        assert (
            describe(client.redis) == f"Sentinel service 'jbprimary' (primary last at 127.0.0.1:{setup.primary_port()})"
        )
        job = client.submit("true")
        assert job.status() is Status.QUEUED
    finally:
        client.close()


def test_wait_replicas_returns_once_the_replica_has_the_job(
    setup: SentinelSetup, prefix: str, replica: redis.Redis
) -> None:
    client = Client(setup.url, prefix, wait_replicas=1, wait_timeout_s=5)
    try:
        jobs = [client.submit("true"), client.enqueue("builtins:print", "x")]
    finally:
        client.close()
    # no waiting here: the promise is that the replica has them when submit returns
    assert [replica.hget(f"{prefix}:job:{job.id}", "status") for job in jobs] == ["queued", "queued"]


def test_fewer_replicas_than_asked_for_raise_not_replicated(setup: SentinelSetup, prefix: str) -> None:
    client = Client(setup.url, prefix, wait_replicas=2, wait_timeout_s=0.2)
    try:
        with pytest.raises(NotReplicated, match=r"only 1 of 2 replicas confirmed within 0\.2s") as caught:
            client.submit("true")
        assert (caught.value.acked, caught.value.wanted, caught.value.present) == (1, 2, True)
        assert client.job(caught.value.job_ids[0]).status() is Status.QUEUED  # on the primary: it will run
    finally:
        client.close()


def test_the_cli_submit_waits_for_replicas_and_fails_when_they_do_not_confirm(
    setup: SentinelSetup, prefix: str, replica: redis.Redis
) -> None:
    runner = CliRunner()
    base = ["--redis", setup.url, "--prefix", prefix, "submit"]
    confirmed = runner.invoke(main, [*base, "--wait-replicas", "1", "true"])
    assert confirmed.exit_code == 0, confirmed.output
    assert replica.hget(f"{prefix}:job:{confirmed.output.strip()}", "status") == "queued"
    refused = runner.invoke(main, [*base, "--wait-replicas", "2", "--wait-replicas-timeout", "0.2", "true"])
    assert refused.exit_code == 1
    assert "not safely replicated: only 1 of 2 replicas confirmed within 0.2s" in refused.output


def test_bytes_clients_for_rq_go_through_the_sentinels_too(setup: SentinelSetup, prefix: str) -> None:
    loop = SchedulerLoop(setup.url, prefix)
    decoded = connect(setup.url)
    try:
        decoded.set(f"{prefix}:probe", "x")
        assert loop.connection.get(f"{prefix}:probe") == b"x"  # rq-scheduler's bytes client
        assert twin(decoded, decode=False).get(f"{prefix}:probe") == b"x"  # jobbalancer.compat's
    finally:
        decoded.close()
        loop.connection.close()


def test_without_replicas_a_waiting_submit_says_the_jobs_are_only_on_the_primary(redis_url: str, prefix: str) -> None:
    client = Client(redis_url, prefix, wait_replicas=1, wait_timeout_s=0.1)
    try:
        with pytest.raises(NotReplicated, match=r"3 jobs \(.+\) not safely replicated: only 0 of 1") as caught:
            client.submit_many([(Spec.for_command("true"), Options())] * 3)
        assert [client.job(job_id).status() for job_id in caught.value.job_ids] == [Status.QUEUED] * 3
    finally:
        client.close()


def test_scripts_load_again_when_redis_has_lost_its_script_cache(redis_url: str, prefix: str, r: redis.Redis) -> None:
    client = Client(redis_url, prefix)
    try:
        r.script_flush()  # as after a failover to a Redis 7 replica, or a restart
        job = client.submit("true")  # a pipelined script call
        r.script_flush()
        assert client.cancel(job.id) == "cancelled"  # a direct one
        assert job.status() is Status.CANCELLED
    finally:
        client.close()


def test_the_client_role_of_conf_acl_may_wait_for_replicas(tmp_path: Path) -> None:
    acl, passwords = acl_file(tmp_path)
    server = SecureRedis(tmp_path, find_redis_server(), passwords).start(acl)
    client = Client(server.url("client"), "jb", wait_replicas=1, wait_timeout_s=0.1)
    try:  # no replica there: WAIT answers 0, where a missing permission would be a NOPERM error
        with pytest.raises(NotReplicated, match="only 0 of 1 replicas"):
            client.submit("true")
    finally:
        client.close()
        server.stop()
