"""A redis-server with the ACL users of ``conf/acl`` (one per role), per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobbalancer.server import find_redis_server
from tests.security.servers import SecureRedis, acl_file


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[SecureRedis]:
    acl, passwords = acl_file(tmp_path)
    server = SecureRedis(tmp_path, find_redis_server(), passwords).start(acl)
    yield server
    server.stop()
