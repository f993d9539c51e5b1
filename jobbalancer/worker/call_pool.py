"""The worker's long-lived call children (:mod:`jobbalancer.worker.child`): one process each, and
the pool that lends them to slot threads.

A child is started once and reused, so a job pays for neither an interpreter start nor its
imports again. A child killed by a watchdog or a cancel, or one that died, is not reused: the
next job starts a fresh one. The pool never holds more children than the worker has slots,
because each running call job (or batch of them) holds exactly one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence

from jobbalancer.worker.guardian import Guardian
from jobbalancer.worker.kill import kill_tree, signal_group

log = logging.getLogger("jobbalancer.worker")

_READ_BYTES = 1 << 16


class Wake(threading.Event):
    """``JobRun.wake`` while the job runs in a child: setting it also wakes the slot thread's poll.

    Only the byte counts: the slot thread looks at ``JobRun.kill_reason`` on every wake-up and
    never waits on the Event itself.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def set(self) -> None:
        super().set()
        with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or closed (job over)
            self._sock.send(b"\0")


class Child:
    """One ``python -m jobbalancer.worker.child`` process, driven by the slot thread holding it.

    Messages from the child are lines: ``1<JSON text>`` / ``2<JSON text>`` output on stdout /
    stderr, ``R<JSON>`` the result of a call that returned, ``E<JSON text>`` the error of one that
    raised (see :mod:`jobbalancer.worker.child`).

    Note: the child asks for SIGKILL when the *thread* that started it exits (PR_SET_PDEATHSIG
    is per thread), so children are started from the worker's long-lived job threads.
    """

    def __init__(self, cwd: str, paths: Sequence[str]) -> None:
        job_r, job_w = os.pipe()
        msg_r, msg_w = os.pipe()
        argv = [sys.executable, "-m", "jobbalancer.worker.child", str(job_r), str(msg_w), str(os.getpid())]
        try:
            self.proc = subprocess.Popen(
                [*argv, json.dumps(list(paths))],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                pass_fds=(job_r, msg_w),
                start_new_session=True,
            )
        except BaseException:
            os.close(job_w)
            os.close(msg_r)
            raise
        finally:
            os.close(job_r)
            os.close(msg_w)
        self._jobs_fd = job_w
        self._msgs_fd = msg_r
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake = Wake(self._wake_w)
        self._poll = select.poll()
        self._poll.register(msg_r, select.POLLIN)
        self._poll.register(self._wake_r.fileno(), select.POLLIN)
        self._parts: list[bytes] = []  # an incomplete line, as read
        self.eof = False  # the message pipe closed: the child is gone
        self.ready = False  # the last read found data on the pipe
        self.exited = threading.Event()  # the process is gone and reaped (set by kill and close)
        self._closed = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return not self.eof and self.proc.poll() is None

    def wake_for(self) -> Wake:
        """A ``JobRun.wake`` that interrupts :meth:`read`; one per child, shared by its jobs in turn
        (a late wake-up from a job that already ended only makes the next job look again)."""
        return self._wake

    def send(self, line: bytes) -> bool:
        """Write one job line; False if the child is gone (the pipe is broken)."""
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(self._jobs_fd, view) :]
        except OSError:
            return False
        return True

    def read(self, timeout_s: float | None) -> list[bytes] | None:
        """Complete message lines, waiting up to ``timeout_s`` (None: until something happens).

        Returns an empty list on a wake-up or a timeout, None once the child is gone.
        """
        if self.eof:
            return None
        timeout = None if timeout_s is None else max(0, int(timeout_s * 1000) + 1)
        self.ready = False
        for fd, _events in self._poll.poll(timeout):
            if fd == self._msgs_fd:
                self.ready = True
            else:  # a wake-up (maybe a stale one, from a job that ended): its byte is read here
                with contextlib.suppress(OSError):
                    self._wake_r.recv(256)
        if not self.ready:
            return []
        data = os.read(self._msgs_fd, _READ_BYTES)
        if not data:
            self.eof = True
            return None
        if b"\n" not in data:  # part of a long line (a big result): joined once it is whole
            self._parts.append(data)
            return []
        if self._parts:
            data = b"".join([*self._parts, data])
            self._parts.clear()
        lines = data.split(b"\n")
        self._parts.append(lines.pop())
        return lines

    def drain(self) -> list[bytes]:
        """Every complete line the pipe holds now, without waiting (after a kill)."""
        lines: list[bytes] = []
        while (more := self.read(0)) is not None:
            lines += more
            if not self.ready:
                break
        return lines

    def kill(self, grace_s: float) -> None:
        """Kill the child and everything its job started; returns once it is reaped."""
        threading.Thread(target=self._reap, name=f"jb-child-{self.pid}", daemon=True).start()
        kill_tree(self.pid, grace_s, self.exited)
        self.exited.wait()

    def terminate(self) -> None:
        """SIGKILL the child (its slot sees the pipe close, then discards it)."""
        if self.proc.poll() is None:
            signal_group(self.pid, signal.SIGKILL)

    def close(self) -> None:
        """Kill the child at once (it holds no job, or one being given up) and free its pipes."""
        if self.proc.poll() is None:
            signal_group(self.pid, signal.SIGKILL)
        self._reap()
        if not self._closed:
            self._closed = True
            for fd in (self._jobs_fd, self._msgs_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake_r.close()
            self._wake_w.close()

    def how_it_died(self) -> str:
        code = self.proc.wait()
        return f"signal {-code}" if code < 0 else f"exit code {code}"

    def _reap(self) -> None:
        self.proc.wait()
        self.exited.set()


class CallPool:
    """Idle children waiting for the next call job; started lazily, reused, replaced when killed."""

    def __init__(self, cwd: str, paths: Sequence[str], guardian: Guardian) -> None:
        self._guardian = guardian
        self._cwd = cwd
        self._paths = [os.path.abspath(p) for p in paths] + [cwd]
        self._idle: list[Child] = []
        self._live: set[Child] = set()
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> Child:
        """An idle live child, or a new one. Raises OSError when none can be started."""
        with self._lock:
            if self._closed:
                raise OSError("the worker is stopping")
            child = self._idle.pop() if self._idle else None
        while child is not None:
            if child.alive():
                return child
            self.discard(child)  # it died while idle
            with self._lock:
                child = self._idle.pop() if self._idle else None
        child = Child(self._cwd, self._paths)
        self._guardian.watch(child.pid)
        with self._lock:
            self._live.add(child)
        return child

    def release(self, child: Child) -> None:
        """Back to the idle children: it just answered (no EOF), so it is alive."""
        with self._lock:
            if not self._closed and not child.eof:
                self._idle.append(child)
                return
        self.discard(child)

    def discard(self, child: Child) -> None:
        child.close()
        self._guardian.forget(child.pid)
        with self._lock:
            self._live.discard(child)

    def close(self) -> None:
        """Kill every child; the worker is stopping. Busy ones are discarded by their slots."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = self._live.difference(idle)
            self._live = busy
        for child in idle:
            child.close()
            self._guardian.forget(child.pid)
        for child in busy:
            child.terminate()
