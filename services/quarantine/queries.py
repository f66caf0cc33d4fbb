"""Queries answered on ``cordon.qry.<name>``: the case list of a committee and the case history
of a resident. Read from ``quarantine.cases`` and the event record; nothing is written. Requests
and replies are the structs of :mod:`shared.contracts.queries`."""
from __future__ import annotations

from datetime import timedelta

import msgspec

from services.quarantine import domain, tables
from shared import access
from shared.contracts import queries
from shared.identity import Identity
from shared.subjects import check_community, check_slug

MAX_DAYS = 400
#: The events whose readings stay in ``quarantine.checkins`` (schema 2).
CHECKIN_TYPES = ("CheckinRecorded", "SymptomsReported")

CASE_COLUMNS = """c.case_id AS "case", c.resident, d.display_name, c.household, c.compound, c.building,
    c.kind, c.reason, c.stage, c.open, c.starts_on, c.ends_on, c.closed_on, c.checkins, c.last_checkin_on,
    c.missed, c.last_missed_on"""
#: The masked display name (王*伟) comes from the local directory of registry facts.
FROM = "quarantine.cases c LEFT JOIN quarantine.dir_residents d ON d.resident = c.resident"


async def cases(host, payload: bytes, identity: Identity | None) -> dict:
    """``quarantine.cases`` {community, status? open|closed|all (open), limit? (1000), after? case}:
    the committee's cases in case-id order; ``next`` is the ``after`` of the following page (the host
    has checked that ``identity`` reads the community)."""
    q = queries.decode("quarantine.cases", payload)
    check_community(q.community)
    if q.after != "":
        check_slug(q.after, "after")
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {CASE_COLUMNS} FROM {FROM} WHERE c.community = $1 "
            "AND ($2::boolean IS NULL OR c.open = $2) AND c.case_id > $3 ORDER BY c.case_id LIMIT $4",
            q.community, {"open": True, "closed": False, "all": None}[q.status], q.after, q.limit + 1)
    page = [dict(r) for r in rows[:q.limit]]
    return {"ok": True, "community": q.community, "status": q.status, "cases": page,
            "next": page[-1]["case"] if len(rows) > q.limit else None}


async def history(host, payload: bytes, identity: Identity | None) -> dict:
    """``quarantine.history`` {resident}: every case of the resident (oldest first) and every event
    of those cases — opened, check-ins, symptoms, missed days, transfers, release, close — in order,
    a check-in with its temperature and symptoms (:func:`_with_readings`); only for an identity that reads the communities of those cases."""
    resident = check_slug(queries.decode("quarantine.history", payload).resident, "resident")
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT {CASE_COLUMNS}, c.community FROM {FROM} WHERE c.resident = $1 "
                                "ORDER BY c.opened_at, c.case_id", resident)
        access.forbid_unreadable(identity, {r["community"] for r in rows}, f"the cases of resident {resident}")
        streams = [s for row in rows for s in _streams(row)]
        events = await conn.fetch("SELECT stream_id, version, type, envelope FROM quarantine.events "
                                  "WHERE stream_id = ANY($1::text[]) ORDER BY position", streams)
        readings = {(r[0], r[1]): r for r in await conn.fetch(tables.CHECKINS_OF, streams)}
    return {"ok": True, "resident": resident, "cases": [dict(r) for r in rows],
            "events": [_with_readings(e, readings) for e in events]}


def _with_readings(row, readings: dict) -> msgspec.Raw | dict:
    """The envelope as recorded; a check-in of schema 2 with what was read merged into its data
    (``temperature_c``, ``symptoms``: kept in ``quarantine.checkins``, off the bus), so a caller
    reads the same fields in a check-in of either schema."""
    raw = bytes(row["envelope"])
    reading = readings.get((row["stream_id"], row["version"])) if row["type"] in CHECKIN_TYPES else None
    if reading is None:
        return msgspec.Raw(raw)
    envelope = msgspec.json.decode(raw)
    envelope["data"] = {**envelope["data"], "temperature_c": reading["temperature_c"],
                        "symptoms": list(reading["symptoms"])}
    return envelope


def _streams(row) -> list[str]:
    """The case's stream and its check-in days' streams, by key (exact index lookups)."""
    last = max(d for d in (row["ends_on"], row["closed_on"], row["last_checkin_on"], row["last_missed_on"]) if d)
    days = min((last - row["starts_on"]).days + 1, MAX_DAYS)
    return [domain.case_stream(row["case"])] + [domain.day_stream(row["case"], row["starts_on"] + timedelta(days=i))
                                                for i in range(days)]


QUERIES = {"quarantine.cases": cases, "quarantine.history": history}
