"""Logistics' issue-17 rules as stories, pure: group orders from a supplier (placed, delivered to a
gate, handed out per building), volunteers' teams and hours (gate shifts from the checkpoint),
door-to-door visits; the views' figures they make; the vulnerable list's paging cursor.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from services.logistics import commands, queries
from services.logistics.commands import (
    HandOutGroupOrder,
    PlaceGroupOrder,
    RecordGroupOrderDelivered,
    RecordVisit,
    RecordVolunteerHours,
    RegisterVolunteer,
)
from services.logistics.decide import Facts, Household, decide
from services.logistics.domain import GroupOrder, HoursLog, Visits, Volunteer, replay, stream_of
from services.logistics.orders import Compound
from services.logistics.reactions import react_to_shift
from services.views import fold, rules
from shared.contracts.checkpoint import ShiftEnded
from shared.contracts.logistics import (
    GroupOrderDelivered,
    GroupOrderHandedOut,
    GroupOrderPlaced,
    OrderLine,
    VisitRecorded,
    VolunteerHoursRecorded,
    VolunteerRegistered,
)
from shared.errors import Conflict, Invalid, NotFound, Rejected

CST = timezone(timedelta(hours=8))
ZONE = ZoneInfo("Asia/Shanghai")
AT = datetime(2022, 4, 2, 9, 30, tzinfo=CST)
TODAY = date(2022, 4, 2)
COMMUNITY = "changning.chengjiaqiao.nangong"
STAFF = "staff:li-na"
SUNNY = Compound(community=COMMUNITY, compound="sunny-garden", buildings=frozenset({"b1", "b2", "b3"}),
                 gates=frozenset({"g1", "g2"}))
BOXES = [OrderLine(item="vegetable-box", qty=120)]


def common(**kw) -> dict:
    return {"command_id": "c-1", "actor": STAFF, "occurred_at": AT, **kw}


def place(**kw) -> PlaceGroupOrder:
    fields = dict(community=COMMUNITY, compound="sunny-garden", supplier="盒马鲜生 Hema", items=BOXES,
                  households=120, order="o-1")
    return PlaceGroupOrder(**common(**{**fields, **kw}))


def order_after(*events) -> GroupOrder:
    state = replay(events)
    assert isinstance(state, GroupOrder)
    return state


PLACED = GroupOrderPlaced(community=COMMUNITY, order="o-1", compound="sunny-garden", supplier="盒马鲜生 Hema",
                          items=BOXES, households=120, placed_at=AT, placed_by=STAFF)
DELIVERED = GroupOrderDelivered(community=COMMUNITY, order="o-1", compound="sunny-garden", gate="g1",
                                delivered_at=AT, delivered_by=STAFF)


def handed(building: str, n: int, served: int, total: int = 120) -> GroupOrderHandedOut:
    return GroupOrderHandedOut(community=COMMUNITY, order="o-1", compound="sunny-garden", building=building,
                               households=n, handed_out=served, complete=served == total, handed_out_at=AT,
                               handed_out_by=STAFF)


def hand_out(building: str, n: int) -> HandOutGroupOrder:
    return HandOutGroupOrder(**common(order="o-1", building=building, households=n))


# -- group orders ---------------------------------------------------------------------------------


def test_a_compound_places_a_group_order_from_a_supplier():
    [event] = decide(Facts(compound=SUNNY), place())
    assert event == PLACED and stream_of(event) == "order:o-1"
    assert order_after(event).status == "placed"


def test_an_order_for_a_compound_not_registered_in_the_community_is_not_found():
    with pytest.raises(NotFound) as e:
        decide(Facts(compound=None), place())
    assert e.value.field == "compound"
    other = Compound(community="changning.chengjiaqiao.tianshan", compound="sunny-garden",
                     buildings=frozenset(), gates=frozenset())
    with pytest.raises(NotFound):
        decide(Facts(compound=other), place())


def test_an_order_id_cannot_be_reused():
    with pytest.raises(Conflict):
        decide(Facts(compound=SUNNY, order=order_after(PLACED)), place())


def test_the_supplier_leaves_the_order_at_a_gate_of_the_compound():
    cmd = RecordGroupOrderDelivered(**common(order="o-1", gate="g1"))
    [event] = decide(Facts(compound=SUNNY, order=order_after(PLACED)), cmd)
    assert event == DELIVERED and order_after(PLACED, event).status == "delivered"


def test_a_gate_of_another_compound_is_not_found_and_a_second_delivery_is_refused():
    with pytest.raises(NotFound) as e:
        decide(Facts(compound=SUNNY, order=order_after(PLACED)),
               RecordGroupOrderDelivered(**common(order="o-1", gate="g9")))
    assert e.value.field == "gate"
    with pytest.raises(Rejected) as e:
        decide(Facts(compound=SUNNY, order=order_after(PLACED, DELIVERED)),
               RecordGroupOrderDelivered(**common(order="o-1", gate="g2")))
    assert e.value.reason == "already_delivered"


def test_an_unknown_order_is_not_found():
    for cmd in (RecordGroupOrderDelivered(**common(order="o-1", gate="g1")), hand_out("b1", 1)):
        with pytest.raises(NotFound) as e:
            decide(Facts(compound=SUNNY), cmd)
        assert e.value.field == "order"


def test_nothing_is_handed_out_before_the_order_is_at_the_gate():
    with pytest.raises(Rejected) as e:
        decide(Facts(compound=SUNNY, order=order_after(PLACED)), hand_out("b1", 40))
    assert e.value.reason == "not_delivered"


def test_buildings_are_handed_their_share_until_every_household_is_served():
    order = order_after(PLACED, DELIVERED)
    [first] = decide(Facts(compound=SUNNY, order=order), hand_out("b1", 50))
    assert first == handed("b1", 50, 50) and not first.complete
    [last] = decide(Facts(compound=SUNNY, order=order_after(PLACED, DELIVERED, first)), hand_out("b2", 70))
    assert last.handed_out == 120 and last.complete
    assert order_after(PLACED, DELIVERED, first, last).status == "handed_out"


def test_more_households_than_ordered_are_refused_and_say_how_many_are_left():
    order = order_after(PLACED, DELIVERED, handed("b1", 100, 100))
    with pytest.raises(Rejected) as e:
        decide(Facts(compound=SUNNY, order=order), hand_out("b2", 21))
    assert e.value.reason == "more_than_ordered" and "at most 20 more" in str(e.value)


def test_a_building_is_handed_out_once():
    order = order_after(PLACED, DELIVERED, handed("b1", 30, 30))
    with pytest.raises(Rejected) as e:
        decide(Facts(compound=SUNNY, order=order), hand_out("b1", 5))
    assert e.value.reason == "already_handed_out"


def test_a_building_not_in_the_compound_is_not_found():
    with pytest.raises(NotFound) as e:
        decide(Facts(compound=SUNNY, order=order_after(PLACED, DELIVERED)), hand_out("b9", 5))
    assert e.value.field == "building"


@pytest.mark.parametrize("fields, field", [
    (dict(supplier="call 13800138000"), "supplier"),
    (dict(supplier="  "), "supplier"),
    (dict(items=[]), "items"),
    (dict(items=[OrderLine(item="Vegetable Box", qty=1)]), "items[0].item"),
    (dict(items=[OrderLine(item="eggs", qty=0)]), "items[0].qty"),
    (dict(households=0), "households"),
    (dict(compound="Sunny Garden"), "compound"),
])
def test_a_bad_group_order_is_invalid_and_names_the_field(fields, field):
    with pytest.raises(Invalid) as e:
        commands.validate(place(**fields))
    assert e.value.field == field


# -- volunteers -----------------------------------------------------------------------------------


def register(team="party-branch-3", unit_kind="party_branch", volunteer="volunteer:zhang-3"):
    return RegisterVolunteer(**common(volunteer=volunteer, community=COMMUNITY, team=team, unit_kind=unit_kind))


def hours(kind="delivery", n=2.5, on=TODAY, shift=None, volunteer="volunteer:zhang-3"):
    return RecordVolunteerHours(**common(volunteer=volunteer, community=COMMUNITY, on=on, kind=kind, hours=n,
                                         shift=shift))


ZHANG = Volunteer(community=COMMUNITY, volunteer="volunteer:zhang-3", team="party-branch-3",
                  unit_kind="party_branch")


def test_a_volunteer_joins_a_team_and_is_refused_the_same_team_twice():
    [event] = decide(Facts(), register())
    assert (event.team, event.unit_kind, event.previous_team) == ("party-branch-3", "party_branch", None)
    assert replay([event]) == ZHANG
    with pytest.raises(Rejected) as e:
        decide(Facts(volunteer=ZHANG), register())
    assert e.value.reason == "already_registered"


def test_a_volunteer_moving_to_another_team_says_which_team_they_left():
    [event] = decide(Facts(volunteer=ZHANG), register(team="district-office", unit_kind="sent_down_cadre"))
    assert event.previous_team == "party-branch-3" and replay([event]).team == "district-office"


def test_hours_count_for_the_team_the_volunteer_is_in():
    [event] = decide(Facts(volunteer=ZHANG), hours("door_to_door", 1.5))
    assert (event.team, event.unit_kind, event.kind, event.hours) == ("party-branch-3", "party_branch",
                                                                      "door_to_door", 1.5)
    assert stream_of(event) == f"hours:{COMMUNITY}/volunteer:zhang-3"


def test_hours_of_a_volunteer_nobody_registered_are_refused():
    with pytest.raises(NotFound) as e:
        decide(Facts(), hours())
    assert e.value.field == "volunteer" and "register_volunteer" in str(e.value)


def test_a_gate_shift_of_someone_logistics_does_not_know_counts_for_no_team():
    [event] = decide(Facts(), hours("gate_shift", 6, shift="s-1"))
    assert event.team is None and event.shift == "s-1"


def test_a_gate_shift_is_counted_once():
    log = replay(decide(Facts(volunteer=ZHANG), hours("gate_shift", 6, shift="s-1")))
    assert log == HoursLog(community=COMMUNITY, volunteer="volunteer:zhang-3", shifts=frozenset({"s-1"}))
    with pytest.raises(Rejected) as e:
        decide(Facts(volunteer=ZHANG, hours=log), hours("gate_shift", 6, shift="s-1"))
    assert e.value.reason == "already_recorded"


def test_hours_of_a_day_that_has_not_begun_are_refused():
    with pytest.raises(Rejected) as e:
        decide(Facts(volunteer=ZHANG), hours(on=TODAY + timedelta(days=1)))
    assert e.value.reason == "future_day"


@pytest.mark.parametrize("cmd, field", [
    (hours(n=0), "hours"),
    (hours(n=24.5), "hours"),
    (hours(n=1.0001), "hours"),
    (hours(kind="gate_shift"), "shift"),
    (hours(kind="delivery", shift="s-1"), "shift"),
    (hours(volunteer="张伟"), "volunteer"),
    (register(team="Party Branch"), "team"),
])
def test_bad_volunteer_commands_are_invalid_and_name_the_field(cmd, field):
    with pytest.raises(Invalid) as e:
        commands.validate(cmd)
    assert e.value.field == field


def shift_ended(hours_worked: float, ended_at: datetime, staff="volunteer:nangong-01-g1-am") -> ShiftEnded:
    return ShiftEnded(community=COMMUNITY, shift="s-7", compound="nangong-1", gate="g1", staff=staff,
                      hours=hours_worked, ended_at=ended_at, ended_by=staff)


RAW = SimpleNamespace(event_id="e-1", occurred_at=AT, correlation_id="k-1")


def test_a_gate_shift_that_ended_becomes_the_volunteers_gate_hours_on_the_day_it_started():
    # given a night shift from 21:00 to 03:00 (the checkpoint counts it on the day it started)
    ended = datetime(2022, 4, 3, 3, 0, tzinfo=CST)
    [(name, cmd)] = react_to_shift(RAW, shift_ended(6.0, ended), zone=ZONE)
    assert name == "record_volunteer_hours" and cmd.command_id == "gate-hours:e-1"
    assert (cmd.volunteer, cmd.on, cmd.kind, cmd.hours, cmd.shift) == (
        "volunteer:nangong-01-g1-am", date(2022, 4, 2), "gate_shift", 6.0, "s-7")
    commands.validate(cmd)


def test_a_gate_shift_is_rounded_to_whole_minutes_and_one_of_less_than_a_minute_records_nothing():
    [(_, cmd)] = react_to_shift(RAW, shift_ended(2 + 1 / 7, AT), zone=ZONE)
    assert cmd.hours == 129 / 60  # 128.57 minutes
    commands.validate(cmd)
    assert react_to_shift(RAW, shift_ended(0.001, AT), zone=ZONE) == []


# -- visits -----------------------------------------------------------------------------------------


HOME = Household(household="h-201", community=COMMUNITY, compound="sunny-garden", building="b2",
                 vulnerabilities=frozenset({"elderly_alone"}))


def visit(outcome: str, at: datetime = AT) -> VisitRecorded:
    [event] = decide(Facts(household=HOME), RecordVisit(**common(household="h-201", outcome=outcome,
                                                                 volunteer="vol-1", occurred_at=at)))
    return event


def test_a_visit_to_a_household_is_recorded_where_it_lives():
    event = visit("well")
    assert (event.compound, event.building, event.volunteer) == ("sunny-garden", "b2", "vol-1")


def test_a_visit_to_an_unknown_household_is_not_found():
    with pytest.raises(NotFound):
        decide(Facts(), RecordVisit(**common(household="h-nobody", outcome="well")))


def test_a_visit_nobody_answered_is_not_a_contact():
    later = AT + timedelta(days=2)
    visits = replay([visit("well"), visit("no_answer", later)])
    assert isinstance(visits, Visits)
    assert (visits.visits, visits.last_visit_at, visits.last_outcome, visits.last_contact_at) == (
        2, later, "no_answer", AT)


# -- the views' figures ---------------------------------------------------------------------------------


def figures(*events, day=TODAY):
    batch = [(e.community, day, rules.ops(e, e.community, day)) for e in events]
    return fold.fold(batch, {}).deltas


def test_a_group_order_is_open_until_every_household_has_its_share():
    assert figures(PLACED, DELIVERED, handed("b1", 50, 50)) == {
        (COMMUNITY, "group_orders_open", TODAY): 1, (COMMUNITY, "group_orders_delivered", TODAY): 1}
    assert figures(PLACED, DELIVERED, handed("b1", 50, 50), handed("b2", 70, 120)) == {
        (COMMUNITY, "group_orders_delivered", TODAY): 1}


def test_volunteer_minutes_count_per_team_on_the_day_worked():
    yesterday = TODAY - timedelta(days=1)
    worked = [VolunteerHoursRecorded(community=COMMUNITY, volunteer=v, on=on, kind=kind, hours=h, team=team,
                                     recorded_at=AT, recorded_by=STAFF)
              for v, on, kind, h, team in (("vol-1", TODAY, "delivery", 2.5, "party-branch-3"),
                                           ("vol-2", TODAY, "door_to_door", 1.25, "party-branch-3"),
                                           ("vol-3", yesterday, "other", 1, "cadres"),
                                           ("gate-1", TODAY, "gate_shift", 6, None))]
    assert figures(*worked) == {(COMMUNITY, "volunteer_minutes.party-branch-3", TODAY): 225,
                                (COMMUNITY, "volunteer_minutes.cadres", yesterday): 60,
                                (COMMUNITY, "volunteer_minutes.(none)", TODAY): 360}


def test_registering_a_volunteer_or_a_visit_changes_no_figure():
    registered = VolunteerRegistered(community=COMMUNITY, volunteer="vol-1", team="t", unit_kind="resident",
                                     registered_at=AT, registered_by=STAFF)
    assert figures(registered, visit("well")) == {}


# -- the vulnerable list's pages ---------------------------------------------------------------------------


def test_a_page_cursor_names_the_last_contact_and_resident_and_reads_back():
    row = {"last_contact_at": datetime(2022, 4, 2, 9, 30, 0, 123456, tzinfo=CST), "resident": "r-9"}
    assert queries.after(queries.cursor(row)) == (True, row["last_contact_at"], "r-9")
    never = {"last_contact_at": None, "resident": "r-1"}
    assert queries.after(queries.cursor(never)) == (True, None, "r-1")
    assert queries.after("") == (False, None, "")


@pytest.mark.parametrize("value", ["r-9", "x.r-9", "12.", "n"])
def test_an_after_that_no_page_gave_is_invalid(value):
    with pytest.raises(Invalid) as e:
        queries.after(value)
    assert e.value.field == "after"


def test_the_board_shows_the_days_volunteer_hours_per_team_and_the_group_orders():
    from services.views import board
    # given the sums of the figures (on the day, up to the day, over the window)
    flat = board.flat({"volunteer_minutes.party-branch-3": (90, 500, 0), "volunteer_minutes.cadres": (0, 60, 0),
                       "group_orders_open": (1, 2, 0), "group_orders_delivered": (1, 3, 0), "stock.rice": (0, 4, 0)})
    nested = board.nest(flat)
    assert nested["volunteer_hours_today"] == {"party-branch-3": 1.5}
    assert (nested["group_orders_open"], nested["group_orders_delivered_today"]) == (2, 1)
    assert board.columns([flat])[-3:] == ["stock.rice", "volunteer_minutes.cadres", "volunteer_minutes.party-branch-3"]
