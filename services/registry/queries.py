"""The registry's query on ``cordon.qry.registry.identities``: every identity ever granted.

Answered only inside Cordon (``shared.access.CORDON_ONLY_QUERIES``): ``cordon identity list``
prints it, and the revocation list NATS enforces is built from its revoked keys. One row per key:
a name granted again after a revocation appears once per grant.
"""
from __future__ import annotations

from services.registry import tables
from shared.errors import Invalid
from shared.identity import Identity
from shared.service import parse_json_object


async def identities(host, payload: bytes, identity: Identity | None) -> dict:
    """``registry.identities`` {}: name, role, scope, community, compound, grants, public_key,
    granted_at, granted_by, revoked_at (null while live), revoked_by, reason; oldest grant first."""
    query = parse_json_object(payload or b"{}")
    if query:
        field = sorted(query)[0]
        raise Invalid(f"unknown field {field!r}: registry.identities takes no fields ({{}})", field=field)
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(tables.IDENTITIES)
    return {"ok": True, "identities": [dict(r) for r in rows]}


QUERIES = {"registry.identities": identities}
