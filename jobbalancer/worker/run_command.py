"""Running a command job: ``/bin/sh -c <command>`` (or its ``argv``, without a shell) in its own
session, and its own cgroup where the worker may create one (``cgroup.py``), output streamed live."""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import threading

from jobbalancer.job import Spec, Status
from jobbalancer.worker.cgroup import JobCgroup
from jobbalancer.worker.kill import kill_tree, signal_group
from jobbalancer.worker.output import Output
from jobbalancer.worker.running import Context, JobRun, Outcome, killed_outcome, supervise

# After the command exits, how long its output pipes may take to drain. Only a process that
# escaped the job's group (setsid) and still holds a pipe makes this wait run out.
DRAIN_S = 2.0
_READ_BYTES = 65536
EXIT_POLL_S = 0.05  # how soon an exit is noticed while an escaped process keeps a pipe open

log = logging.getLogger("jobbalancer.worker")


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
    cgroup = ctx.guardian.cgroup_for(ctx.worker)  # None where the worker may not create cgroups
    try:
        proc = _start(spec, env, cgroup)
    except (OSError, subprocess.SubprocessError) as exc:
        ctx.guardian.release_cgroup(cgroup)
        return Outcome.failed(f"cannot start command: {exc}")
    assert proc.stdout is not None and proc.stderr is not None
    ctx.guardian.watch(proc.pid)
    exited = threading.Event()
    follower = threading.Thread(target=_follow, args=(proc, out, exited, run.wake), daemon=True)
    follower.start()
    reason = supervise(run, exited, lambda: kill_tree(proc.pid, ctx.settings().kill_grace, exited, cgroup))
    # A job is its process tree, and its cgroup: whatever the command left running goes with it,
    # also when it exited by itself (like systemd's KillMode=control-group, minus the SIGTERM).
    signal_group(proc.pid, signal.SIGKILL)
    left = ctx.guardian.release_cgroup(cgroup)
    if left and reason is None:
        log.info("job %s exited leaving %d process(es) in its cgroup: killed", job.id, left)
    ctx.guardian.forget(proc.pid)
    follower.join(DRAIN_S)
    out.close()
    if reason is not None:
        return killed_outcome(run, reason, out)
    return _exit_outcome(proc.returncode, out)


def _start(spec: Spec, env: dict[str, str], cgroup: JobCgroup | None) -> subprocess.Popen[bytes]:
    """Start the command in a session of its own and, when it has one, in its cgroup.

    A shell command's shell enters the cgroup itself (fast); a program run without a shell is put
    in it between fork and exec (``preexec_fn``, slower): see ``JobCgroup``.
    """
    script = spec.command or ""
    if cgroup is not None and not spec.argv:
        script = cgroup.shell_prefix() + script
    entering = cgroup.entering() if cgroup is not None and spec.argv else contextlib.nullcontext(None)
    with entering as preexec:
        return subprocess.Popen(
            list(spec.argv) if spec.argv else ["/bin/sh", "-c", script],  # argv: no shell at all
            cwd=spec.cwd or None,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=preexec,  # takes no lock, so safe with threads: see JobCgroup.entering
        )


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


def _follow(proc: subprocess.Popen[bytes], out: Output, exited: threading.Event, wake: threading.Event) -> None:
    """Copy both pipes into the job's output until end of file, and reap the process.

    One thread per job does it all. ``exited`` is set once the process is reaped, or as soon as
    it has exited while something it left behind (``setsid``) still holds a pipe open.
    """
    assert proc.stdout is not None and proc.stderr is not None
    pipes = {proc.stdout.fileno(): 1, proc.stderr.fileno(): 2}
    with selectors.DefaultSelector() as selector:
        for fd in pipes:
            selector.register(fd, selectors.EVENT_READ)
        while pipes:
            for key, _events in selector.select(None if exited.is_set() else EXIT_POLL_S):
                chunk = os.read(key.fd, _READ_BYTES)
                if chunk:
                    out.write_bytes(pipes[key.fd], chunk)
                else:
                    selector.unregister(key.fd)
                    out.end(pipes.pop(key.fd))
            if not exited.is_set() and proc.poll() is not None:
                exited.set()
                wake.set()
    proc.stdout.close()
    proc.stderr.close()
    proc.wait()
    exited.set()
    wake.set()
