"""The follower: one thread copies every command's pipes into its output and reaps it at once."""

from __future__ import annotations

import os
import threading
import time

import fakeredis
import psutil

from jobbalancer.worker.follow import FOLLOWER
from jobbalancer.worker.output import Output
from jobbalancer.worker.spawn import Process, spawn
from tests.helpers import wait_for


def start(script: str) -> Process:
    return spawn(["/bin/sh", "-c", script], dict(os.environ))


def output(cap_bytes: int = 1_000_000) -> tuple[Output, fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis(decode_responses=True)
    return Output(client, "t:job:1:out", cap_bytes), client


def test_both_streams_are_captured_whole_and_the_exit_code_kept() -> None:
    out, client = output()
    wake = threading.Event()
    proc = start("head -c 200000 /dev/zero | tr '\\0' x; echo oops >&2; exit 3")
    followed = FOLLOWER.follow(proc, out, wake)
    assert followed.exited.wait(10) and followed.drained.wait(10) and wake.is_set()
    assert proc.returncode == 3
    assert out.stdout == "x" * 200000 and out.stderr == "oops\n"
    streamed = "".join(fields["data"] for _id, fields in client.xrange("t:job:1:out") if fields["fd"] == "1")
    assert streamed == "x" * 200000  # the live stream got every byte too, across many reads


def test_an_exit_is_seen_at_once_while_a_process_it_left_holds_the_pipe() -> None:
    out, _client = output()
    proc = start("sleep 30 & echo $!; exit 0")
    followed = FOLLOWER.follow(proc, out, threading.Event())
    began = time.monotonic()
    assert followed.exited.wait(10) and proc.returncode == 0
    assert time.monotonic() - began < 1.0
    leftover = psutil.Process(int(wait_for(lambda: out.stdout.strip(), 5, what="the leftover's pid")))
    assert not followed.drained.is_set()  # the leftover still holds stdout open
    leftover.kill()
    assert followed.drained.wait(10)


def test_many_commands_share_one_thread() -> None:
    runs = [(output()[0], start(f"echo {n}")) for n in range(20)]
    followed = [FOLLOWER.follow(proc, out, threading.Event()) for out, proc in runs]
    # One thread (an idle one from an earlier test may be just ending: wait for it to go).
    wait_for(lambda: sum(t.name == "jb-follow" for t in threading.enumerate()) == 1, 5, what="one follower")
    for n, (job, (out, proc)) in enumerate(zip(followed, runs, strict=True)):
        assert job.exited.wait(10) and job.drained.wait(10)
        assert out.stdout == f"{n}\n" and proc.returncode == 0
