"""Registry command handlers: load the facts a command touches, decide (pure), append.

Personal data (name, ID-card number, phone) is written to ``registry.residents`` in the same
transaction as the events; events carry the opaque id and a masked name only.
"""
from __future__ import annotations

from services.registry import domain
from services.registry.commands import (
    Command,
    MoveOut,
    RegisterArrival,
    RegisterCompound,
    RegisterHousehold,
    RegisterResident,
    VerifyArrival,
    complete,
)
from shared.commands import Context
from shared.envelope import new_id
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
    """Streams a command will surely read, loaded for the whole batch in one query."""
    match cmd:
        case RegisterCompound() | RegisterHousehold():
            return [domain.compound_stream(cmd.community, cmd.compound)]
        case RegisterResident():
            return [domain.household_stream(cmd.household)]
        case RegisterArrival() | MoveOut():
            return [domain.resident_stream(cmd.resident)]
        case VerifyArrival():
            return [domain.arrival_stream(cmd.arrival)]
    return []


async def _state(ctx: Context, stream_id: str):
    state, _ = await ctx.load(stream_id)
    return state


async def _decide_and_append(ctx: Context, cmd: Command, facts: domain.Facts) -> list:
    target = domain.target_stream(cmd)
    _, version = await ctx.expect(target)
    events = domain.decide(facts, cmd)
    ctx.append(target, version, events)
    return events


async def register_compound(cmd: RegisterCompound, ctx: Context) -> None:
    compound = await _state(ctx, domain.compound_stream(cmd.community, cmd.compound))
    await _decide_and_append(ctx, cmd, domain.Facts(compound=compound))


async def register_household(cmd: RegisterHousehold, ctx: Context) -> None:
    cmd = complete(cmd, now=cmd.occurred_at, new_id=new_id)
    facts = domain.Facts(
        compound=await _state(ctx, domain.compound_stream(cmd.community, cmd.compound)),
        household=await _state(ctx, domain.household_stream(cmd.household)),
    )
    await _decide_and_append(ctx, cmd, facts)


async def register_resident(cmd: RegisterResident, ctx: Context) -> None:
    cmd = complete(cmd, now=cmd.occurred_at, new_id=new_id)
    facts = domain.Facts(
        household=await _state(ctx, domain.household_stream(cmd.household)),
        resident=await _state(ctx, domain.resident_stream(cmd.resident)),
    )
    target = domain.target_stream(cmd)
    _, version = await ctx.expect(target)
    events = domain.decide(facts, cmd)  # not-found and taken ids first, then the ID number
    claimed = ctx.local.setdefault("id_numbers", set())
    if cmd.id_number in claimed or await ctx.conn.fetchval(
        "SELECT 1 FROM registry.residents WHERE id_number = $1", cmd.id_number
    ):
        raise Conflict("a resident with this ID number is already registered", field="id_number")
    claimed.add(cmd.id_number)
    ctx.append(target, version, events)
    ctx.write(INSERT_PII, cmd.resident, cmd.household, events[0].community, cmd.name.strip(),
              cmd.id_number, cmd.phone, cmd.occurred_at)


async def register_arrival(cmd: RegisterArrival, ctx: Context) -> None:
    cmd = complete(cmd, now=cmd.occurred_at, new_id=new_id)
    facts = domain.Facts(
        resident=await _state(ctx, domain.resident_stream(cmd.resident)),
        arrival=await _state(ctx, domain.arrival_stream(cmd.arrival)),
    )
    await _decide_and_append(ctx, cmd, facts)


async def verify_arrival(cmd: VerifyArrival, ctx: Context) -> None:
    arrival = await _state(ctx, domain.arrival_stream(cmd.arrival))
    resident = await _state(ctx, domain.resident_stream(arrival.resident)) if arrival else None
    await _decide_and_append(ctx, cmd, domain.Facts(arrival=arrival, resident=resident))


async def move_out(cmd: MoveOut, ctx: Context) -> None:
    resident = await _state(ctx, domain.resident_stream(cmd.resident))
    await _decide_and_append(ctx, cmd, domain.Facts(resident=resident))


HANDLERS = {
    "register_compound": register_compound,
    "register_household": register_household,
    "register_resident": register_resident,
    "register_arrival": register_arrival,
    "verify_arrival": verify_arrival,
    "move_out": move_out,
}
