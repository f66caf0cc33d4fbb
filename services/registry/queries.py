"""The registry's queries.

``cordon.qry.registry.identities``: every identity ever granted. Answered only inside Cordon
(``shared.access.CORDON_ONLY_QUERIES``): ``cordon identity list`` prints it, and the revocation list
NATS enforces is built from its revoked keys. One row per key: a name granted again after a
revocation appears once per grant.

``cordon.qry.registry.contact`` {resident | household, purpose}: names and phones, the one read
path of residents' personal data. Shown only to staff of the resident's own community
(``shared.access.check_personal``); before anything is decrypted the read is recorded as
``PersonalDataViewed`` {viewer, subject, residents, purpose} through the runtime (a command of the
registry's own: on the record, the stream and the audit log); if it cannot be recorded, nothing is
shown.

``cordon.qry.registry.names`` {community, residents?, households?}: the masked names the events
carry already (王*伟), by id, for boards and lists that show a person: nothing personal, so no read
is recorded; the place check (``community`` within what the identity reads) is the generic one.
"""
from __future__ import annotations

import json

from services.registry import commands, handlers, tables
from services.registry.keys import KeyStore
from shared import access, pii
from shared.contracts import queries
from shared.envelope import new_id
from shared.errors import Invalid, NotFound, Unavailable
from shared.identity import Identity
from shared.subjects import check_community, check_slug


async def identities(host, payload: bytes, identity: Identity | None) -> dict:
    """``registry.identities`` {}: name, role, scope, community, compound, grants, public_key,
    granted_at, granted_by, revoked_at (null while live), revoked_by, reason; oldest grant first
    (:class:`shared.contracts.queries.IdentitiesReply`)."""
    queries.decode("registry.identities", payload)  # takes no fields: any is invalid
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(tables.IDENTITIES)
    return {"ok": True, "identities": [dict(r) for r in rows]}


async def names(host, payload: bytes, identity: Identity | None) -> dict:
    """``registry.names``: the masked name of each resident asked, and of each resident of each
    household asked, in ``community`` (:class:`shared.contracts.queries.NamesReply`)."""
    q = queries.decode("registry.names", payload)
    check_community(q.community)
    residents, households = _ids(q.residents, "residents"), _ids(q.households, "households")
    if not residents and not households:
        return {"ok": True, "community": q.community, "residents": []}
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(tables.NAMES, q.community, residents, households)
    return {"ok": True, "community": q.community, "residents": [dict(r) for r in rows]}


def _ids(value: str | None, field: str) -> list[str]:
    ids = [check_slug(i.strip(), field) for i in (value or "").split(",") if i.strip()]
    if len(ids) > queries.MAX_NAMES:
        raise Invalid(f"at most {queries.MAX_NAMES} {field} a query", field=field)
    return ids


def contact(keys: KeyStore):
    """The ``registry.contact`` handler, reading data keys from ``keys``."""

    async def answer(host, payload: bytes, identity: Identity | None) -> dict:
        q = queries.decode("registry.contact", payload)
        kind, subject = _subject(q)
        purpose = commands.check_purpose(q.purpose)
        async with host.pool.acquire() as conn:
            rows = await conn.fetch(tables.CONTACTS, subject if kind == "resident" else None,
                                    subject if kind == "household" else None)
        if not rows:
            raise NotFound(f"{kind} {subject} is not registered", field=kind)
        community = rows[0]["community"]
        viewer = access.check_personal(identity, community, f"the contacts of {kind} {subject}")
        residents = [r["resident"] for r in rows]
        viewed = await _record(host, viewer, community, kind, subject, residents, purpose)
        households = sorted({handlers.household_subject(r["household"]) for r in rows})
        data_keys = await keys.get(residents + households)
        return {"ok": True, "community": community, "purpose": purpose, "viewed": viewed,
                "contacts": [_contact(r, data_keys) for r in rows]}

    return answer


def _subject(q: queries.ContactQuery) -> tuple[str, str]:
    if (q.resident is None) == (q.household is None):
        raise Invalid("give exactly one of resident and household", field="resident")
    kind, subject = ("resident", q.resident) if q.resident is not None else ("household", q.household)
    return kind, check_slug(subject, kind)


async def _record(host, viewer: Identity, community: str, kind: str, subject: str, residents: list[str],
                  purpose: str) -> str:
    """Record the read (PersonalDataViewed) through the runtime; its event id, or ``unavailable``."""
    cmd = commands.RecordPersonalDataView(
        command_id=f"read-{new_id()}", actor=viewer.actor,
        viewer=viewer.actor, community=community, subject=subject, subject_kind=kind,
        residents=residents, purpose=purpose)
    reply = await host.execute("record_personal_data_view", cmd)
    if not reply.get("ok"):
        raise Unavailable(f"the read could not be recorded ({reply['error']['message']}); nothing is shown")
    return reply["events"][0]["event_id"]


def _contact(row, data_keys: dict[str, bytes]) -> dict:
    base = {"resident": row["resident"], "household": row["household"], "address": _address(row, data_keys)}
    data_key = data_keys.get(row["resident"])
    if data_key is None or row["personal"] is None:  # erased: the key is gone
        return {**base, "name": None, "phone": None, "birth_year": None, "erased": True}
    personal = json.loads(pii.unseal(data_key, row["resident"], row["personal"]))
    return {**base, "name": personal["name"], "phone": personal["phone"], "birth_year": personal.get("birth_year"),
            "erased": False}


def _address(row, data_keys: dict[str, bytes]) -> str | None:
    """The household's address, sealed with its own key: null once its last resident is erased."""
    subject = handlers.household_subject(row["household"])
    if row["address"] is None or subject not in data_keys:
        return None
    return json.loads(pii.unseal(data_keys[subject], subject, row["address"]))["address"]


async def pending_registrations(host, payload: bytes, identity: Identity | None) -> dict:
    """``registry.pending_registrations`` {community, limit?, after?}: the arrivals from the city's
    list waiting for completion at the door, oldest first, masked names only
    (:class:`shared.contracts.queries.PendingRegistrationsReply`; the host has checked that
    ``identity`` reads the community)."""
    q = queries.decode("registry.pending_registrations", payload)
    check_community(q.community)
    if q.after != "":
        check_slug(q.after, "after")
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(tables.PENDING_LIST, q.community, q.after, q.limit + 1)
    page = [dict(r) for r in rows[:q.limit]]
    return {"ok": True, "community": q.community, "pending": page,
            "next": page[-1]["arrival"] if len(rows) > q.limit else None}


QUERIES = {"registry.identities": identities, "registry.names": names,
           "registry.pending_registrations": pending_registrations}
