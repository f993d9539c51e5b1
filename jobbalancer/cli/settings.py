"""``jb config``: read and change the live cluster settings."""

from __future__ import annotations

import click

from jobbalancer.balancer.policies import check_policy
from jobbalancer.cli.base import echo_json, pass_client
from jobbalancer.config import Settings


@click.group()
def config() -> None:
    """Live cluster settings (applied by the balancer and workers within a second)."""


@config.command("get")
@click.argument("key", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print all settings as JSON.")
@click.pass_context
def get(ctx: click.Context, key: str | None, as_json: bool) -> None:
    """Print one setting, or all of them."""
    values = pass_client(ctx).settings().to_hash()
    if key is not None:
        if key not in values:
            raise click.BadParameter(f"unknown setting {key!r}; known: {', '.join(Settings.names())}", param_hint="KEY")
        click.echo(values[key])
    elif as_json:
        echo_json(values)
    else:
        for name, value in values.items():
            click.echo(f"{name} = {value}")


@config.command("set")
@click.argument("key")
@click.argument("value")
@click.pass_context
def set_(ctx: click.Context, key: str, value: str) -> None:
    """Change one setting, e.g. ``jb config set policy cpu``."""
    updated = pass_client(ctx).set_setting(key, value, policy_check=check_policy)
    click.echo(f"{key} = {getattr(updated, key)}")
