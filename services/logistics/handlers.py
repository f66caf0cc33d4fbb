"""Logistics command handlers: load the facts, decide (pure), append to every stream touched, and
write the service's own rows in the same transaction.

Stock is read under a transaction-level lock on the community's store, held until the batch
commits, so a second process deciding on the same store waits and then sees the first one's
result. Within a batch, :class:`Scratch` carries what earlier commands of the batch did to it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable

import msgspec

from services.logistics import commands, tables
from services.logistics.config import MASKS, Config
from services.logistics.decide import Facts, Household, decide
from services.logistics.domain import (
    GroupOrder,
    LogisticsEvent,
    Plan,
    Request,
    Visits,
    Volunteer,
    Welfare,
    by_stream,
    daily_request_id,
    deltas,
    hours_stream,
    masks_stream,
    order_stream,
    plan_stream,
    receipt_stream,
    request_stream,
    shortage,
    visit_stream,
    volunteer_stream,
    welfare_stream,
)
from services.logistics.orders import Compound
from shared import directory
from shared.context import Context
from shared.contracts.logistics import (
    DailySupplyStarted,
    MasksReserved,
    SupplyRequested,
    VolunteerHoursRecorded,
)
from shared.runtime import Handler


@dataclass
class Scratch:
    """What earlier commands of a batch did that the tables do not show yet."""

    #: (community, item) -> on hand as this batch has left it (read under the store's lock)
    stock: dict[tuple[str, str], int] = field(default_factory=dict)
    #: communities whose store this batch holds locked
    stores: set[str] = field(default_factory=set)
    #: (community, item) -> on hand read without the lock, only to tell a new request what it misses
    peeked: dict[tuple[str, str], int] = field(default_factory=dict)
    #: voucher -> (household, community) of the vouchers this batch reserved
    vouchers: dict[str, tuple[str, str]] = field(default_factory=dict)


# -- loading facts ------------------------------------------------------------------------------



async def household(ctx: Context, household_id: str) -> Household | None:
    """The directory's view of a household, with its residents' vulnerabilities."""
    row = await directory.household(ctx.conn, tables.SCHEMA, household_id, vulnerabilities=True)
    if row is None:
        return None
    return ctx.vet(f"household:{household_id}", Household(
        household=row["household"], community=row["community"], compound=row["compound"],
        building=row["building"], vulnerabilities=frozenset(row["vulnerabilities"])))


async def lock_stock(ctx: Context, community: str, items: Iterable[str]) -> dict[str, int]:
    """On-hand figures of ``items`` as this batch sees them, the community's store locked until
    the batch commits.

    One lock per community (not per row) so that a delivery of several items cannot deadlock with
    another process taking the same items in another order, and so that an item's first receipt,
    which has no row yet to lock, is serialized too.
    """
    cache, locked = ctx.scratch.stock, ctx.scratch.stores
    if community not in locked:
        await ctx.conn.execute(tables.LOCK_STORE, community)
        locked.add(community)
    missing = sorted({i for i in items if (community, i) not in cache})
    if missing:
        found = {r["item"]: r["on_hand"] for r in await ctx.conn.fetch(tables.PEEK_STOCK, community, missing)}
        for item in missing:
            cache[(community, item)] = found.get(item, 0)
    return {item: cache[(community, item)] for item in items}


async def peek_stock(ctx: Context, community: str, items: Iterable[str]) -> dict[str, int]:
    """On-hand figures for information only (no lock, read once per batch): what a new request
    would miss now."""
    cache, seen = ctx.scratch.stock, ctx.scratch.peeked
    items = list(items)
    unseen = [i for i in items if (community, i) not in cache and (community, i) not in seen]
    if unseen:
        rows = {r["item"]: r["on_hand"] for r in await ctx.conn.fetch(tables.PEEK_STOCK, community, unseen)}
        seen.update({(community, i): rows.get(i, 0) for i in unseen})
    return {i: cache.get((community, i), seen.get((community, i), 0)) for i in items}


# -- appending and writing ------------------------------------------------------------------------


async def record(ctx: Context, events: list[LogisticsEvent]) -> None:
    """Append each stream's events at the version read, then write the rows that follow them (the
    batch commits them, with the command, or not at all)."""
    groups = by_stream(events)
    for stream_id, group in groups:
        _, version = await ctx.load(stream_id)
        ctx.append(stream_id, version, group)
    cache = ctx.scratch.stock
    for event in events:
        for item, delta, on_hand in deltas(event):
            ctx.write(tables.STOCK_DELTA, event.community, item, delta, _when(event))
            cache[(event.community, item)] = on_hand
        if isinstance(event, MasksReserved):
            ctx.write(tables.INSERT_VOUCHER, event.voucher, event.number, event.household, event.community)
            ctx.scratch.vouchers[event.voucher] = (event.household, event.community)
        if isinstance(event, VolunteerHoursRecorded):
            ctx.write(tables.INSERT_HOURS, event.community, event.volunteer, event.team, event.unit_kind,
                      event.kind, event.on, round(event.hours * 60), event.shift, event.recorded_at)
    # The day a plan is covered up to: a daily request raised, or a start (which raises the day's
    # request unless it exists already). The scheduler skips a plan covered today.
    covered = {e.household: (e.priority, e.daily_on) for e in events
               if isinstance(e, SupplyRequested) and e.daily_on is not None}
    for e in events:
        if isinstance(e, DailySupplyStarted) and e.household not in covered:
            covered[e.household] = (None, e.starts_on)
    plans = set(covered)
    for stream_id, group in groups:
        match await ctx.state(stream_id):
            case Request() as request:
                ctx.write(tables.UPSERT_REQUEST, *tables.request_row(request, _when(group[-1])))
            case Welfare() as welfare:
                ctx.write(tables.UPSERT_WELFARE, *tables.welfare_row(welfare))
            case Plan() as plan:
                plans.add(plan.household)
            case GroupOrder() as order:
                ctx.write(tables.UPSERT_ORDER, *tables.order_row(order))
            case Volunteer() as volunteer:
                ctx.write(tables.UPSERT_VOLUNTEER, *tables.volunteer_row(volunteer, _when(group[-1])))
            case Visits() as visits:
                ctx.write(tables.UPSERT_VISITS, *tables.visits_row(visits))
    for household_id in sorted(plans):
        plan = await ctx.state(plan_stream(household_id))
        if isinstance(plan, Plan):
            ctx.write(tables.UPSERT_PLAN, *tables.plan_row(plan, *covered.get(household_id, (None, None))))


def _when(event: Any):
    """The instant of an event: its one ``*_at`` field."""
    for name in event.__struct_fields__:
        if name.endswith("_at"):
            return getattr(event, name)
    raise ValueError(f"{type(event).__name__} has no *_at field")




# -- the handlers, one per command ----------------------------------------------------------------


def prefetch(cmd: commands.Command, config: Config) -> list[str]:
    """Streams a completed command will surely read, loaded for the whole batch in one query
    (``config``: the city's day, which names the day's request of a daily supply)."""
    match cmd:
        case commands.RequestSupplies():
            return [plan_stream(cmd.household), request_stream(cmd.request)]
        case commands.AssignDelivery() | commands.RecordDelivery() | commands.CancelRequest():
            return [request_stream(cmd.request)]
        case commands.ReserveMasks():
            return [masks_stream(cmd.household)]
        case commands.ResolveWelfareCheck():
            return [welfare_stream(cmd.household)]
        case commands.StartDailySupply() if cmd.household:
            on = cmd.on or config.day(cmd.occurred_at)
            return [plan_stream(cmd.household), request_stream(daily_request_id(cmd.household, on))]
        case commands.StopDailySupply() if cmd.household:
            return [plan_stream(cmd.household)]
        case commands.RaiseDailyRequest():
            return [plan_stream(cmd.household), request_stream(daily_request_id(cmd.household, cmd.on))]
        case commands.PlaceGroupOrder() | commands.RecordGroupOrderDelivered() | commands.HandOutGroupOrder():
            return [order_stream(cmd.order)]
        case commands.RegisterVolunteer():
            return [volunteer_stream(cmd.volunteer)]
        case commands.RecordVolunteerHours():
            return [volunteer_stream(cmd.volunteer), hours_stream(cmd.community, cmd.volunteer)]
        case commands.RecordVisit():
            return [visit_stream(cmd.household)]
    return []


async def _decide_and_record(ctx: Context, cmd: commands.Command, target: str, facts: Facts) -> None:
    await ctx.expect(target)
    await record(ctx, decide(facts, cmd))


async def request_supplies(cmd: commands.RequestSupplies, ctx: Context) -> None:
    target = request_stream(cmd.request)
    facts = Facts(config=ctx.config, household=await household(ctx, cmd.household),
                  request=await ctx.state(target), plan=await ctx.state(plan_stream(cmd.household)))
    await _decide_and_record(ctx, cmd, target, facts)
    on_hand = await peek_stock(ctx, cmd.community, [line.item for line in cmd.items])
    ctx.reply_with(request=cmd.request, missing=shortage(cmd.items, on_hand, ctx.config))


async def _request_facts(ctx: Context, request_id: str) -> tuple[str, Facts]:
    """The request's stream and facts, its items' stock locked (they may go out or come back)."""
    target = request_stream(request_id)
    request = await ctx.state(target)
    on_hand = {}
    if isinstance(request, Request):
        on_hand = await lock_stock(ctx, request.community, [line.item for line in request.items])
    return target, Facts(config=ctx.config, request=request, on_hand=on_hand)


async def assign_delivery(cmd: commands.AssignDelivery, ctx: Context) -> None:
    await _decide_and_record(ctx, cmd, *await _request_facts(ctx, cmd.request))


async def record_delivery(cmd: commands.RecordDelivery, ctx: Context) -> None:
    target, facts = await _request_facts(ctx, cmd.request)
    if facts.request is not None:
        h = facts.request.household
        facts = dataclasses.replace(facts, household=await household(ctx, h),
                                    welfare=await ctx.state(welfare_stream(h)))
    await _decide_and_record(ctx, cmd, target, facts)


async def cancel_request(cmd: commands.CancelRequest, ctx: Context) -> None:
    await _decide_and_record(ctx, cmd, *await _request_facts(ctx, cmd.request))


async def receive_stock(cmd: commands.ReceiveStock, ctx: Context) -> None:
    target = receipt_stream(cmd.receipt)
    on_hand = await lock_stock(ctx, cmd.community, [line.item for line in cmd.items])
    await _decide_and_record(ctx, cmd, target, Facts(config=ctx.config, receipt=await ctx.state(target),
                                                     on_hand=on_hand))


async def reserve_masks(cmd: commands.ReserveMasks, ctx: Context) -> None:
    target = masks_stream(cmd.household)
    h = await household(ctx, cmd.household)
    number, taken = None, False
    if h is not None:  # draw a number only for a command that may succeed
        number = commands.voucher_number(await ctx.conn.fetchval(tables.NEXT_VOUCHER_SERIAL))
        cmd = msgspec.structs.replace(cmd, voucher=cmd.voucher or number)
        taken = cmd.voucher in ctx.scratch.vouchers or await ctx.conn.fetchval(
            tables.VOUCHER_TAKEN, cmd.voucher) is not None
    facts = Facts(config=ctx.config, household=h, masks=await ctx.state(target), number=number,
                  voucher_taken=taken)
    await _decide_and_record(ctx, cmd, target, facts)
    ctx.reply_with(voucher=cmd.voucher, number=number)


async def redeem_voucher(cmd: commands.RedeemVoucher, ctx: Context) -> None:
    found = ctx.scratch.vouchers.get(cmd.voucher) or await ctx.conn.fetchrow(tables.VOUCHER, cmd.voucher)
    if found is None:
        decide(Facts(config=ctx.config), cmd)  # raises not_found
        return
    household_id, community = found[0], found[1]
    # Lock the stock row before reading the voucher: a second process redeeming the same
    # voucher waits here, then reads the first one's redemption and is refused cleanly.
    on_hand = await lock_stock(ctx, community, [MASKS])
    target = masks_stream(household_id)
    await _decide_and_record(ctx, cmd, target, Facts(config=ctx.config, masks=await ctx.state(target),
                                                     on_hand=on_hand))
    ctx.reply_with(on_hand=ctx.scratch.stock[(community, MASKS)])


async def resolve_welfare_check(cmd: commands.ResolveWelfareCheck, ctx: Context) -> None:
    target = welfare_stream(cmd.household)
    await _decide_and_record(ctx, cmd, target, Facts(config=ctx.config, welfare=await ctx.state(target)))


async def _household_of(ctx: Context, cmd: commands.StartDailySupply | commands.StopDailySupply) -> str | None:
    """The household a plan command names, or its resident's (None for an unknown resident)."""
    return cmd.household or await directory.household_of(ctx.conn, tables.SCHEMA, cmd.resident)


async def start_daily_supply(cmd: commands.StartDailySupply, ctx: Context) -> None:
    household_id = await _household_of(ctx, cmd)
    if household_id is None:
        decide(Facts(config=ctx.config), cmd)  # raises not_found: the resident is unknown
        return
    h = await household(ctx, household_id)
    if h is None and cmd.community and cmd.compound and cmd.building:
        # Not in the directory yet: the case's own facts say where the household lives.
        h = Household(household=household_id, community=cmd.community, compound=cmd.compound,
                      building=cmd.building)
    on = cmd.on or ctx.config.day(cmd.occurred_at)
    target = plan_stream(household_id)
    facts = Facts(config=ctx.config, household=h, plan=await ctx.state(target),
                  request=await ctx.state(request_stream(daily_request_id(household_id, on))))
    await _decide_and_record(ctx, cmd, target, facts)


async def stop_daily_supply(cmd: commands.StopDailySupply, ctx: Context) -> None:
    household_id = await _household_of(ctx, cmd)
    if household_id is None:
        decide(Facts(config=ctx.config), cmd)  # raises rejected: nothing runs for an unknown resident
        return
    target = plan_stream(household_id)
    await _decide_and_record(ctx, cmd, target, Facts(config=ctx.config, plan=await ctx.state(target)))


async def raise_daily_request(cmd: commands.RaiseDailyRequest, ctx: Context) -> None:
    target = request_stream(daily_request_id(cmd.household, cmd.on))
    facts = Facts(config=ctx.config, household=await household(ctx, cmd.household),
                  plan=await ctx.state(plan_stream(cmd.household)), request=await ctx.state(target))
    await _decide_and_record(ctx, cmd, target, facts)


async def compound(ctx: Context, community: str, compound_id: str) -> Compound | None:
    """The directory's view of a compound: its buildings and gates."""
    row = await directory.compound(ctx.conn, tables.SCHEMA, community, compound_id)
    if row is None:
        return None
    return Compound(community=row["community"], compound=row["compound"], buildings=frozenset(row["buildings"]),
                    gates=frozenset(row["gates"]))


async def place_group_order(cmd: commands.PlaceGroupOrder, ctx: Context) -> None:
    target = order_stream(cmd.order)
    facts = Facts(config=ctx.config, compound=await compound(ctx, cmd.community, cmd.compound),
                  order=await ctx.state(target))
    await _decide_and_record(ctx, cmd, target, facts)


async def _order_facts(ctx: Context, order_id: str) -> tuple[str, Facts]:
    target = order_stream(order_id)
    order = await ctx.state(target)
    where = await compound(ctx, order.community, order.compound) if isinstance(order, GroupOrder) else None
    return target, Facts(config=ctx.config, order=order, compound=where)


async def record_group_order_delivered(cmd: commands.RecordGroupOrderDelivered, ctx: Context) -> None:
    await _decide_and_record(ctx, cmd, *await _order_facts(ctx, cmd.order))


async def hand_out_group_order(cmd: commands.HandOutGroupOrder, ctx: Context) -> None:
    await _decide_and_record(ctx, cmd, *await _order_facts(ctx, cmd.order))


async def register_volunteer(cmd: commands.RegisterVolunteer, ctx: Context) -> None:
    target = volunteer_stream(cmd.volunteer)
    await _decide_and_record(ctx, cmd, target, Facts(config=ctx.config, volunteer=await ctx.state(target)))


async def record_volunteer_hours(cmd: commands.RecordVolunteerHours, ctx: Context) -> None:
    target = hours_stream(cmd.community, cmd.volunteer)
    facts = Facts(config=ctx.config, volunteer=await ctx.state(volunteer_stream(cmd.volunteer)),
                  hours=await ctx.state(target))
    await _decide_and_record(ctx, cmd, target, facts)


async def record_visit(cmd: commands.RecordVisit, ctx: Context) -> None:
    target = visit_stream(cmd.household)
    await _decide_and_record(ctx, cmd, target, Facts(config=ctx.config, household=await household(ctx, cmd.household)))


HANDLERS: dict[str, Handler] = {
    "request_supplies": request_supplies,
    "assign_delivery": assign_delivery,
    "record_delivery": record_delivery,
    "cancel_request": cancel_request,
    "receive_stock": receive_stock,
    "reserve_masks": reserve_masks,
    "redeem_voucher": redeem_voucher,
    "resolve_welfare_check": resolve_welfare_check,
    "start_daily_supply": start_daily_supply,
    "stop_daily_supply": stop_daily_supply,
    "raise_daily_request": raise_daily_request,
    "place_group_order": place_group_order,
    "record_group_order_delivered": record_group_order_delivered,
    "hand_out_group_order": hand_out_group_order,
    "register_volunteer": register_volunteer,
    "record_volunteer_hours": record_volunteer_hours,
    "record_visit": record_visit,
}
