"""Who is logged in to the gateway: one session per token, each with its own NATS connection made
with the identity's own credentials.

The gateway never decides on its own what a person may do: it acts on NATS *as* that identity, so
the server's permissions (the user JWT) and the services' checks (``Nats-Request-Info``, stamped
by the server on that connection's requests) decide, exactly as for a client on the bus. Logging in
is connecting: the server verifies the JWT's signature chain and the account's revocations, so a
foreign or revoked key is refused there (401 here). A revocation pushed while a session is open
closes its connection at the server (``user authentication revoked``), which ends the session.

Tokens are 256 random bits, kept only in this process's memory: a gateway restarted forgets
them and everyone logs in again (one replica, or sticky sessions behind a balancer).
"""
from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field

import nats
from nats.aio.client import Client, RawCredentials

from shared import bus
from shared import log as logging
from shared.auth import decode_jwt
from shared.errors import Invalid, Unavailable
from shared.identity import Identity, Unauthenticated

log = logging.get("web.sessions")

#: What nats-py reports (lowercased) when the server refuses or drops a connection's credentials.
_AUTH_FAILURES = ("authorization violation", "authentication revoked", "authentication expired",
                  "user authentication")
JWT_BEGIN, JWT_END = "-----BEGIN NATS USER JWT-----", "------END NATS USER JWT------"


def read_creds(text: str) -> tuple[str, dict]:
    """The user JWT of a ``.creds`` file's text and its claims (not verified here: the server
    verifies them when the session connects)."""
    if JWT_BEGIN not in text or "NKEY SEED" not in text:
        raise Invalid("send the identity's .creds file as issued by `cordon identity add`", field="creds")
    token = text.split(JWT_BEGIN, 1)[1].split(JWT_END, 1)[0].strip()
    try:
        claims = decode_jwt(token)
        nats_claims = claims["nats"]
        identity = Identity.from_tags(claims["name"], list(nats_claims.get("tags") or ()))
    except Invalid as exc:
        raise Unauthenticated(f"these credentials name no identity Cordon issued: {exc.message}") from None
    except (ValueError, KeyError, TypeError, IndexError):
        raise Invalid("the .creds file's JWT cannot be read", field="creds") from None
    return token, {"identity": identity, "claims": claims}


@dataclass(eq=False)
class Session:
    """One login: its token, the identity, its connection and what its JWT lets it publish."""

    token: str
    identity: Identity
    nc: Client
    expires_at: float
    #: The subjects the user JWT allows publishing on (None: no limit, the CORDON account's).
    publish: tuple[str, ...] | None = None
    #: The subjects it allows subscribing to (None: no limit, the CORDON account's).
    subscribe: tuple[str, ...] | None = None
    #: Set when the server refused or dropped the credentials: the session is over.
    ended: str | None = None
    violations: list[str] = field(default_factory=list)
    #: Done when the session ends: what a request waiting for its reply also waits on.
    over: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def alive(self) -> bool:
        return self.ended is None and time.time() < self.expires_at and not self.nc.is_closed

    def may_publish(self, subject: str) -> bool:
        """What the server would allow this connection to publish (its JWT's ``pub.allow``)."""
        return self.publish is None or any(matches(pattern, subject) for pattern in self.publish)

    def may_subscribe(self, filter_subject: str) -> bool:
        """Whether the JWT's ``sub.allow`` lets this identity receive everything ``filter_subject``
        (a wildcard subject) matches: what the gateway checks before reading a feed for it."""
        return self.subscribe is None or any(covers(pattern, filter_subject) for pattern in self.subscribe)


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` one or more at the end."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def covers(pattern: str, filter_subject: str) -> bool:
    """Whether every subject ``filter_subject`` matches also matches ``pattern`` (both may hold
    wildcards): ``cordon.evt.a.>`` covers ``cordon.evt.a.b.>``, not ``cordon.evt.>``; ``*``
    covers one token, literal or ``*``, never a ``>``."""
    want, have = pattern.split("."), filter_subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or have[i] == ">" or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def _allowed(claims: dict, kind: str, identity: Identity) -> tuple[str, ...] | None:
    """The JWT's ``<kind>.allow`` list. None (no limit) only for the CORDON account's identities,
    whose JWTs carry no permissions; a CITY identity's missing or empty list allows nothing here."""
    allow = (claims.get(kind) or {}).get("allow")
    if identity.trusted and not allow:
        return None
    return tuple(allow or ())


class Sessions:
    """The tokens of this gateway process and their connections."""

    def __init__(self, nats_url: str, ttl_s: float = 12 * 3600, login_timeout_s: float = 5.0) -> None:
        self.nats_url = nats_url
        self.ttl_s = ttl_s
        self.login_timeout_s = login_timeout_s
        self._by_token: dict[str, Session] = {}

    async def login(self, creds: str) -> Session:
        """Connect as the identity of ``creds`` (a .creds file's text); raises
        :class:`Unauthenticated` when the server refuses it."""
        token_jwt, read = read_creds(creds)
        identity: Identity = read["identity"]
        session_box: list[Session] = []
        loop = asyncio.get_running_loop()
        refused: asyncio.Future[str] = loop.create_future()

        async def on_error(exc: Exception) -> None:
            text = str(exc).lower()
            auth_failure = any(word in text for word in _AUTH_FAILURES)
            if not session_box:  # still logging in: nats-py would retry a refused login for ever
                if auth_failure and not refused.done():
                    refused.set_result(text)
                return
            if "permissions violation" in text:
                session_box[0].violations = [*session_box[0].violations[-9:], text]
            if auth_failure:
                self._end(session_box[0], text)

        async def on_closed() -> None:
            if session_box:
                self._end(session_box[0], "connection closed")

        connecting = asyncio.ensure_future(nats.connect(
            bus.servers(self.nats_url), name=f"web:{identity.name}", user_credentials=RawCredentials(creds),
            inbox_prefix=f"_INBOX.{identity.name}", connect_timeout=3, allow_reconnect=True,
            max_reconnect_attempts=-1, reconnect_time_wait=0.25, error_cb=on_error, closed_cb=on_closed))
        done, _ = await asyncio.wait({connecting, refused}, timeout=self.login_timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if connecting not in done:
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
            if refused.done():
                log.info("login.refused", identity=identity.name, error=refused.result())
                raise Unauthenticated(f"NATS refused the credentials of {identity.name!r} ({refused.result()}): "
                                      "revoked, or not issued by this Cordon")
            raise Unavailable(f"NATS did not answer within {self.login_timeout_s:g} s: try again")
        try:
            nc = connecting.result()
        except Exception as exc:  # noqa: BLE001 - nats-py raises several kinds for a failed login
            log.info("login.failed", identity=identity.name, error=str(exc))
            raise Unauthenticated(f"NATS refused the credentials of {identity.name!r} "
                                  f"({str(exc) or type(exc).__name__})") from None
        session = Session(token=secrets.token_urlsafe(32), identity=identity, nc=nc,
                          expires_at=time.time() + self.ttl_s, publish=_allowed(read["claims"]["nats"], "pub", identity),
                          subscribe=_allowed(read["claims"]["nats"], "sub", identity))
        session_box.append(session)
        self._by_token[session.token] = session
        log.info("login", identity=identity.name, role=identity.role, scope=identity.scope)
        return session

    def get(self, token: str | None) -> Session:
        """The live session of ``token``; raises :class:`Unauthenticated` otherwise."""
        session = self._by_token.get(token) if token else None
        if session is None:
            raise Unauthenticated("log in first: POST /v1/tokens with your .creds file, then send "
                                  "Authorization: Bearer <token>")
        if not session.alive:
            reason = session.ended or "the session expired"
            self.forget(session)
            raise Unauthenticated(f"the session of {session.identity.name!r} is over ({reason}): log in again")
        return session

    def _end(self, session: Session, why: str) -> None:
        if session.ended is None:
            session.ended = why
            session.over.set_result(why)
            log.info("session.ended", identity=session.identity.name, why=why)
            if not session.nc.is_closed:
                asyncio.get_running_loop().create_task(session.nc.close())

    def forget(self, session: Session) -> None:
        self._by_token.pop(session.token, None)
        self._end(session, "logged out")

    async def sweep(self) -> None:
        """Close expired sessions' connections."""
        for session in [s for s in self._by_token.values() if not s.alive]:
            self.forget(session)

    async def close(self) -> None:
        sessions = list(self._by_token.values())
        self._by_token.clear()
        await asyncio.gather(*(s.nc.close() for s in sessions if not s.nc.is_closed), return_exceptions=True)

    def __len__(self) -> int:
        return len(self._by_token)
