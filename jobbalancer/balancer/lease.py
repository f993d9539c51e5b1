"""The leader lease (``lua/lease.lua``): one balancer places jobs, the others stand by.

The lease is a key with a TTL holding ``<epoch>:<owner>``. Every acquisition increments the epoch,
so a token is a term: the scripts that write on the balancer's behalf refuse any token but the
current one (fencing), and a balancer that sees a token different from its last one knows it
starts a new term and must take over what the previous term left (pending inbox entries).
"""

from __future__ import annotations

import time

from jobbalancer.scripts import Scripts

DEFAULT_LEASE_MS = 3000
# The leader renews at most this many times per lease TTL rather than on every pass: a round trip
# saved per pass, and a lease lost in between only means its next fenced write is refused.
RENEWALS_PER_TTL = 6


class Lease:
    """The lease as one balancer holds it.

    Args:
        scripts: the scripts bound to the balancer's client.
        prefix: the key prefix.
        owner: this balancer's name (the token's second half).
        ttl_ms: how long the lease lasts without a renewal.
    """

    def __init__(self, scripts: Scripts, prefix: str, owner: str, ttl_ms: int = DEFAULT_LEASE_MS) -> None:
        if ttl_ms <= 0:
            raise ValueError(f"lease ttl_ms must be > 0, got {ttl_ms!r}")
        self._scripts = scripts
        self._prefix = prefix
        self.owner = owner
        self.ttl_ms = ttl_ms
        self._token: str | None = None
        self._renewed = 0.0  # time.monotonic() before the last successful renewal

    @property
    def token(self) -> str | None:
        """The token of the term we hold, or None when we do not lead."""
        return self._token

    def hold(self) -> bool:
        """Renew the lease we hold, or take it if nobody does; return whether we lead now.

        A token different from the previous one means a new term (a takeover), even for the same
        owner: its lease expired in between and anything may have happened meanwhile.
        """
        now = time.monotonic()
        if self._token is not None and now - self._renewed < self.ttl_ms / 1000 / RENEWALS_PER_TTL:
            return True  # renewed moments ago; every write is fenced by the token regardless
        token = self._scripts.lease(self._prefix, self.owner, self.ttl_ms, self._token or "", "hold")
        self._token = str(token) if token else None
        self._renewed = now
        return self._token is not None

    def release(self) -> None:
        """Give the lease up (if it is still ours) so a standby takes over without waiting."""
        token, self._token = self._token, None
        if token:
            self._scripts.lease(self._prefix, self.owner, self.ttl_ms, token, "release")

    def forget(self) -> None:
        """Drop our token without touching Redis: another balancer's fencing already refused it."""
        self._token = None
