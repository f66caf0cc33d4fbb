"""Checkpoint queries, answered on ``cordon.qry.<name>``.

``checkpoint.shifts`` — duty shifts and volunteer figures per community and day, as the teams report
them ("130 person-times, 895 hours"): payload ``{"community": path}`` with ``"on": date`` (default:
today) or ``"from"``/``"to"`` (inclusive, at most 93 days). A shift counts on the local day it
started in the city's time zone (``Config.zone``: ``CORDON_TIMEZONE``, default Asia/Shanghai);
``person_times`` counts shifts, ``people`` distinct staff, ``hours`` the hours of ended shifts,
``open_shifts`` those still running. Request and reply: :class:`shared.contracts.queries.ShiftsQuery`,
``ShiftsReply``.

``checkpoint.visitor_contact`` {passage, purpose}: a visitor's name and phone, the one read path of
visitors' personal data. Shown only to staff of the visited community
(``shared.access.check_personal``), and only while the visit is within the tracing window
(``Config.tracing_days``: ``CORDON_VISITOR_TRACING_DAYS``, default 28): an older visit is
``not_found``, saying so (its data is shredded within a day after). Before anything is decrypted
the read is recorded as ``VisitorContactViewed`` {viewer, passage, purpose} through the runtime (a
command of the checkpoint's own: on the record, the stream and the audit log); if it cannot be
recorded, nothing is shown (``unavailable``).

``checkpoint.parcels`` {community, compound?, gate?, uncollected?, limit?, after?}: the drop
point's work list (issue 17), oldest first, each parcel saying whether it goes to the door (its
household in home quarantine, its building or compound sealed: from the local copies of the
quarantine's facts). Request and reply: :class:`shared.contracts.queries.ParcelsQuery`,
``ParcelsReply``.
"""
from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.checkpoint import commands
from services.checkpoint.config import Config
from services.checkpoint.tables import PARCELS, SHIFT_FIGURES, VISITOR
from shared import access, pii
from shared.contracts import queries
from shared.envelope import new_id
from shared.errors import Invalid, NotFound, Unavailable
from shared.identity import Identity
from shared.keystore import KeyStore
from shared import wire
from shared.subjects import check_community, check_slug

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


def visitor_contact(keys: KeyStore, config: Config):
    """The ``checkpoint.visitor_contact`` handler, reading data keys from ``keys``."""

    async def answer(host, payload: bytes, identity: Identity | None) -> dict:
        q = queries.decode("checkpoint.visitor_contact", payload)
        passage = check_slug(q.passage, "passage")
        purpose = commands.check_purpose(q.purpose)
        async with host.pool.acquire() as conn:
            row = await conn.fetchrow(VISITOR, passage)
        if row is None:
            raise NotFound(f"no visitor was checked at passage {passage}", field="passage")
        viewer = access.check_personal(identity, row["community"], f"the contact of the visitor of passage "
                                       f"{passage}", whose="the visited community")
        _within_window(row, config, host.clock())
        viewed = await _record(host, viewer, row["community"], passage, purpose)
        data_key = (await keys.get([passage])).get(passage)
        if data_key is None:  # shredded since the row was read
            _outside(passage, row, config)
        personal = json.loads(pii.unseal(data_key, passage, row["personal"]))
        return {"ok": True, "community": row["community"], "compound": row["compound"], "gate": row["gate"],
                "passage": passage, "host_household": row["host_household"], "checked_at": row["checked_at"],
                "name": personal["name"], "phone": personal["phone"], "visit_purpose": personal["purpose"],
                "purpose": purpose, "viewed": viewed}

    return answer


def _within_window(row, config: Config, now: datetime) -> None:
    if row["personal"] is None or row["checked_at"] < config.tracing_start(now):
        _outside(row["passage"], row, config)


def _outside(passage: str, row, config: Config) -> None:
    raise NotFound(f"the visit of passage {passage} ({row['checked_at'].date().isoformat()}) is outside the "
                   f"tracing window of {config.tracing_days} days: a visitor's name and phone are kept for "
                   "contact tracing that long only, then shredded", field="passage")


async def _record(host, viewer: Identity, community: str, passage: str, purpose: str) -> str:
    """Record the read (VisitorContactViewed) through the runtime; its event id, or ``unavailable``."""
    cmd = commands.RecordVisitorContactView(command_id=f"read-{new_id()}", actor=viewer.actor, viewer=viewer.actor,
                                            community=community, passage=passage, purpose=purpose)
    reply = await host.execute("record_visitor_contact_view", cmd)
    if not reply.get("ok"):
        raise Unavailable(f"the read could not be recorded ({reply['error']['message']}); nothing is shown")
    return reply["events"][0]["event_id"]


async def parcels(host, payload: bytes, identity: Identity | None) -> dict:
    """The query ``checkpoint.parcels`` (the host has checked that ``identity`` reads the community)."""
    q = queries.decode("checkpoint.parcels", payload)
    check_community(q.community)
    wire.optional_slug(q.compound, "compound")
    wire.optional_slug(q.gate, "gate")
    if q.after:
        check_slug(q.after, "after")
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(PARCELS, q.community, q.compound, q.gate, q.uncollected, q.after, q.limit + 1)
    page = [dict(r) for r in rows[:q.limit]]
    more = len(rows) > q.limit
    return {"ok": True, "community": q.community, "count": len(page), "parcels": page,
            "next": page[-1]["parcel"] if more else None}
