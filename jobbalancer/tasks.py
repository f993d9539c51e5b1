"""Celery-style tasks: ``@task`` gives a module-level function ``.delay()`` and ``.apply_async()``.

::

    from jobbalancer.tasks import task

    @task(watchdog=30, retries=3, queue="default")
    def resize(path: str, width: int) -> str:
        ...

    job = resize.delay("a.png", 640)          # a jobbalancer Job
    job.result(timeout=60)                    # plays the part of AsyncResult.get(timeout)
    resize.apply_async(("a.png", 640), countdown=30)   # scheduled, through rq-scheduler
    resize("a.png", 640)                      # still runs right here, in this process

The decorated object is a plain function (the one it wraps, with ``functools.wraps``), so the
worker imports it by its path and calls it like any other, and rq's queue accepts it too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast, overload

from jobbalancer.client import Client, Job, default_client
from jobbalancer.compat.args import check_json_args
from jobbalancer.errors import InvalidJob
from jobbalancer.job import func_path

P = ParamSpec("P")
R = TypeVar("R", covariant=True)

# Options apply_async passes on to Client.enqueue_call; Celery's names for two of them.
OPTIONS = frozenset({"watchdog", "retries", "queue", "priority", "realtime", "id", "depends_on", "after_any"})
CELERY_NAMES = {"task_id": "id", "time_limit": "watchdog"}


class Task(Protocol, Generic[P, R]):
    """A function decorated with :func:`task`."""

    name: str
    """Its import path, ``package.module:function``."""
    options: dict[str, Any]
    """The options every job of this task starts from (the decorator's arguments)."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Job: ...

    def apply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        **options: Any,
    ) -> Job: ...


def job_options(defaults: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The task's options overridden by ``apply_async``'s, Celery names translated, unknown ones refused."""
    merged = dict(defaults)
    for name, value in options.items():
        name = CELERY_NAMES.get(name, name)
        if name not in OPTIONS:
            raise InvalidJob(f"apply_async option {name!r} is not supported; jobbalancer takes {sorted(OPTIONS)}")
        merged[name] = value
    return merged


def _bind(func: Callable[P, R], defaults: dict[str, Any], client: Client | None) -> Task[P, R]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return func(*args, **kwargs)

    path = func_path(wrapper)  # refuses lambdas, nested and __main__ functions now, at decoration

    def apply_async(
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        **options: Any,
    ) -> Job:
        args, kwargs = tuple(args), dict(kwargs or {})
        check_json_args(path, args, kwargs)
        chosen = client if client is not None else default_client()
        merged = job_options(defaults, options)
        return chosen.enqueue_call(path, args, kwargs, delay=countdown, at=eta, **merged)

    def delay(*args: P.args, **kwargs: P.kwargs) -> Job:
        return apply_async(args, kwargs)

    task_fn = cast(Any, wrapper)
    task_fn.name, task_fn.options = path, dict(defaults)
    task_fn.delay, task_fn.apply_async = delay, apply_async
    return cast(Task[P, R], task_fn)


@overload
def task(func: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    watchdog: float | None = None,
    retries: int | None = None,
    queue: str = "default",
    priority: int = 0,
    realtime: bool = False,
    client: Client | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    func: Callable[P, R] | None = None,
    /,
    *,
    watchdog: float | None = None,
    retries: int | None = None,
    queue: str = "default",
    priority: int = 0,
    realtime: bool = False,
    client: Client | None = None,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Make a module-level function a task: ``@task`` or ``@task(watchdog=30, retries=3, ...)``.

    Args:
        func: the function, when used as a bare ``@task``.
        watchdog, retries, queue, priority, realtime: defaults for every job of the task, as in
            :meth:`Client.enqueue_call`; ``apply_async`` may override each.
        client: the client jobs go through; by default the module-level one (``JB_REDIS_URL``,
            ``JB_PREFIX``), looked up at each call.

    Raises:
        InvalidJob: the function has no import path a worker could use (a lambda, a nested
            function, a function of ``__main__``).
    """
    defaults = {"watchdog": watchdog, "retries": retries, "queue": queue, "priority": priority, "realtime": realtime}
    if func is not None:
        return _bind(func, defaults, client)

    def decorate(inner: Callable[P, R]) -> Task[P, R]:
        return _bind(inner, defaults, client)

    return decorate
