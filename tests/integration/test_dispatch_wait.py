"""dispatch.lua's wait ops: jobs with no free slot go to their queue's waiting set in arrival order."""

from __future__ import annotations

import redis

from jobbalancer.balancer.apply import apply_ops
from jobbalancer.job import Options, Spec, submit_argv
from jobbalancer.keys import Keys
from jobbalancer.scripts import Scripts


def test_one_call_of_wait_ops_keeps_arrival_order_and_a_job_keeps_its_sequence(r: redis.Redis, prefix: str) -> None:
    scripts, keys = Scripts(r), Keys(prefix)
    token = scripts.lease(prefix, "b1", 60_000, "", "hold")
    for i in range(4):
        scripts.submit(prefix, *submit_argv(f"j{i}", Spec.for_command("true"), Options(priority=1 if i == 3 else 0)))
    r.hset(keys.job("j2"), "seq", "0000000000000007")  # put back earlier: its place comes with it
    r.set(keys.seq, 10)
    inbox: list[tuple[str, dict[str, str]]] = r.xrange(keys.inbox)  # type: ignore[assignment]
    ops = [{"o": "w", "id": f["id"], "e": e} for e, f in inbox]

    assert apply_ops(r, scripts, keys, token, ops) == [1, 1, 1, 1]

    waiting = r.zrange(keys.waiting("default"), 0, -1)
    assert waiting == [
        "0000000000000013:j3",  # the higher priority first
        "0000000000000007:j2",  # then by arrival: its own, older sequence
        "0000000000000011:j0",
        "0000000000000012:j1",
    ]
    assert [r.hget(keys.job(f"j{i}"), "wm") for i in range(4)] == [waiting[2], waiting[3], waiting[1], waiting[0]]
    assert r.hget(keys.job("j0"), "seq") == "0000000000000011"
    assert r.smembers(keys.waitq) == {"default"} and r.xlen(keys.inbox) == 0
