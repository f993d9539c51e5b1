"""When a scheduled job is due: a delay, a moment, or a cron expression, validated and parsed.

Pure functions; nothing here talks to Redis.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import crontab

from jobbalancer.errors import InvalidJob

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?", re.IGNORECASE)
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DELAY_LIMIT_S = 100 * 365 * 86400  # a century: far enough, and inside what datetime and Redis scores hold
LAST_EPOCH_S = 253402300799  # 9999-12-31T23:59:59Z, the last second datetime can hold


@dataclass(frozen=True)
class When:
    """Exactly one of: ``delay_s`` from now (Redis's clock), ``at`` an aware moment, or ``cron``."""

    delay_s: float | None = None
    at: datetime | None = None
    cron: str | None = None

    def describe(self) -> str:
        """How the schedule reads in a job record's ``schedule`` field."""
        if self.cron is not None:
            return f"cron {self.cron}"
        if self.at is not None:
            return f"at {self.at.isoformat(timespec='seconds')}"
        return f"in {self.delay_s:g}s"


def make_when(
    delay: float | timedelta | None = None, at: datetime | float | None = None, cron: str | None = None
) -> When | None:
    """Validate the scheduling options of a submit; None when the job is not scheduled.

    Args:
        delay: seconds (or a timedelta) from now, by Redis's clock; ``>= 0``.
        at: a datetime (a naive one is local time) or epoch seconds.
        cron: a five-field cron expression (``*/5 * * * *``), evaluated by rq-scheduler.

    Raises:
        InvalidJob: more than one given, or a value that cannot be a schedule.
    """
    given = [name for name, value in (("delay", delay), ("at", at), ("cron", cron)) if value is not None]
    if not given:
        return None
    if len(given) > 1:
        raise InvalidJob(f"give one of delay, at and cron, not {' and '.join(given)}")
    if delay is not None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
        if not isinstance(seconds, int | float) or not math.isfinite(seconds) or not 0 <= seconds <= DELAY_LIMIT_S:
            raise InvalidJob(f"delay must be a number of seconds from 0 to {DELAY_LIMIT_S} (a century), got {delay!r}")
        return When(delay_s=float(seconds))
    if at is not None:
        return When(at=aware(at))
    return When(cron=check_cron(str(cron)))


def aware(at: datetime | float) -> datetime:
    """An aware UTC datetime for a datetime (naive means local time) or epoch seconds."""
    if isinstance(at, datetime):
        return (at if at.tzinfo else at.astimezone()).astimezone(UTC)
    if isinstance(at, int | float) and math.isfinite(at) and not isinstance(at, bool):
        try:
            if at > LAST_EPOCH_S:
                raise OverflowError
            return datetime.fromtimestamp(at, UTC)
        except (OverflowError, OSError, ValueError):  # past what datetime holds (year 9999)
            raise InvalidJob(f"at {at!r} is out of range: epoch seconds up to the year 9999") from None
    raise InvalidJob(f"at must be a datetime or epoch seconds, got {at!r}")


def check_cron(expression: str) -> str:
    """The expression itself if the crontab package (which rq-scheduler uses) accepts it and it fires again."""
    try:
        fires = crontab.CronTab(expression).next(default_utc=True) is not None
    except Exception as exc:  # crontab refuses odd text with ValueError, and some with other errors
        raise InvalidJob(f"cron expression {expression!r} is not valid: {exc}") from None
    if not fires:  # e.g. '0 0 30 2 *': valid fields, but February has no 30th
        raise InvalidJob(f"cron expression {expression!r} never fires")
    return expression


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``30s``, ``500ms``, ``5m``, ``2h``, ``1d``, ``1w`` or sums like ``1h30m``."""
    compact = text.strip().replace(" ", "")
    parts = list(_DURATION_PART.finditer(compact))
    if not compact or "".join(p.group(0) for p in parts) != compact:
        raise InvalidJob(f"duration {text!r} is not like 30s, 5m, 2h, 1d or 1h30m")
    return sum(float(p.group(1)) * _UNIT_S[(p.group(2) or "s").lower()] for p in parts)


def parse_at(text: str) -> datetime:
    """An ISO 8601 moment (``2026-12-01T10:00``, ``...Z`` or ``...+02:00``); naive means local time."""
    try:
        return aware(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise InvalidJob(f"time {text!r} is not ISO 8601, like 2026-12-01T10:00 or 2026-12-01T10:00:00Z") from None
