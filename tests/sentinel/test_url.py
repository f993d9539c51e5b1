"""``redis+sentinel://`` URLs: what they parse to, and the one-line errors for bad ones (no Redis needed)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from jobbalancer.cli import main
from jobbalancer.connection import connect, parse_sentinel_url, redact
from jobbalancer.durability import WaitReplicas
from jobbalancer.errors import InvalidSetting, RedisUnavailable
from jobbalancer.up import Cluster, UpError
from tests.helpers import free_port


def test_a_full_url_names_sentinels_service_db_and_both_logins() -> None:
    url = (
        "redis+sentinel://app:s%40cret@10.0.0.1:26379,sentinel-b:26380,[::1]:26381/jobs/3"
        "?sentinel_username=watch&sentinel_password=pw&ssl=true&ssl_ca_certs=/etc/ca.pem"
    )
    parsed = parse_sentinel_url(url)
    assert parsed.sentinels == (("10.0.0.1", 26379), ("sentinel-b", 26380), ("::1", 26381))
    assert (parsed.service, parsed.db) == ("jobs", 3)
    assert (parsed.username, parsed.password) == ("app", "s@cret")
    assert (parsed.sentinel_username, parsed.sentinel_password) == ("watch", "pw")
    assert parsed.primary_kwargs() == {
        "db": 3,
        "username": "app",
        "password": "s@cret",
        "ssl": True,
        "ssl_ca_certs": "/etc/ca.pem",
    }
    assert "ssl" not in parsed.sentinel_kwargs()  # TLS to the primary only: sentinel_ssl was not asked for


def test_defaults_port_26379_db_0_and_rediss_means_tls_everywhere() -> None:
    parsed = parse_sentinel_url("rediss+sentinel://s1,s2/mymaster")
    assert parsed.sentinels == (("s1", 26379), ("s2", 26379))
    assert (parsed.db, parsed.ssl, parsed.sentinel_ssl, parsed.password) == (0, True, True, None)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://s1:26379", "needs the service name"),
        ("redis+sentinel://s1:26379/", "needs the service name"),
        ("redis+sentinel://s1:26379/svc/0/extra", "needs the service name"),
        ("redis+sentinel://s1:port/svc", "bad sentinel address 's1:port'"),
        ("redis+sentinel://s1:70000/svc", "bad sentinel address 's1:70000'"),
        ("redis+sentinel://s1:26379,/svc", "bad sentinel address ''"),
        ("redis+sentinel://[::1/svc", "bad sentinel address"),
        ("redis+sentinel://s1/svc/zero", "must be a number, not 'zero'"),
        ("redis+sentinel://s1/svc?sentinel_pasword=x", "unknown option 'sentinel_pasword'"),
        ("redis+sentinel://s1/svc?ssl=maybe", "ssl must be true or false"),
        ("redis+sentinel://", "expected redis+sentinel://host:port"),
    ],
)
def test_a_bad_url_says_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(InvalidSetting, match="invalid Redis Sentinel URL") as caught:
        connect(url, check=False)
    assert says in str(caught.value)


def test_errors_hide_passwords() -> None:
    url = "redis+sentinel://app:hunter2@s1:bad/svc?sentinel_password=hunter3"
    with pytest.raises(InvalidSetting) as caught:
        parse_sentinel_url(url)
    assert "hunter" not in str(caught.value)
    assert redact(url) == "redis+sentinel://app:***@s1:bad/svc?sentinel_password=***"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_a_bad_plain_url_is_an_invalid_setting_too() -> None:
    with pytest.raises(InvalidSetting, match="invalid Redis URL 'ftp://x'"):
        connect("ftp://x", check=False)


def test_no_sentinel_answering_is_redis_unavailable_at_once() -> None:
    url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/svc"
    with pytest.raises(RedisUnavailable, match=r"no sentinel \(127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+\) names a primary"):
        connect(url)


def test_jb_up_does_not_try_to_start_a_redis_for_a_sentinel_url_nobody_answers() -> None:
    up = Cluster(f"redis+sentinel://:hunter2@127.0.0.1:{free_port()}/svc", "jb")
    with pytest.raises(UpError, match=r"no primary answers at redis\+sentinel://:\*\*\*@.*only for a redis:// URL"):
        up.ensure_redis()


def test_the_cli_refuses_a_bad_sentinel_url_as_a_usage_error() -> None:
    outcome = CliRunner().invoke(main, ["--redis", "redis+sentinel://s1:26379", "status", "x"])
    assert outcome.exit_code == 2
    assert "needs the service name" in outcome.output


def test_wait_replicas_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WaitReplicas.from_env() == WaitReplicas(0, 1.0)
    monkeypatch.setenv("JB_WAIT_REPLICAS", "2")
    monkeypatch.setenv("JB_WAIT_REPLICAS_TIMEOUT", "0.5")
    assert WaitReplicas.from_env() == WaitReplicas(2, 0.5)
    assert WaitReplicas.from_env(replicas=1) == WaitReplicas(1, 0.5)  # an explicit value wins


@pytest.mark.parametrize(
    ("replicas", "timeout", "says"),
    [("two", "1", "JB_WAIT_REPLICAS must be a number"), ("-1", "1", "0 or more"), ("1", "0", "above 0 s")],
)
def test_bad_wait_replicas_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, replicas: str, timeout: str, says: str
) -> None:
    monkeypatch.setenv("JB_WAIT_REPLICAS", replicas)
    monkeypatch.setenv("JB_WAIT_REPLICAS_TIMEOUT", timeout)
    with pytest.raises(InvalidSetting, match=says):
        WaitReplicas.from_env()
