"""One pass's decisions, as pure functions: inbox entries and a worker snapshot in, dispatch ops out.

The ops are the ones ``lua/dispatch.lua`` applies (its header is the reference):
``a`` assign, ``w`` wait, ``r`` reject, ``d`` dead-letter, ``x`` drop.

Order of service within a pass: realtime jobs first (they either start now or are rejected), then
queue by queue in a rotating order. Within a queue the waiting heads and the new entries are merged
by priority (highest first), waiting before new at equal priority, then by arrival; the first K get
the K free slots of that queue's workers, and new entries beyond them wait.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from jobbalancer.balancer.policies import JobView, Ranked, WorkerView
from jobbalancer.balancer.pool import Pool
from jobbalancer.job import ID_PATTERN, PRIORITY_LIMIT, QUEUE_PATTERN

Op = dict[str, str]
Chooser = Callable[[JobView, Sequence[WorkerView]], WorkerView]
WORKER_FIELDS = ("slots", "queues", "cpu", "mem", "load1", "state")
DRAINING = "draining"
_QUEUE_SPLIT = re.compile(r"[,\s]+")
RAW_LIMIT = 4096


@dataclass(frozen=True)
class Inbound:
    """A well-formed job entry read from the inbox."""

    entry: str
    job: JobView
    realtime: bool


@dataclass(frozen=True)
class Head:
    """A job at the head of a waiting zset (member ``seq:id``, score -priority)."""

    member: str
    job: JobView

    @property
    def seq(self) -> str:
        return self.member.partition(":")[0]


@functools.lru_cache(maxsize=4096)
def _valid_queue(name: str) -> bool:
    """Whether a queue name is well formed; remembered, since a cluster has few queues."""
    return QUEUE_PATTERN.match(name) is not None


def _problem(fields: Mapping[str, str]) -> str | None:
    job_id = fields.get("id")
    if not job_id or not ID_PATTERN.match(job_id):
        return "inbox entry has no valid job id" if job_id else "inbox entry has no job id"
    if not _valid_queue(fields.get("queue", "")):
        return f"queue {fields.get('queue')!r} is not a valid queue name"
    try:
        priority = int(fields.get("priority", "0"))
    except ValueError:
        priority = PRIORITY_LIMIT + 1
    if abs(priority) > PRIORITY_LIMIT:
        return f"priority {fields.get('priority')!r} is not an integer within ±{PRIORITY_LIMIT}"
    if fields.get("realtime", "0") not in ("0", "1"):
        return f"realtime {fields.get('realtime')!r} is not 0 or 1"
    return None


def parse_entry(entry: str, fields: Mapping[str, str] | None) -> Inbound | Op:
    """An inbox entry as a job to place, or the op that disposes of it (tick, malformed)."""
    if not fields or ("tick" in fields and "id" not in fields):
        return {"o": "x", "e": entry}
    problem = _problem(fields)
    if problem is not None:
        raw = json.dumps(dict(fields), sort_keys=True)
        if len(raw) > RAW_LIMIT:  # a dead letter keeps the start of a huge entry, not all of it
            raw = raw[:RAW_LIMIT] + f"... [{len(raw) - RAW_LIMIT} more characters]"
        op = {"o": "d", "e": entry, "why": problem, "raw": raw}
        if fields.get("id"):
            op["id"] = fields["id"]
        return op
    job = JobView(fields["id"], fields["queue"], int(fields.get("priority", "0")))
    return Inbound(entry, job, fields.get("realtime") == "1")


def parse_head(queue: str, member: str, score: float) -> Head:
    return Head(member, JobView(member.partition(":")[2], queue, int(-score)))


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _float(text: str | None) -> float:
    try:
        return float(text) if text else 0.0
    except ValueError:
        return 0.0


def parse_queues(text: str | None) -> frozenset[str]:
    """A worker's ``queues`` field: names separated by commas or spaces (a JSON list also works)."""
    if not text:
        return frozenset({"default"})
    if text.startswith("["):
        try:
            names = json.loads(text)
        except ValueError:
            names = []
        return frozenset(str(n) for n in names) if isinstance(names, list) else frozenset()
    return frozenset(n for n in _QUEUE_SPLIT.split(text) if n)


def worker_view(
    name: str, fields: Sequence[str | None], outstanding: int, cap: int, prefetch: int
) -> WorkerView | None:
    """A worker's view from ``HMGET <p>:w:<name> WORKER_FIELDS``; None if it must get nothing.

    A draining worker gets nothing; so does one whose hash is gone or has no usable ``slots``.
    """
    raw = dict(zip(WORKER_FIELDS, fields, strict=True))
    slots = _int(raw["slots"])
    if raw["state"] == DRAINING or slots is None or slots < 0:
        return None
    return WorkerView(
        name=name,
        slots=min(slots, cap) if cap > 0 else slots,
        outstanding=outstanding,
        cpu=_float(raw["cpu"]),
        mem=_float(raw["mem"]),
        load1=_float(raw["load1"]),
        queues=parse_queues(raw["queues"]),
        prefetch=prefetch,
    )


class Plan:
    """The decisions of one pass, keeping the in-memory load current after each choice.

    With a ``ranked`` policy (the built-in least-loaded, cpu and round-robin) each queue's
    candidates sit in a heap (``pool.py``): a choice costs O(log workers) instead of a look at
    every worker. Any other policy's ``choose`` gets the full candidate list for every job.
    """

    def __init__(self, workers: Sequence[WorkerView], choose: Chooser, ranked: Ranked | None = None) -> None:
        self.workers = {w.name: w for w in workers}
        self.ops: list[Op] = []
        self.last_pick: str | None = None
        self._choose = choose
        self._ranked = ranked
        self._picks: dict[str, int] = {}
        self._pools: dict[str, Pool] = {}

    def candidates(self, queue: str, *, now: bool = False) -> list[WorkerView]:
        """Workers serving ``queue`` that may take a job (``now``: that would start it at once)."""
        return [w for w in self.workers.values() if queue in w.queues and (w.free_now if now else w.free) > 0]

    def _pool(self, queue: str, ranked: Ranked) -> Pool:
        pool = self._pools.get(queue)
        if pool is None:
            after = ranked.rotation.last
            pool = self._pools[queue] = Pool(self.candidates(queue), ranked.rank, self._picks, after)
        return pool

    def free(self, queue: str) -> int:
        """How many jobs of ``queue`` can be placed now."""
        if self._ranked is not None:
            return self._pool(queue, self._ranked).free
        return sum(w.free for w in self.candidates(queue))

    def _assign(self, job: JobView, chosen: WorkerView, source: str, place: str) -> None:
        """Assign ``job`` to ``chosen``; ``source`` is "e" (inbox entry ``place``) or "m" (waiting member)."""
        name = chosen.name
        taken = chosen.with_outstanding(chosen.outstanding + 1)
        self.workers[name] = taken
        picks = self._picks
        picks[name] = picks.get(name, 0) + 1
        pools = self._pools
        for queue in taken.queues:
            pool = pools.get(queue)
            if pool is not None:
                pool.update(taken)
        self.last_pick = name
        self.ops.append({"o": "a", "id": job.id, "w": name, source: place})

    def _best(self, job: JobView) -> WorkerView | None:
        if self._ranked is not None:
            return self._pool(job.queue, self._ranked).best()
        candidates = self.candidates(job.queue)
        return self._choose(job, candidates) if candidates else None

    def realtime(self, item: Inbound) -> None:
        """Start it on a worker with a slot free now, or reject it."""
        candidates = self.candidates(item.job.queue, now=True)
        if candidates:
            self._assign(item.job, self._choose(item.job, candidates), "e", item.entry)
        else:
            self.ops.append({"o": "r", "id": item.job.id, "e": item.entry})

    def serve(self, queue: str, heads: Sequence[Head], fresh: Sequence[Inbound]) -> None:
        """Give the queue's free slots to its best waiting and new jobs; the new rest wait."""
        free = self.free(queue)
        ranked: list[tuple[int, int, str | int, Head | Inbound]] = [
            (-h.job.priority, 0, h.seq, h) for h in heads[:free]
        ]
        ranked += [(-item.job.priority, 1, n, item) for n, item in enumerate(fresh)]
        ranked.sort(key=lambda row: row[:3])  # never reaches mixed types: waiting (0) vs new (1) differ first
        best, assign, ops = self._best, self._assign, self.ops
        for n, (*_, item) in enumerate(ranked):
            chosen = best(item.job) if n < free else None
            if chosen is not None:
                if isinstance(item, Head):
                    assign(item.job, chosen, "m", item.member)
                else:
                    assign(item.job, chosen, "e", item.entry)
            elif isinstance(item, Inbound):
                ops.append({"o": "w", "id": item.job.id, "e": item.entry})


def plan_pass(
    entries: Sequence[tuple[str, Mapping[str, str] | None]],
    workers: Sequence[WorkerView],
    heads: Mapping[str, Sequence[Head]],
    choose: Chooser,
    turn: int = 0,
    ranked: Ranked | None = None,
) -> list[Op]:
    """Every op of one pass.

    Args:
        entries: inbox entries read (or claimed) this pass, as ``(entry id, fields)``.
        workers: the live workers that may get jobs.
        heads: per queue with waiting jobs, its first waiting jobs (at least as many as it has
            free slots); a queue listed here is served even without new entries.
        choose: the policy's choice (the loop wraps it with a fallback).
        turn: rotates the order queues are served in, so that no queue always comes last.
        ranked: the policy, when it is a ranking one (``policies.ranking``): its choices come from
            per-queue heaps, and its turn moves on to this pass's last pick.
    """
    plan = Plan(workers, choose, ranked)
    fresh: dict[str, list[Inbound]] = {}
    for entry, fields in entries:
        item = parse_entry(entry, fields)
        if isinstance(item, dict):
            plan.ops.append(item)
        elif item.realtime:
            plan.realtime(item)
        else:
            fresh.setdefault(item.job.queue, []).append(item)
    queues = sorted(set(fresh) | set(heads))
    if queues:
        start = turn % len(queues)
        for queue in queues[start:] + queues[:start]:
            plan.serve(queue, heads.get(queue, ()), fresh.get(queue, ()))
    if ranked is not None and plan.last_pick is not None:
        ranked.rotation.moved_to(plan.last_pick)
    return plan.ops
