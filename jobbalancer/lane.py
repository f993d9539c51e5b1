"""Hot-path commands written straight to a pooled connection, past redis-py's per-command layers.

redis-py's client spends several times the wire's own cost on each command: argument filtering,
response callbacks, hooks. Measured on the 2-core test machine, one ``GET`` cost 61 µs of CPU
through ``Redis.get`` and 25 µs through its connection; a MULTI of six reads, 133 µs through a
pipeline and 39 µs here. The jobs' hot path (script calls, the balancer's look, the worker's
reads) goes through :func:`run` instead: the commands are packed by hiredis, written in one send
and their replies read as they come, decoded as the client decodes, without callbacks: a caller
shapes what it asked for with :func:`pairs`, :func:`scored` and :func:`entries`, which take the
replies of either protocol.

Everything about the connection stays redis-py's: the address, auth, TLS, Sentinel's primary
lookup on reconnect, and the client's retry policy for a lost connection (the same as its own
commands get, so behaviour does not change, only the cost).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

Command = Sequence[Any]
_ONCE = Retry(NoBackoff(), 0)


def run(client: redis.Redis, commands: Sequence[Command]) -> list[Any]:
    """Send ``commands`` in one write on one of ``client``'s connections; their replies, in order.

    A reply that is an error comes back as the exception (``redis.ResponseError`` or a subclass
    such as ``NoScriptError``) in its place, as a pipeline's ``raise_on_error=False`` gives it:
    the caller decides. A lost connection is retried as ``client`` retries (commands whose
    effect may have landed must be safe to send again, as with redis-py's own retries).

    Raises:
        redis.ConnectionError, redis.TimeoutError: the connection failed past the retries.
    """
    pool = client.connection_pool
    retry = client.get_retry() or _ONCE
    connection: Any = pool.get_connection()  # redis-py types its Connection methods loosely
    try:
        return retry.call_with_retry(lambda: exchange(connection, commands), lambda _error: connection.disconnect())
    except BaseException:
        connection.disconnect()  # replies may be left unread on it: never hand it back as it is
        raise
    finally:
        pool.release(connection)


def exchange(connection: Any, commands: Sequence[Command]) -> list[Any]:
    """``commands`` written in one send on ``connection`` (a redis-py Connection), and their
    replies (errors in place, as :func:`run`); no retry. After an exception the connection may
    hold unread replies: disconnect it."""
    connection.send_packed_command([b"".join([hiredis.pack_command(tuple(command)) for command in commands])])
    return [_reply(connection) for _ in commands]


def on(connection: Any, commands: Sequence[Command]) -> list[Any]:
    """:func:`exchange` on a connection a thread keeps for itself (a blocking reader's), which is
    closed after any failure, so that its next use starts clean on a new one."""
    try:
        return exchange(connection, commands)
    except BaseException:
        connection.disconnect()
        raise


def read_group(
    group: str, consumer: str, stream: str, *, after: str = ">", count: int, block_ms: int | None = None
) -> Command:
    """``XREADGROUP`` of one stream as a command for :func:`run` (``block_ms`` None: no blocking)."""
    wait = () if block_ms is None else ("BLOCK", block_ms)
    return ("XREADGROUP", "GROUP", group, consumer, "COUNT", count, *wait, "STREAMS", stream, after)


def one(client: redis.Redis, *command: Any) -> Any:
    """One command through :func:`run`; an error reply is raised."""
    return checked(run(client, [command]))[0]


def checked(replies: list[Any]) -> list[Any]:
    """``replies`` as they are, unless one is an error: then the first error is raised."""
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return replies


def _reply(connection: Any) -> Any:
    try:
        return connection.read_response()
    except redis.ResponseError as exc:  # the error reply was read whole: the next reply follows it
        return exc


def transaction(client: redis.Redis, commands: Sequence[Command], ahead: Command | None = None) -> list[Any]:
    """``commands`` in one MULTI/EXEC, in one write; their replies.

    ``ahead`` is one command sent before the MULTI in the same write, outside the transaction, so
    that it may block (a blocking read): Redis runs the transaction as soon as it returns. Its
    reply then comes first.

    Raises:
        redis.ResponseError: the first command that failed (queued, or run by EXEC).
    """
    first = [ahead] if ahead is not None else []
    replies = checked(run(client, [*first, ("MULTI",), *commands, ("EXEC",)]))
    done = checked(replies[-1]) if isinstance(replies[-1], list) else replies[-1]
    return [replies[0], *done] if first else done


# Raw replies, shaped here as redis-py's callbacks would have shaped them. The protocol is the
# client's: RESP3 (redis-py's default) gives maps and pairs where RESP2 gives flat arrays.


def pairs(reply: Any) -> dict[Any, Any]:
    """``HGETALL``'s reply (a map, or a flat field, value list) as a dict."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True)) if reply else {}


def scored(reply: Any) -> list[tuple[Any, float]]:
    """A ``WITHSCORES`` reply (pairs, or a flat list) as (member, score) pairs."""
    if not reply:
        return []
    if isinstance(reply[0], list):
        return [(member, float(score)) for member, score in reply]
    return [(member, float(score)) for member, score in zip(reply[::2], reply[1::2], strict=True)]


def entries(reply: Any) -> list[tuple[str, Mapping[str, str] | None]]:
    """An ``XREAD``/``XREADGROUP`` reply's entries (a map of streams, or pairs), all streams
    together, as (id, fields); a deleted entry still pending has no fields (None)."""
    streams = reply.values() if isinstance(reply, dict) else [found for _, found in reply or ()]
    return [(entry, None if fields is None else pairs(fields)) for found in streams for entry, fields in found]
