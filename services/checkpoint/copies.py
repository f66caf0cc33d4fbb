"""The checkpoint's local copy of the quarantine service's facts, fed by a durable consumer.

Who is under quarantine and which areas are sealed decide passages, so the checkpoint keeps its own
copy in its schema (``checkpoint.q_cases``, ``checkpoint.sealed_areas``): it survives restarts
without a replay, answers inside the passage transaction, and works while the quarantine service is
down. The registry's facts come the same way through :mod:`shared.directory`.

From the quarantine contract:
- CaseOpened: kind home or centralized → in quarantine (blocked going out); monitoring → not blocked.
- CaseTransferred (to centralized or hospital) → still in quarantine, no longer at home.
- CaseReleased → health monitoring: no longer blocked at the gate.
- CaseClosed → not blocked.
- AreaSealed / SealLifted → a building, or (building None) the whole compound, sealed / unsealed.
  Lifting a compound seal leaves building seals in place, and the other way round.
- SampleTaken told to stay in until the result (``stay_in_until_result``) → the resident awaits a
  result (``checkpoint.awaiting_results``) until ResultRecorded of that sample.
A home case "at home" puts the household in home quarantine: its door is sealed.
"""
from __future__ import annotations

import asyncpg

from shared.contracts.quarantine import (
    AreaSealed,
    CaseClosed,
    CaseOpened,
    CaseReleased,
    CaseTransferred,
    ResultRecorded,
    SampleTaken,
    SealLifted,
)
from shared.envelope import Event, RawEnvelope
from shared.service import ConsumerSpec, LocalCopy
from shared.subjects import event_filters

EVENTS = ("CaseOpened", "CaseTransferred", "CaseReleased", "CaseClosed", "AreaSealed", "SealLifted",
          "SampleTaken", "ResultRecorded")
COMPOUND = ""  # the building key of a whole-compound seal
SCHEMA = "checkpoint"


def ddl(schema: str) -> str:
    """The copy's tables in ``schema`` (the checkpoint's own; ``cordon reconcile`` replays into a
    scratch schema)."""
    return f"""
CREATE TABLE IF NOT EXISTS {schema}.q_cases (
    case_id    text PRIMARY KEY,
    resident   text NOT NULL,
    household  text,
    community  text NOT NULL,
    kind       text NOT NULL,
    status     text NOT NULL CHECK (status IN ('quarantine', 'monitoring', 'closed')),
    at_home    boolean NOT NULL,
    updated_at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS q_cases_resident ON {schema}.q_cases (resident) WHERE status = 'quarantine';
CREATE INDEX IF NOT EXISTS q_cases_household ON {schema}.q_cases (household)
    WHERE status = 'quarantine' AND at_home;
CREATE TABLE IF NOT EXISTS {schema}.sealed_areas (
    community text NOT NULL,
    compound  text NOT NULL,
    building  text NOT NULL,
    sealed_at timestamptz NOT NULL,
    PRIMARY KEY (community, compound, building));
CREATE TABLE IF NOT EXISTS {schema}.awaiting_results (
    screening text NOT NULL,
    resident  text NOT NULL,
    community text NOT NULL,
    taken_at  timestamptz NOT NULL,
    PRIMARY KEY (resident, screening));
"""


DDL = ddl(SCHEMA)


def consumer() -> ConsumerSpec:
    """The durable consumer ``checkpoint-quarantine`` that keeps the copy current (a deployed
    durable: its name must not change)."""

    def build(host) -> object:
        async def handle(conn: asyncpg.Connection, raw: RawEnvelope, event: Event) -> None:
            await apply(conn, event)

        return handle

    return ConsumerSpec(name="checkpoint-quarantine",
                        subjects=event_filters("quarantine", *EVENTS), handle=build, copy=COPY)


_UPSERT = """
INSERT INTO {schema}.q_cases (case_id, resident, household, community, kind, status, at_home, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (case_id) DO UPDATE SET status = EXCLUDED.status, at_home = EXCLUDED.at_home,
    household = coalesce(EXCLUDED.household, q_cases.household), updated_at = EXCLUDED.updated_at
"""


async def apply(conn: asyncpg.Connection, event: Event, schema: str = SCHEMA) -> None:
    """Apply one quarantine event to the copy in ``schema`` (idempotent; the consumer's inbox
    makes it exactly-once)."""
    upsert = _UPSERT.format(schema=schema)
    match event:
        case CaseOpened():
            status = "monitoring" if event.kind == "monitoring" else "quarantine"
            await conn.execute(upsert, event.case, event.resident, event.household, event.community,
                               event.kind, status, event.kind == "home", event.opened_at)
        case CaseTransferred():
            await conn.execute(upsert, event.case, event.resident, event.household, event.community,
                               "transferred", "quarantine", False, event.transferred_at)
        case CaseReleased():
            await _end(conn, schema, event, "monitoring", event.released_at)
        case CaseClosed():
            await _end(conn, schema, event, "closed", event.closed_at)
        case AreaSealed():
            await conn.execute(
                f"INSERT INTO {schema}.sealed_areas VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                event.community, event.compound, event.building or COMPOUND, event.sealed_at)
        case SealLifted():
            await conn.execute(
                f"DELETE FROM {schema}.sealed_areas WHERE community = $1 AND compound = $2 AND building = $3",
                event.community, event.compound, event.building or COMPOUND)
        case SampleTaken() if event.stay_in_until_result:
            await conn.execute(f"INSERT INTO {schema}.awaiting_results VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                               event.screening, event.resident, event.community, event.taken_at)
        case ResultRecorded():
            await conn.execute(f"DELETE FROM {schema}.awaiting_results WHERE resident = $1 AND screening = $2",
                               event.resident, event.screening)


async def _end(conn, schema: str, event: CaseReleased | CaseClosed, status: str, at) -> None:
    # An update keeps the kind; a case we never saw opened is recorded anyway, not blocking.
    await conn.execute(
        f"""INSERT INTO {schema}.q_cases VALUES ($1, $2, $3, $4, 'unknown', $5, false, $6)
            ON CONFLICT (case_id) DO UPDATE SET status = $5, at_home = false, updated_at = $6""",
        event.case, event.resident, event.household, event.community, status, at)


async def _apply_envelope(conn: asyncpg.Connection, schema: str, raw: RawEnvelope, event: Event) -> None:
    await apply(conn, event, schema)


#: The copy as ``cordon reconcile`` checks it (see :class:`shared.service.LocalCopy`).
COPY = LocalCopy(tables=("q_cases", "sealed_areas", "awaiting_results"), ddl=ddl, apply=_apply_envelope)
