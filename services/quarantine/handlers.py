"""Quarantine command handlers: load the facts a command touches, decide (pure), append, and keep
``quarantine.cases`` current in the same transaction.

Where a resident lives and which buildings a compound has come from the local directory of
registry facts (``shared.directory``), read inside the command's transaction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import assert_never

from services.quarantine import codes, commands, domain, tables
from services.quarantine.decide import (
    Compound,
    Facts,
    Resident,
    check_deadline_passed,
    decide,
    issue_sample_codes as codes_to_issue,
    missed_checkin,
    sampled_resident,
)
from shared import directory
from shared.context import Context
from shared.errors import CommandError, Invalid
from shared.runtime import Handler

SCHEMA = "quarantine"


@dataclass
class Scratch:
    """What a batch knows beyond its streams: the rows :func:`prepare_batch` read, and the cases
    opened by earlier commands of the batch (``quarantine.cases`` shows them only at commit)."""

    #: case id -> the case as its row says, for the batch's missed-check-in sweeps
    case_rows: dict[str, domain.Case] = field(default_factory=dict)
    #: resident -> the case an earlier command of the batch opened for them
    open_case_of: dict[str, str] = field(default_factory=dict)


def prefetch(cmd: commands.Command) -> list[str]:
    """Streams a command will surely read, loaded for the whole batch in one query."""
    match cmd:
        case commands.OpenCase():
            return [domain.case_stream(cmd.case)]
        case commands.RecordCheckin():
            return [domain.case_stream(cmd.case), domain.day_stream(cmd.case, cmd.on)]
        case commands.TransferCase() | commands.ReleaseCase():
            return [domain.case_stream(cmd.case)]
        case commands.RecordMissedCheckins():  # the cases themselves come from their rows (prepare_batch)
            return [domain.day_stream(c, cmd.on) for c in cmd.cases]
        case commands.Seal() | commands.LiftSeal() | commands.ExtendSeal():
            return [domain.seal_stream(cmd.community, cmd.compound)]
        case commands.ScheduleScreening():
            return [domain.screening_stream(cmd.screening), domain.seal_stream(cmd.community, cmd.compound)]
        case commands.IssueSampleCodes():
            return [domain.screening_stream(cmd.screening)]
        case commands.RecordSample():
            # Sampled by a code alone, the resident is known once the code is looked up.
            sample = [] if cmd.resident is None else [domain.sample_stream(cmd.screening, cmd.resident)]
            return [domain.screening_stream(cmd.screening), *sample]
        case commands.RecordResult():
            streams = [domain.screening_stream(cmd.screening), domain.sample_stream(cmd.screening, cmd.resident)]
            # Only a positive result opens the case its (always filled) id names.
            return streams + [domain.case_stream(cmd.case)] if cmd.result == "positive" else streams
        case _:
            assert_never(cmd)


async def prepare_batch(conn, cmds: list[commands.Command], scratch: Scratch) -> None:
    """The cases of the batch's missed-check-in sweeps, from their rows, in one query."""
    ids = [c for cmd in cmds if isinstance(cmd, commands.RecordMissedCheckins) for c in cmd.cases]
    if ids:
        scratch.case_rows = {row[0]: tables.case_of_row(row) for row in await conn.fetch(tables.CASES_BY_ID, ids)}


# -- loading facts -------------------------------------------------------------------------



async def _case_for_reading(ctx: Context, case_id: str) -> domain.Case | None:
    """The case as this batch sees it: what an earlier command of the batch made of it, else its
    row's snapshot taken by :func:`prepare_batch`, else its stream."""
    stream = domain.case_stream(case_id)
    held = ctx.held(stream)
    if held is not None:
        return held[0]
    rows = ctx.scratch.case_rows
    return ctx.vet(stream, rows[case_id]) if case_id in rows else await ctx.state(stream)


async def _open_case_of(ctx: Context, resident: str) -> domain.Case | None:
    """The resident's open case, seeing cases opened or closed earlier in this batch."""
    opened = ctx.scratch.open_case_of
    case_id = opened[resident] if resident in opened else await ctx.conn.fetchval(tables.OPEN_CASE_OF, resident)
    if case_id is None:
        return None
    case = await ctx.state(domain.case_stream(case_id))
    return case if case is not None and not case.closed else None


async def _resident(ctx: Context, resident: str) -> Resident | None:
    row = await directory.resident(ctx.conn, SCHEMA, resident)
    if row is None:
        return None
    return ctx.vet(f"resident:{resident}", Resident(
        resident=resident, community=row["community"], household=row["household"], compound=row["compound"],
        building=row["building"], moved_out=row["moved_out"]))


async def _where(ctx: Context, cmd: commands.OpenCase) -> Resident | None:
    """From the directory; else from the command when it says where (a reaction, from the
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


# -- writing -------------------------------------------------------------------------------


async def _append_case(ctx: Context, case_id: str, version: int, events: list, **news) -> domain.Case:
    """Append to a case stream and write its row from the state the events lead to."""
    stream = domain.case_stream(case_id)
    ctx.append(stream, version, events)
    case = await ctx.state(stream)
    ctx.write(tables.UPSERT_CASE, *tables.case_row(case, **news))
    return case


# -- handlers ------------------------------------------------------------------------------


async def open_case(cmd: commands.OpenCase, ctx: Context) -> None:
    case, version = await ctx.expect(domain.case_stream(cmd.case))
    facts = Facts(config=ctx.config, case=case, open_case=await _open_case_of(ctx, cmd.resident),
                  resident=await _where(ctx, cmd))
    await _append_case(ctx, cmd.case, version, decide(facts, cmd))
    ctx.scratch.open_case_of[cmd.resident] = cmd.case


async def record_checkin(cmd: commands.RecordCheckin, ctx: Context) -> None:
    stream = domain.day_stream(cmd.case, cmd.on)
    case = await ctx.state(domain.case_stream(cmd.case))
    day, version = await ctx.expect(stream)
    events = decide(Facts(config=ctx.config, case=case, day=day), cmd)
    ctx.append(stream, version, events)
    ctx.write(tables.UPSERT_CASE, *tables.case_row(case, checkin_on=cmd.on))
    # What was read stays here, beside each event (not in it: health data off the bus).
    symptoms = [s.strip() for s in cmd.symptoms]
    for n, event in enumerate(events, version + 1):
        ctx.write(tables.INSERT_CHECKIN, stream, n, event.case, event.community, float(cmd.temperature_c), symptoms)


async def transfer_case(cmd: commands.TransferCase, ctx: Context) -> None:
    await _change_case(cmd, ctx)


async def release_case(cmd: commands.ReleaseCase, ctx: Context) -> None:
    await _change_case(cmd, ctx)


async def _change_case(cmd: commands.TransferCase | commands.ReleaseCase, ctx: Context) -> None:
    case, version = await ctx.expect(domain.case_stream(cmd.case))
    await _append_case(ctx, cmd.case, version, decide(Facts(config=ctx.config, case=case), cmd))


async def record_missed_checkins(cmd: commands.RecordMissedCheckins, ctx: Context) -> None:
    config = ctx.config
    check_deadline_passed(cmd, config)
    skipped: dict[str, str] = {}
    marked: list[str] = []
    for case_id in cmd.cases:
        stream = domain.day_stream(case_id, cmd.on)
        case = await _case_for_reading(ctx, case_id)
        day, version = await ctx.load(stream)
        try:
            event = missed_checkin(case, day, case_id, cmd, config)
        except CommandError as err:  # one case's refusal must not hold up the others
            skipped[case_id] = err.reason or err.code
            continue
        ctx.append(stream, version, [event])
        marked.append(case_id)
    if marked:
        ctx.write(tables.MARK_MISSED, marked, cmd.on)  # one statement for the whole chunk
    # A count, not ~1,000 envelopes: they are on the feed, and the reply is stored per command.
    ctx.reply_with(events=[], missed=len(marked), skipped=skipped)


async def seal(cmd: commands.Seal, ctx: Context) -> None:
    await _change_seals(cmd, ctx)


async def lift_seal(cmd: commands.LiftSeal, ctx: Context) -> None:
    await _change_seals(cmd, ctx)


async def extend_seal(cmd: commands.ExtendSeal, ctx: Context) -> None:
    await _change_seals(cmd, ctx)


async def _change_seals(cmd: commands.Seal | commands.LiftSeal | commands.ExtendSeal, ctx: Context) -> None:
    stream = domain.seal_stream(cmd.community, cmd.compound)
    seals, version = await ctx.expect(stream)
    facts = Facts(config=ctx.config, seals=seals, compound=await _compound(ctx, cmd.community, cmd.compound))
    ctx.append(stream, version, decide(facts, cmd))


async def schedule_screening(cmd: commands.ScheduleScreening, ctx: Context) -> None:
    stream, seal_stream = domain.screening_stream(cmd.screening), domain.seal_stream(cmd.community, cmd.compound)
    screening, version = await ctx.expect(stream)
    seals, seals_version = await ctx.load(seal_stream)
    facts = Facts(config=ctx.config, screening=screening, seals=seals,
                  compound=await _compound(ctx, cmd.community, cmd.compound))
    scheduled, *extended = decide(facts, cmd)
    ctx.append(stream, version, [scheduled])
    if extended:  # the compound's seals last until the round's results are back
        ctx.append(seal_stream, seals_version, extended)


async def issue_sample_codes(cmd: commands.IssueSampleCodes, ctx: Context) -> None:
    stream = domain.screening_stream(cmd.screening)
    screening, version = await ctx.expect(stream)
    facts = Facts(config=ctx.config, screening=screening)
    if screening is not None:
        asked = await _code_holders(ctx, screening, cmd)
        coded = await ctx.conn.fetch(tables.CODED, cmd.screening, [r.resident for r in asked])
        facts = Facts(config=ctx.config, screening=screening, residents=asked,
                      compound=await _compound(ctx, screening.community, screening.compound),
                      coded=frozenset(r[0] for r in coded))
    event, new = codes_to_issue(facts, cmd)
    ctx.append(stream, version, [event])
    printed = [{"resident": r.resident, "household": r.household, "building": r.building, "code": codes.new_code()}
               for r in new]
    for p in printed:  # a code on a slip is a credential: in the reply and this table, never an event
        ctx.write(tables.INSERT_CODE, cmd.screening, p["resident"], event.community, p["code"], event.issued_at)
    ctx.reply_with(codes=printed)


async def _code_holders(ctx: Context, screening: domain.Screening, cmd: commands.IssueSampleCodes
                        ) -> tuple[Resident, ...]:
    """The residents asked for, as the directory knows them: listed, or all living in the compound."""
    if cmd.all_residents:
        rows = await ctx.conn.fetch(tables.LIVING_IN, screening.community, screening.compound, cmd.building)
        return tuple(Resident(resident=r["resident"], community=r["community"], household=r["household"],
                              compound=r["compound"], building=r["building"]) for r in rows)
    found = [await _resident(ctx, r) for r in cmd.residents]
    return tuple(r for r in found if r is not None)


async def record_sample(cmd: commands.RecordSample, ctx: Context) -> None:
    screening = await ctx.state(domain.screening_stream(cmd.screening))
    code = codes.normalize(cmd.code) if cmd.code else None
    holder = await ctx.conn.fetchval(tables.CODE_HOLDER, cmd.screening, code) if code else None
    resident = sampled_resident(Facts(config=ctx.config, screening=screening, code_holder=holder), cmd)
    stream = domain.sample_stream(cmd.screening, resident)
    sample, version = await ctx.expect(stream)
    facts = Facts(config=ctx.config, screening=screening, sample=sample, code_holder=holder,
                  resident=await _resident(ctx, resident))
    [event] = decide(facts, cmd)
    ctx.append(stream, version, [event])
    ctx.write(tables.UPSERT_ROUND_SAMPLE, event.screening, event.resident, event.community, event.taken_at,
              event.stay_in_until_result, None)
    if cmd.code:  # printed for the resident: kept here, like a pass number, not published
        ctx.write(tables.INSERT_SAMPLE_CODE, event.screening, event.resident, event.community, cmd.code.strip())


async def record_result(cmd: commands.RecordResult, ctx: Context) -> None:
    stream = domain.sample_stream(cmd.screening, cmd.resident)
    screening = await ctx.state(domain.screening_stream(cmd.screening))
    sample, version = await ctx.expect(stream)
    facts, case_version = Facts(config=ctx.config, screening=screening, sample=sample), 0
    if cmd.result == "positive":
        case, case_version = await ctx.load(domain.case_stream(cmd.case))
        facts = Facts(config=ctx.config, screening=screening, sample=sample, case=case,
                      open_case=await _open_case_of(ctx, cmd.resident),
                      resident=await _resident(ctx, cmd.resident))
    result, *opened = decide(facts, cmd)
    ctx.append(stream, version, [result])
    ctx.write(tables.UPSERT_ROUND_SAMPLE, result.screening, result.resident, result.community, None,
              sample.stay_in_until_result, result.result)
    if opened:
        # A positive result opens the case in the same transaction: atomic, and answered now.
        await _append_case(ctx, cmd.case, case_version, opened)
        ctx.scratch.open_case_of[cmd.resident] = cmd.case
        ctx.reply_with(case=cmd.case)


HANDLERS: dict[str, Handler] = {
    "open_case": open_case,
    "record_checkin": record_checkin,
    "transfer_case": transfer_case,
    "release_case": release_case,
    "record_missed_checkins": record_missed_checkins,
    "seal": seal,
    "lift_seal": lift_seal,
    "schedule_screening": schedule_screening,
    "record_sample": record_sample,
    "record_result": record_result,
    "extend_seal": extend_seal,
    "issue_sample_codes": issue_sample_codes,
}
