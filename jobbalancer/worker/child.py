"""A long-lived child process that runs call jobs for its worker, one at a time.

Started by :mod:`jobbalancer.worker.run_call` as
``python -m jobbalancer.worker.child <job_fd> <msg_fd> <worker_pid> <paths JSON>``. It reads one
JSON line per job from ``job_fd`` (``[id, attempt, func, args, kwargs]``), runs them in the order
sent, and writes lines to ``msg_fd``, each a one-character tag and JSON: ``1"text"`` / ``2"text"``
for output on stdout / stderr, then one ``R<result>`` (the call returned) or ``E"error"`` (it
raised) per job. The worker may send a slot's batch of jobs at once: a thread reads them as they
come, so that a line ``K[id, attempt]`` cancels one of them that has not begun at once, even
while another runs: it never runs, and ``S[id, attempt]`` says so; ``B[id, attempt]`` answers
for a job that had already begun (or ended): that one is the worker's to kill. Output written
while no job runs (by a thread a finished job left behind) is dropped. JSON only, never pickle:
nothing the worker reads can run code in it.
"""

from __future__ import annotations

import ctypes
import importlib
import io
import json
import os
import signal
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

PR_SET_PDEATHSIG = 1
_FLUSH_CHARS = 8192


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when the worker dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the worker died before the request was in place
        os._exit(1)


class Channel:
    """The message pipe to the worker; user threads may print concurrently, hence the lock."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._active = False  # a job runs: its output goes to the worker

    def begin(self) -> None:
        with self._lock:
            self._active = True

    def output(self, fd: int, text: str) -> None:
        with self._lock:
            if self._active:
                self._stream.write(f"{fd}{json.dumps(text)}\n")
                self._stream.flush()

    def answer(self, tag: bytes, key: tuple[str, str]) -> None:
        """The answer to a cancel: ``S`` it was skipped (it will not run), ``B`` it had begun."""
        with self._lock:
            self._stream.write(tag.decode() + json.dumps(list(key)) + "\n")
            self._stream.flush()

    def done(self, line: str) -> None:
        """The job's last message; output after it is no job's."""
        with self._lock:
            self._active = False
            self._stream.write(line + "\n")
            self._stream.flush()


class JobStream(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` while jobs run: line-buffered text sent to the worker."""

    encoding = "utf-8"

    def __init__(self, channel: Channel, fd: int) -> None:
        super().__init__()
        self._channel = channel
        self._fd = fd
        self._buf: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._buf.append(text)
            self._size += len(text)
            full = "\n" in text or self._size >= _FLUSH_CHARS
        if full:
            self.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            text, self._buf, self._size = "".join(self._buf), [], 0
        if text:
            self._channel.output(self._fd, text)


class Runner:
    """Resolves ``package.module:function`` paths (cached) and runs one job."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._funcs: dict[str, Callable[..., Any]] = {}
        self._streams = (JobStream(channel, 1), JobStream(channel, 2))

    def resolve(self, path: str) -> Callable[..., Any]:
        func = self._funcs.get(path)
        if func is None:
            module_name, _, qualname = path.partition(":")
            if not module_name or not qualname:
                raise ValueError(f"function {path!r} must be an import path like 'package.module:function'")
            target: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                target = getattr(target, part)
            if not callable(target):
                raise TypeError(f"{path} is not callable")
            func = self._funcs[path] = target
        return func

    def run(self, job: list[Any]) -> None:
        """Run one job: ``[id, attempt, func, args, kwargs]``."""
        job_id, attempt, path, args, kwargs = job
        sys.stdout, sys.stderr = self._streams  # again for every job: the last one may have replaced them
        os.environ["JB_JOB_ID"] = str(job_id)
        os.environ["JB_ATTEMPT"] = str(attempt)
        path = str(path)
        self._channel.begin()
        try:
            func = self.resolve(path)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            self._done_error(f"cannot import {path}: {type(exc).__name__}: {exc}")
            return
        except BaseException as exc:  # the module itself raised while being imported
            self._done_error(f"cannot import {path}:\n{_format(exc)}")
            return
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: a job cannot end the child
            self._done_error(_format(exc))
            return
        try:
            encoded = json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:
            self._done_error(f"result is not JSON-serialisable: {exc}")
            return
        self._flush_streams()
        self._channel.done("R" + encoded)

    def _done_error(self, error: str) -> None:
        self._flush_streams()
        self._channel.done("E" + json.dumps(error))

    def _flush_streams(self) -> None:
        for stream in self._streams:  # ours, even if the job replaced sys.stdout meanwhile
            stream.flush()


class Inbox:
    """The jobs the worker sent, read on a thread of their own and run in order; a cancel (``K``)
    takes out one that has not begun, answered ``S`` at once."""

    def __init__(self, fd: int, channel: Channel) -> None:
        self._channel = channel
        self._cond = threading.Condition()
        self._jobs: deque[tuple[tuple[str, str], list[Any]]] = deque()
        self._open = True
        threading.Thread(target=self._read, args=(fd,), name="jb-inbox", daemon=True).start()

    def next(self) -> list[Any] | None:
        """The next job, waiting for one; None once the worker closed the pipe and none is left."""
        with self._cond:
            self._cond.wait_for(lambda: self._jobs or not self._open)
            return self._jobs.popleft()[1] if self._jobs else None

    def _read(self, fd: int) -> None:
        partial = b""
        try:
            while data := os.read(fd, 1 << 16):
                *lines, partial = (partial + data).split(b"\n")
                for line in lines:
                    self._take(line)
        finally:
            with self._cond:
                self._open = False
                self._cond.notify()

    def _take(self, line: bytes) -> None:
        if line[:1] == b"K":
            job_id, attempt = json.loads(line[1:])
            key = (str(job_id), str(attempt))
            with self._cond:
                kept = deque(item for item in self._jobs if item[0] != key)
                found, self._jobs = len(kept) < len(self._jobs), kept
                self._channel.answer(b"S" if found else b"B", key)
        elif line:
            job = json.loads(line)
            with self._cond:
                self._jobs.append(((str(job[0]), str(job[1])), job))
                self._cond.notify()


def _format(exc: BaseException) -> str:
    """The traceback without this module's own frame."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    return "".join(traceback.format_exception(type(exc), exc, tb))


def main(argv: list[str]) -> None:
    if len(argv) != 4:
        sys.exit("usage: python -m jobbalancer.worker.child JOB_FD MSG_FD WORKER_PID PATHS_JSON (a worker starts it)")
    job_fd, msg_fd, parent_pid, paths = int(argv[0]), int(argv[1]), int(argv[2]), json.loads(argv[3])
    die_with_parent(parent_pid)
    for fd in (job_fd, msg_fd):  # a process the job starts must not hold our pipes open
        os.set_inheritable(fd, False)
    sys.path[:0] = paths
    channel = Channel(os.fdopen(msg_fd, "w", encoding="utf-8"))
    runner, inbox = Runner(channel), Inbox(job_fd, channel)
    while (job := inbox.next()) is not None:
        runner.run(job)


if __name__ == "__main__":
    main(sys.argv[1:])
