"""Scheduling: jobs that run at a time, after a delay, or on a cron expression.

jobbalancer does not keep a schedule of its own: it files scheduled jobs with rq-scheduler (see
``store.py``), whose loop hands them back when due (``jobbalancer.compat.scheduler``).
"""

from jobbalancer.schedule.store import QUEUE_CLASS, Entry, cancel, entries, file_job, hand_over, twin
from jobbalancer.schedule.when import When, make_when, parse_at, parse_duration

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
