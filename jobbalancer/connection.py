"""Opening Redis connections, with one clear error when nobody answers."""

from __future__ import annotations

import redis

from jobbalancer.errors import RedisUnavailable


def connect(url: str, *, check: bool = True, socket_timeout_s: float | None = None) -> redis.Redis:
    """A client for ``url`` (``redis://``, ``rediss://``, ``unix://``) that decodes replies to str.

    Raises:
        RedisUnavailable: with the URL in the message, when ``check`` is set and Redis does not answer.
    """
    try:
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
    except ValueError as exc:
        raise RedisUnavailable(f"invalid Redis URL {url!r}: {exc}") from None
    if check:
        try:
            client.ping()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise RedisUnavailable(f"cannot reach Redis at {url}: {exc}") from None
        except redis.AuthenticationError as exc:
            raise RedisUnavailable(f"Redis at {url} refused the credentials: {exc}") from None
    return client
