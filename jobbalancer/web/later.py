"""Scheduling and dependencies in ``POST /api/jobs``: the option types, and which field an error is about.

The library decides (``Client.submit`` with ``delay``, ``at``, ``cron``, ``depends_on``,
``after_any``); these types only bound what JSON can say, so that no value reaches it that would
break it instead of being refused, and :func:`field_of` names the field of the library's refusals.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainValidator, StringConstraints, WithJsonSchema

from jobbalancer.errors import InvalidJob
from jobbalancer.job import ID_PATTERN
from jobbalancer.schedule.when import DELAY_LIMIT_S, LAST_EPOCH_S, check_cron, parse_at

DEPENDS_LIMIT = 1000
_TWO_GIVEN = re.compile(r"^give one of delay, at and cron, not (\w+) and (\w+)")
_ABOUT_DEPENDENCIES = ("a scheduled job cannot also wait", "depends on ", "cannot depend on ")


def _at(value: Any) -> float | datetime | None:
    """Epoch seconds, or an ISO 8601 moment read as the library reads ``jb submit --at`` (no offset: local time)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            moment = parse_at(value)
        except OverflowError:
            moment = datetime.min.replace(tzinfo=UTC)
        if not 1970 <= moment.year <= 9999:
            raise ValueError("at must be a moment between 1970 and 9999")
        return moment
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("at must be epoch seconds or an ISO 8601 moment")
    if not (math.isfinite(value) and 0 <= value <= LAST_EPOCH_S):
        raise ValueError(f"at must be epoch seconds between 0 and {LAST_EPOCH_S}")
    return float(value)


def _cron(expression: str) -> str:
    """The library's cron check, as a validation error of this field."""
    try:
        return check_cron(expression)
    except InvalidJob as exc:
        raise ValueError(str(exc)) from None


# Defaults go with the fields in models.py (pydantic takes no default inside Annotated).
Delay = Annotated[
    float | None,
    Field(ge=0, le=DELAY_LIMIT_S, description="Schedule: run this many seconds from now (Redis's clock)."),
]
AT_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": LAST_EPOCH_S},
        {"type": "string", "format": "date-time"},
        {"type": "null"},
    ],
    "description": "Schedule: run at this moment, epoch seconds or ISO 8601 (without an offset: the server's local "
    "time). A moment past runs at once.",
}
At = Annotated[float | datetime | None, PlainValidator(_at), WithJsonSchema(AT_SCHEMA)]
Cron = Annotated[
    Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", max_length=200), AfterValidator(_cron)] | None,
    Field(description="Schedule: run on this cron expression (`*/5 * * * *`), each run a job of its own."),
]
DependsOn = Annotated[
    list[Annotated[str, StringConstraints(pattern=ID_PATTERN.pattern)]],
    Field(
        default_factory=list,
        max_length=DEPENDS_LIMIT,
        description="Run only after these jobs succeeded (with after_any: finished, however they ended). "
        "Not with delay, at or cron.",
    ),
]
AfterAny = Annotated[bool, Field(description="With depends_on: run once they all finished, however they ended.")]
LATER_OPTIONS = ("delay", "at", "cron", "depends_on", "after_any")


def field_of(message: str) -> str | None:
    """The request field a library refusal about scheduling or dependencies is about, if it is one."""
    two = _TWO_GIVEN.match(message)
    if two:
        return two.group(2)
    if message.startswith(_ABOUT_DEPENDENCIES[0]) or any(words in message for words in _ABOUT_DEPENDENCIES[1:]):
        return "depends_on"
    return None
