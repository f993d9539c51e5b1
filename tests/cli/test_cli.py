"""The CLI's answers to bad input and its settings commands (click's CliRunner, a real Redis)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from jobbalancer.cli import main


@pytest.fixture
def jb(redis_url: str, prefix: str):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(main, ["--redis", redis_url, "--prefix", prefix, *args])

    return run


def test_unknown_job_id_is_one_line_and_exit_1(jb) -> None:  # type: ignore[no-untyped-def]
    for command in ("status", "result", "logs", "cancel", "restart", "delete"):
        outcome = jb(command, "nope")
        assert outcome.exit_code == 1, command
        assert outcome.stderr == "jb: error: no job with id 'nope'\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "true", "--watchdog", "0"], "watchdog must be a number of seconds > 0"),
        (["submit", "true", "--watchdog", "-5"], "watchdog must be a number of seconds > 0"),
        (["submit", "true", "--env", "NOEQUALS"], "--env takes NAME=VALUE"),
        (["submit", "true", "--queue", "bad queue"], "queue 'bad queue' is not a valid name"),
        (["submit", "true", "--id", "has space"], "id 'has space' is not valid"),
        (["config", "set", "policy", "bogus"], "policy 'bogus' is unknown"),
        (["config", "set", "heartbeat_timeout", "0"], "heartbeat_timeout must be > 0"),
        (["submit"], "Missing argument 'COMMAND'"),
        (["submit", "true", "--priority", "high"], "'high' is not a valid integer"),
        (["config", "set", "nonsense", "1"], "unknown setting 'nonsense'"),
    ],
)
def test_bad_input_exits_2_with_a_clear_line(jb, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    outcome = jb(*args)
    assert outcome.exit_code == 2
    assert outcome.stderr.startswith("jb: error: ") and outcome.stderr.count("\n") == 1
    assert message in outcome.stderr
    assert "Traceback" not in outcome.output


def test_unreachable_redis_names_the_url() -> None:
    url = "redis://127.0.0.1:1/0"
    outcome = CliRunner().invoke(main, ["--redis", url, "status", "x"])
    assert outcome.exit_code == 1
    assert outcome.stderr.startswith(f"jb: error: cannot reach Redis at {url}")
    assert "Traceback" not in outcome.output


def test_config_set_applies_and_get_reads_back(jb) -> None:  # type: ignore[no-untyped-def]
    assert jb("config", "get", "policy").stdout == "least-loaded\n"
    assert jb("config", "set", "policy", "round-robin").exit_code == 0
    assert jb("config", "set", "max_jobs_per_worker", "3").stdout == "max_jobs_per_worker = 3\n"
    assert jb("config", "get", "policy").stdout == "round-robin\n"
    listing = jb("config", "get").stdout
    assert "max_jobs_per_worker = 3" in listing and "heartbeat_timeout = 5.0" in listing


def test_jobs_listing_empty_and_result_of_a_waiting_job(jb) -> None:  # type: ignore[no-untyped-def]
    assert jb("jobs", "--json").stdout.strip() == "[]"
    job_id = jb("submit", "true").stdout.strip()
    pending = jb("result", job_id)
    assert pending.exit_code == 1 and "is queued; use --wait" in pending.stderr
    timed = jb("result", job_id, "--wait", "--timeout", "0.2")
    assert timed.exit_code == 1 and "still queued after 0.2s" in timed.stderr
