"""Logistics queries, answered on ``cordon.qry.<name>`` from the service's own tables, which commit
with the events: a reply never lags behind an accepted command.

- ``logistics.requests`` {community, limit?}: the committee's open requests, highest priority first,
  each saying what the store misses to meet it when the ones above it are met first.
- ``logistics.assignments`` {volunteer}: the deliveries a volunteer carries now, by household and
  building. ``address`` is null for a household registered since HouseholdRegistered schema 2
  (issue 16): the address stays in the registry, and the door comes from its read path.
- ``logistics.stock`` {community}: on hand by item.
- ``logistics.welfare`` {community}: the open welfare checks, oldest first.

Requests and replies are the structs of :mod:`shared.contracts.queries`.
"""
from __future__ import annotations

import json
from typing import Any

from services.logistics import commands
from services.logistics.domain import allocate
from services.logistics.config import Config
from shared import access
from shared.contracts import queries
from shared.contracts.logistics import ItemLine
from shared.identity import Identity
from shared.subjects import check_community

_REQUEST_COLUMNS = """r.request, r.community, r.household, r.compound, r.building, h.address, r.kind, r.items,
    r.note, r.priority, r.priority_reasons, r.status, r.volunteer, r.attempts, r.daily_on, r.requested_at"""


def _request(row) -> dict[str, Any]:
    out = dict(row)
    out["items"] = json.loads(out["items"])
    return out


async def _on_hand(conn, community: str) -> dict[str, int]:
    rows = await conn.fetch("SELECT item, on_hand FROM logistics.stock WHERE community = $1 ORDER BY item",
                            community)
    return {r["item"]: r["on_hand"] for r in rows}


async def open_requests(host, payload: bytes, identity: Identity | None, config: Config) -> dict:
    """What each open request misses depends on the catalogue (``config``, bound by app.py); the
    host has checked that ``identity`` reads the community."""
    q = queries.decode("logistics.requests", payload)
    check_community(q.community)
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(
            f"""SELECT {_REQUEST_COLUMNS} FROM logistics.requests r
                LEFT JOIN logistics.dir_households h USING (household)
                WHERE r.community = $1 AND r.status IN ('open', 'assigned')
                ORDER BY r.priority DESC, r.requested_at, r.request LIMIT $2""", q.community, q.limit)
        on_hand = await _on_hand(conn, q.community)
    requests = [_request(r) for r in rows]
    waiting = [(r["request"], [ItemLine(item=i["item"], qty=i["qty"]) for i in r["items"]])
               for r in requests if r["status"] == "open"]
    missing = allocate(waiting, on_hand, config)
    for r in requests:
        r["missing"] = missing.get(r["request"], [])
    return {"ok": True, "community": q.community, "count": len(requests), "on_hand": on_hand,
            "requests": requests}


async def assignments(host, payload: bytes, identity: Identity | None) -> dict:
    """A volunteer's deliveries, those in communities ``identity`` reads (a volunteer may carry
    some in another committee's)."""
    q = queries.decode("logistics.assignments", payload)
    commands.person(q.volunteer, "volunteer")
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(
            f"""SELECT {_REQUEST_COLUMNS} FROM logistics.requests r
                LEFT JOIN logistics.dir_households h USING (household)
                WHERE r.volunteer = $1 AND r.status = 'assigned'
                ORDER BY r.priority DESC, r.requested_at, r.request""", q.volunteer)
    rows = [r for r in rows if access.reads(identity, r["community"])]
    return {"ok": True, "volunteer": q.volunteer, "count": len(rows), "assignments": [_request(r) for r in rows]}


async def stock(host, payload: bytes, identity: Identity | None) -> dict:
    q = queries.decode("logistics.stock", payload)
    check_community(q.community)
    async with host.pool.acquire() as conn:
        return {"ok": True, "community": q.community, "on_hand": await _on_hand(conn, q.community)}


async def welfare(host, payload: bytes, identity: Identity | None) -> dict:
    q = queries.decode("logistics.welfare", payload)
    check_community(q.community)
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT check_id AS "check", household, compound, building, request, vulnerabilities, raised_at
               FROM logistics.welfare_checks WHERE community = $1 AND open ORDER BY raised_at, household""",
            q.community)
    return {"ok": True, "community": q.community, "count": len(rows), "checks": [dict(r) for r in rows]}
