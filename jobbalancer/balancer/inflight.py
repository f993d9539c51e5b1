"""A pass's dispatch, sent on a connection of its own and answered later: Redis applies it while
the loop plans the next pass (or, for a pass that cannot overlap, at once: send, then settle).

Under load a pass is Redis's work (the dispatch) then Python's (the plan), one after the other; the
loop overlaps them: it reads the next pass's inbox entries and snapshot, sends this pass's
``dispatch.lua`` calls on a connection of their own, and plans the next pass while Redis runs
them. Only the replies are waited for, by ``settle``, before the next dispatch is sent, so at most
one pass is in flight and the passes reach Redis in order. Each call is fenced and atomic exactly
as ``apply.py``'s; a call Redis refused for a reason of one entry's data (WRONGTYPE), or because
it did not know the script (NOSCRIPT: nothing of it ran), is redone there, synchronously.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import hiredis
import redis
from redis.exceptions import NoScriptError

from jobbalancer.balancer.apply import DISPATCH_CHUNK, ONE_BY_ONE, about_data, apply_one_by_one, apply_ops, encode_ops
from jobbalancer.balancer.plan import Head, Op
from jobbalancer.keys import Keys
from jobbalancer.scripts import Scripts, source

log = logging.getLogger("jobbalancer.balancer")

DISPATCH_SHA = hashlib.sha1(source("dispatch").encode()).hexdigest()


@dataclass
class Sent:
    """One pass's dispatch calls, sent on ``connection`` and not answered yet."""

    connection: Any
    token: str
    chunks: list[list[Op]]
    ops: list[Op]
    heads: Mapping[str, list[Head]]


def _packed(prefix: str, token: str, chunk: list[Op]) -> bytes:
    """One dispatch call, packed by hiredis itself (redis-py's packer looks at every argument in
    Python, and a call has thousands)."""
    command: Any = ("EVALSHA", DISPATCH_SHA, 0, prefix, token, *encode_ops(chunk))
    packed: bytes = hiredis.pack_command(command)
    return packed


class InFlight:
    """At most one pass's dispatch on its way.

    Args:
        client: the balancer's client (its pool lends the connection).
        scripts: the scripts bound to it (for a call that must be redone).
        keys: the cluster's keys.
    """

    def __init__(self, client: redis.Redis, scripts: Scripts, keys: Keys) -> None:
        self._client, self._scripts, self._keys = client, scripts, keys
        self._sent: Sent | None = None

    def send(self, token: str, ops: list[Op], heads: Mapping[str, list[Head]]) -> None:
        """Send the pass's calls (``DISPATCH_CHUNK`` ops each); ``settle`` before the next ``send``."""
        assert self._sent is None, "settle() the dispatch in flight first"
        chunks = [ops[start : start + DISPATCH_CHUNK] for start in range(0, len(ops), DISPATCH_CHUNK)]
        pool = self._client.connection_pool
        connection: Any = pool.get_connection()  # redis-py types its Connection methods loosely
        prefix = self._keys.prefix
        try:
            connection.send_packed_command([_packed(prefix, token, chunk) for chunk in chunks])
        except BaseException:
            connection.disconnect()
            pool.release(connection)
            raise
        self._sent = Sent(connection, token, chunks, ops, heads)

    def settle(self) -> tuple[list[Op], list[int], Mapping[str, list[Head]]] | None:
        """The replies of the dispatch in flight: (its ops, one result each, the heads it planned
        with); None if none is. Raises what ``apply_ops`` raises (FENCED, an outage, ...)."""
        sent, self._sent = self._sent, None
        if sent is None:
            return None
        pool, clean = self._client.connection_pool, False
        try:
            results: list[int] = []
            for chunk in sent.chunks:
                results += self._reply(sent, chunk)
            clean = True
        finally:
            if not clean:  # replies may be left unread on it: never hand it back as it is
                sent.connection.disconnect()
            pool.release(sent.connection)
        return sent.ops, results, sent.heads

    def _reply(self, sent: Sent, chunk: list[Op]) -> list[int]:
        try:
            return [int(code) for code in sent.connection.read_response(disconnect_on_error=False)]
        except NoScriptError:  # after a restart or SCRIPT FLUSH: nothing ran; apply_ops loads it
            return apply_ops(self._client, self._scripts, self._keys, sent.token, chunk)
        except redis.ResponseError as exc:
            if not about_data(exc):
                raise
            log.error(ONE_BY_ONE, exc)
            return apply_one_by_one(self._client, self._scripts, self._keys, sent.token, chunk)

    def abandon(self) -> None:
        """Forget the dispatch in flight after an error elsewhere (its connection is closed; what
        it applied stays applied: the next term re-reads the entries it did not ack)."""
        sent, self._sent = self._sent, None
        if sent is not None:
            sent.connection.disconnect()
            self._client.connection_pool.release(sent.connection)
