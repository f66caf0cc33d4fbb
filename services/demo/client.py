"""A tiny client of Cordon's public message API: JSON requests on ``cordon.cmd.<service>.<command>``
and ``cordon.qry.<view>``, the ``cordon.sys.health`` fan-out, and many requests with a bounded
number in flight. Only nats-py and JSON: nothing of the services or of ``shared`` is imported.

A request that times out or answers ``unavailable`` is sent again with the same ``command_id``:
the services make that safe (the same id twice yields the first reply and writes nothing new).
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import nats
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

HEALTH = "cordon.sys.health"


async def _quiet(exc: Exception) -> None:
    """nats-py reports every failed (re)connection attempt here; the requests' errors say enough."""


class NoReply(Exception):
    """Nobody answered after every retry: the service is not running (or far too busy)."""


@dataclass(frozen=True)
class Call:
    """One request: ``cmd`` (``service``, ``name``) or ``qry`` (``name``), and its JSON body."""

    kind: str
    service: str
    name: str
    body: dict

    @property
    def subject(self) -> str:
        if self.kind == "qry":
            return f"cordon.qry.{self.name}"
        return f"cordon.cmd.{self.service}.{self.name}"


def cmd(service: str, name: str, /, **body: Any) -> Call:
    return Call("cmd", service, name, body)


def qry(name: str, /, **body: Any) -> Call:
    return Call("qry", "", name, body)


@dataclass
class Tally:
    """What came back for a batch of calls: counts by command and outcome, and the time taken."""

    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # "command: code/reason" -> n
    seconds: float = 0.0

    def add(self, call: Call, reply: dict) -> None:
        self.sent += 1
        if reply.get("ok"):
            self.ok += 1
            return
        err = reply.get("error") or {}
        key = f"{call.name}: {err.get('code')}" + (f"/{err['reason']}" if err.get("reason") else "")
        self.errors[key] = self.errors.get(key, 0) + 1

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


class Api:
    """Requests to a running Cordon over one NATS connection."""

    def __init__(self, nc, *, in_flight: int = 128, timeout: float = 15.0, attempts: int = 4):
        self.nc = nc
        self.in_flight = in_flight
        self.timeout = timeout
        self.attempts = attempts

    @classmethod
    async def connect(cls, url: str, creds: str | None = None, **kw) -> "Api":
        """Connect to NATS at ``url`` (one server, or a cluster's comma-separated) with the ``.creds``
        file ``creds``; ConnectionError at once if nothing listens there (nats-py would retry its
        first connection as long as it retries a lost one)."""
        servers = [part.strip() for part in url.split(",") if part.strip()]
        for i, server in enumerate(servers):
            parts = urlsplit(server)
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port or 4222), 3)
                writer.close()
                break
            except (OSError, asyncio.TimeoutError) as exc:
                if i == len(servers) - 1:
                    raise ConnectionError(f"cannot reach NATS at {url}: {exc}") from None
        nc = await nats.connect(servers, connect_timeout=3, max_reconnect_attempts=120, reconnect_time_wait=0.5,
                                error_cb=_quiet, name="cordon-demo",
                                **({"user_credentials": creds} if creds else {}))
        return cls(nc, **kw)

    async def close(self) -> None:
        await self.nc.drain()

    async def send(self, call: Call) -> dict:
        """The reply to ``call``, retried with the same body on a timeout or ``unavailable``."""
        payload = json.dumps(call.body, ensure_ascii=False).encode()
        pause = 0.2
        for attempt in range(self.attempts):
            try:
                msg = await self.nc.request(call.subject, payload, timeout=self.timeout)
            except (NatsTimeout, asyncio.TimeoutError, NoRespondersError) as exc:
                last = exc
            else:
                reply = json.loads(msg.data)
                code = (reply.get("error") or {}).get("code")
                if code != "unavailable" or attempt == self.attempts - 1:
                    return reply
                last = RuntimeError(reply["error"].get("message"))
            await asyncio.sleep(pause)
            pause *= 2
        raise NoReply(f"no reply on {call.subject} after {self.attempts} attempts: {type(last).__name__} {last}")

    async def many(self, calls: Iterable[Call], on_reply: Callable[[Call, dict, float], None] | None = None,
                   tally: Tally | None = None) -> list[dict]:
        """Send every call with at most ``in_flight`` waiting; replies in the order of ``calls``.
        ``on_reply(call, reply, latency_s)`` sees each as it arrives."""
        calls = list(calls)
        replies: list[dict] = [{}] * len(calls)
        tally = tally if tally is not None else Tally()
        todo = iter(enumerate(calls))
        started = time.perf_counter()

        async def worker() -> None:
            for i, call in todo:
                t0 = time.perf_counter()
                reply = await self.send(call)
                replies[i] = reply
                tally.add(call, reply)
                if on_reply is not None:
                    on_reply(call, reply, time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(min(self.in_flight, len(calls)) or 1)))
        tally.seconds += time.perf_counter() - started
        return replies

    async def health(self, wait: float = 0.4, expect: int | None = None) -> list[dict]:
        """Every running service instance's status (the ``cordon.sys.health`` fan-out), collected
        for ``wait`` seconds or until ``expect`` instances have answered."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        out: list[dict] = []
        try:
            await self.nc.publish(HEALTH, b"{}", reply=inbox)
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                try:
                    msg = await sub.next_msg(timeout=left)
                except (NatsTimeout, asyncio.TimeoutError):
                    break
                out.append(json.loads(msg.data))
                if expect is not None and len(out) >= expect:
                    break
        finally:
            await sub.unsubscribe()
        return out

    async def settle(self, timeout: float = 120.0, sleep: Callable[[float], Awaitable] = asyncio.sleep) -> float:
        """Wait until every service has published its outbox and every consumer (directories,
        policies, the views) has caught up, twice in a row; returns the seconds waited.

        The services share facts by events, so what one accepted is seen by the others a moment
        later: the demo waits for that moment before it acts on those facts (e.g. passes for
        households just registered)."""
        started = time.monotonic()
        calm = 0
        instances = len(await self.health())  # then stop listening as soon as all have answered
        while True:
            calm = calm + 1 if settled(await self.health(expect=instances)) else 0
            if calm >= 2:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the services did not catch up within {timeout:.0f} s")
            await sleep(0.05)


def settled(statuses: list[dict]) -> bool:
    """True if every instance answered ok with an empty outbox and every consumer at lag 0."""
    if not statuses:
        return False
    for status in statuses:
        if not status.get("ok") or status.get("outbox_depth", 0) != 0:
            return False
        if any(c.get("lag") != 0 for c in (status.get("consumers") or {}).values()):
            return False
    return True
