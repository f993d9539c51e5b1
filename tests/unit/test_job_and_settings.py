"""Pure logic of the job model and the settings: encoding, validation, parsing."""

from __future__ import annotations

import json
import uuid

import pytest

from jobbalancer.config import Settings
from jobbalancer.errors import InvalidJob, InvalidSetting
from jobbalancer.job import (
    SUBMIT_BATCH,
    SUBMIT_BATCH_CHARS,
    Kind,
    Options,
    Record,
    Spec,
    Status,
    func_path,
    new_id,
    record_fields,
    submit_argv,
    submit_batches,
)


def test_command_spec_round_trips_through_the_wire() -> None:
    spec = Spec.for_command("make test", cwd="/src", env={"CC": "clang"})
    assert Spec.decode("command", spec.encode()) == spec
    assert json.loads(spec.encode()) == {"command": "make test", "cwd": "/src", "env": {"CC": "clang"}}


def test_call_spec_takes_a_callable_or_a_path() -> None:
    assert func_path(json.dumps) == "json:dumps"
    spec = Spec.for_call("pkg.mod:fn", (1, "a"), {"k": [1, 2]})
    assert Spec.decode("call", spec.encode()) == spec


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Spec.for_command("  "), "command must be a non-empty string"),
        (lambda: Spec.for_command("x", env={"A=B": "1"}), "env entry 'A=B'"),
        (lambda: Spec.for_call("no_colon"), "must be an import path"),
        (lambda: Spec.for_call(lambda: 1), "no importable path"),
        (lambda: Spec.for_call("m:f", (object(),)), "JSON-serialisable"),
        (lambda: Spec.for_call("m:f", (float("nan"),)), "JSON-serialisable"),
        (lambda: Spec.decode("call", "{bad json"), "not valid JSON"),
        (lambda: Spec.decode("shell", "{}"), "unknown job kind 'shell'"),
        (lambda: Spec.decode("call", '{"func": "m:f", "args": {}}'), "args must be a list"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidJob, match=message):
        build()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (Options(watchdog_s=0), "watchdog"),
        (Options(watchdog_s=float("inf")), "watchdog"),
        (Options(queue=""), "queue"),
        (Options(retries=-1), "retries"),
        (Options(priority=10**7), "priority"),
        (Options(id="a b"), "id"),
    ],
)
def test_bad_options_are_refused(options: Options, message: str) -> None:
    with pytest.raises(InvalidJob, match=message):
        options.validated()


def test_record_decodes_the_hash_and_maps_exit_status() -> None:
    spec = Spec.for_call("m:f", (1,))
    raw = {**record_fields(spec, Options(watchdog_s=2.5)), "status": "timed_out", "attempts": "2", "exit_code": "124"}
    record = Record.from_hash("j1", raw)
    assert (record.kind, record.status, record.watchdog, record.attempts) == (Kind.CALL, Status.TIMED_OUT, 2.5, 2)
    assert record.finished and record.exit_status == 124
    assert record.to_dict()["func"] == "m:f"
    rejected = Record.from_hash("j2", {"status": "rejected"})
    assert rejected.exit_status == 75


def test_settings_parse_validate_and_ignore_junk_in_the_hash() -> None:
    settings = Settings().with_value("heartbeat_timeout", "2.5").with_value("policy", "cpu")
    assert (settings.heartbeat_timeout, settings.policy) == (2.5, "cpu")
    with pytest.raises(InvalidSetting, match="must be float"):
        Settings().with_value("heartbeat_timeout", "soon")
    with pytest.raises(InvalidSetting, match="must be > 0"):
        Settings().with_value("poison_limit", "0").validate()
    from_hash = Settings.from_hash({"max_jobs_per_worker": "4", "heartbeat_timeout": "-1", "other": "x"})
    assert (from_hash.max_jobs_per_worker, from_hash.heartbeat_timeout) == (4, 5.0)
    assert Settings.from_hash(Settings().to_hash()) == Settings()


def test_new_ids_are_version_4_uuids_in_hex() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    for job_id in ids:
        parsed = uuid.UUID(job_id)
        assert (parsed.hex, parsed.version, parsed.variant) == (job_id, 4, uuid.RFC_4122)


def test_submit_argv_is_the_id_the_record_fields_and_the_extra_in_submit_lua_order() -> None:
    spec = Spec.for_call("m:f", (1,), {"x": [1.5]})
    options = Options(watchdog_s=3, retries=2, backoff_s=1, depends_on=("b", "b"), after_any=True, priority=-3)
    argv = submit_argv("a", spec, options, {"fields": {"script": "s"}})
    assert argv[:8] == ["a", "call", '{"func":"m:f","args":[1],"kwargs":{"x":[1.5]}}', "default", "-3", "2", "3.0", "0"]
    assert json.loads(argv[8]) == {
        "fields": {"script": "s", "backoff": "1.0", "backoff_max": "300.0"},
        "deps": ["b"],
        "after": "any",
    }
    assert argv[1:8] == list(record_fields(spec, options).values())
    assert submit_argv("b", Spec.for_command("true"), Options()) == [
        "b", "command", '{"command":"true"}', "default", "0", "0", "", "0", ""
    ]  # fmt: skip


def test_submit_batches_join_jobs_in_order_within_the_count_and_size_bounds() -> None:
    fields = ["command", '{"command":"true"}', "default", "0", "0", "", "0", ""]
    small = [[f"j{i}", *fields] for i in range(SUBMIT_BATCH + 5)]
    calls = list(submit_batches(small))
    assert [len(call) // 9 for call in calls] == [SUBMIT_BATCH, 5]
    assert [call[i] for call in calls for i in range(0, len(call), 9)] == [f"j{i}" for i in range(SUBMIT_BATCH + 5)]
    big = ["big", "command", "x" * SUBMIT_BATCH_CHARS, "default", "0", "0", "", "0", ""]
    assert [call[0] for call in submit_batches([small[0], big, small[1]])] == ["j0", "big", "j1"]  # alone
    assert list(submit_batches([])) == []
