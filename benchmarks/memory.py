"""Redis memory per finished job, and whether the streams stay bounded.

Starts its own redis-server and `jb up --workers 2` (default settings), runs N no-op call jobs
through, and reports: the growth of Redis's `used_memory` per finished job, the size of one
finished record (`MEMORY USAGE`), and the length of every stream afterwards (inbox, worker
streams, events), which must not grow with N.

    .venv/bin/python benchmarks/memory.py [--jobs 20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from jobbalancer import Client
from jobbalancer.bench.measure import PREFIX, UpOptions, free_port, jb_up, throughput, warm_up
from jobbalancer.job import Spec
from jobbalancer.server import EmbeddedRedis

REPO = Path(__file__).resolve().parent.parent


def used_memory(client: Client) -> int:
    info: Any = client.redis.info("memory")
    return int(info["used_memory"])


def stream_lengths(client: Client) -> dict[str, int]:
    names: Any = client.redis.zrange(client.keys.workers, 0, -1)
    keys = [client.keys.inbox, client.keys.events, client.keys.dead] + [client.keys.worker_jobs(n) for n in names]
    return {key: int(client.redis.xlen(key)) for key in keys if client.redis.exists(key)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--allow-root", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jb-mem-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", free_port()).start()
        try:
            options = UpOptions(paths=[str(REPO / "workers")], allow_root=args.allow_root)
            with jb_up(server.url, Path(tmp) / "up.log", options):
                client = Client(server.url, PREFIX)
                warm_up(client)
                before = used_memory(client)
                throughput(client, Spec.for_call("tasks:noop"), args.jobs, "no-op")
                after = used_memory(client)
                sample = client.jobs(limit=1)[0].id
                record: Any = client.redis.memory_usage(client.keys.job(sample))
                print(f"jobs: {args.jobs}")
                print(f"used_memory growth per finished job: {(after - before) / args.jobs:.0f} bytes")
                print(f"one finished record (MEMORY USAGE {client.keys.job(sample)}): {record} bytes")
                for key, length in stream_lengths(client).items():
                    print(f"XLEN {key}: {length}")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
