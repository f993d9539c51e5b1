"""What a client applies to a job before submitting it: the spec size limit, and its queue's retry defaults.

Both live in Redis: ``spec_limit`` in ``<p>:config``, a queue's defaults in ``<p>:queue:<name>``
(``retries``, ``backoff``, ``backoff_max``). A client reads them at most every ``REFRESH_S``
seconds, so a submit stays one round trip. A queue's defaults fill in what a job did not give: its
retries when they are ``None`` (not given; an explicit 0 stays 0), its backoff (with its cap) when it is ``None`` too. A
job's own values win.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import redis

from jobbalancer.config import Settings
from jobbalancer.errors import InvalidJob
from jobbalancer.job import Options, Spec
from jobbalancer.keys import Keys

REFRESH_S = 5.0


@dataclass(frozen=True)
class QueueDefaults:
    """A queue's retry defaults: extra attempts after a failure, and the backoff between them."""

    retries: int = 0
    backoff_s: float = 0.0
    backoff_max_s: float = 300.0

    def validated(self) -> QueueDefaults:
        Options(retries=self.retries, backoff_s=self.backoff_s, backoff_max_s=self.backoff_max_s).validated()
        return self

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> QueueDefaults:
        """From ``<p>:queue:<name>``; a value that does not parse keeps its default."""
        defaults = cls()
        for name, attr, kind in (("retries", "retries", int), ("backoff", "backoff_s", float),
                                 ("backoff_max", "backoff_max_s", float)):  # fmt: skip
            try:
                value: Any = kind(raw[name])
                candidate = replace(defaults, **{attr: value}).validated()
            except (KeyError, ValueError):
                continue
            defaults = candidate
        return defaults

    def to_hash(self) -> dict[str, str]:
        return {"retries": str(self.retries), "backoff": repr(self.backoff_s), "backoff_max": repr(self.backoff_max_s)}


class SubmitRules:
    """One client's cached view of the rules, refreshed every ``REFRESH_S`` seconds."""

    def __init__(self, client: redis.Redis, keys: Keys, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._keys = keys
        self._clock = clock
        self._limit: tuple[float, int] | None = None
        self._queues: dict[str, tuple[float, QueueDefaults]] = {}

    def prepare(self, spec: Spec, options: Options) -> Options:
        """The options to submit with; raises InvalidJob for a spec over ``spec_limit``."""
        self.check_spec(spec.encode())
        return self.with_defaults(options)

    def check_spec(self, encoded: str) -> None:
        """Raise InvalidJob for an encoded spec over ``spec_limit``."""
        limit = self.spec_limit()
        # a str has at least one UTF-8 byte per character: most specs need no encoding to pass
        size = len(encoded) if len(encoded) * 4 <= limit else len(encoded.encode("utf-8"))
        if size > limit:
            raise InvalidJob(
                f"job spec is {size} bytes, over the limit of {limit} bytes "
                "(pass big data by reference, or raise the setting spec_limit)"
            )

    def with_defaults(self, options: Options) -> Options:
        """``options`` with its queue's retry defaults where it gave none."""
        defaults = self.queue(options.queue)
        if options.retries is None:
            options = replace(options, retries=defaults.retries)
        if options.backoff_s is None:
            options = replace(options, backoff_s=defaults.backoff_s, backoff_max_s=defaults.backoff_max_s)
        return options

    def spec_limit(self) -> int:
        now = self._clock()
        if self._limit is None or now - self._limit[0] > REFRESH_S:
            raw: Any = self._client.hget(self._keys.config, "spec_limit")
            limit = Settings.from_hash({"spec_limit": raw} if raw is not None else {}).spec_limit
            self._limit = (now, limit)
        return self._limit[1]

    def queue(self, name: str) -> QueueDefaults:
        now = self._clock()
        cached = self._queues.get(name)
        if cached is None or now - cached[0] > REFRESH_S:
            raw: Any = self._client.hgetall(self._keys.queue(name))
            cached = (now, QueueDefaults.from_hash(raw))
            self._queues[name] = cached
        return cached[1]
