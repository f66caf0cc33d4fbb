"""The registry's query on ``cordon.qry.registry.identities``: every identity ever granted.

Answered only inside Cordon (``shared.access.CORDON_ONLY_QUERIES``): ``cordon identity list``
prints it, and the revocation list NATS enforces is built from its revoked keys. One row per key:
a name granted again after a revocation appears once per grant.
"""
from __future__ import annotations

from services.registry import tables
from shared.contracts import queries
from shared.identity import Identity


async def identities(host, payload: bytes, identity: Identity | None) -> dict:
    """``registry.identities`` {}: name, role, scope, community, compound, grants, public_key,
    granted_at, granted_by, revoked_at (null while live), revoked_by, reason; oldest grant first
    (:class:`shared.contracts.queries.IdentitiesReply`)."""
    queries.decode("registry.identities", payload)  # takes no fields: any is invalid
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(tables.IDENTITIES)
    return {"ok": True, "identities": [dict(r) for r in rows]}


QUERIES = {"registry.identities": identities}
