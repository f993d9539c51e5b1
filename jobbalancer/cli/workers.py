"""``jb workers``: the fleet at a glance."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from jobbalancer.cli.base import echo_json, pass_client

STATE_STYLE = {"running": "green", "draining": "yellow", "dead": "red"}


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}%"


def workers_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("name", "host", "state", "running", "cpu", "mem", "load", "heartbeat", "done", "queues"):
        table.add_column(column, justify="right" if column in ("running", "cpu", "mem", "load", "done") else "left")
    for row in rows:
        style = STATE_STYLE.get(row["state"], "")
        table.add_row(
            row["name"],
            row["host"] or "",
            f"[{style}]{row['state']}[/]" if style else row["state"],
            f"{row['running']}/{row['concurrency'] if row['concurrency'] is not None else '?'}",
            _pct(row["cpu"]),
            _pct(row["mem"]),
            "" if row["load"] is None else f"{row['load']:.2f}",
            f"{row['last_seen_s']:.1f}s ago",
            str(row["jobs_done"]),
            ",".join(row["queues"]),
        )
    if not rows:
        table.caption = "no workers registered"
    return table


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of workers.")
@click.option("--watch", is_flag=True, help="Redraw every second until Ctrl-C.")
@click.pass_context
def workers(ctx: click.Context, as_json: bool, watch: bool) -> None:
    """List workers: state, running/slots, cpu, memory, load, heartbeat age, jobs done."""
    client = pass_client(ctx)
    if as_json:
        echo_json(client.workers())
        return
    if not watch:
        Console().print(workers_table(client.workers()))
        return
    try:
        with Live(workers_table(client.workers()), auto_refresh=False) as live:
            while True:
                time.sleep(1.0)  # a redraw cadence, not a wait for an event
                live.update(workers_table(client.workers()), refresh=True)
    except KeyboardInterrupt:
        pass
