"""The web gateway in a test: served by uvicorn on a free loopback port, in the test's event loop,
against the test's real NATS (as the service identity ``web``); and identities' creds to log in with."""
from __future__ import annotations

import asyncio
import contextlib
import socket

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
