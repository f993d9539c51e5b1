"""Commands on jobs: submit, status, result, logs, cancel, restart, delete, jobs."""

from __future__ import annotations

import json
import shlex
import sys
import time

import click
from rich.console import Console
from rich.table import Table

from jobbalancer.cli.base import echo_json, fail, pass_client
from jobbalancer.cli.schedule import later_kwargs, later_options
from jobbalancer.cli.scripts import script_options, submit_script
from jobbalancer.client import Client
from jobbalancer.durability import WaitReplicas
from jobbalancer.errors import InvalidJob
from jobbalancer.job import Kind, Record, Status


def parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidJob(f"--env takes NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def _program(command: tuple[str, ...], as_argv: bool, param_pairs: tuple[str, ...]) -> str | list[str]:
    """What ``jb submit`` runs without --script: one shell line, or with --argv a program and its arguments."""
    if param_pairs:
        raise InvalidJob("-p/--param gives a named script's parameters: use it with --script NAME")
    if not command:
        raise click.UsageError("Missing argument 'COMMAND' (or --script NAME).")
    if not as_argv and len(command) != 1:
        raise InvalidJob("a shell COMMAND is one argument (quote it); --argv -- PROG ARG... runs without a shell")
    return list(command) if as_argv else command[0]


def stream_output(client: Client, job_id: str) -> Record:
    """Copy the job's live output to our stdout/stderr and return its final record."""
    for chunk in client.follow(job_id):
        target = sys.stdout if chunk.fd == 1 else sys.stderr
        target.write(chunk.data)
        target.flush()
    return client.wait(job_id)


@click.command()
@click.argument("command", nargs=-1, metavar="[COMMAND]")  # none with --script
@click.option("--argv", "as_argv", is_flag=True, help="COMMAND is a program and its arguments, run without a shell.")
@click.option("--watchdog", type=float, metavar="S", help="Kill the job (whole process tree) after S seconds.")
@click.option("--realtime", is_flag=True, help="Reject at once if no worker has a free slot.")
@click.option("--queue", default="default", show_default=True, help="Queue the job goes to.")
@click.option("--retries", type=int, help="Extra attempts after a failure (0: none) [default: the queue's, else 0].")
@click.option("--backoff", type=float, metavar="S", help="Wait S s before a retry, doubling [default: queue's, or 0].")
@click.option("--backoff-max", type=float, default=300.0, show_default=True, metavar="S", help="Longest backoff.")
@click.option("--id", "job_id", help="Your own id; submitting an existing id returns that job.")
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first among waiting jobs.")
@click.option("--cwd", help="Working directory on the worker.")
@click.option("--env", "env_pairs", multiple=True, metavar="K=V", help="Environment variable (repeatable).")
@click.option("--wait", is_flag=True, help="Stream the output and exit with the job's exit code.")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
@click.option(
    "--wait-replicas", type=int, metavar="N", help="Return once N replicas have the job (Redis WAIT; JB_WAIT_REPLICAS)."
)
@click.option("--wait-replicas-timeout", type=float, metavar="S", help="Fail if they have not within S s (default 1).")
@later_options
@script_options
@click.pass_context
def submit(
    ctx: click.Context,
    command: tuple[str, ...],
    as_argv: bool,
    watchdog: float | None,
    realtime: bool,
    queue: str,
    retries: int | None,
    backoff: float | None,
    backoff_max: float,
    job_id: str | None,
    priority: int,
    cwd: str | None,
    env_pairs: tuple[str, ...],
    wait: bool,
    as_json: bool,
    wait_replicas: int | None,
    wait_replicas_timeout: float | None,
    after: tuple[str, ...],
    after_any: bool,
    delay: str | None,
    at: str | None,
    cron: str | None,
    script: str | None,
    param_pairs: tuple[str, ...],
) -> None:
    """Submit a shell COMMAND; prints the job id. With --argv, COMMAND is PROG ARG... (after --), no shell.

    With --script NAME (and -p K=V ...), no COMMAND: run a named script (see `jb scripts`).
    """
    client = pass_client(ctx)
    if wait_replicas is not None or wait_replicas_timeout is not None:
        client.replicas = WaitReplicas.from_env(wait_replicas, wait_replicas_timeout)
    options = {
        "watchdog": watchdog,
        "realtime": realtime,
        "queue": queue,
        "retries": retries,
        "backoff": backoff,
        "backoff_max": backoff_max,
        "id": job_id,
        "priority": priority,
        **later_kwargs(after, after_any, delay, at, cron, wait),
    }
    if script is not None:
        job = submit_script(client, script, param_pairs, options, bool(command or as_argv or cwd or env_pairs))
    else:
        job = client.submit(_program(command, as_argv, param_pairs), cwd=cwd, env=parse_env(env_pairs), **options)
    if not wait:
        echo_json(job.info()) if as_json else click.echo(job.id)
        return
    record = client.wait(job.id) if as_json else stream_output(client, job.id)
    if as_json:
        echo_json(record.to_dict())
    elif record.status is not Status.SUCCEEDED and record.error:
        click.echo(f"jb: job {job.id} {record.status.value}: {record.error}", err=True)
    sys.exit(record.exit_status)


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the record as one JSON object.")
@click.pass_context
def status(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Show a job's record."""
    record = pass_client(ctx).record(job_id)
    if as_json:
        echo_json(record.to_dict())
        return
    for name, value in record.to_dict().items():
        if name in ("stdout", "stderr") or value in (None, "", {}, []):
            continue
        if name.endswith("_at"):
            value = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value)) + f" ({value:.3f})"
        elif not isinstance(value, str):
            value = json.dumps(value)
        click.echo(f"{name:12} {value}")


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--wait", is_flag=True, help="Wait for the job to finish.")
@click.option("--timeout", type=float, metavar="S", help="With --wait: give up after S seconds (exit 1).")
@click.pass_context
def result(ctx: click.Context, job_id: str, wait: bool, timeout: float | None) -> None:
    """Print a command's stdout or a call's return value (JSON)."""
    client = pass_client(ctx)
    record = client.wait(job_id, timeout) if wait else client.record(job_id)
    if not record.finished:
        fail(f"job {job_id} is {record.status.value}; use --wait to wait for it")
    if record.status is not Status.SUCCEEDED:
        click.echo(f"jb: job {job_id} {record.status.value}: {record.error or ''}", err=True)
        sys.exit(record.exit_status)
    if record.kind == Kind.CALL:
        click.echo(json.dumps(record.result))
    else:
        click.echo(record.stdout, nl=False)


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--follow", "-f", is_flag=True, help="Keep streaming until the job finishes.")
@click.pass_context
def logs(ctx: click.Context, job_id: str, follow: bool) -> None:
    """Print a job's stdout (to stdout) and stderr (to stderr)."""
    client = pass_client(ctx)
    if follow:
        stream_output(client, job_id)
        return
    output = client.output(job_id)
    sys.stdout.write(output.stdout)
    sys.stderr.write(output.stderr)


@click.command()
@click.argument("job_id", metavar="ID")
@click.pass_context
def cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a job; a running one is killed, process tree and all."""
    outcome = pass_client(ctx).cancel(job_id)
    messages = {
        "cancelled": "cancelled",
        "cancelling": "cancelling: the worker is killing it",
    }
    click.echo(f"{job_id}: {messages.get(outcome, f'already finished ({outcome})')}")


@click.command()
@click.argument("job_id", metavar="ID")
@click.pass_context
def restart(ctx: click.Context, job_id: str) -> None:
    """Run a finished job again under the same id."""
    click.echo(pass_client(ctx).restart(job_id).id)


@click.command()
@click.argument("job_id", metavar="ID")
@click.pass_context
def delete(ctx: click.Context, job_id: str) -> None:
    """Delete a finished job's record and output."""
    pass_client(ctx).delete(job_id)
    click.echo(f"{job_id}: deleted")


def describe(record: Record) -> str:
    spec = record.spec
    if record.kind == Kind.CALL:
        args = ", ".join(json.dumps(a) for a in spec.get("args", []))
        return f"{spec.get('func')}({args})"
    if isinstance(spec.get("argv"), list):
        return shlex.join(str(arg) for arg in spec["argv"])
    return str(spec.get("command", ""))


@click.command()
@click.option("--status", "status_", type=click.Choice([s.value for s in Status]), help="Only jobs in this status.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of records.")
@click.pass_context
def jobs(ctx: click.Context, status_: str | None, limit: int, as_json: bool) -> None:
    """List recent jobs, newest first."""
    records = pass_client(ctx).jobs(status_, limit)
    if as_json:
        echo_json([record.to_dict() for record in records])
        return
    table = Table(box=None, header_style="bold")
    for column in ("id", "status", "queue", "worker", "tries", "exit", "took", "what"):
        table.add_column(column)
    for record in records:
        took = ""
        if record.started_at and record.finished_at:
            took = f"{record.finished_at - record.started_at:.2f}s"
        exit_code = "" if record.exit_code is None else str(record.exit_code)
        what = describe(record)
        table.add_row(
            record.id, record.status.value, record.queue, record.worker or "", str(record.attempts), exit_code, took,
            what if len(what) < 60 else what[:57] + "...",
        )  # fmt: skip
    Console().print(table)
