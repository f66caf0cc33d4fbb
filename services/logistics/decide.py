"""``decide(facts, command) -> events``: the logistics rules, pure.

The handler loads the facts (aggregates, the directory's view of the household, the stock on hand)
and routes the events to their streams (:func:`services.logistics.domain.stream_of`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Mapping, assert_never

from services.logistics.commands import (
    AssignDelivery,
    CancelRequest,
    Command,
    RaiseDailyRequest,
    RecordDelivery,
    RedeemVoucher,
    ReceiveStock,
    RequestSupplies,
    ReserveMasks,
    ResolveWelfareCheck,
    StartDailySupply,
    StopDailySupply,
    PlaceGroupOrder,
    RecordGroupOrderDelivered,
    HandOutGroupOrder,
    RegisterVolunteer,
    RecordVolunteerHours,
    RecordVisit,
)
from services.logistics import orders, volunteers
from services.logistics.config import MASKS, Config
from services.logistics.domain import (
    VULNERABILITIES,
    GroupOrder,
    HoursLog,
    LogisticsEvent,
    Masks,
    Plan,
    Receipt,
    Request,
    Volunteer,
    Welfare,
    daily_request_id,
    give,
    priority,
    shortage,
    take,
    welfare_check_id,
)
from shared.contracts.logistics import (
    DailySupplyStarted,
    DailySupplyStopped,
    DeliveryAssigned,
    DeliveryCompleted,
    DeliveryFailed,
    ItemLine,
    MasksReserved,
    StockConsumed,
    StockReceived,
    StockReturned,
    SupplyRequestClosed,
    SupplyRequested,
    VoucherRedeemed,
    WelfareCheckRaised,
    WelfareCheckResolved,
)
from shared.errors import Conflict, NotFound, Rejected


@dataclass(frozen=True, slots=True, kw_only=True)
class Household:
    """Where a household lives and who in it is vulnerable (the directory's view)."""

    household: str
    community: str
    compound: str
    building: str
    vulnerabilities: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True)
class Facts:
    """What the handler loaded; None where a stream is empty or not needed.

    request_supplies: household, request (the id, if taken), plan · assign_delivery: request,
    on_hand · record_delivery: request, household, welfare, on_hand · cancel_request: request,
    on_hand · receive_stock: receipt, on_hand · reserve_masks: household, masks, number,
    voucher_taken (the voucher id filled with the number if not given) ·
    redeem_voucher: masks (of the voucher's household), on_hand · resolve_welfare_check: welfare ·
    start_daily_supply / raise_daily_request: household, plan, request (the day's, if raised) ·
    stop_daily_supply: plan · place_group_order: compound, order (if the id is taken) ·
    record_group_order_delivered / hand_out_group_order: order, compound · register_volunteer:
    volunteer · record_volunteer_hours: volunteer, hours · record_visit: household.
    """

    #: The service's settings (catalogue, mask limit and period, daily food, the city's day).
    config: Config = Config()
    household: Household | None = None
    request: Request | None = None
    plan: Plan | None = None
    masks: Masks | None = None
    welfare: Welfare | None = None
    receipt: Receipt | None = None
    on_hand: Mapping[str, int] = field(default_factory=dict)
    #: reserve_masks: the printed number drawn for the voucher (from a sequence: unique).
    number: str | None = None
    #: reserve_masks: another household's voucher already has this id.
    voucher_taken: bool = False
    #: group orders: the order's compound (place: the one named), as the directory knows it.
    compound: orders.Compound | None = None
    order: GroupOrder | None = None
    #: register_volunteer / record_volunteer_hours: the registration, and the hours of this community.
    volunteer: Volunteer | None = None
    hours: HoursLog | None = None


def decide(facts: Facts, cmd: Command) -> list[LogisticsEvent]:
    """The events a command produces, or a NotFound / Conflict / Rejected error."""
    match cmd:
        case RequestSupplies():
            return _request_supplies(facts, cmd)
        case AssignDelivery():
            return _assign(facts, cmd)
        case RecordDelivery():
            return _record(facts, cmd)
        case CancelRequest():
            return _cancel(facts, cmd)
        case ReceiveStock():
            return _receive(facts, cmd)
        case ReserveMasks():
            return _reserve(facts, cmd)
        case RedeemVoucher():
            return _redeem(facts, cmd)
        case ResolveWelfareCheck():
            return _resolve(facts, cmd)
        case StartDailySupply():
            return _start(facts, cmd)
        case StopDailySupply():
            return _stop(facts, cmd)
        case RaiseDailyRequest():
            return _raise(facts, cmd)
        case PlaceGroupOrder():
            return orders.place(cmd, _at(cmd), facts.compound, facts.order)
        case RecordGroupOrderDelivered():
            return orders.delivered(cmd, _at(cmd), facts.order, facts.compound)
        case HandOutGroupOrder():
            return orders.hand_out(cmd, _at(cmd), facts.order, facts.compound)
        case RegisterVolunteer():
            return volunteers.register(cmd, _at(cmd), facts.volunteer)
        case RecordVolunteerHours():
            return volunteers.record_hours(cmd, _at(cmd), facts.config.day(_at(cmd)), facts.volunteer,
                                           facts.hours)
        case RecordVisit():
            h = facts.household
            return volunteers.visit(cmd, _at(cmd), (h.community, h.compound, h.building) if h else None)
        case _:
            assert_never(cmd)


# -- requests and deliveries -------------------------------------------------------------------


def _request_supplies(facts: Facts, cmd: RequestSupplies) -> list[LogisticsEvent]:
    h = _household(facts, cmd.household, cmd.community)
    request = _filled(cmd.request, "request")
    if facts.request is not None:
        raise Conflict(f"request id {request} is taken", field="request")
    score, reasons = priority(h.vulnerabilities, facts.plan.causes if facts.plan else (), cmd.kind)
    return [SupplyRequested(
        community=h.community, request=request, household=h.household, compound=h.compound,
        building=h.building, kind=cmd.kind, items=list(cmd.items),
        note=cmd.note.strip() if cmd.note else None, priority=score, priority_reasons=reasons,
        requested_at=_at(cmd), requested_by=cmd.actor,
    )]


def _assign(facts: Facts, cmd: AssignDelivery) -> list[LogisticsEvent]:
    r = _open_request(facts, cmd.request)
    common = dict(community=r.community, request=r.request, household=r.household,
                  volunteer=cmd.volunteer, items=list(r.items), assigned_at=_at(cmd), assigned_by=cmd.actor)
    if r.status == "assigned":
        if r.volunteer == cmd.volunteer:
            raise Rejected(f"request {r.request} is already assigned to {cmd.volunteer}", reason="already_assigned")
        return [DeliveryAssigned(**common, attempt=r.attempts, reassigned=True)]  # goods already out
    short = shortage(r.items, facts.on_hand, facts.config)
    if short:
        raise Rejected(
            f"not enough in stock for request {r.request}: "
            + "; ".join(f"{s['item']} needs {s['need']}, {s['on_hand']} on hand" for s in short)
            + ". The request stays open: receive stock, then assign again",
            field="request", reason="out_of_stock",
        )
    events: list[LogisticsEvent] = [DeliveryAssigned(**common, attempt=r.attempts + 1)]
    taken = take(r.items, facts.on_hand, facts.config)
    if taken:
        events.append(StockConsumed(community=r.community, household=r.household, request=r.request,
                                    items=taken, consumed_at=_at(cmd), consumed_by=cmd.actor))
    return events


def _record(facts: Facts, cmd: RecordDelivery) -> list[LogisticsEvent]:
    r = _request(facts, cmd.request)
    if r.status != "assigned":
        reason = "not_assigned" if r.is_open else "request_closed"
        raise Rejected(f"request {r.request} is {r.status}, not out for delivery; assign it first",
                       reason=reason)
    at, by = _at(cmd), cmd.actor
    if cmd.outcome == "delivered":
        return [DeliveryCompleted(community=r.community, request=r.request, household=r.household,
                                  volunteer=r.volunteer or "", items=list(r.items), attempt=r.attempts,
                                  completed_at=at, completed_by=by)]
    raised, check = None, None
    if cmd.outcome == "no_answer":
        raised = _welfare_check(facts, r, at, by)
        if raised is not None:
            check = raised.check
        elif _welfare_open(facts, r):
            check = facts.welfare.open.check  # still nobody answers: the open check stands
    events: list[LogisticsEvent] = [DeliveryFailed(
        community=r.community, request=r.request, household=r.household, volunteer=r.volunteer or "",
        outcome=cmd.outcome, attempt=r.attempts, welfare_check=check, failed_at=at, failed_by=by)]
    events += _returned(facts, r, at, by)
    if cmd.outcome == "refused":
        events.append(SupplyRequestClosed(community=r.community, request=r.request, household=r.household,
                                          reason="refused", closed_at=at, closed_by=by))
    if raised:
        events.append(raised)
    return events


def _welfare_open(facts: Facts, r: Request) -> bool:
    return (facts.welfare is not None and facts.welfare.open is not None
            and facts.welfare.household == r.household)


def _welfare_check(facts: Facts, r: Request, at: datetime, by: str) -> WelfareCheckRaised | None:
    """No answer at a vulnerable household: a welfare check, unless one is open already."""
    vulnerable = set(facts.household.vulnerabilities if facts.household else ())
    vulnerable |= {reason for reason in r.reasons if reason in VULNERABILITIES}
    if not vulnerable or _welfare_open(facts, r):
        return None
    n = (facts.welfare.raised if facts.welfare else 0) + 1
    return WelfareCheckRaised(
        community=r.community, check=welfare_check_id(r.household, n), household=r.household,
        compound=r.compound, building=r.building, request=r.request,
        vulnerabilities=[v for v in VULNERABILITIES if v in vulnerable], raised_at=at, raised_by=by)


def _returned(facts: Facts, r: Request, at: datetime, by: str) -> list[LogisticsEvent]:
    back = give(r.items, facts.on_hand, facts.config)
    if not back:
        return []
    return [StockReturned(community=r.community, household=r.household, request=r.request, items=back,
                          returned_at=at, returned_by=by)]


def _cancel(facts: Facts, cmd: CancelRequest) -> list[LogisticsEvent]:
    r = _open_request(facts, cmd.request)
    at = _at(cmd)
    events = _returned(facts, r, at, cmd.actor) if r.status == "assigned" else []
    events.append(SupplyRequestClosed(community=r.community, request=r.request, household=r.household,
                                      reason="cancelled", note=cmd.note.strip() if cmd.note else None,
                                      closed_at=at, closed_by=cmd.actor))
    return events


def _request(facts: Facts, request: str) -> Request:
    if facts.request is None:
        raise NotFound(f"request {request} does not exist", field="request")
    return facts.request


def _open_request(facts: Facts, request: str) -> Request:
    r = _request(facts, request)
    if not r.is_open:
        raise Rejected(f"request {request} is {r.status}: nothing more to do", reason="request_closed")
    return r


# -- stock and masks -------------------------------------------------------------------------


def _receive(facts: Facts, cmd: ReceiveStock) -> list[LogisticsEvent]:
    receipt = _filled(cmd.receipt, "receipt")
    if facts.receipt is not None:
        raise Conflict(f"receipt id {receipt} is taken", field="receipt")
    return [StockReceived(
        community=cmd.community, receipt=receipt, items=give(cmd.items, facts.on_hand, facts.config),
        source=cmd.source, from_=cmd.from_.strip() if cmd.from_ else None,
        received_at=_at(cmd), received_by=cmd.actor,
    )]


def _reserve(facts: Facts, cmd: ReserveMasks) -> list[LogisticsEvent]:
    h = _household(facts, cmd.household, cmd.community)
    number, voucher = _filled(facts.number, "number"), _filled(cmd.voucher, "voucher")
    if facts.voucher_taken or (facts.masks is not None and voucher in facts.masks.vouchers):
        raise Conflict(f"voucher id {voucher} is taken", field="voucher")
    config = facts.config
    start, end = config.period(config.day(_at(cmd)))
    reserved = facts.masks.reserved_in(start) if facts.masks else 0
    if reserved + cmd.qty > config.mask_limit:
        raise Rejected(
            f"household {h.household} has reserved {reserved} of its {config.mask_limit} masks for "
            f"{start} to {end}; at most {config.mask_limit - reserved} more", field="qty",
            reason="limit_reached")
    return [MasksReserved(
        community=h.community, household=h.household, voucher=voucher, number=number, qty=cmd.qty,
        period_start=start, period_end=end, reserved_in_period=reserved + cmd.qty,
        limit=config.mask_limit, reserved_at=_at(cmd), reserved_by=cmd.actor,
    )]


def _redeem(facts: Facts, cmd: RedeemVoucher) -> list[LogisticsEvent]:
    voucher = facts.masks.vouchers.get(cmd.voucher) if facts.masks else None
    if voucher is None or facts.masks is None:
        raise NotFound(f"voucher {cmd.voucher} does not exist", field="voucher")
    masks = facts.masks
    if voucher.redeemed:
        raise Rejected(f"voucher {voucher.number} was already redeemed", field="voucher",
                       reason="already_redeemed")
    line = [ItemLine(item=MASKS, qty=voucher.qty)]
    if shortage(line, facts.on_hand, facts.config):
        raise Rejected(f"out of masks: voucher {voucher.number} needs {voucher.qty}, "
                       f"{facts.on_hand.get(MASKS, 0)} on hand; it stays valid for the next delivery",
                       field="voucher", reason="out_of_stock")
    at = _at(cmd)
    return [
        VoucherRedeemed(community=masks.community, household=masks.household, voucher=voucher.voucher,
                        number=voucher.number, qty=voucher.qty, redeemed_at=at, redeemed_by=cmd.actor),
        StockConsumed(community=masks.community, household=masks.household, voucher=voucher.voucher,
                      items=take(line, facts.on_hand, facts.config), consumed_at=at, consumed_by=cmd.actor),
    ]


# -- welfare checks -----------------------------------------------------------------------------


def _resolve(facts: Facts, cmd: ResolveWelfareCheck) -> list[LogisticsEvent]:
    w = facts.welfare
    if w is None or w.open is None:
        raise Rejected(f"household {cmd.household} has no open welfare check", field="household",
                       reason="no_open_check")
    return [WelfareCheckResolved(
        community=w.community, check=w.open.check, household=w.household, outcome=cmd.outcome,
        note=cmd.note.strip() if cmd.note else None, resolved_at=_at(cmd), resolved_by=cmd.actor,
    )]


# -- the daily supply of confined households ----------------------------------------------------


def _start(facts: Facts, cmd: StartDailySupply) -> list[LogisticsEvent]:
    h = facts.household
    if h is None:
        who = f"household {cmd.household}" if cmd.household else f"resident {cmd.resident}"
        raise NotFound(f"{who} is not known to logistics (not in the registry's directory)",
                       field="household" if cmd.household else "resident")
    plan = facts.plan
    if plan is not None and cmd.cause in plan.causes:
        raise Rejected(f"the daily supply of household {h.household} already runs for {cmd.cause}",
                       reason="already_started")
    causes = (plan.causes if plan else ()) + (cmd.cause,)
    on = cmd.on or facts.config.day(_at(cmd))
    events: list[LogisticsEvent] = [DailySupplyStarted(
        community=h.community, household=h.household, compound=h.compound, building=h.building,
        cause=cmd.cause, causes=list(causes), starts_on=on, started_at=_at(cmd), started_by=cmd.actor,
    )]
    if facts.request is None:  # the day's food, unless that day's request exists already
        events.append(_daily(facts, h, causes, on, cmd))
    return events


def _stop(facts: Facts, cmd: StopDailySupply) -> list[LogisticsEvent]:
    plan = facts.plan
    if plan is None or cmd.cause not in plan.causes:
        who = plan.household if plan else (cmd.household or f"resident {cmd.resident}")
        raise Rejected(f"no daily supply runs for {who} because of {cmd.cause}", reason="not_started")
    causes = [c for c in plan.causes if c != cmd.cause]
    return [DailySupplyStopped(
        community=plan.community, household=plan.household, cause=cmd.cause, causes=causes,
        active=bool(causes), stopped_at=_at(cmd), stopped_by=cmd.actor,
    )]


def _raise(facts: Facts, cmd: RaiseDailyRequest) -> list[LogisticsEvent]:
    plan = facts.plan
    if plan is None or not plan.active:
        raise Rejected(f"household {cmd.household} has no daily supply now", reason="no_daily_supply")
    if facts.request is not None:
        raise Rejected(f"the daily request of household {cmd.household} for {cmd.on} exists already",
                       reason="already_requested")
    h = facts.household or Household(household=plan.household, community=plan.community,
                                     compound=plan.compound, building=plan.building)
    return [_daily(facts, h, plan.causes, cmd.on, cmd)]


def _daily(facts: Facts, h: Household, causes, on: date, cmd: Command) -> SupplyRequested:
    score, reasons = priority(h.vulnerabilities, causes, "food")
    return SupplyRequested(
        community=h.community, request=daily_request_id(h.household, on), household=h.household,
        compound=h.compound, building=h.building, kind="food",
        items=[ItemLine(item=item, qty=qty) for item, qty in facts.config.daily_food],
        priority=score, priority_reasons=reasons, daily_on=on, requested_at=_at(cmd), requested_by=cmd.actor,
    )


# -- helpers -----------------------------------------------------------------------------------


def _household(facts: Facts, household: str, community: str) -> Household:
    h = facts.household
    if h is None:
        raise NotFound(f"household {household} is not registered (or not yet known to logistics)",
                       field="household")
    if h.community != community:
        raise NotFound(f"household {household} is not in {community}", field="household")
    return h


def _at(cmd: Command) -> datetime:
    if cmd.occurred_at is None:
        raise ValueError("occurred_at must be filled before decide")
    return cmd.occurred_at


def _filled(value: str | None, name: str) -> str:
    if value is None:
        raise ValueError(f"{name} must be filled (by the runtime, or the handler) before decide")
    return value
