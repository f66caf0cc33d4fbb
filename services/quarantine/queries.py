"""Queries answered on ``cordon.qry.<name>``: the case list of a committee, the case history
of a resident and a screening round's status list. Read from the service's tables and the event
record; nothing is written. Requests and replies are the structs of :mod:`shared.contracts.queries`."""
from __future__ import annotations

from datetime import timedelta

import msgspec

from services.quarantine import domain, tables
from shared import access, envelope, store
from shared.contracts import queries
from shared.errors import NotFound
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


#: A round's residents by where they are in it, each a page in resident order after $2, at most $3
#: (the residents not sampled: of community $4, compound $5).
_LIVING = "r.community = $2 AND r.compound = $3 AND NOT r.moved_out"
_ROW = """SELECT r.resident, r.display_name, r.household, r.building, c.code IS NOT NULL AS code_issued,
    s.taken_at, coalesce(s.stay_in, false) AS stay_in"""
_JOINS = """LEFT JOIN quarantine.sample_codes c ON c.screening = $1 AND c.resident = r.resident"""
STATUS_LISTS = {
    "not_sampled": f"""{_ROW} FROM quarantine.dir_residents r
        LEFT JOIN quarantine.round_samples s ON s.screening = $1 AND s.resident = r.resident {_JOINS}
        WHERE {_LIVING.replace("$2", "$4").replace("$3", "$5")} AND s.resident IS NULL AND r.resident > $2
        ORDER BY r.resident LIMIT $3""",
    "pending": f"""{_ROW.replace('r.resident,', 's.resident,')} FROM quarantine.round_samples s
        LEFT JOIN quarantine.dir_residents r ON r.resident = s.resident {_JOINS.replace('r.resident', 's.resident')}
        WHERE s.screening = $1 AND s.result IS NULL AND s.resident > $2 ORDER BY s.resident LIMIT $3""",
}
STATUS_LISTS["staying_in"] = STATUS_LISTS["pending"].replace("s.result IS NULL", "s.result IS NULL AND s.stay_in")
STATUS_COUNTS = f"""
SELECT (SELECT count(*) FROM quarantine.dir_residents r WHERE {_LIVING}) AS residents,
       (SELECT count(*) FROM quarantine.dir_residents r WHERE {_LIVING} AND NOT EXISTS
           (SELECT 1 FROM quarantine.round_samples s WHERE s.screening = $1 AND s.resident = r.resident))
           AS not_sampled,
       count(s.resident) AS sampled,
       count(*) FILTER (WHERE s.result IS NULL AND s.resident IS NOT NULL) AS pending,
       count(*) FILTER (WHERE s.result IS NULL AND s.stay_in) AS staying_in,
       count(*) FILTER (WHERE s.result = 'negative') AS negative,
       count(*) FILTER (WHERE s.result = 'positive') AS positive,
       (SELECT count(*) FROM quarantine.sample_codes c WHERE c.screening = $1) AS codes_issued
FROM quarantine.round_samples s WHERE s.screening = $1
"""


async def screening_status(host, payload: bytes, identity: Identity | None) -> dict:
    """``quarantine.screening_status`` {community, screening, status? not_sampled|pending|staying_in,
    limit?, after? resident}: the round's counts, and one of its work lists a page at a time —
    residents of the round's compound not sampled yet, samples whose result is pending, and the
    sampled told to stay in until their result is back (the host has checked that ``identity``
    reads the community)."""
    q = queries.decode("quarantine.screening_status", payload)
    check_community(q.community)
    check_slug(q.screening, "screening")
    if q.after != "":
        check_slug(q.after, "after")
    async with host.pool.acquire() as conn:
        round_ = await _round(conn, q.screening)
        if round_ is None or round_.community != q.community:
            raise NotFound(f"screening {q.screening} is not a round of {q.community}", field="screening")
        counts = await conn.fetchrow(STATUS_COUNTS, q.screening, q.community, round_.compound)
        area = (q.community, round_.compound) if q.status == "not_sampled" else ()
        rows = await conn.fetch(STATUS_LISTS[q.status], q.screening, q.after, q.limit + 1, *area)
    page = [dict(r) for r in rows[:q.limit]]
    return {"ok": True, "community": q.community, "screening": q.screening, "compound": round_.compound,
            "on": round_.on, "stay_in_until_result": round_.stay_in_until_result, "counts": dict(counts),
            "status": q.status, "residents": page, "next": page[-1]["resident"] if len(rows) > q.limit else None}


async def _round(conn, screening: str) -> domain.Screening | None:
    rows = await store.load_streams(conn, "quarantine", [domain.screening_stream(screening)])
    return domain.replay(envelope.decode(r["envelope"])[1] for r in rows)


QUERIES = {"quarantine.cases": cases, "quarantine.history": history,
           "quarantine.screening_status": screening_status}
