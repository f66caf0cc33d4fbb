"""A service process's HTTP face for orchestrators and Prometheus (``CORDON_METRICS_PORT``):

- ``GET /livez``: 200 while the process's event loop runs (the answer comes from that loop, so a
  loop stuck in a long computation does not answer and the probe times out).
- ``GET /readyz``: 200 only when the service's PostgreSQL answers, its NATS connections are
  connected and every consumer and follower is attached (leading, or on standby behind another
  replica); else 503, the JSON body naming each part that is not ready.
- ``GET /metrics``: the Prometheus text exposition of :mod:`shared.metrics`.

A few lines of asyncio rather than a web framework: three fixed paths, no body, and the server
must share the service's event loop without a thread (the readiness checks and the sampled gauges
are coroutines on the service's own connections). One request per connection.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
from typing import TYPE_CHECKING

import msgspec
from prometheus_client.exposition import choose_encoder

from shared import log as logging

if TYPE_CHECKING:
    from shared.service import ServiceHost

log = logging.get("probes")

#: How long a client may take to send its request line and headers, seconds.
READ_TIMEOUT = 5.0
#: Largest request head accepted, bytes.
HEAD_LIMIT = 16 * 1024
#: How long readiness waits for PostgreSQL to answer ``SELECT 1``, seconds.
PG_TIMEOUT = 2.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
JSON = "application/json"


class PortTaken(RuntimeError):
    """The metrics port is in use by another process."""


async def readiness(host: "ServiceHost") -> dict[str, str]:
    """What is not ready, by part (``postgresql``, ``nats.<connection>``, ``consumer.<name>``,
    ``service``); empty when ready."""
    if not host.started or host.stopping:
        return {"service": "stopping" if host.stopping else "starting"}
    problems: dict[str, str] = {}
    if (pg := await _postgres(host)) is not None:
        problems["postgresql"] = pg
    for name, nc in host.nats_connections().items():
        if nc is None or not nc.is_connected:
            problems[f"nats.{name}"] = "not connected"
    for reader in [*host.consumers, *host.followers]:
        if not reader.attached:
            problems[f"consumer.{reader.name}"] = "not attached" + (
                f" (last error: {reader.last_error})" if reader.last_error else "")
    return problems


async def _postgres(host: "ServiceHost") -> str | None:
    try:
        async with asyncio.timeout(PG_TIMEOUT):
            async with host.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
    except TimeoutError:
        return f"no answer within {PG_TIMEOUT:g} s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


class ProbeServer:
    """Serves ``host``'s probes and metrics on a TCP port, in the running event loop."""

    def __init__(self, host: "ServiceHost"):
        self.host = host
        self._server: asyncio.Server | None = None

    async def start(self, address: str, port: int) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, address, port, limit=HEAD_LIMIT)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortTaken(f"the metrics port {address}:{port} is in use by another process: give this "
                                "one another (CORDON_METRICS_PORT, --metrics-port; 0: none)") from None
            raise
        log.info("probes.serving", address=address, port=port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, kind, body = await self.answer(head)
            method = head.split(b" ", 1)[0]
            writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                         % (status, _REASONS[status].encode(), kind.encode(), len(body)))
            if method != b"HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a client that went away or never said what it wanted: nothing to answer
        except Exception:
            log.exception("probes.failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def answer(self, head: bytes) -> tuple[int, str, bytes]:
        """(status, content type, body) for a request head."""
        line, _, rest = head.decode("latin-1").partition("\r\n")
        parts = line.split(" ")
        if len(parts) != 3:
            return 400, JSON, b'{"ok":false,"error":"not an HTTP request"}'
        method, path = parts[0], parts[1].split("?", 1)[0]
        if path not in ("/livez", "/readyz", "/metrics"):
            return 404, JSON, b'{"ok":false,"error":"this port serves /livez, /readyz and /metrics"}'
        if method not in ("GET", "HEAD"):
            return 405, JSON, b'{"ok":false,"error":"GET only"}'
        host = self.host
        if path == "/livez":
            return 200, JSON, msgspec.json.encode({"ok": True, "service": host.spec.name, "instance": host.instance})
        if path == "/readyz":
            problems = await readiness(host)
            body = {"ok": not problems, "service": host.spec.name, "instance": host.instance,
                    **({"not_ready": problems} if problems else {})}
            return 200 if not problems else 503, JSON, msgspec.json.encode(body)
        await host.metrics.sample(host)
        encode, kind = choose_encoder(_header(rest, "accept"))
        return 200, kind, encode(host.metrics.registry)


def _header(headers: str, name: str) -> str:
    for line in headers.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return ""
