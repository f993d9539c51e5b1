"""Hosts made of Linux network namespaces, joined by veth pairs to a bridge, and processes on them.

Every name carries a per-run suffix and every link is created inside this run's own namespaces
(the bridge lives in a "switch" namespace of its own), so the machine's own network is never
touched: deleting the namespaces deletes every link. The addresses are in 198.18.0.0/15, the
range set aside for testing network devices (RFC 2544); they exist only inside these namespaces.

Processes are started with ``ip netns exec <ns> <absolute path> ...``: ``ip netns exec`` runs the
program by PATH lookup in the caller's environment, so a bare ``jb`` fails whenever the venv is
not activated; an absolute path to the venv's ``jb`` always works.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from tests.helpers import stop_processes

SUBNET = "198.18.0"
HOSTS = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
"""Host name -> last byte of its address: A Redis, B balancer, C and D workers, E the client."""
JB = Path(sys.executable).parent / "jb"
"""The venv's ``jb``, by absolute path (see the module docstring)."""


def missing(reason: str) -> None:
    """Skip for ``reason``; in CI (``CI`` set, ``.ci/run`` installs iproute2) fail instead."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def require_tools() -> None:
    """Namespaces need root and iproute2 (``ip``, ``tc``)."""
    if os.geteuid() != 0:
        pytest.skip("the multi-host test makes network namespaces: it must run as root")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            missing(f"`{tool}` is not installed: `apt-get install iproute2`")
    if not JB.exists():
        pytest.fail(f"no `jb` next to the interpreter ({JB}): install the project into its venv")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one iproute2 command; on failure the error names the command and what it printed."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


@dataclass
class Network:
    """Five hosts (A..E) on one bridge, each its own network namespace."""

    tmp: Path
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    made: list[str] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return f"jbmh{self.suffix}-{host}"

    def addr(self, host: str) -> str:
        return f"{SUBNET}.{HOSTS[host]}"

    def port(self, host: str) -> str:
        """The switch's end of ``host``'s cable (interface names are at most 15 characters)."""
        return f"p{host}{self.suffix}"

    def iface(self, host: str) -> str:
        """``host``'s own end of its cable."""
        return f"e{host}{self.suffix}"

    def build(self) -> Network:
        switch = self._add_ns("sw")
        sh("ip", "-n", switch, "link", "add", f"br{self.suffix}", "type", "bridge")
        sh("ip", "-n", switch, "link", "set", f"br{self.suffix}", "up")
        for host in HOSTS:
            ns = self._add_ns(host)
            port, iface = self.port(host), self.iface(host)
            sh("ip", "-n", switch, "link", "add", port, "type", "veth", "peer", "name", iface, "netns", ns)
            sh("ip", "-n", switch, "link", "set", port, "master", f"br{self.suffix}", "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.addr(host)}/24", "dev", iface)
            sh("ip", "-n", ns, "link", "set", iface, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        return self

    def _add_ns(self, host: str) -> str:
        ns = self.ns(host)
        sh("ip", "netns", "add", ns)
        self.made.append(ns)
        return ns

    # -- faults -------------------------------------------------------------------------------

    def cut(self, host: str) -> None:
        """Unplug ``host``'s cable from the bridge, as a failure further along the path would.

        Its own interface keeps its carrier, so its packets leave and vanish: nobody gets an error,
        and TCP only retransmits, backing off. (Taking the link down instead gives no carrier,
        which the sender's kernel notices, and it retries at once when the carrier comes back.)
        """
        sh("ip", "-n", self.ns("sw"), "link", "set", self.port(host), "nomaster")

    def heal(self, host: str) -> None:
        sh("ip", "-n", self.ns("sw"), "link", "set", self.port(host), "master", f"br{self.suffix}")

    def netem(self, host: str, *params: str) -> bool:
        """``tc qdisc replace ... root netem PARAMS`` on both ends of ``host``'s cable.

        Returns False when this kernel has no netem (``sch_netem`` not built), e.g. a minimal VM kernel.
        """
        ends = ((self.ns(host), self.iface(host)), (self.ns("sw"), self.port(host)))
        for ns, dev in ends:
            done = sh(
                "ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "netem", *params, check=False
            )
            if done.returncode != 0:
                if "unknown" in done.stderr.lower():
                    return False
                raise AssertionError(f"tc netem on {dev} failed: {done.stderr.strip()}")
        return True

    def clear_netem(self, host: str) -> None:
        for ns, dev in ((self.ns(host), self.iface(host)), (self.ns("sw"), self.port(host))):
            sh("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root", check=False)

    # -- processes ----------------------------------------------------------------------------

    def argv(self, host: str, *argv: str | Path) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *(str(a) for a in argv)]

    def spawn(
        self, host: str, label: str, argv: Sequence[str | Path], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a process on ``host``; its stdout and stderr go to ``<label>.out`` and ``<label>.err``."""
        out = open(self.tmp / f"{label}.out", "ab")  # noqa: SIM115 - closed in close()
        err = open(self.tmp / f"{label}.err", "ab")  # noqa: SIM115 - closed in close()
        self._logs += [out, err]
        proc = subprocess.Popen(
            self.argv(host, *argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}
        )
        self.procs[label] = proc  # `ip netns exec` execs the program: this is its pid
        return proc

    def run(self, host: str, *argv: str | Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command on ``host`` to its end and capture what it prints."""
        return subprocess.run(self.argv(host, *argv), capture_output=True, text=True, timeout=timeout)

    def log(self, label: str, stream: str = "err") -> str:
        path = self.tmp / f"{label}.{stream}"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, labels: Iterable[str]) -> None:
        stop_processes([self.procs.pop(label) for label in labels if label in self.procs], timeout_s=10)

    def close(self) -> None:
        """Stop every process (also any a job left behind), then delete the namespaces and their links."""
        stop_processes(self.procs.values(), timeout_s=10)
        self.procs.clear()
        for ns in self.made:
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:  # only processes inside this run's own namespaces
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for ns in reversed(self.made):
            sh("ip", "netns", "del", ns, check=False)
        self.made.clear()
        for log in self._logs:
            log.close()
