"""The keyword options of ``submit`` and ``enqueue_call`` (``watchdog=``, ``queue=``, ``delay=``, ...)
turned into :class:`~jobbalancer.job.Options`, and into when to run the job if it is scheduled.

Pure functions; nothing here talks to Redis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from jobbalancer.job import Options
from jobbalancer.schedule.when import When, make_when


@runtime_checkable
class HasId(Protocol):
    """Anything with a job id, such as a :class:`~jobbalancer.client.Job` handle."""

    @property
    def id(self) -> str: ...


def make_options(
    *,
    watchdog: float | None = None,
    realtime: bool = False,
    queue: str = "default",
    retries: int | None = None,
    id: str | None = None,  # noqa: A002 - the option is called id everywhere (CLI, API, record)
    priority: int = 0,
    depends_on: str | HasId | Iterable[str | HasId] = (),
    after_any: bool = False,
    backoff: float | None = None,
    backoff_max: float = 300.0,
) -> Options:
    """Options from keyword arguments. ``depends_on``: job ids (or ``Job`` handles) to run after,
    once all have succeeded; with ``after_any``, once all have finished however they ended.
    ``backoff``: seconds before the first retry, doubling for each next one up to ``backoff_max``,
    with jitter (a retry waits between half and all of that). ``retries`` not given (None): the
    queue's default (``jb retries QUEUE``), else 0; an explicit 0 means none, whatever the queue says.
    ``backoff`` not given (None) takes the queue's backoff and backoff_max the same way."""
    deps = [depends_on] if isinstance(depends_on, str | HasId) else list(depends_on)
    return Options(
        watchdog_s=watchdog,
        realtime=realtime,
        queue=queue,
        retries=retries,
        priority=priority,
        id=id,
        depends_on=tuple(dep.id if isinstance(dep, HasId) else dep for dep in deps),
        after_any=after_any,
        backoff_s=backoff,
        backoff_max_s=backoff_max,
    )


def split_options(options: Mapping[str, Any]) -> tuple[Options, When | None]:
    """``submit``'s keyword options: the job's :class:`Options`, and when to run it if scheduled."""
    rest = dict(options)
    when = make_when(rest.pop("delay", None), rest.pop("at", None), rest.pop("cron", None))
    return make_options(**rest), when
