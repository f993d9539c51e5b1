"""``jb web``: serve the dashboard and HTTP API (needs the ``web`` extra)."""

from __future__ import annotations

import importlib
import os

import click

from jobbalancer.cli.base import CliContext, fail, setup_logging

TOKEN_ENV = "JB_WEB_TOKEN"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 for every interface.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option(
    "--allow-host",
    "extra_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer to this Host name, e.g. the one a proxy uses (repeatable).",
)
@click.option("--allow-root", is_flag=True, envvar="JB_ALLOW_ROOT", help="Run even as root (or JB_ALLOW_ROOT=1).")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def web(
    ctx: click.Context, host: str, port: int, extra_hosts: tuple[str, ...], allow_root: bool, verbose: bool
) -> None:
    """Serve the web dashboard and the HTTP API.

    Every API call needs 'Authorization: Bearer TOKEN'. The token is $JB_WEB_TOKEN, or one made
    now and printed once.
    """
    setup_logging(verbose)
    obj = ctx.find_object(CliContext)
    assert obj is not None
    try:
        # Imported here, not at the top: the web extra is optional, and `jb worker` must never load it.
        serving = importlib.import_module("jobbalancer.web.serve")
        guard = importlib.import_module("jobbalancer.web.guard")
    except ImportError as exc:
        fail(f"the dashboard needs the web extra ({exc}); install it with: pip install 'jobbalancer[web]'")
    guard.refuse_root(allow_root)
    token = os.environ.get(TOKEN_ENV) or guard.new_token()
    shown = "" if os.environ.get(TOKEN_ENV) else f"\n  token: {token}   (set {TOKEN_ENV} to choose your own)"
    where = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    click.echo(f"jobbalancer dashboard: http://{where}:{port}/{shown}", err=True)
    serving.serve(obj.url, obj.prefix, token, host=host, port=port, extra_hosts=extra_hosts, allow_root=allow_root)
