"""Logistics, property by property: given ANY sequence of supply requests, assignments, deliveries,
cancellations, stock receipts, mask reservations and redemptions, welfare checks and daily supplies,
on a few households, requests and vouchers that keep colliding, at times that move forward with
occasional jumps of days (and a command now and then recorded late),

then
- stock on hand never goes negative, and every stock event's figure is the one before it plus its
  change: the store's counter can be rebuilt from the record;
- a request holds its goods exactly while it is out for delivery or delivered: taken once when
  assigned, given back once when a delivery fails or the request is cancelled, never twice;
- a request that is delivered, refused or cancelled accepts nothing more;
- a voucher is redeemed at most once, and takes its masks out of the store once;
- the masks a household reserved in a period never exceed the limit;
- a household has at most one welfare check open, and raises one only when a vulnerable household
  did not answer;
- every stream begins with its one creating event (a request, a receipt, a daily request per day);
- replaying every stream gives exactly the state the decisions were made against.

Three stories tell it, each with its own mix of commands so that each goes deep: deliveries (and
the welfare checks they raise), mask vouchers (with requests taking from the same store), and the
daily food of confined households. The commands go through the same path as in the service: ``validate`` (as the runtime does), facts
built as ``handlers.py`` builds them, ``decide``, the events routed to their streams
(``by_stream``) and folded with ``evolve``. A refusal (any ``CommandError``) writes nothing.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import msgspec
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from services.logistics.commands import (
    AssignDelivery,
    CancelRequest,
    RaiseDailyRequest,
    RecordDelivery,
    RedeemVoucher,
    ReceiveStock,
    RequestSupplies,
    ReserveMasks,
    ResolveWelfareCheck,
    StartDailySupply,
    StopDailySupply,
    validate,
    voucher_number,
)
from services.logistics.config import MASKS, Config
from services.logistics.decide import Facts, Household, decide
from services.logistics.domain import (
    VULNERABILITIES,
    Masks,
    Plan,
    Request,
    Welfare,
    by_stream,
    daily_request_id,
    deltas,
    evolve,
    masks_stream,
    plan_stream,
    receipt_stream,
    request_stream,
    welfare_stream,
)
from shared.contracts.logistics import (
    DeliveryAssigned,
    DeliveryFailed,
    ItemLine,
    MasksReserved,
    StockConsumed,
    StockReceived,
    StockReturned,
    SupplyRequested,
    VoucherRedeemed,
    WelfareCheckRaised,
)
from shared.errors import CommandError
from tests.support.record import MACHINE, Record, moments, mostly

CST = timezone(timedelta(hours=8))
START = datetime(2022, 4, 1, 8, 0, tzinfo=CST)
NANGONG, TIANSHAN = "changning.chengjiaqiao.nangong", "changning.chengjiaqiao.tianshan"
STAFF = "staff:li-na"
#: A small limit, so that households reach it.
CONFIG = Config(mask_limit=6)
VALIDATE_ARGS = (CONFIG,)
#: The directory's view of the households (h-9 is not registered).
HOUSEHOLDS = {
    "h-1": Household(household="h-1", community=NANGONG, compound="sunny", building="b1",
                     vulnerabilities=frozenset({"elderly_alone"})),
    "h-2": Household(household="h-2", community=NANGONG, compound="sunny", building="b2"),
    "h-3": Household(household="h-3", community=TIANSHAN, compound="moon", building="b1",
                     vulnerabilities=frozenset({"limited_mobility", "chronic_illness"})),
}
HOUSEHOLD_IDS = [*HOUSEHOLDS, "h-9"]
REQUEST_IDS = ["r-1", "r-2", "r-3", "r-4"]
STOCKED = ["vegetable-pack", "rice", MASKS]
ITEMS = [*STOCKED, "medicine"]
CAUSES = ["case:k-1", "seal:sunny", "seal:sunny:b1"]
TERMINAL = ("delivered", "refused", "cancelled")

# -- strategies ------------------------------------------------------------------------------------

#: Quantities: one to four mostly; now and then zero, or the largest accepted, or one past it.
quantities = mostly([1, 2, 3, 4], [0, 99_999, 100_000, 100_001], one_in=12)


def _lines(choices: list[str]):
    """One to three lines of ``choices`` (each item once: a later line of the same item is dropped)."""
    def made(pairs) -> list[ItemLine]:
        seen: dict[str, int] = {}
        for item, qty in pairs:
            seen.setdefault(item, qty)
        return [ItemLine(item=i, qty=q) for i, q in seen.items()]
    return st.lists(st.tuples(st.sampled_from(choices), quantities), min_size=1, max_size=3).map(made)


#: What a request asks for: catalogue items (medicine is not kept in stock).
lines = _lines(ITEMS)
#: What a receipt brings: stocked items, by the dozen; now and then a line of an item the store does
#: not keep, or a quantity of zero or past the largest accepted.
received = st.lists(st.tuples(mostly(STOCKED, ["medicine"]), mostly(list(range(1, 31)), [0, 100_000, 100_001])),
                    min_size=1, max_size=3).map(lambda pairs: [ItemLine(item=i, qty=q) for i, q in dict(pairs[::-1]).items()])
households = mostly(["h-1", "h-2", "h-3"], ["h-9"], one_in=6)
#: Mostly the household's own community.
elsewhere = mostly([False], [True], one_in=10)
picks = st.integers(0, 40)


class Logistics(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.record = Record(evolve)
        self.now = START
        self.n = 0
        #: (community, item) -> on hand: the store's counter as the handler keeps it
        self.stock: dict[tuple[str, str], int] = defaultdict(int)
        #: voucher id -> (household, community): the voucher table (a voucher's id is its printed
        #: number unless the caller named it)
        self.vouchers: dict[str, tuple[str, str]] = {}
        self.serial = 0
        #: the requests that exist, in the order they were made
        self.requests: list[str] = []
        #: (request, item) -> goods out with the request (consumed - returned)
        self.out: Counter = Counter()
        self.redeemed: Counter = Counter()
        self.voucher_masks: Counter = Counter()

    # -- the service's path ----------------------------------------------------------------------

    def at(self, moment) -> datetime:
        advance, late = moment
        self.now += advance
        return self.now - late

    def common(self, moment) -> dict:
        self.n += 1
        return {"command_id": f"c-{self.n}", "actor": STAFF, "occurred_at": self.at(moment)}

    def run(self, cmd, facts):
        """validate, load the facts (``facts(cmd) -> (cmd, Facts)``), decide, store; None if refused."""
        try:
            cmd, loaded = facts(validate(cmd, CONFIG))
            events = decide(loaded, cmd)
        except CommandError:
            return None
        self.store(events, cmd)
        return events

    def store(self, events, cmd) -> None:
        if any(isinstance(e, WelfareCheckRaised) for e in events):
            assert any(isinstance(e, DeliveryFailed) and e.outcome == "no_answer" for e in events), (
                f"a welfare check raised without a delivery nobody answered: {events}")
        for stream, group in by_stream(events):
            before = self.record.state(stream)
            if isinstance(before, Request):
                assert before.status not in TERMINAL, (
                    f"request {before.request} is {before.status} and still took {group}")
            for i, event in enumerate(group):
                self.check_event(stream, before, event, first=i == 0 and self.record.version(stream) == 0)
            self.record.append(stream, group, at=cmd.occurred_at, actor=cmd.actor)
            self.record.check_replay([stream])
        for event in events:
            for item, delta, on_hand in deltas(event):
                key = (event.community, item)
                assert on_hand == self.stock[key] + delta, (
                    f"{type(event).__name__} says {item} is at {on_hand} after {delta:+}, "
                    f"but it was at {self.stock[key]}")
                self.stock[key] = on_hand
            match event:
                case StockConsumed(request=str() as r) | StockReturned(request=r):
                    sign = -1 if isinstance(event, StockReturned) else 1
                    for line in event.items:
                        self.out[(r, line.item)] += sign * line.qty
                case StockConsumed(voucher=str() as v):
                    self.voucher_masks[v] += sum(line.qty for line in event.items if line.item == MASKS)
                case VoucherRedeemed():
                    self.redeemed[event.voucher] += 1
                case MasksReserved():
                    self.vouchers[event.voucher] = (event.household, event.community)
                case SupplyRequested():
                    self.requests.append(event.request)

    def check_event(self, stream, before, event, *, first: bool) -> None:
        """What each event may only do to the state it is applied to."""
        if isinstance(event, (SupplyRequested, StockReceived)):
            assert first, f"{type(event).__name__} in {stream}, which exists already"
        if isinstance(event, WelfareCheckRaised):
            assert not (isinstance(before, Welfare) and before.open), (
                f"a second welfare check raised for {event.household} while {before.open.check} is open")
            h = HOUSEHOLDS.get(event.household)
            assert event.vulnerabilities and set(event.vulnerabilities) <= set(VULNERABILITIES)
            assert h is None or set(event.vulnerabilities) >= h.vulnerabilities
        if isinstance(event, DeliveryAssigned) and not event.reassigned:
            assert isinstance(before, Request) and before.status == "open"

    def on_hand(self, community: str, items) -> dict[str, int]:
        return {item: self.stock[(community, item)] for item in items}

    def pick_request(self, pick: int, *statuses: str) -> str:
        """A request that exists, mostly one in ``statuses`` if any; from 30, any request, whatever
        its status; 40: one that never will."""
        if pick == 40:
            return "r-never"
        states = [self.record.state(request_stream(r)) for r in self.requests]
        some = [r.request for r in states if r.status in statuses and pick < 30] or self.requests
        return some[pick % len(some)]

    # -- the commands every story has ----------------------------------------------------------

    @initialize(moment=moments, items=received, masks=st.integers(0, 20), asked=lines)
    def a_morning_in_nangong(self, moment, items, masks, asked):
        """The street office's allocation to Nangong, masks included (any of it may be zero), and a
        request of the elderly resident living alone in h-1."""
        items = [line for line in items if line.item != MASKS] + [ItemLine(item=MASKS, qty=masks)]
        self.receive_stock(moment, NANGONG, items, "rc-0")
        self.request_supplies(moment, "h-1", False, "food", asked, "r-1")

    # -- what always holds -----------------------------------------------------------------------

    @invariant()
    def stock_on_hand_is_never_negative(self):
        negative = {key: n for key, n in self.stock.items() if n < 0}
        assert not negative, f"stock went negative: {negative}"

    @invariant()
    def a_request_holds_its_goods_exactly_while_out_or_delivered(self):
        for request in self.requests:
            r = self.record.state(request_stream(request))
            if not isinstance(r, Request):
                continue
            holds = r.status in ("assigned", "delivered")
            for line in r.items:
                expected = line.qty if holds and CONFIG.stocked(line.item) else 0
                assert self.out[(request, line.item)] == expected, (
                    f"request {request} ({r.status}) has {self.out[(request, line.item)]} {line.item} out "
                    f"of the store, not {expected}")

    @invariant()
    def a_voucher_is_redeemed_at_most_once_and_its_masks_taken_once(self):
        for voucher, n in self.redeemed.items():
            assert n <= 1, f"voucher {voucher} was redeemed {n} times"
        for stream, masks in self.record.states.items():
            if not isinstance(masks, Masks):
                continue
            for v in masks.vouchers.values():
                assert self.voucher_masks[v.voucher] == (v.qty if v.redeemed else 0), (
                    f"voucher {v.voucher} (redeemed: {v.redeemed}) took {self.voucher_masks[v.voucher]} masks")

    @invariant()
    def masks_reserved_per_household_and_period_stay_within_the_limit(self):
        for masks in self.record.states.values():
            if isinstance(masks, Masks):
                for period in {v.period_start for v in masks.vouchers.values()}:
                    assert masks.reserved_in(period) <= CONFIG.mask_limit, (
                        f"household {masks.household} reserved {masks.reserved_in(period)} masks in the "
                        f"period from {period}; the limit is {CONFIG.mask_limit}")

    def teardown(self):
        self.record.check_replay()



class Stock:
    """Receipts, requests, assignments and cancellations: what moves goods in and out of the store."""

    @rule(moment=moments, community=st.sampled_from([NANGONG, TIANSHAN]), items=received,
          receipt=mostly([None], ["rc-1"], one_in=5))
    def receive_stock(self, moment, community, items, receipt):
        cmd = ReceiveStock(**self.common(moment), community=community, items=items, source="donation",
                           receipt=receipt or f"rc-auto-{self.n}")
        self.run(cmd, lambda c: (c, Facts(config=CONFIG, receipt=self.record.state(receipt_stream(c.receipt)),
                                          on_hand=self.on_hand(c.community, [line.item for line in c.items]))))

    @rule(moment=moments, household=households, elsewhere=elsewhere,
          kind=st.sampled_from(["food", "medicine", "masks", "other"]), items=lines,
          request=st.sampled_from(REQUEST_IDS))
    def request_supplies(self, moment, household, elsewhere, kind, items, request):
        h = HOUSEHOLDS.get(household)
        community = TIANSHAN if (h is None or h.community == NANGONG) == elsewhere else NANGONG
        cmd = RequestSupplies(**self.common(moment), community=community, household=household, kind=kind,
                              items=items, request=request)
        self.run(cmd, lambda c: (c, Facts(config=CONFIG, household=h,
                                          request=self.record.state(request_stream(c.request)),
                                          plan=self.record.state(plan_stream(c.household)))))

    def _request_facts(self, cmd) -> tuple:
        """As ``handlers._request_facts``: the request, and its items' stock."""
        request = self.record.state(request_stream(cmd.request))
        on_hand = {}
        if isinstance(request, Request):
            on_hand = self.on_hand(request.community, [line.item for line in request.items])
        return cmd, Facts(config=CONFIG, request=request, on_hand=on_hand)

    @rule(moment=moments, pick=picks, volunteer=st.sampled_from(["vol-1", "vol-2"]))
    @precondition(lambda self: self.requests)
    def assign_delivery(self, moment, pick, volunteer):
        cmd = AssignDelivery(**self.common(moment), request=self.pick_request(pick, "open"), volunteer=volunteer)
        self.run(cmd, self._request_facts)

    @rule(moment=moments, pick=picks)
    @precondition(lambda self: self.requests)
    def cancel_request(self, moment, pick):
        self.run(CancelRequest(**self.common(moment), request=self.pick_request(pick, "open", "assigned")),
                 self._request_facts)


class Deliveries:
    """Deliveries made, refused or not answered, and the welfare checks they raise."""

    @rule(moment=moments, pick=picks, outcome=st.sampled_from(["delivered", "no_answer", "no_answer", "refused"]))
    @precondition(lambda self: self.requests)
    def record_delivery(self, moment, pick, outcome):
        cmd = RecordDelivery(**self.common(moment), request=self.pick_request(pick, "assigned"), outcome=outcome)

        def facts(c):
            c, f = self._request_facts(c)
            if f.request is not None:
                h = f.request.household
                f = Facts(config=CONFIG, request=f.request, on_hand=f.on_hand, household=HOUSEHOLDS.get(h),
                          welfare=self.record.state(welfare_stream(h)))
            return c, f
        self.run(cmd, facts)

    @rule(moment=moments, household=st.sampled_from(HOUSEHOLD_IDS),
          outcome=st.sampled_from(["safe", "needs_help"]))
    @precondition(lambda self: any(isinstance(s, Welfare) for s in self.record.states.values()))
    def resolve_welfare_check(self, moment, household, outcome):
        cmd = ResolveWelfareCheck(**self.common(moment), household=household, outcome=outcome)
        self.run(cmd, lambda c: (c, Facts(config=CONFIG, welfare=self.record.state(welfare_stream(household)))))


class Vouchers:
    """Mask reservations and their vouchers redeemed."""

    @rule(moment=moments, household=households, elsewhere=elsewhere,
          qty=mostly([1, 2, 3], [0, CONFIG.mask_limit, CONFIG.mask_limit + 1], one_in=5), voucher=st.sampled_from([None, "v-a", "v-b"]))
    def reserve_masks(self, moment, household, elsewhere, qty, voucher):
        h = HOUSEHOLDS.get(household)
        community = TIANSHAN if (h is None or h.community == NANGONG) == elsewhere else NANGONG
        cmd = ReserveMasks(**self.common(moment), community=community, household=household, qty=qty,
                           voucher=voucher)

        def facts(c):  # as handlers.reserve_masks: a number is drawn for a known household only
            number, taken = None, False
            if h is not None:
                self.serial += 1
                number = voucher_number(self.serial)
                c = msgspec.structs.replace(c, voucher=c.voucher or number)
                taken = c.voucher in self.vouchers
            return c, Facts(config=CONFIG, household=h, masks=self.record.state(masks_stream(c.household)),
                            number=number, voucher_taken=taken)
        self.run(cmd, facts)

    @rule(moment=moments, pick=picks)
    @precondition(lambda self: self.vouchers)
    def redeem_voucher(self, moment, pick):
        """By voucher id (its printed number unless named), of a voucher reserved; now and then one
        never reserved."""
        keys = list(self.vouchers)
        key = {39: "v-never", 40: voucher_number(999)}.get(pick, keys[pick % len(keys)])
        cmd = RedeemVoucher(**self.common(moment), voucher=key)

        def facts(c):  # as handlers.redeem_voucher: the voucher table names the household
            found = self.vouchers.get(c.voucher)
            if found is None:
                return c, Facts(config=CONFIG)
            household, community = found
            return c, Facts(config=CONFIG, masks=self.record.state(masks_stream(household)),
                            on_hand=self.on_hand(community, [MASKS]))
        self.run(cmd, facts)


class DailyFood:
    """The daily food of confined households, started, stopped and raised."""

    @rule(moment=moments, household=st.sampled_from(HOUSEHOLD_IDS), cause=st.sampled_from(CAUSES),
          days=st.sampled_from([None, None, -1, 0, 1]))
    def start_daily_supply(self, moment, household, cause, days):
        common = self.common(moment)
        on = None if days is None else CONFIG.day(common["occurred_at"]) + timedelta(days=days)
        cmd = StartDailySupply(**common, household=household, cause=cause, on=on)

        def facts(c):
            day = c.on or CONFIG.day(c.occurred_at)
            return c, Facts(config=CONFIG, household=HOUSEHOLDS.get(household),
                            plan=self.record.state(plan_stream(household)),
                            request=self.record.state(request_stream(daily_request_id(household, day))))
        self.run(cmd, facts)

    @rule(moment=moments, household=st.sampled_from(HOUSEHOLD_IDS), cause=st.sampled_from(CAUSES))
    @precondition(lambda self: any(isinstance(s, Plan) for s in self.record.states.values()))
    def stop_daily_supply(self, moment, household, cause):
        cmd = StopDailySupply(**self.common(moment), household=household, cause=cause)
        self.run(cmd, lambda c: (c, Facts(config=CONFIG, plan=self.record.state(plan_stream(household)))))

    @rule(moment=moments, household=st.sampled_from(HOUSEHOLD_IDS), days=st.integers(-1, 1))
    @precondition(lambda self: any(isinstance(s, Plan) for s in self.record.states.values()))
    def raise_daily_request(self, moment, household, days):
        common = self.common(moment)
        cmd = RaiseDailyRequest(**common, household=household,
                                on=CONFIG.day(common["occurred_at"]) + timedelta(days=days))
        self.run(cmd, lambda c: (c, Facts(
            config=CONFIG, household=HOUSEHOLDS.get(household), plan=self.record.state(plan_stream(household)),
            request=self.record.state(request_stream(daily_request_id(household, c.on))))))


class DeliveriesStory(Stock, Deliveries, Logistics):
    """Given any sequence of receipts, requests, assignments, deliveries (made, refused, not
    answered), cancellations and welfare checks resolved, then every property above holds."""


class VouchersStory(Stock, Vouchers, Logistics):
    """Given any sequence of mask reservations and redemptions, with receipts, requests, assignments
    and cancellations taking from the same store, then every property above holds."""


class DailyFoodStory(Stock, Deliveries, DailyFood, Logistics):
    """Given any sequence of daily supplies started and stopped and days' food raised, with
    receipts, requests, assignments, deliveries and cancellations, then every property above holds."""


TestDeliveries = DeliveriesStory.TestCase
TestDeliveries.settings = settings(max_examples=60, **MACHINE)
TestVouchers = VouchersStory.TestCase
TestVouchers.settings = settings(max_examples=40, **MACHINE)
TestDailyFood = DailyFoodStory.TestCase
TestDailyFood.settings = settings(max_examples=30, **MACHINE)
