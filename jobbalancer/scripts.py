"""The Lua scripts (``jobbalancer/lua/``), each prefixed with the shared helpers, bound to a client.

A script is called with the key prefix as its first argument; the rest is documented at the top
of each ``.lua`` file.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.commands.core import AsyncScript, Script

from jobbalancer.config import Settings

NAMES = (
    "submit",
    "dispatch",
    "start",
    "complete",
    "release",
    "cancel",
    "overdue",
    "restart",
    "delete",
    "heartbeat",
    "lease",
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
    """Every script registered on one Redis client; call as ``scripts.submit(prefix, ...)``."""

    def __init__(self, client: redis.Redis) -> None:
        self._scripts: dict[str, Script | AsyncScript] = {name: client.register_script(source(name)) for name in NAMES}

    def __getattr__(self, name: str) -> Any:
        try:
            script = self._scripts[name]
        except KeyError:
            raise AttributeError(name) from None

        def call(*args: Any, client: Any = None) -> Any:
            return script(keys=[], args=list(args), client=client)

        return call
