"""The committee's live board: ``GET /`` after logging in with the identity's .creds file
(``GET``/``POST /login``, a plain form that works without JavaScript), ``POST /logout``, and
``GET /board/events``, the server-sent events that keep the page current, and ``POST
/board/reveal``, one person's names and phones for the page that asked (recorded by the registry).

Staff see their community's board (the views' figures, today's passages and denials and missed
check-ins from the audit log, open welfare checks and supply requests); an officer sees the report
of its scope with a column per committee. Everything is asked *as the page's identity*, on its
session's own connection (services/web/board_queries.py); the hub (services/web/live.py) only says
when to ask again.
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import AsyncIterator

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from services.web import board_html, gateway, sse
from services.web.app import COOKIE, refused, session_of, state
from services.web.board_queries import Told, community_board, street_report
from services.web.sessions import Session
from services.web.statuses import status_of
from shared.errors import CommandError, TooLarge
from shared.subjects import query_subject
from shared.identity import Forbidden, Identity
from shared import log as logging

log = logging.get("web.board")
STATIC = Path(__file__).parent / "static"
#: The page loads its CSS and JS from here only: injected markup could run nothing.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HTML_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
                "referrer-policy": "no-referrer", "cache-control": "no-store"}


def html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=HTML_HEADERS)


def kind_of(identity: Identity) -> str | None:
    """Which board an identity gets: ``community`` (staff), ``report`` (an officer), or none."""
    if identity.role == "staff":
        return "community"
    if identity.role == "officer":
        return "report"
    return None


async def render(request: Request, session: Session, told: Told) -> tuple[str, int]:
    """The board's fragment for ``session``'s identity, no older than what it was told, and the
    stream sequence its figures include (0: not known)."""
    config = state(request).config
    identity = session.identity
    match kind_of(identity):
        case "community":
            data = await community_board(session, identity.scope, told, config.zone, config.reply_timeout_s)
            return board_html.community_fragment(identity.scope, data, config.zone), _position(data["board"])
        case "report":
            data = await street_report(session, identity.scope, told, config.reply_timeout_s)
            return board_html.street_fragment(data), _position(data["report"])
    return board_html.no_board(identity.role), 0


def _position(reply: dict) -> int:
    position = reply.get("position")
    return position if isinstance(position, int) else 0


def title(identity: Identity) -> str:
    if kind_of(identity) == "community":
        return f"{board_html.committee(identity.scope)} · {identity.scope}"
    return identity.scope


async def board(request: Request) -> Response:
    try:
        session = session_of(request)
    except CommandError:
        return RedirectResponse("/login", status_code=303)
    identity = session.identity
    fragment, _ = await render(request, session, Told())
    return html(board_html.page(title(identity), f"{identity.name} ({identity.role})", fragment,
                                live=kind_of(identity) is not None))


async def login_form(request: Request) -> Response:
    return html(board_html.login_page())


async def login(request: Request) -> Response:
    """The form's creds file -> a session, its token in the cookie, and on to the board."""
    limit = state(request).config.max_body
    if int(request.headers.get("content-length") or 0) > limit + 4096:  # the file and the form's framing
        return html(board_html.login_page(f"that file is over {limit} bytes: choose the .creds file"), 413)
    try:
        async with request.form(max_files=1, max_fields=4, max_part_size=limit) as form:
            upload = form.get("creds")
            text = (await upload.read(limit + 1)).decode("utf-8", "replace") if hasattr(upload, "read") else ""
        if not text.strip() or len(text) > limit:
            return html(board_html.login_page("choose the .creds file your operators issued"), 422)
        session = await state(request).sessions.login(text)
    except CommandError as exc:
        return html(board_html.login_page(exc.message), 401 if exc.code == "unauthenticated" else 422)
    except Exception as exc:  # noqa: BLE001 - a form the parser cannot read (multipart errors)
        log.info("login.form_unreadable", error=str(exc))
        return html(board_html.login_page("the form could not be read: choose the .creds file and send it again"),
                    400)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, session.token, max_age=int(state(request).config.token_ttl_s), path="/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    try:
        state(request).sessions.forget(session_of(request))
    except CommandError:
        pass  # already over: just go to the form
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def reveal(request: Request) -> Response:
    """``POST /board/reveal`` {resident | household, purpose}: one record's names and phones, asked
    as the page's identity (``registry.contact``: staff of the resident's own community only, the
    read recorded as PersonalDataViewed before anything is shown). The answer goes to this request
    alone: never through the hub or the live stream, never stored. A page of its own for the plain
    form; with ``x-cordon-fragment`` (board.js) the fragment only, shown inline."""
    try:
        session = session_of(request)
    except CommandError as exc:
        if request.headers.get("x-cordon-fragment"):
            return refused(exc)
        return RedirectResponse("/login", status_code=303)
    status, fragment = await _reveal(request, session)
    if request.headers.get("x-cordon-fragment"):
        return html(fragment, status)
    identity = session.identity
    return html(board_html.page(title(identity), f"{identity.name} ({identity.role})",
                                board_html.reveal_page(fragment), live=False), status)


async def _reveal(request: Request, session: Session) -> tuple[int, str]:
    """The contact query as the session's identity, from the posted form: status and fragment."""
    config = state(request).config
    try:
        if int(request.headers.get("content-length") or 0) > config.max_body:
            raise TooLarge(f"the form is over {config.max_body} bytes")
        async with request.form(max_files=0, max_fields=4, max_part_size=config.max_body) as form:
            fields = {k: v for k, v in form.items() if k in ("resident", "household", "purpose") and isinstance(v, str)}
        subject = query_subject("registry.contact")
        if not session.may_publish(subject):
            raise Forbidden(f"{session.identity.name!r} may not query registry.contact")
    except CommandError as exc:
        reply = exc.to_reply()
        return status_of(reply), board_html.revealed(reply)
    status, raw = await gateway.send(session, subject, json.dumps(fields).encode(), config.reply_timeout_s)
    try:
        reply = json.loads(raw)
    except ValueError:
        reply = {"ok": False, "error": {"code": "internal", "message": "registry.contact answered something unreadable"}}
    log.info("board.reveal", identity=session.identity.name, status=status)  # who, not whom: that is on the record
    return status, board_html.revealed(reply if isinstance(reply, dict) else {})


async def events(request: Request) -> Response:
    """The board's live stream: the board at once, then again after each change of what the
    identity reads (at most every ``refresh_s``), comments while idle."""
    try:
        session = session_of(request)
        if kind_of(session.identity) is None:
            raise Forbidden(f"a {session.identity.role} identity has no board: use the HTTP API (/v1)")
    except CommandError as exc:
        return refused(exc)
    return sse.EventStream(_stream(request, session))


async def _stream(request: Request, session: Session) -> AsyncIterator[str]:
    config, hub = state(request).config, state(request).live
    page = hub.join(session.identity)  # before the first render: nothing told meanwhile is lost
    try:
        told = Told()
        while session.alive:
            fragment, position = await _render_or_say(request, session, told)
            last = time.monotonic()
            yield sse.message(fragment, event="board", id=max(told.seq, position))
            while not page.wake.is_set():
                try:
                    await asyncio.wait_for(page.wake.wait(), config.keepalive_s)
                except TimeoutError:
                    if not session.alive:
                        break
                    if not page.wake.is_set():
                        # the hub's position: every event up to it was fanned out, and none to this page
                        yield sse.comment(f"alive {hub.position}")
            if not session.alive:
                break
            await asyncio.sleep(max(0.0, last + config.refresh_s - time.monotonic()))  # coalesce
            told = Told(*page.take())
        yield sse.message("", event="end")  # the session is over (logged out, revoked): to the form
    finally:
        hub.leave(page)


async def _render_or_say(request: Request, session: Session, told: Told) -> tuple[str, int]:
    """A bug in rendering shows on the page and in the log, and the stream lives on (a stream that
    died would be opened again by the browser every few seconds, failing the same way)."""
    try:
        return await render(request, session, told)
    except Exception:  # noqa: BLE001
        log.exception("board.render_failed", identity=session.identity.name)
        return board_html.refused({"error": {"code": "internal", "message": "a bug in the gateway; report it"}}), 0


ROUTES = [
    Route("/", board, methods=["GET"]),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/board/events", events, methods=["GET"]),
    Route("/board/reveal", reveal, methods=["POST"]),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]
