"""Opening Redis connections, with one clear error when nobody answers.

Besides redis-py's own schemes (``redis://``, ``rediss://``, ``unix://``), :func:`connect` takes
Redis Sentinel URLs::

    redis+sentinel://[user:password@]host1:26379,host2:26379/service_name[/db][?option=value&...]
    rediss+sentinel://...   the same, with TLS to the primary and to the sentinels

``user:password`` are for the primary (the data); the sentinels' own credentials go in the query.
Query options: ``sentinel_username``, ``sentinel_password``, ``ssl`` (TLS to the primary),
``sentinel_ssl`` (TLS to the sentinels), ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
``ssl_cert_reqs`` (for whichever side uses TLS). The client asks the sentinels where the primary
is before every new connection, so after a failover it reconnects to the new primary by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.connection import SSLConnection
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool, SentinelManagedConnection

from jobbalancer.errors import InvalidSetting, RedisUnavailable

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
"""Sentinel URL scheme -> whether it means TLS everywhere."""
SENTINEL_PORT = 26379
SENTINEL_TIMEOUT_S = 1.0
"""Connect and reply timeout for a sentinel: a dead one must not hold up asking the next."""
CONNECT_TIMEOUT_S = 5.0
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
FLAGS = ("ssl", "sentinel_ssl")
QUERY_OPTIONS = ("sentinel_username", "sentinel_password", *FLAGS, *TLS_OPTIONS)
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed ``redis+sentinel://`` URL: where the sentinels are, which service, how to log in."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    ssl: bool = False
    sentinel_ssl: bool = False
    tls: dict[str, str] = field(default_factory=dict)
    """``ssl_*`` options, applied to whichever side uses TLS."""

    def primary_kwargs(self) -> dict[str, Any]:
        """Connection options for the primary (``Sentinel.master_for``)."""
        tls = {"ssl": True, **self.tls} if self.ssl else {}
        return {"db": self.db, "username": self.username, "password": self.password, **tls}

    def sentinel_kwargs(self) -> dict[str, Any]:
        """Connection options for the sentinels themselves."""
        tls = {"ssl": True, **self.tls} if self.sentinel_ssl else {}
        return {
            "username": self.sentinel_username,
            "password": self.sentinel_password,
            "socket_connect_timeout": SENTINEL_TIMEOUT_S,
            "socket_timeout": SENTINEL_TIMEOUT_S,
            "retry": Retry(NoBackoff(), 0),  # a sentinel that fails: ask the next one at once
            **tls,
        }


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    try:
        parts = urlsplit(url)
        parts.password  # noqa: B018 - parsing the userinfo can fail too
    except ValueError:
        return f"{url.split('://', 1)[0]}://(unparsable)"
    if parts.password is None and "password=" not in parts.query:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, hosts = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    query = "&".join(
        f"{name}=***" if name.endswith("password") else f"{name}={value}"
        for name, _, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return parts._replace(netloc=netloc, query=query).geturl()


def describe(client: redis.Redis) -> str:
    """Where ``client`` connects, for logs: ``host:port``, a socket path or the Sentinel service; no password."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        address = pool.master_address
        last = f" (primary last at {address[0]}:{address[1]})" if address else ""
        return f"Sentinel service {pool.service_name!r}{last}"
    kwargs = pool.connection_kwargs
    return str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse a ``redis+sentinel://`` (or ``rediss+sentinel://``) URL.

    Raises:
        InvalidSetting: the URL names no sentinel or no service, has a bad ``host:port``, a bad
            database number or an unknown option; the message says which.
    """
    bad = f"invalid Redis Sentinel URL {redact(url)!r}"
    scheme, _, rest = url.partition("://")
    everywhere = SENTINEL_SCHEMES.get(scheme.lower())
    if everywhere is None or not rest:
        raise InvalidSetting(f"{bad}: expected redis+sentinel://host:port[,host:port...]/service[/db]")
    netloc, _, path_query = rest.partition("/")
    path, _, query = path_query.partition("?")
    userinfo, _, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    segments = [unquote(part) for part in path.split("/")] if path else []
    if not segments or not segments[0] or len(segments) > 2:
        raise InvalidSetting(f"{bad}: it needs the service name after the hosts, as in host:26379/mymaster[/db]")
    options = _query(query, bad)
    return SentinelUrl(
        sentinels=tuple(_host_port(item, bad) for item in hosts.split(",")),
        service=segments[0],
        db=_db(segments[1] if len(segments) == 2 else "0", bad),
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_username=options.pop("sentinel_username", None),
        sentinel_password=options.pop("sentinel_password", None),
        ssl=everywhere or _flag(options.pop("ssl", "no"), "ssl", bad),
        sentinel_ssl=everywhere or _flag(options.pop("sentinel_ssl", "no"), "sentinel_ssl", bad),
        tls=options,  # only the ssl_* options are left
    )


def connect(url: str, *, check: bool = True, socket_timeout_s: float | None = None, decode: bool = True) -> redis.Redis:
    """A client for ``url`` (``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``).

    Args:
        url: where Redis is; see the module docstring for the Sentinel form.
        check: PING once now, so a wrong address fails here rather than at first use.
        socket_timeout_s: how long a reply may take; None waits as long as the command does.
        decode: decode replies to str (jobbalancer's own code); False gives bytes (rq needs them).

    Raises:
        InvalidSetting: the URL cannot be parsed; the message says what is wrong.
        RedisUnavailable: with the URL (password hidden) in the message, when ``check`` is set and
            Redis (or, for Sentinel, every sentinel or the primary they name) does not answer.
    """
    common: dict[str, Any] = {
        "decode_responses": decode,
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "health_check_interval": 30,
    }
    if is_sentinel_url(url):
        client = _sentinel_client(parse_sentinel_url(url), common)
    else:
        try:
            client = redis.Redis.from_url(url, **common)
        except ValueError as exc:
            raise InvalidSetting(f"invalid Redis URL {redact(url)!r}: {exc}") from None
    if check:
        _check(client, url)
    return client


class Sentinels(Sentinel):
    """redis-py's ``Sentinel``, whose "no primary" error names the sentinels instead of dumping their clients."""

    def discover_master(self, service_name: str) -> tuple[str, int]:
        try:
            found: tuple[str, int] = super().discover_master(service_name)  # type: ignore[no-untyped-call]
        except MasterNotFoundError:
            where = ", ".join("{host}:{port}".format_map(s.connection_pool.connection_kwargs) for s in self.sentinels)
            why = "they are unreachable, do not monitor it, or see it down"
            raise MasterNotFoundError(f"no sentinel ({where}) names a primary for {service_name!r}: {why}") from None
        return found


class PrimaryConnection(SentinelManagedConnection):
    """A connection that asks the sentinels where the primary is whenever it (re)connects.

    redis-py's own reconnects before sending on a dropped connection (``send_packed_command``)
    and so goes back to the address it last used: after a failover, a connection kept by one
    thread (the worker's blocking reader) or retried within one command would knock on the dead
    primary's door for ever.
    """

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            self.connect()  # type: ignore[no-untyped-call]  # redis.sentinel is unannotated
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


class PrimarySSLConnection(PrimaryConnection, SSLConnection):
    """:class:`PrimaryConnection` over TLS."""


class SentinelRedis(redis.Redis):
    """A client on the service's current primary; ``close`` also closes its sentinel connections."""

    def close(self) -> None:
        super().close()
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if isinstance(manager, Sentinel):
            manager.close()


def _sentinel_client(parsed: SentinelUrl, common: dict[str, Any]) -> redis.Redis:
    sentinel = Sentinels(list(parsed.sentinels), sentinel_kwargs=parsed.sentinel_kwargs())  # type: ignore[no-untyped-call]
    connection_class = PrimarySSLConnection if parsed.ssl else PrimaryConnection
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        parsed.service,
        redis_class=SentinelRedis,
        connection_class=connection_class,
        **common,
        **parsed.primary_kwargs(),
    )
    return client


def _check(client: redis.Redis, url: str) -> None:
    shown = redact(url)
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        client.close()
        raise RedisUnavailable(f"Redis at {shown} refused the credentials: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        client.close()
        raise RedisUnavailable(f"cannot reach Redis at {shown}: {exc}") from None


def _host_port(item: str, bad: str) -> tuple[str, int]:
    host, port = item, str(SENTINEL_PORT)
    if item.startswith("["):  # [IPv6]:port
        host, closed, after = item[1:].partition("]")
        if not closed or (after and not after.startswith(":")):
            raise InvalidSetting(f"{bad}: bad sentinel address {item!r}; use host:port or [ipv6]:port")
        port = after[1:] or port
    elif ":" in item:
        host, _, port = item.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidSetting(f"{bad}: bad sentinel address {item!r}; use host:port, as in 127.0.0.1:26379")
    return host, int(port)


def _db(text: str, bad: str) -> int:
    if not text.isdigit():
        raise InvalidSetting(f"{bad}: the database after the service name must be a number, not {text!r}")
    return int(text)


def _query(query: str, bad: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        name, _, value = item.partition("=")
        if name not in QUERY_OPTIONS:
            raise InvalidSetting(f"{bad}: unknown option {name!r}; known: {', '.join(QUERY_OPTIONS)}")
        options[name] = unquote(value)
    return options


def _flag(value: str, name: str, bad: str) -> bool:
    if value.lower() not in TRUE + FALSE:
        raise InvalidSetting(f"{bad}: {name} must be true or false, not {value!r}")
    return value.lower() in TRUE
