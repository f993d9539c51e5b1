"""Settings: where Redis is (from the environment) and the live cluster settings (``<p>:config``).

Live settings are a Redis hash that ``jb config set`` writes and the balancer and workers re-read
every second, so a change applies without a restart. Every name carries its unit in the
documentation; values are stored as strings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from jobbalancer.errors import InvalidSetting

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "jb"


def redis_url(url: str | None = None) -> str:
    return url or os.environ.get("JB_REDIS_URL") or DEFAULT_URL


def key_prefix(prefix: str | None = None) -> str:
    chosen = prefix or os.environ.get("JB_PREFIX") or DEFAULT_PREFIX
    if not chosen or any(ch.isspace() for ch in chosen):
        raise InvalidSetting(f"prefix {chosen!r} must be non-empty and without spaces")
    return chosen


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise InvalidSetting(f"{name} must be > 0, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if value < 0:
        raise InvalidSetting(f"{name} must be >= 0, got {value!r}")


@dataclass(frozen=True)
class Settings:
    """The live cluster settings, with their defaults.

    Attributes:
        policy: how the balancer picks a worker (a built-in name or ``package.module:Class``).
        max_jobs_per_worker: caps every worker's slots; 0 means no cap.
        heartbeat_timeout: seconds without a heartbeat after which a worker is dead.
        prefetch: the most jobs the balancer may assign to a worker beyond its free slots; each
            worker gets what it finishes in about 50 ms, at least 2 (balancer/fleet.py). Priority
            order is loose by up to that many jobs per worker; 0 keeps it strict.
        poison_limit: deliveries lost with their worker after which a job is failed and dead-lettered.
        kill_grace: seconds between SIGTERM and SIGKILL when a job is killed.
        result_ttl: seconds a finished job record is kept.
        output_cap: bytes of stdout and of stderr kept in the record (the tail, with a marker).
        spec_limit: bytes a job's spec (command, env, or call arguments, as JSON) may take; a
            bigger one is refused at submit.
    """

    policy: str = "least-loaded"
    max_jobs_per_worker: int = 0
    heartbeat_timeout: float = 5.0
    prefetch: int = 32  # lets a worker's slots take short jobs in batches (worker/slots.py)
    poison_limit: int = 3
    kill_grace: float = 2.0
    result_ttl: int = 7 * 24 * 3600
    output_cap: int = 1024 * 1024
    spec_limit: int = 1024 * 1024

    def validate(self, policy_check: Callable[[str], object] | None = None) -> Settings:
        _non_negative("max_jobs_per_worker", self.max_jobs_per_worker)
        _positive("heartbeat_timeout", self.heartbeat_timeout)
        _non_negative("prefetch", self.prefetch)
        _positive("poison_limit", self.poison_limit)
        _non_negative("kill_grace", self.kill_grace)
        _positive("result_ttl", self.result_ttl)
        _positive("output_cap", self.output_cap)
        _positive("spec_limit", self.spec_limit)
        if policy_check is not None:
            policy_check(self.policy)
        return self

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def with_value(self, name: str, text: str) -> Settings:
        """A copy with one setting parsed from text; raises InvalidSetting naming the problem."""
        types = {f.name: f.type for f in fields(self)}
        if name not in types:
            raise InvalidSetting(f"unknown setting {name!r}; known: {', '.join(self.names())}")
        kind = types[name]
        try:
            value: Any = {"int": int, "float": float}.get(str(kind), str)(text)
        except ValueError:
            raise InvalidSetting(f"{name} must be {kind}, got {text!r}") from None
        return replace(self, **{name: value})

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> Settings:
        """Settings from the config hash; unknown or unparsable entries keep their defaults."""
        settings = cls()
        for name in cls.names():
            if name in raw:
                try:
                    settings = settings.with_value(name, raw[name]).validate()
                except InvalidSetting:
                    continue
        return settings

    def to_hash(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}
