"""The registry's rules: ``decide(facts, command) -> events``, pure.

No I/O, no clock, no id generation: time, ids and the actor arrive on the command (the runtime
completes it first), the aggregates it needs on :class:`Facts` (the handler loads them). Every
refusal names its rule: a NotFound or Conflict names the field, a Rejected its reason.
Optimistic concurrency (``expected_version``) is the handler's business; decide never sees versions.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import assert_never

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
    granted,
)
from services.registry.domain import (
    Arrival,
    Call,
    Compound,
    Grant,
    Household,
    RegistryEvent,
    Resident,
    Pending,
    TipOff,
    created_id,
)
from shared.contracts.registry import (
    ACCESS_COMMUNITY,
    ArrivalPendingRegistration,
    ArrivalRegistered,
    ArrivalVerified,
    CallRecorded,
    CompoundRegistered,
    HouseholdRegistered,
    IdentityGranted,
    IdentityRevoked,
    PersonalDataViewed,
    RegistrationCompleted,
    ResidentErased,
    ResidentMovedOut,
    ResidentRegistered,
    RetentionApplied,
    ResidentUpdated,
    TipOffFollowedUp,
    TipOffRecorded,
)
from shared.errors import Conflict, NotFound, Rejected
from shared.privacy import mask_name


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """What the handler loaded for a command; None where the stream is empty or not needed.

    register_household: compound, household · register_resident: household, resident ·
    register_arrival: resident, arrival · verify_arrival: arrival, resident (of the arrival) ·
    move_out, erase_resident, update_resident: resident · record_call: resident, arrival (the one
    named, else the resident's latest), call · record_tip_off: compound, household (when named),
    tip_off · follow_up_tip_off: tip_off · record_personal_data_view: nothing · register_compound: compound · grant_identity: grant (of the name),
    key_holder · revoke_identity: grant · apply_retention: residents, open_cases ·
    register_pending_arrival: compound (when named), resident (who holds the ID number here), pending
    and arrival (of the id), already_pending · complete_registration: pending, household, resident
    (of the id it creates).
    """

    compound: Compound | None = None
    household: Household | None = None
    resident: Resident | None = None
    arrival: Arrival | None = None
    grant: Grant | None = None
    #: The identity that holds (or held) the key a grant names, if any other grant has it.
    key_holder: str | None = None
    #: apply_retention: each resident listed -> its state (None: never registered).
    residents: dict[str, Resident | None] | None = None
    #: apply_retention: those of them with a quarantine case not closed (the registry's copy).
    open_cases: frozenset[str] = frozenset()
    call: Call | None = None
    tip_off: TipOff | None = None
    pending: Pending | None = None
    #: register_pending_arrival: a registration of this ID number for the same day waits already.
    already_pending: bool = False
    #: register_pending_arrival: the ID number is a resident's of another community (not loaded:
    #: the caller may not read it).
    registered_elsewhere: bool = False


def decide(facts: Facts, cmd: Command) -> list[RegistryEvent]:
    """The events a command produces, or a NotFound / Conflict / Rejected error."""
    match cmd:
        case RegisterCompound():
            return _register_compound(facts, cmd)
        case RegisterHousehold():
            return _register_household(facts, cmd)
        case RegisterResident():
            return _register_resident(facts, cmd)
        case RegisterArrival():
            return _register_arrival(facts, cmd)
        case VerifyArrival():
            return _verify_arrival(facts, cmd)
        case MoveOut():
            return _move_out(facts, cmd)
        case GrantIdentity():
            return _grant_identity(facts, cmd)
        case RevokeIdentity():
            return _revoke_identity(facts, cmd)
        case EraseResident():
            return _erase_resident(facts, cmd)
        case ApplyRetention():
            return _apply_retention(facts, cmd)
        case UpdateResident():
            return _update_resident(facts, cmd)
        case RecordCall():
            return _record_call(facts, cmd)
        case RecordTipOff():
            return _record_tip_off(facts, cmd)
        case FollowUpTipOff():
            return _follow_up_tip_off(facts, cmd)
        case RegisterPendingArrival():
            return _register_pending_arrival(facts, cmd)
        case CompleteRegistration():
            return _complete_registration(facts, cmd)
        case RecordPersonalDataView():
            return [PersonalDataViewed(
                community=cmd.community, viewer=cmd.viewer, subject=cmd.subject, subject_kind=cmd.subject_kind,
                residents=list(cmd.residents), resident=cmd.subject if cmd.subject_kind == "resident" else None,
                purpose=cmd.purpose.strip(), viewed_at=_at(cmd),
            )]
        case _:
            assert_never(cmd)


def _register_compound(facts: Facts, cmd: RegisterCompound) -> list[RegistryEvent]:
    if facts.compound is not None:
        raise Conflict(f"compound {cmd.compound} is already registered in {cmd.community}", field="compound")
    return [CompoundRegistered(
        community=cmd.community, compound=cmd.compound, name=cmd.name.strip(),
        buildings=list(cmd.buildings), gates=list(cmd.gates),
        registered_at=_at(cmd), registered_by=cmd.actor,
    )]


def _register_household(facts: Facts, cmd: RegisterHousehold) -> list[RegistryEvent]:
    compound = facts.compound
    if compound is None or (compound.community, compound.compound) != (cmd.community, cmd.compound):
        raise NotFound(f"compound {cmd.compound} is not registered in {cmd.community}", field="compound")
    if cmd.building not in compound.buildings:
        raise NotFound(
            f"building {cmd.building} is not in compound {cmd.compound} "
            f"(its buildings: {', '.join(compound.buildings)})",
            field="building",
        )
    household = created_id(cmd.household, "household")
    if facts.household is not None:
        raise Conflict(f"household id {household} is taken", field="household")
    return [HouseholdRegistered(
        community=cmd.community, compound=cmd.compound, building=cmd.building, household=household,
        registered_at=_at(cmd), registered_by=cmd.actor,
    )]


def _register_resident(facts: Facts, cmd: RegisterResident) -> list[RegistryEvent]:
    household = facts.household
    if household is None:
        raise NotFound(f"household {cmd.household} is not registered", field="household")
    resident = created_id(cmd.resident, "resident")
    if facts.resident is not None:
        raise Conflict(f"resident id {resident} is taken", field="resident")
    return [ResidentRegistered(
        community=household.community, compound=household.compound, building=household.building,
        household=household.household, resident=resident, display_name=mask_name(cmd.name),
        vulnerabilities=list(cmd.vulnerabilities),
        registered_at=_at(cmd), registered_by=cmd.actor,
    )]


def _register_arrival(facts: Facts, cmd: RegisterArrival) -> list[RegistryEvent]:
    resident = _resident(facts, cmd.resident)
    if resident.moved_out:
        raise Rejected(
            f"resident {cmd.resident} has moved out; register them again in their new household first",
            reason="moved_out",
        )
    arrival = created_id(cmd.arrival, "arrival")
    if facts.arrival is not None:
        raise Conflict(f"arrival id {arrival} is taken", field="arrival")
    # Class B with no risk area is cleared on registration; class A, or B via a risk area, waits.
    requires_verification = cmd.city_class == "A" or cmd.risk_area_visited
    return [ArrivalRegistered(
        community=resident.community, arrival=arrival, resident=resident.resident,
        household=resident.household, compound=resident.compound, building=resident.building,
        arrived_on=cmd.arrived_on, city_class=cmd.city_class, risk_area_visited=cmd.risk_area_visited,
        requires_verification=requires_verification, registered_at=_at(cmd), registered_by=cmd.actor,
    )]


def _register_pending_arrival(facts: Facts, cmd: RegisterPendingArrival) -> list[RegistryEvent]:
    """The resident who holds the ID number gets the arrival; anyone else waits for the door."""
    arrival = created_id(cmd.arrival, "arrival")
    if facts.pending is not None or facts.arrival is not None:
        raise Conflict(f"arrival id {arrival} is taken", field="arrival")
    if cmd.compound is not None:
        _listed_place(facts.compound, cmd)
    resident = facts.resident
    if facts.registered_elsewhere or (resident is not None and resident.community != cmd.community):
        raise Rejected("this ID number is a resident's of another community; their committee registers the "
                       "arrival", reason="registered_elsewhere")
    if resident is not None:
        return [_arrival_for(resident, arrival, cmd)]
    if facts.already_pending:
        raise Rejected(
            f"a registration of this ID number arriving on {cmd.arrived_on} waits already; complete it at the "
            "door (registry.pending_registrations lists it)", reason="already_pending")
    return [ArrivalPendingRegistration(
        community=cmd.community, arrival=arrival, compound=cmd.compound, building=cmd.building,
        display_name=mask_name(cmd.name), arrived_on=cmd.arrived_on, city_class=cmd.city_class,
        risk_area_visited=cmd.risk_area_visited, registered_at=_at(cmd), registered_by=cmd.actor,
    )]


def _listed_place(compound: Compound | None, cmd: RegisterPendingArrival) -> None:
    if compound is None or compound.community != cmd.community:
        raise NotFound(f"compound {cmd.compound} is not registered in {cmd.community}; leave it out or register "
                       "it first", field="compound")
    if cmd.building is not None and cmd.building not in compound.buildings:
        raise NotFound(f"building {cmd.building} is not in compound {cmd.compound} (its buildings: "
                       f"{', '.join(compound.buildings)})", field="building")


def _arrival_for(resident: Resident, arrival: str, cmd: RegisterPendingArrival) -> ArrivalRegistered:
    """The arrival of a listed person who is a resident here, as register_arrival records it."""
    if resident.moved_out:
        raise Rejected(f"resident {resident.resident} (this ID number) has moved out; register them again in "
                       "their new household first", reason="moved_out")
    return ArrivalRegistered(
        community=resident.community, arrival=arrival, resident=resident.resident,
        household=resident.household, compound=resident.compound, building=resident.building,
        arrived_on=cmd.arrived_on, city_class=cmd.city_class, risk_area_visited=cmd.risk_area_visited,
        requires_verification=cmd.city_class == "A" or cmd.risk_area_visited,
        registered_at=_at(cmd), registered_by=cmd.actor,
    )


def _complete_registration(facts: Facts, cmd: CompleteRegistration) -> list[RegistryEvent]:
    """ResidentRegistered, ArrivalRegistered and RegistrationCompleted, in that order (the handler
    appends each to its own stream)."""
    pending, household = facts.pending, facts.household
    if pending is None:
        raise NotFound(f"no pending registration of arrival {cmd.arrival}", field="arrival")
    if pending.completed:
        raise Rejected(f"the registration of arrival {cmd.arrival} was completed already (resident "
                       f"{pending.resident})", reason="already_completed")
    if household is None or household.community != pending.community:
        raise NotFound(f"household {cmd.household} is not registered in {pending.community}; register_household "
                       "first for a new one", field="household")
    resident = created_id(cmd.resident, "resident")
    if facts.resident is not None:
        raise Conflict(f"resident id {resident} is taken", field="resident")
    at = _at(cmd)
    return [
        ResidentRegistered(
            community=household.community, compound=household.compound, building=household.building,
            household=household.household, resident=resident, display_name=pending.display_name,
            vulnerabilities=list(cmd.vulnerabilities), registered_at=at, registered_by=cmd.actor),
        ArrivalRegistered(
            community=household.community, arrival=pending.arrival, resident=resident,
            household=household.household, compound=household.compound, building=household.building,
            arrived_on=pending.arrived_on, city_class=pending.city_class,
            risk_area_visited=pending.risk_area_visited,
            requires_verification=pending.city_class == "A" or pending.risk_area_visited,
            registered_at=at, registered_by=cmd.actor),
        RegistrationCompleted(community=pending.community, arrival=pending.arrival, resident=resident,
                              household=household.household, completed_at=at, completed_by=cmd.actor),
    ]


def _verify_arrival(facts: Facts, cmd: VerifyArrival) -> list[RegistryEvent]:
    arrival = facts.arrival
    if arrival is None:
        raise NotFound(f"arrival {cmd.arrival} is not registered", field="arrival")
    if arrival.outcome is not None:
        raise Rejected(f"arrival {cmd.arrival} was already verified: {arrival.outcome}", reason="already_verified")
    if not arrival.requires_verification:
        raise Rejected(
            f"arrival {cmd.arrival} was cleared on registration (class B, no risk area); nothing to verify",
            reason="not_pending",
        )
    if cmd.outcome == "cleared" and not cmd.documents_checked:
        raise Rejected(
            "clearing an arrival needs the ID card and the ticket checked (documents_checked true); "
            "the traveller's word is not enough",
            reason="documents_not_checked",
        )
    if arrival.false_a and cmd.documents_checked and cmd.outcome != "cleared":
        raise Rejected(
            f"arrival {cmd.arrival} is a false A: class A but no risk area visited (the train only passed "
            "through the outbreak area); with ID card and ticket checked it must be cleared, not "
            f"{cmd.outcome}",
            reason="false_a_must_be_cleared",
        )
    if cmd.outcome == "home_quarantine":
        resident = _resident(facts, arrival.resident)
        if resident.moved_out:
            raise Rejected(
                f"resident {arrival.resident} has moved out and has no household here for home quarantine; "
                "choose centralized_quarantine",
                reason="no_household_here",
            )
    return [ArrivalVerified(
        community=arrival.community, arrival=arrival.arrival, resident=arrival.resident,
        household=arrival.household, compound=arrival.compound, building=arrival.building,
        outcome=cmd.outcome, documents_checked=cmd.documents_checked,
        note=cmd.note.strip() if cmd.note is not None else None,
        verified_at=_at(cmd), verified_by=cmd.actor,
    )]


def _move_out(facts: Facts, cmd: MoveOut) -> list[RegistryEvent]:
    resident = _resident(facts, cmd.resident)
    if resident.moved_out:
        raise Rejected(f"resident {cmd.resident} has already moved out", reason="moved_out")
    return [ResidentMovedOut(
        community=resident.community, resident=resident.resident, household=resident.household,
        compound=resident.compound, building=resident.building,
        reason=cmd.reason.strip() if cmd.reason is not None else None,
        moved_out_at=_at(cmd), moved_out_by=cmd.actor,
    )]


def _erase_resident(facts: Facts, cmd: EraseResident) -> list[RegistryEvent]:
    resident = _resident(facts, cmd.resident)
    if resident.erased:
        raise Rejected(f"resident {cmd.resident} is erased already", reason="erased")
    return [ResidentErased(
        community=resident.community, resident=resident.resident, household=resident.household,
        compound=resident.compound, building=resident.building, legal_basis=cmd.legal_basis.strip(),
        erased_at=_at(cmd), erased_by=cmd.actor,
    )]


def due_for_retention(resident: Resident | None, before: datetime, open_cases: frozenset[str]) -> bool:
    """Moved out before ``before``, no quarantine case open, not erased yet."""
    return (resident is not None and resident.moved_out and not resident.erased
            and resident.moved_out_at is not None and resident.moved_out_at < before
            and resident.resident not in open_cases)


def _apply_retention(facts: Facts, cmd: ApplyRetention) -> list[RegistryEvent]:
    """A ResidentErased for each resident listed who is due, then one RetentionApplied counting
    them; the others are skipped (the list was read before this transaction: a case opened since,
    an erasure since), so nothing is refused and nothing is shredded twice."""
    at, residents = _at(cmd), facts.residents or {}
    due = [r for r in (residents.get(rid) for rid in cmd.residents)
           if due_for_retention(r, cmd.before, facts.open_cases) and r.community == cmd.community]
    basis = (f"retention: moved out before {cmd.before.date().isoformat()}, every quarantine case closed "
             "(CORDON_RESIDENT_RETENTION_DAYS)")
    events: list[RegistryEvent] = [ResidentErased(
        community=r.community, resident=r.resident, household=r.household, compound=r.compound,
        building=r.building, legal_basis=basis, erased_at=at, erased_by=cmd.actor) for r in due]
    if events:
        events.append(RetentionApplied(community=cmd.community, before=cmd.before, count=len(due),
                                       applied_at=at, applied_by=cmd.actor))
    return events


def _grant_identity(facts: Facts, cmd: GrantIdentity) -> list[RegistryEvent]:
    grant, key = facts.grant, cmd.public_key
    if grant is not None and not grant.revoked:
        if grant.public_key == key:
            raise Rejected(f"identity {cmd.identity} is already granted with this key", reason="already_granted")
        raise Rejected(
            f"identity {cmd.identity} is held by another key; revoke it first (revoke_identity) or choose "
            "another name", reason="identity_taken")
    if (grant is not None and key in grant.keys) or facts.key_holder is not None:
        holder = cmd.identity if facts.key_holder is None else facts.key_holder
        raise Rejected(
            f"this key was granted before (to {holder}); a key is never granted twice, so that a revoked "
            "one stays revoked: mint a new key", reason="key_taken")
    identity = granted(cmd)
    return [IdentityGranted(
        community=identity.community or ACCESS_COMMUNITY, identity=identity.name, role=identity.role,
        scope=identity.scope, acts_in=identity.community, compound=identity.compound,
        grants=list(identity.grants), public_key=key, granted_at=_at(cmd), granted_by=cmd.actor,
    )]


def _revoke_identity(facts: Facts, cmd: RevokeIdentity) -> list[RegistryEvent]:
    grant = facts.grant
    if grant is None:
        raise NotFound(f"identity {cmd.identity} was never granted", field="identity")
    if grant.revoked:
        raise Rejected(f"identity {cmd.identity} is already revoked", reason="already_revoked")
    return [IdentityRevoked(
        community=grant.community, identity=grant.identity, public_key=grant.public_key,
        reason=cmd.reason.strip() if cmd.reason is not None else None,
        revoked_at=_at(cmd), revoked_by=cmd.actor,
    )]


def _update_resident(facts: Facts, cmd: UpdateResident) -> list[RegistryEvent]:
    resident = _present(facts, cmd.resident, "update their flags")
    if set(cmd.vulnerabilities) == set(resident.vulnerabilities):
        now = ", ".join(resident.vulnerabilities) or "none"
        raise Rejected(f"resident {cmd.resident}'s vulnerabilities are already exactly these ({now}); "
                       "nothing to update", reason="no_change")
    return [ResidentUpdated(
        community=resident.community, resident=resident.resident, household=resident.household,
        compound=resident.compound, building=resident.building, vulnerabilities=list(cmd.vulnerabilities),
        updated_at=_at(cmd), updated_by=cmd.actor,
    )]


def _record_call(facts: Facts, cmd: RecordCall) -> list[RegistryEvent]:
    resident = _present(facts, cmd.resident, "call them as a returnee here")
    arrival = facts.arrival
    if arrival is None and cmd.arrival is not None:
        raise NotFound(f"arrival {cmd.arrival} is not registered", field="arrival")
    if arrival is None:
        raise Rejected(f"resident {cmd.resident} has no arrival registered: screening calls are made to "
                       "returnees; register the arrival first (register_arrival)", reason="not_a_returnee")
    if arrival.resident != resident.resident:
        raise Rejected(f"arrival {arrival.arrival} is not resident {cmd.resident}'s; name their own arrival "
                       "or leave arrival out (their latest)", reason="arrival_of_another_resident")
    call = created_id(cmd.call, "call")
    if facts.call is not None:
        raise Conflict(f"call id {call} is taken", field="call")
    return [CallRecorded(
        community=resident.community, call=call, resident=resident.resident, household=resident.household,
        compound=resident.compound, building=resident.building, arrival=arrival.arrival, outcome=cmd.outcome,
        called_at=_at(cmd), called_by=cmd.actor,
    )]


def _record_tip_off(facts: Facts, cmd: RecordTipOff) -> list[RegistryEvent]:
    compound = facts.compound
    if compound is None or (compound.community, compound.compound) != (cmd.community, cmd.compound):
        raise NotFound(f"compound {cmd.compound} is not registered in {cmd.community}", field="compound")
    if cmd.building is not None and cmd.building not in compound.buildings:
        raise NotFound(f"building {cmd.building} is not in compound {cmd.compound} "
                       f"(its buildings: {', '.join(compound.buildings)})", field="building")
    building = cmd.building
    if cmd.household is not None:
        household = facts.household
        if household is None or (household.community, household.compound) != (cmd.community, cmd.compound):
            raise NotFound(f"household {cmd.household} is not registered in compound {cmd.compound}",
                           field="household")
        if building is not None and household.building != building:
            raise Rejected(f"household {cmd.household} is in building {household.building}, not {building}; "
                           "name its own building or leave building out", reason="household_elsewhere")
        building = household.building
    tip_off = created_id(cmd.tip_off, "tip_off")
    if facts.tip_off is not None:
        raise Conflict(f"tip_off id {tip_off} is taken", field="tip_off")
    return [TipOffRecorded(
        community=cmd.community, tip_off=tip_off, compound=cmd.compound, building=building,
        household=cmd.household, kind=cmd.kind, recorded_at=_at(cmd), recorded_by=cmd.actor,
    )]


def _follow_up_tip_off(facts: Facts, cmd: FollowUpTipOff) -> list[RegistryEvent]:
    tip_off = facts.tip_off
    if tip_off is None:
        raise NotFound(f"tip-off {cmd.tip_off} is not recorded", field="tip_off")
    if tip_off.outcome is not None:
        raise Rejected(f"tip-off {cmd.tip_off} was followed up already: {tip_off.outcome}; a tip-off is "
                       "followed up once (record a new one if there is news)", reason="already_followed_up")
    return [TipOffFollowedUp(
        community=tip_off.community, tip_off=tip_off.tip_off, compound=tip_off.compound,
        building=tip_off.building, household=tip_off.household, outcome=cmd.outcome,
        followed_up_at=_at(cmd), followed_up_by=cmd.actor,
    )]


def _present(facts: Facts, resident: str, what: str) -> Resident:
    """The resident, registered, not erased and not moved out."""
    found = _resident(facts, resident)
    if found.erased:
        raise Rejected(f"resident {resident} is erased; nothing of them is kept to {what}", reason="erased")
    if found.moved_out:
        raise Rejected(f"resident {resident} has moved out; they no longer live here to {what}",
                       reason="moved_out")
    return found


def _resident(facts: Facts, resident: str) -> Resident:
    if facts.resident is None:
        raise NotFound(f"resident {resident} is not registered", field="resident")
    return facts.resident


def _at(cmd: Command) -> datetime:
    if cmd.occurred_at is None:
        raise ValueError("occurred_at must be filled (the runtime does) before decide")
    return cmd.occurred_at
