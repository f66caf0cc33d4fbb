"""Registry command handlers: load the facts a command touches, decide (pure), append.

Personal data (name, ID-card number, phone) is written to ``registry.residents`` in the same
transaction as the events; events carry the opaque id and a masked name only.
"""
from __future__ import annotations

from services.registry import decide, domain
from services.registry.commands import (
    Command,
    MoveOut,
    RegisterArrival,
    RegisterCompound,
    RegisterHousehold,
    RegisterResident,
    VerifyArrival,
)
from shared.context import Context
from shared.errors import Conflict

PII_DDL = """
CREATE TABLE IF NOT EXISTS registry.residents (
    resident      text PRIMARY KEY,
    household     text NOT NULL,
    community     text NOT NULL,
    name          text NOT NULL,
    id_number     text NOT NULL UNIQUE,
    phone         text,
    registered_at timestamptz NOT NULL
);
"""

INSERT_PII = (
    "INSERT INTO registry.residents (resident, household, community, name, id_number, phone, registered_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7)"
)


def prefetch(cmd: Command) -> list[str]:
    """Streams a command will surely read, loaded for the whole batch in one query (created ids
    are filled in by ``commands.complete`` before the batch)."""
    match cmd:
        case RegisterCompound():
            return [domain.compound_stream(cmd.community, cmd.compound)]
        case RegisterHousehold():
            return [domain.compound_stream(cmd.community, cmd.compound), domain.household_stream(cmd.household)]
        case RegisterResident():
            return [domain.household_stream(cmd.household), domain.resident_stream(cmd.resident)]
        case RegisterArrival():
            return [domain.resident_stream(cmd.resident), domain.arrival_stream(cmd.arrival)]
        case MoveOut():
            return [domain.resident_stream(cmd.resident)]
        case VerifyArrival():
            return [domain.arrival_stream(cmd.arrival)]
    return []


async def prepare_batch(conn, cmds: list[Command], scratch: dict) -> None:
    """ID numbers already registered, for every register_resident of the batch, in one query."""
    numbers = [c.id_number for c in cmds if isinstance(c, RegisterResident)]
    if numbers:
        rows = await conn.fetch("SELECT id_number FROM registry.residents WHERE id_number = ANY($1)", numbers)
        scratch["id_numbers_taken"] = {r["id_number"] for r in rows}


async def _state(ctx: Context, stream_id: str):
    state, _ = await ctx.load(stream_id)
    return state


async def _decide_and_append(ctx: Context, cmd: Command, facts: decide.Facts) -> list:
    target = domain.target_stream(cmd)
    _, version = await ctx.expect(target)
    events = decide.decide(facts, cmd)
    ctx.append(target, version, events)
    return events


async def register_compound(cmd: RegisterCompound, ctx: Context) -> None:
    compound = await _state(ctx, domain.compound_stream(cmd.community, cmd.compound))
    await _decide_and_append(ctx, cmd, decide.Facts(compound=compound))


async def register_household(cmd: RegisterHousehold, ctx: Context) -> None:
    facts = decide.Facts(
        compound=await _state(ctx, domain.compound_stream(cmd.community, cmd.compound)),
        household=await _state(ctx, domain.household_stream(cmd.household)),
    )
    await _decide_and_append(ctx, cmd, facts)


async def register_resident(cmd: RegisterResident, ctx: Context) -> None:
    facts = decide.Facts(
        household=await _state(ctx, domain.household_stream(cmd.household)),
        resident=await _state(ctx, domain.resident_stream(cmd.resident)),
    )
    target = domain.target_stream(cmd)
    _, version = await ctx.expect(target)
    events = decide.decide(facts, cmd)  # not-found and taken ids first, then the ID number
    taken = ctx.scratch.setdefault("id_numbers_taken", set())
    if cmd.id_number in taken:
        raise Conflict("a resident with this ID number is already registered", field="id_number")
    taken.add(cmd.id_number)  # later commands of the batch see it taken
    ctx.append(target, version, events)
    ctx.write(INSERT_PII, cmd.resident, cmd.household, events[0].community, cmd.name.strip(),
              cmd.id_number, cmd.phone, cmd.occurred_at)


async def register_arrival(cmd: RegisterArrival, ctx: Context) -> None:
    facts = decide.Facts(
        resident=await _state(ctx, domain.resident_stream(cmd.resident)),
        arrival=await _state(ctx, domain.arrival_stream(cmd.arrival)),
    )
    await _decide_and_append(ctx, cmd, facts)


async def verify_arrival(cmd: VerifyArrival, ctx: Context) -> None:
    arrival = await _state(ctx, domain.arrival_stream(cmd.arrival))
    resident = await _state(ctx, domain.resident_stream(arrival.resident)) if arrival else None
    await _decide_and_append(ctx, cmd, decide.Facts(arrival=arrival, resident=resident))


async def move_out(cmd: MoveOut, ctx: Context) -> None:
    resident = await _state(ctx, domain.resident_stream(cmd.resident))
    await _decide_and_append(ctx, cmd, decide.Facts(resident=resident))


HANDLERS = {
    "register_compound": register_compound,
    "register_household": register_household,
    "register_resident": register_resident,
    "register_arrival": register_arrival,
    "verify_arrival": verify_arrival,
    "move_out": move_out,
}
