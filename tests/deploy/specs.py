"""Read the deployment files (docker-compose.yml, conf/systemd/*) into commands this machine can run.

Each service and unit runs a ``jb`` command. The tests run exactly those arguments, with only the
parts that name the target machine translated: the installed ``jb`` for ``jb`` or
``/opt/jobbalancer/bin/jb``, the checkout for ``/opt/jobbalancer``, the unit's instance for ``%i``.
"""

from __future__ import annotations

import configparser
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import REPO

COMPOSE = REPO / "docker-compose.yml"
UNITS = REPO / "conf" / "systemd"
INSTALL = "/opt/jobbalancer"  # where the units expect the venv and the workers/ folder
JB = Path(sys.executable).parent / "jb"  # the `jb` script installed next to this interpreter


@dataclass(frozen=True)
class Command:
    """One process a deployment file starts: where it came from, its role and its argv here."""

    source: str
    label: str
    argv: tuple[str, ...]

    @property
    def role(self) -> str:
        """``worker``, ``balancer`` or ``web``: the jb subcommand."""
        return self.argv[1]


def compose() -> dict[str, Any]:
    """docker-compose.yml as parsed YAML (anchors and merge keys resolved)."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def unit(name: str) -> configparser.ConfigParser:
    """A systemd unit file as sections of keys (a later duplicate key wins, as in systemd)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((UNITS / name).read_text())
    return parser


def local_argv(argv: list[str], instance: str = "") -> tuple[str, ...]:
    """Translate a deployed command line to this checkout (see the module docstring)."""
    if Path(argv[0]).name != "jb":
        raise AssertionError(f"not a jb command: {argv}")
    out = [str(JB)]
    for arg in argv[1:]:
        arg = arg.replace("%i", instance)
        if arg.startswith(INSTALL + "/"):
            arg = str(REPO / arg.removeprefix(INSTALL + "/"))
            assert Path(arg).exists(), f"{arg} (installed as {INSTALL}/...) is missing from the repo"
        out.append(arg)
    return tuple(out)


def compose_commands() -> list[Command]:
    """Every jobbalancer service of docker-compose.yml (each balancer service is one process)."""
    services = compose()["services"]
    return [
        Command("compose", name, local_argv(list(svc["command"])))
        for name, svc in services.items()
        if svc.get("command", [""])[0] == "jb"
    ]


def systemd_commands(worker_name: str) -> list[Command]:
    """The ExecStart of each unit; the worker template instantiated as ``worker_name``."""
    found = []
    for path in sorted(UNITS.glob("*.service")):
        exec_start = unit(path.name)["Service"]["ExecStart"]
        instance = worker_name if path.name.endswith("@.service") else ""
        found.append(Command("systemd", path.name, local_argv(shlex.split(exec_start), instance)))
    return found


def option(argv: tuple[str, ...], name: str) -> str | None:
    """The value following ``name`` in argv, or None."""
    return argv[argv.index(name) + 1] if name in argv else None


def with_option(argv: tuple[str, ...], name: str, value: str) -> tuple[str, ...]:
    """argv with the value following ``name`` replaced (``name`` must be there)."""
    i = argv.index(name)
    return (*argv[: i + 1], value, *argv[i + 2 :])
