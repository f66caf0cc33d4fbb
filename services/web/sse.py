"""Server-sent events: a response that streams frames and stops the moment the client is gone.

Starlette's ``StreamingResponse`` notices a client that left only on its next write when the
server speaks ASGI 2.4 (it then stops listening for ``http.disconnect``); an idle feed writes only
a keep-alive every 15 s, and would hold its JetStream pull that long for nobody. Here a watcher
waits on ``receive()`` for the disconnect and cancels the stream at once, whatever the server's
ASGI version, so the frames' generator runs its ``finally`` (its pull stops) right away.

The generator is resumed only after ``send`` returned for the frame it yielded: code after a
``yield`` runs once that frame was handed to the connection (what the feed acknowledges on).
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from shared import log as logging
from shared.tasks import cancel

log = logging.get("web.sse")

HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}


def frame(data: str | bytes, *, event: str | None = None, id: int | str | None = None) -> bytes:
    """One message: ``id:``, ``event:`` and a ``data:`` line per line of ``data``."""
    text = data.decode() if isinstance(data, bytes) else data
    head = (f"id: {id}\n" if id is not None else "") + (f"event: {event}\n" if event else "")
    return (head + "".join(f"data: {line}\n" for line in text.split("\n")) + "\n").encode()


def comment(text: str = "") -> bytes:
    """A comment line: clients ignore it; it keeps proxies and idle timers from closing the stream."""
    return f": {text}\n\n".encode()


class EventStream(Response):
    media_type = "text/event-stream"

    def __init__(self, frames: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> None:
        self.frames = frames
        self.status_code = 200
        self.background = None
        self.init_headers({**HEADERS, **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        gone = asyncio.ensure_future(self._watch(receive))
        stream = asyncio.ensure_future(self._pump(send, gone))
        try:
            await asyncio.wait({stream, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Cancelled again until they end: a cancellation can be swallowed (asyncio.wait_for in
            # a NATS request whose reply arrives at that moment), and a stream left running would
            # go on taking events for a client that is gone.
            await cancel(gone, grace=0.05)
            await cancel(stream, grace=0.05)
            await self.frames.aclose()
        if not stream.cancelled() and stream.exception() is not None:
            log.warning("sse.failed", error=repr(stream.exception()))
        if not gone.cancelled():
            return  # the client left: nothing more to send
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, send: Send, gone: asyncio.Future) -> None:
        async for chunk in self.frames:
            if gone.done():
                return  # the server would drop it silently: the frame was never written
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

    @staticmethod
    async def _watch(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
