"""Named scripts on the command line: ``jb scripts list|show|set|delete`` and ``jb submit --script NAME -p K=V``."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from jobbalancer.cli.base import echo_json, pass_client
from jobbalancer.client import Client, Job
from jobbalancer.errors import InvalidJob
from jobbalancer.scripts_store import LANGUAGES, Param, Script, env_name

F = TypeVar("F", bound=Callable[..., Any])


def script_options(command: F) -> F:
    """``jb submit``'s options to run a named script instead of a command."""
    command = click.option(
        "-p", "--param", "param_pairs", multiple=True, metavar="K=V", help="With --script: a parameter's value."
    )(command)
    return click.option("--script", metavar="NAME", help="Run the named script (see `jb scripts`).")(command)


def parse_values(pairs: tuple[str, ...]) -> dict[str, str]:
    """``-p K=V`` values by name; the script checks the names."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidJob(f"-p/--param takes NAME=VALUE, got {pair!r}")
        if name in values:
            raise InvalidJob(f"-p/--param {name} is given twice")
        values[name] = value
    return values


def submit_script(client: Client, name: str, pairs: tuple[str, ...], options: dict[str, Any], conflicts: bool) -> Job:
    """``jb submit --script NAME -p K=V ...``; ``conflicts``: a COMMAND, --argv, --cwd or --env was given too."""
    if conflicts:
        raise InvalidJob("--script runs a named script: it takes no COMMAND, --argv, --cwd or --env")
    return client.submit_script(name, parse_values(pairs), **options)


def parse_declarations(specs: tuple[str, ...]) -> list[Param]:
    """``--param NAME`` (required) or ``--param NAME=DEFAULT`` (optional) declarations."""
    declared = []
    for spec in specs:
        name, sep, default = spec.partition("=")
        raw = {"name": name, "default": default if sep else None, "required": not sep}
        declared.append(Param.parse(raw, f"--param {spec}"))
    return declared


def _describe(script: Script) -> str:
    def one(param: Param) -> str:
        return param.name if param.required else f"{param.name}={param.default or ''}"

    return " ".join(one(param) for param in script.params)


@click.group()
def scripts() -> None:
    """Named scripts: saved sh, bash, python or node bodies with parameters, run with `jb submit --script`."""


@scripts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_scripts(ctx: click.Context, as_json: bool) -> None:
    """List the named scripts."""
    found = pass_client(ctx).named_scripts.all()
    if as_json:
        echo_json([script.to_dict() for script in found])
        return
    table = Table("name", "language", "params", "lines", box=None)
    for script in found:
        table.add_row(script.name, script.language, _describe(script), str(len(script.body.splitlines())))
    Console().print(table) if found else click.echo("no scripts")


@scripts.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the script as JSON.")
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show a script: its language, parameters and body."""
    script = pass_client(ctx).named_scripts.get(name)
    if as_json:
        echo_json(script.to_dict())
        return
    click.echo(f"name: {script.name}\nlanguage: {script.language}")
    for param in script.params:
        how = "required" if param.required else f"default {param.default or ''!r}"
        about = f"  {param.description}" if param.description else ""
        click.echo(f"param: {param.name} ({how}; ${env_name(param.name)}){about}")
    click.echo("---")
    click.echo(script.body, nl=not script.body.endswith("\n"))


@scripts.command("set")
@click.argument("name")
@click.option("--language", type=click.Choice(LANGUAGES), default="sh", show_default=True, help="Interpreter.")
@click.option("--file", "body_file", type=click.File("r"), help="Read the body from this file ('-': stdin).")
@click.option("--body", help="The body, given inline.")
@click.option("--param", "params", multiple=True, metavar="NAME[=DEFAULT]", help="Declare a parameter, in order.")
@click.pass_context
def set_script(
    ctx: click.Context, name: str, language: str, body_file: IO[str] | None, body: str | None, params: tuple[str, ...]
) -> None:
    """Create or replace script NAME. A --param without a default is required.

    A run gets the values as arguments in declared order ($1... in sh, sys.argv[1:] in python,
    process.argv.slice(1) in node) and as $JB_PARAM_<NAME>.
    """
    if (body_file is None) == (body is None):
        raise InvalidJob("give the body with exactly one of --file or --body")
    text = body_file.read() if body_file is not None else body
    saved = pass_client(ctx).named_scripts.save(name, language, text or "", parse_declarations(params))
    click.echo(f"saved {saved.name} ({saved.language}, {len(saved.params)} params)")


@scripts.command("delete")
@click.argument("name")
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete script NAME; jobs already submitted from it are not touched."""
    pass_client(ctx).named_scripts.delete(name)
    click.echo(f"deleted {name}")
