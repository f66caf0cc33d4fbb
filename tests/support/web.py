"""The web gateway in a test: served by uvicorn on a free loopback port, in the test's event loop,
against the test's real NATS (as the service identity ``web``); and identities' creds to log in with."""
from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

import httpx
import uvicorn

from services.web.config import Config as WebConfig
from services.web.server import server_config
from shared.config import Config
from shared.identity import Identity
from tests.support.bus import authority_for, service_creds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def gateway(nats_url: str, **settings):
    """The gateway's base URL while it serves."""
    shared = Config(nats_url=nats_url, nats_creds=service_creds(nats_url, "web"))
    config = WebConfig(shared=shared, port=free_port(), **settings)
    server = uvicorn.Server(server_config(config))
    server.capture_signals = contextlib.nullcontext  # the test runner owns the signals
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        if task.done():
            task.result()
        assert server.started, "the gateway did not start"
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def creds(nats_url: str, identity: Identity) -> tuple[str, str]:
    """A fresh key and its creds text for ``identity``, minted by the server's authority:
    ``(public key, creds)``."""
    return authority_for(nats_url).user_creds(identity)


async def login(http: httpx.AsyncClient, creds_text: str) -> dict[str, str]:
    """Log in; the headers that carry the token."""
    reply = await http.post("/v1/tokens", content=creds_text, headers={"content-type": "text/plain"})
    assert reply.status_code == 201, reply.text
    return {"authorization": f"Bearer {reply.json()['token']}"}


@dataclass
class Sse:
    """One server-sent message (``event`` None and ``comment`` set: a comment line)."""

    event: str | None = None
    id: str | None = None
    data: str = ""
    comment: str | None = None


async def sse(response: httpx.Response):
    """The messages of a ``text/event-stream`` response as they come."""
    message, lines = Sse(), []
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield Sse(comment=line[1:].strip())
        elif not line:
            if message.event is not None or lines:
                message.data = "\n".join(lines)
                yield message
            message, lines = Sse(), []
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                lines.append(value)
            elif name in ("event", "id"):
                setattr(message, name, value)


async def login_form(http: httpx.AsyncClient, creds_text: str) -> httpx.Response:
    """Log in as a browser does: the form with the creds file."""
    return await http.post("/login", files={"creds": ("me.creds", creds_text.encode(), "application/octet-stream")})
