"""Public events of the logistics service: supply requests, deliveries, welfare checks, stock,
mask vouchers, and the standing daily food supply of confined households.

Views and staff feeds read these; a committee's feed shows WelfareCheckRaised at
``cordon.evt.<community>.logistics.WelfareCheckRaised``. Households, volunteers and vouchers are
opaque ids: no names, no phones. Every stock change carries ``on_hand`` (the figure after it), so a
view can show stock by item without summing history.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import msgspec

from shared.envelope import Event, event_type

SERVICE = "logistics"
RequestKind = Literal["food", "medicine", "device_help", "masks", "other"]
DeliveryOutcome = Literal["delivered", "no_answer", "refused"]
StockSource = Literal["donation", "purchase", "allocation"]
#: Why a request comes first: confinement, then the vulnerabilities the registry records.
PriorityReason = Literal[
    "quarantined", "sealed", "elderly_alone", "limited_mobility", "medical_device", "chronic_illness",
]
WelfareOutcome = Literal["safe", "needs_help", "hospitalized", "not_at_home"]
CloseReason = Literal["cancelled", "refused"]


class ItemLine(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An item of the catalogue and a quantity, e.g. {"item": "vegetable-pack", "qty": 2}."""

    item: str
    qty: int


class StockLine(msgspec.Struct, frozen=True, kw_only=True):
    """A stock change of one item and the community's stock of it afterwards."""

    item: str
    qty: int
    on_hand: int


@event_type(SERVICE)
class SupplyRequested(Event, frozen=True, kw_only=True):
    request: str
    household: str
    compound: str
    building: str
    kind: RequestKind
    items: list[ItemLine]
    note: str | None = None
    #: Higher first. Bit weights, summed: confined at home (quarantined or sealed) 32, elderly living
    #: alone 16, limited mobility 8, medical device 4, chronic illness 2, a medicine or device-help
    #: request 1. So confinement outranks every vulnerability, and so on down the list.
    priority: int
    priority_reasons: list[PriorityReason] = []
    #: The day a standing daily food supply raised this request for; None for a household's own.
    daily_on: date | None = None
    requested_at: datetime
    requested_by: str


@event_type(SERVICE)
class DeliveryAssigned(Event, frozen=True, kw_only=True):
    request: str
    household: str
    volunteer: str
    items: list[ItemLine]
    #: 1 for the first attempt; a failed attempt reopens the request for the next one.
    attempt: int
    #: True when the delivery moves to another volunteer (the goods were already handed out).
    reassigned: bool = False
    assigned_at: datetime
    assigned_by: str


@event_type(SERVICE)
class DeliveryCompleted(Event, frozen=True, kw_only=True):
    request: str
    household: str
    volunteer: str
    items: list[ItemLine]
    attempt: int
    completed_at: datetime
    completed_by: str


@event_type(SERVICE)
class DeliveryFailed(Event, frozen=True, kw_only=True):
    """Nobody answered (the request reopens for another attempt) or the household refused (the
    request closes). The goods go back to stock (StockReturned)."""

    request: str
    household: str
    volunteer: str
    outcome: Literal["no_answer", "refused"]
    attempt: int
    #: The welfare check this failure raised or found open, if the household is vulnerable.
    welfare_check: str | None = None
    failed_at: datetime
    failed_by: str


@event_type(SERVICE)
class WelfareCheckRaised(Event, frozen=True, kw_only=True):
    """Nobody answered the door at a vulnerable household: someone must go and look, now."""

    check: str
    household: str
    compound: str
    building: str
    request: str
    vulnerabilities: list[str]
    raised_at: datetime
    raised_by: str


@event_type(SERVICE)
class WelfareCheckResolved(Event, frozen=True, kw_only=True):
    check: str
    household: str
    outcome: WelfareOutcome
    note: str | None = None
    resolved_at: datetime
    resolved_by: str


@event_type(SERVICE)
class SupplyRequestClosed(Event, frozen=True, kw_only=True):
    request: str
    household: str
    reason: CloseReason
    note: str | None = None
    closed_at: datetime
    closed_by: str


@event_type(SERVICE)
class StockReceived(Event, frozen=True, kw_only=True, rename={"from_": "from"}):
    receipt: str
    items: list[StockLine]
    source: StockSource
    #: The giver: a company, an agency, a district office (not a private person's name).
    from_: str | None = None
    received_at: datetime
    received_by: str


@event_type(SERVICE)
class StockConsumed(Event, frozen=True, kw_only=True):
    """Goods left the community's store: handed to a volunteer for a delivery, or to a resident
    for a mask voucher."""

    household: str
    items: list[StockLine]
    request: str | None = None
    voucher: str | None = None
    consumed_at: datetime
    consumed_by: str


@event_type(SERVICE)
class StockReturned(Event, frozen=True, kw_only=True):
    """Goods came back from a delivery that failed or a request cancelled after assignment."""

    household: str
    items: list[StockLine]
    request: str
    returned_at: datetime
    returned_by: str


@event_type(SERVICE)
class MasksReserved(Event, frozen=True, kw_only=True):
    household: str
    voucher: str
    #: Printed on the purchase voucher: unique, digits with a final check digit.
    number: str
    qty: int
    #: The limit period this reservation counts against, and the household's total in it.
    period_start: date
    period_end: date
    reserved_in_period: int
    limit: int
    reserved_at: datetime
    reserved_by: str


@event_type(SERVICE)
class VoucherRedeemed(Event, frozen=True, kw_only=True):
    household: str
    voucher: str
    number: str
    qty: int
    redeemed_at: datetime
    redeemed_by: str


@event_type(SERVICE)
class DailySupplyStarted(Event, frozen=True, kw_only=True):
    """A household is confined (home quarantine ``case:<id>``, a seal ``seal:<compound>[:<building>]``):
    a food request is raised for it every day while any cause lasts."""

    household: str
    compound: str
    building: str
    cause: str
    #: Every cause in force after this one.
    causes: list[str]
    starts_on: date
    started_at: datetime
    started_by: str


@event_type(SERVICE)
class DailySupplyStopped(Event, frozen=True, kw_only=True):
    household: str
    cause: str
    #: The causes still in force; the daily requests end when none is left (``active`` false).
    causes: list[str]
    active: bool
    stopped_at: datetime
    stopped_by: str


# -- group orders from a supplier (issue 17) --------------------------------------------------------

#: Where a volunteer comes from: a party branch (党支部), cadres sent down from district agencies
#: (下沉干部), the compound's own residents, or anyone else.
UnitKind = Literal["party_branch", "sent_down_cadre", "resident", "other"]
#: What the hours were for. ``gate_shift`` is recorded by logistics itself from the checkpoint's
#: ShiftEnded (a duty shift at a gate); the others by staff.
HoursKind = Literal["delivery", "door_to_door", "gate_shift", "other"]
#: What a door-to-door visit found; ``no_answer`` is not a contact.
VisitOutcome = Literal["well", "needs_help", "hospitalized", "no_answer"]


class OrderLine(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A line of a supplier's order, e.g. {"item": "vegetable-box", "qty": 300}: the supplier's
    goods, not the community's catalogue."""

    item: str
    qty: int


@event_type(SERVICE)
class GroupOrderPlaced(Event, frozen=True, kw_only=True):
    """A compound's group order (团购) of food sets from a supplier, for ``households`` households."""

    order: str
    compound: str
    #: The shop or company that supplies it (a business, never a person's name).
    supplier: str
    items: list[OrderLine]
    households: int
    placed_at: datetime
    placed_by: str


@event_type(SERVICE)
class GroupOrderDelivered(Event, frozen=True, kw_only=True):
    """The supplier left the order at a gate of the compound; volunteers hand it out from there."""

    order: str
    compound: str
    gate: str
    delivered_at: datetime
    delivered_by: str


@event_type(SERVICE)
class GroupOrderHandedOut(Event, frozen=True, kw_only=True):
    """One building's share of the order handed out (to ``households`` households)."""

    order: str
    compound: str
    building: str
    households: int
    #: Households served so far over every building, and whether that is all of the order.
    handed_out: int
    complete: bool
    handed_out_at: datetime
    handed_out_by: str


# -- volunteers, their teams and hours (issue 17) ---------------------------------------------------


@event_type(SERVICE)
class VolunteerRegistered(Event, frozen=True, kw_only=True):
    """A volunteer (an opaque id, the one checkpoint shifts and deliveries name) joins a team of
    the community, or moves to another."""

    volunteer: str
    team: str
    unit_kind: UnitKind
    #: The team before, when the volunteer moved.
    previous_team: str | None = None
    registered_at: datetime
    registered_by: str


@event_type(SERVICE)
class VolunteerHoursRecorded(Event, frozen=True, kw_only=True):
    """Hours a volunteer worked on a day, counted for the team they were in then (null: not
    registered in a team: a gate shift of someone logistics does not know)."""

    volunteer: str
    on: date
    kind: HoursKind
    hours: float
    team: str | None = None
    unit_kind: UnitKind | None = None
    #: The checkpoint's shift, for ``gate_shift`` hours.
    shift: str | None = None
    recorded_at: datetime
    recorded_by: str


# -- door-to-door visits (issue 17) -----------------------------------------------------------------


@event_type(SERVICE)
class VisitRecorded(Event, frozen=True, kw_only=True):
    """A door-to-door visit (上门) to a household, e.g. to an elderly resident living alone."""

    household: str
    compound: str
    building: str
    outcome: VisitOutcome
    volunteer: str | None = None
    visited_at: datetime
    visited_by: str
