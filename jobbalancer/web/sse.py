"""Server-sent event streams: a job's live output, and the cluster's job and worker changes.

The generators are synchronous (the client is); Starlette runs each step in its thread pool and
stops the stream when the browser goes away. Every blocking read is bounded (a second), so a
stream notices a departed client within a second or at its next keep-alive.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

import redis

from jobbalancer.client import Client
from jobbalancer.errors import JobBalancerError

log = logging.getLogger("jobbalancer.web")

HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}
BLOCK_MS = 1000
KEEPALIVE_S = 10.0
WORKERS_EVERY_S = 2.0


def message(event: str, data: Any, event_id: str | None = None) -> str:
    """One SSE message; ``data`` as JSON on one line (so output with newlines travels intact)."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def event_out(entry_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """An ``<p>:events`` entry as the API shows it; its stream id carries the time (Redis's clock)."""
    return {
        "event_id": entry_id,
        "at": int(entry_id.split("-", 1)[0]) / 1000,
        "job": fields.get("id", ""),
        "status": fields.get("status", ""),
        "worker": fields.get("worker") or None,
    }


def follow(client: Client, job_id: str) -> Iterator[str]:
    """``stdout``/``stderr`` events as the job writes, then ``end`` with its final status."""
    try:
        for chunk in client.follow(job_id):
            yield message("stdout" if chunk.fd == 1 else "stderr", chunk.data)
        record = client.record(job_id)
        yield message("end", {"status": record.status.value, "exit_code": record.exit_code, "error": record.error})
    except (JobBalancerError, redis.RedisError) as exc:  # headers are sent: the stream can only say so
        yield message("error", {"detail": str(exc)})


def worker_changes(known: dict[str, str], workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The workers whose state changed since ``known`` (updated in place); a vanished one is ``gone``."""
    now = {worker["name"]: worker["state"] for worker in workers}
    changes = [{"name": name, "state": state} for name, state in now.items() if known.get(name) != state]
    changes += [{"name": name, "state": "gone"} for name in known if name not in now]
    known.clear()
    known.update(now)
    return changes


def cluster(client: Client, since: str | None) -> Iterator[str]:
    """``job`` events from ``<p>:events`` (after stream id ``since``, else from now) and ``worker`` state changes."""
    try:
        latest = client.recent_events(1)
        after = since or (latest[-1][0] if latest else "0-0")
        known: dict[str, str] = {}
        next_workers = last_sent = 0.0
        while True:
            now = time.monotonic()
            if now >= next_workers:
                next_workers = now + WORKERS_EVERY_S
                for change in worker_changes(known, client.workers()):
                    last_sent = now
                    yield message("worker", change)
            changes = client.events(after, BLOCK_MS)
            for i, (entry_id, fields) in enumerate(changes):
                after, last_sent = entry_id, time.monotonic()
                # an entry's changes share its id: a resume point only after the last of them
                whole = i + 1 == len(changes) or changes[i + 1][0] != entry_id
                yield message("job", event_out(entry_id, fields), entry_id if whole else None)
            if time.monotonic() - last_sent > KEEPALIVE_S:
                last_sent = time.monotonic()
                yield ": keep-alive\n\n"
    except redis.RedisError as exc:
        log.warning("event stream ended: %s", exc)
        yield message("error", {"detail": f"Redis: {exc}"})
