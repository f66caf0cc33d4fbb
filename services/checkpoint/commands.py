"""The checkpoint's commands as they arrive on ``cordon.cmd.checkpoint.<command>``: wire types,
strict parsing and validation.

:func:`parse` decodes strictly (``"37.5"`` is not a number) and validates; every failure is an
:class:`~shared.errors.Invalid` naming the field. A pass is named by its id or by its printed
number, which is normalized here (``abcd-efgh-jk`` → ``ABCDEFGHJK``), so the rest of the service
only ever sees canonical keys. The runtime fills the ids a command creates (:data:`CREATES`) and
``occurred_at`` before :func:`validate`.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Union, assert_never, get_args

import msgspec

from services.checkpoint import numbers
from shared import wire
from shared.contracts.checkpoint import ControlLevel, Destination, Direction, ParcelKind, VehiclePurpose
from shared.errors import Invalid
from shared.subjects import check_community, check_slug

#: Most passes one issue_passes may create: its compact reply must stay under NATS's 1 MiB.
MAX_PASSES = 6000
MAX_PER_HOUSEHOLD = 10
#: Residents aboard a vehicle besides its driver.
MAX_PASSENGERS = 8
#: The shortest purpose a read of a visitor's contact may give.
MIN_PURPOSE = 5


class SetGate(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    community: str
    compound: str
    gate: str
    open: bool


class SetControlLevel(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    community: str
    compound: str
    level: ControlLevel


class IssuePasses(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Top every named household up to ``per_household`` active passes. Name the households, or
    set ``all_households`` for every household of the compound (optionally of one ``building``)."""

    community: str
    compound: str
    households: list[str] | None = None
    all_households: bool = False
    building: str | None = None
    per_household: int = 1


class RevokePass(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True,
                 rename={"pass_": "pass"}):
    #: The pass id or its printed number.
    pass_: str
    reason: str


class ReplacePass(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True,
                  rename={"pass_": "pass"}):
    """Revoke a lost or damaged pass and issue its household a new one, in one step."""

    pass_: str
    reason: str = "lost"


class Visitor(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Stays in ``checkpoint.visitors``; events carry the masked name only."""

    name: str
    phone: str
    host_household: str
    purpose: str


class CheckPassage(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True,
                   rename={"pass_": "pass"}):
    """One person at a gate. A resident shows a pass (id or printed number) and/or is named by
    id; a visitor gives name, phone, host household and purpose."""

    community: str
    compound: str
    gate: str
    direction: Direction
    temperature_c: float
    pass_: str | None = None
    resident: str | None = None
    visitor: Visitor | None = None
    #: Created by the command; may be given by the caller.
    passage: str | None = None
    #: On the way out, where the resident is going (a category: no free text on the bus).
    destination: Destination | None = None


class StartShift(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    community: str
    gate: str
    staff: str
    #: Needed only when two compounds of the community have a gate of this name.
    compound: str | None = None
    #: Created by the command; may be given by the caller.
    shift: str | None = None


class EndShift(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    community: str
    gate: str
    staff: str
    compound: str | None = None
    shift: str | None = None


class RecordVisitorContactView(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The checkpoint's own record of a read of a visitor's contact (``checkpoint.visitor_contact``),
    issued by the query handler through the runtime; accepted only from inside Cordon."""

    viewer: str
    community: str
    passage: str
    purpose: str


class ShredVisitorData(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Retention: shred the personal data of every visitor who came before ``before`` (the start
    of the tracing window); the scheduler's, accepted only from inside Cordon."""

    before: datetime


# -- the gate's other work (issue 17) -------------------------------------------------------------


class Driver(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A resident of the compound (``resident``), or an outside driver (``name`` and ``phone``,
    sealed with the plate in ``checkpoint.vehicles``)."""

    resident: str | None = None
    name: str | None = None
    phone: str | None = None


class CheckVehicle(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A vehicle at a gate: its plate (sealed, off the bus), its driver, the residents aboard."""

    community: str
    compound: str
    gate: str
    direction: Direction
    plate: str
    driver: Driver
    purpose: VehiclePurpose
    passengers: list[str] = []
    #: Created by the command; may be given by the caller.
    vehicle: str | None = None


class DropParcel(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A parcel, takeaway or groceries left at the gate's drop point for a household."""

    community: str
    compound: str
    gate: str
    household: str
    kind: ParcelKind
    #: Created by the command; may be given by the caller.
    parcel: str | None = None


class CollectParcel(wire.BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A parcel taken from the drop point: by a resident of its household (``resident``), or by a
    volunteer carrying it to the door (``volunteer``, a staff id)."""

    parcel: str
    resident: str | None = None
    volunteer: str | None = None


Command = Union[SetGate, SetControlLevel, IssuePasses, RevokePass, ReplacePass, CheckPassage,
                StartShift, EndShift, RecordVisitorContactView, ShredVisitorData, CheckVehicle, DropParcel,
                CollectParcel]

COMMANDS: dict[str, type] = {
    "set_gate": SetGate,
    "set_control_level": SetControlLevel,
    "issue_passes": IssuePasses,
    "revoke_pass": RevokePass,
    "replace_pass": ReplacePass,
    "check_passage": CheckPassage,
    "start_shift": StartShift,
    "end_shift": EndShift,
    "record_visitor_contact_view": RecordVisitorContactView,
    "shred_visitor_data": ShredVisitorData,
    "check_vehicle": CheckVehicle,
    "drop_parcel": DropParcel,
    "collect_parcel": CollectParcel,
}

_CHOICES = {"level": get_args(ControlLevel), "direction": get_args(Direction),
            "destination": get_args(Destination), "purpose": get_args(VehiclePurpose), "kind": get_args(ParcelKind)}


#: The id field a creating command may leave out; the runtime fills it.
CREATES: dict[type, str] = {CheckPassage: "passage", StartShift: "shift", CheckVehicle: "vehicle",
                            DropParcel: "parcel"}


def decode(name: str, payload: bytes) -> Command:
    """Decode ``payload`` strictly as the command ``name`` (no rule checks: :func:`validate`)."""
    try:
        return wire.decode("checkpoint", COMMANDS, name, payload, _CHOICES)
    except Invalid as err:
        if err.field == "temperature_c":
            raise Invalid("temperature_c must be a number of °C, not quoted (e.g. 36.6)",
                          field="temperature_c") from None
        raise


def parse(name: str, payload: bytes) -> Command:
    """Decode ``payload`` strictly as the command ``name``, validate and normalize it."""
    return validate(decode(name, payload))


def validate(cmd: Command) -> Command:
    """Check what a decoder cannot; return the command (pass keys normalized) or raise Invalid."""
    wire.check_common(cmd)
    match cmd:
        case SetGate() | SetControlLevel():
            _place(cmd.community, cmd.compound)
            if isinstance(cmd, SetGate):
                check_slug(cmd.gate, "gate")
        case IssuePasses():
            _issue(cmd)
        case RevokePass() | ReplacePass():
            wire.text(cmd.reason, "reason", wire.MAX_TEXT)
            return msgspec.structs.replace(cmd, pass_=pass_key(cmd.pass_))
        case CheckPassage():
            return _passage(cmd)
        case StartShift() | EndShift():
            check_community(cmd.community)
            check_slug(cmd.gate, "gate")
            wire.optional_slug(cmd.compound, "compound")
            wire.optional_slug(cmd.shift, "shift")
            staff(cmd.staff)
        case RecordVisitorContactView():
            check_community(cmd.community)
            check_slug(cmd.passage, "passage")
            check_purpose(cmd.purpose)
        case ShredVisitorData():
            if cmd.before.tzinfo is None:
                raise Invalid("before needs a time zone", field="before")
        case CheckVehicle():
            return _vehicle(cmd)
        case DropParcel():
            _place(cmd.community, cmd.compound)
            check_slug(cmd.gate, "gate")
            check_slug(cmd.household, "household")
            wire.optional_slug(cmd.parcel, "parcel")
        case CollectParcel():
            _collect(cmd)
        case _:
            assert_never(cmd)
    return cmd


def pass_key(value: str, field: str = "pass") -> str:
    """A pass id (as issued: a UUID, lowercase) or a printed number (normalized)."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"{field} must be a pass id or the number printed on the pass", field=field)
    text = value.strip()
    if len(text) == 36 and text.count("-") == 4:
        try:
            return str(uuid.UUID(text))
        except ValueError:
            pass
    number = numbers.normalize(text)
    if number is None:
        raise Invalid(
            f"{field} {value[:40]!r} is neither a pass id nor a pass number: a number has "
            f"{numbers.LENGTH} letters and digits (dashes and spaces are ignored)",
            field=field,
        )
    return number


def check_purpose(purpose: str, field: str = "purpose") -> str:
    """Why a visitor's contact is read: required, a sentence rather than a placeholder (as the
    registry asks of a resident's)."""
    wire.text(purpose, field, wire.MAX_NOTE)
    if len(purpose.strip()) < MIN_PURPOSE:
        raise Invalid(f"{field} must say why (at least {MIN_PURPOSE} characters): it is recorded with the read",
                      field=field)
    return purpose.strip()


def staff(value: str, field: str = "staff") -> None:
    wire.text(value, field, 128)
    if any(c.isspace() for c in value):
        raise Invalid(f"{field} {value!r} must not contain whitespace (e.g. volunteer:zhang-min)", field=field)


def _place(community: str, compound: str) -> None:
    check_community(community)
    check_slug(compound, "compound")


def _issue(cmd: IssuePasses) -> None:
    _place(cmd.community, cmd.compound)
    if not 1 <= cmd.per_household <= MAX_PER_HOUSEHOLD:
        raise Invalid(f"per_household must be 1 to {MAX_PER_HOUSEHOLD}", field="per_household")
    wire.optional_slug(cmd.building, "building")
    if cmd.all_households == (cmd.households is not None):
        raise Invalid("give households [ids] or all_households true (not both)", field="households")
    if cmd.building is not None and not cmd.all_households:
        raise Invalid("building narrows all_households; with a list of households leave it out",
                      field="building")
    if cmd.households is not None:
        limit = MAX_PASSES // cmd.per_household
        wire.ids(cmd.households, "households", limit)


def _passage(cmd: CheckPassage) -> CheckPassage:
    _place(cmd.community, cmd.compound)
    check_slug(cmd.gate, "gate")
    wire.temperature(cmd.temperature_c)
    wire.optional_slug(cmd.passage, "passage")
    wire.optional_slug(cmd.resident, "resident")
    _destination(cmd)
    if cmd.visitor is not None:
        if cmd.pass_ is not None or cmd.resident is not None:
            raise Invalid("a visitor has no pass or resident id: give visitor alone", field="visitor")
        _visitor(cmd.visitor)
        return cmd
    if cmd.pass_ is None and cmd.resident is None:
        raise Invalid("check_passage needs one of: pass, resident, visitor", field="pass")
    if cmd.pass_ is not None:
        return msgspec.structs.replace(cmd, pass_=pass_key(cmd.pass_))
    return cmd


def _destination(cmd: CheckPassage) -> None:
    if cmd.destination is None:
        return
    if cmd.direction != "out":
        raise Invalid("destination is recorded on the way out only", field="destination")
    if cmd.visitor is not None:
        raise Invalid("destination is a resident's: a visitor's whereabouts are not the committee's to record",
                      field="destination")


def _vehicle(cmd: CheckVehicle) -> CheckVehicle:
    _place(cmd.community, cmd.compound)
    check_slug(cmd.gate, "gate")
    wire.optional_slug(cmd.vehicle, "vehicle")
    plate = plate_key(cmd.plate)
    driver = cmd.driver
    if driver.resident is not None:
        if driver.name is not None or driver.phone is not None:
            raise Invalid("a resident driver is named by id alone: leave out name and phone", field="driver")
        check_slug(driver.resident, "driver.resident")
    else:
        wire.text(driver.name, "driver.name", 100)
        wire.text(driver.phone, "driver.phone", 20)
        wire.phone(driver.phone, "driver.phone")
    if cmd.passengers:
        wire.ids(cmd.passengers, "passengers", MAX_PASSENGERS)
        if driver.resident in cmd.passengers:
            raise Invalid(f"{driver.resident} is the driver: list the other residents aboard", field="passengers")
    if cmd.purpose == "resident" and driver.resident is None and not cmd.passengers:
        raise Invalid("purpose resident needs a resident aboard (driver.resident or passengers)", field="purpose")
    return msgspec.structs.replace(cmd, plate=plate)


def plate_key(value: str, field: str = "plate") -> str:
    """A plate as the gate reads it, normalized (``沪a·12345`` → ``沪A12345``): letters and digits,
    the province's character first, spaces, dots and dashes dropped."""
    wire.text(value, field, 20)
    plate = "".join(c for c in value.upper() if c.isalnum())
    if not 5 <= len(plate) <= 10:
        raise Invalid(f"{field} must be a plate of 5 to 10 letters and digits (沪A12345)", field=field)
    return plate


def _collect(cmd: CollectParcel) -> None:
    check_slug(cmd.parcel, "parcel")
    if (cmd.resident is None) == (cmd.volunteer is None):
        raise Invalid("give resident (of the household, at the gate) or volunteer (who carries it to the door), "
                      "not both", field="resident")
    if cmd.resident is not None:
        check_slug(cmd.resident, "resident")
    else:
        staff(cmd.volunteer, "volunteer")


def _visitor(v: Visitor) -> None:
    wire.text(v.name, "visitor.name", 100)
    wire.text(v.phone, "visitor.phone", 20)
    wire.phone(v.phone, "visitor.phone")
    check_slug(v.host_household, "visitor.host_household")
    wire.text(v.purpose, "visitor.purpose", wire.MAX_TEXT)
