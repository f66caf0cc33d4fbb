"""`cordon web`: the composition root of the HTTP gateway (Starlette, served by uvicorn).

Resources are built in the lifespan and kept on ``app.state``: the gateway's own NATS connection
(the service identity ``web``, account CORDON: JetStream for live pages and feeds) and the
sessions, each connected as its own identity. Routes of the API are here; the board and the feed
add theirs (``services/web/board.py``, ``services/web/feed.py``).

Why Starlette: the contract's types are msgspec structs already (the AsyncAPI document is built
from them), so a framework that would want them again as pydantic models (FastAPI) adds a second
copy of every schema; Starlette is the small, well-kept ASGI core FastAPI itself stands on, and
the OpenAPI document is generated from the same structs (``shared/openapi.py``).
"""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.web import feed, gateway, metrics
from services.web.config import Config
from services.web.live import Hub
from services.web.sessions import Session, Sessions
from services.web.statuses import GATEWAY_CODES
from shared import bus
from shared import log as logging
from shared.errors import CommandError, Invalid, TooLarge
from shared.identity import Unauthenticated

log = logging.get("web")
COOKIE = "cordon_session"
JSON = "application/json"


@dataclass
class State:
    config: Config
    sessions: Sessions
    nc: object  # the gateway's own connection (nats Client)
    #: The live board's consumer and open pages (services/web/live.py).
    live: Hub | None = None


def error(code: str, message: str, status: int | None = None, **extra) -> JSONResponse:
    status = status or GATEWAY_CODES[code][0]
    return JSONResponse({"ok": False, "error": {"code": code, "message": message, **extra}}, status_code=status)


def reply(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type=JSON)


def state(request: Request) -> State:
    return request.app.state.cordon


def session_of(request: Request) -> Session:
    """The caller's session: ``Authorization: Bearer`` or the browser's cookie; raises
    :class:`Unauthenticated`."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else request.cookies.get(COOKIE)
    return state(request).sessions.get(token)


def media_type(request: Request) -> str:
    """The request's content type without its parameters, lowercased (``Application/JSON;
    charset=utf-8`` is ``application/json``)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def body(request: Request, *types: str) -> bytes:
    """The request's body, checked: a content type of ``types``, at most the payload limit, in time."""
    kind = media_type(request)
    if kind not in types:
        raise MediaType(f"send the body as {' or '.join(types)} (got {kind or 'no content type'})")
    limit = state(request).config.max_body
    if int(request.headers.get("content-length") or 0) > limit:
        raise TooLarge(f"the body is over {limit} bytes: split the request")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(state(request).config.body_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"the body is over {limit} bytes: split the request")
                chunks.append(chunk)
    except TimeoutError:
        raise SlowBody(f"the body did not arrive within {state(request).config.body_timeout_s:g} s") from None
    return b"".join(chunks)


class MediaType(CommandError):
    code = "unsupported_media_type"


class SlowBody(CommandError):
    code = "timeout"


def refused(exc: CommandError) -> Response:
    return reply(*gateway.refusal(exc))


async def post_token(request: Request) -> Response:
    try:
        raw = await body(request, "text/plain", JSON, "application/octet-stream")
        creds = gateway.creds_field(raw) if media_type(request) == JSON else raw.decode("utf-8", "replace")
        session = await state(request).sessions.login(creds)
    except CommandError as exc:
        return refused(exc)
    return JSONResponse(token_reply(session), status_code=201)


def token_reply(session: Session) -> dict:
    from datetime import datetime, timezone

    i = session.identity
    return {"ok": True, "token": session.token,
            "identity": {"name": i.name, "role": i.role, "scope": i.scope, "community": i.community,
                         "compound": i.compound, "grants": list(i.grants)},
            "expires_at": datetime.fromtimestamp(session.expires_at, timezone.utc).isoformat()}


async def delete_token(request: Request) -> Response:
    try:
        session = session_of(request)
    except CommandError as exc:
        return refused(exc)
    state(request).sessions.forget(session)
    response = JSONResponse({"ok": True})
    response.delete_cookie(COOKIE)
    return response


async def post_command(request: Request) -> Response:
    try:
        session = session_of(request)
        raw = await body(request, JSON)
    except CommandError as exc:
        return refused(exc)
    config = state(request).config
    return reply(*await gateway.command(session, request.path_params["service"], request.path_params["command"],
                                        raw, request.headers.get("idempotency-key"), config.reply_timeout_s))


async def get_query(request: Request) -> Response:
    try:
        session = session_of(request)
    except CommandError as exc:
        return refused(exc)
    return reply(*await gateway.query(session, request.path_params["view"], dict(request.query_params),
                                      state(request).config.reply_timeout_s))


async def openapi(request: Request) -> Response:
    from shared import openapi as doc

    return Response(doc.render(), media_type=JSON)


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def readyz(request: Request) -> Response:
    nc = state(request).nc
    ready = bool(nc.is_connected)
    live = state(request).live
    return JSONResponse({"ok": ready, "nats": "connected" if ready else "not connected",
                         "sessions": len(state(request).sessions), "live_pages": len(live.pages) if live else 0},
                        status_code=200 if ready else 503)


async def http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        return error("unknown_path", f"no {request.method} {request.url.path}: see /v1/openapi.json")
    if exc.status_code == 405:
        return error("method_not_allowed", f"{request.url.path} does not take {request.method}")
    return error("invalid", str(exc.detail), status=exc.status_code)


async def unexpected(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ClientDisconnect):
        return Response(status_code=499)
    log.exception("web.failed", path=request.url.path)
    return error("internal", "a bug in the gateway; nothing was sent; report it", status=500)


API_ROUTES = [
    Route("/v1/tokens", post_token, methods=["POST"]),
    Route("/v1/tokens/current", delete_token, methods=["DELETE"]),
    Route("/v1/commands/{service}/{command}", post_command, methods=["POST"]),
    Route("/v1/queries/{view}", get_query, methods=["GET"]),
    Route("/v1/openapi.json", openapi, methods=["GET"]),
    *feed.ROUTES,
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics.endpoint, methods=["GET"]),
]


def create(config: Config) -> Starlette:
    """The gateway application; its lifespan connects to NATS and closes every session at the end."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        shared = config.shared
        if not shared.nats_url:
            raise SystemExit("cordon web needs CORDON_NATS_URL (cordon up sets it)")
        nc = await bus.connect(shared.nats_url, "web", shared.nats_creds)
        sessions = Sessions(shared.nats_url, ttl_s=config.token_ttl_s)
        live = Hub(nc)
        await live.start()
        app.state.cordon = State(config=config, sessions=sessions, nc=nc, live=live)
        sweeper = asyncio.create_task(_sweep(sessions))
        log.info("web.started", host=config.host, port=config.port, live=live.name)
        try:
            yield
        finally:
            sweeper.cancel()
            await live.stop()
            await sessions.close()
            await nc.close()

    from services.web import board  # it builds on this module's helpers

    return metrics.install(Starlette(routes=[*API_ROUTES, *board.ROUTES], lifespan=lifespan,
                                     exception_handlers={HTTPException: http_error, Exception: unexpected}))


async def _sweep(sessions: Sessions) -> None:
    while True:
        await asyncio.sleep(60)
        await sessions.sweep()


__all__ = ["create", "session_of", "state", "Unauthenticated", "Invalid"]
