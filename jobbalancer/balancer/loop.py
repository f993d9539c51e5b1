"""The balancer process: lead (or stand by), read the inbox, place jobs, reclaim the dead.

One pass of the leader: renew the lease; read up to ``batch`` inbox entries; bring its picture of
the live workers up to date (``fleet.py``: a cost that follows what changed, not the fleet's size)
and read the heads of the waiting queues; decide every entry (``plan.py`` with the policy); apply
it all with fenced ``dispatch.lua`` calls. About every half second (Redis clock) it also releases
dead workers and times out jobs their worker did not stop (``reclaim.py``).

Settings come from ``<p>:config`` and are re-read about once a second, so ``jb config set`` applies
live. A Redis outage never ends the loop: it is logged once and retried with a growing pause.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis

from jobbalancer.balancer.apply import apply_ops
from jobbalancer.balancer.audit import Audit
from jobbalancer.balancer.fleet import Fleet
from jobbalancer.balancer.lease import DEFAULT_LEASE_MS, Lease
from jobbalancer.balancer.plan import Head, Op, parse_head, plan_pass
from jobbalancer.balancer.policies import JobView, LeastLoaded, Policy, WorkerView, check_policy, load_policy, ranking
from jobbalancer.balancer.reclaim import Liveness, drop_stale_head, reclaim_dead_workers, time_out_overdue
from jobbalancer.balancer.retries import requeue_due_retries
from jobbalancer.balancer.steal import steal_for_idle
from jobbalancer.config import Settings
from jobbalancer.connection import connect, describe
from jobbalancer.errors import InvalidSetting, RedisUnavailable
from jobbalancer.keys import INBOX_GROUP, Keys
from jobbalancer.scripts import Scripts
from jobbalancer.stats import Sampler

log = logging.getLogger("jobbalancer.balancer")


DEFAULT_BATCH = 2000  # inbox entries per pass: big passes spread the per-pass costs thin under load
READ_BLOCK_MS = 200  # idle wait on the inbox; never 0, which Redis reads as "forever"
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


GONE = 2  # dispatch.lua: the worker left <p>:workers before the assignment; the job waits


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
        self._fallback = LeastLoaded()
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
        self._config_due = 0.0
        self._maintained_ms = 0
        self._bad_settings: set[tuple[str, str]] = set()
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
            self._on_reply_error(exc)
            return
        except redis.AuthenticationError as exc:  # a ConnectionError to redis-py, but waiting will not help
            raise RedisUnavailable(f"Redis at {self._describe_url()} refused the credentials: {exc}") from None
        except CONNECTION_ERRORS as exc:
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
        entries = self._read() if claimed is None else list(claimed)
        snap = self._snapshot()
        ops = plan_pass(entries, snap.workers, snap.heads, self._choose, self._turn, ranking(self._policy))
        self._turn += 1
        results = self._dispatch(ops)
        self._drop_stale_heads(ops, results, snap.heads)
        if snap.now_ms - self._maintained_ms >= MAINTAIN_EVERY_MS:
            self._maintained_ms = snap.now_ms
            self._maintain(snap.now_ms)
            if steal_for_idle(self._scripts, self.keys, self._token(), snap.workers):
                return True  # the jobs taken back are placed by the next pass, at once
        return bool(entries) or any(results)

    def _read(self) -> list[Entry]:
        reply: Any = self._client.xreadgroup(
            INBOX_GROUP,
            self.name,
            {self.keys.inbox: ">"},
            count=self.batch,
            block=None if self._busy else READ_BLOCK_MS,
        )
        return list(reply[0][1]) if reply else []

    def _snapshot(self) -> Snapshot:
        """Redis time, the live workers and the waiting heads; the workers from ``fleet.py``."""
        config_due = time.monotonic() >= self._config_due
        look = self._fleet.look(self._client, config_due, self._settings.heartbeat_timeout)
        if look.config is not None:
            self._config_due = time.monotonic() + CONFIG_EVERY_S
            self._apply_config(look.config)
        settings = self._settings
        workers = self._fleet.workers(settings.max_jobs_per_worker, settings.prefetch)
        return Snapshot(look.now_ms, workers, self._heads(look.waitq, workers))

    def _heads(self, queues: list[str], workers: list[WorkerView]) -> dict[str, list[Head]]:
        """The first waiting jobs of each queue, as many as its workers have free slots."""
        wanted = {q: sum(w.free for w in workers if q in w.queues and w.free > 0) for q in queues}
        wanted = {q: n for q, n in wanted.items() if n > 0}
        if not wanted:
            return {}
        pipe = self._client.pipeline(transaction=False)
        for queue, n in wanted.items():
            pipe.zrange(self.keys.waiting(queue), 0, n - 1, withscores=True)
        replies = pipe.execute()
        return {q: [parse_head(q, m, s) for m, s in rows] for q, rows in zip(wanted, replies, strict=True)}

    def _choose(self, job: JobView, candidates: Sequence[WorkerView]) -> WorkerView:
        """The policy's choice; a policy that fails or answers off the list falls back to least-loaded."""
        try:
            chosen = self._policy.choose(job, candidates)
        except Exception:  # a user's policy may raise anything; placement must go on
            log.exception("policy %r failed for job %s; using least-loaded", self._settings.policy, job.id)
            return self._fallback.choose(job, candidates)
        if chosen not in candidates:
            log.error("policy %r chose %r, not a candidate; using least-loaded", self._settings.policy, chosen)
            return self._fallback.choose(job, candidates)
        return chosen

    def _dispatch(self, ops: list[Op]) -> list[int]:
        """Apply the ops (``apply.py``), fenced by our token; a FENCED reply propagates."""
        results = apply_ops(self._client, self._scripts, self.keys, self._token(), ops)
        for op, applied in zip(ops, results, strict=True):
            if applied == GONE:
                self._fleet.gone(op["w"])
            elif applied:
                self._log_op(op)
        return results

    def _log_op(self, op: Op) -> None:
        if op["o"] == "a":
            self.placed += 1
            self._fleet.placed(op["w"])
        elif op["o"] == "d":
            log.warning("inbox entry %s dead-lettered: %s (raw %s)", op["e"], op["why"], op["raw"])
        elif op["o"] == "r":
            log.info("realtime job %s rejected: no worker had a free slot", op["id"])

    def _drop_stale_heads(self, ops: list[Op], results: list[int], heads: Mapping[str, list[Head]]) -> None:
        """Remove waiting members whose job has moved on, so a stale head cannot block its queue.

        The scripts keep the waiting sets in step with the records; this guards against a set
        edited by hand or a record that vanished.
        """
        queue_of = {head.member: queue for queue, rows in heads.items() for head in rows}
        for op, applied in zip(ops, results, strict=True):
            if op["o"] == "a" and "m" in op and applied == 0:
                drop_stale_head(self._client, self.keys, queue_of[op["m"]], op["id"], op["m"])

    def _maintain(self, now_ms: int) -> None:
        token, settings = self._token(), self._settings
        timeout_s = settings.heartbeat_timeout
        reclaim_dead_workers(self._client, self._scripts, self.keys, token, now_ms, timeout_s, self._liveness)
        time_out_overdue(self._client, self._scripts, self.keys, token, now_ms, settings)
        self._audit.step(self._client, self._scripts, self.keys, token)
        requeue_due_retries(self._client, self._scripts, self.keys, token)
        self._sampler.step(self._client, self.keys, now_ms)

    def _apply_config(self, raw: Mapping[str, str]) -> None:
        """Adopt the config hash; a value that does not validate keeps the previous one, logged once."""
        settings = Settings()
        for name in Settings.names():
            if name not in raw:
                continue
            try:
                settings = settings.with_value(name, raw[name]).validate()
            except InvalidSetting as exc:
                self._warn_setting(name, raw[name], exc)
                settings = replace(settings, **{name: getattr(self._settings, name)})
        if settings.policy != self._settings.policy:
            try:
                self._policy = load_policy(settings.policy)
                log.info("policy is now %r", settings.policy)
            except InvalidSetting as exc:
                self._warn_setting("policy", settings.policy, exc)
                settings = replace(settings, policy=self._settings.policy)
        self._settings = settings

    def _warn_setting(self, name: str, text: str, exc: InvalidSetting) -> None:
        if (name, text) not in self._bad_settings:
            self._bad_settings.add((name, text))
            log.warning("ignoring %s=%r in %s: %s", name, text, self.keys.config, exc)

    def _token(self) -> str:
        """Our lease token for a fenced script; never '' (which the scripts read as "not fenced")."""
        token = self._lease.token
        if not token:
            raise redis.ResponseError("FENCED no lease held")
        return token

    def _demote(self) -> None:
        self._leading = False
        self._lease.forget()
        self.leading.clear()

    def _on_reply_error(self, exc: redis.ResponseError) -> None:
        text = str(exc)
        if text.startswith("FENCED"):
            log.warning("balancer %s lost its lease mid-pass; its writes were refused (fenced)", self.name)
            self._demote()
        elif text.startswith("NOGROUP"):
            self._recover = True  # the inbox or its group was deleted: recreate both
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
        self._leading = False
        self.leading.clear()
        try:
            self._lease.release()
        except (redis.RedisError, OSError) as exc:
            log.warning("could not release the lease (it lapses by itself): %s", exc)
