"""The balancer process: lead (or stand by), read the inbox, place jobs, reclaim the dead.

One pass of the leader: renew the lease; read up to ``batch`` inbox entries; bring its picture of
the live workers up to date (``fleet.py``: a cost that follows what changed, not the fleet's size)
and read the heads of the waiting queues (``waiting.py``); decide every entry (``plan.py`` with the
policy); apply it all with fenced ``dispatch.lua`` calls. About every half second (Redis clock) it
also releases dead workers and times out jobs their worker did not stop (``reclaim.py``).

Under load, a big pass that moves nothing into or out of the waiting sets reads the next pass's
entries and snapshot, then sends its dispatch without waiting (``inflight.py``): Redis applies it
while the next pass is planned. A pass whose read did not block reads with its snapshot, in one
round trip.

Settings come from ``<p>:config`` and are re-read about once a second, so ``jb config set`` applies
live. A Redis outage never ends the loop: it is logged once and retried with a growing pause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from jobbalancer import lane
from jobbalancer.balancer.adopt import Adopter
from jobbalancer.balancer.apply import take_in
from jobbalancer.balancer.audit import Audit
from jobbalancer.balancer.fleet import Fleet
from jobbalancer.balancer.inflight import InFlight
from jobbalancer.balancer.lease import DEFAULT_LEASE_MS, Lease
from jobbalancer.balancer.plan import Head, Op, plan_pass
from jobbalancer.balancer.policies import (
    JobView,
    Policy,
    WorkerView,
    check_policy,
    choose_or_fall_back,
    load_policy,
    ranking,
)
from jobbalancer.balancer.reclaim import Liveness, reclaim_dead_workers, time_out_overdue
from jobbalancer.balancer.retries import requeue_due_retries
from jobbalancer.balancer.steal import steal_for_idle
from jobbalancer.balancer.waiting import read_heads
from jobbalancer.config import Settings
from jobbalancer.connection import connect, describe
from jobbalancer.errors import RedisUnavailable
from jobbalancer.keys import INBOX_GROUP, Keys
from jobbalancer.scripts import Scripts
from jobbalancer.stats import Sampler

log = logging.getLogger("jobbalancer.balancer")


DEFAULT_BATCH = 2000  # inbox entries per pass: big passes spread the per-pass costs thin under load
READ_BLOCK_MS = 200  # idle wait on the inbox; never 0, which Redis reads as "forever"
OVERLAP_FROM = 256  # inbox entries read: a pass this big is applied while the next one is planned
CONFIG_EVERY_S = 1.0
MAINTAIN_EVERY_MS = 500
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.1, 5.0
CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
Entry = tuple[str, Mapping[str, str] | None]


@dataclass(frozen=True)
class Snapshot:
    now_ms: int
    workers: list[WorkerView]
    heads: dict[str, list[Head]]
    read: list[Entry]  # inbox entries read with the snapshot (none unless asked)


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Balancer:
    """A balancer: leads and places jobs, or stands by until the leader's lease lapses.

    Args:
        url: the Redis URL.
        prefix: the key prefix.
        name: this balancer's name (its lease owner and inbox consumer); unique per process.
        policy: if given, validated now and written to ``<p>:config`` at start (a cluster setting).
        heartbeat_timeout_s: if given, validated now and written to ``<p>:config`` at start.
        lease_ms: the lease's time to live; a standby tries to take it every third of that.
        batch: inbox entries read per pass.

    Raises:
        InvalidSetting: for an unknown policy or a heartbeat timeout that is not > 0.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        name: str | None = None,
        policy: str | None = None,
        heartbeat_timeout_s: float | None = None,
        lease_ms: int = DEFAULT_LEASE_MS,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        self.name = name or default_name()
        self.keys = Keys(prefix)
        self.batch = batch
        self._overrides: dict[str, str] = {}
        if policy is not None:
            check_policy(policy)
            self._overrides["policy"] = policy
        if heartbeat_timeout_s is not None:
            Settings(heartbeat_timeout=heartbeat_timeout_s).validate()
            self._overrides["heartbeat_timeout"] = str(float(heartbeat_timeout_s))
        self._settings = Settings.from_hash(self._overrides)
        self._policy: Policy = load_policy(self._settings.policy)
        self._client = connect(url, check=False, socket_timeout_s=5.0)
        self._scripts = Scripts(self._client)
        self._lease = Lease(self._scripts, prefix, self.name, lease_ms)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._runner: int | None = None
        self._term: str | None = None  # the token we took over under; a new token is a new term
        self._leading = False
        self._recover = False  # re-claim our pending entries (after an outage or a lost group)
        self._busy = False
        self._turn = 0
        self._fleet = Fleet(self.keys)
        self._inflight = InFlight(self._client, self._scripts, self.keys)
        self._ahead: Snapshot | None = None  # the next pass's entries and snapshot, read already
        self._config_due = 0.0
        self._maintained_ms = 0
        self._adopter = Adopter(self.keys.config)
        self._outage_pause: float | None = None
        self._liveness = Liveness()  # no reclaim right after an outage: heartbeats could not land
        self._audit = Audit()  # re-queues jobs whose stream entry or waiting member was deleted
        self._sampler = Sampler()  # the dashboard's history: finished total and waiting depth every 5 s
        self.leading = threading.Event()
        """Set while this balancer leads; tests and embedders can wait on it."""
        self.passes = 0
        """Leader passes completed; grows by at least one every ~200 ms while leading."""
        self.placed = 0
        """Jobs this balancer assigned to workers."""

    @property
    def is_leader(self) -> bool:
        """Whether this balancer holds the lease and has taken over its term."""
        return self._leading and self._lease.token is not None

    @property
    def settings(self) -> Settings:
        """The cluster settings as last read from ``<p>:config``."""
        return self._settings

    def run(self) -> None:
        """Lead or stand by until ``stop()``; Redis outages are waited out, never raised.

        Raises:
            RedisUnavailable: Redis refused the credentials (no retry will fix that; say so at once).
        """
        self._runner = threading.get_ident()
        try:
            while not self._stop.is_set():
                self._guarded_step()
        finally:
            self._release()
            self._client.close()
            self._stopped.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop ``run()`` and give the lease up; from another thread, wait until it has."""
        self._stop.set()
        if self._runner is None:
            self._release()
            self._client.close()
        elif self._runner != threading.get_ident():
            self._stopped.wait(timeout_s)

    def _guarded_step(self) -> None:
        try:
            self._step()
        except redis.ResponseError as exc:
            self._abandon()
            self._on_reply_error(exc)
            return
        except redis.AuthenticationError as exc:  # a ConnectionError to redis-py, but waiting will not help
            self._abandon()
            raise RedisUnavailable(f"Redis at {self._describe_url()} refused the credentials: {exc}") from None
        except CONNECTION_ERRORS as exc:
            self._abandon()
            self._on_outage(exc)
            return
        if self._outage_pause is not None:
            log.warning("Redis at %s answers again", self._describe_url())
            self._outage_pause = None
            self._liveness.answered()  # no worker is judged dead for one heartbeat timeout from now

    def _step(self) -> None:
        if self._overrides:
            overrides: Any = self._overrides  # redis-py's stubs want bytes-or-str keys
            self._client.hset(self.keys.config, mapping=overrides)
            self._overrides = {}
        if not self._lease.hold():
            if self._leading:
                log.warning("balancer %s lost the lease; standing by", self.name)
                self._demote()
            self._stop.wait(self._lease.ttl_ms / 3000)
            return
        if self._lease.token != self._term or self._recover:
            self._take_over()
        self._busy = self._pass()
        self.passes += 1

    def _take_over(self) -> None:
        """Start a term: make sure the group exists, then place what earlier terms read but left."""
        self._abandon()  # whatever was in flight carries the old token: fenced out anyway
        if self._lease.token != self._term:
            log.info("balancer %s leads (lease %s)", self.name, self._lease.token)
        self._term, self._recover = self._lease.token, False
        try:
            self._client.xgroup_create(self.keys.inbox, INBOX_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._config_due = 0.0
        self._fleet.reset()
        cursor = "0-0"
        while True:
            reply: Any = self._client.xautoclaim(self.keys.inbox, INBOX_GROUP, self.name, 0, cursor, count=self.batch)
            cursor, claimed = reply[0], [(e, f) for e, f in reply[1] if e is not None]
            if claimed:
                self._pass(claimed)
            if cursor == "0-0":
                break
        self._leading = True
        self.leading.set()

    def _pass(self, claimed: Sequence[Entry] | None = None) -> bool:
        """One leader pass; return whether it did anything (then the next read does not block)."""
        entries, snap = self._inputs(claimed)
        ops = plan_pass(entries, snap.workers, snap.heads, self._choose, self._turn, ranking(self._policy))
        self._turn += 1
        for op in ops:  # counted now, taken back by _applied if the dispatch skips it
            if op["o"] == "a":
                self._fleet.placed(op["w"])
        self._settle()  # the previous pass's dispatch, which Redis ran while this one was planned
        maintain = snap.now_ms - self._maintained_ms >= MAINTAIN_EVERY_MS
        overlap = claimed is None and not maintain and len(entries) >= OVERLAP_FROM and self._may_read_ahead(ops)
        if overlap:
            self._ahead = self._snapshot(read=True, ahead=True)
        if ops:
            self._inflight.send(self._token(), ops, snap.heads)
        if overlap:
            return True
        results = self._settle()
        if maintain:
            self._maintained_ms = snap.now_ms
            self._maintain(snap.now_ms)
            if steal_for_idle(self._scripts, self.keys, self._token(), snap.workers):
                return True  # the jobs taken back are placed by the next pass, at once
        return bool(entries) or any(results)

    def _inputs(self, claimed: Sequence[Entry] | None) -> tuple[list[Entry], Snapshot]:
        """The pass's inbox entries and snapshot: read ahead by the last pass, or read now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and claimed is None:  # read before the previous pass's dispatch ran
            return ahead.read, ahead
        self._settle()
        if claimed is not None:
            return list(claimed), self._snapshot()
        # The read goes with the snapshot, one write for both; a blocking read ahead of it (Redis
        # takes the snapshot when the read returns), else inside its MULTI.
        snap = self._snapshot(read=True, wait=not self._busy)
        return snap.read, snap

    def _may_read_ahead(self, ops: list[Op]) -> bool:
        """Whether the next pass may read its entries and snapshot before these ops are applied.

        Not when an op moves a job into or out of a waiting set (the next pass reads their heads),
        nor when the fleet's next look is full (stream lengths must include these assignments).
        """
        return not self._fleet.full_due and all(op["o"] != "w" and "m" not in op for op in ops)

    def _settle(self) -> list[int]:
        """Wait for the dispatch in flight, if any, take in its results and return them."""
        settled = self._inflight.settle()
        if settled is None:
            return []
        self._applied(*settled)
        return settled[1]

    def _abandon(self) -> None:
        """Drop what was read ahead and the dispatch in flight: after an error, or a new term."""
        self._ahead = None
        self._inflight.abandon()

    def _read_command(self, block: bool) -> lane.Command:
        block_ms = READ_BLOCK_MS if block else None
        return lane.read_group(INBOX_GROUP, self.name, self.keys.inbox, count=self.batch, block_ms=block_ms)

    def _snapshot(self, read: bool = False, ahead: bool = False, wait: bool = False) -> Snapshot:
        """Redis time, the live workers and the waiting heads; the workers from ``fleet.py``.

        With ``read``, the inbox is read in the same write, ahead of the rest (blocking, with
        ``wait``); ``ahead`` says a dispatch is about to be sent that this snapshot will not include.
        """
        config_due = time.monotonic() >= self._config_due
        first = self._read_command(block=wait) if read else None
        timeout_s = self._settings.heartbeat_timeout
        look = self._fleet.look(self._client, config_due, timeout_s, first, may_be_full=not ahead, wait=wait)
        if look.config is not None:
            self._config_due = time.monotonic() + CONFIG_EVERY_S
            self._apply_config(look.config)
        settings = self._settings
        workers = self._fleet.workers(settings.max_jobs_per_worker, settings.prefetch)
        entries = lane.entries(look.first)
        return Snapshot(look.now_ms, workers, read_heads(self._client, self.keys, look.waitq, workers), entries)

    def _choose(self, job: JobView, candidates: Sequence[WorkerView]) -> WorkerView:
        return choose_or_fall_back(self._policy, self._settings.policy, job, candidates)

    def _applied(self, ops: list[Op], results: list[int], heads: Mapping[str, list[Head]]) -> None:
        """Take in a dispatch's results: count what was placed, correct the fleet (``apply.py``)."""
        self.placed += take_in(self._client, self.keys, self._fleet, ops, results, heads)

    def _maintain(self, now_ms: int) -> None:
        token, settings = self._token(), self._settings
        timeout_s = settings.heartbeat_timeout
        reclaim_dead_workers(self._client, self._scripts, self.keys, token, now_ms, timeout_s, self._liveness)
        time_out_overdue(self._client, self._scripts, self.keys, token, now_ms, settings)
        self._audit.step(self._client, self._scripts, self.keys, token)
        requeue_due_retries(self._client, self._scripts, self.keys, token)
        self._sampler.step(self._client, self.keys, now_ms)

    def _apply_config(self, raw: Mapping[str, str]) -> None:
        self._settings, policy = self._adopter.adopt(raw, self._settings)
        if policy is not None:
            self._policy = policy

    def _token(self) -> str:
        """Our lease token for a fenced script; never '' (which the scripts read as "not fenced")."""
        token = self._lease.token
        if not token:
            raise redis.ResponseError("FENCED no lease held")
        return token

    def _demote(self) -> None:
        self._abandon()
        self._leading = False
        self._lease.forget()
        self.leading.clear()

    def _on_reply_error(self, exc: redis.ResponseError) -> None:
        text = str(exc)
        if text.startswith("FENCED"):
            log.warning("balancer %s lost its lease mid-pass; its writes were refused (fenced)", self.name)
            self._demote()
        elif "NOGROUP" in text:  # also as a MULTI's error, which redis-py prefixes with the command
            self._recover = True  # the inbox or its group was deleted: recreate both (and re-read the fleet)
        else:
            log.error("Redis refused a command: %s", exc)
            self._recover = True
            self._stop.wait(BACKOFF_MAX_S)

    def _on_outage(self, exc: Exception) -> None:
        if self._outage_pause is None:
            log.warning("Redis at %s is unavailable (%s); retrying", self._describe_url(), exc)
            self._outage_pause = BACKOFF_FIRST_S
        self._liveness.outage()
        self._recover = True  # a dispatch may not have been applied: re-claim what we read
        self._stop.wait(self._outage_pause)
        self._outage_pause = min(self._outage_pause * 2, BACKOFF_MAX_S)

    def _describe_url(self) -> str:
        return describe(self._client)

    def _release(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            self._settle()  # the last pass's dispatch: take its results in before leaving
        self._abandon()
        self._leading = False
        self.leading.clear()
        try:
            self._lease.release()
        except (redis.RedisError, OSError) as exc:
            log.warning("could not release the lease (it lapses by itself): %s", exc)
