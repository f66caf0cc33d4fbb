"""Public events of the registry service.

Personal data stays home: names, ID-card numbers and phones never appear here; a resident is
its opaque id and, at most, a masked display name (王*伟). Since schema 2 (issue 16) neither does a
household's address (its building and room name the door) nor a resident's birth year (with the
masked name and the building it singles a person out): both stay in the registry's own tables
(``registry.households``, ``registry.residents``), behind its read path. Nor, since
ArrivalRegistered schema 2, an arrival's origin, transport and places visited
(``registry.arrivals``).
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import msgspec

from shared.envelope import Event, event_type

SERVICE = "registry"
Vulnerability = Literal["elderly_alone", "limited_mobility", "chronic_illness", "medical_device"]
CityClass = Literal["A", "B"]
Outcome = Literal["cleared", "home_quarantine", "centralized_quarantine", "returned_home"]
#: What a screening call to a returnee found (电话排查): at home as they should be, reached but
#: not at home, no answer, a number that is not theirs, or they would not answer the questions.
CallOutcome = Literal["reached_at_home", "reached_elsewhere", "no_answer", "wrong_number", "refused"]
#: What a neighbour reported: someone back who did not register, someone not staying at home,
#: people gathering, anything else.
TipOffKind = Literal["unregistered_arrival", "not_staying_home", "gathering", "other"]
#: What following a tip-off up found: it was so, it was not, or it was handed on (police, street).
TipOffOutcome = Literal["confirmed", "unfounded", "referred"]


class Transport(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: Literal["train", "flight", "road", "other"]
    number: str | None = None


class Visit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename={"from_": "from"}):
    place: str
    from_: date
    to: date


@event_type(SERVICE)
class CompoundRegistered(Event, frozen=True, kw_only=True):
    compound: str
    name: str
    buildings: list[str]
    gates: list[str]
    registered_at: datetime
    registered_by: str


@event_type(SERVICE, schema=2)
class HouseholdRegistered(Event, frozen=True, kw_only=True):
    """A household registered in a building (schema 2: without its address, which stays in
    ``registry.households``)."""

    compound: str
    building: str
    household: str
    registered_at: datetime
    registered_by: str


@event_type(SERVICE, schema=2)
class ResidentRegistered(Event, frozen=True, kw_only=True):
    """A resident registered in a household (schema 2: without the birth year, which stays in
    ``registry.residents``)."""

    compound: str
    building: str
    household: str
    resident: str
    #: Masked (王*伟): what the board and a case list show in place of a name.
    display_name: str
    #: What logistics ranks requests by and raises welfare checks for.
    vulnerabilities: list[Vulnerability] = []
    registered_at: datetime
    registered_by: str


@event_type(SERVICE, schema=2)
class ArrivalRegistered(Event, frozen=True, kw_only=True):
    """A resident came back from elsewhere (schema 2: where from, by which train, and the places
    visited stay in ``registry.arrivals``, for tracing; the event keeps what the views count and
    what verification decides on)."""

    arrival: str
    resident: str
    household: str
    compound: str
    building: str
    arrived_on: date
    city_class: CityClass
    risk_area_visited: bool
    #: False for a class-B arrival that visited no risk area: cleared on registration.
    requires_verification: bool
    registered_at: datetime
    registered_by: str


@event_type(SERVICE)
class ArrivalVerified(Event, frozen=True, kw_only=True):
    arrival: str
    resident: str
    household: str
    compound: str
    building: str
    outcome: Outcome
    documents_checked: bool
    note: str | None = None
    verified_at: datetime
    verified_by: str


@event_type(SERVICE)
class ResidentMovedOut(Event, frozen=True, kw_only=True):
    resident: str
    household: str
    compound: str
    building: str
    reason: str | None = None
    moved_out_at: datetime
    moved_out_by: str


# -- identities: who may use Cordon (shared.identity), granted and revoked by the operators -------

#: The community of identity events whose identity acts in no community (operators, city systems,
#: officers of a street or district given none): a reserved path outside every real district.
#: ``cordon`` names the system, not a district of the city, and the registry refuses to register
#: anything under it, so no community's feed, board or staff ever sees these; the city-wide
#: readers (operators, a city system granted ``evt``, the audit log) do, and ``cordon.qry.audit``
#: {community: "cordon"} finds them.
ACCESS_COMMUNITY = "cordon.access.city"
#: The district no community may be registered under.
RESERVED_DISTRICT = ACCESS_COMMUNITY.split(".")[0]


@event_type(SERVICE)
class IdentityGranted(Event, frozen=True, kw_only=True):
    """An identity was issued: its NATS user key and what it may do (``shared.identity``). The
    event's ``community`` is ``acts_in`` when it has one, else :data:`ACCESS_COMMUNITY`."""

    identity: str
    role: str
    scope: str
    #: The community the identity acts in (staff, a gate, an officer given one); None otherwise.
    acts_in: str | None = None
    compound: str | None = None
    grants: list[str] = []
    #: The NATS user public key (U...) its credentials hold; never granted twice.
    public_key: str
    granted_at: datetime
    granted_by: str


@event_type(SERVICE)
class IdentityRevoked(Event, frozen=True, kw_only=True):
    """An identity's key was revoked: NATS refuses its credentials from now on."""

    identity: str
    public_key: str
    reason: str | None = None
    revoked_at: datetime
    revoked_by: str


# -- schema 1: recorded before the address, the birth year and the travel history left the bus;
#    decoded, never recorded now --


def _current(event: Event, current: type[Event]) -> Event:
    """The fields ``current`` still has, taken from an event of an earlier schema."""
    return current(**{f: getattr(event, f) for f in current.__struct_fields__ if hasattr(event, f)})


@event_type(SERVICE, schema=1, name="HouseholdRegistered")
class HouseholdRegisteredV1(Event, frozen=True, kw_only=True):
    """HouseholdRegistered schema 1: it carried the household's full address."""

    compound: str
    building: str
    household: str
    address: str
    registered_at: datetime
    registered_by: str

    def upcast(self) -> HouseholdRegistered:
        return _current(self, HouseholdRegistered)


@event_type(SERVICE, schema=1, name="ResidentRegistered")
class ResidentRegisteredV1(Event, frozen=True, kw_only=True):
    """ResidentRegistered schema 1: it carried the resident's birth year."""

    compound: str
    building: str
    household: str
    resident: str
    display_name: str
    birth_year: int
    vulnerabilities: list[Vulnerability] = []
    registered_at: datetime
    registered_by: str

    def upcast(self) -> ResidentRegistered:
        return _current(self, ResidentRegistered)


@event_type(SERVICE, schema=1, name="ArrivalRegistered")
class ArrivalRegisteredV1(Event, frozen=True, kw_only=True):
    """ArrivalRegistered schema 1: it carried the origin, the transport (a train's number) and the
    places visited."""

    arrival: str
    resident: str
    household: str
    compound: str
    building: str
    origin: str
    arrived_on: date
    transport: Transport
    visited: list[Visit] = []
    city_class: CityClass
    risk_area_visited: bool
    requires_verification: bool
    registered_at: datetime
    registered_by: str

    def upcast(self) -> ArrivalRegistered:
        return _current(self, ArrivalRegistered)
# -- personal data: who read it, and erasure (crypto-shredding: services/registry/keys.py) -------


@event_type(SERVICE)
class PersonalDataViewed(Event, frozen=True, kw_only=True):
    """Someone was shown residents' names and phones (``cordon.qry.registry.contact``): recorded
    before the answer leaves the registry; no record, no answer. Carries who, whose and why, never
    what was shown."""

    #: The actor who read (``staff:li-wei``).
    viewer: str
    #: What was asked for: a resident's id, or a household's.
    subject: str
    subject_kind: Literal["resident", "household"]
    #: The residents whose data was shown (a household's: each of them).
    residents: list[str]
    #: The subject when it is one resident (so the audit log's resident column, and
    #: ``cordon audit show --resident``, find the reads of that resident); null for a household.
    resident: str | None = None
    purpose: str
    viewed_at: datetime


@event_type(SERVICE)
class ResidentErased(Event, frozen=True, kw_only=True):
    """A resident's data key was deleted: their name, ID number and phone are unreadable wherever
    a copy went. Their events stay (opaque id, masked name) so the record and its counts hold."""

    resident: str
    household: str
    compound: str
    building: str
    legal_basis: str
    erased_at: datetime
    erased_by: str


@event_type(SERVICE)
class RetentionApplied(Event, frozen=True, kw_only=True):
    """The registry's retention shredded residents of this community (their data keys deleted, each
    with its own ResidentErased): who moved out before ``before`` and has no open quarantine case
    (``CORDON_RESIDENT_RETENTION_DAYS``). A count, never who: the ResidentErased events name the
    opaque ids, and nothing here re-identifies anyone."""

    #: What was shredded: ``residents`` (the registry's; visitors are the checkpoint's).
    kind: Literal["residents"] = "residents"
    #: The cut-off: residents who moved out before this instant were due.
    before: datetime
    #: How many were shredded by this command.
    count: int
    applied_at: datetime
    applied_by: str


# -- the committee's working day (issue 17): vulnerabilities updated, screening calls, tip-offs ---


@event_type(SERVICE)
class ResidentUpdated(Event, frozen=True, kw_only=True):
    """A resident's vulnerability flags changed (``update_resident``): ``vulnerabilities`` is the
    full new list, which every service's directory takes in place of the old one."""

    resident: str
    household: str
    compound: str
    building: str
    vulnerabilities: list[Vulnerability] = []
    updated_at: datetime
    updated_by: str


@event_type(SERVICE)
class CallRecorded(Event, frozen=True, kw_only=True):
    """A screening call to a returnee was made (电话排查), with what it found. No free text: what
    was said stays with the caller."""

    call: str
    resident: str
    household: str
    compound: str
    building: str
    #: The arrival the call screens (the resident's latest, when the command named none).
    arrival: str
    outcome: CallOutcome
    called_at: datetime
    called_by: str


@event_type(SERVICE)
class TipOffRecorded(Event, frozen=True, kw_only=True):
    """A neighbour's tip-off, recorded for follow-up. Where (compound, building, household) and
    what kind; the words of the tip-off, and who gave it, stay in ``registry.tip_offs``."""

    tip_off: str
    compound: str
    building: str | None = None
    household: str | None = None
    kind: TipOffKind
    recorded_at: datetime
    recorded_by: str


@event_type(SERVICE)
class TipOffFollowedUp(Event, frozen=True, kw_only=True):
    """Staff followed a tip-off up, once: what they found (a note stays in ``registry.tip_offs``)."""

    tip_off: str
    compound: str
    building: str | None = None
    household: str | None = None
    outcome: TipOffOutcome
    followed_up_at: datetime
    followed_up_by: str
# -- arrivals from the city's lists with no resident here yet (issue 17: cordon import arrivals) --


@event_type(SERVICE)
class ArrivalPendingRegistration(Event, frozen=True, kw_only=True):
    """An arrival on the city's list whose ID number is no resident's here (people with no
    household here, 双无): recorded, waiting for the committee to complete the registration at the
    door (``complete_registration``). The name, ID number, phone, address and travel stay in
    ``registry.pending``, sealed with a key of the pending registration's own; the event carries
    the masked name and what verification decides on, as ArrivalRegistered does."""

    #: The arrival's id, reserved: the ArrivalRegistered of the completion carries it.
    arrival: str
    #: Where the list says the person stays, if it says (the compound and building, never the door).
    compound: str | None = None
    building: str | None = None
    #: Masked (王*伟).
    display_name: str
    arrived_on: date
    city_class: CityClass
    risk_area_visited: bool
    registered_at: datetime
    registered_by: str


@event_type(SERVICE)
class RegistrationCompleted(Event, frozen=True, kw_only=True):
    """A pending registration completed at the door: the person is now ``resident`` of
    ``household`` (their ResidentRegistered and ArrivalRegistered are recorded with this event)."""

    arrival: str
    resident: str
    household: str
    completed_at: datetime
    completed_by: str
