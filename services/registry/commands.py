"""The registry's commands as they arrive on ``cordon.cmd.registry.<command>``: wire types,
strict decoding and validation.

:func:`decode` decodes strictly (``"1"`` is not an int); :func:`validate` checks the rules a
decoder cannot. Every failure is an :class:`~shared.errors.Invalid` naming the field, or
:class:`~shared.errors.UnknownCommand`. Between the two, the runtime completes the command
(``shared.wire.complete``: the receive time and the id it creates, :data:`CREATES`), so
:func:`validate` checks dates against the receive time.
"""
from __future__ import annotations

import base64
import binascii
import re
from datetime import date, datetime
from typing import Literal, Union, assert_never, get_args

from shared.contracts.registry import (
    RESERVED_DISTRICT,
    CallOutcome,
    CityClass,
    Outcome,
    TipOffKind,
    TipOffOutcome,
    Transport,
    Visit,
    Vulnerability,
)
from shared.identity import Identity
from shared import wire
from shared.errors import Invalid
from services.registry.config import Config
from shared.idcard import check_id_number
from shared.subjects import check_community, check_slug
from shared.wire import MAX_NOTE, BaseCommand

MAX_VISITS = 100
MIN_BIRTH_YEAR = 1890
MAX_BIRTH_YEAR = 2100
#: Most residents one apply_retention shreds (one transaction, one key-database round trip each).
MAX_RETENTION = 500


class RegisterCompound(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    community: str
    compound: str
    name: str
    buildings: list[str]
    gates: list[str]


class RegisterHousehold(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    community: str
    compound: str
    building: str
    address: str
    household: str | None = None


class RegisterResident(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    household: str
    name: str
    id_number: str
    phone: str | None = None
    birth_year: int
    vulnerabilities: list[Vulnerability] = []
    resident: str | None = None


class RegisterArrival(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    resident: str
    origin: str
    arrived_on: date
    transport: Transport
    visited: list[Visit]
    city_class: CityClass
    risk_area_visited: bool
    arrival: str | None = None


class RegisterPendingArrival(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An arrival from the city's list, known by ID number (``cordon import arrivals``): registered
    for the resident who holds that ID number here, else recorded as a pending registration that
    the committee completes at the door (``complete_registration``): people with no household here
    (双无) are recordable, not refused."""

    community: str
    compound: str | None = None
    building: str | None = None
    #: Where the list says the person stays (free text: sealed, never on the bus).
    address: str | None = None
    name: str
    id_number: str
    phone: str | None = None
    origin: str
    arrived_on: date
    transport: Transport
    visited: list[Visit] = []
    city_class: CityClass
    risk_area_visited: bool
    arrival: str | None = None


class CompleteRegistration(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Complete a pending registration at the door: the person becomes a resident of ``household``
    (registered already: ``register_household`` first for a new one) and their arrival is
    registered. The name, ID number and phone come from the list; ``phone`` here replaces it."""

    arrival: str
    household: str
    #: Default: from the ID card number (characters 7-10); required for another document.
    birth_year: int | None = None
    phone: str | None = None
    vulnerabilities: list[Vulnerability] = []
    resident: str | None = None


class VerifyArrival(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    arrival: str
    outcome: Outcome
    documents_checked: bool
    note: str | None = None


class MoveOut(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    resident: str
    reason: str | None = None


class EraseResident(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Delete a resident's data key (crypto-shredding); accepted only from inside Cordon
    (``shared.access.CORDON_ONLY``): an operator acting on a recorded legal basis."""

    resident: str
    legal_basis: str


class ApplyRetention(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Shred the residents listed who are due (moved out before ``before``, no open quarantine case,
    not erased yet; the others are skipped): the registry's retention scheduler sends it, one
    community and at most :data:`MAX_RETENTION` residents at a time; accepted only from inside
    Cordon."""

    community: str
    before: datetime
    residents: list[str]


class RecordPersonalDataView(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The registry's own record of a read of personal data (``registry.contact``), issued by the
    query handler through the runtime; accepted only from inside Cordon."""

    viewer: str
    community: str
    subject: str
    subject_kind: Literal["resident", "household"]
    residents: list[str]
    purpose: str


class GrantIdentity(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Record an identity (``shared.identity``) and the NATS user key its credentials hold;
    accepted only from inside Cordon (``shared.access.CORDON_ONLY``)."""

    identity: str
    role: str
    scope: str = "city"
    community: str | None = None
    compound: str | None = None
    grants: list[str] = []
    public_key: str


class RevokeIdentity(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    identity: str
    reason: str | None = None


class UpdateResident(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A resident's vulnerability flags, the full new list (an empty list clears them)."""

    resident: str
    vulnerabilities: list[Vulnerability]


class RecordCall(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A screening call to a returnee; ``arrival`` defaults to the resident's latest."""

    resident: str
    outcome: CallOutcome
    arrival: str | None = None
    call: str | None = None


class RecordTipOff(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A neighbour's tip-off about a compound, a building or a household; ``note`` (what was
    said) stays in the registry's table, never in the event."""

    community: str
    compound: str
    kind: TipOffKind
    building: str | None = None
    household: str | None = None
    note: str | None = None
    tip_off: str | None = None


class FollowUpTipOff(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tip_off: str
    outcome: TipOffOutcome
    note: str | None = None


Command = Union[RegisterCompound, RegisterHousehold, RegisterResident, RegisterArrival, VerifyArrival, MoveOut,
                GrantIdentity, RevokeIdentity, EraseResident, RecordPersonalDataView, ApplyRetention,
                UpdateResident, RecordCall, RecordTipOff, FollowUpTipOff, RegisterPendingArrival,
                CompleteRegistration]

COMMANDS: dict[str, type] = {
    "register_compound": RegisterCompound,
    "register_household": RegisterHousehold,
    "register_resident": RegisterResident,
    "register_arrival": RegisterArrival,
    "verify_arrival": VerifyArrival,
    "move_out": MoveOut,
    "grant_identity": GrantIdentity,
    "revoke_identity": RevokeIdentity,
    "erase_resident": EraseResident,
    "record_personal_data_view": RecordPersonalDataView,
    "apply_retention": ApplyRetention,
    "update_resident": UpdateResident,
    "record_call": RecordCall,
    "record_tip_off": RecordTipOff,
    "follow_up_tip_off": FollowUpTipOff,
    "register_pending_arrival": RegisterPendingArrival,
    "complete_registration": CompleteRegistration,
}

#: The id field a creating command may leave out; the runtime fills it (``shared.wire.complete``).
CREATES: dict[type, str] = {RegisterHousehold: "household", RegisterResident: "resident", RegisterArrival: "arrival",
                            RecordCall: "call", RecordTipOff: "tip_off",
                            RegisterPendingArrival: "arrival", CompleteRegistration: "resident"}

_CHOICES = {
    "city_class": get_args(CityClass),
    "outcome": get_args(Outcome),
    "kind": ("train", "flight", "road", "other"),
    "vulnerabilities": get_args(Vulnerability),
    "subject_kind": ("resident", "household"),
}
#: A command whose field shares a name with another's (outcome): its own choices.
_CHOICES_OF = {
    "record_call": {"outcome": get_args(CallOutcome)},
    "record_tip_off": {"kind": get_args(TipOffKind)},
    "follow_up_tip_off": {"outcome": get_args(TipOffOutcome)},
}
#: The shortest purpose a read of personal data must give: a reason, not a placeholder.
MIN_PURPOSE = 5


def decode(name: str, payload: bytes) -> Command:
    """Decode ``payload`` strictly as the command ``name`` (no rule checks: :func:`validate`)."""
    return wire.decode("registry", COMMANDS, name, payload, {**_CHOICES, **_CHOICES_OF.get(name, {})})


def parse(name: str, payload: bytes) -> Command:
    """Decode ``payload`` strictly as the command ``name`` and validate it."""
    return validate(decode(name, payload))


# -- validation ----------------------------------------------------------------------------


def validate(cmd: Command, config: Config = Config()) -> Command:
    """Check the rules a decoder cannot; return ``cmd`` or raise :class:`Invalid`. Runs on the
    completed command (``occurred_at`` set), once, before the batch."""
    wire.check_common(cmd)
    match cmd:
        case RegisterCompound():
            _real_community(cmd.community)
            check_slug(cmd.compound, "compound")
            wire.text(cmd.name, "name")
            wire.ids(cmd.buildings, "buildings")
            wire.ids(cmd.gates, "gates")
        case RegisterHousehold():
            _real_community(cmd.community)
            check_slug(cmd.compound, "compound")
            check_slug(cmd.building, "building")
            wire.text(cmd.address, "address")
            wire.optional_slug(cmd.household, "household")
        case RegisterResident():
            check_slug(cmd.household, "household")
            wire.optional_slug(cmd.resident, "resident")
            wire.text(cmd.name, "name")
            check_id_number(cmd.id_number)
            wire.phone(cmd.phone)
            check_birth_year(cmd.birth_year, cmd.occurred_at)
            wire.no_duplicates(cmd.vulnerabilities, "vulnerabilities")
        case RegisterArrival():
            _arrival(cmd, config)
        case VerifyArrival():
            check_slug(cmd.arrival, "arrival")
            published_text(cmd.note, "note")
        case MoveOut():
            check_slug(cmd.resident, "resident")
            published_text(cmd.reason, "reason")
        case GrantIdentity():
            granted(cmd)
            check_user_key(cmd.public_key)
        case RevokeIdentity():
            check_slug(cmd.identity, "identity")
            if cmd.reason is not None:
                wire.text(cmd.reason, "reason", MAX_NOTE)
        case EraseResident():
            check_slug(cmd.resident, "resident")
            wire.text(cmd.legal_basis, "legal_basis", MAX_NOTE)
        case ApplyRetention():
            check_community(cmd.community)
            wire.ids(cmd.residents, "residents", MAX_RETENTION)
        case RecordPersonalDataView():
            check_purpose(cmd.purpose)
            check_community(cmd.community)
            for resident in cmd.residents:
                check_slug(resident, "residents")
        case UpdateResident():
            check_slug(cmd.resident, "resident")
            wire.no_duplicates(cmd.vulnerabilities, "vulnerabilities")
        case RecordCall():
            check_slug(cmd.resident, "resident")
            wire.optional_slug(cmd.arrival, "arrival")
            wire.optional_slug(cmd.call, "call")
        case RecordTipOff():
            _real_community(cmd.community)
            check_slug(cmd.compound, "compound")
            wire.optional_slug(cmd.building, "building")
            wire.optional_slug(cmd.household, "household")
            wire.optional_slug(cmd.tip_off, "tip_off")
            published_text(cmd.note, "note")
        case FollowUpTipOff():
            check_slug(cmd.tip_off, "tip_off")
            published_text(cmd.note, "note")
        case RegisterPendingArrival():
            _pending_arrival(cmd, config)
        case CompleteRegistration():
            check_slug(cmd.arrival, "arrival")
            check_slug(cmd.household, "household")
            wire.optional_slug(cmd.resident, "resident")
            wire.phone(cmd.phone)
            if cmd.birth_year is not None:
                check_birth_year(cmd.birth_year, cmd.occurred_at)
            wire.no_duplicates(cmd.vulnerabilities, "vulnerabilities")
        case _:
            assert_never(cmd)
    return cmd


def check_purpose(purpose: str, field: str = "purpose") -> str:
    """Why personal data is read: required, a sentence rather than a placeholder."""
    wire.text(purpose, field, MAX_NOTE)
    if len(purpose.strip()) < MIN_PURPOSE:
        raise Invalid(f"{field} must say why (at least {MIN_PURPOSE} characters): it is recorded with the read",
                      field=field)
    return purpose.strip()


def _arrival(cmd: RegisterArrival, config: Config) -> None:
    check_slug(cmd.resident, "resident")
    _travel(cmd, config)


def _travel(cmd: RegisterArrival | RegisterPendingArrival, config: Config) -> None:
    wire.optional_slug(cmd.arrival, "arrival")
    wire.text(cmd.origin, "origin")
    if cmd.transport.number is not None:
        wire.text(cmd.transport.number, "transport.number", 50)
    # The city's day, not the day in the offset the caller wrote (or UTC, when the runtime filled
    # occurred_at): before 08:00 in Shanghai it is still yesterday in UTC.
    if cmd.occurred_at is not None and cmd.arrived_on > config.day(cmd.occurred_at):
        raise Invalid(
            f"arrived_on {cmd.arrived_on} is after the day of the command ({config.day(cmd.occurred_at)})",
            field="arrived_on",
        )
    if len(cmd.visited) > MAX_VISITS:
        raise Invalid(f"visited lists {len(cmd.visited)} places; at most {MAX_VISITS}", field="visited")
    for i, visit in enumerate(cmd.visited):
        wire.text(visit.place, f"visited[{i}].place")
        if visit.from_ > visit.to:
            raise Invalid(
                f"visited[{i}]: from {visit.from_} is after to {visit.to}", field=f"visited[{i}].from"
            )


def _pending_arrival(cmd: RegisterPendingArrival, config: Config) -> None:
    _real_community(cmd.community)
    if cmd.compound is not None:
        check_slug(cmd.compound, "compound")
    if cmd.building is not None:
        check_slug(cmd.building, "building")
        if cmd.compound is None:
            raise Invalid("building needs its compound", field="compound")
    if cmd.address is not None:
        wire.text(cmd.address, "address")
    wire.text(cmd.name, "name")
    check_id_number(cmd.id_number)
    wire.phone(cmd.phone)
    _travel(cmd, config)


def birth_year_of(id_number: str) -> int | None:
    """The birth year an 18-character ID card number holds (characters 7-10); None for another document."""
    return int(id_number[6:10]) if len(id_number) == 18 and id_number[:17].isdigit() else None


def _real_community(community: str) -> None:
    check_community(community)
    if community.split(".")[0] == RESERVED_DISTRICT:
        raise Invalid(f"district {RESERVED_DISTRICT!r} is reserved for Cordon's own records (identities); "
                      "use the city's district", field="community")


def granted(cmd: GrantIdentity) -> Identity:
    """The identity a grant describes, checked as :class:`shared.identity.Identity` checks it
    (a staff's scope is a community, a gate has a compound, an officer's community is under its
    scope, grants are cmd:/qry:/evt), never under the reserved district."""
    try:
        identity = Identity(name=cmd.identity, role=cmd.role, scope=cmd.scope, community=cmd.community,
                            compound=cmd.compound, grants=tuple(cmd.grants))
    except Invalid as err:
        field = "identity" if err.field == "name" else err.field
        raise Invalid(err.message.replace("name ", "identity ", 1) if field == "identity" else err.message,
                      field=field) from None
    if identity.compound is not None:
        check_slug(identity.compound, "compound")
    if identity.scope.split(".")[0] == RESERVED_DISTRICT:
        raise Invalid(f"district {RESERVED_DISTRICT!r} is reserved for Cordon's own records", field="scope")
    wire.no_duplicates(cmd.grants, "grants")
    return identity


#: A run of digits a phone or an ID-card number makes (7 or more, spaces and dashes between); a
#: date (2020-02-17) is not one.
_NUMBER_LIKE = re.compile(r"\d[\d \-]{5,}\d")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def published_text(value: str | None, field: str) -> None:
    """Free text that goes into an event (on the bus, to every service, kept for ever): bounded,
    and refused when it looks like it holds a phone or ID-card number (issue 16)."""
    if value is None:
        return
    wire.text(value, field, MAX_NOTE)
    if _NUMBER_LIKE.search(_DATE.sub(" ", value)):
        raise Invalid(f"{field} looks like it holds a phone or ID-card number; it is published in an event: "
                      "personal data stays in the registry's tables", field=field)


_USER_KEY = re.compile(r"^U[A-Z2-7]{55}$")


def check_user_key(key: str, field: str = "public_key") -> str:
    """A NATS user public key as ``nkeys`` encodes it: ``U`` + base32 of (prefix, 32-byte ed25519
    key, CRC-16/XMODEM little-endian); a typo fails the checksum."""
    if not _USER_KEY.match(key):
        raise Invalid(f"{field} must be a NATS user public key: 56 characters, U then A-Z and 2-7", field=field)
    raw = base64.b32decode(key + "=" * (-len(key) % 8))
    body, crc = raw[:-2], int.from_bytes(raw[-2:], "little")
    if binascii.crc_hqx(body, 0) != crc:
        raise Invalid(f"{field} {key[:8]}... fails its checksum: copy the key again", field=field)
    return key


def check_birth_year(value: int, occurred_at: datetime | None) -> None:
    """Between MIN_BIRTH_YEAR and the command's year (complete_registration checks one read from the ID card too)."""
    latest = occurred_at.year if occurred_at is not None else MAX_BIRTH_YEAR
    if not MIN_BIRTH_YEAR <= value <= latest:
        raise Invalid(f"birth_year {value} must be between {MIN_BIRTH_YEAR} and {latest}", field="birth_year")
