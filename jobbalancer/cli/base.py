"""What every command shares: the lazily connected client and one-line error reporting."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

import click
import redis

from jobbalancer.client import Client
from jobbalancer.config import key_prefix
from jobbalancer.errors import InvalidJob, InvalidSetting, JobBalancerError

# Errors in what the user typed exit 2 like click's own usage errors; failures at run time exit 1.
USAGE_ERRORS = (InvalidJob, InvalidSetting)


@dataclass
class CliContext:
    url: str
    prefix: str
    _client: Client | None = field(default=None, repr=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.url, self.prefix)
        return self._client


class Main(click.Group):
    """The root group: turns jobbalancer and Redis errors into one line on stderr."""

    @staticmethod
    def context_object(url: str, prefix: str) -> CliContext:
        try:
            return CliContext(url, key_prefix(prefix))
        except InvalidSetting as exc:
            raise click.BadParameter(str(exc), param_hint="--prefix") from None

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Click's own usage errors also come out as one line (exit 2), without the usage block."""
        kwargs["standalone_mode"] = False
        try:
            outcome = super().main(*args, **kwargs)
        except click.exceptions.Abort:
            fail("aborted", code=130)
        except click.ClickException as exc:
            fail(exc.format_message(), code=exc.exit_code)
        if isinstance(outcome, int):
            sys.exit(outcome)
        sys.exit(0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USAGE_ERRORS as exc:
            fail(str(exc), code=2)
        except JobBalancerError as exc:
            fail(str(exc))
        except redis.RedisError as exc:
            url = ctx.obj.url if isinstance(ctx.obj, CliContext) else "?"
            fail(f"Redis at {url}: {exc}")
        except UnicodeEncodeError as exc:  # an argument with bytes that are not UTF-8 (a shell passes any)
            fail(f"an argument is not valid UTF-8 text: {exc.object[exc.start : exc.end]!r}", code=2)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"jb: error: {message}", err=True)
    sys.exit(code)


def pass_client(ctx: click.Context) -> Client:
    obj = ctx.find_object(CliContext)
    assert obj is not None
    return obj.client


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
