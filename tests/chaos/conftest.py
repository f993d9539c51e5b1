"""Fixtures of the chaos suite: a cluster of real processes on its own Redis, per test.

A run of the whole suite (``make test``) keeps only the small chaos run (``test_run.py``): each
fault's own test costs seconds of heartbeat timeouts. They run with ``make chaos``
(``JB_CHAOS_LONG=1``), or whenever tests/chaos or the ``chaos`` marker is named on the command line.
"""

from __future__ import annotations

import pytest

from tests.chaos.harness import LONG


def _chaos_asked_for(config: pytest.Config) -> bool:
    return LONG or "chaos" in (config.option.markexpr or "") or any("chaos" in arg for arg in config.args)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _chaos_asked_for(config):
        return
    keep, dropped = [], []
    for item in items:
        own_test = "tests/chaos/" in item.nodeid and not item.nodeid.startswith("tests/chaos/test_run.py")
        (dropped if own_test else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
