"""The guardian's look at each job's process tree: the kernel's children files, as psutil sees it."""

from __future__ import annotations

import subprocess

import psutil

from jobbalancer.worker.guardian import _remember, descendant_pids
from tests.helpers import wait_for

# A tree three deep, with a child started from a second thread of a Python process.
TREE = (
    "sleep 60 & (sleep 60 & sleep 60) & "
    "python3 -c 'import subprocess, threading, time; "
    'threading.Thread(target=lambda: subprocess.Popen(["sleep", "60"])).start(); time.sleep(60)\' & wait'
)


def test_the_children_files_find_the_tree_psutil_finds() -> None:
    leader = subprocess.Popen(["/bin/sh", "-c", TREE], start_new_session=True)
    try:
        # sleep; a subshell and its sleep (its last command is exec'd); python and its thread's sleep.
        wait_for(lambda: _whole(leader.pid), 10, what="the whole tree")
        expected = {p.pid for p in psutil.Process(leader.pid).children(recursive=True)}
        assert set(descendant_pids(leader.pid)) == expected
        for children_files in (True, False):
            groups: dict[int, dict[int, psutil.Process]] = {leader.pid: {}}
            _remember(groups, children_files)
            assert set(groups[leader.pid]) == expected
    finally:
        for process in psutil.Process(leader.pid).children(recursive=True):
            process.kill()
        leader.kill()
        leader.wait()
    assert descendant_pids(leader.pid) == []  # gone: nothing


def _whole(pid: int) -> bool:
    """True once the tree is complete: five processes, the Python one's thread's sleep among them."""
    try:
        tree = psutil.Process(pid).children(recursive=True)
        python = [p for p in tree if p.name().startswith("python")]
        return len(tree) == 5 and len(python) == 1 and bool(python[0].children())
    except psutil.Error:  # one being started is gone meanwhile (an exec, or a fork on its way)
        return False
