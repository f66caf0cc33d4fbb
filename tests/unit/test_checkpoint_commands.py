"""Checkpoint commands on the wire: strict parsing and validation, every failure an Invalid naming the
field; pass numbers are made hard to guess and read back the way people type them."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest

from services.checkpoint import numbers
from services.checkpoint.commands import (
    COMMANDS,
    CREATES,
    MAX_PASSES,
    CheckPassage,
    StartShift,
    decode,
    parse,
    validate,
)
from services.checkpoint.queries import parse_shifts
from shared import wire
from shared.errors import Invalid, UnknownCommand

COMMUNITY = "changning.chengjiaqiao.nangong"
PASS_ID = "3F2B8C1E-4D5A-4B6C-8E7F-9A0B1C2D3E4F"
VISITOR = {"name": "张三丰", "phone": "13800001111", "host_household": "h-202", "purpose": "送药"}

VALID = {
    "set_gate": {"community": COMMUNITY, "compound": "nangong-1", "gate": "g1", "open": False},
    "set_control_level": {"community": COMMUNITY, "compound": "nangong-1", "level": "closed"},
    "issue_passes": {"community": COMMUNITY, "compound": "nangong-1", "households": ["h-1", "h-2"]},
    "revoke_pass": {"pass": "7K3QD-X9M2A", "reason": "lost"},
    "replace_pass": {"pass": "7K3QD-X9M2A"},
    "check_passage": {"community": COMMUNITY, "compound": "nangong-1", "gate": "g1", "direction": "out",
                      "temperature_c": 36.6, "resident": "r-1"},
    "start_shift": {"community": COMMUNITY, "gate": "g1", "staff": "volunteer:zhang-min"},
    "end_shift": {"community": COMMUNITY, "gate": "g1", "staff": "volunteer:zhang-min"},
}


def payload(name: str, /, drop: tuple[str, ...] = (), **fields) -> bytes:
    body = {"command_id": "c-1", "actor": "staff:li-na", **VALID[name], **fields}
    for key in drop:
        body.pop(key)
    return json.dumps(body, ensure_ascii=False).encode()


def invalid(name: str, raw: bytes, field: str | None = None) -> Invalid:
    with pytest.raises(Invalid) as info:
        parse(name, raw)
    assert info.value.code == "invalid"
    if field is not None:
        assert info.value.field == field, info.value.message
    return info.value


def passage(**fields) -> bytes:
    return payload("check_passage", **fields)


@pytest.mark.parametrize("name", list(VALID))
def test_every_command_parses(name):
    assert isinstance(parse(name, payload(name)), COMMANDS[name])


def test_an_unknown_command_is_named():
    with pytest.raises(UnknownCommand):
        parse("open_all_gates", b"{}")


# -- temperatures -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["hot", "36.6", True, None, [36.6]])
def test_a_temperature_must_be_a_number(value):
    err = invalid("check_passage", passage(temperature_c=value), "temperature_c")
    assert "°C" in err.message


@pytest.mark.parametrize("value", [80, 33.9, 43.1, -1, 0])
def test_a_temperature_must_be_one_a_thermometer_can_read(value):
    assert "between 34.0 and 43.0" in invalid("check_passage", passage(temperature_c=value), "temperature_c").message


@pytest.mark.parametrize("value", [34.0, 36, 37.3, 43.0])
def test_body_temperatures_at_the_edges_are_accepted(value):
    assert parse("check_passage", passage(temperature_c=value)).temperature_c == value


def test_a_temperature_is_required():
    invalid("check_passage", payload("check_passage", drop=("temperature_c",)), "temperature_c")


# -- who passes ---------------------------------------------------------------------------------------------


def test_a_visitor_without_a_host_household_is_refused():
    visitor = {k: v for k, v in VISITOR.items() if k != "host_household"}
    err = invalid("check_passage", payload("check_passage", drop=("resident",), visitor=visitor),
                  "visitor.host_household")
    assert "required" in err.message


@pytest.mark.parametrize("field, value", [("name", " "), ("phone", "138-0000"), ("purpose", ""),
                                          ("host_household", "H 202")])
def test_a_visitors_fields_are_checked(field, value):
    invalid("check_passage", payload("check_passage", drop=("resident",), visitor={**VISITOR, field: value}),
            f"visitor.{field}")


def test_a_visitor_comes_alone():
    invalid("check_passage", passage(visitor=VISITOR), "visitor")


def test_somebody_must_be_at_the_gate():
    invalid("check_passage", payload("check_passage", drop=("resident",)), "pass")


def test_pass_and_resident_may_come_together():
    cmd = parse("check_passage", passage(**{"pass": "7k3qdx9m2a"}))
    assert (cmd.pass_, cmd.resident) == ("7K3QDX9M2A", "r-1")


@pytest.mark.parametrize("field, value", [("direction", "sideways"), ("gate", "North Gate"),
                                          ("compound", "nangong.1"), ("community", "nangong"),
                                          ("resident", "R-1"), ("passage", "a b")])
def test_place_direction_and_ids_are_checked(field, value):
    err = invalid("check_passage", passage(**{field: value}), field)
    if field == "direction":
        assert "in, out" in err.message


def test_unknown_fields_are_refused():
    invalid("check_passage", passage(name="王小伟"), "name")


# -- pass numbers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["7K3QDX9M2A", "7k3qd-x9m2a", " 7K3QD X9M2A ", "7K3QDX9M2A"])
def test_a_pass_number_is_read_however_it_was_typed(typed):
    assert parse("revoke_pass", payload("revoke_pass", **{"pass": typed})).pass_ == "7K3QDX9M2A"


def test_letters_that_look_like_digits_are_read_as_digits():
    assert numbers.normalize("O1LI0-oilzz") == "01110011ZZ"


@pytest.mark.parametrize("typed", ["7K3QDX9M2", "7K3QDX9M2AB", "7K3QDX9M2U", "#K3QDX9M2A", ""])
def test_what_cannot_be_a_pass_is_refused(typed):
    invalid("revoke_pass", payload("revoke_pass", **{"pass": typed}), "pass")


def test_a_pass_id_is_read_as_an_id():
    assert parse("revoke_pass", payload("revoke_pass", **{"pass": PASS_ID})).pass_ == PASS_ID.lower()


def test_new_numbers_are_printable_distinct_and_read_back_unchanged():
    made = {numbers.new_number() for _ in range(5000)}
    assert len(made) == 5000
    for number in made:
        assert len(number) == numbers.LENGTH and set(number) <= set(numbers.ALPHABET)
        assert numbers.normalize(numbers.pretty(number).lower()) == number


def test_new_numbers_use_the_whole_alphabet():
    seen = set("".join(numbers.new_number() for _ in range(500)))
    assert seen == set(numbers.ALPHABET)


# -- bulk issue ----------------------------------------------------------------------------------------------------


def test_households_or_all_households_not_both_nor_neither():
    invalid("issue_passes", payload("issue_passes", all_households=True), "households")
    invalid("issue_passes", payload("issue_passes", drop=("households",)), "households")
    assert parse("issue_passes", payload("issue_passes", drop=("households",), all_households=True,
                                         building="b1")).all_households


def test_building_narrows_only_all_households():
    invalid("issue_passes", payload("issue_passes", building="b1"), "building")


@pytest.mark.parametrize("n", [0, 11, -1])
def test_per_household_is_one_to_ten(n):
    invalid("issue_passes", payload("issue_passes", per_household=n), "per_household")


def test_a_whole_compound_fits_in_one_command_but_not_more_than_a_reply_can_carry():
    assert len(parse("issue_passes", payload("issue_passes", households=[f"h{i}" for i in range(5400)])).households) \
        == 5400
    invalid("issue_passes", payload("issue_passes", households=[f"h{i}" for i in range(MAX_PASSES + 1)]),
            "households")
    invalid("issue_passes", payload("issue_passes", per_household=2, households=[f"h{i}" for i in range(3001)]),
            "households")


def test_a_household_listed_twice_is_refused():
    invalid("issue_passes", payload("issue_passes", households=["h-1", "h-1"]), "households[1]")


# -- gates, levels, shifts --------------------------------------------------------------------------------------


def test_a_level_is_one_of_open_closed_sealed():
    assert "open, closed, sealed" in invalid("set_control_level", payload("set_control_level", level="lockdown"),
                                             "level").message


def test_open_must_be_a_boolean():
    invalid("set_gate", payload("set_gate", open="false"), "open")


def test_a_staff_id_has_no_spaces():
    invalid("start_shift", payload("start_shift", staff="zhang min"), "staff")


def complete(name: str, raw: bytes, new_id):
    """As the runtime completes a command: decode, fill occurred_at and the created id, validate."""
    now = datetime(2022, 4, 2, 9, 0, tzinfo=timezone(timedelta(hours=8)))
    return validate(wire.complete(decode(name, raw), now=lambda: now, new_id=new_id, creates=CREATES))


def test_the_ids_a_command_creates_are_filled_when_left_out():
    cmd = complete("check_passage", passage(), new_id=lambda: "new-1")
    assert isinstance(cmd, CheckPassage) and cmd.passage == "new-1"
    shift = complete("start_shift", payload("start_shift"), new_id=lambda: "s-9")
    assert isinstance(shift, StartShift) and shift.shift == "s-9"
    given = complete("start_shift", payload("start_shift", shift="s-mine"), new_id=lambda: "s-9")
    assert given.shift == "s-mine"


# -- the shifts query ------------------------------------------------------------------------------------------

TODAY = date(2022, 4, 2)


def test_the_shifts_query_defaults_to_today():
    assert parse_shifts(json.dumps({"community": COMMUNITY}).encode(), TODAY) == (COMMUNITY, TODAY, TODAY)


def test_the_shifts_query_takes_a_day_or_a_range_of_at_most_93_days():
    two_weeks = {"community": COMMUNITY, "from": "2022-03-20", "to": "2022-04-02"}
    assert parse_shifts(json.dumps(two_weeks).encode(), TODAY)[1:] == (date(2022, 3, 20), TODAY)
    for bad, field in (({"on": "2022-04-01", "from": "2022-03-01"}, "on"),
                       ({"from": "2022-04-02", "to": "2022-04-01"}, "to"),
                       ({"from": "2022-01-01", "to": "2022-04-04"}, "to"),
                       ({"on": "yesterday"}, "on"), ({"scope": "city"}, "scope")):
        with pytest.raises(Invalid) as info:
            parse_shifts(json.dumps({"community": COMMUNITY, **bad}).encode(), TODAY)
        assert info.value.field == field, info.value.message
    with pytest.raises(Invalid):
        parse_shifts(b"not json", TODAY)
