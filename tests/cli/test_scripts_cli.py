"""``jb scripts`` and ``jb submit --script`` (click's CliRunner, a real Redis; no worker runs the jobs)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from jobbalancer import Client
from jobbalancer.cli import main

Run = Callable[..., Result]


@pytest.fixture
def jb(redis_url: str, prefix: str) -> Run:
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:  # noqa: A002 - click's name
        return runner.invoke(main, ["--redis", redis_url, "--prefix", prefix, *args], input=input)

    return run


@pytest.fixture
def client(redis_url: str, prefix: str) -> Iterator[Client]:
    the_client = Client(redis_url, prefix)
    yield the_client
    the_client.close()


def test_set_show_list_and_delete(jb: Run, client: Client, tmp_path: Path) -> None:
    body = tmp_path / "greet.py"
    body.write_text("import sys\nprint('hi', *sys.argv[1:])\n")
    saved = jb(
        "scripts", "set", "greet", "--language", "python", "--file", str(body), "--param", "who", "--param", "n=3"
    )
    assert (saved.exit_code, saved.stdout) == (0, "saved greet (python, 2 params)\n")
    script = client.named_scripts.get("greet")
    assert (script.language, script.body) == ("python", body.read_text())
    assert [(p.name, p.default, p.required) for p in script.params] == [("who", None, True), ("n", "3", False)]
    shown = jb("scripts", "show", "greet")
    assert shown.exit_code == 0
    assert shown.stdout == (
        "name: greet\nlanguage: python\n"
        "param: who (required; $JB_PARAM_WHO)\nparam: n (default '3'; $JB_PARAM_N)\n"
        "---\nimport sys\nprint('hi', *sys.argv[1:])\n"
    )
    assert json.loads(jb("scripts", "show", "greet", "--json").stdout)["params"][1]["default"] == "3"
    assert jb("scripts", "set", "other", "--body", "echo other").exit_code == 0  # sh by default
    listed = jb("scripts", "list")
    assert listed.exit_code == 0
    assert [line.split()[:3] for line in listed.stdout.splitlines()[1:]] == [
        ["greet", "python", "who"],
        ["other", "sh", "1"],
    ]
    assert [s["name"] for s in json.loads(jb("scripts", "list", "--json").stdout)] == ["greet", "other"]
    assert jb("scripts", "delete", "other").stdout == "deleted other\n"
    assert [s.name for s in client.named_scripts.all()] == ["greet"]


def test_the_body_can_come_from_stdin(jb: Run, client: Client) -> None:
    assert jb("scripts", "set", "piped", "--language", "bash", "--file", "-", input="echo piped\n").exit_code == 0
    assert client.named_scripts.get("piped").body == "echo piped\n"


def test_an_empty_list_says_so(jb: Run) -> None:
    assert jb("scripts", "list").stdout == "no scripts\n"


def test_submit_script_with_params(jb: Run, client: Client) -> None:
    jb("scripts", "set", "greet", "--body", 'echo "$1 $2"', "--param", "who", "--param", "n=3")
    submitted = jb("submit", "--script", "greet", "-p", "who=ada lovelace", "--queue", "q1", "--json")
    assert submitted.exit_code == 0, submitted.output
    job = json.loads(submitted.stdout)
    assert (job["script"], job["params"], job["queue"]) == ("greet", {"who": "ada lovelace", "n": "3"}, "q1")
    assert job["argv"] == ["sh", "-c", 'echo "$1 $2"', "greet", "ada lovelace", "3"]
    plain = jb("submit", "--script", "greet", "--param", "who=x", "-p", "n=1")
    assert plain.exit_code == 0
    assert client.record(plain.stdout.strip()).params == {"who": "x", "n": "1"}
    status = jb("status", plain.stdout.strip())
    assert "script" in status.stdout and "greet" in status.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "--script", "greet"], "script 'greet' needs the parameter 'who'"),
        (["submit", "--script", "greet", "-p", "who=x", "-p", "whom=y"], "has no parameter 'whom'"),
        (["submit", "--script", "greet", "-p", "who"], "-p/--param takes NAME=VALUE, got 'who'"),
        (["submit", "--script", "greet", "-p", "who=a", "-p", "who=b"], "-p/--param who is given twice"),
        (["submit", "--script", "greet", "-p", "who=x", "echo"], "--script runs a named script: it takes no COMMAND"),
        (["submit", "--script", "greet", "-p", "who=x", "--env", "A=1"], "it takes no COMMAND, --argv, --cwd or --env"),
        (["submit", "echo", "-p", "who=x"], "-p/--param gives a named script's parameters: use it with --script"),
        (["submit"], "Missing argument 'COMMAND' (or --script NAME)"),
        (["scripts", "set", "x y", "--body", "true"], "name 'x y' is not a valid script name"),
        (["scripts", "set", "x", "--body", "true", "--param", "1a"], "--param 1a.name: '1a' is not a valid parameter"),
        (
            ["scripts", "set", "x", "--body", "true", "--param", "a", "--param", "A=1"],
            "'A' clashes with 'a': both are JB_PARAM_A",
        ),
        (["scripts", "set", "x", "--body", " "], "body: must be a non-empty script"),
        (["scripts", "set", "x"], "give the body with exactly one of --file or --body"),
        (["scripts", "set", "x", "--body", "true", "--language", "ruby"], "'ruby' is not one of"),
    ],
)
def test_bad_input_exits_2_with_one_line(jb: Run, client: Client, args: list[str], message: str) -> None:
    jb("scripts", "set", "greet", "--body", "true", "--param", "who")
    outcome = jb(*args)
    assert outcome.exit_code == 2, outcome.output
    assert outcome.stderr.startswith("jb: error: ") and outcome.stderr.count("\n") == 1
    assert message in outcome.stderr
    assert client.jobs() == []
    assert [s.name for s in client.named_scripts.all()] == ["greet"]


def test_unknown_scripts_exit_1(jb: Run) -> None:
    for args in (["scripts", "show", "nope"], ["scripts", "delete", "nope"], ["submit", "--script", "nope"]):
        outcome = jb(*args)
        assert (outcome.exit_code, outcome.stderr) == (1, "jb: error: no script named 'nope'\n"), args
