"""The configuration file as a reader sees it: what it accepts, what it refuses and how, and that the
shipped ``conf/jobbalancer.toml`` documents every setting with its true default (so it cannot rot)."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import click
import fakeredis
import pytest

from jobbalancer.cli import main
from jobbalancer.conffile import CLUSTER, CONNECTION, ConfigFileError, parse, read, sections, seed
from jobbalancer.config import Settings

SHIPPED = Path(__file__).resolve().parents[2] / "conf" / "jobbalancer.toml"
SETTING_LINE = re.compile(r"^#(\w+) = ")  # a commented-out setting; prose comments start with "# "


def uncommented(text: str) -> str:
    """The shipped file with every setting line switched on."""
    return "\n".join(line[1:] if SETTING_LINE.match(line) else line for line in text.splitlines())


def documented(text: str) -> dict[str, set[str]]:
    """Section -> the keys the file shows (commented out or not)."""
    found: dict[str, set[str]] = {}
    section = ""
    for line in uncommented(text).splitlines():
        if header := re.fullmatch(r"\[(\w+)\]", line.strip()):
            section = header[1]
            found[section] = set()
        elif key := re.match(r"^(\w+) = ", line):
            found[section].add(key[1])
    return found


def defaults(command: click.Command) -> dict[str, Any]:
    """What the command receives when nothing is given (call with no JB_* variables set)."""
    with command.make_context(command.name or "jb", [], resilient_parsing=True) as ctx:
        return dict(ctx.params)


def described(option: click.Option, default: Any) -> bool:
    """No value to show: no default (None), or one click describes in words ('CPU count')."""
    return default is None or isinstance(option.show_default, str)


def load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "jb.toml"
    path.write_text(text)
    return read(path, main)


def test_the_shipped_file_names_every_option_and_every_live_setting() -> None:
    shown = documented(SHIPPED.read_text())
    for section, options in sections(main).items():
        assert shown.get(section) == set(options), f"[{section}] must name exactly the options of its command"
    assert shown[CLUSTER] == set(Settings.names())
    assert set(shown) == {*sections(main), CLUSTER}
    for command in ("worker", "balancer", "web", "up"):  # the ones the brief of issue 7 names
        assert command in shown


def test_the_shipped_file_as_is_changes_nothing() -> None:
    loaded = read(SHIPPED, main)
    assert loaded.cluster == {}
    assert loaded.default_map == {name: {} for name in sections(main) if name != CONNECTION}


def test_every_default_the_shipped_file_shows_is_the_true_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("JB_")]:
        monkeypatch.delenv(name)
    loaded = load(tmp_path, uncommented(SHIPPED.read_text()))
    checked = 0
    for section, options in sections(main).items():
        command = main if section == CONNECTION else main.commands[section]
        values = loaded.default_map if section == CONNECTION else loaded.default_map[section]
        for key, option in options.items():
            default = defaults(command)[option.name]
            assert option.name in values, f"[{section}] {key} is not set by the uncommented file"
            if described(option, default):
                continue  # an example value; the comment says what the default is
            shown = tuple(values[option.name]) if option.multiple else values[option.name]
            assert shown == default, f"[{section}] {key}: the file shows {shown!r}, the default is {default!r}"
            checked += 1
    assert checked >= 25
    assert loaded.cluster == Settings().to_hash()


def test_keys_are_long_flags_and_land_under_click_parameter_names(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        """
        [connection]
        redis = "redis://db:6379/1"
        [worker]
        queue = ["a", "b"]
        shutdown_timeout = 5
        [balancer]
        scheduler = true
        [web]
        allow_host = ["jobs.example"]
        [up]
        workers = 0
        [cluster]
        heartbeat_timeout = 3
        policy = "p2c"
        """,
    )
    assert loaded.default_map["url"] == "redis://db:6379/1"
    assert loaded.default_map["worker"] == {"queues": ["a", "b"], "shutdown_timeout": 5}
    assert loaded.default_map["balancer"] == {"with_scheduler": True}
    assert loaded.default_map["web"] == {"extra_hosts": ["jobs.example"]}
    assert loaded.default_map["up"] == {"n_workers": 0}
    assert loaded.cluster == {"heartbeat_timeout": "3.0", "policy": "p2c"}
    assert loaded.path == tmp_path / "jb.toml"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[wokrer]\n", "unknown section [wokrer]; known sections: [connection], [worker], [balancer]"),
        ("redis = 'x'\n", "'redis' is outside any section; settings go under [connection], [worker]"),
        ("[cluster.policy]\n", "[cluster] policy: expected a string, got a table"),
        ("[worker]\nconcurency = 2\n", "unknown key 'concurency' in [worker]; known keys: name, concurrency"),
        ("[worker]\nconcurrency = '4'\n", "[worker] concurrency: expected an integer, got a string '4'"),
        ("[worker]\nconcurrency = true\n", "[worker] concurrency: expected an integer, got a boolean True"),
        ("[worker]\nconcurrency = 0\n", "[worker] concurrency: 0 is not in the range 1<=x<=1024"),
        ("[worker]\nheartbeat = '1s'\n", "[worker] heartbeat: expected a number, got a string '1s'"),
        ("[worker]\nqueue = 'gpu'\n", "[worker] queue: expected a list of strings"),
        ("[worker]\nqueue = ['gpu', 2]\n", "[worker] queue: expected a list of strings"),
        ("[worker]\nallow_root = 'yes'\n", "[worker] allow_root: expected true or false, got a string 'yes'"),
        ("[web]\nport = 70000\n", "[web] port: 70000 is not in the range 1<=x<=65535"),
        ("[connection]\nprefix = 'my jobs'\n", "[connection] prefix 'my jobs' must be non-empty and without spaces"),
        ("[connection]\nconfig = 'x.toml'\n", "unknown key 'config' in [connection]; known keys: redis, prefix"),
        ("[cluster]\nprefetsh = 1\n", "unknown key 'prefetsh' in [cluster]; known keys: policy, max_jobs_per_worker"),
        ("[cluster]\nprefetch = 1.5\n", "[cluster] prefetch: expected an integer, got a number 1.5"),
        ("[cluster]\nheartbeat_timeout = 0\n", "[cluster] heartbeat_timeout must be > 0, got 0.0"),
        ("[cluster]\npolicy = 3\n", "[cluster] policy: expected a string, got an integer 3"),
        ("[worker\n", "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 8)"),
    ],
)
def test_a_wrong_file_is_refused_naming_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigFileError) as raised:
        load(tmp_path, text)
    line = str(raised.value)
    assert line.startswith(f"{tmp_path / 'jb.toml'}: ")
    assert message in line
    assert "\n" not in line


def test_a_missing_or_binary_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"nope\.toml: cannot read the configuration file: No such file"):
        read(tmp_path / "nope.toml", main)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe[worker]")
    with pytest.raises(ConfigFileError, match=r"bin\.toml: not UTF-8 text"):
        read(binary, main)


def test_parse_takes_what_tomllib_gives() -> None:
    data = tomllib.loads("[scheduler]\ninterval = 2.5\nname = 's1'\n")
    loaded = parse(data, Path("/etc/jb.toml"), main)
    assert loaded.default_map == {"scheduler": {"interval": 2.5, "name": "s1"}}


def test_every_option_of_the_file_has_a_jb_environment_variable() -> None:
    names = {
        (section, key): option.envvar for section, options in sections(main).items() for key, option in options.items()
    }
    assert names[("connection", "redis")] == "JB_REDIS_URL"
    assert names[("connection", "prefix")] == "JB_PREFIX"
    assert names[("worker", "concurrency")] == "JB_WORKER_CONCURRENCY"
    assert names[("worker", "shutdown_timeout")] == "JB_WORKER_SHUTDOWN_TIMEOUT"
    assert names[("balancer", "policy")] == "JB_BALANCER_POLICY"
    assert names[("web", "port")] == "JB_WEB_PORT"
    assert names[("up", "web_port")] == "JB_UP_WEB_PORT"
    assert names[("up", "data_dir")] == "JB_DATA_DIR"
    assert {names[(s, "allow_root")] for s in ("worker", "web", "up")} == {"JB_ALLOW_ROOT"}
    for (section, key), envvar in names.items():
        assert isinstance(envvar, str) and envvar.startswith("JB_"), (section, key)


def test_seed_writes_only_what_the_cluster_does_not_have(caplog: pytest.LogCaptureFixture) -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    client.hset("p:config", mapping={"policy": "cpu", "prefetch": "2"})
    kept = seed(client, "p", {"policy": "p2c", "prefetch": "2", "kill_grace": "5.0"})
    assert kept == {"policy": "cpu"}
    assert client.hgetall("p:config") == {"policy": "cpu", "prefetch": "2", "kill_grace": "5.0"}
    assert "the configuration file sets policy = p2c, but the cluster has cpu" in caplog.text
    assert "jb config set policy p2c" in caplog.text
    assert seed(client, "p", {}) == {}
