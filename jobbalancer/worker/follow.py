"""One thread per worker process that copies every running command's pipes into its job's output
and reaps the command the moment it exits.

A thread per command cost a thread start, a selector and a 50 ms exit poll per job. Here one
``epoll`` watches the two pipes of every command and a pidfd per command (Linux 5.3+), which
becomes readable when the process exits, so an exit is noticed at once, also while a process the
command left behind (``setsid``) still holds a pipe. Registering from another thread is safe with
epoll: a blocked ``poll`` picks up new descriptors. Only this thread unregisters and closes them,
so a descriptor number is never reused while it may still be read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from dataclasses import dataclass, field

from jobbalancer.worker.output import Output
from jobbalancer.worker.spawn import Process

log = logging.getLogger("jobbalancer.worker")

LINGER_S = 1.0  # an idle follower thread waits this long for the next command before it ends
EXIT_POLL_S = 0.05  # how soon an exit is noticed where the kernel has no pidfd
_READ_BYTES = 65536


@dataclass(eq=False)
class Followed:
    """One command being followed. ``exited`` is set once it is reaped; ``drained`` once both of
    its pipes reached end of file (everything it and what it left behind wrote is in ``out``)."""

    proc: Process
    out: Output
    wake: threading.Event
    exited: threading.Event = field(default_factory=threading.Event)
    drained: threading.Event = field(default_factory=threading.Event)
    open_pipes: int = 2
    pidfd: int | None = None


class Follower:
    """Follows the commands of every worker in this process (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoll = select.epoll()
        self._fds: dict[int, tuple[Followed, int]] = {}  # fd -> (command, 1 stdout / 2 stderr / 0 pidfd)
        self._polled: list[Followed] = []  # commands without a pidfd: their exit is polled
        self._thread: threading.Thread | None = None

    def follow(self, proc: Process, out: Output, wake: threading.Event) -> Followed:
        """Start following a command just started; it owns its pipes now. ``wake`` is set on its exit."""
        job = Followed(proc, out, wake)
        try:
            job.pidfd = os.pidfd_open(proc.pid)
        except (OSError, AttributeError):  # no pidfd (an old kernel): the exit is polled
            job.pidfd = None
        with self._lock:
            watched = [(proc.stdout, 1), (proc.stderr, 2)]
            if job.pidfd is None:
                self._polled.append(job)
            else:
                watched.append((job.pidfd, 0))
            for fd, role in watched:
                self._fds[fd] = (job, role)
                self._epoll.register(fd, select.EPOLLIN)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="jb-follow", daemon=True)
                self._thread.start()
        return job

    def _loop(self) -> None:
        while True:
            with self._lock:
                idle = not self._fds
                timeout = EXIT_POLL_S if self._polled else (LINGER_S if idle else None)
            events = self._epoll.poll(timeout)
            with self._lock:
                if not events and not self._fds and not self._polled:  # idle a while: end; follow() starts another
                    self._thread = None
                    return
                found = [(fd, *self._fds[fd]) for fd, _mask in events if fd in self._fds]
                polled = list(self._polled)
            found.sort(key=lambda item: item[2] != 0)  # exits first: output may cost a round trip each
            for fd, job, role in found:
                self._step(fd, job, role)
            for job in polled:
                self._step(-1, job, 0)

    def _step(self, fd: int, job: Followed, role: int) -> None:
        """Read ``fd`` (role 1 or 2), or reap ``job`` if it exited (role 0); should that fail,
        give the job up rather than every other one."""
        try:
            if role:
                self._read(fd, job, role)
            elif job.proc.poll() is not None:
                self._reap(job)
        except Exception:  # a bug here must not leave this job's slot, or any other, waiting forever
            log.exception("following command %d failed; its output may be incomplete", job.proc.pid)
            for pipe in (job.proc.stdout, job.proc.stderr):
                if self._fds.get(pipe, (None, 0))[0] is job:  # not yet at end of file: still open
                    self._drop(pipe)
                    os.close(pipe)
            if job.pidfd is not None:
                self._drop(job.pidfd)
                os.close(job.pidfd)
                job.pidfd = None
            with self._lock:
                if job in self._polled:
                    self._polled.remove(job)
            job.drained.set()
            job.proc.wait()
            job.exited.set()
            job.wake.set()

    def _read(self, fd: int, job: Followed, role: int) -> None:
        try:
            chunk = os.read(fd, _READ_BYTES)
        except OSError as exc:  # not expected from a pipe; end it rather than spin on it
            log.warning("cannot read a command's output (fd %d): %s", fd, exc)
            chunk = b""
        if chunk:
            job.out.write_bytes(role, chunk)
            return
        job.out.end(role)
        self._drop(fd)
        os.close(fd)
        job.open_pipes -= 1
        if not job.open_pipes:
            job.drained.set()  # (no wake: the runner waits for ``drained`` itself, once it saw the exit)

    def _reap(self, job: Followed) -> None:
        job.proc.wait()
        with self._lock:
            if job in self._polled:
                self._polled.remove(job)
        if job.pidfd is not None:
            self._drop(job.pidfd)
            os.close(job.pidfd)
            job.pidfd = None
        job.exited.set()
        job.wake.set()

    def _drop(self, fd: int) -> None:
        with self._lock:
            self._fds.pop(fd, None)
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)


FOLLOWER = Follower()  # one per process: every worker in it shares the thread
