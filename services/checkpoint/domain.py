"""The checkpoint's state: the aggregates, their streams and ``evolve(state, event)``, pure and
total. The rules that make the events are in :mod:`services.checkpoint.decide`.

Streams, each small, so nothing contends:

    control:<community>:<compound>  GateOpened, GateClosed, ControlLevelSet (the gates' state)
    passes:<household>              PassIssued, PassRevoked (a household's passes)
    passage:<passage>               PassageAllowed | PassageDenied, then FeverDetected on a fever
    shift:<shift>                   ShiftStarted, ShiftEnded
    read:<command id>               VisitorContactViewed (one stream per read: reads never contend)
    shredding:<community>:<day>     VisitorDataShredded (the retention of a day, per community)
    vehicle:<vehicle>               VehicleAllowed | VehicleDenied (one check of a vehicle)
    parcel:<parcel>                 ParcelDropped, then ParcelCollected

A compound starts ``open`` with every gate open. Gates and buildings are the registry's (the
directory); the checkpoint only opens and closes them.

A pass is known here by its id: its printed number is a credential and lives only in the
``checkpoint.passes`` table (the gate looks numbers up there), never in an event or a state. Streams
recorded before pass numbers left the bus hold schema-1 events with numbers; :func:`evolve` reads
them as their schema-2 selves (``upcast``), so either gives the same state.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Iterable, Union, assert_never

from shared.contracts.checkpoint import (
    ControlLevelSet,
    FeverDetected,
    GateClosed,
    GateOpened,
    PassageAllowed,
    PassageAllowedV1,
    PassageDenied,
    PassageDeniedV1,
    PassIssued,
    PassIssuedV1,
    PassRevoked,
    PassRevokedV1,
    ParcelCollected,
    ParcelDropped,
    ShiftEnded,
    ShiftStarted,
    VehicleAllowed,
    VehicleDenied,
    VisitorContactViewed,
    VisitorDataShredded,
)
from shared.errors import NotFound

CheckpointEvent = Union[GateOpened, GateClosed, ControlLevelSet, PassIssued, PassRevoked, PassageAllowed,
                        PassageDenied, FeverDetected, ShiftStarted, ShiftEnded, VisitorContactViewed,
                        VisitorDataShredded, VehicleAllowed, VehicleDenied, ParcelDropped, ParcelCollected]
#: Events of an earlier schema, found in streams recorded before a change (decoded, never decided).
OldCheckpointEvent = Union[PassIssuedV1, PassRevokedV1, PassageAllowedV1, PassageDeniedV1]


# -- facts owned by others (the registry, through the directory) -------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Compound:
    community: str
    compound: str
    buildings: tuple[str, ...]
    gates: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Household:
    household: str
    community: str
    compound: str
    building: str


# The registry's facts as every decision checks them, with the same errors: decide.py's and
# passage.py's (which decide.py imports, so these sit below both).


def known_compound(compound: Compound | None, community: str, compound_id: str) -> Compound:
    """The compound, checked to be the one the command names (NotFound otherwise)."""
    if compound is None or (compound.community, compound.compound) != (community, compound_id):
        raise NotFound(f"compound {compound_id} is not registered in {community}", field="compound")
    return compound


def known_gate(compound: Compound, gate: str) -> None:
    if gate not in compound.gates:
        raise NotFound(f"gate {gate} is not a gate of compound {compound.compound} "
                       f"(its gates: {', '.join(compound.gates)})", field="gate")


# -- states ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Control:
    community: str
    compound: str
    level: str = "open"
    closed_gates: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Passes:
    community: str
    compound: str
    household: str
    #: the active passes' ids, in issue order (their numbers are in the passes table only)
    active: tuple[str, ...] = ()
    revoked: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Passage:
    passage: str
    allowed: bool
    reason: str | None = None
    fever: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Shift:
    shift: str
    community: str
    compound: str | None
    gate: str
    staff: str
    started_at: datetime
    ended: bool = False
    hours: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Read:
    """A read of a visitor's contact (its stream holds that one event)."""

    community: str
    viewer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Shredding:
    """A day's retention in a community: how many visits' personal data it shredded."""

    community: str
    visitors: int = 0
    vehicles: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Vehicle:
    """One check of a vehicle at a gate."""

    vehicle: str
    community: str
    allowed: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Parcel:
    """A parcel at a gate's drop point, until collected."""

    parcel: str
    community: str
    compound: str
    gate: str
    household: str
    kind: str
    collected: bool = False


State = Union[Control, Passes, Passage, Shift, Read, Shredding, Vehicle, Parcel]


def control_stream(community: str, compound: str) -> str:
    return f"control:{community}:{compound}"


def passes_stream(household: str) -> str:
    return f"passes:{household}"


def passage_stream(passage: str) -> str:
    return f"passage:{passage}"


def shift_stream(shift: str) -> str:
    return f"shift:{shift}"


def read_stream(command_id: str) -> str:
    return f"read:{command_id}"


def shredding_stream(community: str, day: date) -> str:
    return f"shredding:{community}:{day.isoformat()}"


def vehicle_stream(vehicle: str) -> str:
    return f"vehicle:{vehicle}"


def parcel_stream(parcel: str) -> str:
    return f"parcel:{parcel}"


def opened(community: str, compound: str) -> Control:
    """A compound's control state before any event: open, every gate open."""
    return Control(community=community, compound=compound)


# -- evolve ------------------------------------------------------------------------------------


def evolve(state: State | None, event: CheckpointEvent | OldCheckpointEvent) -> State:
    """Apply one event of a stream to its state (None before the first event)."""
    match event:
        case GateOpened():
            c = _control(state, event)
            return replace(c, closed_gates=c.closed_gates - {event.gate})
        case GateClosed():
            c = _control(state, event)
            return replace(c, closed_gates=c.closed_gates | {event.gate})
        case ControlLevelSet():
            return replace(_control(state, event), level=event.level)
        case PassIssued():
            p = state if isinstance(state, Passes) else Passes(
                community=event.community, compound=event.compound, household=event.household)
            return replace(p, active=(*p.active, event.pass_))
        case PassRevoked():
            p = _expect(state, Passes, event)
            return replace(p, active=tuple(k for k in p.active if k != event.pass_),
                           revoked=p.revoked | {event.pass_})
        case PassageAllowed():
            return Passage(passage=event.passage, allowed=True)
        case PassageDenied():
            return Passage(passage=event.passage, allowed=False, reason=event.reason)
        case FeverDetected():
            return replace(_expect(state, Passage, event), fever=True)
        case ShiftStarted():
            return Shift(shift=event.shift, community=event.community, compound=event.compound,
                         gate=event.gate, staff=event.staff, started_at=event.started_at)
        case ShiftEnded():
            return replace(_expect(state, Shift, event), ended=True, hours=event.hours)
        case VisitorContactViewed():
            return Read(community=event.community, viewer=event.viewer)
        case VisitorDataShredded():
            was = state if isinstance(state, Shredding) else Shredding(community=event.community)
            return Shredding(community=event.community, visitors=was.visitors + event.visitors,
                             vehicles=was.vehicles + event.vehicles)
        case VehicleAllowed() | VehicleDenied():
            return Vehicle(vehicle=event.vehicle, community=event.community, allowed=isinstance(event, VehicleAllowed),
                           reason=getattr(event, "reason", None))
        case ParcelDropped():
            return Parcel(parcel=event.parcel, community=event.community, compound=event.compound, gate=event.gate,
                          household=event.household, kind=event.kind)
        case ParcelCollected():
            return replace(_expect(state, Parcel, event), collected=True)
        case PassIssuedV1() | PassRevokedV1() | PassageAllowedV1() | PassageDeniedV1():
            return evolve(state, event.upcast())
        case _:
            assert_never(event)


def replay(events: Iterable[CheckpointEvent | OldCheckpointEvent], state: State | None = None) -> State | None:
    for event in events:
        state = evolve(state, event)
    return state


def _control(state: State | None, event: GateOpened | GateClosed | ControlLevelSet) -> Control:
    if state is None:
        return opened(event.community, event.compound)
    return _expect(state, Control, event)


def _expect(state: State | None, cls: type, event: CheckpointEvent):
    if not isinstance(state, cls):
        raise TypeError(f"{type(event).__name__} applied to {type(state).__name__}, expected {cls.__name__}")
    return state
