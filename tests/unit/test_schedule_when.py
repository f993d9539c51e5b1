"""Parsing and validating when a scheduled job is due (pure functions)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest

from jobbalancer import InvalidJob
from jobbalancer.schedule import make_when, parse_at, parse_duration
from jobbalancer.schedule.when import When
from tests.helpers import REPO


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("30s", 30), ("500ms", 0.5), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1w", 604800),
     ("1h30m", 5400), ("1.5h", 5400), (" 2m 10s ", 130)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5 parsecs", "-5s", "5x", "m5"])
def test_durations_that_are_not(text: str) -> None:
    with pytest.raises(InvalidJob, match="is not like 30s"):
        parse_duration(text)


def test_moments_naive_is_local_and_offsets_are_kept() -> None:
    assert parse_at("2026-12-01T10:00:00Z") == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert parse_at("2026-12-01T12:00+02:00") == datetime(2026, 12, 1, 10, tzinfo=UTC)
    local = datetime(2026, 12, 1, 10, 0).astimezone()
    assert parse_at("2026-12-01T10:00") == local.astimezone(UTC)
    with pytest.raises(InvalidJob, match="is not ISO 8601"):
        parse_at("tomorrow")


def test_make_when_takes_exactly_one() -> None:
    assert make_when() is None
    assert make_when(delay=timedelta(minutes=1)) == When(delay_s=60.0)
    assert make_when(at=0) == When(at=datetime(1970, 1, 1, tzinfo=UTC))
    moment = datetime(2030, 1, 1, 8, tzinfo=timezone(timedelta(hours=8)))
    assert make_when(at=moment) == When(at=datetime(2030, 1, 1, tzinfo=UTC))
    assert make_when(cron="*/5 * * * *") == When(cron="*/5 * * * *")
    assert When(cron="0 3 * * *").describe() == "cron 0 3 * * *"
    assert When(delay_s=30).describe() == "in 30s"
    with pytest.raises(InvalidJob, match="give one of delay, at and cron, not delay and cron"):
        make_when(delay=1, cron="* * * * *")
    with pytest.raises(InvalidJob, match="delay must be a number of seconds from 0 to"):
        make_when(delay=-1)
    with pytest.raises(InvalidJob, match="delay must be a number of seconds from 0 to"):
        make_when(delay=1e300)
    with pytest.raises(InvalidJob, match=r"at 1e\+20 is out of range"):
        make_when(at=1e20)
    with pytest.raises(InvalidJob, match="cron expression '0 0 30 2 \\*' never fires"):
        make_when(cron="0 0 30 2 *")
    with pytest.raises(InvalidJob, match="cron expression 'every day' is not valid"):
        make_when(cron="every day")
    with pytest.raises(InvalidJob, match="at must be a datetime or epoch seconds"):
        make_when(at="2030-01-01")  # type: ignore[arg-type]


def test_workers_and_balancers_do_not_load_rq() -> None:
    """rq and rq-scheduler load when a job is first scheduled, not with the client (so not in workers)."""
    code = (
        "import sys, jobbalancer.worker, jobbalancer.balancer, jobbalancer.worker.child; print(sorted("
        "m for m in sys.modules if m.split('.')[0] in ('rq', 'rq_scheduler')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
