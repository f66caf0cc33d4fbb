"""The registry end to end on real NATS and PostgreSQL: command → reply → event on JetStream."""
from __future__ import annotations

import asyncio
import json
import os

import asyncpg
import pytest

from services.registry.app import spec
from shared import pii
from tests.support.bus import connect
from tests.support.cordon import COMMUNITY, Client, community, household, prc_id, read_stream, resident, running

pytestmark = pytest.mark.integration

ENVELOPE_FIELDS = {"event_id", "type", "schema", "stream_id", "stream_version", "community", "occurred_at",
                   "recorded_at", "actor", "correlation_id", "causation_id", "data"}


@pytest.fixture
async def client(nats_url, pg_dsn):
    async with running(spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        yield Client(nc)
        await nc.close()


async def test_a_command_is_answered_and_its_event_published_with_the_full_envelope(client, nats_url):
    reply = await client.send("register_compound", command_id="c-1", actor="staff:li-wei",
                              community=COMMUNITY, compound="nangong-1", name="南宫小区",
                              buildings=["b1", "b2"], gates=["g1", "g2"])
    assert reply["ok"] is True
    assert reply["stream_id"] == f"compound:{COMMUNITY}:nangong-1"
    assert reply["version"] == 1
    [event] = reply["events"]
    assert set(event) == ENVELOPE_FIELDS
    assert event["type"] == "CompoundRegistered" and event["actor"] == "staff:li-wei"
    assert event["causation_id"] == "c-1"

    [msg] = await read_stream(nats_url, expect=1)
    assert msg.subject == f"cordon.evt.{COMMUNITY}.registry.CompoundRegistered"
    assert msg.headers["Nats-Msg-Id"] == event["event_id"]
    assert json.loads(msg.data) == event


async def test_a_repeated_command_id_returns_the_first_reply_and_writes_nothing(client, nats_url, pg_dsn):
    fields = dict(command_id="same", community=COMMUNITY, compound="nangong-1", name="南宫小区",
                  buildings=["b1"], gates=["g1"])
    first = await client.send("register_compound", **fields)
    second = await client.send("register_compound", **fields)
    assert first == second and first["ok"]
    conn = await asyncpg.connect(pg_dsn)
    assert await conn.fetchval("SELECT count(*) FROM registry.events") == 1
    await conn.close()
    assert len(await read_stream(nats_url, expect=2, timeout=1.0)) == 1


async def test_personal_data_stays_in_the_registry_tables(client, nats_url, pg_dsn):
    await community(client)
    h = await household(client)
    reply = await client.ok("register_resident", household=h, name="王小伟", id_number=prc_id(77),
                            phone="+8613800000000", birth_year=1940, vulnerabilities=["elderly_alone"])
    data = reply["events"][0]["data"]
    assert data["display_name"] == "王*伟"
    msgs = await read_stream(nats_url, expect=3)
    for msg in msgs:
        assert "王小伟" not in msg.data.decode() and prc_id(77) not in msg.data.decode()
        assert "13800000000" not in msg.data.decode()
    # and at rest they are sealed: nothing of them in the registry's database in clear
    conn = await asyncpg.connect(pg_dsn)
    row = await conn.fetchrow("SELECT * FROM registry.residents")
    await conn.close()
    assert set(row.keys()) == {"resident", "household", "community", "personal", "id_hash", "registered_at",
                               "erased_at", "moved_out_at"}  # (when they moved out: on the bus already)
    for clear in ("王小伟".encode(), prc_id(77).encode(), b"13800000000"):
        assert clear not in row["personal"] and clear.decode() != row["id_hash"]
    # but open with the resident's data key from the key database
    keys = await asyncpg.connect(pg_dsn + "_keys")
    wrapped = await keys.fetchrow("SELECT wrapped, key_id FROM registry.data_keys WHERE subject = $1", data["resident"])
    await keys.close()
    ring = pii.from_env(os.environ)
    data_key = ring.unwrap(data["resident"], pii.Wrapped(wrapped["key_id"], wrapped["wrapped"]))
    assert json.loads(pii.unseal(data_key, data["resident"], row["personal"])) == {
        "name": "王小伟", "id_number": prc_id(77), "phone": "+8613800000000", "birth_year": 1940}


async def test_an_arrival_story_class_a_verified_into_home_quarantine(client, nats_url):
    await community(client)
    r = await resident(client, await household(client))
    reg = await client.ok("register_arrival", resident=r, origin="Wuhan", arrived_on="2020-02-01",
                          transport={"kind": "train", "number": "G1722"},
                          visited=[{"place": "Wuhan", "from": "2020-01-20", "to": "2020-01-31"}],
                          city_class="A", risk_area_visited=True)
    assert reg["events"][0]["data"]["requires_verification"] is True
    arrival = reg["events"][0]["data"]["arrival"]
    ver = await client.ok("verify_arrival", arrival=arrival, outcome="home_quarantine", documents_checked=True)
    assert ver["version"] == 2
    assert ver["events"][0]["subject" if False else "type"] == "ArrivalVerified"
    subjects = [m.subject.rsplit(".", 1)[1] for m in await read_stream(nats_url, expect=5)]
    assert subjects == ["CompoundRegistered", "HouseholdRegistered", "ResidentRegistered",
                        "ArrivalRegistered", "ArrivalVerified"]


async def test_two_concurrent_commands_at_the_same_expected_version_one_wins(client):
    await community(client)
    r = await resident(client, await household(client))
    reg = await client.ok("register_arrival", resident=r, origin="Wuhan", arrived_on="2020-02-01",
                          transport={"kind": "train"}, visited=[], city_class="A", risk_area_visited=True)
    arrival = reg["events"][0]["data"]["arrival"]
    replies = await asyncio.gather(*[
        client.send("verify_arrival", arrival=arrival, outcome=outcome, documents_checked=True,
                    expected_version=1)
        for outcome in ("home_quarantine", "centralized_quarantine")
    ])
    assert sorted(r["ok"] for r in replies) == [False, True]
    [loser] = [r for r in replies if not r["ok"]]
    assert loser["error"]["code"] == "conflict"


async def test_one_id_number_sent_twice_at_once_registers_one_resident(client, pg_dsn):
    # In one batch the second sees the first's claim in the scratch; in two, in registry.residents.
    await community(client)
    h = await household(client)
    replies = await asyncio.gather(*[
        client.send("register_resident", household=h, name=name, id_number=prc_id(78), birth_year=1950)
        for name in ("王小伟", "王小卫")
    ])
    assert sorted(r["ok"] for r in replies) == [False, True]
    [loser] = [r for r in replies if not r["ok"]]
    assert loser["error"]["code"] == "conflict" and loser["error"]["field"] == "id_number"
    assert "already registered" in loser["error"]["message"]
    conn = await asyncpg.connect(pg_dsn)
    assert await conn.fetchval("SELECT count(*) FROM registry.residents") == 1
    await conn.close()


async def test_an_unknown_reference_is_not_found_and_writes_nothing(client, pg_dsn):
    reply = await client.send("register_household", community=COMMUNITY, compound="nowhere",
                              building="b1", address="x")
    assert reply["ok"] is False and reply["error"]["code"] == "not_found"
    assert reply["error"]["field"] == "compound"
    conn = await asyncpg.connect(pg_dsn)
    assert await conn.fetchval("SELECT count(*) FROM registry.events") == 0
    await conn.close()
