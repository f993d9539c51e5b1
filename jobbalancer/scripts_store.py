"""Named scripts: a body in sh, bash, python or node with declared parameters, kept in ``<p>:scripts``.

A script is stored once (``jb scripts set``, ``PUT /api/scripts/{name}``) and run many times with
different parameter values. Running one resolves it, at submit time, into an ordinary argv command
job: the interpreter, the body, then the values in declared order, with ``JB_PARAM_<NAME>=value``
for each parameter in the environment. The job carries that snapshot, so editing or deleting the
script later changes no job already submitted.

``<p>:scripts`` is a hash: field = the script's name, value = JSON
``{"language", "body", "params": [{"name", "default", "required", "description"}], "updated"}``.
(Not to be confused with :mod:`jobbalancer.scripts`, which loads the Lua scripts.)
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import redis

from jobbalancer.defaults import SubmitRules
from jobbalancer.errors import CorruptRecord, InvalidJob, JobBalancerError
from jobbalancer.job import Spec
from jobbalancer.keys import Keys

log = logging.getLogger("jobbalancer.scripts")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PARAM_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
ENV_PREFIX = "JB_PARAM_"
DESCRIPTION_LIMIT = 1000
PARAMS_LIMIT = 100
# How each language runs a body given on the command line, and what comes before the values:
# sh/bash take the script's name as $0 so the values are $1...; node needs "--" so a value such as
# "--version" is the script's argument, not node's option; python stops parsing options after -c.
LAUNCH: dict[str, tuple[str, ...]] = {
    "sh": ("sh", "-c"),
    "bash": ("bash", "-c"),
    "python": ("python3", "-c"),
    "node": ("node", "-e"),
}
LANGUAGES = tuple(LAUNCH)


class InvalidScript(InvalidJob):
    """A script, a parameter or a parameter value that cannot be accepted; ``field`` names the input."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class NoSuchScript(JobBalancerError, KeyError):
    """No named script with that name."""

    def __str__(self) -> str:
        return f"no script named {self.args[0]!r}"


def check_name(name: Any) -> str:
    """The script's name, or InvalidScript (field ``name``)."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidScript(
            f"name {name!r} is not a valid script name (1-64 of letters, digits, '.', '_', '-')", "name"
        )
    return name


def env_name(param: str) -> str:
    """The environment variable a parameter's value is passed in: ``JB_PARAM_<NAME>``."""
    return ENV_PREFIX + param.upper()


@dataclass(frozen=True)
class Param:
    """One declared parameter: its value comes from the run, else ``default``, else it is missing.

    A missing ``required`` parameter refuses the run; a missing optional one is the empty string.
    """

    name: str
    default: str | None = None
    required: bool = False
    description: str = ""

    @classmethod
    def parse(cls, raw: Any, where: str = "params") -> Param:
        """A parameter from a JSON object; InvalidScript names the field (``params[1].name``)."""
        if isinstance(raw, Param):
            raw = raw.to_dict()
        if not isinstance(raw, Mapping):
            raise InvalidScript(f"{where}: a parameter is an object with a name, got {raw!r}", "params")
        unknown = sorted(set(raw) - {"name", "default", "required", "description"})
        if unknown:
            raise InvalidScript(f"{where}: unknown key {unknown[0]!r}", "params")
        name, default = raw.get("name"), raw.get("default")
        required, description = raw.get("required", False), raw.get("description") or ""
        if not isinstance(name, str) or not PARAM_PATTERN.match(name):
            raise InvalidScript(
                f"{where}.name: {name!r} is not a valid parameter name (a letter or '_', then letters, digits, '_'; "
                "at most 64): it becomes the variable JB_PARAM_<NAME>",
                "params",
            )
        if default is not None and not (isinstance(default, str) and "\0" not in default):
            raise InvalidScript(f"{where}.default: must be a string without NUL characters", "params")
        if not isinstance(required, bool):
            raise InvalidScript(f"{where}.required: must be true or false", "params")
        if required and default is not None:
            raise InvalidScript(f"{where}: parameter {name!r} cannot be required and have a default", "params")
        if not isinstance(description, str) or len(description) > DESCRIPTION_LIMIT:
            raise InvalidScript(
                f"{where}.description: must be text of at most {DESCRIPTION_LIMIT} characters", "params"
            )
        return cls(name, default, required, description)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "default": self.default, "required": self.required, "description": self.description}


def parse_params(raw: Any) -> tuple[Param, ...]:
    """Declared parameters from a list of objects; refuses names that clash as environment variables."""
    if raw is None:
        return ()
    if isinstance(raw, str | bytes) or not isinstance(raw, Iterable):
        raise InvalidScript("params: must be a list of parameters", "params")
    params = tuple(Param.parse(item, f"params[{i}]") for i, item in enumerate(raw))
    if len(params) > PARAMS_LIMIT:
        raise InvalidScript(f"params: at most {PARAMS_LIMIT} parameters", "params")
    seen: dict[str, str] = {}
    for param in params:
        variable = env_name(param.name)
        prior = seen.get(variable)
        if prior == param.name:
            raise InvalidScript(f"params: {param.name!r} is declared twice", "params")
        if prior is not None:
            why = f"both are {variable} (names are case-insensitive)"
            raise InvalidScript(f"params: {param.name!r} clashes with {prior!r}: {why}", "params")
        seen[variable] = param.name
    return params


@dataclass(frozen=True)
class Script:
    """A named script; ``updated`` is when it was last saved (epoch seconds, Redis's clock)."""

    name: str
    language: str
    body: str
    params: tuple[Param, ...] = ()
    updated: float | None = None

    def validated(self, body_limit: int) -> Script:
        """This script, or InvalidScript naming the field; ``body_limit`` is the spec size limit in bytes."""
        check_name(self.name)
        if self.language not in LAUNCH:
            raise InvalidScript(f"language {self.language!r} is not one of {', '.join(LANGUAGES)}", "language")
        if not isinstance(self.body, str) or not self.body.strip():
            raise InvalidScript("body: must be a non-empty script", "body")
        if "\0" in self.body:
            raise InvalidScript("body: holds a NUL character", "body")
        size = len(self.body.encode("utf-8"))
        if size > body_limit:
            raise InvalidScript(
                f"body: {size} bytes, over the limit of {body_limit} bytes (the setting spec_limit)", "body"
            )
        parse_params(self.params)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The script as the API and ``jb scripts show --json`` give it."""
        return {"name": self.name, **self._stored()}

    def _stored(self) -> dict[str, Any]:
        params = [param.to_dict() for param in self.params]
        return {"language": self.language, "body": self.body, "params": params, "updated": self.updated}

    def encode(self) -> str:
        return json.dumps(self._stored(), separators=(",", ":"))

    @classmethod
    def decode(cls, name: str, text: str) -> Script:
        """A stored script; CorruptRecord when it was edited by hand into something unreadable."""
        try:
            raw = json.loads(text)
            updated = raw.get("updated")
            when = float(updated) if isinstance(updated, int | float) else None
            return cls(name, str(raw["language"]), str(raw["body"]), parse_params(raw.get("params")), when)
        except (ValueError, KeyError, TypeError, AttributeError, InvalidJob) as exc:
            raise CorruptRecord(f"script {name!r} cannot be read ({exc}); save it again") from None

    def values(self, given: Mapping[str, Any]) -> dict[str, str]:
        """Each declared parameter's value for one run, in declared order.

        Raises:
            InvalidScript: (field ``params``) an unknown parameter, a missing required one, or a value
                that is not a string without NUL characters.
        """
        declared = [param.name for param in self.params]
        unknown = sorted(set(given) - set(declared))
        if unknown:
            takes = ", ".join(declared) or "no parameters"
            message = f"params: script {self.name!r} has no parameter {unknown[0]!r} (it takes {takes})"
            raise InvalidScript(message, "params")
        values: dict[str, str] = {}
        for param in self.params:
            value = given.get(param.name, param.default)
            if value is None and param.required:
                raise InvalidScript(f"params: script {self.name!r} needs the parameter {param.name!r}", "params")
            if value is not None and not (isinstance(value, str) and "\0" not in value):
                raise InvalidScript(f"params.{param.name}: must be a string without NUL characters", "params")
            values[param.name] = value or ""
        return values

    def snapshot(self, given: Mapping[str, Any]) -> tuple[Spec, dict[str, str]]:
        """The argv job that runs this script with these parameters, and the record fields naming it.

        Returns:
            The spec (interpreter, body, values in declared order; ``JB_PARAM_<NAME>`` in env) and the
            extra record fields ``script`` and ``params`` (JSON) that show what was run.
        """
        values = self.values(given)
        argv = [*LAUNCH[self.language], self.body]
        if self.language in ("sh", "bash"):
            argv.append(self.name)  # $0
        elif self.language == "node":
            argv.append("--")
        argv.extend(values.values())
        env = {env_name(name): value for name, value in values.items()}
        fields = {"script": self.name, "params": json.dumps(values, separators=(",", ":"))}
        return Spec.for_argv(argv, env=env), fields


class ScriptStore:
    """The named scripts of one cluster, in ``<p>:scripts``.

    Args:
        client: a Redis client that decodes replies.
        keys: the cluster's key names.
        rules: the spec size limit's cached reader; a client passes its own.
    """

    def __init__(self, client: redis.Redis, keys: Keys, rules: SubmitRules | None = None) -> None:
        self.client = client
        self.keys = keys
        self.rules = rules if rules is not None else SubmitRules(client, keys)

    def all(self) -> list[Script]:
        """Every readable script, by name; an unreadable one is logged and left out."""
        raw: Any = self.client.hgetall(self.keys.scripts)
        found = []
        for name in sorted(raw):
            try:
                found.append(Script.decode(name, raw[name]))
            except CorruptRecord as exc:
                log.warning("%s", exc)
        return found

    def get(self, name: str) -> Script:
        """The script named ``name``; NoSuchScript when there is none."""
        text: Any = self.client.hget(self.keys.scripts, name) if isinstance(name, str) else None
        if text is None:
            raise NoSuchScript(name)
        return Script.decode(name, text)

    def save(self, name: str, language: str, body: str, params: Iterable[Param | Mapping[str, Any]] = ()) -> Script:
        """Create or replace a script; returns it as stored. Raises InvalidScript naming the field."""
        script = Script(check_name(name), language, body, parse_params(params))
        script.validated(self.rules.spec_limit())
        seconds, micros = self.client.time()
        script = replace(script, updated=round(seconds + micros / 1e6, 3))
        self.client.hset(self.keys.scripts, script.name, script.encode())
        return script

    def delete(self, name: str) -> None:
        """Delete a script; jobs already submitted from it are not touched. NoSuchScript when there is none."""
        if not isinstance(name, str) or not self.client.hdel(self.keys.scripts, name):
            raise NoSuchScript(name)
