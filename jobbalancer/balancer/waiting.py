"""The leader's reads and upkeep of the waiting sets (``<p>:waiting:<queue>``, score -priority).

Each pass reads the heads of the queues with waiting jobs, as many as their workers have free
slots; a head whose job has moved on (a set edited by hand, a record that vanished) is removed
when dispatch skips it, so it cannot block its queue.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

from jobbalancer import lane
from jobbalancer.balancer.plan import Head, parse_head
from jobbalancer.balancer.policies import WorkerView
from jobbalancer.keys import Keys

log = logging.getLogger("jobbalancer.balancer")


def read_heads(
    client: redis.Redis, keys: Keys, queues: Sequence[str], workers: Sequence[WorkerView]
) -> dict[str, list[Head]]:
    """The first waiting jobs of each queue, as many as its workers have free slots."""
    wanted = {q: sum(w.free for w in workers if q in w.queues and w.free > 0) for q in queues}
    wanted = {q: n for q, n in wanted.items() if n > 0}
    if not wanted:
        return {}
    replies = lane.checked(
        lane.run(client, [("ZRANGE", keys.waiting(q), 0, n - 1, "WITHSCORES") for q, n in wanted.items()])
    )
    return {q: [parse_head(q, m, s) for m, s in lane.scored(rows)] for q, rows in zip(wanted, replies, strict=True)}


def drop_stale_head(client: redis.Redis, keys: Keys, queue: str, job_id: str, member: str) -> bool:
    """Remove a waiting member whose job has moved on, so a stale head cannot block its queue.

    The scripts keep the waiting sets in step with the records; this guards against a set edited
    by hand or a record that vanished. Checked and removed under WATCH, so a member that became
    live again meanwhile stays. Returns whether it was removed.
    """
    job_key, waiting = keys.job(job_id), keys.waiting(queue)
    stale = False

    def remove(pipe: Any) -> None:
        nonlocal stale
        status, wm = pipe.hmget(job_key, "status", "wm")
        stale = not (status == "queued" and wm == member)
        if not stale:
            return
        last = pipe.zcard(waiting) <= 1 and pipe.zscore(waiting, member) is not None
        pipe.multi()
        pipe.zrem(waiting, member)
        if last:
            pipe.srem(keys.waitq, queue)

    client.transaction(remove, job_key, waiting)
    if stale:
        log.warning("dropped stale waiting member %s of queue %s (its job is not waiting)", member, queue)
    return stale
