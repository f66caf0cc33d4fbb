"""NATS connection and the one JetStream stream, ``CORDON``.

The stream is declared here and nowhere else. Commands and queries (``cordon.cmd.>``,
``cordon.qry.>``) stay out of it, or a request would be answered by the stream's PubAck.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, TypeVar

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from shared import log as logging
from shared.subjects import EVENTS_ROOT, STREAM

log = logging.get("bus")


def servers(url: str) -> list[str]:
    """The server URLs in ``url``: one (``nats://host:4222``) or a cluster's, comma-separated
    (``nats://n1:4222,nats://n2:4222,nats://n3:4222``). nats-py takes a list, not that string.

    Every node in the list is a place to connect first and to reconnect to when the node in use
    dies (nats-py also learns the cluster's other nodes from the one it reaches).
    """
    found = [part.strip() for part in url.split(",") if part.strip()]
    if not found:
        raise ValueError(f"no NATS server URL in {url!r}")
    return found


async def connect(url: str, name: str, creds: str | None = None, inbox_prefix: str | None = None) -> Client:
    """Connect to ``url`` (one server or a comma-separated list, see :func:`servers`) with endless
    reconnects: every component reconnects by itself, to another node of a cluster if its own died.
    ``creds``: the ``.creds`` file to authenticate with; ``inbox_prefix``: the reply inbox a CITY
    identity must use (``_INBOX.<name>``, see :func:`shared.auth.inbox_prefix`)."""

    async def on_disconnect():
        log.warning("nats.disconnected", client=name)

    async def on_reconnect():
        log.info("nats.reconnected", client=name)

    async def on_error(exc):
        log.warning("nats.error", client=name, error=str(exc))

    return await nats.connect(
        servers(url),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        connect_timeout=2,
        allow_reconnect=True,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
        pending_size=8 * 1024 * 1024,
        **credentials(creds),
        **({"inbox_prefix": inbox_prefix} if inbox_prefix else {}),
    )


def credentials(creds: str | None) -> dict:
    """``nats.connect`` keyword arguments for a ``.creds`` file (none without one)."""
    return {"user_credentials": str(creds)} if creds else {}


def stream_config(dedupe_window_s: float, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=STREAM,
        subjects=[f"{EVENTS_ROOT}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        duplicate_window=dedupe_window_s,
        num_replicas=replicas,
        allow_direct=True,
    )


T = TypeVar("T")
#: JetStream's "no suitable peers for placement": a replicated stream or consumer while a node of
#: the cluster is not (yet, or again) there.
_NO_PEERS_YET = 10005


def not_ready(exc: BaseException) -> bool:
    """True for a JetStream API failure that only says the cluster is not ready yet: no answer (a
    stream or meta leader being elected), 503 (JetStream temporarily unavailable, a node still
    catching up) or no peers yet to place replicas on. A single server answers at once."""
    if isinstance(exc, (nats.errors.TimeoutError, nats.errors.NoRespondersError, ServiceUnavailableError)):
        return True
    return isinstance(exc, APIError) and exc.err_code == _NO_PEERS_YET


async def patiently(call: Callable[[], Awaitable[T]], what: str, patience: float = 60.0) -> T:
    """``call()`` again while the JetStream cluster is not ready (:func:`not_ready`), for up to
    ``patience`` seconds; any other failure, or the last one, is raised. A service starting while
    the cluster elects a leader or has lost its quorum waits for it instead of dying."""
    deadline = asyncio.get_running_loop().time() + patience
    delay = 0.1
    while True:
        try:
            return await call()
        except Exception as exc:
            if not not_ready(exc) or asyncio.get_running_loop().time() + delay > deadline:
                raise
            log.warning("jetstream.not_ready", what=what, error=f"{type(exc).__name__}: {exc}", retry_in=delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def ensure_stream(js: JetStreamContext, dedupe_window_s: float = 1200.0, replicas: int = 1,
                        patience: float = 60.0) -> None:
    """Create ``CORDON`` if it does not exist; never rewrite an existing stream's config. On a
    cluster not ready yet, tries again for up to ``patience`` seconds (:func:`patiently`)."""
    await patiently(lambda: _ensure_stream(js, dedupe_window_s, replicas), f"stream {STREAM}", patience)


async def _ensure_stream(js: JetStreamContext, dedupe_window_s: float, replicas: int) -> None:
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        try:
            await js.add_stream(stream_config(dedupe_window_s, replicas))
            log.info("stream.created", stream=STREAM)
        except APIError as exc:
            if not_ready(exc):
                # A cluster still forming ("no suitable peers"): say so, and patiently tries again.
                # Looking the stream up here would answer "not found" and end the start-up.
                raise
            # Another service created it between our look and our add: fine if it is there now.
            await js.stream_info(STREAM)
