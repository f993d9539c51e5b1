"""Scheduling and dependencies on the command line: ``jb submit --in/--at/--cron/--after``,
``jb schedule list|cancel`` and ``jb scheduler``."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from jobbalancer.cli.base import CliContext, echo_json, pass_client, setup_logging
from jobbalancer.compat.scheduler import SchedulerLoop
from jobbalancer.errors import InvalidJob
from jobbalancer.schedule.store import cancel as cancel_entry
from jobbalancer.schedule.store import entries
from jobbalancer.schedule.when import parse_at, parse_duration

F = TypeVar("F", bound=Callable[..., Any])


def later_options(command: F) -> F:
    """The options of ``jb submit`` that make a job wait: for other jobs, or for a time."""
    options = [
        click.option("--after", "after", multiple=True, metavar="ID", help="Run once job ID succeeded (repeatable)."),
        click.option("--after-any", is_flag=True, help="With --after: run once they all finished, however they ended."),
        click.option("--in", "delay", metavar="DURATION", help="Schedule: run in 30s, 5m, 2h, 1d, 1h30m."),
        click.option("--at", "at", metavar="TIME", help="Schedule: run at an ISO 8601 time (naive = local)."),
        click.option("--cron", metavar="EXPR", help="Schedule: run on a cron expression, e.g. '*/5 * * * *'."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def later_kwargs(
    after: tuple[str, ...], after_any: bool, delay: str | None, at: str | None, cron: str | None, wait: bool = False
) -> dict[str, Any]:
    """``Client.submit`` keyword arguments for :func:`later_options`' values."""
    if after_any and not after:
        raise InvalidJob("--after-any needs --after ID")
    if cron is not None and wait:
        raise InvalidJob("--wait cannot wait for a cron schedule, which goes on; wait for one of its runs")
    return {
        "depends_on": after,
        "after_any": after_any,
        "delay": None if delay is None else parse_duration(delay),
        "at": None if at is None else parse_at(at),
        "cron": cron,
    }


@click.group()
def schedule() -> None:
    """Scheduled jobs: what rq-scheduler holds for this cluster."""


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List scheduled jobs, soonest first."""
    client = pass_client(ctx)
    found = entries(client.redis, client.prefix)
    if as_json:
        echo_json([entry.to_dict() for entry in found])
        return
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True, min_width=max((len(entry.id) for entry in found), default=2))
    for column in ("next run", "schedule", "queue", "what"):
        table.add_column(column)
    for entry in found:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.due_at))
        what = entry.what if len(entry.what) < 60 else entry.what[:57] + "..."
        table.add_row(entry.id, when, entry.schedule, entry.queue, what)
    Console().print(table)


@schedule.command("cancel")
@click.argument("job_id", metavar="ID")
@click.pass_context
def cancel(ctx: click.Context, job_id: str) -> None:
    """Take a job off the schedule (a scheduled jobbalancer job ends cancelled)."""
    client = pass_client(ctx)
    outcome = cancel_entry(client.redis, client.scripts, client.prefix, job_id)
    messages = {"cancelled": "cancelled", "removed": "removed from rq-scheduler's schedule"}
    click.echo(f"{job_id}: {messages.get(outcome, outcome)}")


@click.command()
@click.option("--interval", type=click.FloatRange(0.05, 3600), default=1.0, show_default=True, metavar="S")
@click.option("--name", help="Name in rq:scheduler_instance:<name> [default: random].")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def scheduler(ctx: click.Context, interval: float, name: str | None, verbose: bool) -> None:
    """Run rq-scheduler's loop: hand due jobs to the workers every S seconds."""
    setup_logging(verbose)
    obj = ctx.find_object(CliContext)
    assert obj is not None
    loop = SchedulerLoop(obj.url, obj.prefix, interval_s=interval, name=name)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loop.run(stop)


def start_scheduler(url: str, prefix: str, interval_s: float, gate: threading.Event) -> Callable[[], None]:
    """Run the scheduler loop in a daemon thread that hands jobs over only while ``gate`` is set
    (``jb balancer --scheduler``: the balancer's ``leading``, so it fails over with the lease).

    Returns:
        A function that stops the thread and waits for it.
    """
    loop = SchedulerLoop(url, prefix, interval_s=interval_s)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop, gate), name="scheduler", daemon=True)
    thread.start()

    def stop_it() -> None:
        stop.set()
        thread.join(10)

    return stop_it
