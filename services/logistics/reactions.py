"""Reactions to the quarantine service: a confined household gets food every day until it is free;
and to the checkpoint's duty shifts: a gate shift's hours count among the volunteer's hours.

- CaseOpened (kind home) starts the daily supply of the resident's household (cause ``case:<id>``);
  CaseReleased, CaseTransferred and CaseClosed stop it: after release the resident is under health
  monitoring and may go out; after a transfer they are no longer at home.
- AreaSealed starts the daily supply of every household of the building or compound, the most
  vulnerable first (cause ``seal:<compound>[:<building>]``); SealLifted stops it.

- ShiftEnded records the shift's hours as the volunteer's ``gate_shift`` hours
  (``record_volunteer_hours``), on the day the shift started (as ``checkpoint.shifts`` counts it).

Commands carry deterministic ids derived from the event id, so a redelivered or replayed event gets
the stored reply and writes nothing; they carry the event's own time, so a replay decides the same.
The seal reaction needs the directory (which households live there), so it is a consumer whose
I/O is that one lookup; what it sends is decided by the pure :func:`seal_commands`.
"""
from __future__ import annotations

import asyncio
from datetime import timedelta, tzinfo
from functools import partial
from types import SimpleNamespace
from typing import Any

import asyncpg

from services.logistics import tables
from services.logistics.commands import RecordVolunteerHours, StartDailySupply, StopDailySupply
from services.logistics.domain import priority
from shared import directory
from shared import envelope as env
from shared import log as logging
from shared.contracts.checkpoint import ShiftEnded
from shared.contracts.quarantine import (
    AreaSealed,
    CaseClosed,
    CaseOpened,
    CaseReleased,
    CaseTransferred,
    SealLifted,
)
from shared.service import ConsumerSpec, LocalCopy, ReactionSpec
from shared.subjects import event_filters

log = logging.get("logistics.reactions")

#: The reaction's name in its command ids and actor (both part of the record: never change them).
REACTION = "daily-supply"
ACTOR = f"system:{REACTION}"
CASE_EVENTS = ("CaseOpened", "CaseReleased", "CaseTransferred", "CaseClosed")
SEAL_EVENTS = ("AreaSealed", "SealLifted")


def _common(raw: env.RawEnvelope, command_id: str) -> dict[str, Any]:
    return dict(command_id=command_id, actor=ACTOR, occurred_at=raw.occurred_at,
                correlation_id=raw.correlation_id, causation_id=raw.event_id)


def react_to_case(raw: env.RawEnvelope, event: env.Event) -> list[tuple[str, Any]]:
    """CaseOpened (home) -> start_daily_supply; the end of home quarantine -> stop_daily_supply."""
    command_id = f"{REACTION}:{raw.event_id}"
    match event:
        case CaseOpened(kind="home"):
            who = {"household": event.household} if event.household else {"resident": event.resident}
            return [("start_daily_supply", StartDailySupply(
                **_common(raw, command_id), **who, cause=f"case:{event.case}", community=event.community,
                compound=event.compound, building=event.building))]
        case CaseReleased() | CaseTransferred() | CaseClosed():
            who = {"household": event.household} if event.household else {"resident": event.resident}
            return [("stop_daily_supply", StopDailySupply(**_common(raw, command_id), **who,
                                                          cause=f"case:{event.case}"))]
    return []


#: The gate-shift reaction's name in its command ids and actor (never change them).
HOURS_REACTION = "gate-hours"


def react_to_shift(raw: env.RawEnvelope, event: env.Event, *, zone: tzinfo) -> list[tuple[str, Any]]:
    """ShiftEnded -> record_volunteer_hours (gate_shift), in minutes, on the shift's first day in
    the city's ``zone``. A shift of no whole minute records nothing."""
    if not isinstance(event, ShiftEnded) or round(event.hours * 60) < 1:
        return []
    started = event.ended_at - timedelta(hours=event.hours)
    return [("record_volunteer_hours", RecordVolunteerHours(
        command_id=f"{HOURS_REACTION}:{raw.event_id}", actor=f"system:{HOURS_REACTION}",
        occurred_at=raw.occurred_at, correlation_id=raw.correlation_id, causation_id=raw.event_id,
        volunteer=event.staff, community=event.community, on=started.astimezone(zone).date(),
        kind="gate_shift", hours=min(round(event.hours * 60) / 60, 24), shift=event.shift))]


def seal_cause(event: AreaSealed | SealLifted) -> str:
    return f"seal:{event.compound}" + (f":{event.building}" if event.building else "")


def seal_commands(raw: env.RawEnvelope, event: env.Event,
                  households: list[tuple[str, list[str]]]) -> list[tuple[str, Any]]:
    """The commands for a seal or its lifting, given the area's households and their
    vulnerabilities: one per household, the most vulnerable first."""
    if not isinstance(event, (AreaSealed, SealLifted)):
        return []
    cause = seal_cause(event)
    ordered = sorted(households, key=lambda h: (-priority(h[1], (cause,), "food")[0], h[0]))
    out: list[tuple[str, Any]] = []
    for household, _ in ordered:
        common = _common(raw, f"{REACTION}:{raw.event_id}:{household}")
        if isinstance(event, AreaSealed):
            out.append(("start_daily_supply", StartDailySupply(**common, household=household, cause=cause)))
        else:
            out.append(("stop_daily_supply", StopDailySupply(**common, household=household, cause=cause)))
    return out


async def feed_late_households(host) -> int:
    """Start the daily supply of households the directory learned of after their area was sealed
    (the seal reaction only saw the households known then). Same command ids as the reaction."""
    async with host.pool.acquire() as conn:
        rows = await conn.fetch(tables.UNFED_IN_SEALED)
    started = 0
    for row in rows:
        raw = SimpleNamespace(event_id=row["event_id"], occurred_at=row["occurred_at"],
                              correlation_id=row["correlation_id"])
        event = AreaSealed(community=row["community"], compound=row["compound"], building=row["building"],
                           sealed_at=row["occurred_at"], sealed_by=ACTOR)
        for name, cmd in seal_commands(raw, event, [(row["household"], list(row["vulnerabilities"]))]):
            started += bool((await host.execute(name, cmd))["ok"])
    return started


def case_reaction() -> ReactionSpec:
    return ReactionSpec(name="logistics-cases", subjects=event_filters("quarantine", *CASE_EVENTS),
                        react=react_to_case)


def shift_reaction(zone: tzinfo) -> ReactionSpec:
    """The checkpoint's ShiftEnded as the volunteer's gate-shift hours."""
    return ReactionSpec(name="logistics-gate-hours", subjects=event_filters("checkpoint", "ShiftEnded"),
                        react=partial(react_to_shift, zone=zone))


def seal_consumer() -> ConsumerSpec:
    def build(host):
        async def handle(conn: asyncpg.Connection, raw: env.RawEnvelope, event: env.Event) -> None:
            if not isinstance(event, (AreaSealed, SealLifted)):
                return
            rows = await directory.households_in(conn, tables.SCHEMA, event.community, event.compound,
                                                 event.building, vulnerabilities=True)
            commands = seal_commands(raw, event, [(r["household"], list(r["vulnerabilities"])) for r in rows])
            # Queued in priority order, so the group-commit runtime records the vulnerable first.
            replies = await asyncio.gather(*(host.execute(name, cmd) for name, cmd in commands))
            for (name, cmd), reply in zip(commands, replies):
                if reply["ok"]:
                    continue
                if reply["error"]["code"] in ("unavailable", "internal"):
                    raise RuntimeError(f"{name} for {cmd.household} failed: {reply['error']}")  # retried
                log.info("reaction.refused", reaction="logistics-seals", command=name, household=cmd.household,
                         event_id=raw.event_id, error=reply["error"]["message"])
            # The area's row last: until this transaction writes, it holds back no relay (they
            # publish below the oldest open transaction) while the commands above are decided.
            await record_area(conn, tables.SCHEMA, raw, event)

        return handle

    return ConsumerSpec(name="logistics-seals", subjects=event_filters("quarantine", *SEAL_EVENTS),
                        handle=build, copy=SEALED_AREAS)


async def record_area(conn: asyncpg.Connection, schema: str, raw: env.RawEnvelope, event: env.Event) -> None:
    """The seal consumer's copy: the area under seal now (``{schema}.sealed_areas``), or no longer."""
    if isinstance(event, AreaSealed):
        await conn.execute(tables.SEAL_AREA.format(schema=schema), event.community, seal_cause(event),
                           event.compound, event.building, raw.event_id, raw.occurred_at, raw.correlation_id)
    elif isinstance(event, SealLifted):
        await conn.execute(tables.LIFT_AREA.format(schema=schema), event.community, seal_cause(event))


#: The seal consumer's copy as ``cordon reconcile`` checks it (its commands are the service's own
#: record, checked there; see :class:`shared.service.LocalCopy`).
SEALED_AREAS = LocalCopy(tables=("sealed_areas",), ddl=tables.sealed_areas_ddl, apply=record_area)
