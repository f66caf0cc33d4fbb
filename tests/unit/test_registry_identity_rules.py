"""Identities in the registry as stories: given the name's events -> when grant_identity or
revoke_identity -> then events or a refusal naming its rule; and the commands on the wire."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import nkeys
import pytest

from services.registry.commands import GrantIdentity, RevokeIdentity, check_user_key, parse, validate
from services.registry.decide import Facts, decide
from services.registry.domain import Grant, identity_stream, replay, target_stream
from shared.contracts.registry import ACCESS_COMMUNITY, IdentityGranted, IdentityRevoked
from shared.errors import Invalid, NotFound, Rejected
from shared.subjects import check_community
from tests.support.identities import user_key

AT = datetime(2026, 11, 23, 9, 30, tzinfo=timezone(timedelta(hours=8)))
NANGONG = "changning.chengjiaqiao.nangong"
OPERATOR = "operator:admin"


KEY, OTHER_KEY = user_key(1), user_key(2)


def grant(**kw) -> GrantIdentity:
    fields = {"command_id": "g-1", "actor": OPERATOR, "occurred_at": AT, "identity": "li-wei",
              "role": "staff", "scope": NANGONG, "public_key": KEY, **kw}
    return validate(GrantIdentity(**fields))


def revoke(**kw) -> RevokeIdentity:
    return validate(RevokeIdentity(**{"command_id": "r-1", "actor": OPERATOR, "occurred_at": AT,
                                      "identity": "li-wei", **kw}))


def facts_after(*events, key_holder=None) -> Facts:
    return Facts(grant=replay(events), key_holder=key_holder)


def granted(**kw) -> IdentityGranted:
    [event] = decide(Facts(), grant(**kw))
    return event


def revoked() -> IdentityRevoked:
    [event] = decide(facts_after(granted()), revoke())
    return event


# -- granting --------------------------------------------------------------------------------


def test_staff_granted_in_their_community_and_the_event_lives_there():
    event = granted()
    assert event == IdentityGranted(
        community=NANGONG, identity="li-wei", role="staff", scope=NANGONG, acts_in=NANGONG, compound=None,
        grants=[], public_key=KEY, granted_at=AT, granted_by=OPERATOR)
    assert target_stream(grant()) == identity_stream("li-wei") == "identity:li-wei"


@pytest.mark.parametrize("fields", [
    {"identity": "arrivals-app", "role": "city-system", "scope": "city",
     "grants": ["cmd:registry.register_arrival", "qry:rollup"]},
    {"identity": "wang-fang", "role": "officer", "scope": "changning.chengjiaqiao"},
    {"identity": "admin", "role": "operator"},
])
def test_an_identity_acting_in_no_community_is_recorded_under_the_reserved_path(fields):
    event = granted(**fields)
    assert event.community == ACCESS_COMMUNITY and event.acts_in is None
    assert check_community(ACCESS_COMMUNITY)  # a path every subject and table accepts


def test_an_officer_given_a_community_is_recorded_in_it():
    event = granted(identity="wang-fang", role="officer", scope="changning.chengjiaqiao", community=NANGONG)
    assert (event.community, event.scope, event.acts_in) == (NANGONG, "changning.chengjiaqiao", NANGONG)


def test_a_gate_device_is_recorded_with_its_compound():
    event = granted(identity="nangong-east", role="gate", scope=NANGONG, compound="nangong-1")
    assert (event.community, event.compound) == (NANGONG, "nangong-1")


def test_a_name_granted_again_with_another_key_is_identity_taken():
    with pytest.raises(Rejected) as refused:
        decide(facts_after(granted()), grant(public_key=OTHER_KEY))
    assert refused.value.reason == "identity_taken" and "revoke" in refused.value.message


def test_the_same_grant_again_under_a_new_command_id_is_already_granted():
    with pytest.raises(Rejected) as refused:
        decide(facts_after(granted()), grant(command_id="g-2"))
    assert refused.value.reason == "already_granted"


def test_a_key_another_identity_holds_is_never_granted_again():
    with pytest.raises(Rejected) as refused:
        decide(Facts(key_holder="zhao-lei"), grant())
    assert refused.value.reason == "key_taken" and "zhao-lei" in refused.value.message


# -- revoking --------------------------------------------------------------------------------


def test_revoking_names_the_key_and_stays_in_the_identitys_community():
    assert revoked() == IdentityRevoked(community=NANGONG, identity="li-wei", public_key=KEY, reason=None,
                                        revoked_at=AT, revoked_by=OPERATOR)
    state = replay([granted(), revoked()])
    assert isinstance(state, Grant) and state.revoked and state.keys == (KEY,)


def test_revoking_twice_is_already_revoked():
    with pytest.raises(Rejected) as refused:
        decide(facts_after(granted(), revoked()), revoke(command_id="r-2"))
    assert refused.value.reason == "already_revoked"


def test_revoking_a_name_never_granted_is_not_found():
    with pytest.raises(NotFound) as missing:
        decide(Facts(), revoke())
    assert missing.value.field == "identity"


def test_after_a_revocation_the_name_is_granted_again_with_a_new_key_never_the_old_one():
    history = (granted(), revoked())
    with pytest.raises(Rejected) as refused:
        decide(facts_after(*history), grant(command_id="g-2"))
    assert refused.value.reason == "key_taken"
    [again] = decide(facts_after(*history), grant(command_id="g-3", public_key=OTHER_KEY))
    assert replay([*history, again]).keys == (KEY, OTHER_KEY)


# -- on the wire -----------------------------------------------------------------------------


def test_a_grant_parses_from_json_with_optional_fields_left_out():
    cmd = parse("grant_identity", json.dumps({"command_id": "g-1", "actor": OPERATOR, "identity": "li-wei",
                                              "role": "staff", "scope": NANGONG, "public_key": KEY}).encode())
    assert (cmd.community, cmd.compound, cmd.grants) == (None, None, [])


@pytest.mark.parametrize("fields, field", [
    ({"identity": "Li Wei"}, "identity"),
    ({"role": "mayor"}, "role"),
    ({"scope": "changning"}, "scope"),  # a staff's scope is a community
    ({"role": "gate"}, "compound"),
    ({"role": "city-system", "scope": "city", "grants": ["everything"]}, "grants"),
    ({"role": "city-system", "scope": "city", "grants": ["evt", "evt"]}, "grants[1]"),
    ({"public_key": "AAAA"}, "public_key"),
    ({"public_key": KEY[:-1] + ("A" if KEY[-1] != "A" else "B")}, "public_key"),  # checksum
    ({"scope": "cordon.access.city"}, "scope"),  # the reserved district
])
def test_a_grant_that_describes_no_valid_identity_is_invalid_naming_the_field(fields, field):
    with pytest.raises(Invalid) as bad:
        grant(**fields)
    assert bad.value.field == field, bad.value.message


def test_a_real_nkeys_user_key_passes_the_check():
    seed = nkeys.encode_seed(bytes(range(32)), nkeys.PREFIX_BYTE_USER)
    key = nkeys.from_seed(seed).public_key.decode()
    assert check_user_key(key) == key


def test_no_compound_is_registered_under_the_reserved_district():
    with pytest.raises(Invalid) as bad:
        parse("register_compound", json.dumps({
            "command_id": "c-1", "actor": OPERATOR, "community": "cordon.access.city", "compound": "x",
            "name": "x", "buildings": ["b1"], "gates": ["g1"]}).encode())
    assert bad.value.field == "community" and "reserved" in bad.value.message
