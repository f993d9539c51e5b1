"""The Lua scripts (``jobbalancer/lua/``), each prefixed with the shared helpers, bound to a client.

A script is called with the key prefix as its first argument; the rest is documented at the top
of each ``.lua`` file.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoScriptError

from jobbalancer.config import Settings

NAMES = (
    "submit",
    "dispatch",
    "start",
    "take",
    "complete",
    "release",
    "cancel",
    "overdue",
    "steal",
    "restart",
    "delete",
    "heartbeat",
    "lease",
    "due",
    "audit",
    "delayed",
)


@cache
def source(name: str) -> str:
    """The full text of one script: the generated defaults, the helpers, then the script."""
    lua = resources.files("jobbalancer") / "lua"
    defaults = ", ".join(f'{key} = "{value}"' for key, value in Settings().to_hash().items())
    return "\n".join(
        [
            f"local DEFAULTS = {{{defaults}}}",
            (lua / "_lib.lua").read_text(),
            (lua / f"{name}.lua").read_text(),
        ]
    )


class Scripts:
    """Every script, bound to one Redis client; call as ``scripts.submit(prefix, ...)``.

    Scripts are called by ``EVALSHA``. In a pipeline (``client=pipe``) that skips redis-py's
    ``SCRIPT EXISTS`` round trip before every execution; run such pipelines with
    :meth:`execute`, which loads the scripts and repeats only the failed calls when Redis answers
    ``NOSCRIPT`` (after a restart or ``SCRIPT FLUSH``). A direct call does the same by itself.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._shas = {name: hashlib.sha1(source(name).encode()).hexdigest() for name in NAMES}

    def load(self) -> None:
        """Load every script into Redis (idempotent)."""
        pipe = self._client.pipeline(transaction=False)
        for name in NAMES:
            pipe.script_load(source(name))
        pipe.execute()

    def __getattr__(self, name: str) -> Any:
        try:
            sha = self._shas[name]
        except KeyError:
            raise AttributeError(name) from None

        def call(*args: Any, client: Any = None) -> Any:
            if client is not None:  # a pipeline: run it with execute()
                return client.evalsha(sha, 0, *args)
            try:
                return self._client.evalsha(sha, 0, *args)
            except NoScriptError:
                self.load()
                return self._client.evalsha(sha, 0, *args)

        return call

    def execute(self, pipe: redis.client.Pipeline, raise_on_error: bool = True) -> list[Any]:
        """``pipe.execute()``, loading the scripts and repeating just the calls Redis did not know."""
        stack = list(pipe.command_stack)
        results = pipe.execute(raise_on_error=False)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            self.load()
            again: Any = self._client.pipeline(transaction=False)
            for i in missing:
                args, options = stack[i]
                again.execute_command(*args, **options)
            for i, result in zip(missing, again.execute(raise_on_error=False), strict=True):
                results[i] = result
        if raise_on_error:
            for result in results:
                if isinstance(result, Exception):
                    raise result
        return list(results)
