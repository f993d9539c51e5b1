"""`jb up` runs a whole cluster with an embedded Redis, and Ctrl-C stops all of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from jobbalancer.server import answers
from tests.helpers import REPO, free_port, wait_for


def test_up_runs_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    base = [sys.executable, "-m", "jobbalancer", "--redis", url, "--prefix", "up"]
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    up = subprocess.Popen(
        [*base, "up", "--workers", "2", "--concurrency", "1", "--data-dir", str(tmp_path / "data"), "--no-web"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        status = [*base, "workers", "--json"]

        def two_workers() -> bool:
            out = subprocess.run(status, capture_output=True, text=True, cwd=REPO)
            return out.returncode == 0 and out.stdout.count('"state": "running"') == 2

        wait_for(two_workers, 30, interval=0.2, what="jb up's two workers")
        children = psutil.Process(up.pid).children()
        hi = subprocess.run([*base, "submit", "echo hi", "--wait"], capture_output=True, text=True, timeout=30)
        assert (hi.returncode, hi.stdout) == (0, "hi\n")
        up.send_signal(signal.SIGINT)
        assert up.wait(40) == 0
    finally:
        if up.poll() is None:
            up.kill()
        log.close()
    assert not answers(url), "the embedded Redis must stop with jb up"
    assert len(children) == 4  # redis-server, balancer, two workers
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert (tmp_path / "data").is_dir() and any((tmp_path / "data").rglob("appendonly*"))
    assert "all stopped" in (tmp_path / "up.log").read_text()
