"""The registry's decide/evolve as stories: given events -> when a command -> then events or an error."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import msgspec
import pytest

from services.registry.commands import (
    MoveOut,
    RegisterArrival,
    RegisterCompound,
    RegisterHousehold,
    RegisterResident,
    VerifyArrival,
)
from services.registry.decide import Facts, decide
from services.registry.domain import (
    Arrival,
    Compound,
    Household,
    Resident,
    arrival_stream,
    compound_stream,
    evolve,
    household_stream,
    replay,
    resident_stream,
    target_stream,
)
from shared.contracts.registry import (
    ArrivalRegistered,
    ArrivalRegisteredV1,
    ArrivalVerified,
    CompoundRegistered,
    HouseholdRegistered,
    HouseholdRegisteredV1,
    ResidentMovedOut,
    ResidentRegistered,
    ResidentRegisteredV1,
    Transport,
    Visit,
)
from shared.errors import Conflict, NotFound, Rejected
from shared.privacy import mask_name

AT = datetime(2026, 11, 23, 9, 30, tzinfo=timezone(timedelta(hours=8)))
LATER = AT + timedelta(hours=5)
COMMUNITY = "changning.chengjiaqiao.nangong"
STAFF = "staff:li-na"
ID_CARD = "11010519491231002X"


# -- the story's events ----------------------------------------------------------------------


def compound_registered(**kw) -> CompoundRegistered:
    return CompoundRegistered(**{
        "community": COMMUNITY, "compound": "sunny-garden", "name": "Sunny Garden",
        "buildings": ["b1", "b2"], "gates": ["north", "south"],
        "registered_at": AT, "registered_by": STAFF, **kw,
    })


def household_registered(**kw) -> HouseholdRegistered:
    return HouseholdRegistered(**{
        "community": COMMUNITY, "compound": "sunny-garden", "building": "b2", "household": "h-201",
        "registered_at": AT, "registered_by": STAFF, **kw,
    })


def resident_registered(**kw) -> ResidentRegistered:
    return ResidentRegistered(**{
        "community": COMMUNITY, "compound": "sunny-garden", "building": "b2", "household": "h-201",
        "resident": "r-wang", "display_name": "王*伟",
        "vulnerabilities": ["elderly_alone"], "registered_at": AT, "registered_by": STAFF, **kw,
    })


def moved_out(**kw) -> ResidentMovedOut:
    return ResidentMovedOut(**{
        "community": COMMUNITY, "resident": "r-wang", "household": "h-201", "compound": "sunny-garden",
        "building": "b2", "moved_out_at": AT, "moved_out_by": STAFF, **kw,
    })


TRAIN = Transport(kind="train", number="G1234")
VISITS = [Visit(place="Wuhan", from_=date(2026, 11, 10), to=date(2026, 11, 20))]


def arrival_registered(city_class="A", risk_area_visited=True, **kw) -> ArrivalRegistered:
    return ArrivalRegistered(**{
        "community": COMMUNITY, "arrival": "a-1", "resident": "r-wang", "household": "h-201",
        "compound": "sunny-garden", "building": "b2", "arrived_on": date(2026, 11, 22), "city_class": city_class,
        "risk_area_visited": risk_area_visited,
        "requires_verification": city_class == "A" or risk_area_visited,
        "registered_at": AT, "registered_by": STAFF, **kw,
    })


def verified(outcome="cleared", **kw) -> ArrivalVerified:
    return ArrivalVerified(**{
        "community": COMMUNITY, "arrival": "a-1", "resident": "r-wang", "household": "h-201",
        "compound": "sunny-garden", "building": "b2", "outcome": outcome, "documents_checked": True,
        "verified_at": AT, "verified_by": STAFF, **kw,
    })


def given(*events):
    return replay(events)


# -- the commands ----------------------------------------------------------------------------


def common(**kw):
    return {"command_id": "c-1", "actor": STAFF, "occurred_at": LATER, **kw}


def register_compound(**kw) -> RegisterCompound:
    return RegisterCompound(**common(**{
        "community": COMMUNITY, "compound": "sunny-garden", "name": "Sunny Garden",
        "buildings": ["b1", "b2"], "gates": ["north", "south"], **kw}))


def register_household(**kw) -> RegisterHousehold:
    return RegisterHousehold(**common(**{
        "community": COMMUNITY, "compound": "sunny-garden", "building": "b2",
        "address": "Building 2, Room 202", "household": "h-202", **kw}))


def register_resident(**kw) -> RegisterResident:
    return RegisterResident(**common(**{
        "household": "h-201", "name": "李秀英", "id_number": ID_CARD, "phone": "13800138000",
        "birth_year": 1949, "vulnerabilities": ["elderly_alone", "medical_device"], "resident": "r-li", **kw}))


def register_arrival(city_class="A", risk_area_visited=True, **kw) -> RegisterArrival:
    return RegisterArrival(**common(**{
        "resident": "r-wang", "origin": "Wuhan", "arrived_on": date(2026, 11, 22), "transport": TRAIN,
        "visited": VISITS, "city_class": city_class, "risk_area_visited": risk_area_visited,
        "arrival": "a-2", **kw}))


def verify(outcome="cleared", documents_checked=True, **kw) -> VerifyArrival:
    return VerifyArrival(**common(**{
        "arrival": "a-1", "outcome": outcome, "documents_checked": documents_checked, **kw}))


def move_out(**kw) -> MoveOut:
    return MoveOut(**common(**{"resident": "r-wang", **kw}))


def rejected(facts: Facts, cmd, reason: str) -> Rejected:
    with pytest.raises(Rejected) as info:
        decide(facts, cmd)
    assert info.value.reason == reason
    assert info.value.code == "rejected"
    return info.value


COMPOUND = given(compound_registered())
HOUSEHOLD = given(household_registered())
RESIDENT = given(resident_registered())
GONE = given(resident_registered(), moved_out())


def pending(city_class="A", risk_area_visited=True) -> Facts:
    return Facts(arrival=given(arrival_registered(city_class, risk_area_visited)), resident=RESIDENT)


# -- register_compound -----------------------------------------------------------------------


def test_a_new_compound_is_registered_with_its_buildings_and_gates():
    assert decide(Facts(), register_compound()) == [compound_registered(registered_at=LATER)]


def test_a_compound_cannot_be_registered_twice():
    with pytest.raises(Conflict) as info:
        decide(Facts(compound=COMPOUND), register_compound())
    assert info.value.field == "compound"


def test_the_compound_name_is_trimmed():
    [event] = decide(Facts(), register_compound(name="  Sunny Garden "))
    assert event.name == "Sunny Garden"


# -- register_household ----------------------------------------------------------------------


def test_a_household_is_registered_in_a_building_of_the_compound():
    assert decide(Facts(compound=COMPOUND), register_household()) == [
        household_registered(household="h-202", registered_at=LATER)
    ]


def test_a_household_needs_a_registered_compound():
    with pytest.raises(NotFound) as info:
        decide(Facts(), register_household())
    assert info.value.field == "compound"


def test_a_compound_of_another_community_is_not_found():
    with pytest.raises(NotFound):
        decide(Facts(compound=COMPOUND), register_household(community="jingan.wanli.other"))


def test_a_household_in_an_unknown_building_is_not_found():
    with pytest.raises(NotFound) as info:
        decide(Facts(compound=COMPOUND), register_household(building="b9"))
    assert info.value.field == "building"
    assert "b1, b2" in info.value.message


def test_a_taken_household_id_conflicts():
    with pytest.raises(Conflict) as info:
        decide(Facts(compound=COMPOUND, household=HOUSEHOLD), register_household(household="h-201"))
    assert info.value.field == "household"


def test_decide_refuses_a_household_without_its_id_filled_in():
    with pytest.raises(ValueError):
        decide(Facts(compound=COMPOUND), register_household(household=None))


# -- register_resident -----------------------------------------------------------------------


def test_a_resident_takes_community_compound_and_building_from_the_household():
    assert decide(Facts(household=HOUSEHOLD), register_resident()) == [resident_registered(
        resident="r-li", display_name="李*英", vulnerabilities=["elderly_alone", "medical_device"],
        registered_at=LATER,
    )]


def test_no_name_id_number_or_phone_leaves_the_registry_in_the_event():
    [event] = decide(Facts(household=HOUSEHOLD), register_resident())
    wire = msgspec.json.encode(event).decode()
    assert "李秀英" not in wire and ID_CARD not in wire and "13800138000" not in wire


def test_a_resident_needs_a_registered_household():
    with pytest.raises(NotFound) as info:
        decide(Facts(), register_resident())
    assert info.value.field == "household"


def test_a_taken_resident_id_conflicts():
    with pytest.raises(Conflict):
        decide(Facts(household=HOUSEHOLD, resident=RESIDENT), register_resident(resident="r-wang"))


def test_a_resident_without_vulnerabilities_has_none():
    [event] = decide(Facts(household=HOUSEHOLD), register_resident(vulnerabilities=[]))
    assert event.vulnerabilities == []


# -- register_arrival: the A/B rules --------------------------------------------------------


def test_a_class_b_arrival_without_risk_area_is_cleared_on_registration():
    [event] = decide(Facts(resident=RESIDENT), register_arrival("B", False))
    assert event.requires_verification is False


def test_a_class_b_arrival_that_visited_a_risk_area_waits_for_verification():
    [event] = decide(Facts(resident=RESIDENT), register_arrival("B", True))
    assert event.requires_verification is True


def test_every_class_a_arrival_waits_for_verification():
    assert decide(Facts(resident=RESIDENT), register_arrival("A", True)) == [
        arrival_registered("A", True, arrival="a-2", registered_at=LATER)
    ]


def test_a_false_a_still_waits_for_verification():
    [event] = decide(Facts(resident=RESIDENT), register_arrival("A", False))
    assert event.requires_verification is True


def test_an_arrival_takes_household_compound_and_building_from_the_resident():
    [event] = decide(Facts(resident=RESIDENT), register_arrival())
    assert (event.community, event.compound, event.building, event.household) == (
        COMMUNITY, "sunny-garden", "b2", "h-201")


def test_an_arrival_of_an_unknown_resident_is_not_found():
    with pytest.raises(NotFound) as info:
        decide(Facts(), register_arrival())
    assert info.value.field == "resident"


def test_an_arrival_of_a_resident_who_moved_out_is_rejected():
    rejected(Facts(resident=GONE), register_arrival(), "moved_out")


def test_a_taken_arrival_id_conflicts():
    with pytest.raises(Conflict):
        decide(Facts(resident=RESIDENT, arrival=given(arrival_registered())), register_arrival(arrival="a-1"))


# -- verify_arrival --------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["cleared", "home_quarantine", "centralized_quarantine", "returned_home"])
def test_a_pending_arrival_is_verified_with_each_outcome(outcome):
    assert decide(pending(), verify(outcome, note=" ticket ok ")) == [
        verified(outcome, note="ticket ok", verified_at=LATER)
    ]


def test_clearing_needs_the_documents_checked():
    error = rejected(pending(), verify("cleared", documents_checked=False), "documents_not_checked")
    assert "ID card" in error.message


def test_quarantine_without_documents_checked_is_allowed():
    [event] = decide(pending(), verify("home_quarantine", documents_checked=False))
    assert event.documents_checked is False


def test_a_false_a_with_documents_checked_is_cleared():
    [event] = decide(pending("A", False), verify("cleared"))
    assert event.outcome == "cleared"


@pytest.mark.parametrize("outcome", ["home_quarantine", "centralized_quarantine", "returned_home"])
def test_a_false_a_with_documents_checked_must_be_cleared(outcome):
    error = rejected(pending("A", False), verify(outcome), "false_a_must_be_cleared")
    assert "false A" in error.message and "passed" in error.message


def test_a_false_a_whose_documents_were_not_checked_may_be_quarantined():
    [event] = decide(pending("A", False), verify("home_quarantine", documents_checked=False))
    assert event.outcome == "home_quarantine"


def test_a_class_b_that_visited_a_risk_area_may_be_quarantined():
    [event] = decide(pending("B", True), verify("centralized_quarantine"))
    assert event.outcome == "centralized_quarantine"


def test_an_arrival_cleared_on_registration_is_not_pending():
    rejected(pending("B", False), verify(), "not_pending")


def test_an_arrival_is_verified_only_once():
    facts = Facts(arrival=given(arrival_registered(), verified("home_quarantine")), resident=RESIDENT)
    error = rejected(facts, verify("cleared"), "already_verified")
    assert "home_quarantine" in error.message


def test_verifying_an_unknown_arrival_is_not_found():
    with pytest.raises(NotFound) as info:
        decide(Facts(), verify())
    assert info.value.field == "arrival"


def test_home_quarantine_needs_a_household_here():
    facts = Facts(arrival=given(arrival_registered()), resident=GONE)
    error = rejected(facts, verify("home_quarantine"), "no_household_here")
    assert "centralized_quarantine" in error.message


def test_a_resident_who_moved_out_may_go_to_centralized_quarantine():
    facts = Facts(arrival=given(arrival_registered()), resident=GONE)
    [event] = decide(facts, verify("centralized_quarantine"))
    assert event.outcome == "centralized_quarantine"


def test_home_quarantine_without_the_resident_loaded_is_not_found():
    with pytest.raises(NotFound):
        decide(Facts(arrival=given(arrival_registered())), verify("home_quarantine"))


def test_a_verification_without_a_note_has_none():
    [event] = decide(pending(), verify())
    assert event.note is None


# -- move_out --------------------------------------------------------------------------------


def test_a_resident_moves_out_with_a_reason():
    assert decide(Facts(resident=RESIDENT), move_out(reason="moved to her daughter's")) == [
        moved_out(reason="moved to her daughter's", moved_out_at=LATER)
    ]


def test_a_resident_moves_out_only_once():
    rejected(Facts(resident=GONE), move_out(), "moved_out")


def test_an_unknown_resident_cannot_move_out():
    with pytest.raises(NotFound):
        decide(Facts(), move_out())


def test_decide_needs_the_receive_time():
    with pytest.raises(ValueError):
        decide(Facts(), register_compound(occurred_at=None))


# -- evolve ----------------------------------------------------------------------------------


def test_compound_registered_builds_the_compound():
    assert given(compound_registered()) == Compound(
        community=COMMUNITY, compound="sunny-garden", name="Sunny Garden",
        buildings=("b1", "b2"), gates=("north", "south"))


def test_household_registered_builds_the_household():
    assert given(household_registered()) == Household(
        community=COMMUNITY, compound="sunny-garden", building="b2", household="h-201")


def test_resident_registered_builds_a_resident_living_here():
    assert given(resident_registered()) == Resident(
        community=COMMUNITY, compound="sunny-garden", building="b2", household="h-201",
        resident="r-wang", vulnerabilities=("elderly_alone",), moved_out=False)


def test_a_household_or_resident_of_schema_1_builds_the_same_state_as_schema_2():
    # Given events recorded before the address and birth year left the bus (issue 16)
    old_household = HouseholdRegisteredV1(**msgspec.structs.asdict(household_registered()),
                                          address="Building 2, Room 201")
    old_resident = ResidentRegisteredV1(**msgspec.structs.asdict(resident_registered()), birth_year=1949)
    # then each upcasts to its schema-2 self, without them, and builds the same aggregate
    assert old_household.upcast() == household_registered() and old_resident.upcast() == resident_registered()
    assert given(old_household) == given(household_registered())
    assert given(old_resident, moved_out()) == given(resident_registered(), moved_out())


def test_an_arrival_of_schema_1_builds_the_same_state_as_schema_2():
    # Given an arrival recorded before its travel history left the bus (issue 16)
    old = ArrivalRegisteredV1(**msgspec.structs.asdict(arrival_registered(city_class="A", risk_area_visited=False)),
                              origin="Wuhan", transport=TRAIN, visited=VISITS)
    # then it upcasts to its schema-2 self and builds the same arrival: a false A, decided on as such
    assert old.upcast() == arrival_registered(city_class="A", risk_area_visited=False)
    assert given(old) == given(old.upcast()) and given(old).false_a


def test_resident_moved_out_marks_the_resident():
    assert GONE.moved_out is True and GONE.household == "h-201"


def test_arrival_registered_builds_a_pending_arrival():
    arrival = given(arrival_registered())
    assert arrival == Arrival(
        community=COMMUNITY, arrival="a-1", resident="r-wang", household="h-201", compound="sunny-garden",
        building="b2", city_class="A", risk_area_visited=True, requires_verification=True, outcome=None)
    assert arrival.pending and not arrival.false_a


def test_arrival_verified_records_the_outcome():
    arrival = given(arrival_registered(), verified("returned_home"))
    assert arrival.outcome == "returned_home" and not arrival.pending


def test_an_arrival_cleared_on_registration_evolves_without_outcome():
    arrival = given(arrival_registered("B", False))
    assert not arrival.pending and arrival.outcome is None


def test_an_event_on_the_wrong_stream_is_a_bug():
    with pytest.raises(TypeError):
        evolve(None, moved_out())
    with pytest.raises(TypeError):
        evolve(COMPOUND, verified())


def test_replay_of_nothing_is_nothing():
    assert replay([]) is None


# -- streams ---------------------------------------------------------------------------------


def test_stream_ids():
    assert compound_stream(COMMUNITY, "sunny-garden") == f"compound:{COMMUNITY}:sunny-garden"
    assert household_stream("h-1") == "household:h-1"
    assert resident_stream("r-1") == "resident:r-1"
    assert arrival_stream("a-1") == "arrival:a-1"


def test_each_command_targets_its_aggregate_stream():
    assert target_stream(register_compound()) == f"compound:{COMMUNITY}:sunny-garden"
    assert target_stream(register_household()) == "household:h-202"
    assert target_stream(register_resident()) == "resident:r-li"
    assert target_stream(register_arrival()) == "arrival:a-2"
    assert target_stream(verify()) == "arrival:a-1"
    assert target_stream(move_out()) == "resident:r-wang"


# -- a whole story ---------------------------------------------------------------------------


def test_from_compound_to_a_cleared_false_a():
    compound = given(*decide(Facts(), register_compound()))
    household = given(*decide(Facts(compound=compound), register_household()))
    resident = given(*decide(Facts(household=household), register_resident()))
    arrival = given(*decide(Facts(resident=resident), register_arrival("A", False, resident="r-li")))
    assert arrival.pending and arrival.false_a and arrival.household == "h-202"
    rejected(Facts(arrival=arrival, resident=resident), verify("home_quarantine", arrival="a-2"),
             "false_a_must_be_cleared")
    [event] = decide(Facts(arrival=arrival, resident=resident), verify("cleared", arrival="a-2"))
    assert evolve(arrival, event).outcome == "cleared"


# -- mask_name -------------------------------------------------------------------------------


@pytest.mark.parametrize("name, masked", [
    ("王小伟", "王*伟"),
    ("王伟", "王*"),
    ("王", "*"),
    ("欧阳小明", "欧**明"),
    (" 王 小伟 ", "王*伟"),
    ("John Smith", "J*** S****"),
    ("  John   Smith ", "J*** S****"),
    ("Madonna", "M******"),
    ("J", "J"),
])
def test_mask_name(name, masked):
    assert mask_name(name) == masked
