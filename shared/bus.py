"""NATS connection and the one JetStream stream, ``CORDON``.

The stream is declared here and nowhere else. Commands and queries (``cordon.cmd.>``,
``cordon.qry.>``) stay out of it, or a request would be answered by the stream's PubAck.
"""
from __future__ import annotations

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError

from shared import log as logging
from shared.subjects import EVENTS_ROOT, STREAM

log = logging.get("bus")


async def connect(url: str, name: str, creds: str | None = None, inbox_prefix: str | None = None) -> Client:
    """Connect with endless reconnects: every component reconnects by itself. ``creds``: the
    ``.creds`` file to authenticate with; ``inbox_prefix``: the reply inbox a CITY identity must
    use (``_INBOX.<name>``, see :func:`shared.auth.inbox_prefix`)."""

    async def on_disconnect():
        log.warning("nats.disconnected", client=name)

    async def on_reconnect():
        log.info("nats.reconnected", client=name)

    async def on_error(exc):
        log.warning("nats.error", client=name, error=str(exc))

    return await nats.connect(
        url,
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


async def ensure_stream(js: JetStreamContext, dedupe_window_s: float = 1200.0, replicas: int = 1) -> None:
    """Create ``CORDON`` if it does not exist; never rewrite an existing stream's config."""
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        try:
            await js.add_stream(stream_config(dedupe_window_s, replicas))
            log.info("stream.created", stream=STREAM)
        except APIError:
            # Another service created it between our look and our add: fine if it is there now.
            await js.stream_info(STREAM)
