"""``jb --config FILE`` and ``JB_CONFIG`` end to end: flag beats environment beats file beats default, for
the Redis URL and an option of every long-running command; a wrong file starts nothing; and a balancer
seeds the file's ``[cluster]`` settings without undoing live changes."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

import jobbalancer.cli.procs as procs
import jobbalancer.web.serve as serve
from jobbalancer.cli import main
from tests.helpers import REPO, stop_processes, wait_for

Seen = dict[str, dict[str, Any]]
schedule = importlib.import_module("jobbalancer.cli.schedule")  # `jobbalancer.cli.schedule` the name is the group


SEEN: Seen = {}  # what each command handed to the process it would run, recorded instead of running it


class FakeWorker:
    name = "fake"

    def __init__(self, url: str, prefix: str, **kwargs: Any) -> None:
        SEEN["worker"] = {"url": url, "prefix": prefix, **kwargs}

    def install_signal_handlers(self) -> None:
        pass

    def run(self) -> None:
        pass


class FakeBalancer:
    def __init__(self, url: str, prefix: str, **kwargs: Any) -> None:
        SEEN["balancer"] = {"url": url, "prefix": prefix, **kwargs}
        self.leading = threading.Event()

    def run(self) -> None:
        pass


class FakeCluster:
    def __init__(self, url: str, prefix: str, workers: int, *_args: Any, **kwargs: Any) -> None:
        SEEN["up"] = {"url": url, "prefix": prefix, "workers": workers, **kwargs}

    def run(self) -> int:
        return 0


class FakeSchedulerLoop:
    def __init__(self, url: str, prefix: str, **kwargs: Any) -> None:
        SEEN["scheduler"] = {"url": url, "prefix": prefix, **kwargs}

    def run(self, stop: threading.Event) -> None:
        pass


def fake_serve(url: str, prefix: str, token: str, **kwargs: Any) -> None:
    SEEN["web"] = {"url": url, "prefix": prefix, **kwargs}


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Seen:
    SEEN.clear()
    monkeypatch.setattr(procs, "Worker", FakeWorker)
    monkeypatch.setattr(procs, "Balancer", FakeBalancer)
    monkeypatch.setattr(procs, "Cluster", FakeCluster)
    monkeypatch.setattr(schedule, "SchedulerLoop", FakeSchedulerLoop)
    monkeypatch.setattr(serve, "serve", fake_serve)
    monkeypatch.setattr(signal, "signal", lambda *_args: None)  # the commands' handlers must not outlive the test
    return SEEN


@dataclass(frozen=True)
class Case:
    """One option, set at each level: ``[section] key`` in the file, ``envvar``, and a flag."""

    command: str
    section: str
    key: str
    envvar: str
    file_value: str  # as TOML
    env_value: str
    flag: tuple[str, ...]  # root flags go before the command, the others after it
    read: Callable[[Seen], Any]
    default: Any
    from_file: Any
    from_env: Any
    from_flag: Any


CASES = [
    Case("worker", "connection", "redis", "JB_REDIS_URL", '"redis://file:6379/0"', "redis://env:6379/0",
         ("--redis", "redis://flag:6379/0"), lambda s: s["worker"]["url"],
         "redis://127.0.0.1:6379/0", "redis://file:6379/0", "redis://env:6379/0", "redis://flag:6379/0"),
    Case("worker", "connection", "prefix", "JB_PREFIX", '"pfile"', "penv", ("--prefix", "pflag"),
         lambda s: s["worker"]["prefix"], "jb", "pfile", "penv", "pflag"),
    Case("worker", "worker", "concurrency", "JB_WORKER_CONCURRENCY", "3", "5", ("--concurrency", "7"),
         lambda s: s["worker"]["concurrency"], os.cpu_count() or 2, 3, 5, 7),
    Case("worker", "worker", "queue", "JB_WORKER_QUEUE", '["f1", "f2"]', "e1 e2", ("--queue", "q1"),
         lambda s: tuple(s["worker"]["queues"]), ("default",), ("f1", "f2"), ("e1", "e2"), ("q1",)),
    Case("balancer", "balancer", "policy", "JB_BALANCER_POLICY", '"p2c"', "cpu", ("--policy", "random"),
         lambda s: s["balancer"]["policy"], None, "p2c", "cpu", "random"),
    Case("web", "web", "port", "JB_WEB_PORT", "8101", "8102", ("--port", "8103"),
         lambda s: s["web"]["port"], 8080, 8101, 8102, 8103),
    Case("up", "up", "workers", "JB_UP_WORKERS", "0", "1", ("--workers", "3"),
         lambda s: s["up"]["workers"], 2, 0, 1, 3),
    Case("scheduler", "scheduler", "interval", "JB_SCHEDULER_INTERVAL", "2.0", "3", ("--interval", "4"),
         lambda s: s["scheduler"]["interval_s"], 1.0, 2.0, 3.0, 4.0),
]  # fmt: skip


def invoke(root: list[str], command: list[str], env: dict[str, str | None]) -> Result:
    clean: dict[str, str | None] = {name: None for name in os.environ if name.startswith("JB_")}
    clean["JB_ALLOW_ROOT"] = "1"  # the suite runs as root
    return CliRunner().invoke(main, [*root, *command], env={**clean, **env})


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.section}.{c.key}")
def test_flag_beats_env_beats_file_beats_default(case: Case, seen: Seen, tmp_path: Path) -> None:
    config = tmp_path / "jb.toml"
    config.write_text(f"[{case.section}]\n{case.key} = {case.file_value}\n")
    root_flag = case.section == "connection"
    flag_root, flag_command = (list(case.flag), []) if root_flag else ([], list(case.flag))
    levels = [
        ([], [], {}, case.default),
        (["--config", str(config)], [], {}, case.from_file),
        ([], [], {"JB_CONFIG": str(config), case.envvar: case.env_value}, case.from_env),
        (["--config", str(config), *flag_root], flag_command, {case.envvar: case.env_value}, case.from_flag),
    ]
    for root, extra, env, expected in levels:
        seen.clear()
        outcome = invoke(root, [case.command, *extra], env)
        assert outcome.exit_code == 0, outcome.output
        assert case.read(seen) == expected, (root, extra, env)


def test_a_wrong_file_is_one_line_exit_2_and_nothing_starts(seen: Seen, tmp_path: Path) -> None:
    config = tmp_path / "jb.toml"
    config.write_text("[worker]\nconcurrency = 'four'\n")
    for command in ("worker", "balancer", "web", "up", "scheduler", "status"):
        outcome = invoke(["--config", str(config)], [command, "x"] if command == "status" else [command], {})
        assert outcome.exit_code == 2, command
        assert outcome.stderr == (
            f"jb: error: {config}: [worker] concurrency: expected an integer, got a string 'four'\n"
        ), command
    via_env = invoke([], ["worker"], {"JB_CONFIG": str(tmp_path / "missing.toml")})
    assert via_env.exit_code == 2
    assert via_env.stderr.startswith(f"jb: error: {tmp_path / 'missing.toml'}: cannot read the configuration file")
    assert seen == {}


def test_the_file_is_read_by_every_command_for_the_connection(
    redis_url: str, prefix: str, r: redis.Redis, tmp_path: Path
) -> None:
    config = tmp_path / "jb.toml"
    config.write_text(f'[connection]\nredis = "{redis_url}"\nprefix = "{prefix}"\n')
    outcome = invoke(["--config", str(config)], ["config", "set", "prefetch", "5"], {})
    assert outcome.exit_code == 0, outcome.output
    assert r.hget(f"{prefix}:config", "prefetch") == "5"


# Real processes against the real Redis: what a user running `jb` from a shell gets.


def jb(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("JB_")}
    return subprocess.Popen(
        [sys.executable, "-m", "jobbalancer", *args],
        env={**clean, "JB_ALLOW_ROOT": "1", **(env or {})},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def procs_started() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    stop_processes(started)
    for proc in started:
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_a_worker_process_takes_the_file_and_the_environment_over_it(
    redis_url: str, prefix: str, r: redis.Redis, tmp_path: Path, procs_started: list[subprocess.Popen[bytes]]
) -> None:
    config = tmp_path / "jb.toml"
    config.write_text(
        f'[connection]\nredis = "{redis_url}"\nprefix = "{prefix}"\n'
        '[worker]\nname = "from-file"\nconcurrency = 2\nqueue = ["cfgq", "other"]\nheartbeat = 0.2\n'
    )
    procs_started.append(jb("worker", env={"JB_CONFIG": str(config), "JB_WORKER_CONCURRENCY": "3"}))
    facts = wait_for(lambda: r.hgetall(f"{prefix}:w:from-file"), timeout=30, what="the worker named in the file")
    assert facts["slots"] == "3"  # the environment beats the file
    assert facts["queues"] == "cfgq,other"


def test_a_balancer_seeds_the_cluster_section_and_keeps_live_values(
    redis_url: str, prefix: str, r: redis.Redis, tmp_path: Path, procs_started: list[subprocess.Popen[bytes]]
) -> None:
    r.hset(f"{prefix}:config", "prefetch", "1")  # set live earlier, e.g. with `jb config set prefetch 1`
    config = tmp_path / "jb.toml"
    config.write_text(
        f'[connection]\nredis = "{redis_url}"\nprefix = "{prefix}"\n[balancer]\nname = "cfg-balancer"\n'
        '[cluster]\npolicy = "p2c"\nprefetch = 7\nkill_grace = 4\n'
    )
    balancer = jb("--config", str(config), "balancer")
    procs_started.append(balancer)
    wait_for(lambda: (r.get(f"{prefix}:leader") or "").endswith(":cfg-balancer"), timeout=30, what="the lease")
    assert r.hgetall(f"{prefix}:config") == {"policy": "p2c", "prefetch": "1", "kill_grace": "4.0"}
    stop_processes([balancer])
    assert balancer.stderr is not None
    logged = balancer.stderr.read().decode()
    assert "the configuration file sets prefetch = 7, but the cluster has 1 (set live); keeping it" in logged


def test_a_balancer_refuses_a_cluster_policy_that_does_not_load(
    redis_url: str, prefix: str, r: redis.Redis, tmp_path: Path
) -> None:
    config = tmp_path / "jb.toml"
    config.write_text(f'[connection]\nredis = "{redis_url}"\nprefix = "{prefix}"\n[cluster]\npolicy = "nope"\n')
    done = subprocess.run(
        [sys.executable, "-m", "jobbalancer", "--config", str(config), "balancer"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "JB_ALLOW_ROOT": "1"},
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"jb: error: {config}: [cluster] policy 'nope' is unknown")
    assert r.exists(f"{prefix}:config", f"{prefix}:leader") == 0


def test_jb_up_hands_the_file_to_its_workers_and_balancer(
    redis_url: str, prefix: str, r: redis.Redis, tmp_path: Path, procs_started: list[subprocess.Popen[bytes]]
) -> None:
    config = tmp_path / "jb.toml"
    config.write_text(
        f'[connection]\nredis = "{redis_url}"\nprefix = "{prefix}"\n[up]\nworkers = 1\nno_web = true\n'
        '[worker]\nqueue = ["from-file"]\nconcurrency = 2\n[cluster]\nmax_jobs_per_worker = 9\n'
    )
    procs_started.append(jb("--config", str(config), "up"))
    names = wait_for(lambda: r.zrange(f"{prefix}:workers", 0, -1), timeout=60, what="jb up's worker")
    assert len(names) == 1
    facts = r.hgetall(f"{prefix}:w:{names[0]}")
    assert (facts["queues"], facts["slots"]) == ("from-file", "2")
    assert wait_for(lambda: r.hget(f"{prefix}:config", "max_jobs_per_worker"), timeout=30) == "9"
