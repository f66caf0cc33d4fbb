"""The registry's commands as they arrive on ``cordon.cmd.registry.<command>``: wire types,
strict parsing and validation.

:func:`parse` decodes strictly (``"1"`` is not an int) and validates; every failure is an
:class:`~shared.errors.Invalid` naming the field, or :class:`~shared.errors.UnknownCommand`.
The runtime then calls :func:`complete` to fill the receive time and the ids the command creates.
"""
from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Callable, Union, assert_never, get_args

import msgspec

from shared.contracts.registry import CityClass, Outcome, Transport, Visit, Vulnerability
from shared.errors import Invalid, UnknownCommand
from shared.subjects import check_community, check_slug

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]

MAX_TEXT = 200
MAX_NOTE = 1000
MAX_IDS = 500
MAX_VISITS = 100
MIN_BIRTH_YEAR = 1890
MAX_BIRTH_YEAR = 2100


class BaseCommand(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fields every command carries."""

    command_id: str
    actor: str
    #: Filled by the runtime with the receive time when absent.
    occurred_at: AwareDatetime | None = None
    #: Optimistic concurrency, checked by the handler against the target stream.
    expected_version: int | None = None


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


class VerifyArrival(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    arrival: str
    outcome: Outcome
    documents_checked: bool
    note: str | None = None


class MoveOut(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    resident: str
    reason: str | None = None


Command = Union[RegisterCompound, RegisterHousehold, RegisterResident, RegisterArrival, VerifyArrival, MoveOut]

COMMANDS: dict[str, type] = {
    "register_compound": RegisterCompound,
    "register_household": RegisterHousehold,
    "register_resident": RegisterResident,
    "register_arrival": RegisterArrival,
    "verify_arrival": VerifyArrival,
    "move_out": MoveOut,
}
_NAMES = {cls: name for name, cls in COMMANDS.items()}

#: The id field a creating command may leave out; :func:`complete` fills it.
CREATES: dict[type, str] = {RegisterHousehold: "household", RegisterResident: "resident", RegisterArrival: "arrival"}

_CHOICES = {
    "city_class": get_args(CityClass),
    "outcome": get_args(Outcome),
    "kind": ("train", "flight", "road", "other"),
    "vulnerabilities": get_args(Vulnerability),
}
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_NAMED = re.compile(r"^Object (?P<what>missing required|contains unknown) field `(?P<name>[^`]*)`$")


def parse(name: str, payload: bytes) -> Command:
    """Decode ``payload`` strictly as the command ``name`` and validate it."""
    cls = COMMANDS.get(name)
    if cls is None:
        raise UnknownCommand(f"the registry has no command {name!r}; it has: {', '.join(COMMANDS)}")
    if not payload.strip():
        raise Invalid(f"empty payload: send a JSON object with the fields of {name}")
    try:
        cmd = msgspec.json.decode(payload, type=cls)
    except msgspec.ValidationError as e:
        raise _invalid(name, str(e)) from None
    except msgspec.DecodeError as e:
        raise Invalid(f"the payload of {name} is not valid JSON ({e}); send a JSON object") from None
    return validate(cmd)


def _invalid(command: str, text: str) -> Invalid:
    m = _AT.match(text)
    msg, path = m["msg"], (m["path"] or "").lstrip(".")
    named = _NAMED.match(msg)
    if named:
        field = f"{path}.{named['name']}" if path else named["name"]
        if named["what"] == "missing required":
            return Invalid(f"{field} is required in {command}", field=field)
        return Invalid(f"unknown field {field!r}: {command} does not accept it", field=field)
    if not path:
        kind = msg.rsplit("`", 2)[-2] if msg.count("`") >= 4 else "something else"
        return Invalid(f"the payload of {command} must be a JSON object, got {kind}")
    hint = ""
    if "got `str`" in msg and ("`int" in msg or "`bool" in msg):  # also `int | null`
        hint = " (numbers and booleans must not be quoted)"
    elif msg.startswith("Invalid enum value"):
        choices = _CHOICES.get(re.sub(r"\[\d+\]$", "", path).rsplit(".", 1)[-1])
        hint = f"; expected one of: {', '.join(choices)}" if choices else ""
    elif msg.endswith("encoded date"):
        hint = "; use YYYY-MM-DD"
    elif "datetime" in msg:
        hint = "; use RFC 3339 with a zone, e.g. 2026-11-23T09:30:00+08:00"
    return Invalid(f"{path}: {msg}{hint}", field=path)


def complete(cmd: Command, *, now: datetime, new_id: Callable[[], str]) -> Command:
    """Fill ``occurred_at`` with ``now`` and a missing created id with ``new_id()``; revalidate."""
    changes: dict = {}
    if cmd.occurred_at is None:
        changes["occurred_at"] = now
    field = CREATES.get(type(cmd))
    if field is not None and getattr(cmd, field) is None:
        changes[field] = new_id()
    return validate(msgspec.structs.replace(cmd, **changes) if changes else cmd)


# -- validation ----------------------------------------------------------------------------


def validate(cmd: Command) -> Command:
    """Check the rules a decoder cannot; return ``cmd`` or raise :class:`Invalid`."""
    _common(cmd)
    match cmd:
        case RegisterCompound():
            check_community(cmd.community)
            check_slug(cmd.compound, "compound")
            _text(cmd.name, "name")
            _ids(cmd.buildings, "buildings")
            _ids(cmd.gates, "gates")
        case RegisterHousehold():
            check_community(cmd.community)
            check_slug(cmd.compound, "compound")
            check_slug(cmd.building, "building")
            _text(cmd.address, "address")
            _optional_slug(cmd.household, "household")
        case RegisterResident():
            check_slug(cmd.household, "household")
            _optional_slug(cmd.resident, "resident")
            _text(cmd.name, "name")
            check_id_number(cmd.id_number)
            _phone(cmd.phone)
            _birth_year(cmd.birth_year, cmd.occurred_at)
            _no_duplicates(cmd.vulnerabilities, "vulnerabilities")
        case RegisterArrival():
            _arrival(cmd)
        case VerifyArrival():
            check_slug(cmd.arrival, "arrival")
            if cmd.note is not None:
                _text(cmd.note, "note", MAX_NOTE)
        case MoveOut():
            check_slug(cmd.resident, "resident")
            if cmd.reason is not None:
                _text(cmd.reason, "reason", MAX_NOTE)
        case _:
            assert_never(cmd)
    return cmd


def _common(cmd: Command) -> None:
    _text(cmd.command_id, "command_id", 128)
    _text(cmd.actor, "actor", 128)
    if any(c.isspace() for c in cmd.actor):
        raise Invalid(f"actor {cmd.actor!r} must not contain whitespace (e.g. staff:li-na)", field="actor")
    if cmd.occurred_at is not None and cmd.occurred_at.utcoffset() is None:
        raise Invalid("occurred_at must carry a timezone, e.g. 2026-11-23T09:30:00+08:00", field="occurred_at")
    if cmd.expected_version is not None and cmd.expected_version < 0:
        raise Invalid("expected_version must be 0 or more", field="expected_version")


def _arrival(cmd: RegisterArrival) -> None:
    check_slug(cmd.resident, "resident")
    _optional_slug(cmd.arrival, "arrival")
    _text(cmd.origin, "origin")
    if cmd.transport.number is not None:
        _text(cmd.transport.number, "transport.number", 50)
    if cmd.occurred_at is not None and cmd.arrived_on > cmd.occurred_at.date():
        raise Invalid(
            f"arrived_on {cmd.arrived_on} is after the day of the command ({cmd.occurred_at.date()})",
            field="arrived_on",
        )
    if len(cmd.visited) > MAX_VISITS:
        raise Invalid(f"visited lists {len(cmd.visited)} places; at most {MAX_VISITS}", field="visited")
    for i, visit in enumerate(cmd.visited):
        _text(visit.place, f"visited[{i}].place")
        if visit.from_ > visit.to:
            raise Invalid(
                f"visited[{i}]: from {visit.from_} is after to {visit.to}", field=f"visited[{i}].from"
            )


def _text(value: object, field: str, limit: int = MAX_TEXT) -> None:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"{field} must not be empty", field=field)
    if len(value) > limit:
        raise Invalid(f"{field} has {len(value)} characters; at most {limit} are allowed", field=field)
    if "\x00" in value:  # PostgreSQL text cannot hold it: the whole batch would fail as `internal`
        raise Invalid(f"{field} must not contain the NUL character (\\u0000); remove it", field=field)


def _optional_slug(value: str | None, field: str) -> None:
    if value is not None:
        check_slug(value, field)


def _ids(values: list[str], field: str) -> None:
    if not values:
        raise Invalid(f"{field} must list at least one id", field=field)
    if len(values) > MAX_IDS:
        raise Invalid(f"{field} lists {len(values)} ids; at most {MAX_IDS}", field=field)
    for i, value in enumerate(values):
        check_slug(value, f"{field}[{i}]")
    _no_duplicates(values, field)


def _no_duplicates(values: list, field: str) -> None:
    seen: set = set()
    for i, value in enumerate(values):
        if value in seen:
            raise Invalid(f"{field} lists {value!r} twice", field=f"{field}[{i}]")
        seen.add(value)


_PHONE = re.compile(r"^\+?[0-9]+$")


def _phone(value: str | None) -> None:
    if value is not None and not (_PHONE.match(value) and 5 <= len(value) <= 20):
        raise Invalid(
            "phone must be 5 to 20 characters: digits with an optional leading +, no spaces or dashes",
            field="phone",
        )


def _birth_year(value: int, occurred_at: datetime | None) -> None:
    latest = occurred_at.year if occurred_at is not None else MAX_BIRTH_YEAR
    if not MIN_BIRTH_YEAR <= value <= latest:
        raise Invalid(f"birth_year {value} must be between {MIN_BIRTH_YEAR} and {latest}", field="birth_year")


_ID_CARD = re.compile(r"^[0-9]{17}[0-9X]$")
_PASSPORT = re.compile(r"^[A-Z0-9]{5,20}$")
_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]


def prc_check_digit(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of an 18-character resident ID card number."""
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS)) % 11]


def check_id_number(value: str, field: str = "id_number") -> str:
    """An 18-character PRC resident ID card number with a correct check digit, or a passport-like
    number of 5-20 uppercase letters and digits (never 18 characters long)."""
    if len(value) == 18:
        if not _ID_CARD.match(value):
            raise Invalid(
                f"{field}: an 18-character number must be a resident ID card number, 17 digits then a "
                "digit or an uppercase X",
                field=field,
            )
        expected = prc_check_digit(value[:17])
        if value[17] != expected:
            raise Invalid(
                f"{field}: the check digit is wrong (last character {value[17]!r}, expected {expected!r}); "
                "compare the number with the ID card",
                field=field,
            )
        return value
    if value.isdigit() and 15 <= len(value) <= 19:
        raise Invalid(
            f"{field} has {len(value)} digits: a resident ID card number has 18 characters; "
            "check for a missing or extra digit",
            field=field,
        )
    if not _PASSPORT.match(value):
        raise Invalid(
            f"{field} must be an 18-character resident ID card number or a passport number of 5 to 20 "
            "uppercase letters and digits",
            field=field,
        )
    return value
