"""Running a command job: ``/bin/sh -c <command>`` (or its ``argv``, without a shell) in its own
session, and its own cgroup where the worker may create one (``cgroup.py``), output streamed live."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess

from jobbalancer.job import Spec, Status
from jobbalancer.worker.cgroup import JobCgroup
from jobbalancer.worker.follow import FOLLOWER
from jobbalancer.worker.kill import kill_tree, signal_group
from jobbalancer.worker.output import Output
from jobbalancer.worker.running import Context, JobRun, Outcome, killed_outcome, supervise
from jobbalancer.worker.spawn import Process, job_environment, spawn

# After the command exits, how long its output pipes may take to drain. Only a process that
# escaped the job's group (setsid) and still holds a pipe makes this wait run out.
DRAIN_S = 2.0

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
    env = job_environment(spec.env, {"JB_JOB_ID": job.id, "JB_ATTEMPT": job.attempt})
    cgroup = ctx.guardian.cgroup_for(ctx.worker)  # None where the worker may not create cgroups
    try:
        proc = _start(spec, env, cgroup)
    except (OSError, subprocess.SubprocessError) as exc:
        ctx.guardian.release_cgroup(cgroup)
        return Outcome.failed(f"cannot start command: {exc}")
    ctx.guardian.watch(proc.pid)
    followed = FOLLOWER.follow(proc, out, run.wake)
    exited, killed = followed.exited, list[bool]()  # killed: not empty once kill() signalled it

    def kill() -> None:
        if not proc.has_exited():  # else it ended by itself: only the follower has not seen it yet
            killed.append(True)
            kill_tree(proc.pid, ctx.settings().kill_grace, exited, cgroup)

    reason = supervise(run, exited, kill)
    if not killed:
        reason = None
    # A job is its process tree, and its cgroup: whatever the command left running goes with it,
    # also when it exited by itself (like systemd's KillMode=control-group, minus the SIGTERM).
    signal_group(proc.pid, signal.SIGKILL)
    left = ctx.guardian.release_cgroup(cgroup)
    if left and reason is None:
        log.info("job %s exited leaving %d process(es) in its cgroup: killed", job.id, left)
    ctx.guardian.forget(proc.pid)
    followed.drained.wait(DRAIN_S)
    out.close()
    if reason is not None:
        return killed_outcome(run, reason, out)
    assert proc.returncode is not None  # the follower reaped it before it set ``exited``
    return _exit_outcome(proc.returncode, out)


def _start(spec: Spec, env: dict[bytes, bytes], cgroup: JobCgroup | None) -> Process:
    """Start the command in a session of its own and, when it has one, in its cgroup.

    A shell command's shell enters the cgroup itself (fast); a program run without a shell is put
    in it between fork and exec (``preexec_fn``, slower): see ``JobCgroup``.
    """
    if not spec.argv:
        script = spec.command or ""
        if cgroup is not None:
            script = cgroup.shell_prefix() + script
        return spawn(["/bin/sh", "-c", script], env, spec.cwd or None)
    entering = cgroup.entering() if cgroup is not None else contextlib.nullcontext(None)
    with entering as preexec:
        return spawn(list(spec.argv), env, spec.cwd or None, preexec)  # argv: no shell at all


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
