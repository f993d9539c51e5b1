"""Bad input, generated: every bad item gets a clear error or a dead letter, and nothing else suffers.

One balancer and one worker run as processes for the whole module; hypothesis throws malformed
inbox entries, worker-stream entries and job records at them, and after each batch a good job
must still run, the processes must still be alive, and no good job may have changed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from jobbalancer import Client, Status
from jobbalancer.cli import main
from jobbalancer.dead import dead_letters
from jobbalancer.errors import InvalidJob
from jobbalancer.job import Spec
from jobbalancer.scripts import Scripts
from tests.e2e.conftest import FAST, Cluster
from tests.helpers import wait_for

EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    database=None,  # no .hypothesis directory in the checkout; a failure prints its example
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HOSTILE = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        ["", " ", "\x00", "a\nb", "$(touch /tmp/pwned)", "`id`", "; rm -rf /", "../../etc/passwd", "é" * 200,
         "\ud800", "x" * 5000, "-1", "NaN", "inf", "1e309", "[]", "{}", "null", "*", "'\""]
    ),
)  # fmt: skip
NAMES = ["id", "queue", "priority", "realtime", "tick", "attempt", "kind", "spec"]
FIELD_NAMES = st.one_of(st.sampled_from(NAMES), st.text(max_size=20))


@pytest.fixture(scope="module")
def cluster(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    prefix = f"p{uuid.uuid4().hex[:10]}"
    client = Client(redis_url, prefix)
    client.redis.hset(f"{prefix}:config", mapping=FAST)
    the_cluster = Cluster(redis_url, prefix, tmp_path_factory.mktemp("bad-input"), client)
    the_cluster.balancer()
    the_cluster.worker("w1", 2)
    yield the_cluster
    the_cluster.stop()
    client.close()


def _clean(value: str) -> str:
    return value.encode("utf-8", "replace").decode("utf-8")  # what a Redis client can send as text


def _still_works(cluster: Cluster, good: list[str]) -> None:
    """The processes live, a new job runs, and the good jobs so far are untouched."""
    assert all(proc.poll() is None for proc in cluster.procs.values()), "a process died"
    job = cluster.client.submit("echo fine")
    assert job.result(timeout=20) == "fine\n"
    good.append(job.id)
    for job_id in good:
        record = cluster.client.record(job_id)
        assert (record.status, record.attempts, record.stdout) == (Status.SUCCEEDED, 1, "fine\n")


GOOD: list[str] = []


@EXAMPLES
@given(entries=st.lists(st.dictionaries(FIELD_NAMES, HOSTILE, max_size=6), min_size=1, max_size=5))
def test_malformed_inbox_entries_are_dead_lettered(cluster: Cluster, entries: list[dict[str, str]]) -> None:
    inbox, dead = f"{cluster.prefix}:inbox", f"{cluster.prefix}:dead"
    before = cluster.client.redis.xlen(dead)
    jobs_like = 0
    for fields in entries:
        fields = {_clean(k): _clean(v) for k, v in fields.items()} or {"empty": ""}
        jobs_like += "tick" not in fields or "id" in fields  # a tick without an id is a wake-up, not a job
        cluster.client.redis.xadd(inbox, fields)
    # No generated id has a record, so every entry that is not a tick is bad: each gets a letter.
    wait_for(lambda: cluster.client.redis.xlen(dead) - before == jobs_like, 20, what="every bad entry dead-lettered")
    if jobs_like:
        for _id, letter in cluster.client.redis.xrevrange(dead, count=jobs_like):
            assert letter["reason"]
    wait_for(lambda: cluster.client.redis.xlen(inbox) == 0, 10, what="every entry read and acknowledged")
    _still_works(cluster, GOOD)


@EXAMPLES
@given(entries=st.lists(st.dictionaries(FIELD_NAMES, HOSTILE, max_size=6), min_size=1, max_size=5))
def test_malformed_worker_stream_entries_are_dropped(cluster: Cluster, entries: list[dict[str, str]]) -> None:
    stream = f"{cluster.prefix}:w:w1:jobs"
    for fields in entries:
        cluster.client.redis.xadd(stream, {_clean(k): _clean(v) for k, v in fields.items()} or {"empty": ""})
    # None names a job assigned to w1, so the worker drops them all: none is run, none holds a slot.
    wait_for(lambda: cluster.client.redis.xlen(stream) == 0, 20, what="the worker to drop every bad entry")
    _still_works(cluster, GOOD)


def _bad_spec() -> st.SearchStrategy[tuple[str, str]]:
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8,
    )
    objects = st.fixed_dictionaries(
        {},
        optional={"command": json_values, "argv": json_values, "env": json_values, "cwd": json_values,
                  "func": json_values, "args": json_values, "kwargs": json_values},
    ).map(json.dumps)  # fmt: skip
    texts = st.one_of(objects, st.text(max_size=50), json_values.map(json.dumps))
    return st.tuples(st.sampled_from(["command", "call", "", "shell", "pickle"]) | st.text(max_size=10), texts)


def _invalid(kind: str, spec: str) -> bool:
    try:
        Spec.decode(kind, spec)
    except InvalidJob:
        return True
    return False


@EXAMPLES
@given(bad=st.lists(_bad_spec(), min_size=1, max_size=3))
def test_job_records_the_worker_cannot_parse_fail_with_a_dead_letter(
    cluster: Cluster, bad: list[tuple[str, str]]
) -> None:
    bad = [(_clean(kind), _clean(spec)) for kind, spec in bad]
    for kind, spec in bad:
        assume(_invalid(kind, spec))  # a spec that parses is a job (never run random commands)
    scripts = Scripts(cluster.client.redis)
    ids = [uuid.uuid4().hex for _ in bad]
    for job_id, (kind, spec) in zip(ids, bad, strict=True):
        assert scripts.submit(cluster.prefix, job_id, kind, spec, "default", "0", "0", "", "0", "") == [1]
    for job_id in ids:
        record = cluster.client.job(job_id).wait(20)
        assert record.status is Status.FAILED and (record.error or "").startswith("invalid job: ")
    letters = {letter.job_id: letter for letter in dead_letters(cluster.client, limit=1000)}
    for job_id, (_kind, spec) in zip(ids, bad, strict=True):
        assert letters[job_id].reason.startswith("invalid job: ") and letters[job_id].raw == spec
    _still_works(cluster, GOOD)


def test_wrong_typed_record_fields_do_not_stop_the_job(cluster: Cluster) -> None:
    scripts = Scripts(cluster.client.redis)
    job_id = uuid.uuid4().hex
    spec = Spec.for_command("echo fine").encode()
    assert scripts.submit(cluster.prefix, job_id, "command", spec, "default", "0", "lots", "soon", "0", "") == [1]
    record = cluster.client.job(job_id).wait(20)  # retries "lots" reads as none, watchdog "soon" as none
    assert (record.status, record.stdout, record.watchdog, record.retries) == (Status.SUCCEEDED, "fine\n", None, 0)
    cluster.client.redis.hset(f"{cluster.prefix}:job:{job_id}", "status", "exploded")
    shown = CliRunner().invoke(main, ["--redis", cluster.url, "--prefix", cluster.prefix, "status", job_id])
    assert shown.exit_code == 1 and "unknown status 'exploded'" in shown.stderr
    _still_works(cluster, GOOD)


@pytest.fixture(scope="module")
def jb(redis_url: str) -> Any:
    """The CLI on a prefix of its own per test module (the submit test's jobs are not the ids test's)."""
    prefixes: dict[str, str] = {}
    runner = CliRunner()

    def run(*args: str, space: str = "default") -> Any:
        prefix = prefixes.setdefault(space, f"c{uuid.uuid4().hex[:10]}")
        return runner.invoke(main, ["--redis", redis_url, "--prefix", prefix, *args])

    return run


@EXAMPLES
@given(
    option=st.sampled_from(["--id", "--queue", "--env", "--watchdog", "--priority", "--retries", "--backoff", "--cwd"]),
    value=HOSTILE,
)
def test_hostile_submit_options_are_accepted_or_refused_in_one_line(jb: Any, option: str, value: str) -> None:
    outcome = jb("submit", "true", option, value)
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), outcome.exception
    assert "Traceback" not in outcome.output
    if outcome.exit_code == 0:
        assert outcome.stdout.strip()  # the job's id
    else:
        assert outcome.exit_code == 2, outcome.output
        assert outcome.stderr.startswith("jb: error: ") and outcome.stderr.count("\n") == 1


@EXAMPLES
@given(command=st.sampled_from(["status", "result", "logs", "cancel", "restart", "delete"]), value=HOSTILE)
def test_hostile_job_ids_get_one_line_answers(jb: Any, command: str, value: str) -> None:
    assume(not value.startswith("-"))  # an option to click, not an id
    outcome = jb(command, value, space="ids")  # no job exists there
    assert outcome.exit_code in (1, 2) and "Traceback" not in outcome.output
    assert outcome.stderr.startswith("jb: error: ") and outcome.stderr.count("\n") == 1


def test_oversized_specs_are_refused_at_submit(redis_url: str, jb: Any, tmp_path: Path) -> None:
    prefix = f"s{uuid.uuid4().hex[:10]}"
    client = Client(redis_url, prefix)
    try:
        with pytest.raises(InvalidJob, match=r"job spec is \d+ bytes, over the limit of 1048576 bytes"):
            client.submit("echo " + "x" * (1024 * 1024))
        with pytest.raises(InvalidJob, match="over the limit"):
            client.enqueue("tasks:echo", "y" * (1024 * 1024))
        assert client.redis.xlen(client.keys.inbox) == 0 and client.redis.zcard(client.keys.jobs) == 0
        client.set_setting("spec_limit", "100")  # clients see it within defaults.REFRESH_S; a new one at once
    finally:
        client.close()
    fresh = Client(redis_url, prefix)
    try:
        with pytest.raises(InvalidJob, match="over the limit of 100 bytes"):
            fresh.submit("echo " + "x" * 100)
    finally:
        fresh.close()
    big = tmp_path / "big"
    big.write_text("x" * (1024 * 1024 + 1))
    outcome = jb("submit", big.read_text())
    assert outcome.exit_code == 2 and "over the limit of 1048576 bytes" in outcome.stderr


def test_unpickling_is_never_done() -> None:
    # Payloads are JSON only: no module of the package imports pickle (or its kin) at all.
    sources = Path(__file__).resolve().parents[2] / "jobbalancer"
    for path in sources.rglob("*.py"):
        text = path.read_text()
        for module in ("pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve"):
            assert f"import {module}" not in text and f"from {module}" not in text, f"{path} imports {module}"


def test_redis_client_errors_on_bad_data_stay_clear(cluster: Cluster) -> None:
    cluster.client.redis.set(f"{cluster.prefix}:job:wrongtype", "a string, not a hash")
    shown = CliRunner().invoke(main, ["--redis", cluster.url, "--prefix", cluster.prefix, "status", "wrongtype"])
    assert shown.exit_code == 1 and shown.stderr.startswith("jb: error: ") and "WRONGTYPE" in shown.stderr
    assert isinstance(cluster.client.redis, redis.Redis)
    _still_works(cluster, GOOD)
