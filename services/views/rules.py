"""What each public event does to the read models: pure, no I/O, no clock.

An event becomes a few *ops* on the figures of its community:

- ``Delta(metric, day, n)``: add ``n`` to a metric on a day (passages, fevers, arrivals by arrival day);
- ``Put(set, key, metric, value)``: a thing (a resident, a case, a pass, a stock item) now counts
  ``value`` towards ``metric``; whatever it counted before is taken back first. A case that moves
  from home quarantine to hospital is one Put; a stock item's figure is its latest ``on_hand``;
- ``Drop(set, key)``: the thing no longer counts (moved out, case closed, pass revoked).

Put and Drop are resolved against the stored state of the thing (see :mod:`services.views.fold`),
so a revoke of a pass that was never issued, or a second close, changes no figure. Every resulting
change is recorded as a per-day delta; a board for day D sums the deltas up to D (levels), on D
(flows) or over the 14 days ending on D (arrivals). Event types without a rule change no figure.
"""
from __future__ import annotations

from datetime import date, datetime, tzinfo
from typing import NamedTuple, Union

from typing import get_args

from shared.contracts.checkpoint import (
    Destination,
    FeverDetected,
    ParcelCollected,
    ParcelDropped,
    PassageAllowed,
    PassageDenied,
    PassIssued,
    PassRevoked,
    VehicleAllowed,
    VehicleDenied,
)
from shared.contracts.logistics import (
    DailySupplyStarted,
    DailySupplyStopped,
    DeliveryCompleted,
    DeliveryFailed,
    GroupOrderDelivered,
    GroupOrderHandedOut,
    GroupOrderPlaced,
    StockConsumed,
    StockReceived,
    StockReturned,
    SupplyRequestClosed,
    SupplyRequested,
    VolunteerHoursRecorded,
    WelfareCheckRaised,
    WelfareCheckResolved,
)
from shared.contracts.quarantine import (
    AreaSealed,
    CaseClosed,
    CaseOpened,
    CaseReleased,
    CaseTransferred,
    CheckinMissed,
    ResultRecorded,
    SampleTaken,
    SealLifted,
)
from shared.contracts.registry import (
    ArrivalRegistered,
    ArrivalVerified,
    CallRecorded,
    HouseholdRegistered,
    IdentityGranted,
    IdentityRevoked,
    ResidentMovedOut,
    ResidentRegistered,
    TipOffFollowedUp,
    TipOffRecorded,
)
from shared.envelope import Event


class Delta(NamedTuple):
    metric: str
    day: date
    n: int = 1


class Put(NamedTuple):
    set: str
    key: str
    metric: str
    value: int = 1


class Drop(NamedTuple):
    set: str
    key: str


Op = Union[Delta, Put, Drop]

#: Metrics summed over every day up to the board's day: how things stand at the end of that day.
LEVELS = (
    "residents", "households", "arrivals_pending",
    "quarantine_home", "quarantine_centralized", "quarantine_monitoring", "quarantine_hospital",
    "sealed_compounds", "sealed_buildings", "passes_active",
    "requests_open", "welfare_checks_open", "daily_supply_households",
    "group_orders_open",
    "results_pending",
    "parcels_waiting",
    "tip_offs_open",
)
#: Residents let out, by where they said they were going (issue 17).
OUTINGS = tuple(f"outings_{d}" for d in get_args(Destination))
#: Metrics counted on the board's day only.
FLOWS = (
    "passages_in", "passages_out", "passages_denied", "fevers", "checkins_missed",
    "positive_results", "deliveries", "group_orders_delivered",
    "vehicles_checked", "vehicles_denied", "parcels_dropped", "parcels_collected", *OUTINGS,
    "calls", "calls_reached", "tip_offs_followed_up",
)
#: Counted over the 14 days ending on the board's day (by the day of arrival).
WINDOWS = ("arrivals",)
WINDOW_DAYS = 14
#: Stock metrics are levels named ``stock.<item>``.
STOCK = "stock."
#: Volunteers' minutes per team are flows named ``volunteer_minutes.<team>``, on the day worked;
#: hours of no registered team under :data:`NO_TEAM` (not a slug: no team can be named so).
VOLUNTEER = "volunteer_minutes."
NO_TEAM = "(none)"


def local_day(instant: datetime, zone: tzinfo) -> date:
    """The calendar day of an instant in the city's time zone: what "today" means on a board."""
    return instant.astimezone(zone).date()


def ops(event: Event, community: str, day: date) -> tuple[Op, ...]:
    """The ops of one event that happened on ``day`` (local) in ``community``; an event of an
    earlier schema has the ops of its current schema (``upcast``)."""
    event = event.upcast()
    rule = RULES.get(type(event))
    return rule(event, community, day) if rule else ()


def _arrival(e: ArrivalRegistered, community: str, day: date) -> tuple[Op, ...]:
    counted = Delta("arrivals", e.arrived_on)
    return (counted, Put("arrival", e.arrival, "arrivals_pending")) if e.requires_verification else (counted,)


def _stock(e: StockReceived | StockConsumed | StockReturned, community: str, day: date) -> tuple[Op, ...]:
    # Each line carries the community's stock after the change: the figure is that.
    return tuple(Put("stock", f"{community}/{line.item}", STOCK + line.item, line.on_hand) for line in e.items)


def _delivery_failed(e: DeliveryFailed, community: str, day: date) -> tuple[Op, ...]:
    # No answer reopens the request for another attempt; a refusal ends it.
    return (Drop("request", e.request),) if e.outcome == "refused" else ()


def _hours(e: VolunteerHoursRecorded, community: str, day: date) -> tuple[Op, ...]:
    return (Delta(VOLUNTEER + (e.team or NO_TEAM), e.on, round(e.hours * 60)),)


def _passage_allowed(e: PassageAllowed, community: str, day: date) -> tuple[Op, ...]:
    way = Delta("passages_in" if e.direction == "in" else "passages_out", day)
    return (way, Delta(f"outings_{e.destination}", day)) if e.destination is not None else (way,)


def _call(e: CallRecorded, community: str, day: date) -> tuple[Op, ...]:
    made = Delta("calls", day)
    return (made, Delta("calls_reached", day)) if e.outcome.startswith("reached_") else (made,)


#: One rule per event type (a dict lookup: the projector applies a million events a minute).
RULES = {
    ResidentRegistered: lambda e, c, d: (Put("resident", e.resident, "residents"),),
    ResidentMovedOut: lambda e, c, d: (Drop("resident", e.resident),),
    HouseholdRegistered: lambda e, c, d: (Put("household", e.household, "households"),),
    ArrivalRegistered: _arrival,
    ArrivalVerified: lambda e, c, d: (Drop("arrival", e.arrival),),
    PassIssued: lambda e, c, d: (Put("pass", e.pass_, "passes_active"),),
    PassRevoked: lambda e, c, d: (Drop("pass", e.pass_),),
    PassageAllowed: _passage_allowed,
    PassageDenied: lambda e, c, d: (Delta("passages_denied", d),),
    FeverDetected: lambda e, c, d: (Delta("fevers", d),),
    CaseOpened: lambda e, c, d: (Put("case", e.case, f"quarantine_{e.kind}"),),
    CaseTransferred: lambda e, c, d: (Put("case", e.case, f"quarantine_{e.to}"),),
    CaseReleased: lambda e, c, d: (Put("case", e.case, "quarantine_monitoring"),),
    CaseClosed: lambda e, c, d: (Drop("case", e.case),),
    AreaSealed: lambda e, c, d: (_seal(e, c),),
    SealLifted: lambda e, c, d: (_seal(e, c),),
    CheckinMissed: lambda e, c, d: (Delta("checkins_missed", d),),
    ResultRecorded: lambda e, c, d: (Drop("sample", _sample(e)),
                                     *((Delta("positive_results", d),) if e.result == "positive" else ())),
    SampleTaken: lambda e, c, d: (Put("sample", _sample(e), "results_pending"),),
    SupplyRequested: lambda e, c, d: (Put("request", e.request, "requests_open"),),
    DeliveryCompleted: lambda e, c, d: (Drop("request", e.request), Delta("deliveries", d)),
    DeliveryFailed: _delivery_failed,
    SupplyRequestClosed: lambda e, c, d: (Drop("request", e.request),),
    WelfareCheckRaised: lambda e, c, d: (Put("welfare", e.check, "welfare_checks_open"),),
    WelfareCheckResolved: lambda e, c, d: (Drop("welfare", e.check),),
    StockReceived: _stock,
    StockConsumed: _stock,
    StockReturned: _stock,
    DailySupplyStarted: lambda e, c, d: (Put("daily_supply", e.household, "daily_supply_households"),),
    DailySupplyStopped: lambda e, c, d: () if e.active else (Drop("daily_supply", e.household),),
    # A group order is open until every household it is for has been handed its share.
    GroupOrderPlaced: lambda e, c, d: (Put("group_order", e.order, "group_orders_open"),),
    GroupOrderDelivered: lambda e, c, d: (Delta("group_orders_delivered", d),),
    GroupOrderHandedOut: lambda e, c, d: (Drop("group_order", e.order),) if e.complete else (),
    VolunteerHoursRecorded: _hours,
    VehicleAllowed: lambda e, c, d: (Delta("vehicles_checked", d),),
    VehicleDenied: lambda e, c, d: (Delta("vehicles_checked", d), Delta("vehicles_denied", d)),
    ParcelDropped: lambda e, c, d: (Delta("parcels_dropped", d), Put("parcel", e.parcel, "parcels_waiting")),
    ParcelCollected: lambda e, c, d: (Delta("parcels_collected", d), Drop("parcel", e.parcel)),
    CallRecorded: _call,
    TipOffRecorded: lambda e, c, d: (Put("tip_off", e.tip_off, "tip_offs_open"),),
    TipOffFollowedUp: lambda e, c, d: (Drop("tip_off", e.tip_off), Delta("tip_offs_followed_up", d)),
}


#: Events about who may use Cordon, not about a community's work: no figure, no timeline, and
#: their community (``cordon.access.city`` for the city-wide identities) is not listed as one.
NOT_VIEWED = frozenset({IdentityGranted, IdentityRevoked})


def _sample(event: SampleTaken | ResultRecorded) -> str:
    return f"{event.screening}/{event.resident}"


def _seal(event: AreaSealed | SealLifted, community: str) -> Op:
    key = f"{community}/{event.compound}/{event.building or '*'}"
    if isinstance(event, SealLifted):
        return Drop("seal", key)
    return Put("seal", key, "sealed_compounds" if event.building is None else "sealed_buildings")
