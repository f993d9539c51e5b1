"""Applying one pass's ops with ``dispatch.lua``: in chunks, fenced, and one bad entry isolated.

``dispatch.lua`` dead-letters by itself an entry whose job key is not a hash. Should a call still
fail half-way on one entry's data (WRONGTYPE from another key, such as a worker stream clobbered
by hand), retrying the same chunk would fail forever and block every job behind it; so the ops of
that chunk are retried one by one (an op already applied is skipped by the script: its job moved
on), and an entry whose op still fails is dead-lettered with the reason. Any other refusal
(FENCED, OOM, READONLY, ...) is about Redis or the lease: it propagates, and the entries of the
failed call stay pending for the next term (``dispatch.lua`` acks them together at its end).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import redis

from jobbalancer.balancer.fleet import Fleet
from jobbalancer.balancer.plan import Head, Op
from jobbalancer.balancer.waiting import drop_stale_head
from jobbalancer.keys import Keys
from jobbalancer.scripts import Scripts

log = logging.getLogger("jobbalancer.balancer")

ONE_BY_ONE = "dispatch failed on bad data (%s); applying the rest of the pass op by op"
DISPATCH_CHUNK = 1000  # ops per script call: bounds how long one call holds Redis (a few ms)
GONE = 2  # dispatch.lua: the worker left <p>:workers before the assignment; the job waits


def encode_ops(ops: list[Op]) -> list[str]:
    """The ops as ``dispatch.lua`` takes them: five strings each (its header), nothing to decode."""
    flat: list[str] = []
    add = flat.extend
    for op in ops:
        get, o = op.get, op["o"]
        if o == "a":
            add((o, op["id"], op["w"], get("e", ""), get("m", "")))
        elif o == "d":
            add((o, get("id", ""), op["why"], op["e"], op["raw"]))
        else:  # w, r and x: the job (x has none) and its inbox entry
            add((o, get("id", ""), "", op["e"], ""))
    return flat


def apply_ops(client: redis.Redis, scripts: Scripts, keys: Keys, token: str, ops: list[Op]) -> list[int]:
    """Apply ``ops`` under ``token``; one result per op (1 applied, 0 skipped or dead-lettered,
    2 its worker had left: see ``dispatch.lua``).

    Raises:
        redis.ResponseError: FENCED when the lease is lost (the scripts wrote nothing), or any
            refusal that is not about one entry's data.
    """
    results: list[int] = []
    for start in range(0, len(ops), DISPATCH_CHUNK):
        chunk = ops[start : start + DISPATCH_CHUNK]
        try:
            results += scripts.dispatch(keys.prefix, token, *encode_ops(chunk))
        except redis.ResponseError as exc:
            if not about_data(exc):
                raise
            log.error(ONE_BY_ONE, exc)
            results += apply_one_by_one(client, scripts, keys, token, chunk)
    return results


def about_data(exc: redis.ResponseError) -> bool:
    """Whether Redis refused a dispatch for one entry's data (then ``apply_one_by_one``)."""
    return "WRONGTYPE" in str(exc)


def apply_one_by_one(client: redis.Redis, scripts: Scripts, keys: Keys, token: str, ops: list[Op]) -> list[int]:
    """Apply the ops of a call that failed on bad data one by one, dead-lettering the entry at fault."""
    pipe = client.pipeline(transaction=False)
    for op in ops:
        pipe.xrange(keys.inbox, op.get("e") or "0-0", op.get("e") or "0-0", count=1)
    present = [bool(rows) for rows in pipe.execute()]
    # An entry gone from the inbox was applied (and acked) before the failure; an op without an
    # entry (a waiting head) is safe to repeat: dispatch.lua skips a job that has moved on.
    return [
        _apply_alone(scripts, keys, token, op) if is_there or not op.get("e") else 1
        for op, is_there in zip(ops, present, strict=True)
    ]


def _apply_alone(scripts: Scripts, keys: Keys, token: str, op: Op) -> int:
    try:
        return int(scripts.dispatch(keys.prefix, token, *encode_ops([op]))[0])
    except redis.ResponseError as exc:
        if not about_data(exc) or not op.get("e"):
            raise
        why = f"could not be placed: {exc}"
        dead = {"o": "d", "e": op["e"], "why": why, "raw": json.dumps(op, sort_keys=True)}
        if op.get("id"):
            dead["id"] = op["id"]
        scripts.dispatch(keys.prefix, token, *encode_ops([dead]))
        log.warning("inbox entry %s (job %s) dead-lettered: %s", op["e"], op.get("id"), why)
        return 0


def take_in(
    client: redis.Redis, keys: Keys, fleet: Fleet, ops: list[Op], results: list[int], heads: Mapping[str, list[Head]]
) -> int:
    """Take in a dispatch's results: correct the fleet view (its assignments were counted when
    planned), log dead letters and rejections; return how many jobs were placed.

    A waiting member whose job had moved on is removed, so a stale head cannot block its queue
    (the scripts keep the waiting sets in step with the records; this guards against a set
    edited by hand or a record that vanished).
    """
    placed = 0
    for op, applied in zip(ops, results, strict=True):
        o = op["o"]
        if o == "a":
            if applied == 1:
                placed += 1
            elif applied == GONE:
                fleet.gone(op["w"])
            else:
                fleet.unplaced(op["w"])
                if "m" in op:
                    queue = next(q for q, rows in heads.items() if any(h.member == op["m"] for h in rows))
                    drop_stale_head(client, keys, queue, op["id"], op["m"])
        elif applied and o == "d":
            log.warning("inbox entry %s dead-lettered: %s (raw %s)", op["e"], op["why"], op["raw"])
        elif applied and o == "r":
            log.info("realtime job %s rejected: no worker had a free slot", op["id"])
    return placed
