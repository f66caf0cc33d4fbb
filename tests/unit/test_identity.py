"""Identities and their jurisdiction: who may act where, and how an identity travels as JWT tags."""
import json

import pytest

from shared.errors import Invalid
from shared.identity import Identity, Unauthenticated, from_request_info, within

NANGONG = "changning.chengjiaqiao.nangong"
BEIXIN = "changning.chengjiaqiao.beixin"
NEXT_STREET = "changning.xinjing.jinxiu"


def test_staff_act_and_read_in_their_own_community_only():
    li = Identity(name="li-wei", role="staff", scope=NANGONG)
    assert li.actor == "staff:li-wei" and li.community == NANGONG
    assert li.may_command("registry", "register_household") and li.acts_in(NANGONG)
    assert not li.acts_in(BEIXIN)
    assert li.reads(NANGONG) and not li.reads(BEIXIN) and not li.reads("changning.chengjiaqiao")


def test_a_street_officer_reads_the_street_and_none_of_the_next_and_commands_nowhere_unless_given():
    wang = Identity(name="wang-fang", role="officer", scope="changning.chengjiaqiao")
    assert wang.reads(NANGONG) and wang.reads(BEIXIN) and wang.reads("changning.chengjiaqiao")
    assert not wang.reads(NEXT_STREET) and not wang.reads("changning") and not wang.reads("city")
    assert not wang.may_command("registry", "register_household")
    acting = Identity(name="wang-fang", role="officer", scope="changning.chengjiaqiao", community=BEIXIN)
    assert acting.may_command("quarantine", "open_case") and acting.acts_in(BEIXIN) and not acting.acts_in(NANGONG)


def test_a_city_system_does_exactly_what_it_is_granted_city_wide():
    app = Identity(name="arrivals-app", role="city-system", grants=("cmd:registry.register_arrival",))
    assert app.actor == "city:arrivals-app"
    assert app.may_command("registry", "register_arrival") and app.acts_in(NANGONG)
    assert not app.may_command("registry", "verify_arrival") and not app.may_query("rollup")


def test_a_gate_device_only_checks_passage():
    gate = Identity(name="nangong-east", role="gate", scope=NANGONG, compound="nangong-1")
    assert gate.may_command("checkpoint", "check_passage") and gate.acts_in(NANGONG)
    assert not gate.may_command("checkpoint", "issue_passes") and not gate.reads(NANGONG)


@pytest.mark.parametrize("identity", [
    Identity(name="li-wei", role="staff", scope=NANGONG),
    Identity(name="wang-fang", role="officer", scope="changning.chengjiaqiao", community=BEIXIN),
    Identity(name="arrivals-app", role="city-system", grants=("cmd:registry.register_arrival", "qry:rollup", "evt")),
    Identity(name="nangong-east", role="gate", scope=NANGONG, compound="nangong-1"),
])
def test_an_identity_travels_whole_in_its_tags(identity):
    assert Identity.from_tags(identity.name, identity.tags()) == identity


@pytest.mark.parametrize("fields, field", [
    ({"name": "Li Wei", "role": "staff", "scope": NANGONG}, "name"),
    ({"name": "li-wei", "role": "mayor", "scope": NANGONG}, "role"),
    ({"name": "li-wei", "role": "staff", "scope": "changning"}, "scope"),
    ({"name": "li-wei", "role": "staff", "scope": NANGONG, "community": BEIXIN}, "community"),
    ({"name": "gate-1", "role": "gate", "scope": NANGONG}, "compound"),
    ({"name": "wang", "role": "officer", "scope": "changning.chengjiaqiao", "community": NEXT_STREET}, "community"),
    ({"name": "app", "role": "city-system", "grants": ("everything",)}, "grants"),
])
def test_an_identity_that_makes_no_sense_is_refused_naming_the_field(fields, field):
    with pytest.raises(Invalid) as info:
        Identity(**fields)
    assert info.value.field == field


def test_the_server_stamped_identity_is_read_and_the_client_chosen_name_ignored():
    header = json.dumps({"acc": "ACITY", "user": "UKEY", "name": "i-am-the-admin", "name_tag": "li-wei",
                         "tags": ["role:staff", f"scope:{NANGONG}"]})
    assert from_request_info(header) == Identity(name="li-wei", role="staff", scope=NANGONG)
    assert from_request_info(None) is None


@pytest.mark.parametrize("header", ['{"acc": "ACITY", "rtt": 1}', "not json",
                                   '{"name_tag": "x", "tags": ["role:mayor"]}'])
def test_a_request_whose_identity_cannot_be_trusted_is_unauthenticated(header):
    with pytest.raises(Unauthenticated):
        from_request_info(header)


def test_within_follows_the_tree_token_by_token():
    assert within(NANGONG, "city") and within(NANGONG, "changning") and within(NANGONG, NANGONG)
    assert not within("changning2.x.y", "changning") and not within("changning", NANGONG)
