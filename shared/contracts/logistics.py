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
