"""The configuration file: ``jb --config FILE`` (or ``JB_CONFIG=FILE``), a TOML file of defaults.

Precedence, highest first: command-line flags, environment variables, the file, built-in defaults.
Click resolves every option in that order when the file is fed to it as the ``default_map``, so
that is all this module does for options; what it adds is checking the file against the commands
(an unknown section or key, or a value of the wrong type, is a usage error naming the file, the
key and what was expected) and giving every option an environment variable.

Sections (``conf/jobbalancer.toml`` documents each key):

- ``[connection]``: the global options ``redis`` (``--redis``) and ``prefix`` (``--prefix``).
- ``[worker]``, ``[balancer]``, ``[web]``, ``[up]``, ``[scheduler]``: the options of those commands.
  A key is the long flag without its dashes, ``-`` written ``_``: ``--shutdown-timeout`` is
  ``shutdown_timeout``; a repeatable option takes a list (``queue = ["default", "gpu"]``).
- ``[cluster]``: live cluster settings (:class:`~jobbalancer.config.Settings`). ``jb balancer``
  (so ``jb up`` too) seeds them into ``<p>:config`` at start, each only if the cluster has no
  value for it yet: a value someone set live with ``jb config set`` is kept, since a routine
  restart must not undo a deliberate change. :func:`seed` reports each kept value that differs.

Environment variables: an option of those commands reads ``JB_<SECTION>_<KEY>`` (e.g.
``JB_WORKER_CONCURRENCY``, ``JB_WEB_PORT``), except the ones with long-standing names:
``JB_REDIS_URL``, ``JB_PREFIX``, ``JB_ALLOW_ROOT``, ``JB_DATA_DIR`` (see :func:`add_envvars`).
A repeatable option's variable holds values separated by spaces.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import click
import redis

from jobbalancer.config import Settings, key_prefix
from jobbalancer.errors import InvalidSetting
from jobbalancer.keys import Keys

log = logging.getLogger("jobbalancer.config")

ENV_VAR = "JB_CONFIG"
CONNECTION = "connection"
CLUSTER = "cluster"
COMMANDS = ("worker", "balancer", "web", "up", "scheduler")
META_KEY = "jobbalancer.config_file"  # where the loaded file waits in ``ctx.meta`` for the commands
SKIPPED = {"config_file"}  # the root's own --config option is not a setting of the file


class ConfigFileError(InvalidSetting):
    """The configuration file cannot be read, or names a section, key or value the commands do not take."""


@dataclass(frozen=True)
class ConfigFile:
    """A checked configuration file.

    Attributes:
        path: where it was read from (absolute, so child processes find it from any directory).
        default_map: click's ``default_map``: the root's options by parameter name, and one dict
            per command section.
        cluster: the ``[cluster]`` settings as text, the form ``<p>:config`` stores.
    """

    path: Path
    default_map: dict[str, Any] = field(default_factory=dict)
    cluster: dict[str, str] = field(default_factory=dict)


def option_key(param: click.Parameter) -> str:
    """The file's key for an option: its long flag without dashes, ``-`` as ``_`` (``--data-dir``: ``data_dir``)."""
    longs = [opt for opt in param.opts if opt.startswith("--")]
    return (longs[0] if longs else param.opts[0]).lstrip("-").replace("-", "_")


def command_options(command: click.Command) -> dict[str, click.Option]:
    """The options of ``command`` a file can set, by file key (``--help``, ``--version`` and ``--config`` cannot)."""
    return {
        option_key(param): param
        for param in command.params
        if isinstance(param, click.Option) and param.expose_value and param.name not in SKIPPED
    }


def sections(group: click.Group) -> dict[str, dict[str, click.Option]]:
    """Every section the file may have but ``[cluster]``, with its options by file key."""
    found = {CONNECTION: command_options(group)}
    for name in COMMANDS:
        command = group.commands.get(name)
        if command is not None:
            found[name] = command_options(command)
    return found


def envvar_name(section: str, key: str) -> str:
    return f"JB_{section}_{key}".upper()


def add_envvars(group: click.Group) -> None:
    """Give each option of the file's commands its ``JB_<SECTION>_<KEY>`` variable, unless it has one.

    Options that already name a variable keep it (``JB_ALLOW_ROOT``, ``JB_DATA_DIR``): scripts use them.
    """
    for section, options in sections(group).items():
        for key, option in options.items():
            if option.envvar is None and section != CONNECTION:
                option.envvar = envvar_name(section, key)
            option.show_envvar = True


def read(path: Path, group: click.Group) -> ConfigFile:
    """Read and check a configuration file against ``group``'s commands.

    Raises:
        ConfigFileError: naming the file, and the key and what it expected, for anything off.
    """
    try:
        text = path.read_bytes().decode("utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read the configuration file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigFileError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, Path(os.path.abspath(path)), group)


def parse(data: Mapping[str, Any], path: Path, group: click.Group) -> ConfigFile:
    """Check parsed TOML against ``group``'s commands and turn it into a :class:`ConfigFile`."""
    known = sections(group)
    default_map: dict[str, Any] = {}
    cluster: dict[str, str] = {}
    names = ", ".join(f"[{name}]" for name in [*known, CLUSTER])
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigFileError(f"{path}: {section!r} is outside any section; settings go under {names}")
        if section != CLUSTER and section not in known:
            raise ConfigFileError(f"{path}: unknown section [{section}]; known sections: {names}")
        if section == CLUSTER:
            cluster = {key: setting_text(path, key, value) for key, value in table.items()}
            continue
        values = {}
        for key, value in table.items():
            option = known[section].get(key)
            if option is None:
                names = ", ".join(known[section])
                raise ConfigFileError(f"{path}: unknown key {key!r} in [{section}]; known keys: {names}")
            values[option.name] = option_value(path, f"[{section}] {key}", option, value)
        if section == CONNECTION:
            _check_prefix(path, values.get("prefix"))
            default_map.update(values)
        else:
            default_map[section] = values
    return ConfigFile(path, default_map, cluster)


def _check_prefix(path: Path, prefix: str | None) -> None:
    if prefix is not None:
        try:
            key_prefix(prefix)
        except InvalidSetting as exc:
            raise ConfigFileError(f"{path}: [connection] {exc}") from None


def option_value(path: Path, where: str, option: click.Option, value: Any) -> Any:
    """``value`` if it suits ``option`` (type, then the option's own check, e.g. a range)."""
    expected = _expected(option)
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) != option.multiple or not all(_fits(option, item) for item in items):
        raise ConfigFileError(f"{path}: {where}: expected {expected}, got {_shown(value)}")
    for item in items:
        try:
            option.type.convert(item, None, None)
        except click.BadParameter as exc:
            raise ConfigFileError(f"{path}: {where}: {exc.message.rstrip('.')}") from None
    return value


def _fits(option: click.Option, item: Any) -> bool:
    if option.is_flag and option.is_bool_flag:
        return isinstance(item, bool)
    if isinstance(item, bool):  # TOML's true is not a number here
        return False
    if isinstance(option.type, click.types.IntParamType):
        return isinstance(item, int)
    if isinstance(option.type, click.types.FloatParamType):
        return isinstance(item, int | float)
    return isinstance(item, str)


def _expected(option: click.Option) -> str:
    if option.is_flag and option.is_bool_flag:
        return "true or false"
    one = {click.types.IntParamType: "an integer", click.types.FloatParamType: "a number"}
    kind = next((text for base, text in one.items() if isinstance(option.type, base)), "a string")
    return f'a list of {kind.split(" ", 1)[1]}s (e.g. ["a", "b"])' if option.multiple else kind


def _shown(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    shown = repr(value) if not isinstance(value, dict | list) else ""
    return f"{names.get(type(value), type(value).__name__)} {shown}".rstrip()


def setting_text(path: Path, key: str, value: Any) -> str:
    """A ``[cluster]`` value as ``<p>:config`` stores it, checked like ``jb config set`` does (but the policy)."""
    kinds = {f.name: str(f.type) for f in fields(Settings)}
    if key not in kinds:
        raise ConfigFileError(f"{path}: unknown key {key!r} in [cluster]; known keys: {', '.join(kinds)}")
    wanted = {"int": (int,), "float": (int, float)}.get(kinds[key], (str,))
    if isinstance(value, bool) or not isinstance(value, wanted):
        expected = {"int": "an integer", "float": "a number"}.get(kinds[key], "a string")
        raise ConfigFileError(f"{path}: [cluster] {key}: expected {expected}, got {_shown(value)}")
    try:
        settings = Settings().with_value(key, str(value)).validate()
    except InvalidSetting as exc:
        raise ConfigFileError(f"{path}: [cluster] {exc}") from None
    return settings.to_hash()[key]


def seed(client: redis.Redis, prefix: str, values: Mapping[str, str]) -> dict[str, str]:
    """Write each ``[cluster]`` value to ``<p>:config`` unless the cluster already has one (HSETNX).

    Returns:
        The values kept because the cluster had its own, different one: setting name to live value.
    """
    if not values:
        return {}
    key = Keys(prefix).config
    pipe: Any = client.pipeline(transaction=True)
    for name, text in values.items():
        pipe.hsetnx(key, name, text)
    pipe.hmget(key, list(values))
    *written, live = pipe.execute()
    kept = {}
    for (name, text), was_set, now in zip(values.items(), written, live, strict=True):
        if was_set:
            log.info("cluster setting %s = %s (from the configuration file)", name, text)
        elif now != text:
            kept[name] = now
            log.warning(
                "the configuration file sets %s = %s, but the cluster has %s (set live); keeping it. "
                "To apply the file's value: jb config set %s %s",
                name, text, now, name, text,
            )  # fmt: skip
    return kept


def check_cluster_policy(loaded: ConfigFile, policy_check: Callable[[str], object]) -> None:
    """Check what only a balancer can: that the ``[cluster]`` policy loads (it may be the user's own class).

    Raises:
        ConfigFileError: naming the file, for a policy that does not load.
    """
    if "policy" in loaded.cluster:
        try:
            policy_check(loaded.cluster["policy"])
        except InvalidSetting as exc:
            raise ConfigFileError(f"{loaded.path}: [cluster] {exc}") from None


def use_file(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """Callback of the root's eager ``--config``: make the file the ``default_map`` of this run."""
    if not value:
        return
    if not isinstance(ctx.command, click.Group):
        raise TypeError("--config belongs to the root group")
    try:
        loaded = read(Path(value), ctx.command)
    except ConfigFileError as exc:
        raise click.UsageError(str(exc)) from None
    ctx.default_map = loaded.default_map
    ctx.meta[META_KEY] = loaded


def loaded_file(ctx: click.Context) -> ConfigFile | None:
    """The configuration file this run read, if any."""
    found = ctx.meta.get(META_KEY)
    return found if isinstance(found, ConfigFile) else None
