"""The registry's aggregates: their states, stream ids and ``evolve(state, event)``.

Pure: no I/O, no clock. The rules that turn a command into events are in :mod:`decide`. One
stream holds one aggregate:

    compound:<community>:<compound>  CompoundRegistered
    household:<household>            HouseholdRegistered
    resident:<resident>              ResidentRegistered, ResidentUpdated, ResidentMovedOut, ResidentErased
    call:<call>                      CallRecorded (one stream per call: calls never contend)
    tip_off:<tip_off>                TipOffRecorded, TipOffFollowedUp
    read:<command id>                PersonalDataViewed (one stream per read: reads never contend)
    retention:<community>            RetentionApplied (what the retention scheduler shredded there)
    arrival:<arrival>                ArrivalRegistered, ArrivalVerified
    pending:<arrival>                ArrivalPendingRegistration, RegistrationCompleted (the arrival's
                                     id, reserved until the registration is completed at the door)
    identity:<name>                  IdentityGranted, IdentityRevoked (granted again after a revocation)
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Iterable, Union, assert_never

from services.registry.commands import (
    ApplyRetention,
    Command,
    CompleteRegistration,
    EraseResident,
    FollowUpTipOff,
    GrantIdentity,
    MoveOut,
    RecordCall,
    RecordTipOff,
    RegisterArrival,
    RegisterCompound,
    RegisterHousehold,
    RegisterPendingArrival,
    RecordPersonalDataView,
    RegisterResident,
    RevokeIdentity,
    UpdateResident,
    VerifyArrival,
)
from shared.contracts.registry import (
    ArrivalPendingRegistration,
    ArrivalRegistered,
    ArrivalRegisteredV1,
    ArrivalVerified,
    CallRecorded,
    CompoundRegistered,
    HouseholdRegistered,
    HouseholdRegisteredV1,
    IdentityGranted,
    IdentityRevoked,
    PersonalDataViewed,
    RegistrationCompleted,
    ResidentErased,
    ResidentMovedOut,
    ResidentRegistered,
    ResidentRegisteredV1,
    RetentionApplied,
    ResidentUpdated,
    TipOffFollowedUp,
    TipOffRecorded,
)

RegistryEvent = Union[
    CompoundRegistered, HouseholdRegistered, ResidentRegistered, ResidentMovedOut, ArrivalRegistered, ArrivalVerified,
    IdentityGranted, IdentityRevoked, PersonalDataViewed, ResidentErased, RetentionApplied,
    ResidentUpdated, CallRecorded, TipOffRecorded, TipOffFollowedUp,
    ArrivalPendingRegistration, RegistrationCompleted,
]
#: Events of an earlier schema still in the streams: read as their current selves (``upcast``).
OldRegistryEvent = Union[HouseholdRegisteredV1, ResidentRegisteredV1, ArrivalRegisteredV1]


# -- states --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Compound:
    community: str
    compound: str
    name: str
    buildings: tuple[str, ...]
    gates: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Household:
    community: str
    compound: str
    building: str
    household: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Resident:
    community: str
    compound: str
    building: str
    household: str
    resident: str
    vulnerabilities: tuple[str, ...] = ()
    moved_out: bool = False
    #: When they moved out (ResidentMovedOut): the retention period runs from it.
    moved_out_at: datetime | None = None
    #: Their data key deleted (erase_resident): nothing personal of them can be read any more.
    erased: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Arrival:
    community: str
    arrival: str
    resident: str
    household: str
    compound: str
    building: str
    city_class: str
    risk_area_visited: bool
    requires_verification: bool
    #: The verification outcome; None while pending and for arrivals cleared on registration.
    outcome: str | None = None

    @property
    def pending(self) -> bool:
        return self.requires_verification and self.outcome is None

    @property
    def false_a(self) -> bool:
        """Class A only because the train passed through an outbreak area without stopping."""
        return self.city_class == "A" and not self.risk_area_visited


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """An identity's current grant (the last IdentityGranted of its name) and every key the name
    ever held: a key is never granted again, so a revoked one stays revoked."""

    community: str
    identity: str
    role: str
    scope: str
    acts_in: str | None
    compound: str | None
    grants: tuple[str, ...]
    public_key: str
    revoked: bool = False
    keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Read:
    """One recorded read of personal data (a stream of its own)."""

    community: str
    viewer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    """A community's record of retention runs: how many residents were shredded in all."""

    community: str
    shredded: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """One screening call (a stream of its own)."""

    community: str
    call: str
    resident: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TipOff:
    community: str
    tip_off: str
    compound: str
    building: str | None
    household: str | None
    #: What the follow-up found; None while the tip-off is open.
    outcome: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    """An arrival from the city's list waiting for its registration to be completed at the door."""

    community: str
    arrival: str
    compound: str | None
    building: str | None
    display_name: str
    arrived_on: date
    city_class: str
    risk_area_visited: bool
    #: The resident it became (RegistrationCompleted); None while pending.
    resident: str | None = None

    @property
    def completed(self) -> bool:
        return self.resident is not None


State = Union[Compound, Household, Resident, Arrival, Grant, Read, Retention, Call, TipOff, Pending]


def compound_stream(community: str, compound: str) -> str:
    return f"compound:{community}:{compound}"


def household_stream(household: str) -> str:
    return f"household:{household}"


def resident_stream(resident: str) -> str:
    return f"resident:{resident}"


def arrival_stream(arrival: str) -> str:
    return f"arrival:{arrival}"


def pending_stream(arrival: str) -> str:
    return f"pending:{arrival}"


def identity_stream(name: str) -> str:
    return f"identity:{name}"


def read_stream(command_id: str) -> str:
    return f"read:{command_id}"


def retention_stream(community: str) -> str:
    return f"retention:{community}"


def call_stream(call: str) -> str:
    return f"call:{call}"


def tip_off_stream(tip_off: str) -> str:
    return f"tip_off:{tip_off}"


def target_stream(cmd: Command) -> str:
    """The stream a command appends to (its created id is filled in already: see :func:`created_id`)."""
    match cmd:
        case RegisterCompound():
            return compound_stream(cmd.community, cmd.compound)
        case RegisterHousehold():
            return household_stream(created_id(cmd.household, "household"))
        case RegisterResident():
            return resident_stream(created_id(cmd.resident, "resident"))
        case RegisterArrival():
            return arrival_stream(created_id(cmd.arrival, "arrival"))
        case VerifyArrival():
            return arrival_stream(cmd.arrival)
        case RegisterPendingArrival():
            return pending_stream(created_id(cmd.arrival, "arrival"))
        case CompleteRegistration():
            return pending_stream(cmd.arrival)
        case MoveOut() | EraseResident() | UpdateResident():
            return resident_stream(cmd.resident)
        case RecordCall():
            return call_stream(created_id(cmd.call, "call"))
        case RecordTipOff():
            return tip_off_stream(created_id(cmd.tip_off, "tip_off"))
        case FollowUpTipOff():
            return tip_off_stream(cmd.tip_off)
        case RecordPersonalDataView():
            return read_stream(cmd.command_id)
        case ApplyRetention():
            return retention_stream(cmd.community)
        case GrantIdentity() | RevokeIdentity():
            return identity_stream(cmd.identity)
        case _:
            assert_never(cmd)


def created_id(value: str | None, field: str) -> str:
    """The id a creating command carries once the runtime has completed it (``commands.CREATES``);
    a command built in code and never completed is a programming error, not a refusal."""
    if value is None:
        raise ValueError(f"{field} must be filled (the runtime does, from commands.CREATES) before decide")
    return value


# -- evolve --------------------------------------------------------------------------------


def evolve(state: State | None, event: RegistryEvent | OldRegistryEvent) -> State:
    """Apply one event of a stream to its aggregate (None before the first event)."""
    match event:
        case CompoundRegistered():
            return Compound(
                community=event.community, compound=event.compound, name=event.name,
                buildings=tuple(event.buildings), gates=tuple(event.gates),
            )
        case HouseholdRegistered():
            return Household(
                community=event.community, compound=event.compound, building=event.building,
                household=event.household,
            )
        case ResidentRegistered():
            return Resident(
                community=event.community, compound=event.compound, building=event.building,
                household=event.household, resident=event.resident,
                vulnerabilities=tuple(event.vulnerabilities),
            )
        case ResidentMovedOut():
            return replace(_expect(state, Resident, event), moved_out=True, moved_out_at=event.moved_out_at)
        case ArrivalRegistered():
            return Arrival(
                community=event.community, arrival=event.arrival, resident=event.resident,
                household=event.household, compound=event.compound, building=event.building,
                city_class=event.city_class, risk_area_visited=event.risk_area_visited,
                requires_verification=event.requires_verification,
            )
        case ArrivalVerified():
            return replace(_expect(state, Arrival, event), outcome=event.outcome)
        case IdentityGranted():
            before = state.keys if isinstance(state, Grant) else ()
            return Grant(
                community=event.community, identity=event.identity, role=event.role, scope=event.scope,
                acts_in=event.acts_in, compound=event.compound, grants=tuple(event.grants),
                public_key=event.public_key, keys=(*before, event.public_key),
            )
        case IdentityRevoked():
            return replace(_expect(state, Grant, event), revoked=True)
        case HouseholdRegisteredV1() | ResidentRegisteredV1() | ArrivalRegisteredV1():
            return evolve(state, event.upcast())
        case ResidentErased():
            return replace(_expect(state, Resident, event), erased=True)
        case PersonalDataViewed():
            return Read(community=event.community, viewer=event.viewer)
        case ResidentUpdated():
            return replace(_expect(state, Resident, event), vulnerabilities=tuple(event.vulnerabilities))
        case CallRecorded():
            return Call(community=event.community, call=event.call, resident=event.resident)
        case TipOffRecorded():
            return TipOff(community=event.community, tip_off=event.tip_off, compound=event.compound,
                          building=event.building, household=event.household)
        case TipOffFollowedUp():
            return replace(_expect(state, TipOff, event), outcome=event.outcome)
        case RetentionApplied():
            shredded = state.shredded if isinstance(state, Retention) else 0
            return Retention(community=event.community, shredded=shredded + event.count)
        case ArrivalPendingRegistration():
            return Pending(
                community=event.community, arrival=event.arrival, compound=event.compound,
                building=event.building, display_name=event.display_name, arrived_on=event.arrived_on,
                city_class=event.city_class,
                risk_area_visited=event.risk_area_visited,
            )
        case RegistrationCompleted():
            return replace(_expect(state, Pending, event), resident=event.resident)
        case _:
            assert_never(event)


def replay(events: Iterable[RegistryEvent | OldRegistryEvent], state: State | None = None) -> State | None:
    """Fold a stream's events into its aggregate."""
    for event in events:
        state = evolve(state, event)
    return state


def _expect(state: State | None, cls: type, event: RegistryEvent):
    if not isinstance(state, cls):
        raise TypeError(f"{type(event).__name__} applied to {type(state).__name__}, expected {cls.__name__}")
    return state
