"""Long-running processes: ``jb up``, ``jb worker``, ``jb balancer``."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from jobbalancer.balancer import Balancer
from jobbalancer.balancer.policies import check_policy
from jobbalancer.cli.base import CliContext, setup_logging
from jobbalancer.cli.schedule import start_scheduler
from jobbalancer.conffile import check_cluster_policy, loaded_file, seed
from jobbalancer.connection import connect
from jobbalancer.up import Cluster
from jobbalancer.worker import Worker


def _context(ctx: click.Context) -> CliContext:
    obj = ctx.find_object(CliContext)
    assert obj is not None
    return obj


@click.command()
@click.option("--workers", "n_workers", type=click.IntRange(0, 256), default=2, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 1024), help="Slots per worker [default: CPU count].")
@click.option("--policy", help="Balancing policy (see `jb config`).")
@click.option("--path", "paths", multiple=True, metavar="DIR", help="Put DIR on the workers' sys.path (repeatable).")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="JB_DATA_DIR",
    help="Embedded Redis data [default: .jobbalancer].",
)
@click.option("--allow-root", is_flag=True, envvar="JB_ALLOW_ROOT", help="Let workers (and the dashboard) run as root.")
@click.option("--web-port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Dashboard port.")
@click.option("--no-web", is_flag=True, help="Do not start the dashboard (`jb web`).")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def up(
    ctx: click.Context,
    n_workers: int,
    concurrency: int | None,
    policy: str | None,
    paths: tuple[str, ...],
    data_dir: Path | None,
    allow_root: bool,
    web_port: int,
    no_web: bool,
    verbose: bool,
) -> None:
    """Run a cluster here: Redis (embedded if none answers), a balancer, workers and the dashboard."""
    setup_logging(verbose)
    obj = _context(ctx)
    web = None if no_web else web_port
    cluster = Cluster(obj.url, obj.prefix, n_workers, concurrency, policy, paths, allow_root, web_port=web)
    loaded = loaded_file(ctx)
    if loaded is not None:  # the children read it too: [worker] for the workers, [cluster] for the balancer
        cluster.config_file = loaded.path
    if data_dir is not None:
        cluster.data_dir = data_dir
    ctx.exit(cluster.run())


@click.command()
@click.option("--name", help="Worker name [default: <host>-<pid>]; reuse it to settle a previous run's jobs.")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=os.cpu_count() or 2, show_default="CPU count")
@click.option("--queue", "queues", multiple=True, default=("default",), show_default=True, help="Queue (repeatable).")
@click.option("--path", "paths", multiple=True, metavar="DIR", help="Put DIR on sys.path for calls (repeatable).")
@click.option("--heartbeat", type=click.FloatRange(0.05, 60), default=1.0, show_default=True, metavar="S")
@click.option("--shutdown-timeout", type=click.FloatRange(0), default=30.0, show_default=True, metavar="S")
@click.option("--with-balancer", is_flag=True, help="Also run a standby balancer in this process.")
@click.option("--allow-root", is_flag=True, envvar="JB_ALLOW_ROOT", help="Run even as root (or JB_ALLOW_ROOT=1).")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def worker(
    ctx: click.Context,
    name: str | None,
    concurrency: int,
    queues: tuple[str, ...],
    paths: tuple[str, ...],
    heartbeat: float,
    shutdown_timeout: float,
    with_balancer: bool,
    allow_root: bool,
    verbose: bool,
) -> None:
    """Run a worker: take jobs from its stream and run up to CONCURRENCY at once."""
    setup_logging(verbose)
    obj = _context(ctx)
    the_worker = Worker(
        obj.url,
        obj.prefix,
        name=name,
        concurrency=concurrency,
        queues=queues,
        paths=paths,
        heartbeat_s=heartbeat,
        shutdown_timeout_s=shutdown_timeout,
        allow_root=allow_root,
    )
    standby = Balancer(obj.url, obj.prefix, name=f"{the_worker.name}-balancer") if with_balancer else None
    the_worker.install_signal_handlers()
    thread = threading.Thread(target=standby.run, name="balancer", daemon=True) if standby else None
    if thread is not None:
        thread.start()
    try:
        the_worker.run()
    finally:
        if standby is not None and thread is not None:
            standby.stop()
            thread.join(10)


@click.command()
@click.option("--policy", help="round-robin, least-loaded, cpu, random, p2c, or package.module:Class.")
@click.option("--heartbeat-timeout", type=float, metavar="S", help="Seconds of silence after which a worker is dead.")
@click.option("--name", help="Balancer name [default: <host>-<pid>].")
@click.option("--scheduler", "with_scheduler", is_flag=True, help="While leading, also run rq-scheduler's loop.")
@click.option("--scheduler-interval", type=click.FloatRange(0.05, 3600), default=1.0, show_default=True, metavar="S")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def balancer(
    ctx: click.Context,
    policy: str | None,
    heartbeat_timeout: float | None,
    name: str | None,
    with_scheduler: bool,
    scheduler_interval: float,
    verbose: bool,
) -> None:
    """Run a balancer: the leader places jobs on workers, the others stand by."""
    setup_logging(verbose)
    obj = _context(ctx)
    the_balancer = Balancer(obj.url, obj.prefix, name=name, policy=policy, heartbeat_timeout_s=heartbeat_timeout)
    _seed_cluster(ctx, obj)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        the_balancer.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop_scheduler = None
    if with_scheduler:
        stop_scheduler = start_scheduler(obj.url, obj.prefix, scheduler_interval, the_balancer.leading)
    try:
        the_balancer.run()
    finally:
        if stop_scheduler is not None:
            stop_scheduler()


def _seed_cluster(ctx: click.Context, obj: CliContext) -> None:
    """The configuration file's ``[cluster]`` settings, for each the cluster has no value for yet."""
    loaded = loaded_file(ctx)
    if loaded is None or not loaded.cluster:
        return
    check_cluster_policy(loaded, check_policy)
    client = connect(obj.url)
    try:
        seed(client, obj.prefix, loaded.cluster)
    finally:
        client.close()
