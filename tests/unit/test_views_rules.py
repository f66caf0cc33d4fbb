"""The views' pure rules: given events in a community, then these figures change (and only these)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.views import fold, rules
from services.views.rules import Delta, Drop, Put
from shared.contracts import checkpoint as cp
from shared.contracts import logistics as lg
from shared.contracts import quarantine as qa
from shared.contracts import registry as rg

C = "changning.chengjiaqiao.nangong"
C2 = "changning.chengjiaqiao.wanli"
AT = datetime(2020, 2, 17, 9, 30, tzinfo=timezone(timedelta(hours=8)))
DAY = date(2020, 2, 17)
BY = "staff:li-wei"


def ev(cls, **fields):
    """An event of ``cls`` with every required field filled with a plausible value."""
    defaults = dict(
        community=C, compound="nangong-1", building="b1", household="h1", resident="r1",
        registered_at=AT, registered_by=BY,
    )
    at_fields = {f for f in cls.__struct_fields__ if f.endswith("_at")}
    by_fields = {f for f in cls.__struct_fields__ if f.endswith("_by")}
    values = {k: v for k, v in defaults.items() if k in cls.__struct_fields__}
    values.update({f: AT for f in at_fields}, **{f: BY for f in by_fields})
    values.update(fields)
    return cls(**values)


def figures(*events, community=C, day=DAY, members=None):
    """Fold the events in order from ``members`` (default nothing stored): the per-day deltas."""
    batch = [(getattr(e, "community", community), day, rules.ops(e, e.community, day)) for e in events]
    return fold.fold(batch, members or {}).deltas


def arrival(**fields):
    values = dict(arrival="a1", arrived_on=date(2020, 2, 10), city_class="A", risk_area_visited=True,
                  requires_verification=True)
    return ev(rg.ArrivalRegistered, **{**values, **fields})


def passage(cls=cp.PassageAllowed, direction="in", **fields):
    extra = {"reason": "fever"} if cls is cp.PassageDenied else {}
    return ev(cls, passage="p1", gate="g1", direction=direction, temperature_c=36.6, **extra, **fields)


def case(cls=qa.CaseOpened, **fields):
    extra = {}
    if cls is qa.CaseOpened:
        extra = dict(kind="home", reason="arrival", starts_on=DAY, ends_on=DAY + timedelta(days=13))
    if cls in (qa.CaseReleased, qa.CaseClosed):
        extra = dict(on=DAY)
    if cls is qa.CaseReleased:
        extra["monitoring_until"] = DAY + timedelta(days=7)
    return ev(cls, case="k1", **{**extra, **fields})


def stock(cls, item="masks", qty=10, on_hand=10, **fields):
    extra = {"receipt": "rc1", "source": "donation"} if cls is lg.StockReceived else {}
    if cls is lg.StockReturned:
        extra = {"request": "q1"}
    return ev(cls, items=[lg.StockLine(item=item, qty=qty, on_hand=on_hand)], **{**extra, **fields})


def request(**fields):
    return ev(lg.SupplyRequested, request="q1", kind="food",
              items=[lg.ItemLine(item="vegetable-pack", qty=1)], priority=32, **fields)


# -- registry ------------------------------------------------------------------------------------


def test_a_registered_resident_counts_from_the_day_of_registration():
    assert figures(ev(rg.ResidentRegistered, display_name="王*伟")) == {
        (C, "residents", DAY): 1}


def test_a_resident_who_moves_out_no_longer_counts():
    registered = ev(rg.ResidentRegistered, display_name="王*伟")
    moved = ev(rg.ResidentMovedOut)
    assert figures(registered, moved) == {}


def test_moving_out_a_resident_the_view_never_counted_changes_nothing():
    assert figures(ev(rg.ResidentMovedOut)) == {}


def test_a_stored_resident_moving_out_is_taken_off_their_community_on_the_day_they_left():
    stored = {("resident", "r1"): fold.Member(C, "residents", 1)}
    assert figures(ev(rg.ResidentMovedOut), members=stored) == {(C, "residents", DAY): -1}


def test_a_household_counts_once():
    household = ev(rg.HouseholdRegistered)
    assert figures(household) == {(C, "households", DAY): 1}
    assert figures(household, household) == {(C, "households", DAY): 1}


def test_a_household_and_resident_of_schema_1_count_as_schema_2():
    # Given the registry's events as recorded before the address and birth year left them
    old = (ev(rg.HouseholdRegisteredV1, address="b1 101"), ev(rg.ResidentRegisteredV1, display_name="王*伟",
                                                              birth_year=1950))
    new = (ev(rg.HouseholdRegistered), ev(rg.ResidentRegistered, display_name="王*伟"))
    # then the board counts them exactly as their schema-2 selves
    assert figures(*old) == figures(*new) == {(C, "households", DAY): 1, (C, "residents", DAY): 1}


def test_an_arrival_of_schema_1_counts_as_schema_2():
    # Given an arrival recorded before its travel history left the bus
    old = ev(rg.ArrivalRegisteredV1, arrival="a1", origin="Wuhan", arrived_on=date(2020, 2, 10),
             transport=rg.Transport(kind="train", number="G1"), city_class="A", risk_area_visited=True,
             requires_verification=True)
    # then the board counts it exactly as its schema-2 self
    assert figures(old) == figures(arrival()) == {(C, "arrivals", date(2020, 2, 10)): 1,
                                                  (C, "arrivals_pending", DAY): 1}


def test_an_arrival_counts_on_its_arrival_day_and_waits_for_verification():
    assert figures(arrival()) == {(C, "arrivals", date(2020, 2, 10)): 1, (C, "arrivals_pending", DAY): 1}


def test_a_class_b_arrival_cleared_on_registration_is_not_pending():
    cleared = arrival(city_class="B", risk_area_visited=False, requires_verification=False)
    assert figures(cleared) == {(C, "arrivals", date(2020, 2, 10)): 1}


@pytest.mark.parametrize("outcome", ["cleared", "home_quarantine", "centralized_quarantine", "returned_home"])
def test_a_verified_arrival_is_no_longer_pending(outcome):
    verified = ev(rg.ArrivalVerified, arrival="a1", outcome=outcome, documents_checked=True)
    assert figures(arrival(), verified) == {(C, "arrivals", date(2020, 2, 10)): 1}


def test_verifying_twice_takes_the_arrival_off_pending_once():
    stored = {("arrival", "a1"): fold.Member(C, "arrivals_pending", 1)}
    verified = ev(rg.ArrivalVerified, arrival="a1", outcome="cleared", documents_checked=True)
    assert figures(verified, verified, members=stored) == {(C, "arrivals_pending", DAY): -1}


# -- checkpoint ----------------------------------------------------------------------------------


def test_passes_count_while_not_revoked():
    issued = [ev(cp.PassIssued, pass_=f"p{i}") for i in range(3)]
    revoked = ev(cp.PassRevoked, pass_="p1", reason="lost")
    assert figures(*issued, revoked) == {(C, "passes_active", DAY): 2}


def test_passes_and_passages_recorded_in_schema_1_count_as_in_schema_2():
    issued = [ev(cp.PassIssuedV1, pass_=f"p{i}", number=f"N{i}") for i in range(3)]
    revoked = ev(cp.PassRevokedV1, pass_="p1", reason="lost", number="N1")
    assert figures(*issued, revoked) == figures(*(e.upcast() for e in (*issued, revoked))) == {
        (C, "passes_active", DAY): 2}
    old = [passage(cp.PassageAllowedV1, number="N0"), passage(cp.PassageAllowedV1, direction="out"),
           ev(cp.PassageDeniedV1, passage="p2", gate="g1", direction="in", temperature_c=36.6, reason="fever")]
    assert figures(*old) == {(C, "passages_in", DAY): 1, (C, "passages_out", DAY): 1, (C, "passages_denied", DAY): 1}


def test_revoking_an_unknown_pass_changes_nothing():
    assert figures(ev(cp.PassRevoked, pass_="nope", reason="lost")) == {}


@pytest.mark.parametrize("direction", ["in", "out"])
def test_an_allowed_passage_counts_by_direction(direction):
    assert figures(passage(direction=direction)) == {(C, f"passages_{direction}", DAY): 1}


def test_a_denied_passage_counts_as_denied_whatever_the_direction():
    assert figures(passage(cp.PassageDenied, direction="out"), passage(cp.PassageDenied)) == {
        (C, "passages_denied", DAY): 2}


def test_a_fever_counts_on_its_day():
    fever = ev(cp.FeverDetected, passage="p1", gate="g1", temperature_c=38.1)
    assert figures(fever) == {(C, "fevers", DAY): 1}


@pytest.mark.parametrize("cls", [cp.GateOpened, cp.GateClosed, cp.ShiftStarted])
def test_events_without_a_rule_change_no_figure(cls):
    extra = {"gate": "g1"}
    if cls is cp.ShiftStarted:
        extra.update(shift="s1", staff="staff:wang")
    assert rules.ops(ev(cls, **extra), C, DAY) == ()


# -- quarantine ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["home", "centralized", "monitoring"])
def test_an_open_case_counts_in_quarantine_by_kind(kind):
    assert figures(case(kind=kind)) == {(C, f"quarantine_{kind}", DAY): 1}


def test_a_transfer_moves_the_case_to_its_new_kind_on_that_day():
    stored = {("case", "k1"): fold.Member(C, "quarantine_home", 1)}
    moved = case(qa.CaseTransferred, to="hospital")
    assert figures(moved, members=stored) == {(C, "quarantine_home", DAY): -1, (C, "quarantine_hospital", DAY): 1}


def test_a_release_turns_quarantine_into_monitoring_and_a_close_ends_it():
    opened, released, closed = case(), case(qa.CaseReleased), case(qa.CaseClosed)
    assert figures(opened, released) == {(C, "quarantine_monitoring", DAY): 1}
    assert figures(opened, released, closed) == {}


def test_a_whole_compound_seal_and_a_building_seal_count_apart_until_lifted():
    whole = ev(qa.AreaSealed, building=None)
    building = ev(qa.AreaSealed, building="b2")
    assert figures(whole, building) == {(C, "sealed_compounds", DAY): 1, (C, "sealed_buildings", DAY): 1}
    assert figures(whole, building, ev(qa.SealLifted, building="b2")) == {(C, "sealed_compounds", DAY): 1}


def test_the_same_compound_name_in_two_communities_is_two_seals():
    assert figures(ev(qa.AreaSealed, building=None), ev(qa.AreaSealed, building=None, community=C2)) == {
        (C, "sealed_compounds", DAY): 1, (C2, "sealed_compounds", DAY): 1}


def test_missed_checkins_and_positive_results_count_on_their_day():
    missed = ev(qa.CheckinMissed, case="k1", on=DAY)
    positive = ev(qa.ResultRecorded, screening="s1", result="positive")
    negative = ev(qa.ResultRecorded, screening="s1", result="negative")
    assert figures(missed, positive, negative) == {(C, "checkins_missed", DAY): 1, (C, "positive_results", DAY): 1}


# -- logistics -----------------------------------------------------------------------------------


def test_a_request_is_open_until_delivered_and_the_delivery_counts_today():
    done = ev(lg.DeliveryCompleted, request="q1", volunteer="v1", items=[], attempt=1)
    assert figures(request()) == {(C, "requests_open", DAY): 1}
    assert figures(request(), done) == {(C, "deliveries", DAY): 1}


def test_no_answer_keeps_the_request_open_a_refusal_closes_it():
    no_answer = ev(lg.DeliveryFailed, request="q1", volunteer="v1", outcome="no_answer", attempt=1)
    refused = ev(lg.DeliveryFailed, request="q1", volunteer="v1", outcome="refused", attempt=2)
    assert figures(request(), no_answer) == {(C, "requests_open", DAY): 1}
    assert figures(request(), no_answer, refused) == {}


def test_a_closed_request_is_not_open():
    closed = ev(lg.SupplyRequestClosed, request="q1", reason="cancelled")
    assert figures(request(), closed) == {}


def test_welfare_checks_are_open_until_resolved():
    raised = ev(lg.WelfareCheckRaised, check="w1", request="q1", vulnerabilities=["elderly_alone"])
    resolved = ev(lg.WelfareCheckResolved, check="w1", outcome="safe")
    assert figures(raised) == {(C, "welfare_checks_open", DAY): 1}
    assert figures(raised, resolved) == {}


def test_stock_is_the_latest_on_hand_per_item():
    received = stock(lg.StockReceived, qty=100, on_hand=100)
    consumed = stock(lg.StockConsumed, qty=30, on_hand=70)
    returned = stock(lg.StockReturned, qty=5, on_hand=75)
    assert figures(received, consumed, returned) == {(C, "stock.masks", DAY): 75}


def test_stock_of_one_item_does_not_touch_another_or_another_community():
    masks = stock(lg.StockReceived, on_hand=10)
    heaters = stock(lg.StockReceived, item="heater", on_hand=2)
    elsewhere = stock(lg.StockReceived, on_hand=7, community=C2)
    assert figures(masks, heaters, elsewhere) == {
        (C, "stock.masks", DAY): 10, (C, "stock.heater", DAY): 2, (C2, "stock.masks", DAY): 7}


def test_a_household_is_on_daily_supply_until_no_cause_is_left():
    started = ev(lg.DailySupplyStarted, cause="case:k1", causes=["case:k1"], starts_on=DAY)
    second = ev(lg.DailySupplyStarted, cause="seal:c1", causes=["case:k1", "seal:c1"], starts_on=DAY)
    still = ev(lg.DailySupplyStopped, cause="case:k1", causes=["seal:c1"], active=True)
    stopped = ev(lg.DailySupplyStopped, cause="seal:c1", causes=[], active=False)
    assert figures(started, second, still) == {(C, "daily_supply_households", DAY): 1}
    assert figures(started, second, still, stopped) == {}


# -- days ----------------------------------------------------------------------------------------


def test_the_day_is_the_citys_calendar_day_not_utc():
    late = datetime(2020, 2, 16, 17, 0, tzinfo=timezone.utc)  # 01:00 on the 17th in Shanghai
    assert rules.local_day(late, ZoneInfo("Asia/Shanghai")) == date(2020, 2, 17)
    assert rules.local_day(late, ZoneInfo("UTC")) == date(2020, 2, 16)


def test_every_metric_a_rule_can_emit_is_a_level_a_flow_or_a_window():
    kinds = set(rules.LEVELS) | set(rules.FLOWS) | set(rules.WINDOWS)
    emitted = {"residents", "households", "arrivals", "arrivals_pending", "passes_active", "passages_in",
               "passages_out", "passages_denied", "fevers", "quarantine_home", "quarantine_centralized",
               "quarantine_monitoring", "quarantine_hospital", "sealed_compounds", "sealed_buildings",
               "checkins_missed", "positive_results", "requests_open", "deliveries",
               "welfare_checks_open", "daily_supply_households", "results_pending"}
    assert emitted <= kinds
    assert not set(rules.LEVELS) & set(rules.FLOWS)


# -- fold ----------------------------------------------------------------------------------------


def test_fold_writes_back_only_what_changed():
    stored = {("pass", "p1"): fold.Member(C, "passes_active", 1), ("pass", "p2"): fold.Member(C, "passes_active", 1)}
    batch = [(C, DAY, (Put("pass", "p1", "passes_active"), Drop("pass", "p2"), Put("pass", "p3", "passes_active")))]
    out = fold.fold(batch, stored)
    assert out.upserts == {("pass", "p3"): fold.Member(C, "passes_active", 1)}
    assert out.drops == {("pass", "p2")}
    assert out.deltas == {}  # p1 unchanged, p2 gone, p3 new: the count is the same
    assert stored[("pass", "p2")] == fold.Member(C, "passes_active", 1)  # the input is not modified


def test_a_thing_added_and_removed_in_one_batch_is_neither_written_nor_deleted():
    batch = [(C, DAY, (Put("case", "k9", "quarantine_home"),)), (C, DAY, (Drop("case", "k9"),))]
    out = fold.fold(batch, {})
    assert (out.deltas, out.upserts, out.drops) == ({}, {}, set())


def test_a_change_across_days_is_recorded_on_each_day():
    batch = [(C, DAY, (Put("case", "k1", "quarantine_home"),)),
             (C, DAY + timedelta(days=14), (Put("case", "k1", "quarantine_monitoring"),))]
    assert fold.fold(batch, {}).deltas == {
        (C, "quarantine_home", DAY): 1, (C, "quarantine_home", DAY + timedelta(days=14)): -1,
        (C, "quarantine_monitoring", DAY + timedelta(days=14)): 1}


def test_member_keys_are_the_things_put_and_dropped_not_the_deltas():
    batch = [(C, DAY, (Delta("fevers", DAY), Put("pass", "p1", "passes_active"))), (C, DAY, (Drop("case", "k1"),))]
    assert fold.member_keys(batch) == {("pass", "p1"), ("case", "k1")}


def test_screening_calls_count_today_and_those_that_reached_the_returnee():
    calls = [ev(rg.CallRecorded, call=f"c{i}", arrival="a1", outcome=outcome)
             for i, outcome in enumerate(("reached_at_home", "reached_elsewhere", "no_answer", "wrong_number"))]
    assert figures(*calls) == {(C, "calls", DAY): 4, (C, "calls_reached", DAY): 2}


def test_a_tip_off_is_open_until_followed_up_and_counts_as_followed_up_that_day():
    recorded = ev(rg.TipOffRecorded, tip_off="t1", kind="gathering")
    followed = ev(rg.TipOffFollowedUp, tip_off="t1", outcome="confirmed")
    assert figures(recorded) == {(C, "tip_offs_open", DAY): 1}
    assert figures(recorded, followed) == {(C, "tip_offs_followed_up", DAY): 1}
    # a second follow-up (the registry refuses it) would take nothing back twice
    assert figures(recorded, followed, followed) == {(C, "tip_offs_followed_up", DAY): 2}


def test_an_update_of_a_residents_flags_changes_no_figure():
    assert figures(ev(rg.ResidentUpdated, vulnerabilities=["elderly_alone"])) == {}
