"""Registry command handlers: load the facts a command touches, decide (pure), append.

Personal data (name, ID-card number, phone, birth year) is written to ``registry.residents``, and a
household's address to ``registry.households``, in the same transaction as the events; events carry
the opaque ids, the building and a masked name only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from services.registry import commands, decide, domain, tables
from shared.context import Context
from shared.errors import Conflict
from shared.runtime import Handler


@dataclass(slots=True)
class Scratch:
    """What earlier commands of a batch did that ``registry.residents`` does not show yet."""

    #: ID numbers registered already or claimed by an earlier register_resident of the batch
    id_numbers_taken: set[str] = field(default_factory=set)
    #: NATS user keys granted by an earlier grant_identity of the batch -> the identity
    keys_granted: dict[str, str] = field(default_factory=dict)


def prefetch(cmd: commands.Command) -> list[str]:
    """Streams a command will surely read, loaded for the whole batch in one query (the runtime
    has filled in the created ids before the batch)."""
    match cmd:
        case commands.RegisterCompound():
            return [domain.compound_stream(cmd.community, cmd.compound)]
        case commands.RegisterHousehold():
            return [domain.compound_stream(cmd.community, cmd.compound), domain.household_stream(cmd.household)]
        case commands.RegisterResident():
            return [domain.household_stream(cmd.household), domain.resident_stream(cmd.resident)]
        case commands.RegisterArrival():
            return [domain.resident_stream(cmd.resident), domain.arrival_stream(cmd.arrival)]
        case commands.MoveOut():
            return [domain.resident_stream(cmd.resident)]
        case commands.VerifyArrival():
            return [domain.arrival_stream(cmd.arrival)]
        case commands.GrantIdentity() | commands.RevokeIdentity():
            return [domain.identity_stream(cmd.identity)]
    return []


async def prepare_batch(conn, cmds: list[commands.Command], scratch: Scratch) -> None:
    """ID numbers already registered, for every register_resident of the batch, in one query."""
    numbers = [c.id_number for c in cmds if isinstance(c, commands.RegisterResident)]
    if numbers:
        rows = await conn.fetch(tables.TAKEN_ID_NUMBERS, numbers)
        scratch.id_numbers_taken = {r["id_number"] for r in rows}



async def _decide_and_append(ctx: Context, cmd: commands.Command, facts: decide.Facts) -> list:
    target = domain.target_stream(cmd)
    _, version = await ctx.expect(target)
    events = decide.decide(facts, cmd)
    ctx.append(target, version, events)
    return events


async def register_compound(cmd: commands.RegisterCompound, ctx: Context) -> None:
    compound = await ctx.state(domain.compound_stream(cmd.community, cmd.compound))
    await _decide_and_append(ctx, cmd, decide.Facts(compound=compound))


async def register_household(cmd: commands.RegisterHousehold, ctx: Context) -> None:
    facts = decide.Facts(
        compound=await ctx.state(domain.compound_stream(cmd.community, cmd.compound)),
        household=await ctx.state(domain.household_stream(cmd.household)),
    )
    events = await _decide_and_append(ctx, cmd, facts)
    ctx.write(tables.INSERT_ADDRESS, events[0].household, cmd.community, cmd.address.strip(), cmd.occurred_at)


async def register_resident(cmd: commands.RegisterResident, ctx: Context) -> None:
    facts = decide.Facts(
        household=await ctx.state(domain.household_stream(cmd.household)),
        resident=await ctx.state(domain.resident_stream(cmd.resident)),
    )
    target = domain.target_stream(cmd)
    _, version = await ctx.expect(target)
    events = decide.decide(facts, cmd)  # not-found and taken ids first, then the ID number
    taken = ctx.scratch.id_numbers_taken
    if cmd.id_number in taken:
        raise Conflict("a resident with this ID number is already registered", field="id_number")
    ctx.append(target, version, events)  # may refuse (forbidden): then the number stays free
    taken.add(cmd.id_number)  # later commands of the batch see it taken
    ctx.write(tables.INSERT_PII, cmd.resident, cmd.household, events[0].community, cmd.name.strip(),
              cmd.id_number, cmd.phone, cmd.occurred_at, cmd.birth_year)


async def register_arrival(cmd: commands.RegisterArrival, ctx: Context) -> None:
    facts = decide.Facts(
        resident=await ctx.state(domain.resident_stream(cmd.resident)),
        arrival=await ctx.state(domain.arrival_stream(cmd.arrival)),
    )
    await _decide_and_append(ctx, cmd, facts)


async def verify_arrival(cmd: commands.VerifyArrival, ctx: Context) -> None:
    arrival = await ctx.state(domain.arrival_stream(cmd.arrival))
    resident = await ctx.state(domain.resident_stream(arrival.resident)) if arrival else None
    await _decide_and_append(ctx, cmd, decide.Facts(arrival=arrival, resident=resident))


async def move_out(cmd: commands.MoveOut, ctx: Context) -> None:
    resident = await ctx.state(domain.resident_stream(cmd.resident))
    await _decide_and_append(ctx, cmd, decide.Facts(resident=resident))


async def grant_identity(cmd: commands.GrantIdentity, ctx: Context) -> None:
    holder = ctx.scratch.keys_granted.get(cmd.public_key) or await ctx.conn.fetchval(
        tables.KEY_HOLDER, cmd.public_key)
    grant = await ctx.state(domain.identity_stream(cmd.identity))
    [event] = await _decide_and_append(ctx, cmd, decide.Facts(grant=grant, key_holder=holder))
    ctx.scratch.keys_granted[event.public_key] = event.identity
    ctx.write(tables.INSERT_GRANT, event.public_key, event.identity, event.role, event.scope, event.acts_in,
              event.compound, event.grants, event.granted_at, event.granted_by)


async def revoke_identity(cmd: commands.RevokeIdentity, ctx: Context) -> None:
    grant = await ctx.state(domain.identity_stream(cmd.identity))
    [event] = await _decide_and_append(ctx, cmd, decide.Facts(grant=grant))
    ctx.write(tables.REVOKE_GRANT, event.public_key, event.revoked_at, event.revoked_by, event.reason)


HANDLERS: dict[str, Handler] = {
    "register_compound": register_compound,
    "register_household": register_household,
    "register_resident": register_resident,
    "register_arrival": register_arrival,
    "verify_arrival": verify_arrival,
    "move_out": move_out,
    "grant_identity": grant_identity,
    "revoke_identity": revoke_identity,
}
