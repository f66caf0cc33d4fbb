"""Checkpoint command handlers: load the facts a command needs, decide (pure), append, write rows.

The checkpoint's own tables (:mod:`services.checkpoint.tables`) are written in the command's
transaction. Other services' facts come from the local copies (``dir_*`` from the registry through
:mod:`shared.directory`, ``q_cases``/``sealed_areas`` from quarantine through
:mod:`services.checkpoint.copies`).

A handler sees a completed command: the runtime filled ``occurred_at`` and the passage and shift
ids (``commands.CREATES``). Pass ids and printed numbers are made here (impure); the decision gets
the ids on its facts. The numbers are credentials: they go to the passes table and to the caller's
reply (issue_passes, replace_pass), never into an event.

A visitor's name, phone and purpose are sealed with a data key of the visit's own (subject: the
passage id) from the checkpoint's key store (:mod:`shared.keystore`, schema ``checkpoint`` of the
key database), made for the batch's visitors in one round trip; shred_visitor_data deletes those
keys once the tracing window is over. A vehicle check's plate (and an outside driver's name and
phone) is sealed the same way, with a key of the check's own (subject ``vehicle:<id>``), and
shredded with the visitors'.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

import msgspec

from services.checkpoint import commands, domain, lookups, numbers, parcels, passage, vehicles
from services.checkpoint.decide import Facts, decide
from services.checkpoint.domain import (
    control_stream,
    parcel_stream,
    passage_stream,
    passes_stream,
    read_stream,
    shift_stream,
    shredding_stream,
    vehicle_stream,
)
from services.checkpoint.lookups import Loaded
from services.checkpoint.tables import (
    COLLECT_PARCEL,
    DUE_VEHICLES,
    INSERT_PARCEL,
    INSERT_VEHICLE,
    SHRED_VEHICLES,
    END_SHIFT,
    FIND_PASS,
    INSERT_PASS,
    INSERT_SHIFT,
    DUE_VISITORS,
    INSERT_VISITOR,
    OPEN_SHIFT,
    REVOKE_PASS,
    SCHEMA,
    SHRED_VISITORS,
)
from shared import directory, pii
from shared.context import Context
from shared.envelope import new_id
from shared.errors import CommandError, Conflict, Invalid, NotFound, Unavailable
from shared.keystore import KeyStore
from shared.runtime import Handler

#: Bulk replies list passes compactly; full envelopes only up to this many events (NATS: 1 MiB).
EVENTS_IN_REPLY = 50


@dataclass
class Scratch:
    """What earlier commands of a batch did that the tables do not show yet (their rows are
    written at commit), and the batch's passage facts."""

    #: The facts of the batch's passages, read in one query (:func:`prepare_batch`).
    lookups: Loaded = field(default_factory=Loaded)
    #: Passes issued in this batch, by id and by printed number.
    issued: dict[str, passage.Pass] = field(default_factory=dict)
    #: Pass ids revoked in this batch.
    revoked: set[str] = field(default_factory=set)
    #: Printed numbers handed out in this batch (the unique index guards across batches).
    numbers: set[str] = field(default_factory=set)
    #: staff -> the shift they started in this batch, or None when they ended one.
    open_shifts: dict[str, str | None] = field(default_factory=dict)
    #: The visitors' key store (the checkpoint's spec binds it: ``partial(Scratch, keys=...)``).
    keys: KeyStore | None = None
    #: passage -> its data key, made for every visitor of the batch in one round trip
    data_keys: dict[str, bytes] = field(default_factory=dict)
    #: Why no key could be made (the key store is down): the batch's visitors are refused with
    #: it, and the residents at the gate go through as ever.
    keys_error: CommandError | None = None


def prefetch(cmd) -> list[str]:
    """Streams a command will surely read, loaded for the whole batch in one query (a new
    passage's stream too: one more key in that query tells a reused passage id)."""
    match cmd:
        case commands.SetGate() | commands.SetControlLevel():
            return [control_stream(cmd.community, cmd.compound)]
        case commands.IssuePasses() if cmd.households is not None:
            return [passes_stream(h) for h in cmd.households]
        case commands.CheckPassage():
            streams = [control_stream(cmd.community, cmd.compound)]
            return streams + ([passage_stream(cmd.passage)] if cmd.passage else [])
        case commands.StartShift() | commands.EndShift() if cmd.shift is not None:
            return [shift_stream(cmd.shift)]
        case commands.CheckVehicle():
            return [control_stream(cmd.community, cmd.compound), vehicle_stream(cmd.vehicle)]
        case commands.DropParcel():
            return [parcel_stream(cmd.parcel)]
        case commands.CollectParcel():
            return [parcel_stream(cmd.parcel)]
    return []


async def prepare_batch(conn, cmds: list, scratch: Scratch) -> None:
    """The facts of every check_passage of the batch, and of every resident aboard its vehicles,
    in one query (:data:`lookups.FACTS`), and a data key for each visitor and vehicle check (made
    before the batch commits: a key whose command is then refused seals nothing and is harmless)."""
    passages = [c for c in cmds if isinstance(c, commands.CheckPassage)]
    checks = [c for c in cmds if isinstance(c, commands.CheckVehicle)]
    aboard = [vehicles.on_foot(c, r) for c in checks for r in [None, *vehicles.residents(c)]]
    if passages or aboard:
        await lookups.load(conn, scratch.lookups, passages + aboard)
    visits = [c.passage for c in passages if c.visitor is not None] + [vehicle_subject(c.vehicle) for c in checks]
    if visits:
        try:
            scratch.data_keys = await scratch.keys.create(visits)
        except CommandError as err:
            scratch.keys_error = err
        except Exception as err:  # the key database away: not the residents' problem
            scratch.keys_error = Unavailable(f"the key store does not answer ({type(err).__name__}); "
                                             "a visitor's name and phone cannot be kept now")


# -- gates and levels ----------------------------------------------------------------------------


async def set_gate(cmd: commands.SetGate, ctx: Context) -> None:
    await _control_command(cmd, ctx)


async def set_control_level(cmd: commands.SetControlLevel, ctx: Context) -> None:
    await _control_command(cmd, ctx)


async def _control_command(cmd: commands.SetGate | commands.SetControlLevel, ctx: Context) -> None:
    compound = await _compound(ctx, cmd.community, cmd.compound)
    target = control_stream(cmd.community, cmd.compound)
    control, version = await ctx.expect(target)
    events = decide(Facts(compound=compound, control=control), cmd)
    ctx.append(target, version, events)


# -- passes --------------------------------------------------------------------------------------


async def issue_passes(cmd: commands.IssuePasses, ctx: Context) -> None:
    compound = await _compound(ctx, cmd.community, cmd.compound)
    households = await _households(ctx, cmd) if compound is not None else {}
    wanted = [h for h in (cmd.households or households) if h in households]
    states = dict(zip(wanted, [s for s, _ in await ctx.load_many([passes_stream(h) for h in wanted])]))
    short = sum(max(0, cmd.per_household - (len(s.active) if s else 0)) for s in states.values())
    fresh = _new_passes(ctx, short)
    facts = Facts(compound=compound, households=households, passes=states, new_passes=tuple(fresh))
    events = decide(facts, cmd)
    by_household: dict[str, list] = defaultdict(list)
    for event in events:
        by_household[event.household].append(event)
    for household, issued in by_household.items():
        _, version = await ctx.load(passes_stream(household))
        ctx.append(passes_stream(household), version, issued)
        for e in issued:
            _record_issued(ctx, e, fresh[e.pass_])
    compact = [{"pass": e.pass_, "number": fresh[e.pass_], "household": e.household} for e in events]
    extra: dict = {"issued": len(events), "skipped": len(wanted) - len(by_household), "passes": compact}
    if len(events) > EVENTS_IN_REPLY:
        extra.update(events=[], events_omitted=len(events))
    ctx.reply_with(**extra)


async def revoke_pass(cmd: commands.RevokePass, ctx: Context) -> None:
    await _pass_change(cmd, ctx)


async def replace_pass(cmd: commands.ReplacePass, ctx: Context) -> None:
    await _pass_change(cmd, ctx)


async def _pass_change(cmd: commands.RevokePass | commands.ReplacePass, ctx: Context) -> None:
    found = await _find_pass(ctx, cmd.pass_)
    if found is None:
        raise NotFound(f"pass {cmd.pass_} was never issued", field="pass")
    pass_id, household = found
    cmd = msgspec.structs.replace(cmd, pass_=pass_id)
    target = passes_stream(household)
    state, version = await ctx.expect(target)
    fresh = _new_passes(ctx, 1) if isinstance(cmd, commands.ReplacePass) else {}
    events = decide(Facts(passes={household: state}, new_passes=tuple(fresh)), cmd)
    ctx.append(target, version, events)
    ctx.write(REVOKE_PASS, pass_id, cmd.occurred_at, cmd.reason.strip())
    ctx.scratch.revoked.add(pass_id)
    for event in events[1:]:
        number = fresh[event.pass_]
        _record_issued(ctx, event, number)
        ctx.reply_with(replacement={"pass": event.pass_, "number": number})


def _new_passes(ctx: Context, count: int) -> dict[str, str]:
    """``count`` fresh pass ids, each with its printed number, in order."""
    taken = ctx.scratch.numbers
    fresh: dict[str, str] = {}
    while len(fresh) < count:
        number = numbers.new_number()
        if number not in taken:  # the unique index guards across batches
            taken.add(number)
            fresh[new_id()] = number
    return fresh


def _record_issued(ctx: Context, e, number: str) -> None:
    """The issued pass in the passes table, where its number lives (and in the batch's scratch)."""
    ctx.write(INSERT_PASS, e.pass_, number, e.community, e.compound, e.household, e.issued_at)
    issued = ctx.scratch.issued
    issued[e.pass_] = issued[number] = passage.Pass(
        pass_=e.pass_, number=number, community=e.community, compound=e.compound, household=e.household)


# -- passages: the hot path ----------------------------------------------------------------------


async def check_passage(cmd: commands.CheckPassage, ctx: Context) -> None:
    found = await lookups.facts(ctx, cmd)
    control, _ = await ctx.load(control_stream(cmd.community, cmd.compound))
    facts = replace(found, control=control, config=ctx.config)
    target = passage_stream(cmd.passage)
    _, version = await ctx.expect(target)
    if version:
        raise Conflict(f"passage id {cmd.passage} is taken", field="passage")
    events = decide(facts, cmd)
    personal = _sealed_visitor(ctx, cmd) if cmd.visitor is not None else None
    ctx.append(target, version, events)
    decision = events[0]
    why = getattr(decision, "reason", None)
    if cmd.visitor is not None:
        ctx.write(INSERT_VISITOR, cmd.passage, cmd.community, cmd.compound, cmd.gate, cmd.direction,
                  cmd.visitor.host_household, why is None, why, cmd.occurred_at, personal)
    ctx.reply_with(passage=cmd.passage, decision={"allowed": why is None, "reason": why})


def _sealed_visitor(ctx: Context, cmd: commands.CheckPassage) -> bytes:
    """The visitor's name, phone and purpose sealed with the visit's data key; refused (nothing
    recorded, the guard asks again) when the key store could make none."""
    scratch: Scratch = ctx.scratch
    data_key = scratch.data_keys.get(cmd.passage)
    if data_key is None:
        raise scratch.keys_error or CommandError(f"no data key could be made for passage {cmd.passage}; "
                                                 "the command was not applied")
    return sealed_visitor(data_key, cmd.passage, cmd.visitor.name.strip(), cmd.visitor.phone,
                          cmd.visitor.purpose.strip())


def sealed_visitor(data_key: bytes, passage: str, name: str, phone: str, purpose: str) -> bytes:
    """A visitor's personal fields as ``checkpoint.visitors.personal`` holds them."""
    return pii.seal(data_key, passage, msgspec.json.encode({"name": name, "phone": phone, "purpose": purpose}))


# -- vehicles and the drop point (issue 17) ------------------------------------------------------


def vehicle_subject(vehicle: str) -> str:
    """The key store's subject of a vehicle check (apart from visits', which are passage ids)."""
    return f"vehicle:{vehicle}"


async def check_vehicle(cmd: commands.CheckVehicle, ctx: Context) -> None:
    place = await lookups.facts(ctx, vehicles.on_foot(cmd, None))
    control, _ = await ctx.load(control_stream(cmd.community, cmd.compound))
    aboard = tuple([(r, await lookups.facts(ctx, vehicles.on_foot(cmd, r))) for r in vehicles.residents(cmd)])
    facts = vehicles.Facts(place=replace(place, control=control), aboard=aboard, config=ctx.config)
    target = vehicle_stream(cmd.vehicle)
    _, version = await ctx.expect(target)
    if version:
        raise Conflict(f"vehicle check id {cmd.vehicle} is taken", field="vehicle")
    events = decide(facts, cmd)
    personal = _sealed_vehicle(ctx, cmd)
    ctx.append(target, version, events)
    e = events[0]
    why = getattr(e, "reason", None)
    ctx.write(INSERT_VEHICLE, cmd.vehicle, cmd.community, cmd.compound, cmd.gate, cmd.direction, cmd.purpose,
              cmd.driver.resident, why is None, why, cmd.occurred_at, personal)
    ctx.reply_with(vehicle=cmd.vehicle, decision={"allowed": why is None, "reason": why,
                                                  "resident": getattr(e, "resident", None)})


def _sealed_vehicle(ctx: Context, cmd: commands.CheckVehicle) -> bytes:
    """The plate (and an outside driver's name and phone) sealed with the check's data key; refused
    (nothing recorded) when the key store could make none: a plate is not kept in clear."""
    scratch: Scratch = ctx.scratch
    subject = vehicle_subject(cmd.vehicle)
    data_key = scratch.data_keys.get(subject)
    if data_key is None:
        raise scratch.keys_error or CommandError(f"no data key could be made for vehicle check {cmd.vehicle}; "
                                                 "the command was not applied")
    driver = cmd.driver
    fields = {"plate": cmd.plate, "driver_name": driver.name and driver.name.strip(), "driver_phone": driver.phone}
    return pii.seal(data_key, subject, msgspec.json.encode(fields))


async def drop_parcel(cmd: commands.DropParcel, ctx: Context) -> None:
    compound = await _compound(ctx, cmd.community, cmd.compound)
    rows = await directory.households(ctx.conn, SCHEMA, [cmd.household])
    home = next((passage.Home(household=r["household"], community=r["community"], compound=r["compound"],
                              building=r["building"]) for r in rows), None)
    target = parcel_stream(cmd.parcel)
    _, version = await ctx.expect(target)
    if version:
        raise Conflict(f"parcel id {cmd.parcel} is taken", field="parcel")
    events = decide(parcels.DropFacts(compound=compound, home=home), cmd)
    ctx.append(target, version, events)
    e = events[0]
    ctx.write(INSERT_PARCEL, e.parcel, e.community, e.compound, e.gate, e.household, e.building, e.kind, e.dropped_at)
    ctx.reply_with(parcel=e.parcel)


async def collect_parcel(cmd: commands.CollectParcel, ctx: Context) -> None:
    target = parcel_stream(cmd.parcel)
    state, version = await ctx.expect(target)  # another community's parcel is refused here
    person = None
    if cmd.resident is not None and isinstance(state, domain.Parcel):
        person = await lookups.facts(ctx, parcels.on_foot(state, cmd))
        control, _ = await ctx.load(control_stream(state.community, state.compound))
        person = replace(person, control=control, config=ctx.config)
    events = decide(parcels.CollectFacts(parcel=state, person=person), cmd)
    ctx.append(target, version, events)
    e = events[0]
    ctx.write(COLLECT_PARCEL, e.parcel, e.collected_at, e.resident, e.volunteer)
    ctx.reply_with(parcel=e.parcel, to_the_door=e.volunteer is not None)


# -- shifts --------------------------------------------------------------------------------------


async def start_shift(cmd: commands.StartShift, ctx: Context) -> None:
    compound = await _gate_compound(ctx, cmd)
    open_shift = await _open_shift(ctx, cmd.staff)
    target = shift_stream(cmd.shift)
    state, version = await ctx.expect(target)
    facts = Facts(compound=compound, open_shift=open_shift, shift=state)
    events = decide(facts, cmd)
    ctx.append(target, version, events)
    e = events[0]
    ctx.write(INSERT_SHIFT, e.shift, e.community, e.compound, e.gate, e.staff, e.started_at)
    ctx.scratch.open_shifts[cmd.staff] = e.shift


async def end_shift(cmd: commands.EndShift, ctx: Context) -> None:
    if cmd.shift is not None:
        state, _ = await ctx.load(shift_stream(cmd.shift))
    else:
        state = await _open_shift(ctx, cmd.staff)
    events = decide(Facts(shift=state), cmd)  # refuses when there is no shift
    e = events[0]
    target = shift_stream(e.shift)
    _, version = await ctx.expect(target)  # already in the batch cache
    ctx.append(target, version, events)
    ctx.write(END_SHIFT, e.shift, e.ended_at, e.hours)
    ctx.scratch.open_shifts[cmd.staff] = None
    ctx.reply_with(hours=e.hours)


# -- visitors' personal data -----------------------------------------------------------------


async def record_visitor_contact_view(cmd: commands.RecordVisitorContactView, ctx: Context) -> None:
    target = read_stream(cmd.command_id)
    _, version = await ctx.expect(target)
    ctx.append(target, version, decide(Facts(), cmd))


async def shred_visitor_data(cmd: commands.ShredVisitorData, ctx: Context) -> None:
    """Delete the data keys of every visit before ``cmd.before`` not shredded yet, then null their
    sealed fields and record the counts per community. The keys go first, in the key database
    (not in this transaction), as an erasure does: if this commit fails, the data is unreadable
    but not yet on the record, and the next run (it finds the same rows) records it."""
    rows = await ctx.conn.fetch(DUE_VISITORS, cmd.before)
    passages = [r["passage"] for r in rows]
    checks = await ctx.conn.fetch(DUE_VEHICLES, cmd.before)
    vehicle_ids = [r["vehicle"] for r in checks]
    if passages or vehicle_ids:
        await ctx.scratch.keys.shred(passages + [vehicle_subject(v) for v in vehicle_ids])
    if passages:
        ctx.write(SHRED_VISITORS, passages, cmd.occurred_at)
    if vehicle_ids:
        ctx.write(SHRED_VEHICLES, vehicle_ids, cmd.occurred_at)
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r["community"]] += 1
    vehicle_counts: dict[str, int] = defaultdict(int)
    for r in checks:
        vehicle_counts[r["community"]] += 1
    day = cmd.before.date()
    for event in decide(Facts(shredded=counts, vehicles_shredded=vehicle_counts), cmd):
        target = shredding_stream(event.community, day)
        _, version = await ctx.load(target)  # a second run of the day adds to it: only what came due since
        ctx.append(target, version, [event])
    ctx.reply_with(visitors=len(passages), vehicles=len(vehicle_ids))


HANDLERS: dict[str, Handler] = {
    "set_gate": set_gate,
    "set_control_level": set_control_level,
    "issue_passes": issue_passes,
    "revoke_pass": revoke_pass,
    "replace_pass": replace_pass,
    "check_passage": check_passage,
    "start_shift": start_shift,
    "end_shift": end_shift,
    "record_visitor_contact_view": record_visitor_contact_view,
    "shred_visitor_data": shred_visitor_data,
    "check_vehicle": check_vehicle,
    "drop_parcel": drop_parcel,
    "collect_parcel": collect_parcel,
}


# -- reads ---------------------------------------------------------------------------------------


async def _compound(ctx: Context, community: str, compound: str) -> domain.Compound | None:
    row = await directory.compound(ctx.conn, SCHEMA, community, compound)
    return _as_compound(row) if row else None


def _as_compound(row) -> domain.Compound:
    return domain.Compound(community=row["community"], compound=row["compound"],
                           buildings=tuple(row["buildings"]), gates=tuple(row["gates"]))


async def _households(ctx: Context, cmd: commands.IssuePasses) -> dict[str, domain.Household]:
    if cmd.households is not None:
        rows = await directory.households(ctx.conn, SCHEMA, cmd.households)
    else:
        rows = await directory.households_in(ctx.conn, SCHEMA, cmd.community, cmd.compound, cmd.building)
    return {r["household"]: domain.Household(household=r["household"], community=r["community"],
                                             compound=r["compound"], building=r["building"]) for r in rows}


async def _find_pass(ctx: Context, key: str) -> tuple[str, str] | None:
    """(pass id, household) of a pass named by id or number, including passes of this batch."""
    fresh = ctx.scratch.issued.get(key)
    if fresh is not None:
        return fresh.pass_, fresh.household
    row = await ctx.conn.fetchrow(FIND_PASS, key)
    return (row["pass"], row["household"]) if row else None


async def _gate_compound(ctx: Context, cmd: commands.StartShift) -> domain.Compound | None:
    """The compound of the shift's gate: the one named, or the only one in the community with it."""
    if cmd.compound is not None:
        return await _compound(ctx, cmd.community, cmd.compound)
    rows = await directory.compounds_with_gate(ctx.conn, SCHEMA, cmd.community, cmd.gate)
    if len(rows) > 1:
        raise Invalid(f"gate {cmd.gate} is a gate of compounds {', '.join(r['compound'] for r in rows)}: "
                      "give compound", field="compound")
    return _as_compound(rows[0]) if rows else None


async def _open_shift(ctx: Context, staff: str) -> domain.Shift | None:
    """The staff member's open shift, anywhere, including shifts started or ended in this batch."""
    local = ctx.scratch.open_shifts
    if staff in local:
        shift = local[staff]
    else:
        shift = await ctx.conn.fetchval(OPEN_SHIFT, staff)
    if shift is None:
        return None
    state, _ = await ctx.load(shift_stream(shift))
    return state
