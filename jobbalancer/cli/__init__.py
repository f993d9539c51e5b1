"""The ``jb`` command line: thin click commands over the library."""

from __future__ import annotations

import click

from jobbalancer.cli.base import Main
from jobbalancer.cli.bench import bench
from jobbalancer.cli.dead import dead, retries
from jobbalancer.cli.jobs import cancel, delete, jobs, logs, restart, result, status, submit
from jobbalancer.cli.procs import balancer, up, worker
from jobbalancer.cli.schedule import schedule, scheduler
from jobbalancer.cli.scripts import scripts
from jobbalancer.cli.settings import config
from jobbalancer.cli.web import web
from jobbalancer.cli.workers import workers
from jobbalancer.conffile import add_envvars, use_file
from jobbalancer.config import DEFAULT_PREFIX, DEFAULT_URL


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--redis", "url", envvar="JB_REDIS_URL", default=DEFAULT_URL, show_default=True, help="Redis URL.")
@click.option("--prefix", envvar="JB_PREFIX", default=DEFAULT_PREFIX, show_default=True, help="Key prefix.")
@click.option(
    "--config",
    "config_file",
    envvar="JB_CONFIG",
    show_envvar=True,
    metavar="FILE",
    is_eager=True,  # read first: the other options take their defaults from it
    expose_value=False,
    callback=use_file,
    help="TOML file of defaults (conf/jobbalancer.toml); flags and JB_* variables beat it.",
)
@click.version_option(package_name="jobbalancer")
@click.pass_context
def main(ctx: click.Context, url: str, prefix: str) -> None:
    """jobbalancer: run shell commands and Python calls on a fleet of workers, through Redis."""
    ctx.obj = Main.context_object(url, prefix)


for command in (
    submit,
    status,
    result,
    logs,
    cancel,
    restart,
    delete,
    jobs,
    workers,
    config,
    up,
    worker,
    balancer,
    bench,
    web,
    schedule,
    scheduler,
    scripts,
    dead,
    retries,
):
    main.add_command(command)
add_envvars(main)  # JB_<COMMAND>_<OPTION> for the options the configuration file can set

__all__ = ["main"]
