"""Registry commands on the wire: strict parsing and validation, every failure an Invalid naming the field."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest
from zoneinfo import ZoneInfo

from services.registry.config import Config
from services.registry.commands import (
    COMMANDS,
    CREATES,
    MoveOut,
    RegisterArrival,
    RegisterCompound,
    RegisterHousehold,
    RegisterResident,
    VerifyArrival,
    parse,
    validate,
)
from shared import wire
from shared.contracts.registry import Transport, Visit
from shared.errors import Invalid, UnknownCommand

COMMUNITY = "changning.chengjiaqiao.nangong"
UUID = "3f2b8c1e-4d5a-4b6c-8e7f-9a0b1c2d3e4f"
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=timezone(timedelta(hours=8)))


def prc_id(first17: str) -> str:
    """A valid resident ID card number: ISO 7064 MOD 11-2 over the first 17 digits."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(digit) * weight for digit, weight in zip(first17, weights))
    return first17 + "10X98765432"[total % 11]


def wrong_check_digit(number: str) -> str:
    return number[:17] + ("1" if number[17] != "1" else "2")


ID_CARD = prc_id("11010519491231002")  # ...002X
ID_CARD_DIGIT = prc_id("31010419800101123")

VALID = {
    "register_compound": {
        "community": COMMUNITY, "compound": "sunny-garden", "name": "Sunny Garden",
        "buildings": ["b1", "b2", "b3"], "gates": ["north", "south"],
    },
    "register_household": {
        "community": COMMUNITY, "compound": "sunny-garden", "building": "b2", "address": "Building 2, Room 201",
    },
    "register_resident": {
        "household": "h-201", "name": "王小伟", "id_number": ID_CARD, "phone": "+8613800138000",
        "birth_year": 1949, "vulnerabilities": ["elderly_alone", "limited_mobility"],
    },
    "register_arrival": {
        "resident": "r-wang", "origin": "Wuhan", "arrived_on": "2026-11-22",
        "transport": {"kind": "train", "number": "G1234"},
        "visited": [{"place": "Wuhan", "from": "2026-11-10", "to": "2026-11-20"}],
        "city_class": "A", "risk_area_visited": False,
    },
    "verify_arrival": {"arrival": "a-1", "outcome": "cleared", "documents_checked": True, "note": "ticket ok"},
    "move_out": {"resident": "r-wang", "reason": "moved to her daughter's"},
}


def payload(name: str, /, drop: tuple[str, ...] = (), **fields) -> bytes:
    body = {"command_id": "c-1", "actor": "staff:li-na", **VALID[name], **fields}
    for key in drop:
        body.pop(key)
    return json.dumps(body, ensure_ascii=False).encode()


def invalid(name: str, raw: bytes) -> Invalid:
    with pytest.raises(Invalid) as info:
        parse(name, raw)
    assert info.value.code == "invalid"
    return info.value


def invalid_field(name: str, field: str, /, **fields) -> Invalid:
    error = invalid(name, payload(name, **fields))
    assert error.field == field, error.message
    return error


# -- the happy paths -------------------------------------------------------------------------


def test_the_wire_names():
    assert set(COMMANDS) == {"register_compound", "register_household", "register_resident",
                             "register_arrival", "verify_arrival", "move_out", "grant_identity",
                             "revoke_identity", "erase_resident", "record_personal_data_view",
                             "apply_retention", "update_resident", "record_call", "record_tip_off",
                             "follow_up_tip_off", "register_pending_arrival", "complete_registration"}


def test_register_compound_parses():
    cmd = parse("register_compound", payload("register_compound", expected_version=0))
    assert cmd == RegisterCompound(command_id="c-1", actor="staff:li-na", expected_version=0, **VALID["register_compound"])


def test_register_household_parses_without_a_household_id():
    cmd = parse("register_household", payload("register_household"))
    assert isinstance(cmd, RegisterHousehold) and cmd.household is None and cmd.occurred_at is None


def test_register_resident_parses():
    cmd = parse("register_resident", payload("register_resident", resident=UUID))
    assert isinstance(cmd, RegisterResident)
    assert cmd.vulnerabilities == ["elderly_alone", "limited_mobility"] and cmd.resident == UUID


def test_register_arrival_parses_dates_transport_and_visits():
    cmd = parse("register_arrival", payload("register_arrival", occurred_at="2026-11-23T09:30:00+08:00"))
    assert isinstance(cmd, RegisterArrival)
    assert cmd.arrived_on == date(2026, 11, 22) and cmd.occurred_at == NOW
    assert cmd.transport == Transport(kind="train", number="G1234")
    assert cmd.visited == [Visit(place="Wuhan", from_=date(2026, 11, 10), to=date(2026, 11, 20))]


def test_verify_arrival_parses():
    cmd = parse("verify_arrival", payload("verify_arrival"))
    assert cmd == VerifyArrival(command_id="c-1", actor="staff:li-na", **VALID["verify_arrival"])


def test_move_out_parses_without_a_reason():
    cmd = parse("move_out", payload("move_out", drop=("reason",)))
    assert cmd == MoveOut(command_id="c-1", actor="staff:li-na", resident="r-wang")


def test_a_passport_number_is_accepted():
    assert parse("register_resident", payload("register_resident", id_number="E12345678")).id_number == "E12345678"


def test_an_id_card_number_ending_in_a_digit_is_accepted():
    assert parse("register_resident", payload("register_resident", id_number=ID_CARD_DIGIT))


def test_an_arrival_on_the_day_of_the_command_is_accepted():
    assert parse("register_arrival", payload("register_arrival", arrived_on="2026-11-23",
                                             occurred_at="2026-11-23T00:10:00+08:00"))


# -- malformed payloads ----------------------------------------------------------------------


def test_an_unknown_command():
    with pytest.raises(UnknownCommand) as info:
        parse("delete_everything", b"{}")
    assert "register_compound" in info.value.message


@pytest.mark.parametrize("raw", [b"", b"   \n"])
def test_an_empty_payload(raw):
    assert "empty" in invalid("move_out", raw).message


def test_a_payload_that_is_not_json():
    assert "not valid JSON" in invalid("move_out", b"resident=r-wang").message


def test_json_with_trailing_garbage():
    assert "not valid JSON" in invalid("move_out", payload("move_out") + b" }").message


@pytest.mark.parametrize("raw, kind", [(b"[]", "array"), (b'"move"', "str"), (b"42", "int"), (b"null", "null")])
def test_a_json_value_that_is_not_an_object(raw, kind):
    error = invalid("move_out", raw)
    assert "must be a JSON object" in error.message and kind in error.message and error.field is None


def test_a_quoted_number_is_not_a_number():
    error = invalid_field("register_resident", "birth_year", birth_year="1949")
    assert "must not be quoted" in error.message


def test_a_quoted_boolean_is_not_a_boolean():
    invalid_field("verify_arrival", "documents_checked", documents_checked="true")


def test_a_missing_field_is_named():
    error = invalid("register_resident", payload("register_resident", drop=("name",)))
    assert error.field == "name" and "name is required" in error.message


def test_a_missing_nested_field_is_named_with_its_path():
    invalid_field("register_arrival", "transport.kind", transport={"number": "G1"})


def test_an_unknown_field_is_refused():
    error = invalid_field("move_out", "reson", reson="typo")
    assert "unknown field" in error.message


def test_an_unknown_nested_field_is_refused():
    invalid_field("register_arrival", "visited[0].city",
                  visited=[{"place": "Wuhan", "from": "2026-11-10", "to": "2026-11-20", "city": "x"}])


@pytest.mark.parametrize("field, value", [("city_class", "C"), ("outcome", "released")])
def test_a_value_outside_its_choices_lists_them(field, value):
    name = "register_arrival" if field == "city_class" else "verify_arrival"
    error = invalid_field(name, field, **{field: value})
    assert "expected one of" in error.message


def test_an_unknown_transport_kind():
    assert "train" in invalid_field("register_arrival", "transport.kind", transport={"kind": "boat"}).message


def test_an_unknown_vulnerability_names_its_position():
    error = invalid_field("register_resident", "vulnerabilities[1]", vulnerabilities=["elderly_alone", "old"])
    assert "chronic_illness" in error.message


# -- ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["Sunny", "sunny.garden", "sunny*", "sunny>", "sunny garden", "", "-sunny", "x" * 64])
def test_a_compound_id_must_be_a_slug(bad):
    invalid_field("register_compound", "compound", compound=bad)


def test_a_bad_building_id_names_its_position():
    invalid_field("register_compound", "buildings[1]", buildings=["b1", "B2"])


def test_a_bad_gate_id():
    invalid_field("register_compound", "gates[0]", gates=["north gate"])


def test_an_upper_case_uuid_is_not_a_slug():
    invalid_field("register_resident", "resident", resident=UUID.upper())


@pytest.mark.parametrize("field", ["household", "building"])
def test_household_ids_must_be_slugs(field):
    invalid_field("register_household", field, **{field: "h.1"})


@pytest.mark.parametrize("name, field", [("register_arrival", "resident"), ("register_arrival", "arrival"),
                                         ("verify_arrival", "arrival"), ("move_out", "resident")])
def test_referenced_ids_must_be_slugs(name, field):
    invalid_field(name, field, **{field: "a>b"})


@pytest.mark.parametrize("bad", ["changning.chengjiaqiao", "changning.chengjiaqiao.Nangong", "a.b.c.d", "a..b"])
def test_a_community_is_a_path_of_three_slugs(bad):
    invalid_field("register_compound", "community", community=bad)


def test_duplicate_buildings():
    error = invalid_field("register_compound", "buildings[2]", buildings=["b1", "b2", "b1"])
    assert "twice" in error.message


def test_duplicate_gates():
    invalid_field("register_compound", "gates[1]", gates=["north", "north"])


@pytest.mark.parametrize("field", ["buildings", "gates"])
def test_a_compound_has_buildings_and_gates(field):
    invalid_field("register_compound", field, **{field: []})


def test_at_most_500_buildings():
    invalid_field("register_compound", "buildings", buildings=[f"b{i}" for i in range(501)])


# -- common fields ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "li na", "li\tna", "x" * 129])
def test_an_actor_is_a_short_word(bad):
    invalid_field("move_out", "actor", actor=bad)


@pytest.mark.parametrize("bad", ["", "   ", "c" * 129])
def test_a_command_id_is_short_and_not_empty(bad):
    invalid_field("move_out", "command_id", command_id=bad)


def test_expected_version_is_not_negative():
    invalid_field("move_out", "expected_version", expected_version=-1)


def test_occurred_at_needs_a_timezone():
    assert "zone" in invalid_field("move_out", "occurred_at", occurred_at="2026-11-23T09:30:00").message


@pytest.mark.parametrize("name, field", [("verify_arrival", "note"), ("move_out", "reason")])
@pytest.mark.parametrize("text", ["call her at 138 0013 8000", "ID 110101194107150011 checked"])
def test_free_text_that_goes_on_the_bus_must_not_carry_a_phone_or_id_number(name, field, text):
    # Given a note or reason staff type, which the event carries to every service
    error = invalid_field(name, field, **{field: text})
    # then a phone or ID number in it is refused, saying why
    assert "published" in error.message
    # and text without one is taken
    validate(parse(name, payload(name, **{field: "ticket and ID card checked on 2020-02-17"})))


def test_occurred_at_must_be_an_instant():
    invalid_field("move_out", "occurred_at", occurred_at="yesterday")


def test_a_naive_occurred_at_built_in_code_is_refused():
    cmd = MoveOut(command_id="c", actor="a", resident="r", occurred_at=datetime(2026, 1, 1))
    with pytest.raises(Invalid) as info:
        validate(cmd)
    assert info.value.field == "occurred_at"


# -- residents -------------------------------------------------------------------------------


def test_a_wrong_check_digit_is_explained():
    error = invalid_field("register_resident", "id_number", id_number=wrong_check_digit(ID_CARD))
    assert "check digit" in error.message and "'X'" in error.message


def test_another_wrong_check_digit():
    invalid_field("register_resident", "id_number", id_number=wrong_check_digit(ID_CARD_DIGIT))


@pytest.mark.parametrize("bad", ["11010519491231002x", "ABCDEFGHIJKLMNOPQR", "E123", "e12345678", "E-1234567",
                                 "1234", "A" * 21, ""])
def test_bad_id_numbers(bad):
    invalid_field("register_resident", "id_number", id_number=bad)


@pytest.mark.parametrize("bad", ["138-0013-8000", "1234", "+", "1" * 21, "+86 138", "１３８００１３８０００"])
def test_bad_phones(bad):
    invalid_field("register_resident", "phone", phone=bad)


def test_a_phone_is_optional():
    assert parse("register_resident", payload("register_resident", drop=("phone",))).phone is None


@pytest.mark.parametrize("year", [1889, 2101])
def test_birth_year_is_plausible(year):
    invalid_field("register_resident", "birth_year", birth_year=year)


def test_birth_year_is_not_after_the_command():
    invalid_field("register_resident", "birth_year", birth_year=2027, occurred_at="2026-11-23T09:30:00+08:00")


def test_duplicate_vulnerabilities():
    invalid_field("register_resident", "vulnerabilities[1]", vulnerabilities=["chronic_illness"] * 2)


@pytest.mark.parametrize("bad", ["", "   ", "王" * 201])
def test_a_name_is_not_empty_and_bounded(bad):
    invalid_field("register_resident", "name", name=bad)


def test_an_address_is_not_empty():
    invalid_field("register_household", "address", address="")


# -- arrivals --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["2026-02-30", "22/11/2026", "2026-11-22T08:00:00+08:00", 20261122])
def test_a_bad_arrival_date(bad):
    invalid_field("register_arrival", "arrived_on", arrived_on=bad)


def test_a_bad_visit_date_names_its_position():
    invalid_field("register_arrival", "visited[0].to",
                  visited=[{"place": "Wuhan", "from": "2026-11-10", "to": "2026-11-31"}])


def test_a_visit_cannot_end_before_it_starts():
    error = invalid_field("register_arrival", "visited[1].from", visited=[
        {"place": "Wuhan", "from": "2026-11-10", "to": "2026-11-12"},
        {"place": "Xiaogan", "from": "2026-11-15", "to": "2026-11-14"},
    ])
    assert "after" in error.message


def test_a_visit_needs_a_place():
    invalid_field("register_arrival", "visited[0].place", visited=[{"place": " ", "from": "2026-11-10", "to": "2026-11-10"}])


def test_at_most_100_visits():
    visits = [{"place": f"p{i}", "from": "2026-11-10", "to": "2026-11-10"} for i in range(101)]
    invalid_field("register_arrival", "visited", visited=visits)


def test_an_arrival_cannot_be_in_the_future():
    invalid_field("register_arrival", "arrived_on", arrived_on="2026-11-24", occurred_at="2026-11-23T23:00:00+08:00")


def test_an_origin_is_required():
    invalid_field("register_arrival", "origin", origin="")


def test_a_blank_train_number_is_refused():
    invalid_field("register_arrival", "transport.number", transport={"kind": "train", "number": ""})


def test_a_note_is_bounded():
    invalid_field("verify_arrival", "note", note="n" * 1001)


def test_a_move_out_reason_is_not_blank():
    invalid_field("move_out", "reason", reason="  ")


# -- complete: what the runtime fills in, then validates -------------------------------------


def complete(cmd, *, now, new_id):
    """What the runtime does before the batch (``CommandRuntime.complete``): fill in, then validate."""
    return validate(wire.complete(cmd, now=lambda: now, new_id=new_id, creates=CREATES))


def test_complete_fills_the_receive_time_and_the_created_id():
    cmd = complete(parse("register_household", payload("register_household")), now=NOW, new_id=lambda: UUID)
    assert cmd.occurred_at == NOW and cmd.household == UUID


def test_complete_keeps_what_the_caller_gave():
    given = parse("register_arrival", payload("register_arrival", arrival="a-7",
                                              occurred_at="2026-11-23T08:00:00+08:00"))
    cmd = complete(given, now=NOW + timedelta(days=1), new_id=lambda: "never")
    assert cmd == given


def test_complete_checks_dates_against_the_receive_time():
    cmd = parse("register_arrival", payload("register_arrival", arrived_on="2026-11-30"))
    with pytest.raises(Invalid) as info:
        complete(cmd, now=NOW, new_id=lambda: UUID)
    assert info.value.field == "arrived_on"


def test_an_arrival_today_is_today_in_the_city_whatever_the_clock_of_utc_says():
    # 04:00 in Shanghai is still the day before in UTC, the runtime's own clock
    early = datetime(2026, 11, 22, 20, 0, tzinfo=timezone.utc)
    cmd = complete(parse("register_arrival", payload("register_arrival", arrived_on="2026-11-23")),
                   now=early, new_id=lambda: UUID)
    assert cmd.arrived_on == date(2026, 11, 23)
    new_york = Config(zone=ZoneInfo("America/New_York"))  # where it is 15:00 on the 22nd
    with pytest.raises(Invalid) as info:
        validate(wire.complete(parse("register_arrival", payload("register_arrival", arrived_on="2026-11-23")),
                               now=lambda: early, new_id=lambda: UUID, creates=CREATES), new_york)
    assert info.value.field == "arrived_on" and "(2026-11-22)" in info.value.message


def test_an_invalid_reply_names_the_field():
    error = invalid_field("register_resident", "birth_year", birth_year="1949")
    reply = error.to_reply()
    assert reply["ok"] is False and reply["error"]["code"] == "invalid" and reply["error"]["field"] == "birth_year"
