"""The worker's heartbeat: its facts and load into ``<p>:w:<name>``, its beat into ``<p>:workers``.

Each beat also brings back the live cluster settings (``<p>:config``), so a ``jb config set``
reaches the worker within one heartbeat.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from importlib import metadata

import psutil
import redis

from jobbalancer.config import Settings
from jobbalancer.scripts import Scripts

log = logging.getLogger("jobbalancer.worker")

MAX_BACKOFF_S = 5.0
MIN_HASH_TTL_MS = 60_000

try:
    VERSION = metadata.version("jobbalancer")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "unknown"


def load() -> dict[str, str]:
    """This machine's load now: system-wide CPU % since the last call, memory %, load averages."""
    load1, load5, load15 = os.getloadavg()
    return {
        "cpu": f"{psutil.cpu_percent(None):.1f}",
        "mem": f"{psutil.virtual_memory().percent:.1f}",
        "load1": f"{load1:.2f}",
        "load5": f"{load5:.2f}",
        "load15": f"{load15:.2f}",
    }


class Heartbeat:
    """Beats every ``interval_s`` on its own thread until stopped; never lets a Redis error out.

    Args:
        scripts: the Lua scripts on the worker's client.
        prefix: key prefix.
        name: the worker's name.
        facts: fields that do not change (queues, slots, started_at, ...).
        interval_s: seconds between beats.
        live: the fields that do change, other than load (running, state).
        on_reclaimed: called when a beat finds the worker was declared dead meanwhile.
    """

    def __init__(
        self,
        scripts: Scripts,
        prefix: str,
        name: str,
        facts: Mapping[str, str],
        interval_s: float,
        live: Callable[[], Mapping[str, str]],
        on_reclaimed: Callable[[], None],
    ) -> None:
        self.settings = Settings()
        self._scripts = scripts
        self._prefix = prefix
        self._name = name
        self._facts = {"host": socket.gethostname(), "pid": str(os.getpid()), "version": VERSION, **facts}
        self._interval_s = interval_s
        self._ttl_ms = max(MIN_HASH_TTL_MS, int(10 * interval_s * 1000))
        self._live = live
        self._on_reclaimed = on_reclaimed
        self._beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"jb-heartbeat-{name}", daemon=True)
        psutil.cpu_percent(None)  # the first reading is meaningless; it starts the interval

    def beat(self) -> None:
        """One heartbeat; refreshes :attr:`settings`. Raises redis.RedisError."""
        fields = {**self._facts, **load(), **self._live()}
        flat = [item for pair in fields.items() for item in pair]
        _now_ms, was_registered, config = self._scripts.heartbeat(self._prefix, self._name, self._ttl_ms, *flat)
        self.settings = Settings.from_hash(dict(zip(config[::2], config[1::2], strict=True)))
        self._beats += 1
        if self._beats > 1 and not int(was_registered):
            self._on_reclaimed()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop beating; returns once no beat is in flight (so none lands after an unregister)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        delay = self._interval_s
        while not self._stop.wait(delay):
            try:
                self.beat()
                delay = self._interval_s
            except redis.RedisError as exc:
                delay = self._retry_delay(delay)
                log.warning("heartbeat failed (%s); next try in %.1f s", exc, delay)
            except Exception:
                delay = self._retry_delay(delay)
                log.exception("heartbeat failed; next try in %.1f s", delay)

    def _retry_delay(self, delay: float) -> float:
        """The pause before the next try: doubling, but never past a quarter of the heartbeat timeout.

        After an outage the balancer waits one heartbeat timeout before it trusts heartbeat ages
        again (``balancer/reclaim.py``); a live worker must have beaten by then.
        """
        cap = min(MAX_BACKOFF_S, self.settings.heartbeat_timeout / 4)
        return max(self._interval_s, min(cap, delay * 2))
