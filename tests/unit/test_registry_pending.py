"""Arrivals from the city's list (register_pending_arrival) and their completion at the door
(complete_registration), as stories: given the registry's state -> when a command -> then events."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from services.registry.commands import CompleteRegistration, RegisterPendingArrival, birth_year_of, validate
from services.registry.decide import Facts, decide
from services.registry.domain import Compound, Household, Pending, Resident, evolve, pending_stream, target_stream
from shared.contracts.registry import ArrivalPendingRegistration, ArrivalRegistered, RegistrationCompleted, Transport
from shared.errors import Conflict, Invalid, NotFound, Rejected

AT = datetime(2020, 2, 17, 9, 30, tzinfo=timezone(timedelta(hours=8)))
COMMUNITY = "changning.chengjiaqiao.nangong"
ID_CARD = "11010519491231002X"
COMPOUND = Compound(community=COMMUNITY, compound="nangong-1", name="南宫小区", buildings=("b1",), gates=("g1",))
HOME = Household(community=COMMUNITY, compound="nangong-1", building="b1", household="h-1")
RESIDENT = Resident(community=COMMUNITY, compound="nangong-1", building="b1", household="h-1", resident="r-1")


def listed(**kw) -> RegisterPendingArrival:
    return RegisterPendingArrival(**{
        "command_id": "c-1", "actor": "staff:li-na", "occurred_at": AT, "community": COMMUNITY, "name": "赵六一",
        "id_number": ID_CARD, "origin": "温州", "arrived_on": date(2020, 2, 16), "transport": Transport(kind="train"),
        "city_class": "A", "risk_area_visited": False, "arrival": "a-1", **kw})


def complete(**kw) -> CompleteRegistration:
    return CompleteRegistration(**{"command_id": "c-2", "actor": "staff:li-na", "occurred_at": AT, "arrival": "a-1",
                                   "household": "h-1", "resident": "r-9", **kw})


def waiting() -> Pending:
    [event] = decide(Facts(), listed())
    return evolve(None, event)


def test_a_person_with_no_resident_here_waits_for_the_door_with_a_masked_name_only():
    [event] = decide(Facts(), listed())
    assert isinstance(event, ArrivalPendingRegistration)
    assert (event.arrival, event.display_name, event.city_class) == ("a-1", "赵*一", "A")
    assert "赵六一" not in repr(event) and ID_CARD not in repr(event)
    assert target_stream(listed()) == pending_stream("a-1")


def test_the_resident_who_holds_the_id_number_gets_the_arrival_at_once():
    [event] = decide(Facts(resident=RESIDENT), listed(risk_area_visited=True, city_class="B"))
    assert isinstance(event, ArrivalRegistered)
    assert (event.resident, event.household, event.arrival, event.requires_verification) == ("r-1", "h-1", "a-1", True)


@pytest.mark.parametrize("facts, reason", [
    (Facts(already_pending=True), "already_pending"),
    (Facts(registered_elsewhere=True), "registered_elsewhere"),
    (Facts(resident=Resident(community="changning.xinjing.jinxiu", compound="x", building="b", household="h",
                             resident="r")), "registered_elsewhere"),
    (Facts(resident=Resident(community=COMMUNITY, compound="nangong-1", building="b1", household="h-1",
                             resident="r-1", moved_out=True)), "moved_out"),
])
def test_a_listed_arrival_is_refused_by_its_rule(facts, reason):
    with pytest.raises(Rejected) as refused:
        decide(facts, listed())
    assert refused.value.reason == reason


def test_a_listed_place_must_be_a_registered_compound_and_building_and_an_id_is_never_taken_twice():
    with pytest.raises(NotFound, match="compound nangong-1"):
        decide(Facts(), listed(compound="nangong-1"))
    with pytest.raises(NotFound, match="building b7"):
        decide(Facts(compound=COMPOUND), listed(compound="nangong-1", building="b7"))
    assert decide(Facts(compound=COMPOUND), listed(compound="nangong-1", building="b1"))[0].building == "b1"
    with pytest.raises(Conflict):
        decide(Facts(pending=waiting()), listed())


def test_completed_at_the_door_the_person_becomes_a_resident_with_the_arrival_and_the_pending_one_closes():
    resident, arrival, done = decide(Facts(pending=waiting(), household=HOME), complete(vulnerabilities=["elderly_alone"]))
    assert (resident.resident, resident.household, resident.display_name, resident.vulnerabilities) == (
        "r-9", "h-1", "赵*一", ["elderly_alone"])
    assert (arrival.arrival, arrival.resident, arrival.arrived_on, arrival.requires_verification) == (
        "a-1", "r-9", date(2020, 2, 16), True)
    assert isinstance(done, RegistrationCompleted)
    assert evolve(waiting(), done).completed


@pytest.mark.parametrize("facts, error", [
    (Facts(household=HOME), NotFound),
    (Facts(pending=waiting()), NotFound),
    (Facts(pending=waiting(), household=Household(community="changning.xinjing.jinxiu", compound="x", building="b",
                                                  household="h-1")), NotFound),
    (Facts(pending=waiting(), household=HOME, resident=RESIDENT), Conflict),
])
def test_a_completion_needs_the_pending_one_a_household_of_its_community_and_a_free_id(facts, error):
    with pytest.raises(error):
        decide(facts, complete())


def test_a_registration_is_completed_once():
    done = evolve(waiting(), decide(Facts(pending=waiting(), household=HOME), complete())[2])
    with pytest.raises(Rejected) as refused:
        decide(Facts(pending=done, household=HOME), complete(resident="r-10"))
    assert refused.value.reason == "already_completed"


def test_the_wire_checks_of_the_new_commands():
    assert validate(listed()) == listed()
    with pytest.raises(Invalid) as bad:
        validate(listed(building="b1"))
    assert bad.value.field == "compound"
    with pytest.raises(Invalid) as bad:
        validate(listed(community="cordon.access.city"))
    assert bad.value.field == "community"
    with pytest.raises(Invalid) as bad:
        validate(listed(arrived_on=date(2020, 2, 18)))
    assert bad.value.field == "arrived_on"
    with pytest.raises(Invalid) as bad:
        validate(complete(birth_year=1800))
    assert bad.value.field == "birth_year"
    assert birth_year_of(ID_CARD) == 1949 and birth_year_of("E12345678") is None
