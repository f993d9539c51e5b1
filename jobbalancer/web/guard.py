"""Who may talk to the dashboard: Host allow-list, same-origin writes, a bearer token, never root.

The guard is plain ASGI middleware in front of everything, so no route can forget it:

1. an unknown ``Host`` header is refused (400): a DNS-rebinding page cannot reach a server bound
   to 127.0.0.1 under a name of its own;
2. a write (POST, PUT, PATCH, DELETE) whose ``Origin`` or ``Sec-Fetch-Site`` says another site
   sent it is refused (403);
3. ``/api/*`` and ``/metrics`` need ``Authorization: Bearer <token>`` (401 otherwise).

The token is kept in the page's session storage and sent as a header, never as a cookie, so a
browser never attaches it on its own.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import psutil
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobbalancer.errors import JobBalancerError

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})
PROTECTED = ("/api/", "/metrics")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
]


class WebError(JobBalancerError):
    """The web server refuses to start (running as root without permission)."""


def new_token() -> str:
    """A random token for a server started without ``JB_WEB_TOKEN``."""
    return secrets.token_urlsafe(24)


def refuse_root(allow_root: bool) -> None:
    """Raise WebError when running as root without ``--allow-root`` or ``JB_ALLOW_ROOT=1``, as the worker does."""
    if os.geteuid() == 0 and not allow_root and os.environ.get("JB_ALLOW_ROOT") != "1":
        raise WebError(
            "refusing to serve the dashboard as root: a flaw in it would hand out full control of this machine. "
            "Run it as an unprivileged user, or allow it explicitly with --allow-root or JB_ALLOW_ROOT=1."
        )


def allowed_hosts(bind_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names a server bound to ``bind_host`` answers to.

    Loopback names always; the bound address itself; for a wildcard bind, this machine's names and
    every address of its interfaces; plus ``extra`` (say, the name a proxy forwards).
    """
    hosts = set(LOOPBACK) | {h.strip().lower() for h in extra if h.strip()}
    if bind_host not in ANY_ADDRESS:
        hosts.add(bind_host.lower())
        return frozenset(hosts)
    hosts |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    for addresses in psutil.net_if_addrs().values():
        hosts |= {a.address.split("%")[0].lower() for a in addresses if a.family in (socket.AF_INET, socket.AF_INET6)}
    return frozenset(hosts)


def host_name(host_header: str) -> str:
    """``example.org:8080`` -> ``example.org``; ``[::1]:8080`` -> ``::1``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware enforcing the three checks above on every HTTP request."""

    def __init__(self, app: ASGIApp, token: str, hosts: Iterable[str]) -> None:
        if not token:
            raise ValueError("the dashboard needs a non-empty token")
        self.app = app
        self.token = token.encode()
        self.hosts = frozenset(hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self.refusal(scope["method"], scope["path"], headers)
        if refusal is not None:
            status, message = refusal
            await _json(send, status, message, status == 401)
            return
        await self.app(scope, receive, _with_headers(send))

    def refusal(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        """(status, message) when the request must be refused, else None."""
        host = headers.get("host", "")
        if host_name(host) not in self.hosts:
            return 400, f"unknown Host header {host!r}; start `jb web` with --allow-host to accept it"
        if method in WRITE_METHODS and not _same_origin(host, headers):
            return 403, "cross-origin writes are refused"
        if path.startswith(PROTECTED):
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not given:
                return 401, "missing bearer token: send 'Authorization: Bearer <token>'"
            if not hmac.compare_digest(given.strip().encode(), self.token):
                return 401, "wrong bearer token"
        return None


def _same_origin(host: str, headers: dict[str, str]) -> bool:
    origin = headers.get("origin")
    if origin is not None:
        return origin != "null" and urlsplit(origin).netloc.lower() == host.strip().lower()
    # No Origin (curl, or an old browser): trust Fetch Metadata if it is there.
    return headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {name for name, _ in headers}
            message["headers"] = headers + [(name, value) for name, value in SECURITY_HEADERS if name not in present]
        await send(message)

    return wrapped


async def _json(send: Send, status: int, message: str, challenge: bool) -> None:
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if challenge:
        headers.append((b"www-authenticate", b'Bearer realm="jobbalancer"'))
    await send({"type": "http.response.start", "status": status, "headers": headers + SECURITY_HEADERS})
    await send({"type": "http.response.body", "body": body})
