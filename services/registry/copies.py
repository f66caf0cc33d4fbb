"""The registry's local copy of the quarantine's cases, fed by a durable consumer
(``registry-quarantine``): what the retention of residents needs to know and nothing more.

A resident who moved out is shredded after the retention period only if every quarantine case of
theirs is closed (:mod:`services.registry.retention`). The registry never reads the quarantine's
schema (one role per service, no grant across schemas: ``shared.pgroles``); it keeps, in its own
``registry.q_cases``, which case belongs to whom and whether it is closed, from the quarantine's
public events:

- CaseOpened → the case, open;
- CaseClosed → closed (a case released from quarantine goes on as monitoring: still open).

No reason, kind, date of a check-in or anything else about health: only what the rule reads.
"""
from __future__ import annotations

import asyncpg

from shared.contracts.quarantine import CaseClosed, CaseOpened
from shared.envelope import Event, RawEnvelope
from shared.service import ConsumerSpec, LocalCopy
from shared.subjects import event_filters

EVENTS = ("CaseOpened", "CaseClosed")
SCHEMA = "registry"


def ddl(schema: str) -> str:
    """The copy's table in ``schema`` (the registry's own; ``cordon reconcile`` replays into a
    scratch schema)."""
    return f"""
CREATE TABLE IF NOT EXISTS {schema}.q_cases (
    case_id   text PRIMARY KEY,
    resident  text NOT NULL,
    community text NOT NULL,
    opened_at timestamptz,
    closed_at timestamptz);
CREATE INDEX IF NOT EXISTS q_cases_open ON {schema}.q_cases (resident) WHERE closed_at IS NULL;
"""


DDL = ddl(SCHEMA)


def consumer() -> ConsumerSpec:
    """The durable consumer ``registry-quarantine`` that keeps the copy current (a deployed
    durable: its name must not change)."""

    def build(host) -> object:
        async def handle(conn: asyncpg.Connection, raw: RawEnvelope, event: Event) -> None:
            await apply(conn, event)

        return handle

    return ConsumerSpec(name="registry-quarantine", subjects=event_filters("quarantine", *EVENTS),
                        handle=build, copy=COPY)


async def apply(conn: asyncpg.Connection, event: Event, schema: str = SCHEMA) -> None:
    """Apply one quarantine event to the copy in ``schema`` (idempotent; the consumer's inbox
    makes it exactly-once)."""
    match event:
        case CaseOpened():
            await conn.execute(
                f"INSERT INTO {schema}.q_cases (case_id, resident, community, opened_at) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (case_id) DO UPDATE SET opened_at = EXCLUDED.opened_at",
                event.case, event.resident, event.community, event.opened_at)
        case CaseClosed():
            # a case whose opening this copy never saw is recorded closed all the same
            await conn.execute(
                f"INSERT INTO {schema}.q_cases (case_id, resident, community, closed_at) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (case_id) DO UPDATE SET closed_at = EXCLUDED.closed_at",
                event.case, event.resident, event.community, event.closed_at)


async def _apply_envelope(conn: asyncpg.Connection, schema: str, raw: RawEnvelope, event: Event) -> None:
    await apply(conn, event, schema)


#: The copy as ``cordon reconcile`` checks it (see :class:`shared.service.LocalCopy`).
COPY = LocalCopy(tables=("q_cases",), ddl=ddl, apply=_apply_envelope)
