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
from datetime import date, datetime, timezone
from typing import Any

from services.logistics import commands
from services.logistics.domain import allocate
from services.logistics.config import Config
from shared import access
from shared.contracts import queries
from shared.contracts.logistics import ItemLine
from shared.errors import Invalid
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


# -- issue 17: group orders, volunteers' hours, the vulnerable list ----------------------------------
#
# - ``logistics.group_orders`` {community, open?, limit?}: the committee's group orders, newest first.
# - ``logistics.volunteer_hours`` {community, on | from, to}: hours per team and kind, gate shifts
#   included (recorded from the checkpoint's ShiftEnded by the reaction).
# - ``logistics.vulnerable`` {community, limit?, after?}: vulnerable residents (the directory's
#   flags) with their household's last contact, the longest without contact first.

#: The longest range of days ``logistics.volunteer_hours`` sums (as ``checkpoint.shifts``).
MAX_RANGE_DAYS = 93


async def group_orders(host, payload: bytes, identity: Identity | None) -> dict:
    q = queries.decode("logistics.group_orders", payload)
    check_community(q.community)
    status = {None: ["placed", "delivered", "handed_out"], True: ["placed", "delivered"], False: ["handed_out"]}
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT "order", compound, supplier, items, households, status, gate, handed_out, buildings,
                      placed_at, delivered_at
               FROM logistics.group_orders WHERE community = $1 AND status = ANY($2::text[])
               ORDER BY placed_at DESC, "order" LIMIT $3""", q.community, status[q.open], q.limit)
    orders = [dict(r) | {"items": json.loads(r["items"]), "buildings": json.loads(r["buildings"])} for r in rows]
    return {"ok": True, "community": q.community, "count": len(orders), "orders": orders}


def days_asked(q, today: date) -> tuple[date, date]:
    """The first and last day a ``logistics.volunteer_hours`` request asks for (``today``: the city's)."""
    if q.on is not None and (q.from_ is not None or q.to is not None):
        raise Invalid("give on, or from and to, not both", field="on")
    if q.on is not None:
        return q.on, q.on
    if q.from_ is None:
        if q.to is not None:
            raise Invalid("to needs from", field="from")
        return today, today
    last = q.to or today
    if last < q.from_:
        raise Invalid(f"to {last} is before from {q.from_}", field="to")
    if (last - q.from_).days + 1 > MAX_RANGE_DAYS:
        raise Invalid(f"at most {MAX_RANGE_DAYS} days at once", field="from")
    return q.from_, last


async def volunteer_hours(host, payload: bytes, identity: Identity | None, *, zone) -> dict:
    """Hours per team (``app.py`` binds the city's ``zone``, whose calendar the days are)."""
    q = queries.decode("logistics.volunteer_hours", payload)
    check_community(q.community)
    first, last = days_asked(q, host.clock().astimezone(zone).date())
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT team, unit_kind, kind, sum(minutes) AS minutes, count(DISTINCT volunteer) AS volunteers
               FROM logistics.volunteer_hours WHERE community = $1 AND day BETWEEN $2 AND $3
               GROUP BY GROUPING SETS ((team, unit_kind, kind), (team, unit_kind))""", q.community, first, last)
    teams = team_hours(rows)
    return {"ok": True, "community": q.community, "from": first.isoformat(), "to": last.isoformat(),
            "time_zone": zone.key, "hours": round(sum(t["hours"] for t in teams), 2), "teams": teams}


def team_hours(rows) -> list[dict]:
    """Rows grouped by (team, unit_kind, kind), and by (team, unit_kind) with kind null, as teams."""
    teams: dict[tuple, dict] = {}
    for r in rows:
        team = teams.setdefault((r["team"], r["unit_kind"]), {
            "team": r["team"], "unit_kind": r["unit_kind"], "hours": 0.0, "kinds": {}, "volunteers": 0})
        if r["kind"] is None:
            team["hours"], team["volunteers"] = round(r["minutes"] / 60, 2), r["volunteers"]
        else:
            team["kinds"][r["kind"]] = round(r["minutes"] / 60, 2)
    return sorted(teams.values(), key=lambda t: (-t["hours"], t["team"] or "", t["unit_kind"] or ""))


#: Each vulnerable resident of a community with the household's last contact: a delivery left, a
#: welfare check resolved (unless nobody was at home), a visit that found someone.
VULNERABLE = """
WITH v AS (
  SELECT r.resident, r.display_name, r.household, r.compound, r.building, r.vulnerabilities,
         c.at AS last_contact_at, c.kind AS last_contact
  FROM logistics.dir_residents r
  LEFT JOIN LATERAL (
    SELECT at, kind FROM (
      SELECT max(q.updated_at) AS at, 'delivery' AS kind FROM logistics.requests q
       WHERE q.household = r.household AND q.status = 'delivered'
      UNION ALL
      SELECT w.resolved_at, 'welfare_check' FROM logistics.welfare_checks w
       WHERE w.household = r.household AND w.outcome IS DISTINCT FROM 'not_at_home'
      UNION ALL
      SELECT s.last_contact_at, 'visit' FROM logistics.visits s WHERE s.household = r.household
    ) x WHERE at IS NOT NULL ORDER BY at DESC LIMIT 1) c ON true
  WHERE r.community = $1 AND NOT r.moved_out AND cardinality(r.vulnerabilities) > 0)
SELECT * FROM v
WHERE NOT $2 OR CASE WHEN $3::timestamptz IS NULL
                     THEN (last_contact_at IS NULL AND resident > $4) OR last_contact_at IS NOT NULL
                     ELSE last_contact_at > $3 OR (last_contact_at = $3 AND resident > $4) END
ORDER BY last_contact_at NULLS FIRST, resident LIMIT $5"""


def cursor(row) -> str:
    """A page's ``next``: the last row's contact (microseconds since 1970, ``n`` for never) and id."""
    at = row["last_contact_at"]
    return f"{'n' if at is None else round(at.timestamp() * 1_000_000)}.{row['resident']}"


def after(value: str) -> tuple[bool, datetime | None, str]:
    """``after`` as (given, contact, resident); ``invalid`` unless it is a ``next`` of this query."""
    if not value:
        return False, None, ""
    at, _, resident = value.partition(".")
    if not resident or not (at == "n" or at.isdigit()):
        raise Invalid("after must be the next of a previous page, as given", field="after")
    when = None if at == "n" else datetime.fromtimestamp(int(at) / 1_000_000, timezone.utc)
    return True, when, resident


async def vulnerable(host, payload: bytes, identity: Identity | None, *, zone) -> dict:
    """The vulnerable list (``app.py`` binds the city's ``zone``: whole days without contact)."""
    q = queries.decode("logistics.vulnerable", payload)
    check_community(q.community)
    given, at, resident = after(q.after)
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(VULNERABLE, q.community, given, at, resident, q.limit + 1)
    today = host.clock().astimezone(zone).date()
    page = [_vulnerable(r, today, zone) for r in rows[:q.limit]]
    return {"ok": True, "community": q.community, "count": len(page), "residents": page,
            "next": cursor(rows[q.limit - 1]) if len(rows) > q.limit else None}


def _vulnerable(row, today: date, zone) -> dict:
    out = dict(row)
    at = row["last_contact_at"]
    out["vulnerabilities"] = list(row["vulnerabilities"])
    out["days_without_contact"] = None if at is None else max((today - at.astimezone(zone).date()).days, 0)
    return out
