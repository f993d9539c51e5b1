"""Fixtures of the chaos suite: a cluster of real processes on its own Redis, per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.harness import LONG, SUMMARIES, ChaosCluster


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARIES:
        terminalreporter.section(f"chaos summaries ({'long' if LONG else 'small'} run)")
        for summary in SUMMARIES:
            terminalreporter.write_line(f"{summary.name}: {summary.line()}")


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[ChaosCluster]:
    cluster = ChaosCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()
