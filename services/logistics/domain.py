"""The logistics domain, pure: aggregates, ``evolve``, priorities and stock arithmetic.

No I/O, no clock, no id generation. One stream holds one aggregate, and every event knows its
stream (:func:`stream_of`), so a decision that touches several aggregates (a failed delivery that
raises a welfare check) is one list of events the handler routes:

    request:<request>    SupplyRequested, DeliveryAssigned/Completed/Failed, StockConsumed,
                         StockReturned, SupplyRequestClosed
    receipt:<receipt>    StockReceived
    masks:<household>    MasksReserved, VoucherRedeemed, StockConsumed (of a voucher)
    welfare:<household>  WelfareCheckRaised, WelfareCheckResolved
    plan:<household>     DailySupplyStarted, DailySupplyStopped
    order:<order>        GroupOrderPlaced, GroupOrderDelivered, GroupOrderHandedOut
    volunteer:<volunteer> VolunteerRegistered
    hours:<community>/<volunteer>  VolunteerHoursRecorded (the hours worked in that community)
    visit:<household>    VisitRecorded

Stock itself is not a stream: a hot counter replayed from its whole history on every batch would
slow down with every redemption. The handler keeps ``on_hand`` per community and item in a row,
locked and updated in the command's transaction; the events above carry each change and the figure
after it, so the row can be rebuilt from the record.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Iterable, Mapping, Union, assert_never

from services.logistics.config import Config
from shared.contracts.logistics import (
    DailySupplyStarted,
    DailySupplyStopped,
    DeliveryAssigned,
    DeliveryCompleted,
    DeliveryFailed,
    GroupOrderDelivered,
    GroupOrderHandedOut,
    GroupOrderPlaced,
    ItemLine,
    MasksReserved,
    StockConsumed,
    StockLine,
    StockReceived,
    StockReturned,
    SupplyRequestClosed,
    SupplyRequested,
    OrderLine,
    VisitRecorded,
    VolunteerHoursRecorded,
    VolunteerRegistered,
    VoucherRedeemed,
    WelfareCheckRaised,
    WelfareCheckResolved,
)

LogisticsEvent = Union[
    SupplyRequested, DeliveryAssigned, DeliveryCompleted, DeliveryFailed, SupplyRequestClosed,
    StockReceived, StockConsumed, StockReturned, MasksReserved, VoucherRedeemed,
    WelfareCheckRaised, WelfareCheckResolved, DailySupplyStarted, DailySupplyStopped,
    GroupOrderPlaced, GroupOrderDelivered, GroupOrderHandedOut, VolunteerRegistered,
    VolunteerHoursRecorded, VisitRecorded,
]
OPEN_STATUSES = ("open", "assigned")
#: Visits that found the household (someone opened the door): a contact on the vulnerable list.
CONTACT_OUTCOMES = ("well", "needs_help", "hospitalized")


# -- states --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    community: str
    request: str
    household: str
    compound: str
    building: str
    kind: str
    items: tuple[ItemLine, ...]
    note: str | None
    priority: int
    reasons: tuple[str, ...]
    daily_on: date | None
    requested_at: datetime
    #: open -> assigned -> delivered; a failed attempt goes back to open; refused, cancelled end it.
    status: str = "open"
    volunteer: str | None = None
    attempts: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    community: str
    receipt: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Voucher:
    voucher: str
    number: str
    qty: int
    period_start: date
    redeemed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Masks:
    """A household's mask reservations: its vouchers, redeemed or not."""

    community: str
    household: str
    vouchers: Mapping[str, Voucher] = field(default_factory=dict)

    def reserved_in(self, period_start: date) -> int:
        return sum(v.qty for v in self.vouchers.values() if v.period_start == period_start)


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    check: str
    request: str
    vulnerabilities: tuple[str, ...]
    raised_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Welfare:
    """A household's welfare checks: how many were raised and the one open now, if any."""

    community: str
    household: str
    compound: str
    building: str
    raised: int = 0
    open: Check | None = None
    last_outcome: str | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A household's standing daily food supply and the causes that keep it going."""

    community: str
    household: str
    compound: str
    building: str
    causes: tuple[str, ...] = ()
    starts_on: date | None = None

    @property
    def active(self) -> bool:
        return bool(self.causes)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupOrder:
    """A compound's group order: placed, then delivered to a gate, then handed out per building."""

    community: str
    order: str
    compound: str
    supplier: str
    items: tuple[OrderLine, ...]
    households: int
    placed_at: datetime
    gate: str | None = None
    delivered_at: datetime | None = None
    #: building -> households handed out there
    buildings: Mapping[str, int] = field(default_factory=dict)

    @property
    def handed_out(self) -> int:
        return sum(self.buildings.values())

    @property
    def status(self) -> str:
        if self.delivered_at is None:
            return "placed"
        return "handed_out" if self.handed_out >= self.households else "delivered"


@dataclass(frozen=True, slots=True, kw_only=True)
class Volunteer:
    """A registered volunteer: the community and team they work for."""

    community: str
    volunteer: str
    team: str
    unit_kind: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HoursLog:
    """The hours a volunteer recorded in one community: the gate shifts already counted."""

    community: str
    volunteer: str
    shifts: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Visits:
    """A household's door-to-door visits: the last one, and the last that found someone."""

    community: str
    household: str
    compound: str
    building: str
    visits: int = 0
    last_visit_at: datetime | None = None
    last_outcome: str | None = None
    last_contact_at: datetime | None = None


State = Union[Request, Receipt, Masks, Welfare, Plan, GroupOrder, Volunteer, HoursLog, Visits]


# -- streams ---------------------------------------------------------------------------------


def request_stream(request: str) -> str:
    return f"request:{request}"


def receipt_stream(receipt: str) -> str:
    return f"receipt:{receipt}"


def masks_stream(household: str) -> str:
    return f"masks:{household}"


def welfare_stream(household: str) -> str:
    return f"welfare:{household}"


def plan_stream(household: str) -> str:
    return f"plan:{household}"


def order_stream(order: str) -> str:
    return f"order:{order}"


def volunteer_stream(volunteer: str) -> str:
    return f"volunteer:{volunteer}"


def hours_stream(community: str, volunteer: str) -> str:
    return f"hours:{community}/{volunteer}"


def visit_stream(household: str) -> str:
    return f"visit:{household}"


def daily_request_id(household: str, on: date) -> str:
    """The request id of a household's daily food on a day: the same every time it is asked for,
    so the day's request exists once however often a reaction or the scheduler raises it."""
    day = on.strftime("%Y%m%d")
    if len(household) > 63 - len("daily--") - len(day):
        household = hashlib.sha1(household.encode()).hexdigest()[:20]
    return f"daily-{household}-{day}"


def welfare_check_id(household: str, n: int) -> str:
    return f"{household}-w{n}"


def stream_of(event: LogisticsEvent) -> str:
    """The stream an event belongs to."""
    match event:
        case (SupplyRequested() | DeliveryAssigned() | DeliveryCompleted() | DeliveryFailed()
              | SupplyRequestClosed() | StockReturned()):
            return request_stream(event.request)
        case StockConsumed():
            if event.request is not None:
                return request_stream(event.request)
            return masks_stream(event.household)
        case StockReceived():
            return receipt_stream(event.receipt)
        case MasksReserved() | VoucherRedeemed():
            return masks_stream(event.household)
        case WelfareCheckRaised() | WelfareCheckResolved():
            return welfare_stream(event.household)
        case DailySupplyStarted() | DailySupplyStopped():
            return plan_stream(event.household)
        case GroupOrderPlaced() | GroupOrderDelivered() | GroupOrderHandedOut():
            return order_stream(event.order)
        case VolunteerRegistered():
            return volunteer_stream(event.volunteer)
        case VolunteerHoursRecorded():
            return hours_stream(event.community, event.volunteer)
        case VisitRecorded():
            return visit_stream(event.household)
        case _:
            assert_never(event)


def by_stream(events: Iterable[LogisticsEvent]) -> list[tuple[str, list[LogisticsEvent]]]:
    """Events grouped by stream, streams in order of first appearance, events in order."""
    groups: dict[str, list[LogisticsEvent]] = {}
    for event in events:
        groups.setdefault(stream_of(event), []).append(event)
    return list(groups.items())


# -- evolve --------------------------------------------------------------------------------


def evolve(state: State | None, event: LogisticsEvent) -> State:
    """Apply one event of a stream to its aggregate (None before the first event)."""
    match event:
        case SupplyRequested():
            return Request(
                community=event.community, request=event.request, household=event.household,
                compound=event.compound, building=event.building, kind=event.kind,
                items=tuple(event.items), note=event.note, priority=event.priority,
                reasons=tuple(event.priority_reasons), daily_on=event.daily_on,
                requested_at=event.requested_at,
            )
        case DeliveryAssigned():
            return replace(_expect(state, Request, event), status="assigned", volunteer=event.volunteer,
                           attempts=event.attempt)
        case DeliveryCompleted():
            return replace(_expect(state, Request, event), status="delivered")
        case DeliveryFailed():
            return replace(_expect(state, Request, event), status="open", volunteer=None)
        case SupplyRequestClosed():
            return replace(_expect(state, Request, event), status=event.reason, volunteer=None)
        case StockConsumed() | StockReturned():
            return _expect(state, (Request, Masks), event)  # a record of goods moving; no state
        case StockReceived():
            return Receipt(community=event.community, receipt=event.receipt)
        case MasksReserved():
            masks = state if isinstance(state, Masks) else Masks(community=event.community,
                                                                  household=event.household)
            voucher = Voucher(voucher=event.voucher, number=event.number, qty=event.qty,
                              period_start=event.period_start)
            return replace(masks, vouchers={**masks.vouchers, event.voucher: voucher})
        case VoucherRedeemed():
            masks = _expect(state, Masks, event)
            redeemed = replace(masks.vouchers[event.voucher], redeemed=True)
            return replace(masks, vouchers={**masks.vouchers, event.voucher: redeemed})
        case WelfareCheckRaised():
            welfare = state if isinstance(state, Welfare) else Welfare(
                community=event.community, household=event.household, compound=event.compound,
                building=event.building)
            check = Check(check=event.check, request=event.request,
                          vulnerabilities=tuple(event.vulnerabilities), raised_at=event.raised_at)
            return replace(welfare, raised=welfare.raised + 1, open=check)
        case WelfareCheckResolved():
            return replace(_expect(state, Welfare, event), open=None, last_outcome=event.outcome,
                           resolved_at=event.resolved_at)
        case DailySupplyStarted():
            plan = state if isinstance(state, Plan) else None
            starts_on = event.starts_on if plan is None or not plan.active else plan.starts_on
            return Plan(community=event.community, household=event.household, compound=event.compound,
                        building=event.building, causes=tuple(event.causes), starts_on=starts_on)
        case DailySupplyStopped():
            return replace(_expect(state, Plan, event), causes=tuple(event.causes))
        case GroupOrderPlaced():
            return GroupOrder(community=event.community, order=event.order, compound=event.compound,
                              supplier=event.supplier, items=tuple(event.items), households=event.households,
                              placed_at=event.placed_at)
        case GroupOrderDelivered():
            return replace(_expect(state, GroupOrder, event), gate=event.gate, delivered_at=event.delivered_at)
        case GroupOrderHandedOut():
            order = _expect(state, GroupOrder, event)
            return replace(order, buildings={**order.buildings, event.building: event.households})
        case VolunteerRegistered():
            return Volunteer(community=event.community, volunteer=event.volunteer, team=event.team,
                             unit_kind=event.unit_kind)
        case VolunteerHoursRecorded():
            log = state if isinstance(state, HoursLog) else HoursLog(community=event.community,
                                                                     volunteer=event.volunteer)
            return log if event.shift is None else replace(log, shifts=log.shifts | {event.shift})
        case VisitRecorded():
            visits = state if isinstance(state, Visits) else Visits(
                community=event.community, household=event.household, compound=event.compound,
                building=event.building)
            contact = event.visited_at if event.outcome in CONTACT_OUTCOMES else visits.last_contact_at
            return replace(visits, visits=visits.visits + 1, last_visit_at=event.visited_at,
                           last_outcome=event.outcome, last_contact_at=contact)
        case _:
            assert_never(event)


def replay(events: Iterable[LogisticsEvent], state: State | None = None) -> State | None:
    for event in events:
        state = evolve(state, event)
    return state


def _expect(state: State | None, cls, event: LogisticsEvent):
    if not isinstance(state, cls):
        raise TypeError(f"{type(event).__name__} applied to {type(state).__name__}")
    return state


# -- priority ----------------------------------------------------------------------------------


#: Priority bit weights, summed: each reason outranks all the ones below it together.
WEIGHTS: dict[str, int] = {
    "confined": 32,  # quarantined at home or in a sealed building: cannot go out at all
    "elderly_alone": 16,
    "limited_mobility": 8,
    "medical_device": 4,
    "chronic_illness": 2,
    "urgent_kind": 1,  # a medicine refill or help with a medical device
}
VULNERABILITIES = ("elderly_alone", "limited_mobility", "medical_device", "chronic_illness")
URGENT_KINDS = ("medicine", "device_help")


def priority(vulnerabilities: Iterable[str], causes: Iterable[str], kind: str) -> tuple[int, list[str]]:
    """The priority of a request (higher first) and the reasons for it, most important first."""
    causes = tuple(causes)
    reasons: list[str] = []
    score = 0
    if any(c.startswith("case:") for c in causes):
        reasons.append("quarantined")
    if any(c.startswith("seal:") for c in causes):
        reasons.append("sealed")
    if reasons:
        score += WEIGHTS["confined"]
    present = set(vulnerabilities)
    for v in VULNERABILITIES:
        if v in present:
            reasons.append(v)
            score += WEIGHTS[v]
    if kind in URGENT_KINDS:
        score += WEIGHTS["urgent_kind"]
    return score, reasons


# -- stock arithmetic --------------------------------------------------------------------------


def stocked_lines(items: Iterable[ItemLine], config: Config) -> list[ItemLine]:
    """The lines that come out of the community's store (a medicine refill does not)."""
    return [line for line in items if config.stocked(line.item)]


def shortage(items: Iterable[ItemLine], on_hand: Mapping[str, int], config: Config) -> list[dict]:
    """What the store lacks to meet ``items``: [{item, need, on_hand, missing}], empty if nothing."""
    short = []
    for line in stocked_lines(items, config):
        have = on_hand.get(line.item, 0)
        if have < line.qty:
            short.append({"item": line.item, "need": line.qty, "on_hand": have, "missing": line.qty - have})
    return short


def take(items: Iterable[ItemLine], on_hand: Mapping[str, int], config: Config) -> list[StockLine]:
    """Stock lines for taking ``items`` out; the caller has checked :func:`shortage` is empty."""
    out = []
    for line in stocked_lines(items, config):
        after = on_hand.get(line.item, 0) - line.qty
        if after < 0:
            raise ValueError(f"stock of {line.item} would go negative")  # a bug, never a user error
        out.append(StockLine(item=line.item, qty=line.qty, on_hand=after))
    return out


def give(items: Iterable[ItemLine], on_hand: Mapping[str, int], config: Config) -> list[StockLine]:
    """Stock lines for putting ``items`` (back) into the store."""
    return [StockLine(item=line.item, qty=line.qty, on_hand=on_hand.get(line.item, 0) + line.qty)
            for line in stocked_lines(items, config)]


def deltas(event: LogisticsEvent) -> list[tuple[str, int, int]]:
    """(item, signed change, on_hand after) of a stock event; empty for other events."""
    match event:
        case StockReceived() | StockReturned():
            return [(line.item, line.qty, line.on_hand) for line in event.items]
        case StockConsumed():
            return [(line.item, -line.qty, line.on_hand) for line in event.items]
    return []


def allocate(requests: Iterable[tuple[str, Iterable[ItemLine]]], on_hand: Mapping[str, int],
             config: Config) -> dict[str, list[dict]]:
    """Serve open requests in the given (priority) order from ``on_hand``, all or nothing as an
    assignment does: what each one misses when every request before it that can be met is met.
    {request: [{item, need, missing}]}, an empty list for a request the store can meet."""
    left = {item: max(qty, 0) for item, qty in on_hand.items()}
    missing: dict[str, list[dict]] = {}
    for request, items in requests:
        lines = stocked_lines(items, config)
        short = [{"item": line.item, "need": line.qty, "missing": line.qty - left.get(line.item, 0)}
                 for line in lines if left.get(line.item, 0) < line.qty]
        if not short:
            for line in lines:
                left[line.item] -= line.qty
        missing[request] = short
    return missing
