"""The Lua scripts (``jobbalancer/lua/``), each prefixed with the shared helpers, bound to a client.

A script is called with the key prefix as its first argument; the rest is documented at the top
of each ``.lua`` file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoScriptError

from jobbalancer import lane
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


# A top-level statement of _lib.lua starts at column 0; the indented lines after it, and a closing
# ``end``, ``}`` or ``)``, belong to it (comments too: they are never looked at).
_STATEMENT = re.compile(r"^(?!end\b|else|until\b|--)[A-Za-z_]")
_DEFINES = re.compile(r"^(?:local\s+function\s+(\w+)|local\s+([\w\s,]+?)\s*(?:=|$)|(\w+)\s*=\s*function\b)")
_WORD = re.compile(r"[A-Za-z_]\w*")
_STRING_OR_COMMENT = re.compile(r"""'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"|--[^\n]*""")


def _statements(lib: str) -> list[tuple[set[str], str]]:
    """_lib.lua as its top-level statements, each with the names it defines (none: always kept)."""
    chunks: list[list[str]] = []
    for line in lib.splitlines():
        if _STATEMENT.match(line) or not chunks:
            chunks.append([])
        chunks[-1].append(line)
    out = []
    for lines in chunks:
        found = _DEFINES.match(lines[0])
        names = {n.strip() for n in ",".join(g for g in found.groups() if g).split(",")} if found else set()
        out.append((names, "\n".join(lines)))
    return out


def _words(lua: str) -> set[str]:
    """Every identifier in ``lua`` outside comments (strings included: an extra helper is harmless)."""
    code = _STRING_OR_COMMENT.sub(lambda m: "" if m.group().startswith("--") else m.group(), lua)
    return set(_WORD.findall(code))


def _needed(statements: list[tuple[set[str], str]], script: str) -> list[str]:
    """The statements ``script`` reaches, directly or through other helpers, in their order."""
    wanted, todo = set(), _words(script)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        for names, text in statements:
            if name in names:
                todo |= _words(text) - wanted
    return [text for names, text in statements if not names or names & wanted]


@cache
def source(name: str) -> str:
    """The full text of one script: the generated defaults, the helpers it uses, then the script.

    The helpers run on every call (each ``local function`` is a closure made anew), so only those
    the script reaches are included; the defaults are a function that builds their table only
    when a script needs a setting that ``<p>:config`` does not hold.
    """
    lua = resources.files("jobbalancer") / "lua"
    defaults = ", ".join(f'{key} = "{value}"' for key, value in Settings().to_hash().items())
    statements = [({"DEFAULTS"}, f"local function DEFAULTS() return {{{defaults}}} end")]
    statements += _statements((lua / "_lib.lua").read_text())
    script = (lua / f"{name}.lua").read_text()
    return "\n".join([*_needed(statements, script), script])


class Scripts:
    """Every script, bound to one Redis client; call as ``scripts.submit(prefix, ...)``.

    Scripts are called by ``EVALSHA``, one at a time or several in one round trip with
    :meth:`many`, on the lean path of :mod:`jobbalancer.lane`. When Redis answers ``NOSCRIPT``
    (after a restart or ``SCRIPT FLUSH``) the scripts are loaded and just those calls repeated.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._shas = {name: hashlib.sha1(source(name).encode()).hexdigest() for name in NAMES}

    def sha(self, name: str) -> str:
        """The SHA1 a script is called by (``EVALSHA``), for a caller that sends the call itself."""
        return self._shas[name]

    def load(self) -> None:
        """Load every script into Redis (idempotent)."""
        pipe = self._client.pipeline(transaction=False)
        for name in NAMES:
            pipe.script_load(source(name))
        pipe.execute()

    def __getattr__(self, name: str) -> Any:
        if name not in self._shas:
            raise AttributeError(name)

        def call(*args: Any) -> Any:
            return self.many([(name, args)])[0]

        return call

    def many(self, calls: Sequence[tuple[str, Sequence[Any]]], raise_on_error: bool = True) -> list[Any]:
        """Several script calls, ``(name, args)`` each, in one round trip (:mod:`jobbalancer.lane`);
        their replies in order. Scripts Redis did not know are loaded and just those calls repeated.

        Raises:
            redis.ResponseError: the first error reply, with ``raise_on_error`` (else it is returned
                in its place).
        """
        commands = [("EVALSHA", self._shas[name], 0, *args) for name, args in calls]
        replies = lane.run(self._client, commands)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            self.load()
            for i, reply in zip(missing, lane.run(self._client, [commands[i] for i in missing]), strict=True):
                replies[i] = reply
        return lane.checked(replies) if raise_on_error else replies
