"""The gate's other work (issue 17), rule by rule: where a resident goes when going out, vehicles
checked at the gate (each resident aboard judged as on foot), and the drop point for parcels and
takeaway. Stories: given the gate's facts, when a command, then its events or its refusal."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest
from msgspec.structs import replace as replace_struct

from services.checkpoint import parcels, vehicles
from services.checkpoint.commands import CheckVehicle, CollectParcel, Driver, DropParcel, parse
from services.checkpoint.config import Config
from services.checkpoint.decide import decide
from services.checkpoint.domain import Compound, Control, Parcel, replay
from services.checkpoint.passage import Facts, Home, Resident
from services.views import rules
from services.views.rules import Delta, Drop, Put
from shared.contracts.checkpoint import (
    ParcelCollected,
    ParcelDropped,
    PassageAllowed,
    VehicleAllowed,
    VehicleDenied,
)
from shared.errors import Invalid, NotFound, Rejected

AT = datetime(2022, 4, 2, 9, 30, tzinfo=timezone(timedelta(hours=8)))
DAY = date(2022, 4, 2)
COMMUNITY = "putuo.wanli.wanli-3"
GUARD = "staff:guard-zhou"
COMPOUND = Compound(community=COMMUNITY, compound="huayuan", buildings=("b1", "b2"), gates=("north", "south"))
HOME = Home(household="h-101", community=COMMUNITY, compound="huayuan", building="b1")
NEIGHBOURS = Home(household="h-202", community=COMMUNITY, compound="huayuan", building="b2")


def person(resident: str, home: Home = HOME, quarantined: bool = False, **kw) -> Facts:
    """A resident as the gate sees them on foot (their place's facts included)."""
    who = Resident(resident=resident, household=home.household, community=COMMUNITY, compound=home.compound,
                   building=home.building, quarantined=quarantined)
    return Facts(**{"compound": COMPOUND, "resident": who, "home": home, **kw})


def gate(level="open", closed=(), **kw) -> Facts:
    control = Control(community=COMMUNITY, compound="huayuan", level=level, closed_gates=frozenset(closed))
    return Facts(**{"compound": COMPOUND, "control": control, **kw})


# -- where a resident goes: check_passage's destination -------------------------------------------------

PASSAGE = {"command_id": "c-1", "actor": GUARD, "community": COMMUNITY, "compound": "huayuan", "gate": "north",
           "direction": "out", "temperature_c": 36.6, "resident": "r-wang"}
VISITOR = {"name": "张三丰", "phone": "13800001111", "host_household": "h-202", "purpose": "送药"}


def passage(**fields) -> bytes:
    return json.dumps({**PASSAGE, **fields}, ensure_ascii=False).encode()


def refused(name: str, raw: bytes, field: str) -> Invalid:
    with pytest.raises(Invalid) as info:
        parse(name, raw)
    assert info.value.field == field, info.value.message
    return info.value


def test_going_out_the_resident_says_where_to_and_the_passage_carries_it():
    # given a resident going out to the hospital
    cmd = replace_struct(parse("check_passage", passage(destination="medical")), passage="p-1", occurred_at=AT)
    # when the gate decides, then the destination is on the passage, as a category
    [event] = decide(person("r-wang"), cmd)
    assert isinstance(event, PassageAllowed) and event.destination == "medical"


def test_a_destination_is_one_of_the_categories_never_free_text():
    error = refused("check_passage", passage(destination="my aunt's flat at 12 Wanli Road"), "destination")
    assert "work" in error.message and "medical" in error.message


def test_a_destination_is_recorded_on_the_way_out_only_and_for_residents_only():
    refused("check_passage", passage(direction="in", destination="work"), "destination")
    raw = passage(resident=None, visitor=VISITOR, destination="work")
    refused("check_passage", raw, "destination")


def test_a_passage_without_a_destination_is_as_before():
    cmd = parse("check_passage", passage())
    assert cmd.destination is None


# -- vehicles: the wire ----------------------------------------------------------------------------------

VEHICLE = {"command_id": "c-2", "actor": GUARD, "community": COMMUNITY, "compound": "huayuan", "gate": "north",
           "direction": "out", "plate": "沪A·123 45", "driver": {"resident": "r-wang"}, "purpose": "resident",
           "passengers": ["r-li"]}


def vehicle_raw(**fields) -> bytes:
    return json.dumps({**VEHICLE, **fields}, ensure_ascii=False).encode()


def test_a_plate_is_read_the_way_the_gate_types_it():
    assert parse("check_vehicle", vehicle_raw()).plate == "沪A12345"


@pytest.mark.parametrize("plate", ["", "沪A", "沪A1234567890123"])
def test_a_plate_must_look_like_one(plate):
    refused("check_vehicle", vehicle_raw(plate=plate), "plate")


def test_an_outside_driver_gives_name_and_phone_and_a_resident_driver_neither():
    assert parse("check_vehicle", vehicle_raw(driver={"name": "刘师傅", "phone": "13900002222"},
                                               purpose="delivery", passengers=[])).driver.resident is None
    refused("check_vehicle", vehicle_raw(driver={"name": "刘师傅"}, purpose="delivery"), "driver.phone")
    refused("check_vehicle", vehicle_raw(driver={"resident": "r-wang", "name": "王小伟"}), "driver")


def test_the_driver_is_not_a_passenger_and_nobody_rides_twice():
    refused("check_vehicle", vehicle_raw(passengers=["r-wang"]), "passengers")
    refused("check_vehicle", vehicle_raw(passengers=["r-li", "r-li"]), "passengers[1]")


def test_a_residents_car_has_a_resident_aboard():
    refused("check_vehicle", vehicle_raw(driver={"name": "滴滴司机", "phone": "13900002222"}, passengers=[]),
            "purpose")


def test_a_vehicles_purpose_is_one_of_the_categories():
    refused("check_vehicle", vehicle_raw(purpose="sightseeing"), "purpose")


# -- vehicles: the decision ------------------------------------------------------------------------------


def vehicle(driver: str | None = "r-wang", passengers=("r-li",), purpose="resident", direction="out",
            **kw) -> CheckVehicle:
    who = Driver(resident=driver) if driver else Driver(name="刘师傅", phone="13900002222")
    return CheckVehicle(**{"command_id": "c-2", "actor": GUARD, "occurred_at": AT, "community": COMMUNITY,
                           "compound": "huayuan", "gate": "north", "direction": direction, "plate": "沪A12345",
                           "driver": who, "purpose": purpose, "passengers": list(passengers), "vehicle": "v-1",
                           **kw})


def aboard(*people: tuple[str, Facts], level="open", closed=(), config=Config(), **place) -> vehicles.Facts:
    return vehicles.Facts(place=gate(level, closed, **place), aboard=people, config=config)


WANG = ("r-wang", person("r-wang"))
LI = ("r-li", person("r-li"))


def test_a_residents_car_drives_out_and_the_event_names_who_is_aboard_but_not_the_plate():
    [event] = decide(aboard(WANG, LI), vehicle())
    assert event == VehicleAllowed(community=COMMUNITY, vehicle="v-1", compound="huayuan", gate="north",
                                   direction="out", purpose="resident", driver="r-wang", passengers=["r-li"],
                                   checked_at=AT, checked_by=GUARD)
    assert "12345" not in repr(event)


def test_a_quarantined_passenger_keeps_the_whole_vehicle_in_and_is_named():
    # given the second resident aboard is under quarantine
    quarantined = ("r-li", person("r-li", quarantined=True))
    # when the car drives out, then it is denied for them
    [event] = decide(aboard(WANG, quarantined), vehicle())
    assert isinstance(event, VehicleDenied)
    assert (event.reason, event.resident) == ("under_quarantine", "r-li")


def test_a_household_in_home_quarantine_stops_its_driver():
    confined = ("r-wang", person("r-wang", home=replace(HOME, home_quarantine=True)))
    assert vehicles.reason(aboard(confined, LI), vehicle()) == ("under_quarantine", "r-wang")


def test_the_first_resident_aboard_who_is_stopped_is_named_the_driver_first():
    sealed_driver = ("r-wang", person("r-wang", sealed_buildings=frozenset({"b1"})))
    quarantined = ("r-li", person("r-li", quarantined=True))
    assert vehicles.reason(aboard(sealed_driver, quarantined), vehicle()) == ("building_sealed", "r-wang")


def test_a_quarantined_resident_is_driven_home():
    quarantined = ("r-li", person("r-li", quarantined=True))
    assert vehicles.reason(aboard(WANG, quarantined), vehicle(direction="in")) == (None, None)


def test_someone_who_lives_elsewhere_is_not_taken_for_a_resident():
    stranger = ("r-x", Facts(compound=COMPOUND))
    assert vehicles.reason(aboard(WANG, stranger), vehicle(passengers=["r-x"])) == ("unknown_resident", "r-x")


def test_nothing_drives_through_a_closed_gate_or_out_of_a_sealed_compound():
    assert vehicles.reason(aboard(WANG, closed=["north"]), vehicle(passengers=[])) == ("gate_closed", None)
    assert vehicles.reason(aboard(WANG, closed=["north"]), vehicle(passengers=[], direction="in"))[0] == "gate_closed"
    assert vehicles.reason(aboard(WANG, level="sealed"), vehicle(passengers=[])) == ("compound_sealed", None)
    assert vehicles.reason(aboard(WANG, compound_sealed=True), vehicle(passengers=[])) == ("compound_sealed", None)


def test_under_closed_management_a_delivery_van_leaves_its_goods_at_the_drop_point():
    van = vehicle(driver=None, passengers=(), purpose="delivery", direction="in")
    assert vehicles.reason(aboard(level="closed"), van) == ("vehicles_not_admitted", None)
    assert vehicles.reason(aboard(level="open"), van) == (None, None)


@pytest.mark.parametrize("purpose", ["emergency", "official"])
def test_an_ambulance_or_an_officials_car_is_admitted_whatever_the_level(purpose):
    car = vehicle(driver=None, passengers=(), purpose=purpose, direction="in")
    assert vehicles.reason(aboard(level="sealed"), car) == (None, None)


def test_residents_come_home_by_car_under_closed_management_without_showing_passes():
    assert vehicles.reason(aboard(WANG, LI, level="closed"), vehicle(direction="in")) == (None, None)
    assert vehicles.reason(aboard(WANG, LI, level="closed"), vehicle()) == (None, None)


def test_a_vehicle_at_a_gate_the_compound_does_not_have_is_bad_input():
    with pytest.raises(NotFound) as info:
        decide(aboard(WANG), vehicle(gate="west", passengers=[]))
    assert info.value.field == "gate"


# -- the drop point ---------------------------------------------------------------------------------------


def drop_cmd(**kw) -> DropParcel:
    return DropParcel(**{"command_id": "c-3", "actor": GUARD, "occurred_at": AT, "community": COMMUNITY,
                         "compound": "huayuan", "gate": "south", "household": "h-101", "kind": "takeaway",
                         "parcel": "pk-1", **kw})


def collect_cmd(**kw) -> CollectParcel:
    return CollectParcel(**{"command_id": "c-4", "actor": GUARD, "occurred_at": AT, "parcel": "pk-1", **kw})


PARCEL = Parcel(parcel="pk-1", community=COMMUNITY, compound="huayuan", gate="south", household="h-101",
                kind="takeaway")


def test_takeaway_is_left_at_the_gate_for_a_household_of_the_compound():
    [event] = decide(parcels.DropFacts(compound=COMPOUND, home=HOME), drop_cmd())
    assert event == ParcelDropped(community=COMMUNITY, parcel="pk-1", compound="huayuan", gate="south",
                                  household="h-101", building="b1", kind="takeaway", dropped_at=AT,
                                  dropped_by=GUARD)


def test_a_parcel_for_a_household_that_is_not_here_is_bad_input():
    elsewhere = replace(HOME, compound="other")
    for home in (None, elsewhere):
        with pytest.raises(NotFound) as info:
            decide(parcels.DropFacts(compound=COMPOUND, home=home), drop_cmd())
        assert info.value.field == "household"


def test_a_resident_of_the_household_collects_it_at_the_gate():
    facts = parcels.CollectFacts(parcel=PARCEL, person=person("r-wang"))
    [event] = decide(facts, collect_cmd(resident="r-wang"))
    assert isinstance(event, ParcelCollected)
    assert (event.resident, event.volunteer, event.household, event.kind) == ("r-wang", None, "h-101", "takeaway")


def test_a_parcel_is_collected_once():
    collected = replace(PARCEL, collected=True)
    with pytest.raises(Rejected) as info:
        decide(parcels.CollectFacts(parcel=collected), collect_cmd(volunteer="volunteer:zhang-min"))
    assert info.value.reason == "already_collected"


def test_a_parcel_nobody_dropped_cannot_be_collected():
    with pytest.raises(NotFound):
        decide(parcels.CollectFacts(parcel=None), collect_cmd(volunteer="volunteer:zhang-min"))


def test_a_neighbour_does_not_take_another_households_parcel():
    neighbour = person("r-zhao", home=NEIGHBOURS)
    with pytest.raises(Rejected) as info:
        decide(parcels.CollectFacts(parcel=PARCEL, person=neighbour), collect_cmd(resident="r-zhao"))
    assert info.value.reason == "not_of_household"


@pytest.mark.parametrize("confined, why", [
    (person("r-wang", quarantined=True), "under_quarantine"),
    (person("r-wang", home=replace(HOME, home_quarantine=True)), "under_quarantine"),
    (person("r-wang", sealed_buildings=frozenset({"b1"})), "building_sealed"),
    (person("r-wang", compound_sealed=True), "compound_sealed"),
    (person("r-wang", control=Control(community=COMMUNITY, compound="huayuan", level="sealed")), "compound_sealed"),
])
def test_a_household_that_cannot_come_to_the_gate_has_it_delivered(confined, why):
    # given the resident cannot leave home (quarantine, a sealed building or compound)
    # when they come to collect, then a volunteer must take it to the door, and the refusal says why
    with pytest.raises(Rejected) as info:
        decide(parcels.CollectFacts(parcel=PARCEL, person=confined), collect_cmd(resident="r-wang"))
    assert info.value.reason == "must_be_delivered" and why in info.value.message
    # and a volunteer delivers it
    [event] = decide(parcels.CollectFacts(parcel=PARCEL), collect_cmd(volunteer="volunteer:zhang-min"))
    assert event.volunteer == "volunteer:zhang-min" and event.resident is None


def test_a_closed_gate_or_closed_management_does_not_keep_a_resident_from_the_drop_point():
    control = Control(community=COMMUNITY, compound="huayuan", level="closed", closed_gates=frozenset({"south"}))
    facts = parcels.CollectFacts(parcel=PARCEL, person=person("r-wang", control=control))
    assert decide(facts, collect_cmd(resident="r-wang"))[0].resident == "r-wang"


def test_collecting_takes_exactly_one_of_resident_and_volunteer():
    base = {"command_id": "c-4", "actor": GUARD, "parcel": "pk-1"}
    for extra in ({}, {"resident": "r-wang", "volunteer": "volunteer:zhang-min"}):
        refused("collect_parcel", json.dumps({**base, **extra}).encode(), "resident")


def test_what_is_dropped_is_a_parcel_takeaway_or_groceries():
    raw = json.dumps({"command_id": "c-3", "actor": GUARD, "community": COMMUNITY, "compound": "huayuan",
                      "gate": "south", "household": "h-101", "kind": "furniture"}).encode()
    refused("drop_parcel", raw, "kind")


def test_a_parcels_stream_says_whether_it_waits():
    dropped = decide(parcels.DropFacts(compound=COMPOUND, home=HOME), drop_cmd())
    assert replay(dropped) == PARCEL
    collected = decide(parcels.CollectFacts(parcel=PARCEL), collect_cmd(volunteer="volunteer:zhang-min"))
    assert replay(dropped + collected).collected


# -- the board's figures ---------------------------------------------------------------------------------


def ops(event):
    return rules.ops(event, COMMUNITY, DAY)


def test_an_outing_counts_by_destination_and_a_walk_without_one_only_as_out():
    out = decide(person("r-wang"), replace_struct(parse("check_passage", passage(destination="shopping")),
                                                  passage="p-1", occurred_at=AT))[0]
    assert ops(out) == (Delta("passages_out", DAY), Delta("outings_shopping", DAY))
    assert ops(replace_struct(out, destination=None)) == (Delta("passages_out", DAY),)


def test_vehicles_checked_and_denied_are_counted_on_the_day():
    [allowed] = decide(aboard(WANG, LI), vehicle())
    [denied] = decide(aboard(WANG, LI, level="sealed"), vehicle())
    assert ops(allowed) == (Delta("vehicles_checked", DAY),)
    assert ops(denied) == (Delta("vehicles_checked", DAY), Delta("vehicles_denied", DAY))


def test_a_parcel_waits_from_its_drop_until_its_collection():
    [dropped] = decide(parcels.DropFacts(compound=COMPOUND, home=HOME), drop_cmd())
    [collected] = decide(parcels.CollectFacts(parcel=PARCEL), collect_cmd(volunteer="volunteer:zhang-min"))
    assert ops(dropped) == (Delta("parcels_dropped", DAY), Put("parcel", "pk-1", "parcels_waiting"))
    assert ops(collected) == (Delta("parcels_collected", DAY), Drop("parcel", "pk-1"))


def test_the_retention_counts_the_plates_it_shredded_per_community_also_where_no_visitor_came():
    from services.checkpoint.commands import ShredVisitorData
    from services.checkpoint.decide import Facts as CommandFacts

    cmd = ShredVisitorData(command_id="shred", actor="system:visitor-retention", occurred_at=AT, before=AT)
    facts = CommandFacts(shredded={COMMUNITY: 2}, vehicles_shredded={COMMUNITY: 1, "putuo.wanli.wanli-4": 3})
    counts = [(e.community, e.visitors, e.vehicles) for e in decide(facts, cmd)]
    assert counts == [(COMMUNITY, 2, 1), ("putuo.wanli.wanli-4", 0, 3)]
    assert decide(CommandFacts(vehicles_shredded={COMMUNITY: 0}), cmd) == []
