"""shared.auth: the permissions each role's user JWT carries, and the keys and JWTs the authority
mints (no server here: tests/integration/test_identities_on_the_bus.py puts them before one)."""
from __future__ import annotations

import base64
import stat

import nacl.signing
import pytest

from shared.auth import (CITY, CORDON, JS_PREFIX, SYS, Authority, account_of, decode_jwt, feed_name,
                         inbox_prefix, permissions)
from shared.identity import Identity

NANGONG = "changning.chengjiaqiao.nangong"
STREET = "changning.chengjiaqiao"


def feed(name: str, events: str) -> list[str]:
    return [f"JS.CORDON.API.CONSUMER.CREATE.CORDON.feed-{name}.{events}",
            f"JS.CORDON.API.CONSUMER.MSG.NEXT.CORDON.feed-{name}",
            f"$JS.ACK.CORDON.feed-{name}.>"]


# -- permissions, role by role ---------------------------------------------------------------------

def test_staff_send_their_communitys_commands_read_its_events_and_every_query():
    li_wei = Identity(name="li-wei", role="staff", scope=NANGONG)
    assert permissions(li_wei) == {
        "pub": {"allow": [f"cordon.cmd.*.*.{NANGONG}", "cordon.qry.>", *feed("li-wei", f"cordon.evt.{NANGONG}.>")]},
        "sub": {"allow": ["_INBOX.li-wei.>", f"cordon.evt.{NANGONG}.>"]},
    }


def test_an_officer_reads_the_whole_scope_and_commands_nowhere_without_a_community():
    zhao = Identity(name="zhao-lei", role="officer", scope=STREET)
    assert permissions(zhao) == {
        "pub": {"allow": ["cordon.qry.>", *feed("zhao-lei", f"cordon.evt.{STREET}.>")]},
        "sub": {"allow": ["_INBOX.zhao-lei.>", f"cordon.evt.{STREET}.>"]},
    }


def test_an_officer_with_a_community_also_commands_there():
    zhao = Identity(name="zhao-lei", role="officer", scope=STREET, community=NANGONG)
    assert permissions(zhao)["pub"]["allow"][0] == f"cordon.cmd.*.*.{NANGONG}"
    assert permissions(zhao)["sub"]["allow"] == ["_INBOX.zhao-lei.>", f"cordon.evt.{STREET}.>"]


def test_a_city_system_has_exactly_its_grants():
    app = Identity(name="city-app", role="city-system",
                   grants=("cmd:registry.register_arrival", "qry:rollup"))
    assert permissions(app) == {
        "pub": {"allow": ["cordon.cmd.registry.register_arrival", "cordon.cmd.registry.register_arrival.>",
                          "cordon.qry.rollup"]},
        "sub": {"allow": ["_INBOX.city-app.>"]},
    }


def test_a_city_system_granted_evt_reads_every_event_live_and_through_its_feed():
    board = Identity(name="city-board", role="city-system", grants=("evt",))
    assert permissions(board) == {
        "pub": {"allow": feed("city-board", "cordon.evt.>")},
        "sub": {"allow": ["_INBOX.city-board.>", "cordon.evt.>"]},
    }


def test_a_gate_may_only_check_passage_in_its_community():
    gate = Identity(name="gate-g1", role="gate", scope=NANGONG, compound="nangong-1")
    assert permissions(gate) == {
        "pub": {"allow": [f"cordon.cmd.checkpoint.check_passage.{NANGONG}"]},
        "sub": {"allow": ["_INBOX.gate-g1.>"]},
    }


@pytest.mark.parametrize("role", ["operator", "service"])
def test_operators_and_services_have_no_limits_in_the_cordon_account(role):
    inside = Identity(name="registry", role=role)
    assert permissions(inside) == {} and account_of(inside) == CORDON


def test_no_city_identity_may_reach_the_jetstream_api_but_through_its_own_feed():
    for identity in (Identity(name="li-wei", role="staff", scope=NANGONG),
                     Identity(name="zhao-lei", role="officer", scope=STREET, community=NANGONG),
                     Identity(name="city-board", role="city-system", grants=("evt", "qry:rollup")),
                     Identity(name="gate-g1", role="gate", scope=NANGONG, compound="nangong-1")):
        perms = permissions(identity)
        assert account_of(identity) == CITY
        assert perms["sub"]["allow"][0] == f"{inbox_prefix(identity)}.>"  # no one else's replies
        for subject in perms["pub"]["allow"] + perms["sub"]["allow"]:
            assert not subject.startswith("$JS.API") and subject != ">" and not subject.startswith("_INBOX.>")
            if subject.startswith((JS_PREFIX, "$JS.")):
                assert f".{feed_name(identity)}." in subject or subject.endswith(feed_name(identity))


# -- the authority's keys and JWTs ----------------------------------------------------------------

def verify(token: str, public_key: str) -> None:
    """The JWT is signed by the ed25519 key ``public_key`` (an nkey: prefix, 32 bytes, crc16)."""
    raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))[1:33]
    head, body, signature = token.split(".")
    nacl.signing.VerifyKey(raw).verify(f"{head}.{body}".encode(),
                                       base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))


def test_the_authority_creates_its_keys_once_private_to_its_owner(tmp_path):
    folder = tmp_path / "auth"
    first = Authority.open(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("operator.nk", "SYS.nk", "CORDON.nk", "CITY.nk"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    again = Authority.open(folder)
    assert [again.public_key(k) for k in ("operator", SYS, CORDON, CITY)] == \
        [first.public_key(k) for k in ("operator", SYS, CORDON, CITY)]
    assert first.public_key("operator").startswith("O") and first.public_key(CITY).startswith("A")
    admin = first.admin_creds()
    assert admin == again.admin_creds() and stat.S_IMODE(admin.stat().st_mode) == 0o600
    registry = first.service_creds("registry")
    assert registry.parent.name == "services" and stat.S_IMODE(registry.stat().st_mode) == 0o600


def test_account_jwts_have_explicit_limits_jetstream_for_cordon_and_the_citys_imports(tmp_path):
    authority = Authority.open(tmp_path)
    cordon, city = (decode_jwt(authority.mint_account(a))["nats"] for a in (CORDON, CITY))
    for account in (cordon, city):
        assert account["limits"]["conn"] == -1 and account["limits"]["subs"] == -1
    assert cordon["limits"]["disk_storage"] == -1 and "disk_storage" not in city["limits"]
    imports = {i["subject"]: i for i in city["imports"]}
    assert imports["cordon.cmd.>"]["share"] and imports["cordon.qry.>"]["share"]
    assert imports["cordon.evt.>"]["type"] == "stream"
    assert imports["$JS.API.CONSUMER.MSG.NEXT.CORDON.*"]["local_subject"] == \
        "JS.CORDON.API.CONSUMER.MSG.NEXT.CORDON.*"
    assert {i["account"] for i in city["imports"]} == {authority.public_key(CORDON)}
    assert {e["subject"] for e in cordon["exports"]} == set(imports)
    assert not any(s.startswith(("$JS.API.DIRECT", "$JS.API.STREAM")) or ".INFO." in s or ".DELETE." in s
                   for s in imports)
    revoked = decode_jwt(authority.mint_account(CITY, {"UABC": 1700000000}))["nats"]
    assert revoked["revocations"] == {"UABC": 1700000000}


def test_a_users_creds_are_fresh_each_time_signed_by_its_account_with_its_tags(tmp_path):
    authority = Authority.open(tmp_path)
    li_wei = Identity(name="li-wei", role="staff", scope=NANGONG)
    (key1, creds1), (key2, _) = authority.user_creds(li_wei), authority.user_creds(li_wei)
    assert key1 != key2 and key1.startswith("U")
    token = creds1.split("-----BEGIN NATS USER JWT-----\n")[1].split("\n")[0]
    claims = decode_jwt(token)
    assert claims["sub"] == key1 and claims["name"] == "li-wei" and claims["iss"] == authority.public_key(CITY)
    assert claims["nats"]["tags"] == li_wei.tags() and claims["nats"]["pub"] == permissions(li_wei)["pub"]
    verify(token, authority.public_key(CITY))
    verify(authority.account_jwt(CITY), authority.public_key("operator"))
    operator = decode_jwt(authority.operator_jwt())
    assert operator["nats"]["system_account"] == authority.public_key(SYS)
    verify(authority.operator_jwt(), authority.public_key("operator"))
    assert "BEGIN USER NKEY SEED-----\nSU" in creds1


def test_the_server_config_trusts_the_operator_and_preloads_the_latest_account_jwts(tmp_path):
    authority = Authority.open(tmp_path / "auth")
    text = authority.server_config(tmp_path / "js", tmp_path / "jwt", "127.0.0.1", 4333)
    assert 'listen: "127.0.0.1:4333"' in text and f'store_dir: "{tmp_path / "js"}"' in text
    assert f"system_account: {authority.public_key(SYS)}" in text
    assert "type: full" in text and f'dir: "{tmp_path / "jwt"}"' in text
    for account in (SYS, CORDON, CITY):
        assert f"{authority.public_key(account)}: {authority.account_jwt(account)}" in text
    assert authority.account_jwt(CITY) == Authority.open(tmp_path / "auth").account_jwt(CITY)  # kept
