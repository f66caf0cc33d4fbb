"""Quarantine command handlers: load the facts a command touches, decide (pure), append, and keep
``quarantine.cases`` current in the same transaction.

Where a resident lives and which buildings a compound has come from the local directory of
registry facts (``shared.directory``), read inside the command's transaction.
"""
from __future__ import annotations

from typing import Any, Callable

import msgspec

from services.quarantine import decide as rules
from services.quarantine import domain, tables
from services.quarantine.commands import (
    Command,
    LiftSeal,
    OpenCase,
    RecordCheckin,
    RecordMissedCheckins,
    RecordResult,
    RecordSample,
    ReleaseCase,
    ScheduleScreening,
    Seal,
    TransferCase,
)
from services.quarantine.decide import Compound, Facts, Resident
from services.quarantine.rules import Policy
from shared import directory
from shared.context import Context
from shared.envelope import new_id
from shared.errors import CommandError, Invalid

SCHEMA = "quarantine"


def prefetch(cmd: Command) -> list[str]:
    """Streams a command will surely read, loaded for the whole batch in one query."""
    match cmd:
        case OpenCase() | RecordResult() if cmd.case is not None:
            streams = [domain.case_stream(cmd.case)]
            if isinstance(cmd, RecordResult):
                streams += [domain.screening_stream(cmd.screening),
                            domain.sample_stream(cmd.screening, cmd.resident)]
            return streams
        case RecordCheckin():
            return [domain.case_stream(cmd.case), domain.day_stream(cmd.case, cmd.on)]
        case TransferCase() | ReleaseCase():
            return [domain.case_stream(cmd.case)]
        case RecordMissedCheckins():  # the cases themselves come from their rows (prepare_batch)
            return [domain.day_stream(c, cmd.on) for c in cmd.cases]
        case Seal() | LiftSeal():
            return [domain.seal_stream(cmd.community, cmd.compound)]
        case ScheduleScreening() if cmd.screening is not None:
            return [domain.screening_stream(cmd.screening)]
        case RecordSample() | RecordResult():
            return [domain.screening_stream(cmd.screening), domain.sample_stream(cmd.screening, cmd.resident)]
    return []


async def prepare_batch(conn, cmds: list[Command], scratch: dict) -> None:
    """The cases of the batch's missed-check-in sweeps, from their rows, in one query."""
    ids = [c for cmd in cmds if isinstance(cmd, RecordMissedCheckins) for c in cmd.cases]
    if ids:
        scratch["case_rows"] = {row[0]: tables.case_of_row(row) for row in await conn.fetch(tables.CASES_BY_ID, ids)}


# -- loading facts -------------------------------------------------------------------------


async def _state(ctx: Context, stream_id: str):
    state, _ = await ctx.load(stream_id)
    return state


async def _case_for_reading(ctx: Context, case_id: str) -> domain.Case | None:
    """The case as this batch sees it: what an earlier command of the batch made of it, else its
    row's snapshot taken by :func:`prepare_batch`, else its stream."""
    stream = domain.case_stream(case_id)
    held = ctx.held(stream)
    if held is not None:
        return held[0]
    rows = ctx.scratch.get("case_rows", {})
    return rows[case_id] if case_id in rows else await _state(ctx, stream)


async def _open_case_of(ctx: Context, resident: str) -> domain.Case | None:
    """The resident's open case, seeing cases opened or closed earlier in this batch."""
    opened = ctx.scratch.setdefault("open_case_of", {})
    case_id = opened[resident] if resident in opened else await ctx.conn.fetchval(tables.OPEN_CASE_OF, resident)
    if case_id is None:
        return None
    case = await _state(ctx, domain.case_stream(case_id))
    return case if case is not None and not case.closed else None


async def _resident(ctx: Context, resident: str) -> Resident | None:
    row = await directory.resident(ctx.conn, SCHEMA, resident)
    if row is None:
        return None
    return Resident(resident=resident, community=row["community"], household=row["household"],
                    compound=row["compound"], building=row["building"], moved_out=row["moved_out"])


async def _where(ctx: Context, cmd: OpenCase) -> Resident | None:
    """From the directory; else from the command when it says where (a policy, from the
    registry's own event, ahead of the directory)."""
    known = await _resident(ctx, cmd.resident)
    if known is not None:
        if cmd.household is not None and cmd.household != known.household:
            raise Invalid(f"resident {cmd.resident} lives in household {known.household}, not {cmd.household}",
                          field="household")
        return known
    if cmd.household is None:
        return None
    return Resident(resident=cmd.resident, community=cmd.community, household=cmd.household,
                    compound=cmd.compound, building=cmd.building)


async def _compound(ctx: Context, community: str, compound: str) -> Compound | None:
    row = await directory.compound(ctx.conn, SCHEMA, community, compound)
    return None if row is None else Compound(community=community, compound=compound,
                                             buildings=tuple(row["buildings"]))


def _fill(cmd: Any, field: str) -> Any:
    return cmd if getattr(cmd, field) is not None else msgspec.structs.replace(cmd, **{field: new_id()})


# -- writing -------------------------------------------------------------------------------


async def _append_case(ctx: Context, case_id: str, version: int, events: list, **news) -> domain.Case:
    """Append to a case stream and write its row from the state the events lead to."""
    stream = domain.case_stream(case_id)
    ctx.append(stream, version, events)
    case = await _state(ctx, stream)
    ctx.write(tables.UPSERT_CASE, *tables.case_row(case, **news))
    return case


# -- handlers ------------------------------------------------------------------------------


def build(policy: Policy) -> dict[str, Callable]:
    """The handlers, closed over the city's policy."""

    async def open_case(cmd: OpenCase, ctx: Context) -> None:
        cmd = _fill(cmd, "case")
        stream = domain.case_stream(cmd.case)
        case, version = await ctx.expect(stream)
        facts = Facts(case=case, open_case=await _open_case_of(ctx, cmd.resident), resident=await _where(ctx, cmd))
        events = rules.decide(facts, cmd, policy)
        await _append_case(ctx, cmd.case, version, events)
        ctx.scratch.setdefault("open_case_of", {})[cmd.resident] = cmd.case

    async def record_checkin(cmd: RecordCheckin, ctx: Context) -> None:
        stream = domain.day_stream(cmd.case, cmd.on)
        case = await _state(ctx, domain.case_stream(cmd.case))
        day, version = await ctx.expect(stream)
        events = rules.decide(Facts(case=case, day=day), cmd, policy)
        ctx.append(stream, version, events)
        ctx.write(tables.UPSERT_CASE, *tables.case_row(case, checkin_on=cmd.on))

    async def change_case(cmd: TransferCase | ReleaseCase, ctx: Context) -> None:
        case, version = await ctx.expect(domain.case_stream(cmd.case))
        await _append_case(ctx, cmd.case, version, rules.decide(Facts(case=case), cmd, policy))

    async def record_missed_checkins(cmd: RecordMissedCheckins, ctx: Context) -> None:
        rules.check_deadline_passed(cmd, policy)
        skipped: dict[str, str] = {}
        marked: list[str] = []
        for case_id in cmd.cases:
            stream = domain.day_stream(case_id, cmd.on)
            case = await _case_for_reading(ctx, case_id)
            day, version = await ctx.load(stream)
            try:
                event = rules.missed_checkin(case, day, case_id, cmd, policy)
            except CommandError as err:  # one case's refusal must not hold up the others
                skipped[case_id] = err.reason or err.code
                continue
            ctx.append(stream, version, [event])
            marked.append(case_id)
        if marked:
            ctx.write(tables.MARK_MISSED, marked, cmd.on)  # one statement for the whole chunk
        # A count, not ~1,000 envelopes: they are on the feed, and the reply is stored per command.
        ctx.reply_with(events=[], missed=len(marked), skipped=skipped)

    async def seal(cmd: Seal | LiftSeal, ctx: Context) -> None:
        stream = domain.seal_stream(cmd.community, cmd.compound)
        seals, version = await ctx.expect(stream)
        facts = Facts(seals=seals, compound=await _compound(ctx, cmd.community, cmd.compound))
        ctx.append(stream, version, rules.decide(facts, cmd, policy))

    async def schedule_screening(cmd: ScheduleScreening, ctx: Context) -> None:
        cmd = _fill(cmd, "screening")
        stream = domain.screening_stream(cmd.screening)
        screening, version = await ctx.expect(stream)
        facts = Facts(screening=screening, compound=await _compound(ctx, cmd.community, cmd.compound))
        ctx.append(stream, version, rules.decide(facts, cmd, policy))

    async def record_sample(cmd: RecordSample, ctx: Context) -> None:
        stream = domain.sample_stream(cmd.screening, cmd.resident)
        screening = await _state(ctx, domain.screening_stream(cmd.screening))
        sample, version = await ctx.expect(stream)
        facts = Facts(screening=screening, sample=sample, resident=await _resident(ctx, cmd.resident))
        ctx.append(stream, version, rules.decide(facts, cmd, policy))

    async def record_result(cmd: RecordResult, ctx: Context) -> None:
        cmd = _fill(cmd, "case")
        stream = domain.sample_stream(cmd.screening, cmd.resident)
        screening = await _state(ctx, domain.screening_stream(cmd.screening))
        sample, version = await ctx.expect(stream)
        facts, case_version = Facts(screening=screening, sample=sample), 0
        if cmd.result == "positive":
            case, case_version = await ctx.load(domain.case_stream(cmd.case))
            facts = Facts(screening=screening, sample=sample, case=case,
                          open_case=await _open_case_of(ctx, cmd.resident),
                          resident=await _resident(ctx, cmd.resident))
        result, *opened = rules.decide(facts, cmd, policy)
        ctx.append(stream, version, [result])
        if opened:
            # A positive result opens the case in the same transaction: atomic, and answered now.
            await _append_case(ctx, cmd.case, case_version, opened)
            ctx.scratch.setdefault("open_case_of", {})[cmd.resident] = cmd.case
            ctx.reply_with(case=cmd.case)

    return {
        "open_case": open_case,
        "record_checkin": record_checkin,
        "transfer_case": change_case,
        "release_case": change_case,
        "record_missed_checkins": record_missed_checkins,
        "seal": seal,
        "lift_seal": seal,
        "schedule_screening": schedule_screening,
        "record_sample": record_sample,
        "record_result": record_result,
    }
