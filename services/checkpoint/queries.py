"""Checkpoint queries, answered on ``cordon.qry.<name>``.

``checkpoint.shifts`` — duty shifts and volunteer figures per community and day, as the teams report
them ("130 person-times, 895 hours"): payload ``{"community": path}`` with ``"on": date`` (default:
today) or ``"from"``/``"to"`` (inclusive, at most 93 days). A shift counts on the local day it
started in the city's time zone (``Config.zone``: ``CORDON_TIMEZONE``, default Asia/Shanghai);
``person_times`` counts shifts, ``people`` distinct staff, ``hours`` the hours of ended shifts,
``open_shifts`` those still running. Request and reply: :class:`shared.contracts.queries.ShiftsQuery`,
``ShiftsReply``.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.checkpoint.tables import SHIFT_FIGURES
from shared.contracts import queries
from shared.errors import Invalid
from shared.identity import Identity
from shared.subjects import check_community

MAX_DAYS = 93


def parse_shifts(payload: bytes, today: date) -> tuple[str, date, date]:
    q = queries.decode("checkpoint.shifts", payload)
    check_community(q.community)
    if q.on is not None and (q.from_ is not None or q.to is not None):
        raise Invalid("give on, or from and to, not both", field="on")
    first = q.on or q.from_ or today
    last = q.on or q.to or (today if q.from_ is None else max(first, today))
    if last < first:
        raise Invalid(f"to {last} is before from {first}", field="to")
    if (last - first).days >= MAX_DAYS:
        raise Invalid(f"at most {MAX_DAYS} days per query", field="to")
    return q.community, first, last


async def shifts(host, payload: bytes, identity: Identity | None, *, zone: ZoneInfo) -> dict:
    """The query ``checkpoint.shifts`` (``app.py`` binds the city's ``zone``; the host has checked
    that ``identity`` reads the community)."""
    today = host.clock().astimezone(zone).date()
    community, first, last = parse_shifts(payload, today)
    start = datetime.combine(first, time(0), zone)
    end = datetime.combine(last + timedelta(days=1), time(0), zone)
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(SHIFT_FIGURES, community, start, end, zone.key)
    days = [_figures(r) | {"on": r["day"].isoformat()} for r in rows if r["day"] is not None]
    totals = next((_figures(r) for r in rows if r["day"] is None), _figures(None))
    return {"ok": True, "community": community, "from": first.isoformat(), "to": last.isoformat(),
            "time_zone": zone.key, **totals, "days": days}


def _figures(r) -> dict:
    if r is None:
        return {"person_times": 0, "people": 0, "hours": 0.0, "open_shifts": 0}
    return {"person_times": r["person_times"], "people": r["people"], "hours": round(float(r["hours"]), 2),
            "open_shifts": r["open_shifts"]}
