"""The passage decision, rule by rule and in the order reasons win: given the gate's facts, when a
person is checked, then allowed or denied with one reason (and FeverDetected on a fever)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from msgspec.structs import replace as change

from services.checkpoint.commands import CheckPassage, Visitor
from services.checkpoint.config import Config
from services.checkpoint.decide import decide as decide_any_command
from services.checkpoint.domain import Compound, Control
from services.checkpoint.passage import Facts, Home, Pass, Resident, decide, reason
from shared.contracts.checkpoint import FeverDetected, PassageAllowed, PassageDenied
from shared.errors import NotFound

AT = datetime(2022, 4, 2, 7, 45, tzinfo=timezone(timedelta(hours=8)))
COMMUNITY = "putuo.wanli.wanli-3"
GUARD = "staff:guard-zhou"
COMPOUND = Compound(community=COMMUNITY, compound="huayuan", buildings=("b1", "b2"), gates=("north", "south"))
HOME = Home(household="h-101", community=COMMUNITY, compound="huayuan", building="b1")
WANG = Resident(resident="r-wang", household="h-101", community=COMMUNITY, compound="huayuan", building="b1")
PASS = Pass(pass_="0b0f6c1e-4d5a-4b6c-8e7f-9a0b1c2d3e4f", number="7K3QDX9M2A", community=COMMUNITY,
            compound="huayuan", household="h-101")
HOST = Home(household="h-202", community=COMMUNITY, compound="huayuan", building="b2")
GUEST = Visitor(name="张三丰", phone="13800001111", host_household="h-202", purpose="送药")


def control(level="open", closed=()) -> Control:
    return Control(community=COMMUNITY, compound="huayuan", level=level, closed_gates=frozenset(closed))


def facts(level="open", closed=(), **kw) -> Facts:
    return Facts(**{"compound": COMPOUND, "control": control(level, closed), **kw})


def resident_facts(level="open", **kw) -> Facts:
    return facts(level, **{"resident": WANG, "home": HOME, **kw})


def pass_facts(level="closed", **kw) -> Facts:
    return facts(level, **{"pass_": PASS, "home": HOME, **kw})


def visitor_facts(level="open", **kw) -> Facts:
    return facts(level, **{"home": HOST, **kw})


def check(direction="out", temperature_c=36.6, **kw) -> CheckPassage:
    return CheckPassage(**{"command_id": "c-1", "actor": GUARD, "occurred_at": AT, "community": COMMUNITY,
                           "compound": "huayuan", "gate": "north", "direction": direction,
                           "temperature_c": temperature_c, "passage": "p-1", **kw})


def by_resident(**kw) -> CheckPassage:
    return check(resident="r-wang", **kw)


def by_pass(**kw) -> CheckPassage:
    return check(pass_=PASS.number, **kw)


def by_visitor(direction="in", **kw) -> CheckPassage:
    return check(visitor=GUEST, direction=direction, **kw)


# -- allowed ---------------------------------------------------------------------------------------


def test_a_resident_walks_out_of_an_open_compound():
    assert decide(resident_facts(), by_resident()) == [PassageAllowed(
        community=COMMUNITY, passage="p-1", compound="huayuan", gate="north", direction="out",
        temperature_c=36.6, resident="r-wang", household="h-101", building="b1",
        checked_at=AT, checked_by=GUARD)]


def test_the_services_one_decide_decides_passages_with_these_rules():
    for f, cmd in ((resident_facts(), by_resident()), (visitor_facts("sealed"), by_visitor()),
                   (resident_facts(), by_resident(temperature_c=38.0))):
        assert decide_any_command(f, cmd) == decide(f, cmd)


def test_a_resident_with_a_valid_pass_goes_through_a_closed_compound_both_ways():
    for direction in ("in", "out"):
        [event] = decide(pass_facts(), by_pass(direction=direction))
        assert isinstance(event, PassageAllowed)
        assert (event.pass_, event.pass_shown, event.household) == (PASS.pass_, True, "h-101")
        assert PASS.number not in repr(event)  # shown by its number, recorded by its id


def test_a_pass_and_the_resident_it_belongs_to_go_through_together():
    assert reason(pass_facts(resident=WANG), by_pass(resident="r-wang")) is None


def test_a_visitor_is_admitted_to_an_open_compound_under_a_masked_name():
    [event] = decide(visitor_facts(), by_visitor())
    assert isinstance(event, PassageAllowed)
    assert (event.visitor, event.household, event.building, event.resident) == ("张*丰", "h-202", "b2", None)
    assert "13800001111" not in repr(event)


# -- gate_closed -------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["in", "out"])
def test_nobody_passes_a_closed_gate(direction):
    closed = facts(closed=["north"], resident=WANG, home=HOME)
    assert reason(closed, by_resident(direction=direction)) == "gate_closed"
    assert reason(replace(closed, home=HOST), by_visitor(direction=direction)) == "gate_closed"


def test_a_closed_gate_does_not_close_the_other_gate():
    assert reason(facts(closed=["north"], resident=WANG, home=HOME), by_resident(gate="south")) is None


# -- compound_sealed -----------------------------------------------------------------------------------


def test_nobody_leaves_a_sealed_compound_not_even_with_a_pass():
    assert reason(pass_facts("sealed"), by_pass()) == "compound_sealed"
    assert reason(visitor_facts("sealed"), by_visitor(direction="out")) == "compound_sealed"


def test_a_quarantine_seal_of_the_whole_compound_seals_it_at_any_level():
    assert reason(resident_facts(compound_sealed=True), by_resident()) == "compound_sealed"


def test_a_resident_with_a_pass_may_come_home_into_a_sealed_compound():
    assert reason(pass_facts("sealed"), by_pass(direction="in")) is None
    assert reason(resident_facts("sealed"), by_resident(direction="in")) == "no_valid_pass"


def test_a_compound_seal_is_entered_like_the_sealed_level():
    assert reason(resident_facts(compound_sealed=True), by_resident(direction="in")) == "no_valid_pass"
    assert reason(visitor_facts(compound_sealed=True), by_visitor()) == "visitors_not_admitted"


# -- building_sealed -----------------------------------------------------------------------------------


def test_a_resident_of_a_sealed_building_may_not_go_out():
    assert reason(resident_facts(sealed_buildings=frozenset({"b1"})), by_resident()) == "building_sealed"
    assert reason(pass_facts(sealed_buildings=frozenset({"b1"})), by_pass()) == "building_sealed"


def test_a_resident_of_a_sealed_building_may_come_home():
    assert reason(resident_facts(sealed_buildings=frozenset({"b1"})), by_resident(direction="in")) is None


def test_another_building_sealed_does_not_stop_the_resident():
    assert reason(resident_facts(sealed_buildings=frozenset({"b2"})), by_resident()) is None


def test_a_building_of_the_same_name_in_another_compound_is_not_this_one():
    elsewhere = replace(HOME, compound="other")
    f = facts(resident=replace(WANG, compound="other"), home=elsewhere, sealed_buildings=frozenset({"b1"}))
    assert reason(f, by_resident()) == "unknown_resident"


def test_a_visitor_to_a_sealed_building_is_turned_away_but_may_leave():
    f = visitor_facts(sealed_buildings=frozenset({"b2"}))
    assert reason(f, by_visitor()) == "building_sealed"
    assert reason(f, by_visitor(direction="out")) is None


# -- under_quarantine ----------------------------------------------------------------------------------


def test_a_quarantined_resident_may_not_go_out_but_may_come_home():
    f = facts(resident=replace(WANG, quarantined=True), home=HOME)
    assert reason(f, by_resident()) == "under_quarantine"
    assert reason(f, by_resident(direction="in")) is None


def test_home_quarantine_keeps_the_whole_household_in():
    f = facts(resident=WANG, home=replace(HOME, home_quarantine=True))
    assert reason(f, by_resident()) == "under_quarantine"


def test_a_pass_alone_is_judged_by_its_household():
    f = pass_facts(home=replace(HOME, home_quarantine=True))
    assert reason(f, by_pass()) == "under_quarantine"
    assert reason(f, by_pass(direction="in")) is None


def test_a_resident_awaiting_a_stay_in_result_may_not_go_out_but_may_come_home():
    # Given a resident sampled in a round that told them to stay in, whose result is not back
    waiting = resident_facts(resident=replace(WANG, awaiting_result=True))
    # then they are turned back going out, with or without their pass, and let home coming in
    assert reason(waiting, by_resident()) == "awaiting_result"
    assert reason(replace(waiting, pass_=PASS), by_pass(resident="r-wang")) == "awaiting_result"
    assert reason(waiting, by_resident(direction="in")) is None
    [denied] = decide(waiting, by_resident())
    assert isinstance(denied, PassageDenied) and denied.reason == "awaiting_result"
    # and once the result is recorded they go out again
    assert reason(resident_facts(), by_resident()) is None


def test_a_visitor_to_a_household_in_home_quarantine_is_turned_away_but_may_leave():
    f = visitor_facts(home=replace(HOST, home_quarantine=True))
    assert reason(f, by_visitor()) == "under_quarantine"
    assert reason(f, by_visitor(direction="out")) is None


# -- fever -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature, allowed", [(36.0, True), (37.2, True), (37.29, True), (37.3, False),
                                                   (37.31, False), (39.5, False)])
def test_the_fever_threshold_is_37_3_by_default(temperature, allowed):
    events = decide(resident_facts(), by_resident(temperature_c=temperature))
    assert isinstance(events[0], PassageAllowed) == allowed
    assert any(isinstance(e, FeverDetected) for e in events) == (not allowed)


@pytest.mark.parametrize("direction", ["in", "out"])
def test_a_fever_stops_residents_and_visitors_both_ways(direction):
    assert reason(resident_facts(), by_resident(direction=direction, temperature_c=38.0)) == "fever"
    assert reason(visitor_facts(), by_visitor(direction=direction, temperature_c=38.0)) == "fever"


def test_a_fever_is_detected_with_the_threshold_in_force():
    denied, fever = decide(resident_facts(), by_resident(temperature_c=37.8))
    assert denied.reason == "fever"
    assert fever == FeverDetected(
        community=COMMUNITY, passage="p-1", compound="huayuan", gate="north", temperature_c=37.8,
        resident="r-wang", household="h-101", direction="out", threshold_c=37.3, detected_at=AT,
        detected_by=GUARD)


def test_the_threshold_is_a_policy_value():
    strict = resident_facts(config=Config(fever_c=37.0))
    lenient = resident_facts(config=Config(fever_c=37.5))
    assert reason(strict, by_resident(temperature_c=37.0)) == "fever"
    assert reason(lenient, by_resident(temperature_c=37.4)) is None


def test_a_fever_is_detected_whatever_reason_wins():
    events = decide(facts(closed=["north"], resident=WANG, home=HOME), by_resident(temperature_c=38.2))
    assert [type(e) for e in events] == [PassageDenied, FeverDetected]
    assert events[0].reason == "gate_closed"


def test_a_visitors_fever_carries_the_masked_name():
    _, fever = decide(visitor_facts(), by_visitor(temperature_c=38.0))
    assert (fever.visitor, fever.household, fever.resident) == ("张*丰", "h-202", None)


def test_implausible_policies_are_refused():
    with pytest.raises(ValueError):
        Config(fever_c=80.0)
    with pytest.raises(ValueError):
        Config(visitors_admitted=frozenset({"sealed"}))


# -- unknown_resident ------------------------------------------------------------------------------------


def test_an_unregistered_resident_id_is_unknown_and_recorded_as_given():
    [event] = decide(facts(), by_resident())
    assert (event.reason, event.resident, event.household) == ("unknown_resident", "r-wang", None)


def test_a_resident_who_moved_out_is_no_longer_a_resident():
    assert reason(facts(resident=replace(WANG, moved_out=True), home=HOME), by_resident()) == "unknown_resident"


# -- no_valid_pass ---------------------------------------------------------------------------------------


def test_at_closed_management_a_resident_needs_a_pass_both_ways():
    for direction in ("in", "out"):
        assert reason(resident_facts("closed"), by_resident(direction=direction)) == "no_valid_pass"


def test_an_open_compound_needs_no_pass():
    assert reason(resident_facts("open"), by_resident()) is None


def test_an_unknown_pass_number_is_denied_and_recorded_as_a_pass_shown_that_matched_none():
    [event] = decide(facts("closed"), check(pass_="ZZZZZZZZZZ"))
    assert (event.reason, event.pass_shown, event.pass_, event.household) == ("no_valid_pass", True, None, None)
    assert "ZZZZZZZZZZ" not in repr(event)  # a mistyped number may be one letter off a valid one


def test_a_revoked_pass_is_not_valid_even_where_no_pass_is_needed():
    revoked = replace(PASS, revoked=True)
    assert reason(pass_facts("closed", pass_=revoked), by_pass()) == "no_valid_pass"
    assert reason(pass_facts("open", pass_=revoked), by_pass()) == "no_valid_pass"


def test_a_pass_of_another_compound_is_not_valid_here():
    assert reason(pass_facts(pass_=replace(PASS, compound="other")), by_pass()) == "no_valid_pass"


def test_a_pass_of_another_household_is_not_the_residents():
    other = replace(WANG, household="h-999")
    assert reason(pass_facts(resident=other, home=replace(HOME, household="h-999")),
                  by_pass(resident="r-wang")) == "no_valid_pass"


# -- visitors_not_admitted -------------------------------------------------------------------------------


def test_visitors_are_not_admitted_under_closed_management_by_default():
    assert reason(visitor_facts("closed"), by_visitor()) == "visitors_not_admitted"


def test_visitors_may_always_leave():
    assert reason(visitor_facts("closed"), by_visitor(direction="out")) is None


def test_a_policy_may_admit_visitors_under_closed_management_never_when_sealed():
    config = Config(visitors_admitted=frozenset({"open", "closed"}))
    assert reason(visitor_facts("closed", config=config), by_visitor()) is None
    assert reason(visitor_facts("sealed", config=config), by_visitor()) == "visitors_not_admitted"


def test_a_policy_may_refuse_visitors_even_when_open():
    assert reason(visitor_facts("open", config=Config(visitors_admitted=frozenset())), by_visitor()) \
        == "visitors_not_admitted"


# -- the order in which reasons win ------------------------------------------------------------------------

RESIDENT_OUT_ORDER = ["gate_closed", "compound_sealed", "building_sealed", "under_quarantine", "awaiting_result",
                      "fever", "unknown_resident", "no_valid_pass"]


def everything_wrong_for_a_resident_going_out() -> tuple[Facts, CheckPassage]:
    """A resident of another compound, awaiting a stay-in round's result, with a revoked pass of a
    household in home quarantine, in a sealed building of a sealed compound, with a fever, at a
    closed gate: every resident reason applies."""
    stranger = replace(WANG, resident="r-stranger", compound="elsewhere", awaiting_result=True)
    f = facts("sealed", closed=["north"], pass_=replace(PASS, revoked=True), resident=stranger,
              home=replace(HOME, home_quarantine=True), sealed_buildings=frozenset({"b1"}))
    return f, by_pass(resident="r-stranger", temperature_c=38.5)


def lift(f: Facts, cmd: CheckPassage, why: str) -> tuple[Facts, CheckPassage]:
    """Take away exactly the cause of ``why``."""
    match why:
        case "gate_closed":
            return replace(f, control=replace(f.control, closed_gates=frozenset())), cmd
        case "compound_sealed":
            return replace(f, control=replace(f.control, level="closed"), compound_sealed=False), cmd
        case "building_sealed":
            return replace(f, sealed_buildings=frozenset()), cmd
        case "under_quarantine":
            return replace(f, home=replace(f.home, home_quarantine=False)), cmd
        case "awaiting_result":
            return replace(f, resident=replace(f.resident, awaiting_result=False)), cmd
        case "fever":
            return f, change(cmd, temperature_c=36.6)
        case "unknown_resident":
            return f, change(cmd, resident=None)
        case "no_valid_pass":
            return replace(f, pass_=replace(f.pass_, revoked=False)), cmd
        case "visitors_not_admitted":
            return replace(f, control=replace(f.control, level="open")), cmd
    raise AssertionError(why)


def test_the_reasons_for_a_resident_going_out_win_in_the_documented_order():
    f, cmd = everything_wrong_for_a_resident_going_out()
    seen = []
    while (why := reason(f, cmd)) is not None:
        seen.append(why)
        f, cmd = lift(f, cmd, why)
    assert seen == RESIDENT_OUT_ORDER


def test_the_reasons_for_a_visitor_coming_in_win_in_the_documented_order():
    f = visitor_facts("closed", closed=["north"], home=replace(HOST, home_quarantine=True),
                      sealed_buildings=frozenset({"b2"}))
    cmd = by_visitor(temperature_c=38.5)
    seen = []
    while (why := reason(f, cmd)) is not None:
        seen.append(why)
        f, cmd = lift(f, cmd, why)
    assert seen == ["gate_closed", "building_sealed", "under_quarantine", "fever", "visitors_not_admitted"]


@pytest.mark.parametrize("winner, loser", list(zip(RESIDENT_OUT_ORDER, RESIDENT_OUT_ORDER[1:])))
def test_each_reason_beats_the_next_one(winner, loser):
    f, cmd = everything_wrong_for_a_resident_going_out()
    for why in RESIDENT_OUT_ORDER[: RESIDENT_OUT_ORDER.index(winner)]:
        f, cmd = lift(f, cmd, why)
    assert reason(f, cmd) == winner
    assert reason(*lift(f, cmd, winner)) == loser


# -- bad input: nothing is decided ----------------------------------------------------------------------------


def test_an_unknown_compound_is_not_found():
    with pytest.raises(NotFound) as info:
        decide(Facts(compound=None), by_resident())
    assert info.value.field == "compound"


def test_a_compound_of_another_community_is_not_this_one():
    with pytest.raises(NotFound):
        decide(resident_facts(), by_resident(community="putuo.wanli.wanli-4"))


def test_an_unknown_gate_is_not_found():
    with pytest.raises(NotFound) as info:
        decide(resident_facts(), by_resident(gate="east"))
    assert info.value.field == "gate" and "north, south" in info.value.message


def test_a_visitors_host_household_must_be_registered_here():
    with pytest.raises(NotFound) as info:
        decide(facts(), by_visitor())
    assert info.value.field == "visitor.host_household"
    with pytest.raises(NotFound) as info:
        decide(visitor_facts(home=replace(HOST, compound="other")), by_visitor())
    assert "does not live in compound huayuan" in info.value.message
