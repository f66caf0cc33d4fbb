"""The audit service's composition root: every event of the stream, once, in a hash-chained log.

No commands. A follower of the stream (run by the host) appends the stream to ``audit.log`` (see :mod:`services.audit.log`)
and reports like a consumer in the host's status (lag on ``cordon.qry.health``). ``cordon.qry.audit``
searches the log by actor, resident, community (or any prefix of the tree), type and time
(request and reply: :class:`shared.contracts.queries.AuditQuery`, ``AuditReply``).
"""
from __future__ import annotations


import msgspec

from services.audit import log
from shared.tail import Tail, TailFollower
from shared import access
from shared.contracts import queries
from shared.contracts.queries import AuditQuery
from shared.identity import Identity
from shared.service import ServiceSpec


def filters(query: AuditQuery) -> log.Filters:
    return log.Filters(**msgspec.structs.asdict(query))


async def audit_query(host, payload: bytes, identity: Identity | None) -> dict:
    """The log's rows matching the query; an identity that does not read the whole city sees its
    own scope's rows only (the host has checked a ``community`` the query names)."""
    query = queries.decode("audit", payload)
    if query.community is None and not access.reads(identity, None):
        query = msgspec.structs.replace(query, community=identity.scope)
    async with host.pool.acquire() as conn:
        rows = await log.show(conn, filters(query))
    for row in rows:
        row["envelope"] = msgspec.Raw(row["envelope"])
    return {"ok": True, "rows": rows}


class LiveAudit(TailFollower):
    """The audit's follower of the stream: the appender of the hash-chained log."""

    name = "audit"

    def __init__(self, host, batch_max: int = 2000):
        self.appender = log.Appender(host.pool)
        self.tail = Tail(host.nc, name="audit", position=self.appender.position,
                         prepare=self.appender.prepare, apply=self.appender.apply,
                         rewind=self.appender.rewind, batch_max=batch_max)

    @property
    def applied(self) -> int:
        return self.appender.appended


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="audit",
        extra_ddl=log.DDL,
        queries={"audit": audit_query},
        followers=[LiveAudit],
    )
