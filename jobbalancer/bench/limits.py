"""The machine's limits, the ceilings ``make bench`` holds jobbalancer's rates against.

- ``xadd_rate``: how many XADDs a second Redis takes when they arrive pipelined. The commands go
  out over a plain socket, encoded once, so the figure is Redis's, not a Python client's.
- ``spawn_rate``: how many ``true`` processes a second a bare thread pool runs with
  ``subprocess.run(["true"])``, at a given concurrency: no queue, no Redis, only the kernel.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from jobbalancer.server import host_port

# An entry shaped like the inbox's: id, queue, priority, realtime.
ENTRY = ("id", uuid.UUID(int=0).hex, "queue", "default", "priority", "0", "realtime", "0")
RECV_BYTES = 1 << 16


def resp(*args: str) -> bytes:
    """One command in Redis's wire protocol (RESP)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def read_replies(sock: socket.socket, count: int, buffer: bytes) -> bytes:
    """Consume ``count`` bulk-string replies (two lines each); returns what was read past them.

    Raises:
        RuntimeError: Redis answered with an error.
    """
    lines_wanted = 2 * count
    while True:
        lines = buffer.count(b"\r\n")
        if lines >= lines_wanted:
            cut = 0
            for _ in range(lines_wanted):
                cut = buffer.index(b"\r\n", cut) + 2
            return buffer[cut:]
        if buffer.startswith(b"-"):
            raise RuntimeError(f"Redis refused XADD: {buffer.splitlines()[0].decode(errors='replace')}")
        chunk = sock.recv(RECV_BYTES)
        if not chunk:
            raise RuntimeError("Redis closed the connection during the XADD benchmark")
        buffer += chunk


def xadd_rate(url: str, entries: int = 200_000, batch: int = 1000) -> float:
    """XADDs per second into a fresh stream, ``batch`` commands per pipeline, two batches in flight.

    The stream is deleted afterwards. The URL's database number is ignored: streams do not care.
    """
    host, port = host_port(url)
    key = f"jb-bench-limit:{uuid.uuid4().hex}"
    payload = resp("XADD", key, "*", *ENTRY) * batch
    rounds = max(1, entries // batch)
    with socket.create_connection((host, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        began = time.perf_counter()
        sock.sendall(payload)
        rest = b""
        for sent in range(1, rounds + 1):
            if sent < rounds:  # keep Redis busy while this side reads the previous batch's replies
                sock.sendall(payload)
            rest = read_replies(sock, batch, rest)
        elapsed = time.perf_counter() - began
        sock.sendall(resp("DEL", key))
        sock.recv(RECV_BYTES)
    return rounds * batch / elapsed


def run_true() -> None:
    subprocess.run(["true"], check=True)


def spawn_rate(processes: int = 2000, concurrency: int = 4) -> float:
    """``true`` processes per second from a pool of ``concurrency`` threads."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda _: run_true(), range(concurrency)))  # threads started, binaries cached
        began = time.perf_counter()
        list(pool.map(lambda _: run_true(), range(processes)))
        return processes / (time.perf_counter() - began)
