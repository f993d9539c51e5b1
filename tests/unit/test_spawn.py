"""Starting a command's process: posix_spawn for the usual case, Popen for the rest, the same result."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobbalancer.worker import spawn as spawning
from jobbalancer.worker.spawn import Process, job_environment, spawn
from tests.helpers import wait_for

# What the child reports about itself: its session, what it ignores, stdin, open descriptors, cwd.
REPORT = (
    'echo "sid $(cut -d" " -f6 /proc/$$/stat) pid $$"; grep ^SigIgn /proc/$$/status; '
    "readlink /proc/$$/fd/0; ls /proc/$$/fd; pwd; echo oops >&2; exit 7"
)


def read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()


def finish(proc: Process) -> tuple[int, str, str]:
    out, err = read_all(proc.stdout), read_all(proc.stderr)
    return proc.wait(), out, err


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def inherited() -> Iterator[int]:
    """A descriptor open and inheritable in this process, as one from whoever started a worker."""
    read_fd, write_fd = os.pipe()
    os.set_inheritable(write_fd, True)
    spawning._can_spawn.cache_clear()  # a worker looks once, before its first command
    yield write_fd
    os.close(read_fd)
    os.close(write_fd)


@pytest.mark.parametrize("cwd", [None, "/tmp"], ids=["posix_spawn", "popen (cwd)"])
def test_a_command_runs_alone_in_a_session_with_default_signals_and_only_its_pipes(
    cwd: str | None, inherited: int
) -> None:
    proc = spawn(["/bin/sh", "-c", REPORT], {"PATH": os.defpath}, cwd)
    assert (proc.popen is None) == (cwd is None)
    code, out, err = finish(proc)
    lines = out.splitlines()
    assert code == 7 and err == "oops\n" and lines[0] == f"sid {proc.pid} pid {proc.pid}"
    ignored = int(lines[1].split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)) and not ignored & (1 << (signal.SIGXFSZ - 1))
    assert lines[2] == "/dev/null"
    assert lines[3:-1] == ["0", "1", "2"]  # nothing of the worker's (Popen closes it, or it was sealed)
    assert os.get_inheritable(inherited) == (cwd is not None)
    assert lines[-1] == (cwd or os.getcwd())


def test_the_environment_is_exactly_the_one_given() -> None:
    env = {
        os.fsdecode(k): os.fsdecode(v)
        for k, v in job_environment({"A": "1", "B": "2"}, {"B": "3", "HOME": "/nowhere"}).items()
    }
    assert env["A"] == "1" and env["B"] == "3" and env["HOME"] == "/nowhere"
    assert {k: v for k, v in env.items() if k not in ("A", "B", "HOME")} == {
        k: v for k, v in os.environ.items() if k not in ("A", "B", "HOME")
    }


def test_the_environment_is_read_anew_for_each_command(monkeypatch: pytest.MonkeyPatch) -> None:
    job_environment()
    monkeypatch.setenv("JB_SPAWN_TEST", "later")
    code, out, _err = finish(spawn(["/usr/bin/env"], job_environment({"ONLY": "this"})))
    assert code == 0 and "JB_SPAWN_TEST=later" in out.splitlines() and "ONLY=this" in out.splitlines()
    code, out, _err = finish(spawn(["/usr/bin/env"], {"ONLY": "this", "É": "ü"}))
    assert code == 0 and sorted(out.splitlines()) == ["ONLY=this", "É=ü"]


def test_a_bare_program_name_is_looked_up_in_the_jobs_path(tmp_path: Path) -> None:
    program = tmp_path / "hello-jb"
    program.write_text("#!/bin/sh\necho hi from $0\n")
    program.chmod(0o755)
    proc = spawn(["hello-jb"], {"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert proc.popen is not None and finish(proc) == (0, f"hi from {program}\n", "")


@pytest.mark.parametrize("argv", [["/no/such/program"], ["no-such-program-jb"]])
def test_a_program_that_cannot_start_raises_and_leaves_nothing_open(argv: list[str]) -> None:
    before = open_fds()
    with pytest.raises(FileNotFoundError, match="No such file or directory"):
        spawn(argv, {"PATH": "/usr/bin:/bin"})
    assert open_fds() == before


def test_exit_by_signal_and_has_exited_without_reaping() -> None:
    proc = spawn(["/bin/sh", "-c", "exec sleep 30"], {"PATH": os.defpath})
    assert proc.poll() is None and not proc.has_exited()
    os.kill(proc.pid, signal.SIGTERM)
    wait_for(proc.has_exited, 5, what="the exit")
    assert proc.returncode is None and os.path.exists(f"/proc/{proc.pid}")  # a zombie until reaped
    assert finish(proc)[0] == -signal.SIGTERM and proc.poll() == -signal.SIGTERM
    began = time.monotonic()
    assert proc.wait() == -signal.SIGTERM and time.monotonic() - began < 1  # reaped once only
