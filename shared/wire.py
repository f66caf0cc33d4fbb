"""What every service's commands share: the common fields, strict decoding with errors a person
can act on, and small validators. A service's ``commands.py`` builds on these."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Callable, Iterable

import msgspec

from shared.errors import Invalid, UnknownCommand
from shared.subjects import check_slug

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
MAX_TEXT = 200
MAX_NOTE = 1000
MAX_IDS = 500


class BaseCommand(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fields every command carries."""

    command_id: str
    actor: str
    #: Filled by the runtime with the receive time when absent.
    occurred_at: AwareDatetime | None = None
    #: Optimistic concurrency, checked against the command's target stream.
    expected_version: int | None = None
    #: Ties the command's events to a wider piece of work; defaults to the command_id.
    correlation_id: str | None = None
    #: The event that caused this command (set by policies); defaults to the command_id.
    causation_id: str | None = None


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_NAMED = re.compile(r"^Object (?P<what>missing required|contains unknown) field `(?P<name>[^`]*)`$")


def decode(service: str, commands: dict[str, type], name: str, payload: bytes,
           choices: dict[str, Iterable[str]] | None = None):
    """Decode ``payload`` strictly (``"1"`` is not an int) as the command ``name``.

    Every failure is :class:`Invalid` naming the field, or :class:`UnknownCommand`.
    """
    cls = commands.get(name)
    if cls is None:
        raise UnknownCommand(f"the {service} has no command {name!r}; it has: {', '.join(commands)}")
    if not payload.strip():
        raise Invalid(f"empty payload: send a JSON object with the fields of {name}")
    try:
        return msgspec.json.decode(payload, type=cls)
    except msgspec.ValidationError as e:
        raise invalid(name, str(e), choices or {}) from None
    except msgspec.DecodeError as e:
        raise Invalid(f"the payload of {name} is not valid JSON ({e}); send a JSON object") from None


def invalid(command: str, text: str, choices: dict[str, Iterable[str]]) -> Invalid:
    """Turn a msgspec validation message into an Invalid with the field path and a hint."""
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
    if "got `str`" in msg and any(f"`{t}" in msg for t in ("int", "float", "bool")):
        hint = " (numbers and booleans must not be quoted)"
    elif msg.startswith("Invalid enum value"):
        options = choices.get(re.sub(r"\[\d+\]$", "", path).rsplit(".", 1)[-1])
        hint = f"; expected one of: {', '.join(options)}" if options else ""
    elif msg.endswith("encoded date"):
        hint = "; use YYYY-MM-DD"
    elif "datetime" in msg:
        hint = "; use RFC 3339 with a zone, e.g. 2026-11-23T09:30:00+08:00"
    return Invalid(f"{path}: {msg}{hint}", field=path)


def complete(cmd: BaseCommand, *, now: Callable[[], datetime], new_id: Callable[[], str],
             creates: dict[type, str]) -> BaseCommand:
    """``cmd`` with ``occurred_at`` (``now()`` when absent) and the id it creates (the field
    ``creates`` names for its type, ``new_id()`` when absent) filled in."""
    changes: dict = {}
    if cmd.occurred_at is None:
        changes["occurred_at"] = now()
    created = creates.get(type(cmd))
    if created is not None and getattr(cmd, created) is None:
        changes[created] = new_id()
    return msgspec.structs.replace(cmd, **changes) if changes else cmd


def validate_common(cmd: BaseCommand) -> BaseCommand:
    """The checks every command gets (:func:`check_common`); a service's ``validate`` adds its own."""
    check_common(cmd)
    return cmd


def check_common(cmd: BaseCommand) -> None:
    text(cmd.command_id, "command_id", 128)
    text(cmd.actor, "actor", 128)
    if any(c.isspace() for c in cmd.actor):
        raise Invalid(f"actor {cmd.actor!r} must not contain whitespace (e.g. staff:li-na)", field="actor")
    if cmd.occurred_at is not None and cmd.occurred_at.utcoffset() is None:
        raise Invalid("occurred_at must carry a timezone, e.g. 2026-11-23T09:30:00+08:00", field="occurred_at")
    if cmd.expected_version is not None and cmd.expected_version < 0:
        raise Invalid("expected_version must be 0 or more", field="expected_version")
    for field in ("correlation_id", "causation_id"):
        if getattr(cmd, field) is not None:
            text(getattr(cmd, field), field, 128)


def text(value: object, field: str, limit: int = MAX_TEXT) -> None:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"{field} must not be empty", field=field)
    if len(value) > limit:
        raise Invalid(f"{field} has {len(value)} characters; at most {limit} are allowed", field=field)
    if "\x00" in value:  # PostgreSQL text cannot hold it: the whole batch would fail as `internal`
        raise Invalid(f"{field} must not contain the NUL character (\\u0000); remove it", field=field)


def optional_slug(value: str | None, field: str) -> None:
    if value is not None:
        check_slug(value, field)


def ids(values: list[str], field: str, limit: int = MAX_IDS) -> None:
    if not values:
        raise Invalid(f"{field} must list at least one id", field=field)
    if len(values) > limit:
        raise Invalid(f"{field} lists {len(values)} ids; at most {limit}", field=field)
    for i, value in enumerate(values):
        check_slug(value, f"{field}[{i}]")
    no_duplicates(values, field)


def no_duplicates(values: list, field: str) -> None:
    seen: set = set()
    for i, value in enumerate(values):
        if value in seen:
            raise Invalid(f"{field} lists {value!r} twice", field=f"{field}[{i}]")
        seen.add(value)


_PHONE = re.compile(r"^\+?[0-9]+$")


def phone(value: str | None, field: str = "phone") -> None:
    if value is not None and not (_PHONE.match(value) and 5 <= len(value) <= 20):
        raise Invalid(
            f"{field} must be 5 to 20 characters: digits with an optional leading +, no spaces or dashes",
            field=field,
        )


def temperature(value: float, field: str = "temperature_c") -> None:
    """A body temperature a thermometer can read: 34.0 to 43.0 °C."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 34.0 <= value <= 43.0:
        raise Invalid(f"{field} must be a body temperature in °C between 34.0 and 43.0, got {value!r}",
                      field=field)
