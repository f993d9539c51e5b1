"""``jb bench``: generate a workload trace, replay it on the running cluster, report per worker."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jobbalancer.balancer.policies import check_policy
from jobbalancer.bench import report as reports
from jobbalancer.bench.replay import Outcome, Replayer, policy_for_run, worker_slots
from jobbalancer.bench.replay import Progress as ReplayProgress
from jobbalancer.bench.replay import warm_up as warm_up_cluster
from jobbalancer.bench.trace import (
    Distribution,
    JobKind,
    Shape,
    TraceError,
    TraceJob,
    generate,
    parse_queues,
    read_csv,
    summarise,
    write_csv,
)
from jobbalancer.cli.base import pass_client
from jobbalancer.client import Client
from jobbalancer.job import Status

SHAPES = click.Choice([shape.value for shape in Shape])


@click.group()
def bench() -> None:
    """Size a cluster or compare policies on your own workload: make a trace, replay it."""


@bench.command()
@click.option("--jobs", type=int, required=True, help="How many jobs.")
@click.option("--arrival", type=SHAPES, required=True, help="Distribution of the gaps between arrivals.")
@click.option("--mean", type=float, required=True, metavar="S", help="Mean gap between arrivals, seconds.")
@click.option("--stdev", type=float, metavar="S", help="Stdev of the gaps (uniform, normal).")
@click.option("--service", type=SHAPES, required=True, help="Distribution of the jobs' run times.")
@click.option("--service-mean", type=float, required=True, metavar="S", help="Mean run time, seconds.")
@click.option("--service-stdev", type=float, metavar="S", help="Stdev of the run times (uniform, normal).")
@click.option("--kind", type=click.Choice([k.value for k in JobKind]), required=True, help="sleep (no CPU) or cpu.")
@click.option(
    "--queues", metavar="NAME:W,...", help="Queues with relative weights, e.g. a:0.7,b:0.3 [default: default]."
)
@click.option("--seed", type=int, help="Seed for a reproducible trace.")
@click.option(
    "--out", type=click.Path(dir_okay=False, allow_dash=True), required=True, help="CSV file, or - for stdout."
)
def trace(
    jobs: int,
    arrival: str,
    mean: float,
    stdev: float | None,
    service: str,
    service_mean: float,
    service_stdev: float | None,
    kind: str,
    queues: str | None,
    seed: int | None,
    out: str,
) -> None:
    """Write a synthetic trace: arrival time, service time, kind and queue of every job, as CSV."""
    try:
        jobs_list = generate(
            jobs,
            Distribution(Shape(arrival), mean, stdev),
            Distribution(Shape(service), service_mean, service_stdev),
            JobKind(kind),
            parse_queues(queues),
            seed,
        )
    except TraceError as exc:
        raise click.UsageError(str(exc)) from None
    if out == "-":
        write_csv(jobs_list, sys.stdout)
    else:
        with open(out, "w", newline="") as handle:
            write_csv(jobs_list, handle)
    click.echo(f"wrote {describe_trace(jobs_list)} to {'stdout' if out == '-' else out}", err=True)


def describe_trace(jobs: list[TraceJob]) -> str:
    summary = summarise(jobs)
    return (
        f"{summary.jobs} jobs arriving over {summary.span_s:.2f} s ({summary.arrival_rate:.1f}/s), "
        f"{summary.service_total_s / summary.jobs:.3f} s of service each on average, "
        f"offered load {summary.offered_load:.2f} busy slots"
    )


@bench.command()
@click.argument("trace_file", metavar="TRACE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", help="Policy for this run only (the previous one is put back after).")
@click.option(
    "--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a markdown report."
)
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Draw a PNG (needs [bench])."
)
@click.option("--warm-up/--no-warm-up", default=True, show_default=True, help="Start the call children first.")
@click.option(
    "--timeout", type=click.FloatRange(0, min_open=True), metavar="S", help="Give up S s after the last submit."
)
@click.pass_context
def replay(
    ctx: click.Context,
    trace_file: Path,
    policy: str | None,
    report_path: Path | None,
    plot_path: Path | None,
    warm_up: bool,
    timeout: float | None,
) -> None:
    """Submit TRACE's jobs at their arrival times, wait for all, and report per worker."""
    try:
        jobs = read_csv(trace_file)
    except TraceError as exc:
        raise click.UsageError(f"{trace_file}: {exc}") from None
    plotter = plot_module() if plot_path is not None else None
    if policy is not None:
        check_policy(policy)
    client = pass_client(ctx)
    if not any(info["state"] != "dead" for info in client.workers()):
        raise click.ClickException("no live workers: start a cluster first, e.g. `jb up --path workers`")
    if warm_up:
        click.echo(f"warming up: {warm_up_cluster(client, jobs)} jobs of tasks:sleep(0), not reported", err=True)
    with policy_for_run(client, policy, check_policy) as in_force, progress_bar(len(jobs)) as on_progress:
        outcome = Replayer(client, jobs, on_progress).run(timeout)
    report = reports.build(outcome.records, worker_slots(client, outcome.records))
    Console().print(report_table(report))
    details = run_details(trace_file, jobs, in_force, outcome, client)
    if report_path is not None:
        report_path.write_text(reports.to_markdown(report, f"Replay of {trace_file.name}", details))
    if plotter is not None and plot_path is not None:
        plotter.draw(report, outcome.records, plot_path, f"{trace_file.name} under {in_force}")
    failed = [record for record in outcome.records if record.status is not Status.SUCCEEDED]
    if failed:
        first = failed[0]
        raise click.ClickException(
            f"{len(failed)} of {len(jobs)} jobs did not succeed; job {first.id} {first.status.value}: {first.error}"
        )


def plot_module() -> ModuleType:
    """The plotting module, imported only for ``--plot``.

    matplotlib is an optional extra and takes about half a second to import: every other ``jb``
    command must start without it.
    """
    try:
        return importlib.import_module("jobbalancer.bench.plot")
    except ImportError as exc:
        raise click.UsageError(f"--plot needs matplotlib ({exc}): pip install 'jobbalancer[bench]'") from None


@contextmanager
def progress_bar(total: int) -> Iterator[Callable[[ReplayProgress], None]]:
    """A two-line progress display on stderr: jobs submitted and jobs finished."""
    columns = (TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        submitted = progress.add_task("submitted", total=total)
        finished = progress.add_task("finished", total=total)

        def update(state: ReplayProgress) -> None:
            progress.update(submitted, completed=state.submitted)
            progress.update(finished, completed=state.finished)

        yield update


def report_table(report: reports.Report) -> Table:
    table = Table(header_style="bold", caption=reports.describe(report))
    for header in reports.HEADERS:
        table.add_column(header, justify="left" if header == "worker" else "right")
    for index, row in enumerate(report.workers):
        table.add_row(*reports.cells(row), end_section=index == len(report.workers) - 1)
    table.add_row(*reports.cells(report.total), style="bold")
    return table


def run_details(trace_file: Path, jobs: list[TraceJob], policy: str, outcome: Outcome, client: Client) -> list[str]:
    return [
        f"trace: `{trace_file}`: {describe_trace(jobs)}",
        f"cluster: `{client.url}` prefix `{client.prefix}`, policy `{policy}`",
        f"submissions kept to the trace's clock within {outcome.lag_max_s * 1000:.1f} ms (the largest lag)",
        "wait = submit→start (`started_at − created_at`), service = `finished_at − started_at`, "
        "both by Redis's clock; utilisation = busy / (slots × span)",
    ]
