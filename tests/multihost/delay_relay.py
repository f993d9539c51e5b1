"""A TCP relay that holds every byte for a fixed delay in each direction: latency without netem.

Some kernels (minimal VM kernels) are built without ``sch_netem``, so ``tc ... netem delay`` is
refused there. The multi-host test then runs this relay on the worker's host, in front of Redis:
each chunk read is written on ``--delay-ms`` later, in order, which is what a slow link does to
the worker's traffic (bandwidth aside). It serves only its own test and stops by itself after
``--lifetime-s``.

Usage: python delay_relay.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT --delay-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay_s`` after it arrived."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay_s, data))
        queue.put_nowait((0.0, b""))
        await sender
    finally:
        sender.cancel()
        writer.close()


async def relay(target: tuple[str, int], delay_s: float, down: asyncio.StreamReader, up: asyncio.StreamWriter) -> None:
    """One client connection: open the target, then pump both ways until either side closes."""
    try:
        target_reader, target_writer = await asyncio.open_connection(*target)
    except OSError:
        up.close()
        return
    with contextlib.suppress(OSError, asyncio.CancelledError):
        await asyncio.gather(pump(down, target_writer, delay_s), pump(target_reader, up, delay_s))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("listen_host")
    parser.add_argument("listen_port", type=int)
    parser.add_argument("target_host")
    parser.add_argument("target_port", type=int)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--lifetime-s", type=float, default=120.0)
    args = parser.parse_args()
    target, delay_s = (args.target_host, args.target_port), args.delay_ms / 1000

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await relay(target, delay_s, reader, writer)

    server = await asyncio.start_server(handle, args.listen_host, args.listen_port)
    async with server:
        await asyncio.sleep(args.lifetime_s)


if __name__ == "__main__":
    asyncio.run(main())
