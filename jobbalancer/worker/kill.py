"""The one way a job is killed (watchdog, cancel, shutdown): its whole process tree goes.

Every job process leads its own session and process group (``start_new_session``), so the group
catches everything it started that stayed in the group. A descendant that called ``setsid`` left
the group; it is caught because the tree is remembered right before the first signal. A process
that also left the tree (``setsid`` plus a double fork: its parent exited, init adopted it) is
found by the marker every command job carries in its environment (``JB_JOB_ID``, ``JB_ATTEMPT``),
which it inherited and kept. A process that also cleared its environment is found where the job
has a cgroup (``cgroup.py``): everything in it gets the SIGTERM, and ``cgroup.kill`` the SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import psutil

from jobbalancer.worker.cgroup import JobCgroup

# How often the grace period looks again at remembered descendants: they are not our children,
# so there is nothing to wait on but their presence.
_POLL_S = 0.02


MARK = ("JB_JOB_ID", "JB_ATTEMPT")


def job_mark(pid: int) -> tuple[str, ...] | None:
    """The job marker in the environment ``pid`` started with, or None (gone, or not a job)."""
    try:
        env = psutil.Process(pid).environ()
    except psutil.Error:
        return None
    mark = tuple(env.get(name, "") for name in MARK)
    return mark if all(mark) else None


def marked(mark: tuple[str, ...]) -> list[psutil.Process]:
    """Every live process whose environment carries ``mark``: a job's processes, in its tree or not."""
    found = []
    for process in psutil.process_iter():
        try:
            env = process.environ()
        except psutil.Error:  # gone, a zombie, or another user's
            continue
        if tuple(env.get(name, "") for name in MARK) == mark:
            found.append(process)
    return found


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of ``pid``, and every process carrying its job marker (empty when gone)."""
    try:
        found = {p.pid: p for p in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return []
    mark = job_mark(pid)
    if mark is not None:
        for process in marked(mark):
            if process.pid != pid:
                found.setdefault(process.pid, process)
    return list(found.values())


def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to a process group; a group that is already empty is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _left_group(process: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(process.pid) != pgid
    except OSError:
        return False


def _in_cgroup(cgroup: JobCgroup | None, known: set[int]) -> list[psutil.Process]:
    """The processes of ``cgroup`` whose pid is not in ``known``: those that escaped tree and marker."""
    if cgroup is None:
        return []
    found = []
    for pid in cgroup.pids():
        if pid not in known:
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(pid))
    return found


def kill_tree(pid: int, grace_s: float, exited: threading.Event, cgroup: JobCgroup | None = None) -> None:
    """Kill the process group led by ``pid`` and every process it had started.

    SIGTERM first (the group, and remembered descendants that left it), then, once ``grace_s``
    has passed or everything is gone, SIGKILL for the group and every remembered descendant.

    Args:
        pid: the job's process, leader of its own process group.
        grace_s: seconds between SIGTERM and SIGKILL.
        exited: set when ``pid`` has exited and been reaped (by whoever waits on it).
        cgroup: the job's cgroup, if it has one: its processes count as descendants, and it is
            killed whole (``cgroup.kill``) with the SIGKILL.
    """
    remembered = descendants(pid)
    remembered += _in_cgroup(cgroup, {pid, *(p.pid for p in remembered)})
    signal_group(pid, signal.SIGTERM)
    for process in remembered:
        if _left_group(process, pid):
            with contextlib.suppress(psutil.Error):  # psutil checks the pid was not reused meanwhile
                process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    exited.wait(grace_s)
    while any(_alive(p) for p in remembered) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    signal_group(pid, signal.SIGKILL)
    if cgroup is not None:
        cgroup.kill()
    for process in remembered:
        with contextlib.suppress(psutil.Error):
            process.kill()
