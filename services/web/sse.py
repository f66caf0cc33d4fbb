"""Server-sent events: the message format, and a response that ends the moment the client goes.

Starlette's ``StreamingResponse`` notices a client gone only on some servers' versions of the ASGI
spec, and leaves an async generator suspended at ``yield`` for the garbage collector; a live page
must leave its hub at once. :class:`EventStream` watches ``http.disconnect`` itself and closes its
generator (running its ``finally``) when the client goes, whichever happens first.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
from typing import AsyncIterator

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

_LINES = re.compile(r"\r\n|\r|\n")


def message(data: str, event: str | None = None, id: int | str | None = None) -> str:
    """One SSE message. Every line of ``data`` gets its own ``data:`` field, so no text in it
    (a carriage return included: SSE ends a line there too) can start a field of its own."""
    head = "".join(f"{name}: {_LINES.sub(' ', str(value))}\n"
                   for name, value in (("id", id), ("event", event)) if value is not None)
    return head + "".join(f"data: {line}\n" for line in _LINES.split(data)) + "\n"


def comment(text: str) -> str:
    """A comment line: ignored by ``EventSource``, it keeps proxies from closing an idle stream."""
    return f": {_LINES.sub(' ', text)}\n\n"


class EventStream(Response):
    """``text/event-stream`` from an async iterator of messages (:func:`message`, :func:`comment`)."""

    media_type = "text/event-stream"

    def __init__(self, messages: AsyncIterator[str], headers: dict[str, str] | None = None) -> None:
        self.messages = messages
        self.status_code = 200
        self.background = None
        # no-cache: a proxy must not hold it; X-Accel-Buffering: nginx must not buffer it
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})

        async def pump() -> None:
            async for text in self.messages:
                await send({"type": "http.response.body", "body": text.encode(), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.create_task(pump()), asyncio.create_task(gone())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() and not isinstance(task.exception(), OSError):
                    raise task.exception()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            aclose = getattr(self.messages, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
