"""A Redis Sentinel setup on loopback: one primary, one replica and three sentinels, all real processes.

Every process is the suite's own redis-server binary (``redis-server sentinel.conf --sentinel`` is a
sentinel). Sentinels are tuned to notice a dead primary after ``DOWN_AFTER_MS`` and to finish a
failover in a few seconds.

The replica reaches the primary through :class:`Relay`, a TCP relay in the test process, so a test
can cut the replication stream (as a network partition or a lagging replica would) while both
servers stay up and every sentinel still sees them healthy. Whatever the primary acknowledges
after the cut exists on the primary alone.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from jobbalancer.server import EmbeddedRedis, find_redis_server
from tests.helpers import free_port, wait_for

SERVICE = "jbprimary"
DOWN_AFTER_MS = 1000  # low enough for a quick test, high enough that a busy machine causes no spurious failover
FAILOVER_TIMEOUT_MS = 3000
QUORUM = 2


@dataclass
class SentinelSetup:
    """The processes, and a ``redis+sentinel://`` URL for them; ``start()`` returns once all agree."""

    tmp: Path
    primary: EmbeddedRedis | None = None
    replica: EmbeddedRedis | None = None
    sentinel_ports: list[int] = field(default_factory=list)
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)
    relay: Relay | None = None

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> SentinelSetup:
        fast_sync = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        self.primary = EmbeddedRedis(self.tmp / "primary", free_port(), extra_args=fast_sync)
        self.primary.start()  # kept first, so stop() ends it even if starting fails
        self.relay = Relay(self.primary.port)
        replica_of = ["--replicaof", "127.0.0.1", str(self.relay.port)]
        self.replica = EmbeddedRedis(self.tmp / "replica", free_port(), extra_args=fast_sync + replica_of)
        self.replica.start()
        for n in range(3):
            self.sentinel_ports.append(port := free_port())
            self.sentinels.append(self._sentinel(n, port))
        wait_for(self._all_agree, 20, 0.1, "three sentinels that see the primary, the replica and each other")
        return self

    def _sentinel(self, n: int, port: int) -> subprocess.Popen[bytes]:
        assert self.primary is not None
        home = self.tmp / f"sentinel{n}"
        home.mkdir()
        conf = home / "sentinel.conf"  # a sentinel rewrites its config file: one each
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {home}\nlogfile {home / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        argv = [find_redis_server(), str(conf), "--sentinel"]
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)

    def ask(self, port: int) -> dict[str, str] | None:
        """What the sentinel on ``port`` says about the service (``SENTINEL MASTER``), or None."""
        try:
            with redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5, decode_responses=True) as s:
                reply: Any = s.sentinel_master(SERVICE)
        except redis.RedisError:
            return None
        return {str(k): str(v) for k, v in reply.items()}

    def _all_agree(self) -> bool:
        views = [self.ask(port) for port in self.sentinel_ports]
        return all(
            view is not None and view.get("num-slaves") == "1" and view.get("num-other-sentinels") == "2"
            for view in views
        )

    def primary_port(self) -> int | None:
        """The primary's port as the first sentinel that answers names it."""
        for port in self.sentinel_ports:
            view = self.ask(port)
            if view is not None:
                return int(view["port"])
        return None

    def first_primary_port(self) -> int:
        assert self.primary is not None
        return self.primary.port

    def replica_port(self) -> int:
        assert self.replica is not None
        return self.replica.port

    def replicated(self) -> bool:
        """Whether the replica has everything the primary has written (equal replication offsets)."""
        assert self.primary is not None and self.replica is not None
        with redis.Redis(port=self.primary.port, decode_responses=True) as p:
            info = p.info("replication")
        return bool(info.get("slave0", {}).get("offset") == info.get("master_repl_offset"))

    def kill_primary(self) -> float:
        """SIGKILL the primary (it loses whatever it had not sent to the replica); returns when."""
        assert self.primary is not None and self.primary.process is not None
        self.primary.process.kill()
        self.primary.process.wait()
        return time.monotonic()

    def cut_replication(self) -> None:
        """From now on the primary's writes do not reach the replica (the replica still acknowledges).

        The replica must be replicating through the relay for that. A sentinel "fixes" a replica
        whose master address differs from the one it monitors (``+fix-slave-config``), once
        ``FAILOVER_TIMEOUT_MS`` passed since it saw the replica's master change, at its next
        ``INFO`` (every 10 s): on a slow machine that came before the cut, and the cut then cut
        nothing. Pointed back here, the replica is safe from that for its next 10 s at least.
        """
        assert self.relay is not None and self.replica is not None
        with redis.Redis(port=self.replica.port, decode_responses=True) as replica:
            if int(replica.info("replication")["master_port"]) != self.relay.port:
                replica.replicaof("127.0.0.1", self.relay.port)
                wait_for(
                    lambda: replica.info("replication").get("master_link_status") == "up",
                    10,
                    what="the replica to replicate through the relay again",
                )
        self.relay.cut.set()

    def stop(self) -> None:
        for proc in self.sentinels:
            proc.terminate()
        for proc in self.sentinels:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for server in (self.replica, self.primary):
            if server is not None:
                server.stop()
        if self.relay is not None:
            self.relay.close()


class Relay:
    """Relays TCP connections on a free loopback port to ``target_port``; ``cut`` drops the target's bytes.

    Only the direction from the target (the primary's replication stream) is cut; the replica's
    acknowledgements still pass, so the primary sees a healthy replica that confirms nothing new.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cut = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)  # how often the accept loop notices close()
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                near, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                far = socket.create_connection(("127.0.0.1", self.target_port), timeout=1)
            except OSError:  # the primary is gone: the replica sees its link fail, as it would
                near.close()
                continue
            far.settimeout(None)
            near.settimeout(None)
            self._sockets += [near, far]
            threading.Thread(target=self._pump, args=(far, near, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(near, far, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, cuttable: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not (cuttable and self.cut.is_set()):
                    dst.sendall(data)
        for sock in (src, dst):  # one side closed: close the other, as a plain connection would
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for sock in self._sockets:
            sock.close()
