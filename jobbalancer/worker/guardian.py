"""The guardian: a sidecar process that kills a worker's jobs when the worker dies, however it dies.

A job leads its own session, so nothing ties it to the worker: SIGKILL the worker and its jobs
would run on while a balancer re-runs them elsewhere. The guardian holds the read end of a pipe
whose only write end is in the worker. The worker writes ``+<pgid>`` when a job process (or a
call child) starts and ``-<pgid>`` when it is gone. End of file means the worker is gone: the
guardian kills every group still listed and every descendant of their leaders, including those
that left the group with ``setsid``, and every process carrying a command job's environment
marker (see ``kill.py``), so a process whose parent has already exited (a double fork) is caught
too; it also looks at the trees twice a second while jobs run. Then it exits.

Where the worker may create cgroups (``cgroup.py``), each command job runs in one, and the worker
writes ``+<path>`` when it creates one and ``-<path>`` once it removes it (an emptied cgroup is
reused for the worker's next job, so it stays listed between jobs, empty); at end of file
the guardian writes ``1`` to every listed cgroup's ``cgroup.kill`` and removes it, which catches a
process that left the tree and cleared its environment too. The worker's side holds the cgroup
root (``Guardian.cgroups``), found when it starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from jobbalancer.worker.cgroup import Cgroups, JobCgroup
from jobbalancer.worker.kill import job_mark, marked

log = logging.getLogger("jobbalancer.worker")

LOOK_EVERY_S = 0.5
BATCH_S = 0.02
ENTRY = "import sys; from jobbalancer.worker.guardian import main; main(sys.argv[1])"


class Guardian:
    """The worker's side: starts the sidecar and tells it which process groups and cgroups are jobs."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.cgroups: Cgroups | None = None  # where job cgroups go; None: none are used
        self._write_fd: int | None = None
        self._lock = threading.Lock()
        self._idle: list[JobCgroup] = []  # empty job cgroups, listed with the sidecar, for the next jobs

    def start(self) -> None:
        self.cgroups = Cgroups.discover()
        read_fd, write_fd = os.pipe()  # both ends close-on-exec: no job inherits the write end
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", ENTRY, str(read_fd)],
                stdin=subprocess.DEVNULL,
                pass_fds=(read_fd,),
                start_new_session=True,  # a Ctrl-C for the worker's terminal is not for the guardian
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        self._write_fd = write_fd

    def watch(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

    def cgroup_for(self, worker: str) -> JobCgroup | None:
        """An empty cgroup for a job, listed with the sidecar; None when cgroups are not used.

        A cgroup a finished job left empty is reused (a pool, as large as the most jobs that ran
        at once): that saves a mkdir, an rmdir and two messages to the sidecar per job.
        """
        with self._lock:
            if self._idle:
                return self._idle.pop()
        cgroup = None if self.cgroups is None else self.cgroups.create(worker)
        if cgroup is not None:
            self._send(f"+{cgroup.path}\n")
        return cgroup

    def release_cgroup(self, cgroup: JobCgroup | None) -> int:
        """Kill what a job left in its cgroup; keep the emptied cgroup for the next job, or, if it
        will not come clean, remove and unlist it.

        Returns:
            How many processes were still in it.
        """
        if cgroup is None:
            return 0
        left, fresh = cgroup.clear()
        if fresh:
            with self._lock:
                if self._write_fd is not None:  # not once closing: then every cgroup goes
                    self._idle.append(cgroup)
                    return left
        cgroup.remove()
        self._send(f"-{cgroup.path}\n")
        return left

    def _send(self, line: str) -> None:
        with self._lock:
            if self._write_fd is None:
                return
            try:
                os.write(self._write_fd, line.encode())
            except OSError as exc:
                log.warning("the job guardian is gone (%s); jobs would outlive a killed worker", exc)

    def close(self) -> None:
        """Close the pipe (the guardian kills what is still listed) and wait for it to exit; remove
        the idle cgroups (the guardian does too, unless it is gone)."""
        with self._lock:
            if self._write_fd is not None:
                os.close(self._write_fd)
                self._write_fd = None
            idle, self._idle = self._idle, []
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for cgroup in idle:
            cgroup.remove()


def _children_files() -> bool:
    """True if the kernel lists each thread's children in ``/proc/<pid>/task/<tid>/children``."""
    return os.path.exists(f"/proc/self/task/{threading.get_native_id()}/children")


def descendant_pids(pid: int) -> list[int]:
    """The pids of every descendant of ``pid`` (none once it is gone), from the ``children`` files.

    Reads one file per thread in the tree, where psutil reads every process on the host: the tree
    of each job is looked at twice a second, and most trees are one process, or none any more.
    """
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:  # gone
            continue
        for tid in tids:
            with contextlib.suppress(OSError), open(f"/proc/{parent}/task/{tid}/children", "rb") as file:
                kids = [int(kid) for kid in file.read().split()]
                found += kids
                todo += kids
    return found


def _remember(groups: dict[int, dict[int, psutil.Process]], children_files: bool) -> None:
    for pgid, seen in groups.items():
        if not children_files:  # (an old or unusual kernel)
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(pgid).children(recursive=True):
                    seen.setdefault(child.pid, child)
            continue
        for pid in descendant_pids(pgid):
            if pid not in seen:
                with contextlib.suppress(psutil.Error):  # gone meanwhile
                    seen[pid] = psutil.Process(pid)


def _remember_marked(groups: dict[int, dict[int, psutil.Process]]) -> None:
    """Add the processes carrying a job's environment marker: a double fork took them out of its tree."""
    for pgid, seen in groups.items():
        mark = job_mark(pgid)
        if mark is not None:
            for process in marked(mark):
                seen.setdefault(process.pid, process)


def _kill_all(groups: dict[int, dict[int, psutil.Process]]) -> None:
    for pgid, seen in groups.items():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        for process in seen.values():
            with contextlib.suppress(psutil.Error):  # psutil refuses a pid that was reused meanwhile
                process.kill()


def _note(line: bytes, groups: dict[int, dict[int, psutil.Process]], cgroups: set[str]) -> None:
    """Apply one message: ``+``/``-`` and a process group id, or a cgroup's absolute path."""
    what = line[1:].decode()
    if what.startswith("/"):
        (cgroups.add if line.startswith(b"+") else cgroups.discard)(what)
    elif line.startswith(b"+"):
        groups[int(what)] = {}
    else:
        groups.pop(int(what), None)


def guard(read_fd: int) -> None:
    """Follow the worker's messages until end of file, then kill every group and cgroup still listed."""
    groups: dict[int, dict[int, psutil.Process]] = {}
    cgroups: set[str] = set()
    pending = b""
    next_look = time.monotonic()
    children_files = _children_files()
    with selectors.DefaultSelector() as selector:
        selector.register(read_fd, selectors.EVENT_READ)
        while True:
            timeout = max(0.0, next_look - time.monotonic()) if groups else None
            if selector.select(timeout):
                data = os.read(read_fd, 65536)
                if not data:
                    break
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    _note(line, groups, cgroups)
                # Two messages per command job: read them in batches rather than wake for each. The
                # worker's death is still seen within BATCH_S; the pipe holds thousands of messages.
                time.sleep(BATCH_S)
            if groups and time.monotonic() >= next_look:
                _remember(groups, children_files)
                next_look = time.monotonic() + LOOK_EVERY_S
    _remember(groups, children_files)  # the job leaders outlive the worker: their trees are still whole now
    _remember_marked(groups)
    for path in cgroups:  # first: cgroup.kill is one write per job, and fork-proof
        JobCgroup(Path(path)).kill()
    _kill_all(groups)
    for path in cgroups:
        JobCgroup(Path(path)).remove()


def main(read_fd: str) -> None:
    """The sidecar's entry point (run with ``python -c``, so the worker package is not run as a module)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    guard(int(read_fd))
