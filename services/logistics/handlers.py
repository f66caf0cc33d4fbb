"""Logistics command handlers: load the facts, decide (pure), append to every stream touched, and
write the service's own rows in the same transaction.

Stock is read under a transaction-level lock on the community's store, held until the batch
commits, so a second process deciding on the same store waits and then sees the first one's
result. Within a batch, ``ctx.scratch`` carries what earlier commands of the batch did to it.
"""
from __future__ import annotations

from typing import Any, Iterable

import msgspec

from services.logistics import tables
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
    voucher_number,
)
from services.logistics.decide import Facts, Household, decide
from services.logistics.domain import (
    LogisticsEvent,
    Plan,
    Request,
    Welfare,
    by_stream,
    daily_request_id,
    deltas,
    masks_stream,
    plan_stream,
    receipt_stream,
    request_stream,
    shortage,
    welfare_stream,
)
from services.logistics.config import MASKS, Config
from shared.context import Context
from shared.contracts.logistics import DailySupplyStarted, MasksReserved, SupplyRequested


# -- loading facts ------------------------------------------------------------------------------


async def state(ctx: Context, stream_id: str):
    return (await ctx.load(stream_id))[0]


async def household(ctx: Context, household_id: str) -> Household | None:
    """The directory's view of a household, with its residents' vulnerabilities."""
    row = await ctx.conn.fetchrow(tables.HOUSEHOLD, household_id)
    if row is None:
        return None
    return Household(household=row["household"], community=row["community"], compound=row["compound"],
                     building=row["building"], vulnerabilities=frozenset(row["vulnerabilities"]))


async def resident_household(ctx: Context, resident: str) -> str | None:
    return await ctx.conn.fetchval("SELECT household FROM logistics.dir_residents WHERE resident = $1",
                                   resident)


def _stock_cache(ctx: Context) -> dict[tuple[str, str], int]:
    return ctx.scratch.setdefault("stock", {})


async def lock_stock(ctx: Context, community: str, items: Iterable[str]) -> dict[str, int]:
    """On-hand figures of ``items`` as this batch sees them, the community's store locked until
    the batch commits.

    One lock per community (not per row) so that a delivery of several items cannot deadlock with
    another process taking the same items in another order, and so that an item's first receipt,
    which has no row yet to lock, is serialized too.
    """
    cache, locked = _stock_cache(ctx), ctx.scratch.setdefault("stores", set())
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
    cache, seen = _stock_cache(ctx), ctx.scratch.setdefault("peeked", {})
    items = list(items)
    unseen = [i for i in items if (community, i) not in cache and (community, i) not in seen]
    if unseen:
        rows = {r["item"]: r["on_hand"] for r in await ctx.conn.fetch(tables.PEEK_STOCK, community, unseen)}
        seen.update({(community, i): rows.get(i, 0) for i in unseen})
    return {i: cache.get((community, i), seen.get((community, i), 0)) for i in items}


# -- appending and writing ------------------------------------------------------------------------


async def commit(ctx: Context, events: list[LogisticsEvent]) -> None:
    """Append each stream's events at the version read, then write the rows that follow them."""
    groups = by_stream(events)
    for stream_id, group in groups:
        _, version = await ctx.load(stream_id)
        ctx.append(stream_id, version, group)
    cache = _stock_cache(ctx)
    for event in events:
        for item, delta, on_hand in deltas(event):
            ctx.write(tables.STOCK_DELTA, event.community, item, delta, _when(event))
            cache[(event.community, item)] = on_hand
        if isinstance(event, MasksReserved):
            ctx.write(tables.INSERT_VOUCHER, event.voucher, event.number, event.household, event.community)
            ctx.scratch.setdefault("vouchers", {})[event.voucher] = (event.household, event.community)
    # The day a plan is covered up to: a daily request raised, or a start (which raises the day's
    # request unless it exists already). The scheduler skips a plan covered today.
    covered = {e.household: (e.priority, e.daily_on) for e in events
               if isinstance(e, SupplyRequested) and e.daily_on is not None}
    for e in events:
        if isinstance(e, DailySupplyStarted) and e.household not in covered:
            covered[e.household] = (None, e.starts_on)
    plans = set(covered)
    for stream_id, group in groups:
        match await state(ctx, stream_id):
            case Request() as request:
                ctx.write(tables.UPSERT_REQUEST, *tables.request_row(request, _when(group[-1])))
            case Welfare() as welfare:
                ctx.write(tables.UPSERT_WELFARE, *tables.welfare_row(welfare))
            case Plan() as plan:
                plans.add(plan.household)
    for household_id in sorted(plans):
        plan = await state(ctx, plan_stream(household_id))
        if isinstance(plan, Plan):
            ctx.write(tables.UPSERT_PLAN, *tables.plan_row(plan, *covered.get(household_id, (None, None))))


def _when(event: Any):
    """The instant of an event: its one ``*_at`` field."""
    for name in event.__struct_fields__:
        if name.endswith("_at"):
            return getattr(event, name)
    raise ValueError(f"{type(event).__name__} has no *_at field")


class Handlers:
    """The command handlers, bound to the committee's settings."""

    def __init__(self, config: Config):
        self.config = config

    def table(self) -> dict[str, Any]:
        return {
            "request_supplies": self.request_supplies,
            "assign_delivery": self.assign_delivery,
            "record_delivery": self.record_delivery,
            "cancel_request": self.cancel_request,
            "receive_stock": self.receive_stock,
            "reserve_masks": self.reserve_masks,
            "redeem_voucher": self.redeem_voucher,
            "resolve_welfare_check": self.resolve_welfare_check,
            "start_daily_supply": self.start_daily_supply,
            "stop_daily_supply": self.stop_daily_supply,
            "raise_daily_request": self.raise_daily_request,
        }

    def prefetch(self, cmd: Command) -> list[str]:
        """Streams a command will surely read, loaded for the whole batch in one query."""
        match cmd:
            case RequestSupplies():
                return [plan_stream(cmd.household)] + ([request_stream(cmd.request)] if cmd.request else [])
            case AssignDelivery() | RecordDelivery() | CancelRequest():
                return [request_stream(cmd.request)]
            case ReserveMasks():
                return [masks_stream(cmd.household)]
            case ResolveWelfareCheck():
                return [welfare_stream(cmd.household)]
            case StartDailySupply() if cmd.household and (cmd.on or cmd.occurred_at):
                on = cmd.on or self.config.day(cmd.occurred_at)
                return [plan_stream(cmd.household), request_stream(daily_request_id(cmd.household, on))]
            case StopDailySupply() if cmd.household:
                return [plan_stream(cmd.household)]
            case RaiseDailyRequest():
                return [plan_stream(cmd.household), request_stream(daily_request_id(cmd.household, cmd.on))]
        return []

    async def _run(self, ctx: Context, cmd: Command, target: str, facts: Facts) -> list[LogisticsEvent]:
        await ctx.expect(target)
        events = decide(facts, cmd)
        await commit(ctx, events)
        return events

    async def request_supplies(self, cmd: RequestSupplies, ctx: Context) -> None:
        target = request_stream(cmd.request)
        facts = Facts(config=self.config, household=await household(ctx, cmd.household),
                      request=await state(ctx, target), plan=await state(ctx, plan_stream(cmd.household)))
        await self._run(ctx, cmd, target, facts)
        on_hand = await peek_stock(ctx, cmd.community, [line.item for line in cmd.items])
        ctx.reply_with(request=cmd.request, missing=shortage(cmd.items, on_hand, self.config))

    async def _request_facts(self, ctx: Context, request_id: str, **more) -> tuple[str, Facts]:
        target = request_stream(request_id)
        request = await state(ctx, target)
        on_hand = {}
        if isinstance(request, Request):
            on_hand = await lock_stock(ctx, request.community, [line.item for line in request.items])
        return target, Facts(config=self.config, request=request, on_hand=on_hand, **more)

    async def assign_delivery(self, cmd: AssignDelivery, ctx: Context) -> None:
        await self._run(ctx, cmd, *await self._request_facts(ctx, cmd.request))

    async def cancel_request(self, cmd: CancelRequest, ctx: Context) -> None:
        await self._run(ctx, cmd, *await self._request_facts(ctx, cmd.request))

    async def record_delivery(self, cmd: RecordDelivery, ctx: Context) -> None:
        target, facts = await self._request_facts(ctx, cmd.request)
        if facts.request is not None:
            h = facts.request.household
            facts = Facts(config=self.config, request=facts.request, on_hand=facts.on_hand,
                          household=await household(ctx, h), welfare=await state(ctx, welfare_stream(h)))
        await self._run(ctx, cmd, target, facts)

    async def receive_stock(self, cmd: ReceiveStock, ctx: Context) -> None:
        target = receipt_stream(cmd.receipt)
        on_hand = await lock_stock(ctx, cmd.community, [line.item for line in cmd.items])
        await self._run(ctx, cmd, target, Facts(config=self.config, receipt=await state(ctx, target),
                                                on_hand=on_hand))

    async def reserve_masks(self, cmd: ReserveMasks, ctx: Context) -> None:
        target = masks_stream(cmd.household)
        h = await household(ctx, cmd.household)
        number, taken = None, False
        if h is not None:  # draw a number only for a command that may succeed
            number = voucher_number(await ctx.conn.fetchval("SELECT nextval('logistics.voucher_numbers')"))
            cmd = msgspec.structs.replace(cmd, voucher=cmd.voucher or number)
            taken = cmd.voucher in ctx.scratch.get("vouchers", {}) or await ctx.conn.fetchval(
                "SELECT 1 FROM logistics.vouchers WHERE voucher = $1", cmd.voucher) is not None
        facts = Facts(config=self.config, household=h, masks=await state(ctx, target), number=number,
                      voucher_taken=taken)
        await self._run(ctx, cmd, target, facts)
        ctx.reply_with(voucher=cmd.voucher, number=number)

    async def redeem_voucher(self, cmd: RedeemVoucher, ctx: Context) -> None:
        found = ctx.scratch.get("vouchers", {}).get(cmd.voucher) or await ctx.conn.fetchrow(
            "SELECT household, community FROM logistics.vouchers WHERE voucher = $1", cmd.voucher)
        if found is None:
            decide(Facts(config=self.config), cmd)  # raises not_found
            return
        household_id, community = found[0], found[1]
        # Lock the stock row before reading the voucher: a second process redeeming the same
        # voucher waits here, then reads the first one's redemption and is refused cleanly.
        on_hand = await lock_stock(ctx, community, [MASKS])
        target = masks_stream(household_id)
        await self._run(ctx, cmd, target, Facts(config=self.config, masks=await state(ctx, target),
                                                on_hand=on_hand))
        ctx.reply_with(on_hand=_stock_cache(ctx)[(community, MASKS)])

    async def resolve_welfare_check(self, cmd: ResolveWelfareCheck, ctx: Context) -> None:
        target = welfare_stream(cmd.household)
        await self._run(ctx, cmd, target, Facts(config=self.config, welfare=await state(ctx, target)))

    async def start_daily_supply(self, cmd: StartDailySupply, ctx: Context) -> None:
        household_id = cmd.household or await resident_household(ctx, cmd.resident)
        if household_id is None:
            decide(Facts(config=self.config), cmd)  # raises not_found: the resident is unknown
            return
        h = await household(ctx, household_id)
        if h is None and cmd.community and cmd.compound and cmd.building:
            # Not in the directory yet: the case's own facts say where the household lives.
            h = Household(household=household_id, community=cmd.community, compound=cmd.compound,
                          building=cmd.building)
        on = cmd.on or self.config.day(cmd.occurred_at)
        target = plan_stream(household_id)
        facts = Facts(config=self.config, household=h, plan=await state(ctx, target),
                      request=await state(ctx, request_stream(daily_request_id(household_id, on))))
        await self._run(ctx, cmd, target, facts)

    async def stop_daily_supply(self, cmd: StopDailySupply, ctx: Context) -> None:
        household_id = cmd.household or await resident_household(ctx, cmd.resident)
        target = plan_stream(household_id) if household_id else None
        plan = await state(ctx, target) if target else None
        if target is None:
            decide(Facts(config=self.config), cmd)  # raises rejected: nothing runs for an unknown resident
            return
        await self._run(ctx, cmd, target, Facts(config=self.config, plan=plan))

    async def raise_daily_request(self, cmd: RaiseDailyRequest, ctx: Context) -> None:
        target = request_stream(daily_request_id(cmd.household, cmd.on))
        facts = Facts(config=self.config, household=await household(ctx, cmd.household),
                      plan=await state(ctx, plan_stream(cmd.household)), request=await state(ctx, target))
        await self._run(ctx, cmd, target, facts)
