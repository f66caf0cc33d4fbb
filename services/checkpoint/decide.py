"""The checkpoint's rules: ``decide(facts, command) -> events``, pure. No I/O, no clock, no
randomness: time and the actor arrive on the command, new pass ids on the facts (made by the
handler, with their printed numbers, which it keeps). The passage decision, the hot path, has a
module and facts of its own (:mod:`services.checkpoint.passage`); :func:`decide` is the one entry
point for every command.

Rules:
- set_gate / set_control_level refuse a change that changes nothing (``gate_already_open``,
  ``gate_already_closed``, ``level_unchanged``): a no-op is a mistake worth telling.
- issue_passes tops every household up to ``per_household`` active passes, so running it again for a
  whole compound reaches only the households still short (new ones, revoked passes); when every
  household is full it is refused (``already_issued``).
- revoke_pass refuses a revoked pass (``already_revoked``); replace_pass revokes and issues in one.
- a printed number never goes into an event (it is a credential): decide never sees one. The
  handler keeps the numbers it made, writes them to the passes table and replies them to the caller.
- a staff member is on at most one shift at a time (``already_on_shift``); end_shift needs their
  open shift at that gate (``not_on_shift``), and ends no earlier than it started
  (``ends_before_start``). ShiftEnded carries the hours, for the volunteer reports.
- check_passage: see :mod:`services.checkpoint.passage` for its reasons and the order they win in.
- check_vehicle: see :mod:`services.checkpoint.vehicles` (each resident aboard judged as on foot);
  drop_parcel, collect_parcel: see :mod:`services.checkpoint.parcels` (the drop point).
- record_visitor_contact_view records a read of a visitor's contact (the query handler's, after
  its checks); shred_visitor_data records, per community, how many visits' personal data the
  handler shredded (none shredded: no event).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Mapping, assert_never

from services.checkpoint import parcels, passage, vehicles
from services.checkpoint.commands import (
    MAX_PASSES,
    CheckPassage,
    CheckVehicle,
    CollectParcel,
    Command,
    DropParcel,
    EndShift,
    IssuePasses,
    ReplacePass,
    RecordVisitorContactView,
    RevokePass,
    SetControlLevel,
    SetGate,
    ShredVisitorData,
    StartShift,
)
from services.checkpoint.domain import (
    CheckpointEvent,
    Compound,
    Control,
    Household,
    Passes,
    Shift,
    known_compound,
    known_gate,
    opened,
)
from services.checkpoint.passage import Facts as PassageFacts
from shared.contracts.checkpoint import (
    ControlLevelSet,
    GateClosed,
    GateOpened,
    PassIssued,
    PassRevoked,
    ShiftEnded,
    ShiftStarted,
    VisitorContactViewed,
    VisitorDataShredded,
)
from shared.errors import Conflict, NotFound, Rejected


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """What the handler loaded for a command.

    set_gate, set_control_level: compound, control · issue_passes: compound, households (the ones
    to issue to, in order), passes (household -> its state), new_passes · revoke_pass: passes (of
    the pass's household) · replace_pass: the same and new_passes · start_shift: compound (the one
    with the gate), open_shift (the staff's), shift (the stream at the new id) · end_shift: shift
    (the staff's open shift, or the one named) · record_visitor_contact_view: nothing ·
    shred_visitor_data: shredded (community -> visits shredded now).
    """

    compound: Compound | None = None
    control: Control | None = None
    #: household id -> where it lives (issue_passes: the named ones, or all, in issue order)
    households: Mapping[str, Household] = field(default_factory=dict)
    passes: Mapping[str, Passes | None] = field(default_factory=dict)
    #: Fresh pass ids made by the handler; decide takes what it needs (their printed numbers stay
    #: with the handler: off the bus).
    new_passes: tuple[str, ...] = ()
    open_shift: Shift | None = None
    shift: Shift | None = None
    shredded: Mapping[str, int] = field(default_factory=dict)
    #: shred_visitor_data: community -> vehicle checks whose plates were shredded now.
    vehicles_shredded: Mapping[str, int] = field(default_factory=dict)


def decide(facts: Facts | PassageFacts | vehicles.Facts | parcels.DropFacts | parcels.CollectFacts,
           cmd: Command) -> list[CheckpointEvent]:
    """The events a command produces, or a NotFound / Conflict / Rejected error.

    check_passage takes the passage's facts (:class:`PassageFacts`, see
    :mod:`services.checkpoint.passage`), check_vehicle :class:`vehicles.Facts`, drop_parcel and
    collect_parcel :class:`parcels.DropFacts` and :class:`parcels.CollectFacts`, every other
    command :class:`Facts`.
    """
    match cmd:
        case CheckPassage():
            return passage.decide(facts, cmd)
        case CheckVehicle():
            return vehicles.decide(facts, cmd)
        case DropParcel():
            return parcels.drop(facts, cmd)
        case CollectParcel():
            return parcels.collect(facts, cmd)
        case SetGate():
            return _set_gate(facts, cmd)
        case SetControlLevel():
            return _set_level(facts, cmd)
        case IssuePasses():
            return _issue(facts, cmd)
        case RevokePass():
            return _revoke(facts, cmd)
        case ReplacePass():
            return _replace(facts, cmd)
        case StartShift():
            return _start_shift(facts, cmd)
        case EndShift():
            return _end_shift(facts, cmd)
        case RecordVisitorContactView():
            return [VisitorContactViewed(community=cmd.community, viewer=cmd.viewer, passage=cmd.passage,
                                         purpose=cmd.purpose.strip(), viewed_at=passage.at(cmd))]
        case ShredVisitorData():
            visits, plates = facts.shredded, facts.vehicles_shredded
            return [VisitorDataShredded(community=c, before=cmd.before, visitors=visits.get(c, 0),
                                        vehicles=plates.get(c, 0), shredded_at=passage.at(cmd), shredded_by=cmd.actor)
                    for c in sorted(set(visits) | set(plates)) if visits.get(c, 0) or plates.get(c, 0)]
        case _:
            assert_never(cmd)


def _set_gate(facts: Facts, cmd: SetGate) -> list[CheckpointEvent]:
    compound = known_compound(facts.compound, cmd.community, cmd.compound)
    known_gate(compound, cmd.gate)
    control = facts.control or opened(cmd.community, cmd.compound)
    closed = cmd.gate in control.closed_gates
    if cmd.open and not closed:
        raise Rejected(f"gate {cmd.gate} is already open", reason="gate_already_open")
    if not cmd.open and closed:
        raise Rejected(f"gate {cmd.gate} is already closed", reason="gate_already_closed")
    if cmd.open:
        return [GateOpened(community=cmd.community, compound=cmd.compound, gate=cmd.gate,
                           opened_at=passage.at(cmd), opened_by=cmd.actor)]
    return [GateClosed(community=cmd.community, compound=cmd.compound, gate=cmd.gate,
                       closed_at=passage.at(cmd), closed_by=cmd.actor)]


def _set_level(facts: Facts, cmd: SetControlLevel) -> list[CheckpointEvent]:
    known_compound(facts.compound, cmd.community, cmd.compound)
    control = facts.control or opened(cmd.community, cmd.compound)
    if control.level == cmd.level:
        raise Rejected(f"compound {cmd.compound} is already at level {cmd.level}", reason="level_unchanged")
    return [ControlLevelSet(community=cmd.community, compound=cmd.compound, level=cmd.level,
                            previous=control.level, set_at=passage.at(cmd), set_by=cmd.actor)]


def _issue(facts: Facts, cmd: IssuePasses) -> list[CheckpointEvent]:
    known_compound(facts.compound, cmd.community, cmd.compound)
    wanted = cmd.households if cmd.households is not None else list(facts.households)
    if not wanted:
        where = f"building {cmd.building} of " if cmd.building else ""
        raise Rejected(f"{where}compound {cmd.compound} has no registered households",
                       reason="no_households")
    fresh = iter(facts.new_passes)
    events: list[CheckpointEvent] = []
    for i, household_id in enumerate(wanted):
        household = facts.households.get(household_id)
        if household is None:
            raise NotFound(f"household {household_id} is not registered", field=f"households[{i}]")
        if (household.community, household.compound) != (cmd.community, cmd.compound):
            raise NotFound(f"household {household_id} is not in compound {cmd.compound}",
                           field=f"households[{i}]")
        held = facts.passes.get(household_id)
        for _ in range(cmd.per_household - (len(held.active) if held else 0)):
            events.append(_issued(cmd, household.community, household.compound, household_id, _next(fresh)))
    if not events:
        raise Rejected(f"every household already holds {cmd.per_household} active pass(es)",
                       reason="already_issued")
    if len(events) > MAX_PASSES:
        raise Rejected(f"{len(events)} passes in one command; at most {MAX_PASSES}: issue building by "
                       "building", reason="too_many_passes")
    return events


def _revoke(facts: Facts, cmd: RevokePass) -> list[CheckpointEvent]:
    passes = _pass_of(facts, cmd.pass_)
    return [_revoked(cmd, passes, cmd.pass_)]


def _replace(facts: Facts, cmd: ReplacePass) -> list[CheckpointEvent]:
    passes = _pass_of(facts, cmd.pass_)
    new = _next(iter(facts.new_passes))
    return [_revoked(cmd, passes, cmd.pass_, replaced_by=new),
            _issued(cmd, passes.community, passes.compound, passes.household, new, replaces=cmd.pass_)]


def _pass_of(facts: Facts, pass_id: str) -> Passes:
    for passes in facts.passes.values():
        if passes is None:
            continue
        if pass_id in passes.revoked:
            raise Rejected(f"pass {pass_id} is already revoked", reason="already_revoked")
        if pass_id in passes.active:
            return passes
    raise NotFound(f"pass {pass_id} was never issued", field="pass")


def _issued(cmd, community: str, compound: str, household: str, new: str,
            replaces: str | None = None) -> PassIssued:
    return PassIssued(community=community, pass_=new, compound=compound, household=household,
                      replaces=replaces, issued_at=passage.at(cmd), issued_by=cmd.actor)


def _revoked(cmd, passes: Passes, pass_id: str, replaced_by: str | None = None) -> PassRevoked:
    return PassRevoked(community=passes.community, pass_=pass_id, compound=passes.compound,
                       household=passes.household, reason=cmd.reason.strip(), replaced_by=replaced_by,
                       revoked_at=passage.at(cmd), revoked_by=cmd.actor)


def _next(fresh: Iterator[str]) -> str:
    try:
        return next(fresh)
    except StopIteration:
        raise ValueError("the handler made too few new passes") from None


def _start_shift(facts: Facts, cmd: StartShift) -> list[CheckpointEvent]:
    if cmd.compound is not None:
        compound = known_compound(facts.compound, cmd.community, cmd.compound)
    elif (compound := facts.compound) is None:
        raise NotFound(f"no compound in {cmd.community} has a gate {cmd.gate}", field="gate")
    known_gate(compound, cmd.gate)
    if facts.open_shift is not None:
        on = facts.open_shift
        raise Rejected(f"{cmd.staff} is already on shift at gate {on.gate} since {on.started_at.isoformat()}; "
                       "end that shift first", reason="already_on_shift")
    if facts.shift is not None:
        raise Conflict(f"shift id {cmd.shift} is taken", field="shift")
    return [ShiftStarted(community=cmd.community, shift=_id(cmd.shift), compound=compound.compound,
                         gate=cmd.gate, staff=cmd.staff, started_at=passage.at(cmd), started_by=cmd.actor)]


def _end_shift(facts: Facts, cmd: EndShift) -> list[CheckpointEvent]:
    shift = facts.shift
    if cmd.shift is not None and shift is None:
        raise NotFound(f"shift {cmd.shift} was never started", field="shift")
    if shift is None or shift.ended or shift.staff != cmd.staff:
        raise Rejected(f"{cmd.staff} has no open shift to end", reason="not_on_shift")
    if (shift.community, shift.gate) != (cmd.community, cmd.gate) or \
            (cmd.compound is not None and cmd.compound != shift.compound):
        raise Rejected(f"{cmd.staff} is on shift at gate {shift.gate} of {shift.compound}, not at {cmd.gate}",
                       reason="not_on_shift")
    ended_at = passage.at(cmd)
    if ended_at < shift.started_at:
        raise Rejected(f"the shift started at {shift.started_at.isoformat()}, after {ended_at.isoformat()}",
                       reason="ends_before_start")
    hours = round((ended_at - shift.started_at).total_seconds() / 3600, 2)
    return [ShiftEnded(community=shift.community, shift=shift.shift, compound=shift.compound, gate=shift.gate,
                       staff=shift.staff, hours=hours, ended_at=ended_at, ended_by=cmd.actor)]



def _id(value: str | None) -> str:
    if value is None:
        raise ValueError("the created id must be filled (the runtime does: commands.CREATES) before decide")
    return value

