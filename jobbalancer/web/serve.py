"""Serving the dashboard with uvicorn: what ``jb web`` runs."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterable

import uvicorn

from jobbalancer.web.app import create_app
from jobbalancer.web.guard import allowed_hosts, refuse_root

log = logging.getLogger("jobbalancer.web")

# Open event streams end this long after a stop is asked for, so Ctrl-C never hangs on a browser tab.
GRACEFUL_SHUTDOWN_S = 3


def serve(
    url: str,
    prefix: str,
    token: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    extra_hosts: Iterable[str] = (),
    allow_root: bool = False,
) -> None:
    """Serve the dashboard until SIGINT/SIGTERM.

    Raises:
        WebError: running as root without ``allow_root`` or ``JB_ALLOW_ROOT=1``.
        RedisUnavailable: Redis does not answer.
    """
    refuse_root(allow_root)
    app = create_app(url=url, prefix=prefix, token=token, hosts=allowed_hosts(host, extra_hosts))
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        proxy_headers=False,  # the Host check must see what the client sent, not a forwarded claim
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    # uvicorn shuts down on SIGINT/SIGTERM, then re-raises the signal to the handler it found: with
    # a no-op one here, a clean shutdown exits 0 instead of dying by the signal (docker's 143).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _signum, _frame: None)
    uvicorn.Server(config).run()
