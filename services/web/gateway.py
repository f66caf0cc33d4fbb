"""The gateway's work behind the routes: a command or query sent on NATS as the session's identity,
its reply given back unchanged with the HTTP status of its code.

Nothing here decides what an identity may do: the subject it sends on is the one its permissions
name (scoped to its community for staff, officers and gates), the server refuses what its JWT does
not allow, and the services check the rest with the identity the server stamps. The gateway only
refuses early, with ``forbidden``, what the server would refuse by silence (a publish outside the
JWT's subjects gets no reply: the caller would wait for a timeout instead of an answer).
"""
from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec
from nats.errors import ConnectionClosedError, NoRespondersError, TimeoutError as NatsTimeout

from services.web.sessions import Session
from services.web.statuses import status_of
from shared import access, wire
from shared.errors import CommandError, Invalid, Unavailable, UnknownCommand
from shared.identity import Forbidden, Unauthenticated
from shared.subjects import SERVICES, command_subject, query_subject

_decode = msgspec.json.Decoder()
_encode = msgspec.json.Encoder()


def refusal(exc: CommandError) -> tuple[int, bytes]:
    reply = exc.to_reply()
    return status_of(reply), _encode.encode(reply)


def command_body(session: Session, body: bytes, idempotency_key: str | None) -> tuple[dict, str | None]:
    """The command as the service will read it: ``command_id`` from ``Idempotency-Key``, ``actor``
    the identity's own unless given; and the community whose scoped subject carries it."""
    try:
        cmd = _decode.decode(body) if body.strip() else None
    except msgspec.DecodeError as exc:
        raise Invalid(f"the body is not valid JSON ({exc}); send a JSON object") from None
    if not isinstance(cmd, dict):
        raise Invalid("the body must be a JSON object with the command's fields")
    if idempotency_key is not None:
        if not idempotency_key.strip() or len(idempotency_key) > 128:  # a command_id's limit (shared/wire.py)
            raise Invalid("Idempotency-Key must be 1 to 128 characters", field="command_id")
        if cmd.setdefault("command_id", idempotency_key) != idempotency_key:
            raise Invalid("the body's command_id and the Idempotency-Key header differ: send one of them",
                          field="command_id")
    cmd.setdefault("actor", session.identity.actor)
    community = cmd.get("community") if isinstance(cmd.get("community"), str) else None
    return cmd, community or session.identity.community


#: What a command's name looks like: one subject token (no ``.``, wildcard or space).
COMMAND_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def check_command_path(service: str, command: str) -> None:
    """``unknown_command`` for a path no service could answer: a service that takes no commands
    (no one would answer its subject, and "retry later" would be wrong), or a command name that is
    not one subject token (``a.b`` would reach another subject, ``*`` or a space no valid one)."""
    if service not in SERVICES:
        raise UnknownCommand(f"no service {service!r} takes commands; the services are: {', '.join(SERVICES)}")
    if not COMMAND_NAME.match(command):
        raise UnknownCommand(f"the {service} has no command {command!r}: a command is named in a-z, 0-9 and _")


def command_target(session: Session, service: str, command: str, community: str | None) -> str:
    """The subject the identity may send ``service.command`` on."""
    if session.identity.role in access.SCOPED_ROLES:
        if community is None:
            raise Forbidden(f"a {session.identity.role} sends commands in a community: give `community`")
        subject = f"{command_subject(service, command)}.{community}"
    else:
        subject = command_subject(service, command)
    if not session.may_publish(subject):
        raise Forbidden(f"{session.identity.name!r} may not send {service}.{command}"
                        + (f" in {community}" if community and session.identity.role in access.SCOPED_ROLES else "")
                        + ": its credentials do not allow that subject; send it in your own jurisdiction, "
                          "or ask the operators")
    return subject


async def send(session: Session, subject: str, payload: bytes, timeout: float) -> tuple[int, bytes]:
    """Request/reply as the session's identity; the reply unchanged, with its status.

    A session that ends while its request waits (its identity revoked: the server closed the
    connection) is answered ``unauthenticated`` at once: nats-py would leave the request waiting
    for its timeout, and "retry" would be the wrong advice."""
    request = asyncio.ensure_future(session.nc.request(subject, payload, timeout=timeout))
    try:
        await asyncio.wait((request, session.over), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not request.done():
            request.cancel()
    try:
        if not request.done() or request.cancelled():  # the session ended first
            raise ConnectionClosedError
        msg = request.result()
    except NoRespondersError:
        return refusal(Unavailable(f"no service answers {subject} now: retry (a command with the same "
                                   "Idempotency-Key)"))
    except (NatsTimeout, asyncio.TimeoutError):
        if any(subject in v for v in session.violations):
            return refusal(Forbidden(f"the server refused {subject} to {session.identity.name!r}"))
        return refusal(Unavailable(f"no reply within {timeout:g} s: retry (a command with the same "
                                   "Idempotency-Key: it is applied once)"))
    except ConnectionClosedError:  # closed before the request went out, or while it waited
        return refusal(Unauthenticated(f"the session of {session.identity.name!r} is over "
                                       f"({session.ended or 'its connection closed'}): log in again"))
    try:
        reply: Any = _decode.decode(msg.data)
    except msgspec.DecodeError:
        return 502, msg.data
    return status_of(reply if isinstance(reply, dict) else {}), msg.data


async def command(session: Session, service: str, name: str, body: bytes, idempotency_key: str | None,
                  timeout: float) -> tuple[int, bytes]:
    try:
        check_command_path(service, name)
        cmd, community = command_body(session, body, idempotency_key)
        subject = command_target(session, service, name, community)
    except CommandError as exc:
        return refusal(exc)
    return await send(session, subject, _encode.encode(cmd), timeout)


def query_payload(view: str, params: dict[str, str]) -> bytes:
    """The query-string fields as the view's typed request (``"200"`` -> 200), checked against it."""
    from shared.contracts.queries import QUERIES

    query = QUERIES.get(view)
    if query is None:
        raise UnknownView(view)
    try:
        request = msgspec.convert(params, query.request, strict=False)
    except msgspec.ValidationError as exc:
        raise query_invalid(view, params, str(exc)) from None
    # Only the fields given, typed: the view's own defaults stay the service's to apply (a service
    # older than this gateway is not sent a field it does not know yet).
    typed = msgspec.to_builtins(request)
    return _encode.encode({name: value for name, value in typed.items() if name in params})


def query_invalid(view: str, params: dict[str, str], text: str) -> Invalid:
    """``invalid`` naming the query-string field msgspec's message ``text`` is about: a value that
    does not fit (``limit='abc': Expected `int```), a field missing or one the view does not take."""
    message, _, path = text.partition(" - at `$.")
    if path:
        field = path.rstrip("`")
        return Invalid(f"query {view}: {field}={params.get(field)!r}: {message}", field=field)
    return wire.invalid(f"query {view}", text, {})


class UnknownView(CommandError):
    code = "unknown_path"

    def __init__(self, view: str) -> None:
        super().__init__(f"no query {view!r}: see GET /v1/openapi.json for every query")


async def query(session: Session, view: str, params: dict[str, str], timeout: float) -> tuple[int, bytes]:
    try:
        payload = query_payload(view, params)
        subject = query_subject(view)
        if not session.may_publish(subject):
            raise Forbidden(f"{session.identity.name!r} may not query {view}: its credentials do not allow "
                            "that subject; ask the operators for the grant")
    except CommandError as exc:
        return refusal(exc)
    return await send(session, subject, payload, timeout)


def creds_field(body: bytes) -> str:
    """The ``creds`` field of a JSON login body."""
    try:
        value = _decode.decode(body)
    except msgspec.DecodeError as exc:
        raise Invalid(f"the body is not valid JSON ({exc})") from None
    if not isinstance(value, dict) or not isinstance(value.get("creds"), str):
        raise Invalid('send {"creds": "<the .creds file\'s text>"}, or the file itself as text/plain',
                      field="creds")
    return value["creds"]
