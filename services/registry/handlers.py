"""Registry command handlers: load the facts a command touches, decide (pure), append.

Personal data (name, ID-card number, phone, birth year) is written to ``registry.residents`` in the
same transaction as the events, sealed with the resident's data key (``tables``, ``keys``), and a
household's address to ``registry.households``; events carry the opaque ids, the building and a
masked name only.
"""
from __future__ import annotations

import asyncio
import json

from dataclasses import dataclass, field

import msgspec

from services.registry import commands, decide, domain, tables
from services.registry.keys import KeyStore
from shared import pii
from shared.context import Context
from shared.contracts.registry import ArrivalRegistered, ResidentErased
from shared.errors import CommandError, Conflict, Invalid
from shared.runtime import Handler


@dataclass(slots=True)
class Scratch:
    """What earlier commands of a batch did that ``registry.residents`` does not show yet."""

    #: The key store (the registry's spec binds it: ``partial(Scratch, keys=...)``).
    keys: KeyStore | None = None
    #: Keyed hashes of ID numbers registered already or claimed by an earlier register_resident
    #: of the batch (``tables.TAKEN_ID_HASHES``)
    id_numbers_taken: set[str] = field(default_factory=set)
    #: subject -> its data key: made for every register_resident and register_household of the
    #: batch, read for every register_arrival's resident, in one round trip each
    data_keys: dict[str, bytes] = field(default_factory=dict)
    #: Residents erased by earlier commands of the batch (their rows are written at commit)
    erased: set[str] = field(default_factory=set)
    #: NATS user keys granted by an earlier grant_identity of the batch -> the identity
    keys_granted: dict[str, str] = field(default_factory=dict)
    #: register_pending_arrival: keyed hash of an ID number -> (resident, community) holding it
    id_holders: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: register_pending_arrival: (keyed hash, arrival day) of the pending registrations waiting
    pending_waiting: set[tuple] = field(default_factory=set)


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
        case commands.MoveOut() | commands.EraseResident() | commands.UpdateResident():
            return [domain.resident_stream(cmd.resident)]
        case commands.RecordCall():
            return [domain.resident_stream(cmd.resident), domain.call_stream(cmd.call)]
        case commands.RecordTipOff():
            return [domain.compound_stream(cmd.community, cmd.compound), domain.tip_off_stream(cmd.tip_off)]
        case commands.FollowUpTipOff():
            return [domain.tip_off_stream(cmd.tip_off)]
        case commands.VerifyArrival():
            return [domain.arrival_stream(cmd.arrival)]
        case commands.RegisterPendingArrival():
            return [domain.pending_stream(cmd.arrival), domain.arrival_stream(cmd.arrival)]
        case commands.CompleteRegistration():
            return [domain.pending_stream(cmd.arrival), domain.household_stream(cmd.household),
                    domain.resident_stream(cmd.resident), domain.arrival_stream(cmd.arrival)]
        case commands.GrantIdentity() | commands.RevokeIdentity():
            return [domain.identity_stream(cmd.identity)]
        case commands.ApplyRetention():
            return [domain.resident_stream(r) for r in cmd.residents] + [domain.retention_stream(cmd.community)]
    return []


async def prepare_batch(conn, cmds: list[commands.Command], scratch: Scratch) -> None:
    """The data keys the batch seals with: made for every register_resident and register_household
    (in the key store before the batch commits: a key whose command is then refused opens nothing
    and is harmless), read for every register_arrival's resident; and the ID numbers registered
    already (one query)."""
    registering = [c for c in cmds if isinstance(c, commands.RegisterResident)]
    new_subjects = [c.resident for c in registering] + [
        household_subject(c.household) for c in cmds if isinstance(c, commands.RegisterHousehold)] + [
        c.resident for c in cmds if isinstance(c, commands.CompleteRegistration)]
    travellers = [c.resident for c in cmds if isinstance(c, commands.RegisterArrival)]
    keys = scratch.keys
    # The three round trips at once (two to the key database, one here): the writer waits for
    # this batch's slowest, not their sum. All are awaited before any error is raised, so the
    # connection is idle again when the runtime goes on with it.
    made, read, taken = await asyncio.gather(
        keys.create(new_subjects) if new_subjects else _nothing(),
        keys.get(travellers) if travellers else _nothing(),
        conn.fetch(tables.TAKEN_ID_HASHES, [id_hash(keys.index_key, c.id_number) for c in registering])
        if registering and keys.index_key is not None else _nothing(),
        return_exceptions=True)
    for result in (made, read, taken):
        if isinstance(result, BaseException):
            raise result
    scratch.data_keys = {**(made or {}), **(read or {})}
    scratch.id_numbers_taken = {r["id_hash"] for r in taken or ()}
    if any(isinstance(c, (commands.RegisterPendingArrival, commands.CompleteRegistration)) for c in cmds):
        await _prepare_listed(conn, cmds, scratch)


async def _listed_lookups(conn, hashes: list[str], days: list) -> tuple[list, list]:
    """Who holds each ID number, and which (number, day) wait already: one connection, in turn."""
    return await conn.fetch(tables.ID_HOLDERS, hashes), await conn.fetch(tables.PENDING_WAITING, hashes, days)


def pending_subject(arrival: str) -> str:
    """The key store's subject of a pending registration's sealed data."""
    return f"pending:{arrival}"


async def _prepare_listed(conn, cmds: list[commands.Command], scratch: Scratch) -> None:
    """For the batch's arrivals from the city's list: who holds each ID number, which wait already,
    a key for each new pending registration, the keys of those being completed; then the keys of
    the residents the list found (their travel is sealed with them)."""
    listed = [c for c in cmds if isinstance(c, commands.RegisterPendingArrival)]
    completing = [pending_subject(c.arrival) for c in cmds if isinstance(c, commands.CompleteRegistration)]
    keys = scratch.keys
    hashes = [id_hash(keys.index_key, c.id_number) for c in listed]
    results = await asyncio.gather(
        _listed_lookups(conn, hashes, [c.arrived_on for c in listed]) if listed else _nothing(),
        keys.create([pending_subject(c.arrival) for c in listed]) if listed else _nothing(),
        keys.get(completing) if completing else _nothing(),
        return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    (holders, waiting), made, read = results[0] or ((), ()), results[1], results[2]
    scratch.id_holders = {r["id_hash"]: (r["resident"], r["community"]) for r in holders}
    scratch.pending_waiting = {(r["id_hash"], r["arrived_on"]) for r in waiting}
    found = [resident for resident, _ in scratch.id_holders.values()]
    scratch.data_keys.update({**(made or {}), **(read or {}), **(await keys.get(found) if found else {})})


async def _nothing() -> None:
    return None


def household_subject(household: str) -> str:
    """The key store's subject of a household's address (residents' subjects are their ids)."""
    return f"household:{household}"


def seal_json(data_key: bytes, subject: str, value) -> bytes:
    """``value`` as JSON sealed with ``data_key`` for ``subject`` (AES-GCM, ``shared.pii``)."""
    return pii.seal(data_key, subject, msgspec.json.encode(value))


def _key(ctx: Context, subject: str) -> bytes:
    data_key = ctx.scratch.data_keys.get(subject)
    if data_key is None:  # an erased subject never gets a key again (decide refuses most cases first)
        raise CommandError(f"no data key for {subject}; the command was not applied")
    return data_key


def id_hash(index_key: bytes, id_number: str) -> str:
    """The keyed hash ``registry.residents.id_hash`` holds for an ID number (its X upper-cased)."""
    return pii.blind_index(index_key, "id_number", id_number.strip().upper())


def sealed_personal(data_key: bytes, resident: str, name: str, id_number: str, phone: str | None,
                    birth_year: int | None) -> bytes:
    """The personal fields of a resident as ``registry.residents.personal`` holds them (the birth
    year is null for a resident registered before it left ResidentRegistered and not in its event)."""
    plain = msgspec.json.encode({"name": name, "id_number": id_number, "phone": phone, "birth_year": birth_year})
    return pii.seal(data_key, resident, plain)



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
    subject = household_subject(events[0].household)
    ctx.write(tables.INSERT_ADDRESS, events[0].household, cmd.community,
              seal_json(_key(ctx, subject), subject, {"address": cmd.address.strip()}), cmd.occurred_at,
              cmd.compound, cmd.building)


async def register_resident(cmd: commands.RegisterResident, ctx: Context) -> None:
    facts = decide.Facts(
        household=await ctx.state(domain.household_stream(cmd.household)),
        resident=await ctx.state(domain.resident_stream(cmd.resident)),
    )
    target = domain.target_stream(cmd)
    _, version = await ctx.expect(target)
    events = decide.decide(facts, cmd)  # not-found and taken ids first, then the ID number
    scratch: Scratch = ctx.scratch
    taken, hashed = scratch.id_numbers_taken, id_hash(scratch.keys.index_key, cmd.id_number)
    if hashed in taken:
        raise Conflict("a resident with this ID number is already registered", field="id_number")
    data_key = scratch.data_keys.get(cmd.resident)
    if data_key is None:  # an erased subject's id never gets a key again (decide refuses it first)
        raise CommandError(f"no data key could be made for {cmd.resident}; the command was not applied")
    ctx.append(target, version, events)  # may refuse (forbidden): then the number stays free
    taken.add(hashed)  # later commands of the batch see it taken
    ctx.write(tables.INSERT_PII, cmd.resident, cmd.household, events[0].community,
              sealed_personal(data_key, cmd.resident, cmd.name.strip(), cmd.id_number, cmd.phone,
                              cmd.birth_year),
              hashed, cmd.occurred_at)


async def register_arrival(cmd: commands.RegisterArrival, ctx: Context) -> None:
    facts = decide.Facts(
        resident=await ctx.state(domain.resident_stream(cmd.resident)),
        arrival=await ctx.state(domain.arrival_stream(cmd.arrival)),
    )
    [event] = await _decide_and_append(ctx, cmd, facts)
    # Where from, how and where else: for tracing, here (the event carries the class and the day).
    travel = {"origin": cmd.origin.strip(), "transport": cmd.transport, "visited": cmd.visited}
    ctx.write(tables.INSERT_TRAVEL, event.arrival, event.resident, event.community,
              seal_json(_key(ctx, event.resident), f"arrival:{event.arrival}", travel), cmd.occurred_at)
    if event.requires_verification:  # on the committee's work list until verified
        ctx.write(tables.INSERT_WAITING, event.arrival, event.community, event.resident, event.household,
                  event.compound, event.building, event.arrived_on, event.city_class, event.registered_at)


async def verify_arrival(cmd: commands.VerifyArrival, ctx: Context) -> None:
    arrival = await ctx.state(domain.arrival_stream(cmd.arrival))
    resident = await ctx.state(domain.resident_stream(arrival.resident)) if arrival else None
    [event] = await _decide_and_append(ctx, cmd, decide.Facts(arrival=arrival, resident=resident))
    ctx.write(tables.VERIFIED, event.arrival, event.community, event.verified_at)


async def move_out(cmd: commands.MoveOut, ctx: Context) -> None:
    resident = await ctx.state(domain.resident_stream(cmd.resident))
    [event] = await _decide_and_append(ctx, cmd, decide.Facts(resident=resident))
    ctx.write(tables.MOVED_OUT, event.resident, event.moved_out_at)  # retention counts from it


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


async def erase_resident(cmd: commands.EraseResident, ctx: Context) -> None:
    """Delete the resident's data key, then record it. The key goes first, in the key database
    (not in this transaction): if this commit then fails, the person is erased but not yet on the
    record, and the command sent again records it (deleting a deleted key is a no-op); the other
    order could leave the record saying "erased" over a key that still opens."""
    resident = await ctx.state(domain.resident_stream(cmd.resident))
    [event] = await _decide_and_append(ctx, cmd, decide.Facts(resident=resident))
    await _erase(ctx, event)


async def _erase(ctx: Context, event: ResidentErased) -> None:
    """An erasure's effect: the data key deleted (first, see erase_resident), the sealed columns emptied,
    the travel history (sealed with that key) deleted; and when no one of the household is left
    unerased, its address's key too (the address would say where the erased person lived)."""
    await ctx.scratch.keys.erase(event.resident, event.legal_basis, event.erased_at)
    ctx.write(tables.ERASE_PII, event.resident, event.erased_at)
    ctx.write(tables.ERASE_TRAVEL, event.resident)
    erased = ctx.scratch.erased
    erased.add(event.resident)
    if not {r["resident"] for r in await ctx.conn.fetch(tables.HOUSEHOLD_LEFT, event.household)} - erased:
        await ctx.scratch.keys.erase(household_subject(event.household), event.legal_basis, event.erased_at)
        ctx.write(tables.ERASE_ADDRESS, event.household)


async def apply_retention(cmd: commands.ApplyRetention, ctx: Context) -> None:
    """Shred the residents listed who are due, each as erase_resident does (its key deleted, its
    sealed data emptied, its own ResidentErased), and count them in one RetentionApplied. Whether a
    case is open is read here, in the command's transaction, from the registry's copy."""
    target = domain.target_stream(cmd)
    _, version = await ctx.expect(target)
    loaded = dict(zip(cmd.residents, await ctx.load_many([domain.resident_stream(r) for r in cmd.residents])))
    open_cases = frozenset(row["resident"] for row in await ctx.conn.fetch(tables.WITH_OPEN_CASES, cmd.residents))
    facts = decide.Facts(residents={r: state for r, (state, _) in loaded.items()}, open_cases=open_cases)
    events = decide.decide(facts, cmd)
    for event in events:
        if isinstance(event, ResidentErased):
            ctx.append(domain.resident_stream(event.resident), loaded[event.resident][1], [event])
            await _erase(ctx, event)
        else:
            ctx.append(target, version, [event])
    # a count, not up to 500 envelopes (their ResidentErased are on the record and the stream)
    ctx.reply_with(events=[], shredded=len(events) - 1 if events else 0)


async def update_resident(cmd: commands.UpdateResident, ctx: Context) -> None:
    resident = await ctx.state(domain.resident_stream(cmd.resident))
    await _decide_and_append(ctx, cmd, decide.Facts(resident=resident))


async def record_call(cmd: commands.RecordCall, ctx: Context) -> None:
    resident = await ctx.state(domain.resident_stream(cmd.resident))
    arrival_id = cmd.arrival
    if arrival_id is None and resident is not None:
        arrival_id = await ctx.conn.fetchval(tables.LATEST_ARRIVAL, cmd.resident)
    arrival = await ctx.state(domain.arrival_stream(arrival_id)) if arrival_id is not None else None
    call = await ctx.state(domain.call_stream(cmd.call))
    await _decide_and_append(ctx, cmd, decide.Facts(resident=resident, arrival=arrival, call=call))


async def record_tip_off(cmd: commands.RecordTipOff, ctx: Context) -> None:
    facts = decide.Facts(
        compound=await ctx.state(domain.compound_stream(cmd.community, cmd.compound)),
        household=await ctx.state(domain.household_stream(cmd.household)) if cmd.household else None,
        tip_off=await ctx.state(domain.tip_off_stream(cmd.tip_off)),
    )
    [event] = await _decide_and_append(ctx, cmd, facts)
    # what the neighbour said stays here, never in the event
    ctx.write(tables.INSERT_TIP_OFF, event.tip_off, event.community, event.compound, event.building,
              event.household, event.kind, cmd.note.strip() if cmd.note else None, event.recorded_at,
              event.recorded_by)


async def follow_up_tip_off(cmd: commands.FollowUpTipOff, ctx: Context) -> None:
    tip_off = await ctx.state(domain.tip_off_stream(cmd.tip_off))
    [event] = await _decide_and_append(ctx, cmd, decide.Facts(tip_off=tip_off))
    ctx.write(tables.FOLLOWED_UP, event.tip_off, event.community, event.compound, event.outcome,
              cmd.note.strip() if cmd.note else None, event.followed_up_at, event.followed_up_by)


async def record_personal_data_view(cmd: commands.RecordPersonalDataView, ctx: Context) -> None:
    await _decide_and_append(ctx, cmd, decide.Facts())


async def register_pending_arrival(cmd: commands.RegisterPendingArrival, ctx: Context) -> None:
    """The arrival for the resident who holds the ID number here, else a pending registration with
    the listed data sealed in ``registry.pending``."""
    scratch: Scratch = ctx.scratch
    hashed = id_hash(scratch.keys.index_key, cmd.id_number)
    holder = scratch.id_holders.get(hashed)
    here = holder is not None and holder[1] == cmd.community
    facts = decide.Facts(
        compound=await ctx.state(domain.compound_stream(cmd.community, cmd.compound)) if cmd.compound else None,
        resident=await ctx.state(domain.resident_stream(holder[0])) if here else None,
        pending=await ctx.state(domain.pending_stream(cmd.arrival)),
        arrival=await ctx.state(domain.arrival_stream(cmd.arrival)),
        already_pending=(hashed, cmd.arrived_on) in scratch.pending_waiting,
        registered_elsewhere=holder is not None and not here,
    )
    [event] = decide.decide(facts, cmd)
    travel = {"origin": cmd.origin.strip(), "transport": cmd.transport, "visited": cmd.visited}
    if isinstance(event, ArrivalRegistered):
        _, version = await ctx.load(domain.arrival_stream(event.arrival))
        ctx.append(domain.arrival_stream(event.arrival), version, [event])
        ctx.write(tables.INSERT_TRAVEL, event.arrival, event.resident, event.community,
                  seal_json(_key(ctx, event.resident), f"arrival:{event.arrival}", travel), cmd.occurred_at)
        return
    _, version = await ctx.expect(domain.pending_stream(event.arrival))
    ctx.append(domain.pending_stream(event.arrival), version, [event])
    scratch.pending_waiting.add((hashed, cmd.arrived_on))  # a later row of the batch waits behind it
    subject = pending_subject(event.arrival)
    listed = {"name": cmd.name.strip(), "id_number": cmd.id_number, "phone": cmd.phone,
              "address": cmd.address.strip() if cmd.address else None, **travel}
    ctx.write(tables.INSERT_PENDING, event.arrival, event.community, event.compound, event.building,
              event.display_name, event.arrived_on, event.city_class, hashed,
              seal_json(_key(ctx, subject), subject, listed), cmd.occurred_at)


async def complete_registration(cmd: commands.CompleteRegistration, ctx: Context) -> None:
    """The pending person registered as a resident of the household (their listed name, ID number
    and phone sealed with a key of their own), their arrival registered, the pending one closed."""
    facts = decide.Facts(
        pending=await ctx.state(domain.pending_stream(cmd.arrival)),
        household=await ctx.state(domain.household_stream(cmd.household)),
        resident=await ctx.state(domain.resident_stream(cmd.resident)),
    )
    registered, arrived, completed = decide.decide(facts, cmd)
    listed = await _listed(ctx, cmd.arrival)
    birth_year = cmd.birth_year or commands.birth_year_of(listed["id_number"])
    if birth_year is None:
        raise Invalid("the list's document is no ID card: give birth_year", field="birth_year")
    commands.check_birth_year(birth_year, cmd.occurred_at)
    scratch: Scratch = ctx.scratch
    hashed = id_hash(scratch.keys.index_key, listed["id_number"])
    if hashed in scratch.id_numbers_taken or await ctx.conn.fetchval(tables.TAKEN_ID_HASHES, [hashed]):
        raise Conflict("a resident with this ID number is registered already (since the list came): register "
                       "the arrival for them (register_arrival)", field="id_number")
    for stream, event in ((domain.resident_stream(registered.resident), registered),
                          (domain.arrival_stream(arrived.arrival), arrived),
                          (domain.pending_stream(completed.arrival), completed)):
        _, version = await ctx.load(stream)
        ctx.append(stream, version, [event])
    scratch.id_numbers_taken.add(hashed)
    data_key = _key(ctx, registered.resident)
    phone = cmd.phone or listed["phone"]
    ctx.write(tables.INSERT_PII, registered.resident, registered.household, registered.community,
              sealed_personal(data_key, registered.resident, listed["name"], listed["id_number"], phone, birth_year),
              hashed, cmd.occurred_at)
    travel = {k: listed[k] for k in ("origin", "transport", "visited")}
    ctx.write(tables.INSERT_TRAVEL, arrived.arrival, arrived.resident, arrived.community,
              seal_json(data_key, f"arrival:{arrived.arrival}", travel), cmd.occurred_at)
    ctx.write(tables.COMPLETE_PENDING, cmd.arrival, cmd.occurred_at, registered.resident)


async def _listed(ctx: Context, arrival: str) -> dict:
    """What the city's list said of a pending registration (unsealed with its key)."""
    subject = pending_subject(arrival)
    sealed = await ctx.conn.fetchval(tables.PENDING_SEALED, arrival)
    if sealed is None:
        raise CommandError(f"the listed data of arrival {arrival} is missing; the command was not applied")
    return json.loads(pii.unseal(_key(ctx, subject), subject, sealed))


HANDLERS: dict[str, Handler] = {
    "register_compound": register_compound,
    "register_household": register_household,
    "register_resident": register_resident,
    "register_arrival": register_arrival,
    "verify_arrival": verify_arrival,
    "move_out": move_out,
    "grant_identity": grant_identity,
    "revoke_identity": revoke_identity,
    "erase_resident": erase_resident,
    "record_personal_data_view": record_personal_data_view,
    "apply_retention": apply_retention,
    "update_resident": update_resident,
    "record_call": record_call,
    "record_tip_off": record_tip_off,
    "follow_up_tip_off": follow_up_tip_off,
    "register_pending_arrival": register_pending_arrival,
    "complete_registration": complete_registration,
}
