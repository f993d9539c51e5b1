"""The web dashboard and HTTP API (the ``web`` extra): ``create_app()`` and ``jb web``.

Nothing outside ``jobbalancer.web`` and ``jobbalancer.cli.web`` imports this package; the worker and
the balancer run without FastAPI installed.
"""

from jobbalancer.web.app import create_app

__all__ = ["create_app"]
