"""Running a shell command job: ``/bin/sh -c <command>`` in its own session, output streamed live."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import IO

from jobbalancer.job import Spec, Status
from jobbalancer.worker.kill import kill_tree, signal_group
from jobbalancer.worker.output import Output
from jobbalancer.worker.running import Context, JobRun, Outcome, killed_outcome, supervise

# After the command exits, how long its output pipes may take to drain. Only a process that
# escaped the job's group (setsid) and still holds a pipe makes this wait run out.
DRAIN_S = 2.0
_READ_BYTES = 65536


def run_command(run: JobRun, spec: Spec, ctx: Context) -> Outcome | None:
    """Run a command job to its end.

    Returns:
        The outcome to record, or None when the job was killed to be handed back.
    """
    job = run.assignment
    out = ctx.output(job.id)
    if run.kill_reason is not None:  # cancelled (or the worker stopping) before it could start
        return killed_outcome(run, run.kill_reason, out)
    if spec.cwd and not os.path.isdir(spec.cwd):
        return Outcome.failed(f"cannot start command: cwd {spec.cwd!r} does not exist on this worker")
    env = {**os.environ, **spec.env, "JB_JOB_ID": job.id, "JB_ATTEMPT": job.attempt}
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", spec.command or ""],
            cwd=spec.cwd or None,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return Outcome.failed(f"cannot start command: {exc}")
    assert proc.stdout is not None and proc.stderr is not None
    ctx.guardian.watch(proc.pid)
    exited = threading.Event()
    readers = [_start(_pump, proc.stdout, 1, out), _start(_pump, proc.stderr, 2, out)]
    _start(_reap, proc, exited, run.wake)
    reason = supervise(run, exited, lambda: kill_tree(proc.pid, ctx.settings().kill_grace, exited))
    # A job is its process tree: whatever the command left running in its group goes with it.
    signal_group(proc.pid, signal.SIGKILL)
    ctx.guardian.forget(proc.pid)
    for reader in readers:
        reader.join(DRAIN_S)
    out.close()
    if reason is not None:
        return killed_outcome(run, reason, out)
    return _exit_outcome(proc.returncode, out)


def _exit_outcome(code: int, out: Output) -> Outcome:
    if code == 0:
        return Outcome(Status.SUCCEEDED, 0, stdout=out.stdout, stderr=out.stderr)
    if code < 0:
        return Outcome.failed(f"killed by signal {-code} ({signal_name(-code)})", 128 - code, out)
    return Outcome.failed(f"exit code {code}", code, out)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _start(target: Callable[..., None], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _pump(pipe: IO[bytes], fd: int, out: Output) -> None:
    """Copy one pipe into the job's output until end of file."""
    with pipe:
        while chunk := os.read(pipe.fileno(), _READ_BYTES):
            out.write_bytes(fd, chunk)
    out.end(fd)


def _reap(proc: subprocess.Popen[bytes], exited: threading.Event, wake: threading.Event) -> None:
    proc.wait()
    exited.set()
    wake.set()
