"""The argv form runs a program without a shell; the worker refuses root unless allowed."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobbalancer import Client, InvalidJob
from jobbalancer.cli import main
from tests.e2e.conftest import FAST, Cluster


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    prefix = f"a{uuid.uuid4().hex[:10]}"
    client = Client(redis_url, prefix)
    client.redis.hset(f"{prefix}:config", mapping=FAST)
    the_cluster = Cluster(redis_url, prefix, tmp_path, client)
    the_cluster.balancer()
    the_cluster.worker("w1", 2)
    yield the_cluster
    the_cluster.stop()
    client.close()


def test_argv_arguments_stay_literal_from_the_cli_and_the_api(cluster: Cluster, tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    hostile = f"x; touch {pwned}; $(touch {pwned}) `touch {pwned}` | tee {pwned} && echo $HOME"
    done = cluster.jb("submit", "--wait", "--argv", "--", "printf", "%s\\n", hostile)
    assert (done.returncode, done.stdout) == (0, hostile + "\n")
    job = cluster.client.submit(["printf", "[%s]", "a b", "*", "$X"], env={"X": "not expanded"})
    assert job.result(timeout=20) == "[a b][*][$X]"
    wire = {"argv": ["printf", "[%s]", "a b", "*", "$X"], "env": {"X": "not expanded"}}
    assert cluster.client.record(job.id).spec == wire
    assert not pwned.exists()
    # The same text as a shell command is a shell command: that is what --argv is for.
    shell = cluster.jb("submit", "--wait", f"echo {hostile}")
    assert shell.returncode == 0 and pwned.exists()


def test_argv_for_a_missing_program_fails_with_the_reason(cluster: Cluster) -> None:
    job = cluster.client.submit(["/no/such/program", "arg"])
    record = job.wait(20)
    assert record.status.value == "failed" and "cannot start command" in (record.error or "")
    assert "No such file or directory" in (record.error or "")


def test_argv_is_checked_at_submit(cluster: Cluster) -> None:
    for bad in ([], [""], ["echo", 5], ["echo", "nul\x00byte"]):
        with pytest.raises(InvalidJob, match="argv"):
            cluster.client.submit(bad)  # type: ignore[arg-type]
    two = cluster.jb("submit", "echo", "hi")
    assert two.returncode == 2 and "--argv" in two.stderr


def test_the_worker_refuses_to_run_as_root_without_permission(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("JB_ALLOW_ROOT", raising=False)
    refused = CliRunner().invoke(main, ["--redis", redis_url, "worker", "--name", "root-test"])
    assert refused.exit_code == 1
    assert refused.stderr.startswith("jb: error: refusing to run jobs as root")
    assert "--allow-root" in refused.stderr and "JB_ALLOW_ROOT=1" in refused.stderr
