"""lane.py against a real redis-server: replies shaped alike in RESP2 and RESP3, errors in place,
transactions, and a connection that drops between calls."""

from __future__ import annotations

import pytest
import redis

from jobbalancer import lane
from jobbalancer.connection import connect


@pytest.fixture(params=["", "?protocol=2"], ids=["resp3", "resp2"])
def client(request: pytest.FixtureRequest, redis_url: str) -> redis.Redis:
    return connect(redis_url + request.param)


def test_replies_are_shaped_alike_in_both_protocols(client: redis.Redis, prefix: str) -> None:
    stream, group = f"{prefix}:s", "g"
    first = client.xadd(stream, {"id": "a", "n": "1"})
    client.xgroup_create(stream, group, id="0")
    client.hset(f"{prefix}:h", mapping={"f": "v", "g": "w"})
    client.zadd(f"{prefix}:z", {"m": 1.5, "n": 2})
    read = ("XREADGROUP", "GROUP", group, "c", "COUNT", 10, "STREAMS", stream, ">")
    got, fields, scores, again, missing = lane.run(
        client, [read, ("HGETALL", f"{prefix}:h"), ("ZRANGE", f"{prefix}:z", 0, -1, "WITHSCORES"), read,
                 ("HGETALL", f"{prefix}:none")]
    )  # fmt: skip
    assert lane.entries(got) == [(first, {"id": "a", "n": "1"})]
    assert lane.pairs(fields) == {"f": "v", "g": "w"}
    assert lane.scored(scores) == [("m", 1.5), ("n", 2.0)]
    assert lane.entries(again) == [] and lane.pairs(missing) == {}
    client.xdel(stream, first)  # still pending, but deleted: an entry without fields
    pending = lane.one(client, "XREADGROUP", "GROUP", group, "c", "STREAMS", stream, "0")
    assert lane.entries(pending) == [(first, None)]


def test_an_error_reply_takes_its_place_and_the_rest_still_run(client: redis.Redis, prefix: str) -> None:
    client.set(f"{prefix}:str", "x")
    wrong, fine = lane.run(client, [("HGETALL", f"{prefix}:str"), ("GET", f"{prefix}:str")])
    assert isinstance(wrong, redis.ResponseError) and "WRONGTYPE" in str(wrong)
    assert fine == "x"
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        lane.one(client, "HGETALL", f"{prefix}:str")
    assert lane.one(client, "GET", f"{prefix}:str") == "x"  # the connection is still in step


def test_a_transaction_returns_exec_replies_and_raises_a_failed_command(client: redis.Redis, prefix: str) -> None:
    key = f"{prefix}:n"
    assert lane.transaction(client, [("INCR", key), ("INCRBY", key, 4)]) == [1, 5]
    client.set(f"{prefix}:str", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        lane.transaction(client, [("INCR", key), ("HGETALL", f"{prefix}:str")])
    assert client.get(key) == "6"  # EXEC ran the rest: a transaction is not rolled back
    with pytest.raises(redis.ResponseError, match="unknown command"):
        lane.transaction(client, [("NOSUCHCOMMAND",)])  # refused while queued: EXEC aborts it all


def test_a_connection_killed_between_calls_is_reopened(client: redis.Redis, redis_url: str, prefix: str) -> None:
    client.set(f"{prefix}:k", "1")
    me = lane.one(client, "CLIENT", "ID")
    admin = connect(redis_url)
    try:
        assert admin.client_kill_filter(_id=me) == 1
    finally:
        admin.close()
    assert lane.one(client, "GET", f"{prefix}:k") == "1"  # retried on a new connection
    assert lane.one(client, "CLIENT", "ID") != me
