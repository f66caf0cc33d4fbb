"""Public events of the checkpoint service: gates, control levels, passes, passages, shifts.

A visitor's name and phone stay in the checkpoint's own tables; events carry a masked name only.
On the wire the pass id field is ``pass`` (``pass_`` in Python, a keyword there).
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from shared.envelope import Event, event_type

SERVICE = "checkpoint"
Direction = Literal["in", "out"]
ControlLevel = Literal["open", "closed", "sealed"]
DenyReason = Literal[
    "no_valid_pass", "fever", "under_quarantine", "building_sealed", "compound_sealed",
    "gate_closed", "visitors_not_admitted", "unknown_resident",
]


@event_type(SERVICE)
class GateOpened(Event, frozen=True, kw_only=True):
    compound: str
    gate: str
    opened_at: datetime
    opened_by: str


@event_type(SERVICE)
class GateClosed(Event, frozen=True, kw_only=True):
    compound: str
    gate: str
    closed_at: datetime
    closed_by: str


@event_type(SERVICE)
class ControlLevelSet(Event, frozen=True, kw_only=True):
    compound: str
    level: ControlLevel
    #: The level before this one (``open`` for a compound never set before).
    previous: ControlLevel | None = None
    set_at: datetime
    set_by: str


@event_type(SERVICE)
class PassIssued(Event, frozen=True, kw_only=True, rename={"pass_": "pass"}):
    pass_: str
    #: Printable, unique and hard to guess.
    number: str
    compound: str
    household: str
    #: The pass this one replaces (replace_pass: a lost or damaged pass), if any.
    replaces: str | None = None
    issued_at: datetime
    issued_by: str


@event_type(SERVICE)
class PassRevoked(Event, frozen=True, kw_only=True, rename={"pass_": "pass"}):
    pass_: str
    compound: str
    household: str
    reason: str
    #: The printed number of the revoked pass, for the guards' lists.
    number: str | None = None
    #: The pass issued in its place (replace_pass), if any.
    replaced_by: str | None = None
    revoked_at: datetime
    revoked_by: str


@event_type(SERVICE)
class PassageAllowed(Event, frozen=True, kw_only=True, rename={"pass_": "pass"}):
    passage: str
    compound: str
    gate: str
    direction: Direction
    temperature_c: float
    #: Who passed: a resident (by pass or id) or a visitor (masked name, host household).
    resident: str | None = None
    household: str | None = None
    pass_: str | None = None
    visitor: str | None = None
    #: The building of the resident or of the visitor's host household, when known.
    building: str | None = None
    #: The printed number of the pass shown (normalized), also when it matched no valid pass.
    number: str | None = None
    checked_at: datetime
    checked_by: str


@event_type(SERVICE)
class PassageDenied(Event, frozen=True, kw_only=True, rename={"pass_": "pass"}):
    passage: str
    compound: str
    gate: str
    direction: Direction
    temperature_c: float
    reason: DenyReason
    resident: str | None = None
    household: str | None = None
    pass_: str | None = None
    visitor: str | None = None
    #: The building of the resident or of the visitor's host household, when known.
    building: str | None = None
    #: The printed number of the pass shown (normalized), also when it matched no valid pass.
    number: str | None = None
    checked_at: datetime
    checked_by: str


@event_type(SERVICE)
class FeverDetected(Event, frozen=True, kw_only=True):
    """A temperature at or over the fever threshold at a gate: the committee is alerted and the
    quarantine service opens a monitoring case for a known resident."""

    passage: str
    compound: str
    gate: str
    temperature_c: float
    resident: str | None = None
    household: str | None = None
    visitor: str | None = None
    direction: Direction | None = None
    #: The threshold in force (°C): a policy value.
    threshold_c: float | None = None
    detected_at: datetime
    detected_by: str


@event_type(SERVICE)
class ShiftStarted(Event, frozen=True, kw_only=True):
    shift: str
    compound: str | None = None
    gate: str
    staff: str
    started_at: datetime
    started_by: str


@event_type(SERVICE)
class ShiftEnded(Event, frozen=True, kw_only=True):
    shift: str
    compound: str | None = None
    gate: str
    staff: str
    hours: float
    ended_at: datetime
    ended_by: str
