"""Quarantine commands on the wire: strict parsing, and errors that name the field and the fix."""
from __future__ import annotations

import json
from datetime import date

import pytest

from services.quarantine.commands import COMMANDS, OpenCase, RecordCheckin, parse
from shared.errors import Invalid, UnknownCommand

COMMUNITY = "changning.chengjiaqiao.nangong"


def payload(**fields) -> bytes:
    return json.dumps({"command_id": "c-1", "actor": "staff:li-na", **fields}).encode()


def invalid(name: str, **fields) -> Invalid:
    with pytest.raises(Invalid) as info:
        parse(name, payload(**fields))
    return info.value


OPEN = dict(community=COMMUNITY, resident="r-wang", kind="home", reason="arrival", starts_on="2026-11-02")
CHECKIN = dict(case="case-1", on="2026-11-02", temperature_c=36.6, symptoms=[])


def test_every_contract_command_parses():
    samples = {
        "open_case": OPEN,
        "record_checkin": CHECKIN,
        "transfer_case": dict(case="case-1", to="hospital"),
        "release_case": dict(case="case-1", on="2026-11-15"),
        "record_missed_checkins": dict(on="2026-11-02", cases=["case-1", "case-2"]),
        "seal": dict(community=COMMUNITY, compound="sunny-garden", building="b2"),
        "lift_seal": dict(community=COMMUNITY, compound="sunny-garden"),
        "schedule_screening": dict(community=COMMUNITY, compound="sunny-garden", on="2026-11-03",
                                   slots=[{"label": "students", "from": "07:00", "to": "08:00"}]),
        "record_sample": dict(screening="round-1", resident="r-wang", code="A-17"),
        "record_result": dict(screening="round-1", resident="r-wang", result="positive"),
        "extend_seal": dict(community=COMMUNITY, compound="sunny-garden", until="2026-11-09"),
        "issue_sample_codes": dict(screening="round-1", all_residents=True, building="b2"),
    }
    assert set(samples) == set(COMMANDS)
    for name, fields in samples.items():
        assert isinstance(parse(name, payload(**fields)), COMMANDS[name])


def test_open_case_decodes_dates_and_optional_location():
    cmd = parse("open_case", payload(**OPEN, household="h-201", compound="sunny-garden"))
    assert isinstance(cmd, OpenCase) and cmd.starts_on == date(2026, 11, 2) and cmd.building is None


@pytest.mark.parametrize("fields, field, words", [
    (dict(OPEN, kind="hotel"), "kind", "home, centralized, monitoring"),
    (dict(OPEN, reason="bored"), "reason", "arrival, close_contact, fever, positive_test"),
    (dict(OPEN, starts_on="02/11/2026"), "starts_on", "YYYY-MM-DD"),
    (dict(OPEN, community="changning"), "community", "three tokens"),
    (dict(OPEN, resident="R Wang"), "resident", "slug"),
    (dict(OPEN, household="h-1"), "compound", "compound too"),
    (dict(OPEN, building="b1"), "household", "give the household"),
    (dict(OPEN, extra=1), "extra", "does not accept"),
    ({k: v for k, v in OPEN.items() if k != "kind"}, "kind", "required"),
])
def test_open_case_errors_name_the_field(fields, field, words):
    err = invalid("open_case", **fields)
    assert err.field == field and words in err.message


@pytest.mark.parametrize("fields, field, words", [
    (dict(CHECKIN, temperature_c=48), "temperature_c", "between 34.0 and 43.0"),
    (dict(CHECKIN, temperature_c="36.6"), "temperature_c", "must not be quoted"),
    (dict(CHECKIN, symptoms=["cough", " Cough"]), "symptoms[1]", "twice"),
    (dict(CHECKIN, symptoms=[""]), "symptoms[0]", "must not be empty"),
    (dict(CHECKIN, symptoms=["x" * 101]), "symptoms[0]", "at most 100"),
    (dict(CHECKIN, symptoms=[f"s{i}" for i in range(21)]), "symptoms", "at most 20"),
    (dict(CHECKIN, on="yesterday"), "on", "YYYY-MM-DD"),
])
def test_record_checkin_errors_name_the_field(fields, field, words):
    err = invalid("record_checkin", **fields)
    assert err.field == field and words in err.message


def test_symptoms_may_be_left_out_and_a_whole_degree_is_a_temperature():
    cmd = parse("record_checkin", payload(case="case-1", on="2026-11-02", temperature_c=37))
    assert isinstance(cmd, RecordCheckin) and cmd.symptoms == [] and cmd.temperature_c == 37


@pytest.mark.parametrize("slots, field, words", [
    ([], "slots", "at least one"),
    ([{"label": "a", "from": "7am", "to": "08:00"}], "slots[0].from", "HH:MM"),
    ([{"label": "a", "from": "09:00", "to": "08:00"}], "slots[0].from", "before"),
    ([{"label": "a", "from": "07:00", "to": "08:00"}, {"label": "a", "from": "08:00", "to": "09:00"}],
     "slots[1]", "twice"),
    ([{"label": "", "from": "07:00", "to": "08:00"}], "slots[0].label", "empty"),
    ([{"label": "a", "from": "07:00"}], "slots[0].to", "required"),
])
def test_screening_slots_are_checked(slots, field, words):
    err = invalid("schedule_screening", community=COMMUNITY, compound="c", on="2026-11-03", slots=slots)
    assert err.field == field and words in err.message


def test_other_errors():
    assert invalid("transfer_case", case="case-1", to="home").field == "to"
    assert invalid("record_result", screening="r", resident="r", result="maybe").field == "result"
    assert invalid("record_missed_checkins", on="2026-11-02", cases=[]).field == "cases"
    assert invalid("record_missed_checkins", on="2026-11-02", cases=[f"c{i}" for i in range(1001)]).field == "cases"
    assert invalid("seal", community=COMMUNITY, compound="c", building="B 1").field == "building"
    assert invalid("record_sample", screening="r", resident="r", code="x" * 33).field == "code"
    assert invalid("open_case", **dict(OPEN, actor="li na")).field == "actor"
    with pytest.raises(Invalid):
        parse("open_case", b"not json")
    with pytest.raises(Invalid):
        parse("open_case", b"")
    with pytest.raises(UnknownCommand):
        parse("close_everything", payload())
