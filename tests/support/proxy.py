"""A TCP proxy that delays what clients send: a slow link, made on purpose.

Bytes from each client reach the server ``delay`` seconds late (in order); the server's bytes go
back at once. A client that "subscribed" has then only written its SUB: until the delay has passed
the server does not know it, which turns a race on the order of milliseconds into one that always
shows.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

from shared.embedded import free_port


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send_late() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.create_task(send_late())
    try:
        while chunk := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, chunk))
        queue.put_nowait((0.0, b""))
        await sender
    finally:
        sender.cancel()
        writer.close()


@contextlib.asynccontextmanager
async def delayed(url: str, delay: float) -> AsyncIterator[str]:
    """A ``nats://`` URL that reaches ``url`` with the clients' bytes ``delay`` seconds late."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    pipes: set[asyncio.Task] = set()

    async def accept(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(host, int(port))
        for task in (asyncio.create_task(_pipe(client_r, server_w, delay)),
                     asyncio.create_task(_pipe(server_r, client_w, 0.0))):
            pipes.add(task)
            task.add_done_callback(pipes.discard)

    listen = free_port()
    server = await asyncio.start_server(accept, "127.0.0.1", listen)
    try:
        yield f"nats://127.0.0.1:{listen}"
    finally:
        server.close()
        for task in list(pipes):
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
