"""Scheduling: jobs that run at a time, after a delay, or on a cron expression.

jobbalancer does not keep a schedule of its own: it files scheduled jobs with rq-scheduler (see
``store.py``), whose loop hands them back when due (``jobbalancer.compat.scheduler``).

``when.py`` is light and imported with the client. ``store.py`` needs rq and rq-scheduler, so its
names load on first use (PEP 562): the client module, and through the package every worker and
call child, imports this package without paying for them.
"""

from __future__ import annotations

import importlib
from typing import Any

from jobbalancer.schedule.when import When, make_when, parse_at, parse_duration

_STORE = frozenset({"QUEUE_CLASS", "Entry", "cancel", "entries", "file_job", "hand_over", "twin"})

__all__ = [
    "QUEUE_CLASS",
    "Entry",
    "When",
    "cancel",
    "entries",
    "file_job",
    "hand_over",
    "make_when",
    "parse_at",
    "parse_duration",
    "twin",
]


def __getattr__(name: str) -> Any:
    if name in _STORE:
        return getattr(importlib.import_module("jobbalancer.schedule.store"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
