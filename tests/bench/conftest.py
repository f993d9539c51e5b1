"""The e2e ``cluster`` and ``running`` fixtures (real ``jb`` subprocesses), for the replay tests."""

from tests.e2e.conftest import cluster, running

__all__ = ["cluster", "running"]
