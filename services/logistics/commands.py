"""Logistics commands as they arrive on ``cordon.cmd.logistics.<command>``: wire types, strict
parsing and validation (shapes, slugs, quantities, the catalogue). Whether a household, request or
voucher exists is the domain's business (``not_found``), not the parser's.
"""
from __future__ import annotations

import re
from datetime import date
from typing import Union, assert_never, get_args

from services.logistics.config import Config
from shared import wire
from shared.contracts.logistics import (
    DeliveryOutcome,
    HoursKind,
    ItemLine,
    OrderLine,
    RequestKind,
    StockSource,
    UnitKind,
    VisitOutcome,
    WelfareOutcome,
)
from shared.errors import Invalid
from shared.subjects import check_community, check_slug
from shared.wire import BaseCommand

MAX_LINES = 50
MAX_QTY = 100_000
#: A volunteer is a slug, or an actor-like id such as ``volunteer:zhang-3``.
_PERSON = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}(?::[a-z0-9][a-z0-9-]{0,62})?$")
#: Why a household is confined: ``case:<case>``, ``seal:<compound>`` or ``seal:<compound>:<building>``.
_CAUSE = re.compile(r"^(?:case:[a-z0-9][a-z0-9-]{0,62}|seal:[a-z0-9][a-z0-9-]{0,62}(?::[a-z0-9][a-z0-9-]{0,62})?)$")
#: Seven or more digits in a row look like a phone number: personal data stays home.
_PHONE_LIKE = re.compile(r"\d[\d \-]{5,}\d")


class RequestSupplies(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    community: str
    household: str
    kind: RequestKind
    items: list[ItemLine]
    note: str | None = None
    request: str | None = None


class AssignDelivery(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    request: str
    volunteer: str


class RecordDelivery(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    request: str
    outcome: DeliveryOutcome


class CancelRequest(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    request: str
    note: str | None = None


class ReceiveStock(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True,
                   rename={"from_": "from"}):
    community: str
    items: list[ItemLine]
    source: StockSource
    from_: str | None = None
    receipt: str | None = None


class ReserveMasks(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    community: str
    household: str
    qty: int
    #: The voucher's id; by default its printed number.
    voucher: str | None = None


class RedeemVoucher(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    voucher: str


class ResolveWelfareCheck(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    household: str
    outcome: WelfareOutcome
    note: str | None = None


class StartDailySupply(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Start the daily food requests of a confined household (policies send it; staff may)."""

    cause: str
    household: str | None = None
    #: When the household is not given (a case of a resident): the resident, looked up.
    resident: str | None = None
    community: str | None = None
    compound: str | None = None
    building: str | None = None
    #: The first day; by default the day of ``occurred_at``.
    on: date | None = None


class StopDailySupply(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    cause: str
    household: str | None = None
    resident: str | None = None


class RaiseDailyRequest(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One day's food request of a household with a daily supply (the scheduler sends it)."""

    household: str
    on: date


class PlaceGroupOrder(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A compound's group order (团购) from a supplier, for a number of households."""

    community: str
    compound: str
    supplier: str
    items: list[OrderLine]
    households: int
    order: str | None = None


class RecordGroupOrderDelivered(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    order: str
    gate: str


class HandOutGroupOrder(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    order: str
    building: str
    households: int


class RegisterVolunteer(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    volunteer: str
    community: str
    team: str
    unit_kind: UnitKind


class RecordVolunteerHours(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Hours on a day; ``gate_shift`` hours name the checkpoint's ``shift`` (logistics records
    them itself from ShiftEnded)."""

    volunteer: str
    community: str
    on: date
    kind: HoursKind
    hours: float
    shift: str | None = None


class RecordVisit(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    household: str
    outcome: VisitOutcome
    volunteer: str | None = None


Command = Union[
    RequestSupplies, AssignDelivery, RecordDelivery, CancelRequest, ReceiveStock, ReserveMasks,
    RedeemVoucher, ResolveWelfareCheck, StartDailySupply, StopDailySupply, RaiseDailyRequest,
    PlaceGroupOrder, RecordGroupOrderDelivered, HandOutGroupOrder, RegisterVolunteer,
    RecordVolunteerHours, RecordVisit,
]

COMMANDS: dict[str, type] = {
    "request_supplies": RequestSupplies,
    "assign_delivery": AssignDelivery,
    "record_delivery": RecordDelivery,
    "cancel_request": CancelRequest,
    "receive_stock": ReceiveStock,
    "reserve_masks": ReserveMasks,
    "redeem_voucher": RedeemVoucher,
    "resolve_welfare_check": ResolveWelfareCheck,
    "start_daily_supply": StartDailySupply,
    "stop_daily_supply": StopDailySupply,
    "raise_daily_request": RaiseDailyRequest,
    "place_group_order": PlaceGroupOrder,
    "record_group_order_delivered": RecordGroupOrderDelivered,
    "hand_out_group_order": HandOutGroupOrder,
    "register_volunteer": RegisterVolunteer,
    "record_volunteer_hours": RecordVolunteerHours,
    "record_visit": RecordVisit,
}

#: The most households one group order serves (the largest compound of the reports has 2,716).
MAX_ORDER_HOUSEHOLDS = 10_000

_CHOICES = {
    "kind": get_args(RequestKind),
    "outcome": get_args(DeliveryOutcome) + get_args(WelfareOutcome) + get_args(VisitOutcome),
    "source": get_args(StockSource),
    "unit_kind": get_args(UnitKind),
}


#: The id field a creating command may leave out; the runtime fills it.
CREATES: dict[type, str] = {RequestSupplies: "request", ReceiveStock: "receipt", PlaceGroupOrder: "order"}


def decode(name: str, payload: bytes) -> Command:
    """Decode ``payload`` strictly as the command ``name`` (no rule checks: :func:`validate`)."""
    return wire.decode("logistics", COMMANDS, name, payload, _CHOICES)


def parse(name: str, payload: bytes, config: Config = Config()) -> Command:
    """Decode ``payload`` strictly as the command ``name`` and validate it against ``config``."""
    return validate(decode(name, payload), config)


def validate(cmd: Command, config: Config = Config()) -> Command:
    """Check what the decoder cannot (the catalogue and the mask limit are ``config``'s); return
    ``cmd`` or raise :class:`Invalid` naming the field."""
    wire.check_common(cmd)
    _no_nul(cmd.command_id, "command_id")
    _no_nul(cmd.actor, "actor")
    match cmd:
        case RequestSupplies():
            check_community(cmd.community)
            check_slug(cmd.household, "household")
            wire.optional_slug(cmd.request, "request")
            lines(cmd.items, config, stocked_only=False)
            note(cmd.note)
        case AssignDelivery():
            check_slug(cmd.request, "request")
            person(cmd.volunteer, "volunteer")
        case RecordDelivery():
            check_slug(cmd.request, "request")
        case CancelRequest():
            check_slug(cmd.request, "request")
            note(cmd.note)
        case ReceiveStock():
            check_community(cmd.community)
            wire.optional_slug(cmd.receipt, "receipt")
            lines(cmd.items, config, stocked_only=True)
            if cmd.from_ is not None:
                text(cmd.from_, "from")
        case ReserveMasks():
            check_community(cmd.community)
            check_slug(cmd.household, "household")
            quantity(cmd.qty, "qty", config.mask_limit)
            if cmd.voucher is not None:
                check_slug(cmd.voucher, "voucher")
                if cmd.voucher.isdigit():
                    raise Invalid("a voucher id of digits only is reserved for printed numbers; "
                                  "include a letter or leave voucher out", field="voucher")
        case RedeemVoucher():
            voucher(cmd.voucher)
        case ResolveWelfareCheck():
            check_slug(cmd.household, "household")
            note(cmd.note)
        case StartDailySupply():
            cause(cmd.cause)
            _household_or_resident(cmd)
            if cmd.community is not None:
                check_community(cmd.community)
            wire.optional_slug(cmd.compound, "compound")
            wire.optional_slug(cmd.building, "building")
        case StopDailySupply():
            cause(cmd.cause)
            _household_or_resident(cmd)
        case RaiseDailyRequest():
            check_slug(cmd.household, "household")
        case PlaceGroupOrder():
            check_community(cmd.community)
            check_slug(cmd.compound, "compound")
            wire.optional_slug(cmd.order, "order")
            supplier(cmd.supplier)
            order_lines(cmd.items)
            quantity(cmd.households, "households", MAX_ORDER_HOUSEHOLDS)
        case RecordGroupOrderDelivered():
            check_slug(cmd.order, "order")
            check_slug(cmd.gate, "gate")
        case HandOutGroupOrder():
            check_slug(cmd.order, "order")
            check_slug(cmd.building, "building")
            quantity(cmd.households, "households", MAX_ORDER_HOUSEHOLDS)
        case RegisterVolunteer():
            person(cmd.volunteer, "volunteer")
            check_community(cmd.community)
            check_slug(cmd.team, "team")
        case RecordVolunteerHours():
            person(cmd.volunteer, "volunteer")
            check_community(cmd.community)
            hours(cmd.hours)
            _shift_only_for_gate(cmd)
        case RecordVisit():
            check_slug(cmd.household, "household")
            if cmd.volunteer is not None:
                person(cmd.volunteer, "volunteer")
        case _:
            assert_never(cmd)
    return cmd


# -- field rules ------------------------------------------------------------------------------


def text(value: object, field: str, limit: int = wire.MAX_TEXT) -> None:
    wire.text(value, field, limit)
    _no_nul(value, field)


def _no_nul(value: object, field: str) -> None:
    if isinstance(value, str) and "\x00" in value:  # PostgreSQL text cannot hold it
        raise Invalid(f"{field} must not contain the NUL character (\\u0000); remove it", field=field)


def note(value: str | None, field: str = "note") -> None:
    if value is None:
        return
    text(value, field, wire.MAX_NOTE)
    if _PHONE_LIKE.search(value):
        raise Invalid(f"{field} looks like it holds a phone number; personal data stays in the registry, "
                      "not in logistics notes", field=field)


def quantity(value: int, field: str, limit: int = MAX_QTY) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise Invalid(f"{field} must be a whole number from 1 to {limit}, got {value!r}", field=field)


def lines(items: list[ItemLine], config: Config, *, stocked_only: bool) -> None:
    """Items of the catalogue, each once, with quantities from 1 to MAX_QTY."""
    if not items:
        raise Invalid("items must list at least one {item, qty}", field="items")
    if len(items) > MAX_LINES:
        raise Invalid(f"items lists {len(items)} lines; at most {MAX_LINES}", field="items")
    for i, line in enumerate(items):
        if line.item not in config.catalogue:
            raise Invalid(f"items[{i}].item {line.item!r} is not in the catalogue; known items: "
                          f"{', '.join(sorted(config.catalogue))}", field=f"items[{i}].item")
        if stocked_only and not config.stocked(line.item):
            raise Invalid(f"items[{i}].item {line.item!r} is not kept in stock (it is sourced for each "
                          "request)", field=f"items[{i}].item")
        quantity(line.qty, f"items[{i}].qty")
    wire.no_duplicates([line.item for line in items], "items")


def person(value: str, field: str) -> None:
    if not isinstance(value, str) or not _PERSON.match(value):
        raise Invalid(f"{field} {value!r} must be an id like vol-17 or volunteer:zhang-3 (lowercase a-z, "
                      "0-9, '-', at most one ':'); never a name", field=field)


def supplier(value: str) -> None:
    """A shop's or company's name: free text, so it refuses what looks like a phone number."""
    text(value, "supplier")
    if not value.strip():
        raise Invalid("supplier must name the shop or company that supplies the order", field="supplier")
    note(value, "supplier")


def order_lines(items: list[OrderLine]) -> None:
    """The supplier's items (slugs, not the community's catalogue), each once, 1 to MAX_QTY."""
    if not items:
        raise Invalid("items must list at least one {item, qty}", field="items")
    if len(items) > MAX_LINES:
        raise Invalid(f"items lists {len(items)} lines; at most {MAX_LINES}", field="items")
    for i, line in enumerate(items):
        check_slug(line.item, f"items[{i}].item")
        quantity(line.qty, f"items[{i}].qty")
    wire.no_duplicates([line.item for line in items], "items")


#: The most hours one record may hold: a day.
MAX_HOURS = 24


def hours(value: float) -> None:
    """More than 0 and at most a day, in whole minutes (2.5 is 2 h 30 min; the views sum minutes)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_HOURS:
        raise Invalid(f"hours must be more than 0 and at most {MAX_HOURS}, got {value!r}", field="hours")
    if abs(value * 60 - round(value * 60)) > 1e-6:
        raise Invalid(f"hours {value!r} is not a whole number of minutes (e.g. 2.5 or 0.25)", field="hours")


def _shift_only_for_gate(cmd: RecordVolunteerHours) -> None:
    if (cmd.kind == "gate_shift") != (cmd.shift is not None):
        raise Invalid("gate_shift hours name the checkpoint's shift, and only they do", field="shift")
    wire.optional_slug(cmd.shift, "shift")


def cause(value: str) -> None:
    if not _CAUSE.match(value):
        raise Invalid(f"cause {value!r} must be case:<case>, seal:<compound> or seal:<compound>:<building>",
                      field="cause")


def voucher(value: str) -> None:
    check_slug(value, "voucher")
    if value.isdigit() and not number_ok(value):
        raise Invalid(f"voucher number {value} has a wrong check digit; compare it with the printed "
                      "voucher", field="voucher")


def _household_or_resident(cmd: StartDailySupply | StopDailySupply) -> None:
    if (cmd.household is None) == (cmd.resident is None):
        raise Invalid("give exactly one of household and resident", field="household")
    wire.optional_slug(cmd.household, "household")
    wire.optional_slug(cmd.resident, "resident")


# -- voucher numbers --------------------------------------------------------------------------


def luhn_digit(digits: str) -> str:
    """The Luhn check digit of ``digits``: catches every single mistyped digit and most swaps."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return str(-total % 10)


def voucher_number(serial: int) -> str:
    """The printed number of the ``serial``-th voucher: at least six digits and a check digit."""
    digits = f"{serial:06d}"
    return digits + luhn_digit(digits)


def number_ok(number: str) -> bool:
    return len(number) >= 2 and number.isdigit() and luhn_digit(number[:-1]) == number[-1]

