"""Parsing logistics commands from the wire: strict shapes, the catalogue, quantities, ids, and an
error that names the field for every way a payload can be wrong."""
from __future__ import annotations

import json

import pytest

from services.logistics.commands import (
    COMMANDS,
    ReceiveStock,
    RequestSupplies,
    luhn_digit,
    number_ok,
    parse,
    voucher_number,
)
from services.logistics.config import Config
from shared.errors import Invalid, UnknownCommand

COMMUNITY = "changning.chengjiaqiao.nangong"
BASE = {"command_id": "c-1", "actor": "staff:li-na"}
VALID = {
    "request_supplies": {"community": COMMUNITY, "household": "h-1", "kind": "food",
                         "items": [{"item": "vegetable-pack", "qty": 2}]},
    "assign_delivery": {"request": "r-1", "volunteer": "vol-1"},
    "record_delivery": {"request": "r-1", "outcome": "no_answer"},
    "cancel_request": {"request": "r-1"},
    "receive_stock": {"community": COMMUNITY, "items": [{"item": "masks", "qty": 500}], "source": "donation",
                      "from": "Hema supermarket"},
    "reserve_masks": {"community": COMMUNITY, "household": "h-1", "qty": 5},
    "redeem_voucher": {"voucher": "0000018"},
    "resolve_welfare_check": {"household": "h-1", "outcome": "safe"},
    "start_daily_supply": {"household": "h-1", "cause": "case:c-1"},
    "stop_daily_supply": {"resident": "r-1", "cause": "seal:nangong-1:b2"},
    "raise_daily_request": {"household": "h-1", "on": "2022-04-02"},
}


def payload(name: str, **changes) -> bytes:
    body = {**BASE, **VALID[name], **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def invalid(name: str, field: str | None = None, raw: bytes | None = None, **changes) -> Invalid:
    with pytest.raises(Invalid) as info:
        parse(name, raw if raw is not None else payload(name, **changes))
    if field is not None:
        assert info.value.field == field, info.value.message
    return info.value


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_valid_example_parses(name):
    assert isinstance(parse(name, payload(name)), COMMANDS[name])


def test_every_command_of_the_contract_is_there():
    assert {"request_supplies", "assign_delivery", "record_delivery", "receive_stock", "reserve_masks",
            "redeem_voucher"} <= set(COMMANDS)


def test_an_unknown_command_is_named():
    with pytest.raises(UnknownCommand):
        parse("buy_vegetables", b"{}")


@pytest.mark.parametrize("qty", [0, -1, -500, 100_001])
def test_a_quantity_must_be_from_one_to_the_maximum(qty):
    err = invalid("request_supplies", "items[0].qty", items=[{"item": "rice", "qty": qty}])
    assert "whole number from 1" in err.message


def test_a_quoted_quantity_is_refused_with_a_hint():
    err = invalid("receive_stock", "items[0].qty", items=[{"item": "rice", "qty": "5"}])
    assert "must not be quoted" in err.message


def test_a_fractional_quantity_is_refused():
    invalid("reserve_masks", "qty", qty=2.5)


def test_an_unknown_item_is_refused_with_the_catalogue():
    err = invalid("request_supplies", "items[1].item", items=[{"item": "rice", "qty": 1},
                                                               {"item": "caviar", "qty": 1}])
    assert "vegetable-pack" in err.message and "caviar" in err.message


def test_the_catalogue_is_policy():
    config = Config(catalogue={"vegetable-pack": True, "caviar": True})
    cmd = parse("request_supplies", payload("request_supplies", items=[{"item": "caviar", "qty": 1}]), config)
    assert isinstance(cmd, RequestSupplies)


def test_an_item_sourced_per_request_cannot_be_received_into_stock():
    err = invalid("receive_stock", "items[0].item", items=[{"item": "medicine", "qty": 3}])
    assert "not kept in stock" in err.message


def test_items_must_not_be_empty_or_repeat_an_item():
    invalid("request_supplies", "items", items=[])
    invalid("request_supplies", "items[1]", items=[{"item": "rice", "qty": 1}, {"item": "rice", "qty": 2}])
    invalid("request_supplies", "items", items=[{"item": "rice", "qty": 1}] * 51)


def test_a_line_with_an_unknown_field_is_refused():
    invalid("receive_stock", "items[0].brand", items=[{"item": "rice", "qty": 1, "brand": "x"}])


def test_the_kind_and_outcomes_are_closed_lists():
    assert "expected one of: food" in invalid("request_supplies", "kind", kind="luxury").message
    assert "delivered" in invalid("record_delivery", "outcome", outcome="lost").message
    invalid("resolve_welfare_check", "outcome", outcome="fine")
    invalid("receive_stock", "source", source="found")


@pytest.mark.parametrize("field, value", [
    ("community", "changning.chengjiaqiao"), ("community", "Changning.x.y"), ("household", "H 1"),
    ("household", "h.1"), ("request", "r>1"),
])
def test_ids_and_paths_that_would_break_the_subject_tree_are_refused(field, value):
    invalid("request_supplies", field, **{field: value})


def test_a_missing_field_is_named():
    assert invalid("assign_delivery", "volunteer", volunteer=...).message == "volunteer is required in assign_delivery"


def test_an_unknown_field_is_named():
    invalid("redeem_voucher", "household", household="h-1")


def test_a_volunteer_is_an_id_never_a_name():
    for bad in ("王小伟", "Zhang Wei", "vol:1:2", ""):
        invalid("assign_delivery", "volunteer", volunteer=bad)
    assert parse("assign_delivery", payload("assign_delivery", volunteer="volunteer:zhang-3"))


def test_a_note_must_not_carry_a_phone_number():
    err = invalid("request_supplies", "note", note="call 138 0013 8000 first")
    assert "phone" in err.message
    assert parse("request_supplies", payload("request_supplies", note="room 1203, leave at the door"))


def test_text_must_not_hold_nul_or_be_blank():
    invalid("request_supplies", "note", note="bad\u0000note")
    invalid("receive_stock", "from", **{"from": "   "})
    invalid("cancel_request", "note", note="x" * 1001)


def test_the_printed_number_is_the_services_business():
    err = invalid("reserve_masks", "number", number="0000018")
    assert "unknown field" in err.message


def test_a_masks_reservation_is_bounded_by_the_limit():
    invalid("reserve_masks", "qty", qty=11)
    assert parse("reserve_masks", payload("reserve_masks", qty=3), Config(mask_limit=3))
    with pytest.raises(Invalid):
        parse("reserve_masks", payload("reserve_masks", qty=4), Config(mask_limit=3))


def test_a_chosen_voucher_id_must_not_look_like_a_printed_number():
    invalid("reserve_masks", "voucher", voucher="12345")
    assert parse("reserve_masks", payload("reserve_masks", voucher="v-12345"))


def test_a_mistyped_voucher_number_is_caught_by_its_check_digit():
    good = voucher_number(1234)
    assert parse("redeem_voucher", payload("redeem_voucher", voucher=good))
    typo = good[:-2] + str((int(good[-2]) + 1) % 10) + good[-1]
    err = invalid("redeem_voucher", "voucher", voucher=typo)
    assert "check digit" in err.message


def test_a_cause_names_a_case_or_a_sealed_area():
    for bad in ("case", "case:", "quarantine:c-1", "seal:a:b:c", "case:C-1"):
        invalid("start_daily_supply", "cause", cause=bad)


def test_a_plan_names_exactly_one_of_household_and_resident():
    invalid("start_daily_supply", "household", resident="r-1")
    invalid("stop_daily_supply", "household", resident=...)


def test_a_date_must_be_a_date():
    assert "YYYY-MM-DD" in invalid("raise_daily_request", "on", on="2022-4-2").message


def test_payloads_that_are_not_objects_are_refused():
    invalid("request_supplies", raw=b"")
    invalid("request_supplies", raw=b"[]")
    invalid("request_supplies", raw=b"{not json")


def test_an_actor_is_one_token():
    invalid("cancel_request", "actor", actor="staff li-na")


def test_the_giver_is_read_from_the_wire_name_from():
    cmd = parse("receive_stock", payload("receive_stock"))
    assert isinstance(cmd, ReceiveStock) and cmd.from_ == "Hema supermarket"


def test_voucher_numbers_are_unique_per_serial_and_carry_a_luhn_digit():
    numbers = {voucher_number(n) for n in range(1, 5000)}
    assert len(numbers) == 4999 and all(number_ok(n) for n in numbers)
    assert voucher_number(1) == "0000018" and luhn_digit("7992739871") == "3"
    assert not number_ok("0000019") and not number_ok("7")
