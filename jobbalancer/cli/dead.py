"""``jb dead``: the dead letters; ``jb retries``: a queue's retry defaults."""

from __future__ import annotations

import time

import click
from rich.console import Console
from rich.table import Table

from jobbalancer import dead as letters
from jobbalancer.cli.base import echo_json, pass_client
from jobbalancer.errors import NoSuchJob


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else ""


@click.group()
def dead() -> None:
    """Jobs that ran out of attempts or could not be parsed (<prefix>:dead)."""


@dead.command("list")
@click.option("--limit", type=click.IntRange(1, 100_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def list_(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List dead letters, newest first."""
    found = letters.dead_letters(pass_client(ctx), limit)
    if as_json:
        echo_json([letter.to_dict() for letter in found])
        return
    table = Table(box=None, header_style="bold")
    for column in ("entry", "job", "at"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason")
    for letter in found:
        table.add_row(letter.entry, letter.job_id or "-", _when(letter.at), letter.reason)
    Console().print(table)


@dead.command()
@click.argument("ident", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the letters and the job's record.")
@click.pass_context
def show(ctx: click.Context, ident: str, as_json: bool) -> None:
    """Show the dead letters of a job ID (or one letter by its stream entry id)."""
    client = pass_client(ctx)
    found = letters.find(client, ident)
    if not found:
        raise NoSuchJob(ident)
    job_id = found[0].job_id
    try:
        record = client.record(job_id).to_dict() if job_id else None
    except NoSuchJob:
        record = None
    if as_json:
        echo_json({"letters": [letter.to_dict() for letter in found], "record": record})
        return
    for letter in found:
        click.echo(f"{letter.entry}  {_when(letter.at)}  job {letter.job_id or '-'}")
        click.echo(f"  reason: {letter.reason}")
        if letter.raw:
            click.echo(f"  raw:    {letter.raw}")
    if record is not None:
        click.echo(f"record: {record['status']}, {record['attempts']} attempts, error: {record['error'] or '-'}")


@dead.command("retry")
@click.argument("idents", metavar="ID...", nargs=-1, required=True)
@click.pass_context
def retry_(ctx: click.Context, idents: tuple[str, ...]) -> None:
    """Run dead jobs again under their ids, and remove their letters."""
    client = pass_client(ctx)
    for ident in idents:
        click.echo(f"{letters.retry(client, ident).id}: queued again")


@dead.command()
@click.argument("idents", metavar="[ID...]", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Delete every dead letter.")
@click.pass_context
def purge(ctx: click.Context, idents: tuple[str, ...], everything: bool) -> None:
    """Delete the dead letters of these job IDs, or with --all every one."""
    client = pass_client(ctx)
    if everything == bool(idents):
        raise click.UsageError("name the job IDs whose letters to delete, or pass --all (not both)")
    if everything:
        removed = letters.purge(client)
    else:
        removed = sum(letters.remove(client, letters.find(client, ident)) for ident in idents)
    click.echo(f"{removed} dead letter(s) deleted")


@click.command()
@click.argument("queue")
@click.option("--retries", type=int, help="Extra attempts after a failure, for jobs that set none.")
@click.option("--backoff", type=float, metavar="S", help="Seconds before the first retry (doubling after).")
@click.option("--backoff-max", type=float, metavar="S", help="Longest backoff.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def retries(
    ctx: click.Context, queue: str, retries: int | None, backoff: float | None, backoff_max: float | None, as_json: bool
) -> None:
    """Show, or set, QUEUE's retry defaults: jobs submitted without retries or backoff get them."""
    client = pass_client(ctx)
    current = client.queue_defaults(queue)
    if (retries, backoff, backoff_max) != (None, None, None):
        current = client.set_queue_defaults(
            queue,
            retries=current.retries if retries is None else retries,
            backoff=current.backoff_s if backoff is None else backoff,
            backoff_max=current.backoff_max_s if backoff_max is None else backoff_max,
        )
    if as_json:
        echo_json({"queue": queue, "retries": current.retries, "backoff": current.backoff_s,
                   "backoff_max": current.backoff_max_s})  # fmt: skip
        return
    backoff_text = f"backoff {current.backoff_s:g} s (at most {current.backoff_max_s:g} s)"
    click.echo(f"{queue}: retries {current.retries}, {backoff_text}")
