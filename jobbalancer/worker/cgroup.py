"""A cgroup (v2) per command job, so that nothing a job started outlives it, however it left.

The process group, the process tree and the environment marker (``kill.py``) each miss a process
that double-forked out of the tree and cleared its environment (``(setsid env -i sleep N &)``).
A cgroup does not: a process stays in its parent's cgroup whatever it does, and writing ``1`` to
``cgroup.kill`` SIGKILLs every process in the cgroup and its descendants, forks racing the kill
included. (A job may still leave deliberately if it may write a ``cgroup.procs`` above its own, as
root can: a cgroup contains daemons and accidents, not a hostile root job.)

Where: under ``JB_CGROUP_ROOT`` (a directory in a cgroup2 mount; ``off`` turns cgroups off), or
else under the worker's own cgroup (the ``0::/path`` line of ``/proc/self/cgroup``, below the
cgroup2 mount: ``/sys/fs/cgroup`` on a pure v2 host, ``/sys/fs/cgroup/unified`` on a hybrid one).
At start a probe creates a cgroup there, moves a short-lived process into it and removes it; if
any step fails the worker does without cgroups, as before. No controller is enabled: cgroup v2's
"no internal processes" rule binds only cgroups with controllers in ``cgroup.subtree_control``, so
the worker may stay in the cgroup whose children its jobs use.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("jobbalancer.worker")

ROOT_ENV = "JB_CGROUP_ROOT"
OFF = "off"
EXIT_NO_CGROUP = 125  # a shell command's exit code when it could not enter its cgroup (never seen)
EMPTY_TIMEOUT_S = 5.0  # SIGKILLed processes go at once, unless stuck in an uninterruptible sleep
_POLL_S = 0.01
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_OCTAL = re.compile(r"\\([0-7]{3})")  # /proc/self/mounts writes a space in a path as \040


class Unavailable(Exception):
    """No cgroup per job on this worker; the message says why."""


def v2_mount(mounts: str) -> str | None:
    """The first cgroup2 mount point in the text of ``/proc/self/mounts``, or None."""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            return _OCTAL.sub(lambda m: chr(int(m[1], 8)), fields[1])
    return None


def own_cgroup(proc_cgroup: str) -> str | None:
    """The cgroup v2 path (``/a/b``) in the text of ``/proc/<pid>/cgroup``, or None (v1 only)."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::/"):
            return line[3:]
    return None


def choose_root(proc_cgroup: str, mounts: str, configured: str | None) -> Path:
    """Where job cgroups would go: the configured directory, else the process's own cgroup.

    Args:
        proc_cgroup: the text of ``/proc/self/cgroup``.
        mounts: the text of ``/proc/self/mounts``.
        configured: the value of ``JB_CGROUP_ROOT``, if set.

    Raises:
        Unavailable: cgroups are turned off, or there is no cgroup v2 to use.
    """
    if configured == OFF:
        raise Unavailable(f"{ROOT_ENV}={OFF}")
    if configured:
        root = Path(configured)
    else:
        mount, own = v2_mount(mounts), own_cgroup(proc_cgroup)
        if mount is None:
            raise Unavailable("no cgroup2 mount")
        if own is None:
            raise Unavailable("this process is in no cgroup v2")
        root = Path(mount, own.lstrip("/"))
    if not root.is_absolute() or "\n" in str(root):
        raise Unavailable(f"{str(root)!r} is not an absolute path on one line")
    return root


def safe_name(worker: str) -> str:
    """A worker name as it may stand in a cgroup's directory name."""
    return _UNSAFE.sub("_", worker)[:100]


@dataclass(frozen=True)
class JobCgroup:
    """One job's cgroup: a directory in a cgroup2 mount.

    The files read after every job (``cgroup.events``, ``cgroup.stat``) stay open while the
    cgroup is pooled: a ``pread`` at offset 0 reads such a file anew, for a few microseconds where
    opening, reading and closing it through ``pathlib`` costs tens. ``remove`` closes them.
    """

    path: Path
    _fds: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def shell_prefix(self) -> str:
        """What a ``/bin/sh -c`` script starts with so that the shell moves itself in, then runs on.

        Writing ``0`` to ``cgroup.procs`` moves the writing process. The shell does it before
        anything of the job runs, and its pid, ``$0`` and ``$@`` stay the job's. This is the way
        for shell commands, the usual kind: a ``preexec_fn`` (see ``entering``) makes Python fork
        without vfork and run its after-fork hooks, about 9 ms more per job, where this costs
        about 1 ms.
        """
        return self._shell_prefix

    @functools.cached_property
    def _shell_prefix(self) -> str:
        return f"echo 0 > {shlex.quote(str(self.path / 'cgroup.procs'))} || exit {EXIT_NO_CGROUP}; "

    @contextlib.contextmanager
    def entering(self) -> Iterator[Callable[[], object]]:
        """A ``preexec_fn`` that moves the new process into this cgroup before it execs.

        For a program run without a shell (a job's ``argv``), whose exec errors must stay Python's.
        Python warns that ``preexec_fn`` may deadlock in a threaded program: the child runs Python
        code after fork, and another thread may have held a lock. This one takes none: it writes
        two bytes to a file descriptor the parent opened (so opening errors surface here, in the
        parent). It runs after the ``setsid`` of ``start_new_session`` and before the exec, so
        nothing the job runs is ever outside the cgroup.
        """
        fd = os.open(self.path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        try:
            yield functools.partial(os.write, fd, b"0")
        finally:
            os.close(fd)

    def pids(self) -> list[int]:
        """Every process in this cgroup and the cgroups below it (empty when it is gone)."""
        found = []
        for folder, _dirs, _files in os.walk(self.path):
            with contextlib.suppress(OSError):
                found += [int(pid) for pid in Path(folder, "cgroup.procs").read_text().split()]
        return found

    def populated(self) -> bool:
        """True while a live process is in this cgroup or below it (a zombie does not count)."""
        events = self._read("cgroup.events")
        return events is not None and "populated 1" in events.splitlines()

    def _read(self, name: str) -> str | None:
        """The text of one of the cgroup's own files, or None once the cgroup is gone."""
        try:
            fd = self._fds.get(name)
            if fd is None:
                fd = self._fds[name] = os.open(self.path / name, os.O_RDONLY | os.O_CLOEXEC)
            return os.pread(fd, 4096, 0).decode()
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ENODEV:  # removed while the file was open
                return None
            raise

    def close(self) -> None:
        """Close the files kept open (see the class docstring); a later read opens them again."""
        while self._fds:
            os.close(self._fds.popitem()[1])

    def kill(self) -> None:
        """SIGKILL every process in this cgroup and below it."""
        with contextlib.suppress(FileNotFoundError):
            (self.path / "cgroup.kill").write_text("1")

    def clear(self, timeout_s: float = EMPTY_TIMEOUT_S) -> tuple[int, bool]:
        """Kill whatever is still in the cgroup and wait until it is empty, keeping the cgroup for
        the next job; cgroups a job made below it are removed.

        Returns:
            How many processes were still in it (0 for a job that left nothing behind), and
            whether it is now as good as new: empty, with nothing below it.
        """
        if self._fresh():  # the usual end: two small reads
            return 0, True
        left = self._empty(timeout_s)
        try:
            for folder, _dirs, _files in os.walk(self.path, topdown=False):
                if folder != str(self.path):
                    os.rmdir(folder)
        except OSError as exc:
            log.warning("cgroup %s: cannot remove the cgroups a job made in it (%s)", self.path, exc)
        return left, self._fresh()

    def _fresh(self) -> bool:
        """True if the cgroup is there, empty, and has no cgroups below it."""
        stat = self._read("cgroup.stat")
        return stat is not None and "nr_descendants 0" in stat.splitlines() and not self.populated()

    def _empty(self, timeout_s: float) -> int:
        """SIGKILL what is in the cgroup and wait (at most ``timeout_s``) until it is empty."""
        left = self.pids()
        if left or self.populated():
            self.kill()
            deadline = time.monotonic() + timeout_s
            while self.populated() and time.monotonic() < deadline:
                time.sleep(_POLL_S)
        return len(left)

    def remove(self, timeout_s: float = EMPTY_TIMEOUT_S) -> int:
        """Kill whatever is still in the cgroup, wait until it is empty, and remove it.

        Returns:
            How many processes were still in it: 0 for a job that left nothing behind.
        """
        try:
            if not self.populated():  # the usual end: nothing left, no job-made cgroups below
                with contextlib.suppress(OSError):
                    os.rmdir(self.path)
                    return 0
            left = self._empty(timeout_s)
            try:
                for folder, _dirs, _files in os.walk(self.path, topdown=False):  # a job may have made its own
                    os.rmdir(folder)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cgroup %s: cannot remove it (%s); processes in it: %s", self.path, exc, self.pids())
            return left
        finally:
            self.close()


class Cgroups:
    """The worker's place for job cgroups: it names, creates and probes them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._numbers = itertools.count(1)

    @classmethod
    def discover(cls) -> Cgroups | None:
        """The usable cgroup root of this process, or None; logs which, once, at info level."""
        try:
            root = choose_root(_read("/proc/self/cgroup"), _read("/proc/self/mounts"), os.environ.get(ROOT_ENV))
            cgroups = cls(root)
            cgroups.probe()
        except (Unavailable, OSError) as exc:  # OSError: e.g. a root this user may not even look into
            log.info("cgroups: not used (%s); a job's processes are found by group, tree and environment", exc)
            return None
        log.info("cgroups: each command job runs in a cgroup of its own under %s", root)
        return cgroups

    def probe(self) -> None:
        """Create a cgroup, run a process in it, remove it: proof that jobs can have one.

        Raises:
            Unavailable: some step failed; the message says which.
        """
        if not (self.root / "cgroup.procs").is_file():
            raise Unavailable(f"{self.root} is not a cgroup v2 directory")
        probe = JobCgroup(self.root / f"jb-probe-{os.getpid()}")
        try:
            os.mkdir(probe.path)
        except OSError as exc:
            raise Unavailable(f"cannot create a cgroup under {self.root}: {exc}") from None
        try:
            if not (probe.path / "cgroup.kill").is_file():
                raise Unavailable("the kernel has no cgroup.kill (it needs Linux 5.14 or later)")
            with probe.entering() as enter:
                shown = subprocess.run(
                    [sys.executable, "-S", "-c", "print(open('/proc/self/cgroup').read())"],
                    preexec_fn=enter,  # takes no lock: see JobCgroup.entering
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=True,
                ).stdout
            if not (own_cgroup(shown) or "").endswith("/" + probe.path.name):
                raise Unavailable(f"a process moved into {probe.path} reports cgroup {shown.strip()!r}")
        except (OSError, subprocess.SubprocessError) as exc:
            raise Unavailable(f"cannot run a process in a cgroup under {self.root}: {exc}") from None
        finally:
            probe.remove()

    def create(self, worker: str) -> JobCgroup | None:
        """A new, empty cgroup for one job of ``worker``, or None (logged) when it cannot be made.

        Its name, ``jb-<worker>-<pid>-<n>``, carries the worker's pid: two clusters on one host may
        each have a worker of the same name. A directory already there is a leftover of a worker
        that died with its guardian under a pid now reused: what is in it is killed.
        """
        cgroup = JobCgroup(self.root / f"jb-{safe_name(worker)}-{os.getpid()}-{next(self._numbers)}")
        try:
            try:
                os.mkdir(cgroup.path)
            except FileExistsError:
                cgroup.remove()
                os.mkdir(cgroup.path)
        except OSError as exc:
            log.warning("cgroup %s: cannot create it (%s); the job runs without one", cgroup.path, exc)
            return None
        return cgroup


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
