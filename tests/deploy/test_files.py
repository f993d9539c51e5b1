"""The deployment files say what docs/deploy.md promises, and docker-compose accepts the compose file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from jobbalancer.cli.procs import worker as worker_command
from tests.deploy.specs import COMPOSE, UNITS, compose, unit
from tests.helpers import REPO

JB_SERVICES = {"balancer-1", "balancer-2", "worker", "web"}
UNIT_FILES = ["jobbalancer-balancer.service", "jobbalancer-web.service", "jobbalancer-worker@.service"]


def worker_shutdown_timeout() -> float:
    """`jb worker --shutdown-timeout`'s default: how long a stopping worker lets jobs finish."""
    (param,) = [p for p in worker_command.params if p.name == "shutdown_timeout"]
    return float(param.default)  # type: ignore[arg-type]


def seconds(duration: str) -> float:
    """Compose's ``40s`` / ``1m30s`` or systemd's plain seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s|ms)?", duration)
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "": 1}
    return sum(float(n) * scale[u] for n, u in parts)


def test_docker_compose_config_accepts_the_file() -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing: .ci/run installs Debian's docker-compose package")
        pytest.skip("docker-compose not installed (Debian: apt-get install docker-compose); CI runs this test")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JB_")}  # render the file's own defaults
    done = subprocess.run(
        [exe, "--project-directory", str(REPO), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    rendered = yaml.safe_load(done.stdout)
    assert set(rendered["services"]) == JB_SERVICES | {"redis"}
    for name in JB_SERVICES:
        svc = rendered["services"][name]
        assert svc["environment"]["JB_REDIS_URL"] == "redis://redis:6379/0", name
        assert svc["depends_on"] == {"redis": {"condition": "service_healthy"}}, name
    assert "127.0.0.1:8080:8080" in rendered["services"]["web"]["ports"][0]


def test_compose_redis_keeps_its_data_where_the_conf_says() -> None:
    redis = compose()["services"]["redis"]
    conf_dir = re.search(r"^dir (\S+)", (REPO / "conf" / "redis.conf").read_text(), re.M)
    assert conf_dir is not None
    # The conf's `dir` must exist before Redis reads it: the named volume is mounted there.
    assert f"redis-data:{conf_dir[1]}" in redis["volumes"]
    assert redis["working_dir"] == conf_dir[1]  # so the image's entrypoint chowns it to the redis user
    assert "./conf/redis.conf:/usr/local/etc/redis/redis.conf:ro" in redis["volumes"]
    assert redis["command"][:2] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert "redis-data" in compose()["volumes"]


def test_compose_workers_scale_and_drain() -> None:
    worker = compose()["services"]["worker"]
    # --scale worker=N needs containers without a fixed name or host port, and a name per process.
    assert not {"container_name", "ports", "hostname"} & set(worker)
    assert "--name" not in worker["command"]
    assert seconds(worker["stop_grace_period"]) > worker_shutdown_timeout()


@pytest.mark.parametrize("name", UNIT_FILES)
def test_units_run_unprivileged_and_restart(name: str) -> None:
    service = unit(name)["Service"]
    assert service["User"] == "jobbalancer"
    assert service["EnvironmentFile"] == "/etc/jobbalancer/env"
    assert service["Restart"] == "on-failure"
    # SIGTERM to jb itself, not to every process (every running job) of the cgroup at once.
    assert service["KillMode"] == "mixed"
    assert service["KillSignal"] == "SIGTERM"
    assert unit(name)["Install"]["WantedBy"] == "multi-user.target"


def test_worker_unit_waits_for_jobs_to_drain() -> None:
    service = unit("jobbalancer-worker@.service")["Service"]
    assert "--name %i" in service["ExecStart"]
    assert seconds(service["TimeoutStopSec"]) > worker_shutdown_timeout()


def test_env_example_sets_what_the_units_read() -> None:
    keys = set(re.findall(r"^#?(JB_\w+)=", (UNITS / "env.example").read_text(), re.M))
    assert {"JB_REDIS_URL", "JB_PREFIX", "JB_WEB_TOKEN"} <= keys


def test_dockerfile_copies_what_exists_and_drops_root() -> None:
    lines = [line.split() for line in (REPO / "Dockerfile").read_text().splitlines() if line and line[0] != "#"]
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line[:1] not in "#"}
    sources = [src for words in lines if words[0] == "COPY" for src in words[1:-1]]
    assert {"pyproject.toml", "README.md", "jobbalancer", "workers"} <= set(sources)
    for src in sources:
        assert (REPO / src).exists(), src
        assert src not in ignored, f"{src} is copied but .dockerignore leaves it out of the build context"
    users = [words[1] for words in lines if words[0] == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must run as an unprivileged user"
