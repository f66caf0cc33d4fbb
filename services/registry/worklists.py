"""The committee's work lists and the registry's lookups of issue 17: what staff do next.

``cordon.qry.registry.awaiting_verification`` {community, limit?, after?}: arrivals waiting for
door-to-door verification, oldest first, each with how long it has waited by the registry's clock
(``host.clock``: a test drives it). ``registry.household`` {household}: a household and its
residents. ``registry.compound_households`` {community, compound, limit?, after?}: a compound's
households, a page at a time. ``registry.tip_offs`` {community, open?, limit?}: neighbours'
tip-offs, open first.

Masked names only (the ones the events carry): nothing personal, so no read is recorded. A query
that names its community is checked by the host (``shared.access.check_query``); the household
query names none, and is refused here when the household's community is not one the caller reads.
A tip-off's words (``note``) may name people: only the community's own staff see them.
"""
from __future__ import annotations

from datetime import datetime

from services.registry import domain, tables
from shared import access
from shared.contracts import queries
from shared.errors import NotFound
from shared.identity import Identity
from shared.subjects import check_community, check_slug


async def awaiting_verification(host, payload: bytes, identity: Identity | None) -> dict:
    q = queries.decode("registry.awaiting_verification", payload)
    check_community(q.community)
    after = check_slug(q.after, "after") if q.after else ""
    now = host.clock()
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(tables.WAITING, q.community, after, q.limit + 1)
        count = await conn.fetchval(tables.WAITING_COUNT, q.community)
    page = [{**r, "waited_hours": waited_hours(r["registered_at"], now)} for r in rows[:q.limit]]
    return {"ok": True, "community": q.community, "as_of": now, "count": count, "arrivals": page,
            "next": page[-1]["arrival"] if len(rows) > q.limit else None}


def waited_hours(registered_at: datetime, now: datetime) -> float:
    """Hours from registration to ``now``, one decimal; never negative (a clock behind the record)."""
    return max(round((now - registered_at).total_seconds() / 3600, 1), 0.0)


async def household(host, payload: bytes, identity: Identity | None) -> dict:
    household_id = check_slug(queries.decode("registry.household", payload).household, "household")
    async with host.pool.acquire() as conn:
        row = await conn.fetchrow(tables.HOUSEHOLD, household_id)
        if row is None:
            raise NotFound(f"household {household_id} is not registered", field="household")
        access.forbid_unreadable(identity, {row["community"]}, f"household {household_id}")
        residents = await conn.fetch(tables.HOUSEHOLD_RESIDENTS, household_id)
    return {"ok": True, **row, "residents": [
        {k: r[k] for k in ("resident", "display_name", "vulnerabilities", "moved_out", "erased")}
        for r in residents]}


async def compound_households(host, payload: bytes, identity: Identity | None) -> dict:
    q = queries.decode("registry.compound_households", payload)
    check_community(q.community)
    check_slug(q.compound, "compound")
    after = check_slug(q.after, "after") if q.after else ""
    async with host.pool.acquire() as conn:
        if not await conn.fetchval(tables.STREAM_EXISTS, domain.compound_stream(q.community, q.compound)):
            raise NotFound(f"compound {q.compound} is not registered in {q.community}", field="compound")
        rows = await conn.fetch(tables.COMPOUND_HOUSEHOLDS, q.community, q.compound, after, q.limit + 1)
    page = [dict(r) for r in rows[:q.limit]]
    return {"ok": True, "community": q.community, "compound": q.compound, "households": page,
            "next": page[-1]["household"] if len(rows) > q.limit else None}


async def tip_offs(host, payload: bytes, identity: Identity | None) -> dict:
    q = queries.decode("registry.tip_offs", payload)
    check_community(q.community)
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(tables.TIP_OFFS, q.community, q.open, q.limit)
        still_open = await conn.fetchval(tables.OPEN_TIP_OFFS, q.community)
    words = _sees_words(identity, q.community)
    return {"ok": True, "community": q.community, "open": still_open, "tip_offs": [
        {**r, "note": r["note"] if words else None, "follow_up_note": r["follow_up_note"] if words else None}
        for r in rows]}


def _sees_words(identity: Identity | None, community: str) -> bool:
    """What a neighbour said may name people: the community's own staff only (as names and phones,
    ``access.check_personal``), not an officer of the street nor a city system."""
    return identity is not None and identity.role == "staff" and identity.community == community


QUERIES = {
    "registry.awaiting_verification": awaiting_verification,
    "registry.household": household,
    "registry.compound_households": compound_households,
    "registry.tip_offs": tip_offs,
}
