"""Measure one peer job queue: start its workers, warm them up, time bulk runs, stop them.

Runs with the peers' virtualenv (``benchmarks/.peers-venv``), where the peers are installed;
``side_by_side.py`` calls it once per system and reads the JSON it prints on stdout::

    .peers-venv/bin/python peers/drive.py --system huey --url redis://127.0.0.1:PORT/0 \\
        --noop-jobs 20000 --true-jobs 2000 --rounds 3 --log huey.log

Each peer module (``peer_<name>.py``) holds that system's tasks and a ``Peer`` class with
``slots``, ``label`` (with a ``{version}`` field), ``setup``, ``worker_commands(bin_dir)``,
``reset()``, ``submit(kind, count)``, ``finished(count)`` (cheap: polled every few ms) and
``failures()`` (checked after the timed part).

A round submits ``count`` jobs of one kind and waits until the system's own bookkeeping says
they are all done: jobs / (done − just before the submit), by this process's monotonic clock.
Start-up of the workers is excluded: they run a warm-up of both kinds first.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
POLL_S = 0.005
STOP_TIMEOUT_S = 20.0
# system -> (module, variant, distribution whose version is reported)
SYSTEMS = {
    "huey": ("peer_huey", "", "huey"),
    "dramatiq": ("peer_dramatiq", "", "dramatiq"),
    "celery": ("peer_celery", "", "celery"),
    "rq-simple": ("peer_rq", "simple", "rq"),
    "rq-fork": ("peer_rq", "fork", "rq"),
}


def start(commands: list[list[str]], log: IO[bytes]) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(argv, cwd=HERE, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
        for argv in commands
    ]  # fmt: skip


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each worker's process group (its forks and pool children too), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        if all(proc.poll() is not None for proc in procs):
            return


def run_batch(peer: Any, kind: str, count: int, timeout_s: float, procs: list[subprocess.Popen[bytes]]) -> float:
    """Submit ``count`` jobs of ``kind`` and wait for them; returns jobs per second."""
    peer.reset()
    began = time.monotonic()
    peer.submit(kind, count)
    while not peer.finished(count):
        if time.monotonic() - began > timeout_s:
            raise TimeoutError(f"{kind} jobs not done after {timeout_s:.0f}s")
        if any(proc.poll() is not None for proc in procs):
            raise RuntimeError(f"a worker process exited with {[p.returncode for p in procs]}")
        time.sleep(POLL_S)
    rate = count / (time.monotonic() - began)
    failed = peer.failures()
    if failed:
        raise RuntimeError(f"{failed} of {count} {kind} jobs failed")
    return rate


def measure(args: argparse.Namespace) -> dict[str, Any]:
    module_name, variant, dist = SYSTEMS[args.system]
    os.environ["BENCH_REDIS_URL"] = args.url  # read by the peer module here and in its workers
    module = importlib.import_module(module_name)
    peer = module.Peer(args.url, variant)
    bin_dir = Path(sys.executable).parent
    with open(args.log, "ab") as log:
        procs = start(peer.worker_commands(bin_dir), log)
        try:
            for kind in ("noop", "true"):
                run_batch(peer, kind, 4 * peer.slots, args.start_timeout, procs)
            rounds = []
            for number in range(1, args.rounds + 1):
                print(f"  {args.system} round {number}/{args.rounds} ...", file=sys.stderr, flush=True)
                noop = run_batch(peer, "noop", args.noop_jobs, args.timeout, procs)
                true = run_batch(peer, "true", args.true_jobs, args.timeout, procs)
                rounds.append({"noop_rate": noop, "true_rate": true})
        finally:
            stop(procs)
    return {
        "system": args.system,
        "label": peer.label.format(version=version(dist)),
        "setup": peer.setup,
        "jobs": {"noop_rate": args.noop_jobs, "true_rate": args.true_jobs},
        "rounds": rounds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--system", choices=sorted(SYSTEMS), required=True)
    parser.add_argument("--url", required=True, help="Redis URL")
    parser.add_argument("--noop-jobs", type=int, default=20_000)
    parser.add_argument("--true-jobs", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one batch may take")
    parser.add_argument("--start-timeout", type=float, default=60.0, help="seconds the warm-up may take")
    parser.add_argument("--log", type=Path, default=Path(os.devnull), help="where the workers' output goes")
    args = parser.parse_args()
    json.dump(measure(args), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
