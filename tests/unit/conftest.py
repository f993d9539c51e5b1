"""Fixtures of the unit tests that run call jobs in real worker children."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobbalancer.worker.call_pool import CallPool
from jobbalancer.worker.guardian import Guardian

TASKS = """
import os, threading, time

def pid():
    print('pid', end='')
    return os.getpid()

def slow(seconds, marker=None):
    print('before', flush=True)
    if marker:
        open(marker, 'w').close()
    time.sleep(seconds)
    return 'too late'

def leak(marker):
    def late():
        time.sleep(0.2)
        print('late, from a finished job')
        open(marker, 'w').close()
    threading.Thread(target=late).start()
    return 'left a thread'

def boom():
    raise ValueError('nope')

def big(n):
    print('x' * n)
    return 'y' * n

def value():
    return {'b': [1, 2.5, None, True], 'a': 'd\\u00e9j\\u00e0 vu', '3': 1e16}

def touch(path, text=''):
    print(text, end='')
    open(path, 'w').close()
    return os.getpid()

def die():
    os._exit(3)
"""


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[CallPool]:
    (tmp_path / "call_tasks.py").write_text(TASKS)
    calls = CallPool(str(tmp_path), [str(tmp_path)], Guardian())  # not started: watches nothing
    yield calls
    calls.close()
