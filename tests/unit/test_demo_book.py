"""The demo's book: from what was accepted and CONTRACT.md's reactions to the board's figures."""
from __future__ import annotations

from datetime import date

from services.demo.book import FIGURES, Book, differences
from services.demo.check import expected

NG = "changning.chengjiaqiao.nangong"
XJ = "changning.chengjiaqiao.xinjing"
DAY = date(2020, 2, 17)


def registered() -> Book:
    book = Book()
    for h in ("h1", "h2", "h3"):
        book.household(NG, h)
    for r, h in (("r1", "h1"), ("r2", "h1"), ("r3", "h2"), ("r4", "h3")):
        book.resident(NG, r)
    book.household(XJ, "x1")
    book.resident(XJ, "x1-r1")
    return book


def test_an_empty_book_shows_zero_for_every_figure():
    figures = Book().figures(NG, DAY)
    assert set(figures) == set(FIGURES) and not any(figures.values())


def test_registrations_count_per_community():
    book = registered()
    assert (book.figures(NG, DAY)["residents"], book.figures(NG, DAY)["households"]) == (4, 3)
    assert (book.figures(XJ, DAY)["residents"], book.figures(XJ, DAY)["households"]) == (1, 1)
    assert book.communities() == [NG, XJ]


def test_arrivals_count_by_arrival_day_and_wait_for_verification():
    book = registered()
    book.arrival(NG, "a1", date(2020, 2, 4), True)  # the 14th day back counts
    book.arrival(NG, "a2", date(2020, 2, 3), False)  # the 15th does not
    book.arrival(NG, "a3", DAY, True)
    book.verified("a1", "cleared", "r1", "h1")
    f = book.figures(NG, DAY)
    assert (f["arrivals_14d"], f["arrivals_pending"], f["quarantine_home"]) == (2, 1, 0)


def test_calls_count_those_reached_and_tip_offs_stay_open_until_followed_up():
    book = registered()
    for outcome in ("reached_at_home", "reached_elsewhere", "no_answer"):
        book.called(NG, outcome)
    book.tipped(NG, "t1")
    book.tipped(NG, "t2")
    book.tipped(XJ, "t3")
    book.followed_up(NG, "t1")
    f = book.figures(NG, DAY)
    assert (f["calls"], f["calls_reached"], f["tip_offs_open"], f["tip_offs_followed_up"]) == (3, 2, 1, 1)
    assert book.figures(XJ, DAY)["tip_offs_open"] == 1


def test_home_quarantine_confines_the_household_with_one_food_request_a_day():
    book = registered()
    book.arrival(NG, "a1", DAY, True)
    book.verified("a1", "home_quarantine", "r1", "h1")
    assert book.case_opened(NG, "r2", "h1", "home", "case-2")  # a close contact of the same family
    f = book.figures(NG, DAY)
    assert (f["quarantine_home"], f["daily_supply_households"], f["requests_open"]) == (2, 1, 1)


def test_a_second_case_for_the_same_resident_is_refused():
    book = registered()
    assert book.case_opened(NG, "r3", "h2", "centralized")
    assert not book.case_opened(NG, "r3", "h2", "monitoring")
    assert book.figures(NG, DAY)["quarantine_centralized"] == 1
    assert book.figures(NG, DAY)["quarantine_monitoring"] == 0


def test_a_transfer_to_hospital_ends_that_cases_food_but_the_days_request_stays():
    book = registered()
    book.case_opened(NG, "r1", "h1", "home")
    book.transferred("r1", "hospital")
    f = book.figures(NG, DAY)
    shown = (f["quarantine_home"], f["quarantine_hospital"], f["daily_supply_households"], f["requests_open"])
    assert shown == (0, 1, 0, 1)
    book.case_opened(NG, "r2", "h1", "home")  # the household again: no second request that day
    assert book.figures(NG, DAY)["requests_open"] == 1 and book.figures(NG, DAY)["daily_supply_households"] == 1


def test_a_seal_confines_every_household_of_the_building():
    book = registered()
    book.case_opened(NG, "r1", "h1", "home")
    book.sealed(NG, "c01", "b07", ["h1", "h2"])
    f = book.figures(NG, DAY)
    shown = (f["sealed_buildings"], f["sealed_compounds"], f["daily_supply_households"], f["requests_open"])
    assert shown == (1, 0, 2, 2)


def test_gate_passages_and_fevers():
    book = registered()
    book.passage(NG, "out", True, False, None, "h1")
    book.passage(NG, "in", True, False, "r1", "h1")
    book.passage(NG, "in", False, True, "r3", "h2")  # a fever of a named resident: monitoring
    book.passage(NG, "in", False, True, None, None)  # a visitor's fever: no case
    book.case_opened(NG, "r4", "h3", "home")
    book.passage(NG, "out", False, True, "r4", "h3")  # already in a case: no second one
    f = book.figures(NG, DAY)
    assert (f["passages_in"], f["passages_out"], f["passages_denied"], f["fevers"]) == (1, 1, 3, 3)
    assert (f["quarantine_monitoring"], f["quarantine_home"]) == (1, 1)


def test_deliveries_stock_and_a_welfare_check():
    book = registered()
    book.received(NG, {"vegetable-pack": 10, "masks": 100, "eggs": 5})
    book.requested(NG, "q1")
    book.requested(NG, "q2")
    book.assigned(NG, {"vegetable-pack": 1, "eggs": 1})
    book.assigned(NG, {"vegetable-pack": 1, "medicine": 1})  # medicine is not kept in the store
    book.delivered("q1")
    book.not_answered(NG, "h2", {"vegetable-pack": 1, "medicine": 1}, vulnerable=True)
    book.redeemed(NG, 5)
    f = book.figures(NG, DAY)
    assert (f["deliveries"], f["requests_open"], f["welfare_checks_open"]) == (1, 1, 1)
    assert (f["stock.vegetable-pack"], f["stock.eggs"], f["stock.masks"]) == (9, 4, 95)
    assert "stock.medicine" not in f


def test_a_daily_request_read_back_keeps_its_count_and_can_be_delivered():
    book = registered()
    book.case_opened(NG, "r1", "h1", "home")
    book.daily_request_seen("h1", "daily-h1-2020-02-17")
    assert book.figures(NG, DAY)["requests_open"] == 1
    book.delivered("daily-h1-2020-02-17")
    assert (book.figures(NG, DAY)["requests_open"], book.figures(NG, DAY)["deliveries"]) == (0, 1)


def test_differences_name_each_figure_that_differs():
    assert differences({"a": 1, "b": 2}, {"a": 1, "b": 2}) == {}
    assert differences({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 0}) == {"b": (2, 3)}
    assert differences({"stock.x": 4}, {}) == {"stock.x": (4, 0)}


def test_expected_adds_the_book_to_the_baseline_unless_replayed():
    book = registered()
    base = {"residents": 10, "households": 5, "stock.masks": 7}
    assert expected(book, NG, DAY, base, replayed=False)["residents"] == 14
    assert expected(book, NG, DAY, base, replayed=False)["stock.masks"] == 7
    assert expected(book, NG, DAY, base, replayed=True) == base


def test_a_group_order_is_open_until_handed_out_to_all_and_counts_its_delivery_and_teams_minutes():
    book = registered()
    book.group_order(NG, "go1")
    book.group_order(NG, "go2")
    book.group_order_delivered("go1")
    book.group_order_handed_out("go1", complete=False)  # one building of two
    book.group_order_handed_out("go1", complete=True)
    book.volunteer_minutes[NG]["nangong-cadres"] += 480
    figures = book.figures(NG, DAY)
    assert (figures["group_orders_open"], figures["group_orders_delivered"]) == (1, 1)
    assert figures["volunteer_minutes.nangong-cadres"] == 480 and "volunteer_minutes.nangong-cadres" not in book.figures(XJ, DAY)
