"""Where a worker puts its jobs' cgroups (pure), and one job cgroup on the real kernel where it may."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from jobbalancer.worker.cgroup import (
    EXIT_NO_CGROUP,
    Cgroups,
    JobCgroup,
    Unavailable,
    choose_root,
    own_cgroup,
    safe_name,
    v2_mount,
)
from jobbalancer.worker.guardian import Guardian
from tests.helpers import wait_for

HYBRID_MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
PURE_V2_MOUNTS = "proc /proc proc rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n"
V1_ONLY_MOUNTS = "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n"
HYBRID_CGROUP = "9:name=systemd:/\n4:memory:/process_api/cf24\n1:cpu:/\n0::/\n"
SERVICE_CGROUP = "0::/system.slice/jobbalancer-worker@w1.service\n"


@pytest.mark.parametrize(
    ("proc_cgroup", "mounts", "configured", "root"),
    [
        (HYBRID_CGROUP, HYBRID_MOUNTS, None, "/sys/fs/cgroup/unified"),
        (SERVICE_CGROUP, PURE_V2_MOUNTS, None, "/sys/fs/cgroup/system.slice/jobbalancer-worker@w1.service"),
        (SERVICE_CGROUP, PURE_V2_MOUNTS, "/sys/fs/cgroup/jobs", "/sys/fs/cgroup/jobs"),
        ("", V1_ONLY_MOUNTS, "/sys/fs/cgroup/jobs", "/sys/fs/cgroup/jobs"),  # configured: no need to look
    ],
)
def test_the_root_is_the_configured_one_or_the_workers_own_cgroup(proc_cgroup, mounts, configured, root) -> None:
    assert choose_root(proc_cgroup, mounts, configured) == Path(root)


@pytest.mark.parametrize(
    ("proc_cgroup", "mounts", "configured", "why"),
    [
        (HYBRID_CGROUP, HYBRID_MOUNTS, "off", "JB_CGROUP_ROOT=off"),
        ("4:memory:/x\n", V1_ONLY_MOUNTS, None, "no cgroup2 mount"),
        ("4:memory:/x\n", PURE_V2_MOUNTS, None, "in no cgroup v2"),
        (HYBRID_CGROUP, HYBRID_MOUNTS, "jobs", "not an absolute path"),
    ],
)
def test_no_root_says_why(proc_cgroup, mounts, configured, why) -> None:
    with pytest.raises(Unavailable, match=why):
        choose_root(proc_cgroup, mounts, configured)


def test_parsing_the_proc_files() -> None:
    assert v2_mount(r"cgroup2 /mnt/my\040cgroups cgroup2 rw 0 0") == "/mnt/my cgroups"
    assert v2_mount(V1_ONLY_MOUNTS) is None
    assert own_cgroup("1:cpu:/a\n0::/b/c\n") == "/b/c"
    assert own_cgroup("1:cpu:/a\n") is None


def test_a_worker_name_becomes_a_safe_directory_name() -> None:
    assert safe_name("host-1.w_2") == "host-1.w_2"
    assert safe_name("a/../b c") == "a_.._b_c"
    assert len(safe_name("w" * 300)) == 100


def test_a_plain_directory_is_refused_and_the_worker_logs_why(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("JB_CGROUP_ROOT", str(tmp_path))
    with caplog.at_level(logging.INFO, "jobbalancer.worker"):
        assert Cgroups.discover() is None
    assert f"cgroups: not used ({tmp_path} is not a cgroup v2 directory)" in caplog.text
    assert list(tmp_path.iterdir()) == []  # the probe made nothing there


@pytest.fixture
def cgroups() -> Iterator[Cgroups]:
    found = Cgroups.discover()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root with a writable cgroup v2: the worker must find it")
        pytest.skip("no writable cgroup v2 here (not root, or no cgroup2 mount); CI has one")
    yield found


def test_a_job_cgroup_catches_a_double_fork_with_a_cleared_environment(cgroups: Cgroups) -> None:
    cgroup = cgroups.create("unit")
    assert cgroup is not None and cgroup.path.parent == cgroups.root and cgroup.path.is_dir()
    try:
        with cgroup.entering() as enter:
            leader = subprocess.Popen(
                ["/bin/sh", "-c", "(setsid env -i sleep 1000 &)"], start_new_session=True, preexec_fn=enter
            )
        assert leader.wait(10) == 0
        escapee = psutil.Process(wait_for(cgroup.pids, 5, what="the escapee in the cgroup")[0])
        wait_for(lambda: escapee.cmdline() == ["sleep", "1000"], 5, what="the escapee to exec sleep")
        assert escapee.ppid() != leader.pid and "JB_JOB_ID" not in escapee.environ() and cgroup.populated()
    finally:
        left = cgroup.remove()
    assert left == 1  # one process was left: killed
    wait_for(lambda: not psutil.pid_exists(escapee.pid) or escapee.status() == psutil.STATUS_ZOMBIE, 5)
    assert not cgroup.path.exists() and not cgroup.populated() and cgroup.pids() == []


def test_an_empty_cgroup_is_removed_and_a_stale_one_is_replaced(cgroups: Cgroups) -> None:
    cgroup = cgroups.create("unit")
    assert cgroup is not None
    assert cgroup.remove() == 0 and not cgroup.path.exists()
    again = Cgroups(cgroups.root)  # numbers from 1 again: the same name as a leftover would have
    stale = again.create("unit")
    assert stale is not None
    fresh = Cgroups(cgroups.root).create("unit")
    assert fresh == stale and fresh.path.is_dir()
    JobCgroup(fresh.path).remove()
    assert not fresh.path.exists()


def test_a_shell_command_enters_its_cgroup_first_and_keeps_its_name(cgroups: Cgroups) -> None:
    cgroup = cgroups.create("unit")
    assert cgroup is not None
    script = cgroup.shell_prefix() + 'cat /proc/self/cgroup; echo "$0 $#"'
    shown = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert cgroup.remove() == 0
    assert f"0::/{cgroup.path.relative_to(cgroups.root)}" in shown.splitlines()[-2]
    assert shown.splitlines()[-1] == "/bin/sh 0"  # $0 and $@ are the command's own


def test_a_shell_command_that_cannot_enter_its_cgroup_does_not_run(cgroups: Cgroups, tmp_path: Path) -> None:
    cgroup = cgroups.create("unit")
    assert cgroup is not None and cgroup.remove() == 0  # gone: entering it fails
    ran = tmp_path / "ran"
    done = subprocess.run(["/bin/sh", "-c", cgroup.shell_prefix() + f"touch {ran}"], capture_output=True, text=True)
    assert done.returncode == EXIT_NO_CGROUP and "cgroup.procs" in done.stderr and not ran.exists()


def test_a_cleared_cgroup_is_kept_empty_for_the_next_job(cgroups: Cgroups) -> None:
    cgroup = cgroups.create("unit")
    assert cgroup is not None
    try:
        assert cgroup.clear() == (0, True) and cgroup.path.is_dir()  # nothing ran: kept as it is
        script = cgroup.shell_prefix() + f"mkdir {cgroup.path / 'own'}; (setsid env -i sleep 1000 &)"
        subprocess.run(["/bin/sh", "-c", script], check=True, start_new_session=True)
        escapee = psutil.Process(wait_for(cgroup.pids, 5, what="the escapee in the cgroup")[0])
        assert cgroup.clear() == (1, True)  # the leftover killed, the job's own cgroup removed
        wait_for(lambda: not psutil.pid_exists(escapee.pid) or escapee.status() == psutil.STATUS_ZOMBIE, 5)
        assert cgroup.path.is_dir() and not (cgroup.path / "own").exists() and cgroup.pids() == []
    finally:
        cgroup.remove()
    assert cgroup.clear() == (0, False)  # gone: not to be reused


def test_the_guardian_reuses_emptied_cgroups_and_removes_them_when_it_closes(cgroups: Cgroups) -> None:
    guardian = Guardian()
    guardian.start()
    try:
        assert guardian.cgroups is not None
        first, second = guardian.cgroup_for("unit"), guardian.cgroup_for("unit")
        assert first is not None and second is not None and first != second  # two jobs at once: two
        assert guardian.release_cgroup(first) == 0
        assert guardian.cgroup_for("unit") == first  # emptied: reused, not made anew
        guardian.release_cgroup(first)
        guardian.release_cgroup(second)
    finally:
        guardian.close()
    assert not first.path.exists() and not second.path.exists()


def test_a_pooled_cgroup_rereads_its_files_through_two_kept_descriptors(cgroups: Cgroups) -> None:
    def open_files() -> list[str]:
        found = []
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor, closed since
                found.append(os.readlink(f"/proc/self/fd/{fd}"))
        return sorted(found)

    before = open_files()
    cgroup = cgroups.create("unit")
    assert cgroup is not None
    try:
        for _ in range(3):  # each round: a job that leaves a process behind, then one that does not
            sleeper = subprocess.Popen(["/bin/sh", "-c", cgroup.shell_prefix() + "exec sleep 1000"])
            wait_for(cgroup.populated, 5, what="the job in its cgroup")  # read anew, not a stale first read
            assert cgroup.clear() == (1, True)
            sleeper.wait(5)
            subprocess.run(["/bin/sh", "-c", cgroup.shell_prefix() + "true"], check=True)
            assert cgroup.clear() == (0, True)
        kept = [name for name in open_files() if name not in before]
        assert sorted(Path(name).name for name in kept) == ["cgroup.events", "cgroup.stat"]
    finally:
        assert cgroup.remove() == 0
    assert open_files() == before  # removing it closed them
