"""The services' own checks of who asks (shared.access), pure: each rule refuses what it must and
lets through what it must, and scoped command subjects read back as (command, community)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from shared.access import Caller, check_command, check_payload, check_query, forbid_unreadable, identity_of
from shared.errors import Invalid
from shared.identity import Forbidden, Identity, Unauthenticated
from shared.subjects import command_filter, command_name, command_subject

NANGONG = "changning.chengjiaqiao.nangong"
BEIXIN = "changning.chengjiaqiao.beixin"
NEXT_STREET = "changning.xinjing.jinxiu"

STAFF = Identity(name="li-wei", role="staff", scope=NANGONG)
OFFICER = Identity(name="wang-fang", role="officer", scope="changning.chengjiaqiao")
ARRIVALS_APP = Identity(name="arrivals-app", role="city-system", grants=("cmd:registry.register_arrival",))
GATE = Identity(name="nangong-east", role="gate", scope=NANGONG, compound="nangong-1")
OPERATOR = Identity(name="admin", role="operator")


def command(**fields):
    return SimpleNamespace(**{"actor": "staff:li-wei", **fields})


def refused(check, *args) -> Forbidden:
    with pytest.raises(Forbidden) as info:
        check(*args)
    assert info.value.code == "forbidden"
    return info.value


# -- subjects --------------------------------------------------------------------------------


def test_a_scoped_command_subject_carries_the_community_and_reads_back():
    subject = command_subject("quarantine", "release_case", NANGONG)
    assert subject == "cordon.cmd.quarantine.release_case.changning.chengjiaqiao.nangong"
    assert command_name("quarantine", subject) == ("release_case", NANGONG)
    assert command_name("quarantine", command_subject("quarantine", "release_case")) == ("release_case", None)
    assert subject.startswith(command_filter("quarantine")[:-1])  # the service's subscription matches both


def test_a_subject_of_neither_shape_reads_back_whole_as_an_unknown_name():
    assert command_name("registry", "cordon.cmd.registry.register_compound.extra") == (
        "register_compound.extra", None)
    with pytest.raises(Invalid):
        command_subject("registry", "register_compound", "changning.chengjiaqiao")


# -- the header ------------------------------------------------------------------------------


def test_no_header_is_inside_cordon_and_an_unreadable_one_is_unauthenticated():
    assert identity_of(None) is None and identity_of({}) is None
    info = {"acc": "ACITY", "user": "U1", "name": "admin", "name_tag": "li-wei", "tags": STAFF.tags()}
    assert identity_of({"Nats-Request-Info": json.dumps(info)}) == STAFF
    with pytest.raises(Unauthenticated):
        identity_of({"Nats-Request-Info": "{not json"})
    for _ in range(2):  # an identity is built once per name and tags; a refusal every time
        with pytest.raises(Unauthenticated):
            identity_of({"Nats-Request-Info": json.dumps({"name_tag": "li-wei", "tags": ["role:mayor"]})})
    for unreadable in ({"name_tag": 7}, {"acc": "ACITY"}, {"name_tag": "li-wei", "tags": [1]}):
        with pytest.raises(Unauthenticated):
            identity_of({"Nats-Request-Info": json.dumps(unreadable)})


# -- commands: before the payload ------------------------------------------------------------


def test_staff_send_their_communitys_commands_on_its_scoped_subject_only():
    check_command(STAFF, "quarantine", "release_case", NANGONG)
    assert "subject" in refused(check_command, STAFF, "quarantine", "release_case", None).message
    assert BEIXIN in refused(check_command, STAFF, "quarantine", "release_case", BEIXIN).message


def test_a_city_system_sends_exactly_its_grants_scoped_or_not():
    check_command(ARRIVALS_APP, "registry", "register_arrival", None)
    check_command(ARRIVALS_APP, "registry", "register_arrival", BEIXIN)
    assert "register_arrival" in refused(check_command, ARRIVALS_APP, "registry", "verify_arrival", None).message


def test_an_officer_without_a_community_sends_no_command():
    refused(check_command, OFFICER, "quarantine", "open_case", NANGONG)


def test_a_gate_device_only_checks_passage():
    check_command(GATE, "checkpoint", "check_passage", NANGONG)
    refused(check_command, GATE, "checkpoint", "issue_passes", NANGONG)
    refused(check_command, GATE, "checkpoint", "check_passage", None)


@pytest.mark.parametrize("name", ["grant_identity", "revoke_identity"])
def test_identity_commands_only_from_inside_cordon(name):
    check_command(None, "registry", name, None)
    check_command(OPERATOR, "registry", name, None)
    for outsider in (STAFF, ARRIVALS_APP):
        assert "inside Cordon" in refused(check_command, outsider, "registry", name, None).message
    refused(check_command, Identity(name="app", role="city-system", grants=(f"cmd:registry.{name}",)),
            "registry", name, None)


# -- commands: the payload -------------------------------------------------------------------


def test_the_actor_is_the_identitys_own():
    check_payload(STAFF, NANGONG, command(actor="staff:li-wei"))
    for forged in ("staff:zhao-lei", "system:quarantine-scheduler", "operator:admin"):
        assert refused(check_payload, STAFF, NANGONG, command(actor=forged)).field == "actor"


def test_a_payload_community_must_be_the_subjects():
    check_payload(None, NANGONG, command(community=NANGONG))
    assert refused(check_payload, None, NANGONG, command(community=BEIXIN)).field == "community"
    assert refused(check_payload, STAFF, NANGONG, command(community=BEIXIN)).field == "community"
    check_payload(None, None, command(community=BEIXIN))  # unscoped, from inside: as before


def test_a_gate_checks_passage_at_its_compound_only():
    gate_actor = "gate:nangong-east"
    check_payload(GATE, NANGONG, command(actor=gate_actor, community=NANGONG, compound="nangong-1"))
    assert refused(check_payload, GATE, NANGONG,
                   command(actor=gate_actor, community=NANGONG, compound="nangong-2")).field == "compound"


# -- commands: every event decided -----------------------------------------------------------


def test_every_event_must_be_in_the_subjects_community_and_the_identitys():
    Caller(STAFF, NANGONG).check_event(NANGONG, "CaseReleased")
    assert refused(Caller(STAFF, NANGONG).check_event, BEIXIN, "CaseReleased").field == "subject"
    assert refused(Caller(STAFF, None).check_event, BEIXIN, "CaseReleased").field == "community"
    Caller(ARRIVALS_APP, None).check_event(BEIXIN, "ArrivalRegistered")
    Caller(None, None).check_event(BEIXIN, "ArrivalRegistered")
    assert refused(Caller(None, NANGONG).check_event, BEIXIN, "CompoundRegistered").field == "subject"


# -- queries ---------------------------------------------------------------------------------


def query(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_staff_query_their_own_community_and_nothing_else():
    check_query(STAFF, "community", query(community=NANGONG))
    assert refused(check_query, STAFF, "community", query(community=BEIXIN)).field == "community"
    assert refused(check_query, STAFF, "rollup", query(scope="changning.chengjiaqiao")).field == "scope"


def test_a_street_officer_reads_its_street_and_not_the_next():
    for place in (NANGONG, BEIXIN):
        check_query(OFFICER, "quarantine.cases", query(community=place))
    check_query(OFFICER, "rollup", query(scope="changning.chengjiaqiao"))
    refused(check_query, OFFICER, "quarantine.cases", query(community=NEXT_STREET))
    refused(check_query, OFFICER, "rollup", query(scope="changning"))


def test_a_city_system_queries_only_what_it_is_granted_and_a_gate_nothing():
    app = Identity(name="health-commission", role="city-system", grants=("qry:rollup",))
    check_query(app, "rollup", query(scope="city"))
    refused(check_query, app, "community", query(community=NANGONG))
    refused(check_query, GATE, "community", query(community=NANGONG))


def test_the_register_of_identities_is_read_inside_cordon_only():
    check_query(None, "registry.identities", b"{}")
    check_query(OPERATOR, "registry.identities", b"{}")
    refused(check_query, STAFF, "registry.identities", b"{}")


def test_an_answer_about_another_community_is_refused():
    forbid_unreadable(STAFF, {NANGONG}, "the timeline of r-1")
    forbid_unreadable(None, {BEIXIN}, "the timeline of r-1")
    assert BEIXIN in refused(forbid_unreadable, STAFF, {NANGONG, BEIXIN}, "the cases of r-1").message


def test_a_record_of_another_community_is_refused_as_soon_as_it_is_loaded():
    case_in_beixin = SimpleNamespace(community=BEIXIN, status="closed")
    message = refused(Caller(STAFF, NANGONG).check_state, "case:c-1", case_in_beixin).message
    assert "case:c-1" in message and BEIXIN in message and "closed" not in message
    Caller(STAFF, NANGONG).check_state("case:c-2", SimpleNamespace(community=NANGONG))
    Caller(STAFF, NANGONG).check_state("passage:p-1", None)  # nothing there yet, or no community
    Caller(ARRIVALS_APP, None).check_state("resident:r-1", SimpleNamespace(community=BEIXIN))
    Caller(None, NANGONG).check_state("case:c-1", case_in_beixin)  # from inside: its events are checked
