"""What a board shows, asked on NATS *as the page's identity* (its session's own connection): the
bus and the services decide what each person sees, never the gateway.

A page told of an event asks for a board no older than that event: the views wait until they have
applied its stream sequence (``at_least``); the audit log, which has no such field, is asked again
until a list of a type just told holds that event (it applies the stream in order, so the newest
row of that type shows how far it got). Both give up after :data:`CATCH_UP_S` and show what they
have: a board a moment late beats no board.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from services.web import gateway
from services.web.sessions import Session
from shared.subjects import query_subject

#: How long a refresh waits for the views or the audit log to catch up with an event told, seconds.
CATCH_UP_S = 2.0
#: Rows of each list on the board.
ROWS = 5
#: The board's lists from the audit log: list -> event type.
AUDIT_LISTS = {"denied": "PassageDenied", "passed": "PassageAllowed", "missed": "CheckinMissed"}


@dataclass
class Told:
    """What the page was told since its last refresh: the newest stream sequence, and per event
    type the newest sequence of that type (0 / {}: nothing, the first render)."""

    seq: int = 0
    types: dict[str, int] = field(default_factory=dict)


async def ask(session: Session, view: str, body: dict, timeout: float) -> dict:
    """One query as the session's identity: the reply, or a refusal shaped like one."""
    _, raw = await gateway.send(session, query_subject(view), json.dumps(body).encode(), timeout)
    try:
        reply = json.loads(raw)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        return {"ok": False, "error": {"code": "internal", "message": f"{view} answered something unreadable"}}
    return reply


async def views(session: Session, view: str, body: dict, at_least: int, timeout: float) -> dict:
    """``community`` or ``rollup`` reflecting the stream at least up to ``at_least`` (the views
    wait until they have applied that far, up to 2 s; their reply says ``behind`` if not)."""
    return await ask(session, view, {**body, "at_least": at_least} if at_least else body, timeout)


async def recent(session: Session, community: str, kind: str, since: datetime, seq: int | None,
                 timeout: float) -> dict:
    """Today's newest events of ``kind`` in ``community`` from the audit log, holding the event of
    sequence ``seq`` when one was told."""
    body = {"community": community, "type": kind, "since": since.isoformat(), "limit": ROWS,
            "newest_first": True}
    deadline = time.monotonic() + CATCH_UP_S
    while True:
        reply = await ask(session, "audit", body, timeout)
        rows = reply.get("rows") or []
        newest = max((r.get("stream_seq") or 0 for r in rows), default=0)
        if not reply.get("ok") or not seq or newest >= seq or time.monotonic() > deadline:
            return reply
        await asyncio.sleep(0.03)


def midnight(zone: tzinfo, now: datetime | None = None) -> datetime:
    """The start of today in the city's zone."""
    now = (now or datetime.now(zone)).astimezone(zone)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


async def community_board(session: Session, community: str, told: Told, zone: tzinfo,
                          timeout: float) -> dict[str, dict]:
    """The committee's board: its figures, today's lists from the audit log, open welfare checks
    and supply requests (logistics answers from tables that commit with the events: never behind)."""
    since = midnight(zone)
    asks = {
        "board": views(session, "community", {"community": community}, told.seq, timeout),
        **{name: recent(session, community, kind, since, told.types.get(kind), timeout)
           for name, kind in AUDIT_LISTS.items()},
        "welfare": ask(session, "logistics.welfare", {"community": community}, timeout),
        "requests": ask(session, "logistics.requests", {"community": community, "limit": ROWS}, timeout),
    }
    data = dict(zip(asks, await asyncio.gather(*asks.values())))
    data["names"] = await names(session, community, data, timeout)
    return data


def people(data: dict[str, dict]) -> tuple[set[str], set[str]]:
    """The residents and households the board's lists show."""
    residents, households = set(), set()
    for name in AUDIT_LISTS:
        for row in data[name].get("rows") or []:
            d = row["envelope"]["data"]
            if d.get("resident"):
                residents.add(d["resident"])
            elif d.get("household"):
                households.add(d["household"])
    for item in (data["welfare"].get("checks") or []) + (data["requests"].get("requests") or []):
        households.add(item["household"])
    return residents, households


async def names(session: Session, community: str, data: dict[str, dict], timeout: float) -> dict:
    """The masked names of the people the lists show (``registry.names``): what the page shows in
    place of ids. Nothing personal: the names and phones are revealed one record at a time."""
    residents, households = people(data)
    if not residents and not households:
        return {"ok": True, "community": community, "residents": []}
    return await ask(session, "registry.names", {"community": community, "residents": ",".join(sorted(residents)),
                                                 "households": ",".join(sorted(households))}, timeout)


async def street_report(session: Session, scope: str, told: Told, timeout: float) -> dict[str, dict]:
    """An officer's report: the scope's figures with a column per committee."""
    return {"report": await views(session, "rollup", {"scope": scope, "detail": True}, told.seq, timeout)}
