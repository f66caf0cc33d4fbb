"""Identities are recorded by the registry, from inside Cordon only, and audited: a story of
grants and revocations with the real registry, views and audit log on real NATS and PostgreSQL.

A caller from the city's account is simulated by the ``Nats-Request-Info`` header that nats-server
stamps on its requests (tests/support/identities.py); minting keys and pushing revocations to NATS
are tested where the NATS side is."""
from __future__ import annotations

import contextlib

import asyncpg
import pytest

from services.audit.app import spec as audit_spec
from services.registry.app import spec as registry_spec
from services.views.app import spec as views_spec
from shared.contracts.registry import ACCESS_COMMUNITY
from shared.identity import Identity
from shared.subjects import STREAM
from tests.support.cordon import eventually, running
from tests.support.bus import connect
from tests.support.identities import As, NANGONG, forbidden, user_key

pytestmark = pytest.mark.integration

LI_WEI = Identity(name="li-wei", role="staff", scope=NANGONG)


K1, K2, K3 = user_key(1), user_key(2), user_key(3)


@pytest.fixture
async def cordon(nats_url, pg_dsn):
    async with contextlib.AsyncExitStack() as stack:
        for spec in (registry_spec, views_spec, audit_spec):
            await stack.enter_async_context(running(spec(), nats_url, pg_dsn))
        nc = await connect(nats_url)
        stack.push_async_callback(nc.close)
        db = await asyncpg.connect(pg_dsn)
        stack.push_async_callback(db.close)
        yield nc, db


def rejected(reply: dict, reason: str) -> None:
    assert not reply["ok"] and reply["error"]["reason"] == reason, reply


async def published(nc, db) -> int:
    """The stream's last sequence once the registry's outbox is empty."""
    await eventually(lambda: db.fetchval("SELECT count(*) = 0 FROM registry.outbox"), what="outbox empty")
    return (await nc.jetstream().stream_info(STREAM)).state.last_seq


async def recorded(db) -> tuple:
    return tuple([await db.fetchval(f"SELECT count(*) FROM registry.{t}") for t in ("events", "commands", "identities")])


async def test_identities_are_granted_and_revoked_from_inside_cordon_and_audited(cordon):
    nc, db = cordon
    operator = As(nc, None)  # an operator's credentials: the CORDON account, no header
    # Given li-wei, staff of Nangong, and the city's arrivals app, granted by the operators
    staff = await operator.ok("registry", "grant_identity", identity="li-wei", role="staff", scope=NANGONG,
                              public_key=K1)
    app = await operator.ok("registry", "grant_identity", identity="arrivals-app", role="city-system",
                            grants=["cmd:registry.register_arrival", "evt"], public_key=K2)
    [granted] = staff["events"]
    assert (granted["type"], granted["community"], granted["stream_id"], granted["actor"]) == (
        "IdentityGranted", NANGONG, "identity:li-wei", "operator:admin")
    assert app["events"][0]["community"] == ACCESS_COMMUNITY
    # When the name is granted again with another key: identity_taken, nothing written
    before = await recorded(db)
    rejected(await operator.command("registry", "grant_identity", identity="li-wei", role="staff", scope=NANGONG,
                                    public_key=K3), "identity_taken")
    assert await recorded(db) == before

    # Then the register lists them, for `cordon identity list` and the revocation list
    listed = (await operator.query("registry.identities"))["identities"]
    assert [(i["name"], i["role"], i["scope"], i["community"], i["public_key"], i["revoked_at"]) for i in listed] == [
        ("li-wei", "staff", NANGONG, NANGONG, K1, None), ("arrivals-app", "city-system", "city", None, K2, None)]
    assert listed[1]["grants"] == ["cmd:registry.register_arrival", "evt"]
    assert listed[0]["granted_by"] == "operator:admin" and listed[0]["granted_at"]

    # When li-wei's key is revoked (her phone was lost), then revoked again: already_revoked
    revoked = await operator.ok("registry", "revoke_identity", identity="li-wei", reason="phone lost")
    assert revoked["events"][0]["data"]["public_key"] == K1
    rejected(await operator.command("registry", "revoke_identity", identity="li-wei"), "already_revoked")
    # And she is granted again with a new key; her old key is never granted again, to anyone
    await operator.ok("registry", "grant_identity", identity="li-wei", role="staff", scope=NANGONG, public_key=K3)
    rejected(await operator.command("registry", "grant_identity", identity="li-wei-2", role="staff", scope=NANGONG,
                                    public_key=K1), "key_taken")
    listed = (await operator.query("registry.identities"))["identities"]
    assert [(i["name"], i["public_key"], i["revoked_at"] is not None, i["reason"]) for i in listed] == [
        ("li-wei", K1, True, "phone lost"), ("arrivals-app", K2, False, None), ("li-wei", K3, False, None)]

    # And every grant and revocation is in the audit log, the city-wide ones under the reserved path
    last = await published(nc, db)
    await eventually(lambda: db.fetchval("SELECT hwm >= $1 FROM audit.head", last), what="audit")
    audited = (await operator.query("audit", actor="operator:admin"))["rows"]
    assert [r["type"] for r in audited] == ["IdentityGranted", "IdentityGranted", "IdentityRevoked",
                                            "IdentityGranted"]
    assert [r["stream_id"] for r in (await operator.query("audit", community="cordon"))["rows"]] == [
        "identity:arrivals-app"]


async def test_the_views_let_identity_events_pass_without_a_community_or_a_complaint(cordon):
    nc, db = cordon
    operator = As(nc, None)
    await operator.ok("registry", "grant_identity", identity="admin-2", role="operator", public_key=K1)
    await operator.ok("registry", "grant_identity", identity="li-wei", role="staff", scope=NANGONG, public_key=K2)
    await operator.ok("registry", "revoke_identity", identity="li-wei")
    assert await published(nc, db) == 3
    generation = await eventually(lambda: db.fetchval("SELECT generation FROM views.current"))
    await eventually(lambda: db.fetchval(f"SELECT hwm >= 3 FROM views_g{generation}.meta"), what="views")
    # applied (not undecodable, not counted as ignored), and no community appears for them
    assert tuple(await db.fetchrow(f"SELECT applied, undecodable FROM views_g{generation}.meta")) == (3, 0)
    assert await db.fetchval(f"SELECT count(*) FROM views_g{generation}.ignored") == 0
    assert await db.fetchval(f"SELECT count(*) FROM views_g{generation}.communities") == 0
    assert (await operator.query("rollup", scope="city"))["communities"] == 0
    health = (await operator.query("health"))["services"]["views"][0]
    assert health["ok"] and health["consumers"]["views"]["parked"] == 0, health


async def test_the_citys_identities_may_not_grant_revoke_or_list_identities(cordon):
    nc, db = cordon
    operator = As(nc, None)
    await operator.ok("registry", "grant_identity", identity="li-wei", role="staff", scope=NANGONG, public_key=K1)
    before = await recorded(db)
    li_wei = As(nc, LI_WEI)
    granting_app = As(nc, Identity(name="hr-app", role="city-system", grants=("cmd:registry.grant_identity",
                                                                              "cmd:registry.revoke_identity")))
    for caller, community in ((li_wei, NANGONG), (li_wei, None), (granting_app, None)):
        forbidden(await caller.command("registry", "grant_identity", community, actor=caller.actor,
                                       identity="zhao-lei", role="staff", scope=NANGONG, community=NANGONG,
                                       public_key=K2), "inside Cordon")
        forbidden(await caller.command("registry", "revoke_identity", community, actor=caller.actor,
                                       identity="li-wei"), "inside Cordon")
        forbidden(await caller.query("registry.identities"), "inside Cordon")
    assert await recorded(db) == before
    # the registry still serves the operators
    assert len((await operator.query("registry.identities"))["identities"]) == 1
