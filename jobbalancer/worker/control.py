"""Control messages to a worker (``<p>:w:<name>:ctl``), and blocking reads a stop can cut short."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

log = logging.getLogger("jobbalancer.worker")

BLOCK_MS = 1000
MAX_BACKOFF_S = 5.0


def stream_entries(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """The entries of an XREAD/XREADGROUP reply, all streams together (a deleted entry has no fields)."""
    return [(str(entry), dict(fields or {})) for _key, entries in reply or [] for entry, fields in entries]


class Blocking:
    """A connection of its own for one thread's blocking reads, which another thread can wake.

    ``unblock`` uses ``CLIENT UNBLOCK``, so stopping does not wait out a ``BLOCK`` timeout. If the
    connection was re-opened since the last :meth:`refresh`, the read simply runs to its timeout.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self.conn = redis.Redis(connection_pool=client.connection_pool, single_connection_client=True)
        self._id: int | None = None

    def refresh(self) -> None:
        try:
            self._id = int(self.conn.client_id())
        except redis.RedisError:
            self._id = None

    def unblock(self) -> None:
        if self._id is not None:
            with contextlib.suppress(redis.RedisError):  # Redis is away: the blocked read fails by itself
                self._client.client_unblock(self._id)

    def close(self) -> None:
        self.conn.close()


class Control:
    """Reads the control stream on a thread: ``cancel`` goes to ``on_cancel(id, attempt)``, ``drain`` and
    ``resume`` to ``on_drain(True / False)``.

    Reading starts after the last message present now: messages from an earlier run of this
    worker name are about attempts that run no more.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        on_cancel: Callable[[str, str], None],
        on_drain: Callable[[bool], None] | None = None,
    ) -> None:
        self._client = client
        self._key = key
        self._on_cancel = on_cancel
        self._on_drain = on_drain
        self._reader: Blocking | None = None
        self._position = "0-0"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="jb-control", daemon=True)

    def start(self) -> None:
        """Note where the stream ends now and start reading from there. Raises redis.RedisError."""
        last: Any = self._client.xrevrange(self._key, count=1)
        self._position = str(last[0][0]) if last else "0-0"
        self._reader = Blocking(self._client)
        self._reader.refresh()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.unblock()
            if self._thread.is_alive():
                self._thread.join()
            self._reader.close()

    def _loop(self) -> None:
        assert self._reader is not None
        backoff = 0.0
        while not self._stop.is_set():
            try:
                reply = self._reader.conn.xread({self._key: self._position}, block=BLOCK_MS)
                backoff = 0.0
            except redis.RedisError as exc:
                backoff = min(MAX_BACKOFF_S, max(0.1, backoff * 2))
                log.warning("reading control messages failed (%s); again in %.1f s", exc, backoff)
                self._stop.wait(backoff)
                self._reader.refresh()
                continue
            for entry_id, fields in stream_entries(reply):
                self._position = entry_id
                op = fields.get("op")
                if op == "cancel":
                    self._on_cancel(fields.get("id", ""), fields.get("attempt", ""))
                elif op in ("drain", "resume") and self._on_drain is not None:
                    self._on_drain(op == "drain")
