"""Logistics decide/evolve as stories: given events -> when a command -> then events or an error.

Priorities, stock arithmetic, voucher limits, welfare escalation and the daily supply of confined
households, all without I/O.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

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
)
from services.logistics.decide import Facts, Household, decide
from services.logistics.domain import (
    Masks,
    Plan,
    Request,
    Welfare,
    allocate,
    by_stream,
    daily_request_id,
    evolve,
    priority,
    replay,
    shortage,
    stream_of,
)
from services.logistics.config import Config
from shared.contracts.logistics import (
    DailySupplyStarted,
    DailySupplyStopped,
    DeliveryAssigned,
    DeliveryCompleted,
    DeliveryFailed,
    ItemLine,
    MasksReserved,
    StockConsumed,
    StockLine,
    StockReceived,
    StockReturned,
    SupplyRequestClosed,
    SupplyRequested,
    VoucherRedeemed,
    WelfareCheckRaised,
    WelfareCheckResolved,
)
from shared.errors import Conflict, NotFound, Rejected

CST = timezone(timedelta(hours=8))
AT = datetime(2022, 4, 2, 9, 30, tzinfo=CST)  # a Saturday
LATER = AT + timedelta(hours=3)
COMMUNITY = "changning.chengjiaqiao.nangong"
STAFF = "staff:li-na"
CONFIG = Config()
VEG = ItemLine(item="vegetable-pack", qty=2)
RICE = ItemLine(item="rice", qty=1)
MEDICINE = ItemLine(item="medicine", qty=1)


def home(vulnerabilities=(), household="h-201") -> Household:
    return Household(household=household, community=COMMUNITY, compound="sunny-garden", building="b2",
                     vulnerabilities=frozenset(vulnerabilities))


def common(**kw) -> dict:
    return {"command_id": "c-1", "actor": STAFF, "occurred_at": LATER, **kw}


def requested(items=(VEG,), reasons=(), score=0, request="r-1", **kw) -> SupplyRequested:
    return SupplyRequested(**{
        "community": COMMUNITY, "request": request, "household": "h-201", "compound": "sunny-garden",
        "building": "b2", "kind": "food", "items": list(items), "priority": score,
        "priority_reasons": list(reasons), "requested_at": AT, "requested_by": STAFF, **kw})


def assigned(volunteer="vol-1", attempt=1, items=(VEG,)) -> DeliveryAssigned:
    return DeliveryAssigned(community=COMMUNITY, request="r-1", household="h-201", volunteer=volunteer,
                            items=list(items), attempt=attempt, assigned_at=AT, assigned_by=STAFF)


def failed(outcome="no_answer", attempt=1, check=None) -> DeliveryFailed:
    return DeliveryFailed(community=COMMUNITY, request="r-1", household="h-201", volunteer="vol-1",
                          outcome=outcome, attempt=attempt, welfare_check=check, failed_at=AT, failed_by=STAFF)


def raised(n=1, request="r-1") -> WelfareCheckRaised:
    return WelfareCheckRaised(community=COMMUNITY, check=f"h-201-w{n}", household="h-201",
                              compound="sunny-garden", building="b2", request=request,
                              vulnerabilities=["elderly_alone"], raised_at=AT, raised_by=STAFF)


def reserved(voucher="0000018", qty=4, period_start=date(2022, 3, 28)) -> MasksReserved:
    return MasksReserved(community=COMMUNITY, household="h-201", voucher=voucher, number=voucher, qty=qty,
                         period_start=period_start, period_end=period_start + timedelta(days=6),
                         reserved_in_period=qty, limit=10, reserved_at=AT, reserved_by=STAFF)


def started(cause="case:c-1", causes=("case:c-1",)) -> DailySupplyStarted:
    return DailySupplyStarted(community=COMMUNITY, household="h-201", compound="sunny-garden", building="b2",
                              cause=cause, causes=list(causes), starts_on=AT.date(), started_at=AT,
                              started_by=STAFF)


def given(*events):
    return replay(events)


def rejected(facts: Facts, cmd, reason: str) -> Rejected:
    with pytest.raises(Rejected) as info:
        decide(facts, cmd)
    assert info.value.reason == reason and info.value.code == "rejected"
    return info.value


OPEN = given(requested())
OUT = given(requested(), assigned())


# -- priorities --------------------------------------------------------------------------------


def test_a_household_with_no_reason_has_priority_zero():
    assert priority([], [], "food") == (0, [])


@pytest.mark.parametrize("higher, lower", [
    ((["elderly_alone"], ["case:c"], "food"), (VULN := ["elderly_alone", "limited_mobility",
                                                        "medical_device", "chronic_illness"], [], "medicine")),
    ((["elderly_alone"], [], "food"), (["limited_mobility", "medical_device", "chronic_illness"], [], "device_help")),
    ((["limited_mobility"], [], "food"), (["medical_device", "chronic_illness"], [], "medicine")),
    ((["medical_device"], [], "food"), (["chronic_illness"], [], "medicine")),
    ((["chronic_illness"], [], "food"), ([], [], "medicine")),
    (([], [], "medicine"), ([], [], "food")),
    (([], ["seal:sunny-garden"], "food"), (VULN, [], "device_help")),
])
def test_each_reason_outranks_every_reason_below_it_together(higher, lower):
    assert priority(*higher)[0] > priority(*lower)[0]


def test_the_reasons_are_named_most_important_first():
    score, reasons = priority(["chronic_illness", "elderly_alone"], ["seal:sunny-garden:b2", "case:c-9"], "food")
    assert reasons == ["quarantined", "sealed", "elderly_alone", "chronic_illness"]
    assert score == 32 + 16 + 2


def test_quarantine_and_seal_together_count_as_one_confinement():
    assert priority([], ["case:c", "seal:x"], "food")[0] == priority([], ["case:c"], "food")[0] == 32


def test_a_request_records_the_priority_of_the_household_and_its_confinement():
    facts = Facts(household=home(["elderly_alone", "medical_device"]), plan=given(started()))
    [event] = decide(facts, RequestSupplies(**common(community=COMMUNITY, household="h-201", kind="food",
                                                     items=[VEG], request="r-1")))
    assert event.priority == 32 + 16 + 4
    assert event.priority_reasons == ["quarantined", "elderly_alone", "medical_device"]


def test_a_stopped_plan_no_longer_raises_the_priority():
    plan = given(started(), DailySupplyStopped(community=COMMUNITY, household="h-201", cause="case:c-1",
                                               causes=[], active=False, stopped_at=AT, stopped_by=STAFF))
    [event] = decide(Facts(household=home(), plan=plan), RequestSupplies(**common(
        community=COMMUNITY, household="h-201", kind="food", items=[VEG], request="r-1")))
    assert event.priority == 0 and event.priority_reasons == []


# -- requests ----------------------------------------------------------------------------------


def request_cmd(**kw) -> RequestSupplies:
    return RequestSupplies(**common(**{"community": COMMUNITY, "household": "h-201", "kind": "food",
                                       "items": [VEG], "request": "r-1", **kw}))


def test_a_household_requests_supplies():
    assert decide(Facts(household=home()), request_cmd(note=" leave at the door ")) == [
        requested(requested_at=LATER, note="leave at the door")]


def test_an_unknown_household_cannot_request():
    with pytest.raises(NotFound) as info:
        decide(Facts(), request_cmd())
    assert info.value.field == "household"


def test_a_household_of_another_community_is_not_found_in_this_one():
    with pytest.raises(NotFound):
        decide(Facts(household=home()), request_cmd(community="jingan.wanli.other"))


def test_a_request_id_cannot_be_reused():
    with pytest.raises(Conflict):
        decide(Facts(household=home(), request=OPEN), request_cmd())


# -- stock arithmetic --------------------------------------------------------------------------


def test_receiving_stock_adds_to_what_is_on_hand():
    [event] = decide(Facts(on_hand={"rice": 3}), ReceiveStock(**common(
        community=COMMUNITY, items=[RICE, ItemLine(item="masks", qty=500)], source="donation",
        from_=" Hema supermarket ", receipt="rc-1")))
    assert event.items == [StockLine(item="rice", qty=1, on_hand=4), StockLine(item="masks", qty=500, on_hand=500)]
    assert event.from_ == "Hema supermarket" and event.source == "donation"


def test_a_receipt_id_cannot_be_reused():
    receipt = evolve(None, StockReceived(community=COMMUNITY, receipt="rc-1", items=[], source="purchase",
                                         received_at=AT, received_by=STAFF))
    with pytest.raises(Conflict):
        decide(Facts(receipt=receipt), ReceiveStock(**common(community=COMMUNITY, items=[RICE],
                                                              source="purchase", receipt="rc-1")))


def test_assigning_a_delivery_takes_its_goods_out_of_stock():
    events = decide(Facts(request=OPEN, on_hand={"vegetable-pack": 5}),
                    AssignDelivery(**common(request="r-1", volunteer="vol-1")))
    assert events[0] == DeliveryAssigned(community=COMMUNITY, request="r-1", household="h-201",
                                         volunteer="vol-1", items=[VEG], attempt=1, reassigned=False,
                                         assigned_at=LATER, assigned_by=STAFF)
    assert events[1] == StockConsumed(community=COMMUNITY, household="h-201", request="r-1",
                                      items=[StockLine(item="vegetable-pack", qty=2, on_hand=3)],
                                      consumed_at=LATER, consumed_by=STAFF)


def test_exactly_the_stock_on_hand_can_be_taken_down_to_zero():
    _, consumed = decide(Facts(request=OPEN, on_hand={"vegetable-pack": 2}),
                         AssignDelivery(**common(request="r-1", volunteer="vol-1")))
    assert consumed.items[0].on_hand == 0


def test_a_request_the_store_cannot_meet_stays_open_and_says_what_is_missing():
    facts = Facts(request=given(requested(items=[VEG, RICE])), on_hand={"vegetable-pack": 1})
    err = rejected(facts, AssignDelivery(**common(request="r-1", volunteer="vol-1")), "out_of_stock")
    assert "vegetable-pack needs 2, 1 on hand" in err.message and "rice needs 1, 0 on hand" in err.message
    assert shortage([VEG, RICE], {"vegetable-pack": 1}, CONFIG) == [
        {"item": "vegetable-pack", "need": 2, "on_hand": 1, "missing": 1},
        {"item": "rice", "need": 1, "on_hand": 0, "missing": 1}]


def test_a_medicine_refill_does_not_come_out_of_stock():
    events = decide(Facts(request=given(requested(items=[MEDICINE])), on_hand={}),
                    AssignDelivery(**common(request="r-1", volunteer="vol-1")))
    assert [type(e) for e in events] == [DeliveryAssigned]


def test_a_failed_delivery_brings_the_goods_back():
    events = decide(Facts(request=OUT, household=home(), on_hand={"vegetable-pack": 3}),
                    RecordDelivery(**common(request="r-1", outcome="no_answer")))
    assert [type(e) for e in events] == [DeliveryFailed, StockReturned]
    assert events[1].items == [StockLine(item="vegetable-pack", qty=2, on_hand=5)]
    assert evolve(OUT, events[0]).status == "open"


def test_a_delivered_request_keeps_the_goods_out():
    events = decide(Facts(request=OUT, household=home()), RecordDelivery(**common(request="r-1",
                                                                                  outcome="delivered")))
    assert [type(e) for e in events] == [DeliveryCompleted]
    assert evolve(OUT, events[0]).status == "delivered"


def test_cancelling_an_assigned_request_returns_its_goods_and_closes_it():
    events = decide(Facts(request=OUT, on_hand={"vegetable-pack": 0}),
                    CancelRequest(**common(request="r-1", note="moved to a relative")))
    assert [type(e) for e in events] == [StockReturned, SupplyRequestClosed]
    assert events[0].items[0].on_hand == 2
    assert replay(events, OUT).status == "cancelled"


def test_cancelling_an_open_request_moves_no_goods():
    events = decide(Facts(request=OPEN), CancelRequest(**common(request="r-1")))
    assert [type(e) for e in events] == [SupplyRequestClosed]


def test_allocation_serves_the_highest_priority_first_and_all_or_nothing():
    waiting = [("urgent", [ItemLine(item="vegetable-pack", qty=3)]),
               ("big", [ItemLine(item="vegetable-pack", qty=5), RICE]),
               ("small", [ItemLine(item="vegetable-pack", qty=2)]),
               ("medicine", [MEDICINE])]
    missing = allocate(waiting, {"vegetable-pack": 5, "rice": 1}, CONFIG)
    assert missing == {
        "urgent": [],
        "big": [{"item": "vegetable-pack", "need": 5, "missing": 3}],  # takes nothing: it cannot be met
        "small": [],
        "medicine": [],
    }


def test_allocation_of_an_empty_store_misses_everything_stocked():
    assert allocate([("a", [VEG, MEDICINE])], {}, CONFIG) == {"a": [{"item": "vegetable-pack", "need": 2,
                                                                    "missing": 2}]}


# -- deliveries --------------------------------------------------------------------------------


def test_a_delivery_may_move_to_another_volunteer_without_moving_goods_again():
    [event] = decide(Facts(request=OUT, on_hand={}), AssignDelivery(**common(request="r-1", volunteer="vol-2")))
    assert event.reassigned and event.attempt == 1 and event.volunteer == "vol-2"


def test_the_same_volunteer_cannot_be_assigned_twice():
    rejected(Facts(request=OUT), AssignDelivery(**common(request="r-1", volunteer="vol-1")), "already_assigned")


def test_an_unknown_request_cannot_be_assigned_or_recorded():
    for cmd in (AssignDelivery(**common(request="r-9", volunteer="vol-1")),
                RecordDelivery(**common(request="r-9", outcome="delivered")),
                CancelRequest(**common(request="r-9"))):
        with pytest.raises(NotFound):
            decide(Facts(), cmd)


def test_a_delivery_not_assigned_cannot_be_recorded():
    rejected(Facts(request=OPEN), RecordDelivery(**common(request="r-1", outcome="delivered")), "not_assigned")


def test_a_closed_request_takes_no_more_commands():
    done = given(requested(), assigned(), DeliveryCompleted(
        community=COMMUNITY, request="r-1", household="h-201", volunteer="vol-1", items=[VEG], attempt=1,
        completed_at=AT, completed_by=STAFF))
    rejected(Facts(request=done), AssignDelivery(**common(request="r-1", volunteer="vol-2")), "request_closed")
    rejected(Facts(request=done), RecordDelivery(**common(request="r-1", outcome="delivered")), "request_closed")
    rejected(Facts(request=done), CancelRequest(**common(request="r-1")), "request_closed")


def test_a_second_attempt_after_no_answer_counts_up():
    again = given(requested(), assigned(), failed())
    [event, _] = decide(Facts(request=again, on_hand={"vegetable-pack": 9}),
                        AssignDelivery(**common(request="r-1", volunteer="vol-3")))
    assert event.attempt == 2


def test_a_refused_delivery_closes_the_request():
    events = decide(Facts(request=OUT, household=home(["elderly_alone"])),
                    RecordDelivery(**common(request="r-1", outcome="refused")))
    assert [type(e) for e in events] == [DeliveryFailed, StockReturned, SupplyRequestClosed]
    assert events[2].reason == "refused" and events[0].welfare_check is None  # somebody answered
    assert replay(events, OUT).status == "refused"


# -- welfare escalation ------------------------------------------------------------------------


@pytest.mark.parametrize("vulnerability", ["elderly_alone", "limited_mobility", "chronic_illness",
                                           "medical_device"])
def test_no_answer_at_a_vulnerable_household_raises_a_welfare_check_at_once(vulnerability):
    events = decide(Facts(request=OUT, household=home([vulnerability])),
                    RecordDelivery(**common(request="r-1", outcome="no_answer")))
    assert [type(e) for e in events] == [DeliveryFailed, StockReturned, WelfareCheckRaised]
    check = events[-1]
    assert (check.check, check.household, check.request, check.vulnerabilities) == (
        "h-201-w1", "h-201", "r-1", [vulnerability])
    assert (check.compound, check.building, check.raised_at, check.raised_by) == ("sunny-garden", "b2", LATER, STAFF)
    assert events[0].welfare_check == "h-201-w1"


def test_no_answer_at_a_household_nobody_flagged_raises_no_check():
    events = decide(Facts(request=OUT, household=home()),
                    RecordDelivery(**common(request="r-1", outcome="no_answer")))
    assert WelfareCheckRaised not in [type(e) for e in events]
    assert events[0].welfare_check is None


def test_a_quarantined_household_without_vulnerability_raises_no_check():
    out = given(requested(reasons=["quarantined"], score=32), assigned())
    events = decide(Facts(request=out, household=home()), RecordDelivery(**common(request="r-1",
                                                                                  outcome="no_answer")))
    assert WelfareCheckRaised not in [type(e) for e in events]


def test_the_vulnerability_recorded_on_the_request_counts_if_the_directory_lost_it():
    out = given(requested(reasons=["limited_mobility"], score=8), assigned())
    events = decide(Facts(request=out, household=None), RecordDelivery(**common(request="r-1",
                                                                                outcome="no_answer")))
    assert events[-1].vulnerabilities == ["limited_mobility"]


def test_an_open_check_is_not_raised_twice_but_the_failure_points_to_it():
    welfare = given(raised())
    events = decide(Facts(request=OUT, household=home(["elderly_alone"]), welfare=welfare),
                    RecordDelivery(**common(request="r-1", outcome="no_answer")))
    assert [type(e) for e in events] == [DeliveryFailed, StockReturned]
    assert events[0].welfare_check == "h-201-w1"


def test_a_check_is_open_until_resolved_and_the_next_one_gets_a_new_id():
    welfare = given(raised())
    assert welfare.open is not None
    [resolved] = decide(Facts(welfare=welfare), ResolveWelfareCheck(**common(
        household="h-201", outcome="hospitalized", note="found after a stroke; ambulance called")))
    assert resolved.check == "h-201-w1" and resolved.outcome == "hospitalized"
    welfare = evolve(welfare, resolved)
    assert welfare.open is None and welfare.last_outcome == "hospitalized"
    events = decide(Facts(request=OUT, household=home(["elderly_alone"]), welfare=welfare),
                    RecordDelivery(**common(request="r-1", outcome="no_answer")))
    assert events[-1].check == "h-201-w2"


def test_only_an_open_check_can_be_resolved():
    rejected(Facts(), ResolveWelfareCheck(**common(household="h-201", outcome="safe")), "no_open_check")
    closed = given(raised(), WelfareCheckResolved(community=COMMUNITY, check="h-201-w1", household="h-201",
                                                  outcome="safe", resolved_at=AT, resolved_by=STAFF))
    rejected(Facts(welfare=closed), ResolveWelfareCheck(**common(household="h-201", outcome="safe")),
             "no_open_check")


# -- mask vouchers -----------------------------------------------------------------------------


def reserve(qty=4, voucher="0000026", **kw) -> ReserveMasks:
    return ReserveMasks(**common(**{"community": COMMUNITY, "household": "h-201", "qty": qty,
                                    "voucher": voucher, **kw}))


def drawn(**kw) -> Facts:
    """The facts of reserve_masks: the handler has drawn the number 0000026."""
    return Facts(number="0000026", **kw)


def test_a_household_reserves_masks_and_gets_a_numbered_voucher():
    [event] = decide(drawn(household=home()), reserve())
    assert (event.voucher, event.number, event.qty) == ("0000026", "0000026", 4)
    assert (event.period_start, event.period_end) == (date(2022, 3, 28), date(2022, 4, 3))  # Mon..Sun
    assert (event.reserved_in_period, event.limit) == (4, 10)


def test_the_limit_per_household_per_period_holds():
    masks = given(reserved(qty=4), reserved(voucher="0000034", qty=4))
    [event] = decide(drawn(household=home(), masks=masks), reserve(qty=2))
    assert event.reserved_in_period == 10
    err = rejected(drawn(household=home(), masks=evolve(masks, event)), reserve(qty=1, voucher="x1"),
                   "limit_reached")
    assert "reserved 10 of its 10" in err.message and "at most 0 more" in err.message


def test_one_over_the_limit_is_refused():
    rejected(drawn(household=home(), masks=given(reserved(qty=7))), reserve(qty=4), "limit_reached")


def test_a_new_period_starts_a_new_allowance():
    last_week = given(reserved(qty=10, period_start=date(2022, 3, 21)))
    [event] = decide(drawn(household=home(), masks=last_week), reserve(qty=10))
    assert event.reserved_in_period == 10


def test_the_limit_and_period_are_policy():
    config = Config(mask_limit=3, mask_period_days=1)
    [event] = decide(drawn(config=config, household=home()), reserve(qty=3))
    assert (event.period_start, event.period_end, event.limit) == (AT.date(), AT.date(), 3)
    rejected(drawn(config=config, household=home(), masks=evolve(None, event)), reserve(qty=1, voucher="v2"),
             "limit_reached")


def test_a_voucher_id_taken_elsewhere_is_a_conflict():
    with pytest.raises(Conflict):
        decide(drawn(household=home(), voucher_taken=True), reserve())
    with pytest.raises(Conflict):
        decide(drawn(household=home(), masks=given(reserved(voucher="0000026"))), reserve())


def test_an_unknown_household_cannot_reserve():
    with pytest.raises(NotFound):
        decide(drawn(), reserve())


def redeem(voucher="0000018") -> RedeemVoucher:
    return RedeemVoucher(**common(voucher=voucher))


def test_redeeming_a_voucher_takes_its_masks_out_of_stock():
    events = decide(Facts(masks=given(reserved(qty=4)), on_hand={"masks": 10}), redeem())
    assert events == [
        VoucherRedeemed(community=COMMUNITY, household="h-201", voucher="0000018", number="0000018", qty=4,
                        redeemed_at=LATER, redeemed_by=STAFF),
        StockConsumed(community=COMMUNITY, household="h-201", voucher="0000018",
                      items=[StockLine(item="masks", qty=4, on_hand=6)], consumed_at=LATER, consumed_by=STAFF),
    ]


def test_a_voucher_is_redeemed_once():
    masks = replay(decide(Facts(masks=given(reserved()), on_hand={"masks": 10}), redeem()), given(reserved()))
    rejected(Facts(masks=masks, on_hand={"masks": 6}), redeem(), "already_redeemed")


def test_a_voucher_without_masks_in_stock_stays_valid():
    err = rejected(Facts(masks=given(reserved(qty=4)), on_hand={"masks": 3}), redeem(), "out_of_stock")
    assert "needs 4, 3 on hand" in err.message
    [event, _] = decide(Facts(masks=given(reserved(qty=4)), on_hand={"masks": 4}), redeem())
    assert isinstance(event, VoucherRedeemed)


def test_an_unknown_voucher_is_not_found():
    with pytest.raises(NotFound) as info:
        decide(Facts(masks=given(reserved())), redeem("0000026"))
    assert info.value.field == "voucher"
    with pytest.raises(NotFound):
        decide(Facts(), redeem())


# -- the daily supply of confined households ---------------------------------------------------


def start(cause="case:c-1", on=None, **kw) -> StartDailySupply:
    return StartDailySupply(**common(cause=cause, household="h-201", on=on, **kw))


def test_a_confined_household_gets_its_daily_supply_and_todays_food_at_once():
    events = decide(Facts(household=home(["elderly_alone"])), start())
    assert [type(e) for e in events] == [DailySupplyStarted, SupplyRequested]
    plan, food = events
    assert plan.causes == ["case:c-1"] and plan.starts_on == LATER.date()
    assert food.request == daily_request_id("h-201", LATER.date()) and food.daily_on == LATER.date()
    assert food.items == [ItemLine(item="vegetable-pack", qty=1)] and food.kind == "food"
    assert food.priority_reasons == ["quarantined", "elderly_alone"]


def test_a_second_cause_adds_to_the_plan_without_a_second_request_that_day():
    plan = given(started())
    today = given(requested(request=daily_request_id("h-201", LATER.date())))
    [event] = decide(Facts(household=home(), plan=plan, request=today), start("seal:sunny-garden:b2"))
    assert event.causes == ["case:c-1", "seal:sunny-garden:b2"]


def test_the_same_cause_twice_is_refused():
    rejected(Facts(household=home(), plan=given(started())), start(), "already_started")


def test_the_day_is_the_committees_calendar_day():
    late_evening_utc = datetime(2022, 4, 2, 17, 0, tzinfo=timezone.utc)  # 01:00 on 3 April in Shanghai
    events = decide(Facts(household=home()), start(occurred_at=late_evening_utc))
    assert events[1].daily_on == date(2022, 4, 3)


def test_a_plan_for_an_unknown_household_is_not_found():
    with pytest.raises(NotFound):
        decide(Facts(), start())


def test_stopping_the_last_cause_ends_the_plan():
    plan = given(started(), started("seal:sunny-garden", ["case:c-1", "seal:sunny-garden"]))
    [first] = decide(Facts(plan=plan), StopDailySupply(**common(cause="case:c-1", household="h-201")))
    assert first.causes == ["seal:sunny-garden"] and first.active
    plan = evolve(plan, first)
    [last] = decide(Facts(plan=plan), StopDailySupply(**common(cause="seal:sunny-garden", household="h-201")))
    assert last.causes == [] and not last.active
    assert not evolve(plan, last).active


def test_stopping_a_cause_that_never_started_is_refused():
    rejected(Facts(), StopDailySupply(**common(cause="case:c-1", household="h-201")), "not_started")
    rejected(Facts(plan=given(started())), StopDailySupply(**common(cause="case:c-2", household="h-201")),
             "not_started")


def raise_for(on: date) -> RaiseDailyRequest:
    return RaiseDailyRequest(**common(household="h-201", on=on))


def test_each_day_of_an_active_plan_gets_one_request():
    tomorrow = LATER.date() + timedelta(days=1)
    [food] = decide(Facts(household=home(["limited_mobility"]), plan=given(started())), raise_for(tomorrow))
    assert food.request == daily_request_id("h-201", tomorrow) and food.priority == 32 + 8
    rejected(Facts(plan=given(started()), request=evolve(None, food)), raise_for(tomorrow), "already_requested")


def test_no_request_is_raised_without_an_active_plan():
    stopped = given(started(), DailySupplyStopped(community=COMMUNITY, household="h-201", cause="case:c-1",
                                                  causes=[], active=False, stopped_at=AT, stopped_by=STAFF))
    rejected(Facts(plan=stopped), raise_for(AT.date()), "no_daily_supply")
    rejected(Facts(), raise_for(AT.date()), "no_daily_supply")


def test_the_plan_knows_where_the_household_lives_when_the_directory_does_not():
    [food] = decide(Facts(plan=given(started())), raise_for(AT.date()))
    assert (food.compound, food.building, food.priority_reasons) == ("sunny-garden", "b2", ["quarantined"])


def test_a_daily_request_id_stays_a_slug_for_long_household_ids():
    long_id = "h" * 63
    rid = daily_request_id(long_id, AT.date())
    assert len(rid) <= 63 and rid == daily_request_id(long_id, AT.date()) and rid.endswith("20220402")
    assert daily_request_id("h-201", AT.date()) == "daily-h-201-20220402"


# -- streams and evolve ---------------------------------------------------------------------------


def test_every_event_knows_its_stream():
    assert stream_of(requested()) == "request:r-1"
    assert stream_of(raised()) == "welfare:h-201"
    assert stream_of(reserved()) == "masks:h-201"
    assert stream_of(started()) == "plan:h-201"
    voucher_out = StockConsumed(community=COMMUNITY, household="h-201", voucher="v", items=[],
                                consumed_at=AT, consumed_by=STAFF)
    assert stream_of(voucher_out) == "masks:h-201"
    assert stream_of(StockReceived(community=COMMUNITY, receipt="rc", items=[], source="donation",
                                   received_at=AT, received_by=STAFF)) == "receipt:rc"


def test_events_are_grouped_by_stream_in_order():
    events = decide(Facts(request=OUT, household=home(["elderly_alone"])),
                    RecordDelivery(**common(request="r-1", outcome="no_answer")))
    assert [(s, [type(e).__name__ for e in g]) for s, g in by_stream(events)] == [
        ("request:r-1", ["DeliveryFailed", "StockReturned"]), ("welfare:h-201", ["WelfareCheckRaised"])]


def test_evolve_refuses_an_event_on_the_wrong_aggregate():
    with pytest.raises(TypeError):
        evolve(None, assigned())
    with pytest.raises(TypeError):
        evolve(given(reserved()), assigned())


def test_states_fold_from_their_events():
    assert isinstance(OPEN, Request) and OPEN.status == "open" and OPEN.is_open
    assert isinstance(given(reserved()), Masks) and given(reserved()).reserved_in(date(2022, 3, 28)) == 4
    assert isinstance(given(raised()), Welfare) and given(raised()).raised == 1
    assert isinstance(given(started()), Plan) and given(started()).active
