"""The leader adopting the config hash (``<p>:config``) it re-reads about once a second.

A value that does not validate, or a policy that does not load, keeps the previous one; each bad
value is logged once, not at every re-read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from jobbalancer.balancer.policies import Policy, load_policy
from jobbalancer.config import Settings
from jobbalancer.errors import InvalidSetting

log = logging.getLogger("jobbalancer.balancer")


class Adopter:
    """Turns the raw config hash into settings, remembering which bad values it already reported.

    Args:
        where: the config key's name, for the warnings.
    """

    def __init__(self, where: str) -> None:
        self._where = where
        self._reported: set[tuple[str, str]] = set()

    def adopt(self, raw: Mapping[str, str], current: Settings) -> tuple[Settings, Policy | None]:
        """The settings ``raw`` gives, falling back to ``current`` value by value; and the new
        policy, loaded, when the policy changed (None when it did not, or did not load)."""
        settings = Settings()
        for name in Settings.names():
            if name not in raw:
                continue
            try:
                settings = settings.with_value(name, raw[name]).validate()
            except InvalidSetting as exc:
                self._warn(name, raw[name], exc)
                settings = replace(settings, **{name: getattr(current, name)})
        policy = None
        if settings.policy != current.policy:
            try:
                policy = load_policy(settings.policy)
                log.info("policy is now %r", settings.policy)
            except InvalidSetting as exc:
                self._warn("policy", settings.policy, exc)
                settings = replace(settings, policy=current.policy)
        return settings, policy

    def _warn(self, name: str, text: str, exc: InvalidSetting) -> None:
        if (name, text) not in self._reported:
            self._reported.add((name, text))
            log.warning("ignoring %s=%r in %s: %s", name, text, self._where, exc)
