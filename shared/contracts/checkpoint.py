"""Public events of the checkpoint service: gates, control levels, passes, passages, shifts.

A visitor's name and phone stay in the checkpoint's own tables; events carry a masked name only.
A pass's printed number stays there too (see the passes' events below). On the wire the pass id
field is ``pass`` (``pass_`` in Python, a keyword there).
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
    "gate_closed", "visitors_not_admitted", "unknown_resident", "awaiting_result",
]
#: Where a resident said they were going, on the way out: a category, never free text (the bus
#: carries no place a person goes to).
Destination = Literal["work", "shopping", "medical", "family", "other"]
#: Why a vehicle comes to the gate.
VehiclePurpose = Literal["delivery", "resident", "emergency", "official", "other"]
#: A vehicle is turned back for a reason a person on foot would be (the first of its residents
#: aboard who is: the driver, then the passengers in order), or because the level admits no
#: vehicles from outside.
VehicleDenyReason = Literal[DenyReason, "vehicles_not_admitted"]
#: What is left at the gate's drop point.
ParcelKind = Literal["parcel", "takeaway", "groceries"]


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


# Passes and passages are in their second schema: a printed pass number is a credential (whoever
# reads it walks through the gate), so it stays in the checkpoint's own table and goes only to the
# caller of issue_passes / replace_pass; events name a pass by its id. Schema 1 carried the number:
# its classes (``*V1``, below) decode what was recorded before, and ``upcast`` gives the event in
# schema 2 without it.


@event_type(SERVICE, schema=2)
class PassIssued(Event, frozen=True, kw_only=True, rename={"pass_": "pass"}):
    """A pass issued to a household (schema 2: the pass by its id; its printed number went to the
    caller of issue_passes / replace_pass only)."""

    pass_: str
    compound: str
    household: str
    #: The pass this one replaces (replace_pass: a lost or damaged pass), if any.
    replaces: str | None = None
    issued_at: datetime
    issued_by: str


@event_type(SERVICE, schema=2)
class PassRevoked(Event, frozen=True, kw_only=True, rename={"pass_": "pass"}):
    """A pass no longer valid (schema 2: the pass by its id, without its printed number)."""

    pass_: str
    compound: str
    household: str
    reason: str
    #: The pass issued in its place (replace_pass), if any.
    replaced_by: str | None = None
    revoked_at: datetime
    revoked_by: str


@event_type(SERVICE, schema=2)
class PassageAllowed(Event, frozen=True, kw_only=True, rename={"pass_": "pass"}):
    """Someone let through a gate (schema 2: a pass shown by its id, never its printed number)."""

    passage: str
    compound: str
    gate: str
    direction: Direction
    temperature_c: float
    #: Who passed: a resident (by pass or id) or a visitor (masked name, host household).
    resident: str | None = None
    household: str | None = None
    #: The id of the pass shown, when it is a pass the checkpoint issued (valid or not).
    pass_: str | None = None
    #: A pass (number or id) was shown. With no ``pass``: it matched no pass ever issued (a
    #: mistyped or forged number), which is not recorded.
    pass_shown: bool = False
    visitor: str | None = None
    #: The building of the resident or of the visitor's host household, when known.
    building: str | None = None
    #: On the way out: where the resident said they were going (issue 17).
    destination: Destination | None = None
    checked_at: datetime
    checked_by: str


@event_type(SERVICE, schema=2)
class PassageDenied(Event, frozen=True, kw_only=True, rename={"pass_": "pass"}):
    """Someone turned back at a gate, and why (schema 2: a pass shown by its id, never its printed
    number)."""

    passage: str
    compound: str
    gate: str
    direction: Direction
    temperature_c: float
    reason: DenyReason
    resident: str | None = None
    household: str | None = None
    #: The id of the pass shown, when it is a pass the checkpoint issued (valid or not).
    pass_: str | None = None
    #: A pass (number or id) was shown. With no ``pass``: it matched no pass ever issued (a
    #: mistyped or forged number), which is not recorded.
    pass_shown: bool = False
    visitor: str | None = None
    #: The building of the resident or of the visitor's host household, when known.
    building: str | None = None
    #: On the way out: where the resident said they were going (issue 17).
    destination: Destination | None = None
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


# -- visitors' personal data: who read it, and its retention (services/checkpoint/queries.py) ------


@event_type(SERVICE)
class VisitorContactViewed(Event, frozen=True, kw_only=True):
    """Someone was shown a visitor's name and phone (``cordon.qry.checkpoint.visitor_contact``):
    recorded before the answer leaves the checkpoint; no record, no answer. Carries who, which
    visit and why, never what was shown."""

    #: The actor who read (``staff:li-wei``).
    viewer: str
    #: The passage of the visit.
    passage: str
    purpose: str
    viewed_at: datetime


@event_type(SERVICE)
class VisitorDataShredded(Event, frozen=True, kw_only=True):
    """Retention: the data keys of a community's visitors who came before ``before`` (the start of
    the tracing window on the day it ran) were deleted, their names and phones unreadable wherever a
    copy went. Counts only, never who."""

    before: datetime
    #: How many visits' personal data were shredded.
    visitors: int
    #: How many vehicle checks' plates (and outside drivers' names and phones) were shredded (issue 17).
    vehicles: int = 0
    shredded_at: datetime
    shredded_by: str


# -- the gate's other work (issue 17): vehicles, and the drop point for parcels and takeaway -------


@event_type(SERVICE)
class VehicleAllowed(Event, frozen=True, kw_only=True):
    """A vehicle let through a gate. Its plate, and an outside driver's name and phone, stay in
    ``checkpoint.vehicles``, sealed per check: a plate names its keeper as surely as a phone does."""

    vehicle: str
    compound: str
    gate: str
    direction: Direction
    purpose: VehiclePurpose
    #: The driver, when a resident of the compound (else an outside driver: nothing of them here).
    driver: str | None = None
    #: The residents aboard besides the driver.
    passengers: list[str] = []
    checked_at: datetime
    checked_by: str


@event_type(SERVICE)
class VehicleDenied(Event, frozen=True, kw_only=True):
    """A vehicle turned back, and why; ``resident`` names the one aboard whose state denied it
    (quarantined, of a sealed building, not of this compound), when it was one of them."""

    vehicle: str
    compound: str
    gate: str
    direction: Direction
    purpose: VehiclePurpose
    reason: VehicleDenyReason
    resident: str | None = None
    driver: str | None = None
    passengers: list[str] = []
    checked_at: datetime
    checked_by: str


@event_type(SERVICE)
class ParcelDropped(Event, frozen=True, kw_only=True):
    """A parcel, takeaway or groceries left at a gate's drop point for a household."""

    parcel: str
    compound: str
    gate: str
    household: str
    building: str | None = None
    kind: ParcelKind
    dropped_at: datetime
    dropped_by: str


@event_type(SERVICE)
class ParcelCollected(Event, frozen=True, kw_only=True):
    """A parcel taken from the drop point: by a resident of its household, or by a volunteer who
    carries it to the door (a household under quarantine or sealed in cannot come to the gate)."""

    parcel: str
    compound: str
    gate: str
    household: str
    kind: ParcelKind
    resident: str | None = None
    volunteer: str | None = None
    collected_at: datetime
    collected_by: str


# -- schema 1: recorded before pass numbers left the bus; decoded, never recorded now ----------------


def _without_number(event: Event, current: type[Event], **extra) -> Event:
    fields = {f: getattr(event, f) for f in current.__struct_fields__ if hasattr(event, f)}
    return current(**fields, **extra)


@event_type(SERVICE, schema=1, name="PassIssued")
class PassIssuedV1(Event, frozen=True, kw_only=True, rename={"pass_": "pass"}):
    """PassIssued schema 1: it carried the pass's printed number."""

    pass_: str
    #: Printable, unique and hard to guess.
    number: str
    compound: str
    household: str
    replaces: str | None = None
    issued_at: datetime
    issued_by: str

    def upcast(self) -> PassIssued:
        return _without_number(self, PassIssued)


@event_type(SERVICE, schema=1, name="PassRevoked")
class PassRevokedV1(Event, frozen=True, kw_only=True, rename={"pass_": "pass"}):
    """PassRevoked schema 1: it carried the revoked pass's printed number."""

    pass_: str
    compound: str
    household: str
    reason: str
    #: The printed number of the revoked pass, for the guards' lists.
    number: str | None = None
    replaced_by: str | None = None
    revoked_at: datetime
    revoked_by: str

    def upcast(self) -> PassRevoked:
        return _without_number(self, PassRevoked)


@event_type(SERVICE, schema=1, name="PassageAllowed")
class PassageAllowedV1(Event, frozen=True, kw_only=True, rename={"pass_": "pass"}):
    """PassageAllowed schema 1: it carried the printed number of the pass shown."""

    passage: str
    compound: str
    gate: str
    direction: Direction
    temperature_c: float
    resident: str | None = None
    household: str | None = None
    pass_: str | None = None
    visitor: str | None = None
    building: str | None = None
    #: The printed number of the pass shown (normalized), also when it matched no valid pass.
    number: str | None = None
    checked_at: datetime
    checked_by: str

    def upcast(self) -> PassageAllowed:
        # An unknown pass shown by its id (not its number) left no trace in schema 1.
        return _without_number(self, PassageAllowed, pass_shown=self.pass_ is not None or self.number is not None)


@event_type(SERVICE, schema=1, name="PassageDenied")
class PassageDeniedV1(Event, frozen=True, kw_only=True, rename={"pass_": "pass"}):
    """PassageDenied schema 1: it carried the printed number of the pass shown."""

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
    building: str | None = None
    #: The printed number of the pass shown (normalized), also when it matched no valid pass.
    number: str | None = None
    checked_at: datetime
    checked_by: str

    def upcast(self) -> PassageDenied:
        return _without_number(self, PassageDenied, pass_shown=self.pass_ is not None or self.number is not None)
