"""Residents' personal data on real NATS and PostgreSQL: the one read path (``registry.contact``),
shown to staff of the resident's own community only and recorded every time; erasure by deleting
the resident's data key, which holds against a dump of the database taken *before* it.

Callers from the city's account are simulated with the ``Nats-Request-Info`` header, as in
tests/integration/test_jurisdiction_queries.py (see tests/support/identities.py)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid

import asyncpg
import pytest

from services.ops import pgtools
from services.audit.app import spec as audit_spec
from services.registry.app import spec
from services.registry.keys import KeyStore
from shared import pii
from shared.embedded import ensure_database
from shared.identity import Identity
from tests.support.bus import connect
from tests.support.cordon import COMMUNITY, eventually, prc_id, read_stream, running
from tests.support.identities import BEIXIN, As, forbidden

pytestmark = pytest.mark.integration

LI_WEI = Identity(name="li-wei", role="staff", scope=COMMUNITY)
ZHAO_MIN = Identity(name="zhao-min", role="staff", scope=BEIXIN)
OFFICER = Identity(name="wang-fang", role="officer", scope="changning.chengjiaqiao")
CITY_SYSTEM = Identity(name="hotline", role="city-system", grants=("qry:registry.contact",))
WHY = "welfare check: the delivery went unanswered"


@pytest.fixture
async def registry(nats_url, pg_dsn):
    async with running(spec(), nats_url, pg_dsn) as host:
        nc = await connect(nats_url)
        yield host, nc
        await nc.close()


async def _household_of_two(nc) -> tuple[str, str, str]:
    """A compound in COMMUNITY, a household, two residents (one with a phone): ids."""
    operator = As(nc, None)
    await operator.ok("registry", "register_compound", community=COMMUNITY, compound="nangong-1", name="南宫小区",
                      buildings=["b1"], gates=["g1"])
    reply = await operator.ok("registry", "register_household", community=COMMUNITY, compound="nangong-1",
                              building="b1", address="b1 room 301")
    household = reply["events"][0]["data"]["household"]
    first = await operator.ok("registry", "register_resident", household=household, name="王小伟",
                              id_number=prc_id(901), phone="+8613800000001", birth_year=1940)
    second = await operator.ok("registry", "register_resident", household=household, name="李秀英",
                               id_number=prc_id(902), birth_year=1945)
    return household, first["events"][0]["data"]["resident"], second["events"][0]["data"]["resident"]


async def _views_recorded(pg_dsn: str) -> list:
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT envelope FROM registry.events WHERE type = 'PersonalDataViewed' "
                                "ORDER BY position")
        return [json.loads(r["envelope"]) for r in rows]
    finally:
        await conn.close()


async def test_staff_of_the_community_read_contacts_and_every_read_is_one_recorded_event(registry, pg_dsn,
                                                                                         nats_url):
    _, nc = registry
    household, wang, li = await _household_of_two(nc)
    staff = As(nc, LI_WEI)
    # when staff of the residents' community ask for one resident, with a purpose
    reply = await staff.query("registry.contact", resident=wang, purpose=WHY)
    # then they see the name and phone
    assert reply["ok"], reply
    assert reply["contacts"] == [{"resident": wang, "household": household, "address": "b1 room 301",
                                  "name": "王小伟", "phone": "+8613800000001", "birth_year": 1940, "erased": False}]
    # and the read is on the record: who, whose, why — never what was shown
    [viewed] = await _views_recorded(pg_dsn)
    assert viewed["actor"] == "staff:li-wei" and viewed["community"] == COMMUNITY
    data = viewed["data"]
    assert {k: data[k] for k in ("viewer", "subject", "subject_kind", "residents", "resident", "purpose")} == {
        "viewer": "staff:li-wei", "subject": wang, "subject_kind": "resident", "residents": [wang],
        "resident": wang, "purpose": WHY}
    # when they ask for the household: both residents, one more event
    reply = await staff.query("registry.contact", household=household, purpose=WHY)
    assert [(c["name"], c["phone"]) for c in reply["contacts"]] == [("王小伟", "+8613800000001"), ("李秀英", None)]
    views = await _views_recorded(pg_dsn)
    assert len(views) == 2 and views[1]["data"]["residents"] == [wang, li] and views[1]["data"]["resident"] is None
    # and each read went out on the stream (the audit log and the feeds see it), without the data
    msgs = await read_stream(nats_url, expect=2, subjects=f"cordon.evt.{COMMUNITY}.registry.PersonalDataViewed")
    assert len(msgs) == 2
    assert all("王小伟" not in m.data.decode() and "13800000001" not in m.data.decode() for m in msgs)


async def test_anyone_but_the_communitys_staff_is_refused_and_nothing_is_recorded(registry, pg_dsn):
    _, nc = registry
    household, wang, _ = await _household_of_two(nc)
    # another community's staff, the street's officer, a city system granted the query, Cordon inside
    forbidden(await As(nc, ZHAO_MIN).query("registry.contact", resident=wang, purpose=WHY), COMMUNITY)
    forbidden(await As(nc, OFFICER).query("registry.contact", household=household, purpose=WHY), "staff")
    forbidden(await As(nc, CITY_SYSTEM).query("registry.contact", resident=wang, purpose=WHY), "staff")
    forbidden(await As(nc, None).query("registry.contact", resident=wang, purpose=WHY), "inside Cordon")
    # a read without a reason is not a read
    reply = await As(nc, LI_WEI).query("registry.contact", resident=wang, purpose="x")
    assert reply["error"]["code"] == "invalid" and reply["error"]["field"] == "purpose"
    assert await _views_recorded(pg_dsn) == []


async def test_nothing_is_shown_when_the_read_cannot_be_recorded(registry, pg_dsn):
    _, nc = registry
    _, wang, _ = await _household_of_two(nc)
    # given the registry's record refuses the read's event (as a full disk or a lost database would)
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("""
        CREATE FUNCTION refuse_reads() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN IF NEW.type = 'PersonalDataViewed' THEN RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END $$;
        CREATE TRIGGER refuse_reads BEFORE INSERT ON registry.events FOR EACH ROW EXECUTE FUNCTION refuse_reads();
    """)
    await conn.close()
    # when staff ask: no name, no phone, an error that says why
    reply = await As(nc, LI_WEI).query("registry.contact", resident=wang, purpose=WHY)
    assert not reply["ok"] and reply["error"]["code"] == "unavailable", reply
    assert "王小伟" not in str(reply) and "13800000001" not in str(reply)


async def _dump(pg_dsn: str, out) -> None:
    proc = await asyncio.create_subprocess_exec(pgtools.binary("pg_dump"), "--format=custom", "--compress=0",
                                                "--file", str(out), pg_dsn)
    assert await proc.wait() == 0


async def _restore(server_dsn: str, dump) -> str:
    dsn = await ensure_database(server_dsn, f"test_{uuid.uuid4().hex[:16]}")
    proc = await asyncio.create_subprocess_exec(pgtools.binary("pg_restore"), "--no-owner", "--dbname", dsn,
                                                str(dump))
    assert await proc.wait() == 0
    return dsn


async def test_an_erasure_holds_against_a_dump_taken_before_it(nats_url, pg_dsn, pg_server, tmp_path):
    keys_dsn = pg_dsn + "_keys"
    async with running(spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        household, wang, li = await _household_of_two(nc)
        # given a dump of the whole database taken while both residents are registered
        dump = tmp_path / "before.pgdump"
        await _dump(pg_dsn, dump)
        # the dump holds their personal data sealed only: no name, ID number or phone in clear
        raw = dump.read_bytes()
        for clear in ("王小伟", prc_id(901), "13800000001", "李秀英", prc_id(902)):
            assert clear.encode() not in raw
        # when an operator erases Wang on a legal basis
        reply = await As(nc, None).ok("registry", "erase_resident", resident=wang,
                                      legal_basis="PIPL art. 47: the person withdrew consent")
        assert reply["events"][0]["type"] == "ResidentErased"
        # then the live registry shows nothing of him, and Li as before
        contacts = (await As(nc, LI_WEI).query("registry.contact", household=household, purpose=WHY))["contacts"]
        assert [(c["name"], c["phone"], c["erased"]) for c in contacts] == [
            (None, None, True), ("李秀英", None, False)]
        await nc.close()
    # when the dump of before is restored into a new database and a registry runs on it, with the
    # key database (the keys never were in the dump)
    restored = await _restore(pg_server.dsn, dump)
    keys = KeyStore(pii.from_env(os.environ), keys_dsn)
    async with running(spec(keys=keys), nats_url, restored):
        nc = await connect(nats_url)
        contacts = (await As(nc, LI_WEI).query("registry.contact", household=household, purpose=WHY))["contacts"]
        await nc.close()
    # then Wang's sealed data, back from the dump, opens with nothing: erased; Li's still opens
    assert [(c["resident"], c["name"], c["phone"], c["erased"]) for c in contacts] == [
        (wang, None, None, True), (li, "李秀英", None, False)]
    # and no key for him exists anywhere to open the copy: not in the dump, not in the key database
    conn = await asyncpg.connect(restored)
    sealed = await conn.fetchval("SELECT personal FROM registry.residents WHERE resident = $1", wang)
    assert sealed is not None  # the copy of before still holds his ciphertext...
    assert not await conn.fetchval("SELECT count(*) FROM pg_tables WHERE tablename = 'data_keys'")
    await conn.close()
    kconn = await asyncpg.connect(keys_dsn)
    assert await kconn.fetchval("SELECT count(*) FROM registry.data_keys WHERE subject = $1", wang) == 0
    assert await kconn.fetchval("SELECT legal_basis FROM registry.erasures WHERE subject = $1", wang)
    await kconn.close()
    with contextlib.suppress(Exception):
        admin = await asyncpg.connect(pg_server.dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{restored.rsplit("/", 1)[1]}" WITH (FORCE)')
        await admin.execute(f'DROP DATABASE IF EXISTS "{restored.rsplit("/", 1)[1]}_keys" WITH (FORCE)')
        await admin.close()


async def test_a_households_address_is_shredded_with_its_last_resident(registry, pg_dsn):
    # given a household of two, its address sealed with a key of its own
    _, nc = registry
    household, wang, li = await _household_of_two(nc)
    staff, operator = As(nc, LI_WEI), As(nc, None)
    conn = await asyncpg.connect(pg_dsn)
    sealed = await conn.fetchval("SELECT sealed FROM registry.households WHERE household = $1", household)
    assert sealed and b"room 301" not in sealed
    # when the first of them is erased, the address stays: Li still lives there
    await operator.ok("registry", "erase_resident", resident=wang, legal_basis="PIPL art. 47: consent withdrawn")
    contacts = (await staff.query("registry.contact", household=household, purpose=WHY))["contacts"]
    assert [(c["erased"], c["address"]) for c in contacts] == [(True, "b1 room 301"), (False, "b1 room 301")]
    # when the last is erased: the household's key goes too, so the address opens nowhere any more
    await operator.ok("registry", "erase_resident", resident=li, legal_basis="PIPL art. 47: consent withdrawn")
    contacts = (await staff.query("registry.contact", household=household, purpose=WHY))["contacts"]
    assert [(c["erased"], c["address"]) for c in contacts] == [(True, None), (True, None)]
    assert await conn.fetchval("SELECT sealed FROM registry.households WHERE household = $1", household) is None
    keys = await asyncpg.connect(pg_dsn + "_keys")
    assert await keys.fetchval("SELECT count(*) FROM registry.data_keys WHERE subject = $1",
                               f"household:{household}") == 0
    await keys.close()
    await conn.close()


async def test_a_registry_of_before_has_its_plaintext_sealed_when_it_starts(nats_url, pg_dsn):
    # given a registry of before: a resident in clear in registry.residents (and their household's events)
    async with running(spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        household, wang, li = await _household_of_two(nc)
        await nc.close()
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("""
        ALTER TABLE registry.residents ADD COLUMN name text, ADD COLUMN id_number text UNIQUE, ADD COLUMN phone text;
        UPDATE registry.residents SET personal = NULL, id_hash = NULL, name = '王小伟', id_number = $1,
            phone = '+8613800000001' WHERE resident = $2;
    """.replace("$1", f"'{prc_id(901)}'").replace("$2", f"'{wang}'"))
    keys = await asyncpg.connect(pg_dsn + "_keys")
    await keys.execute("DELETE FROM registry.data_keys WHERE subject = $1", wang)
    await keys.close()
    # when the registry starts
    async with running(spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        columns = await eventually(lambda: _without_plaintext(conn), what="plaintext columns dropped")
        # then the row is sealed, the columns in clear are gone, and the read path opens it
        assert "name" not in columns and "id_number" not in columns and "phone" not in columns
        reply = await As(nc, LI_WEI).query("registry.contact", resident=wang, purpose=WHY)
        assert (reply["contacts"][0]["name"], reply["contacts"][0]["phone"]) == ("王小伟", "+8613800000001")
        # and its ID number is still known as taken
        again = await As(nc, None).command("registry", "register_resident", household=household, name="王小伟",
                                           id_number=prc_id(901), birth_year=1940)
        assert again["error"]["field"] == "id_number", again
        await nc.close()
    await conn.close()


async def _without_plaintext(conn) -> set[str] | None:
    columns = {r["column_name"] for r in await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'registry' "
        "AND table_name = 'residents'")}
    return columns if "id_number" not in columns else None


async def test_a_master_key_rotation_rewraps_every_key_and_then_the_old_key_can_go(nats_url, pg_dsn):
    old, new = os.urandom(32), os.urandom(32)
    keys_dsn = pg_dsn + "_keys"
    # given residents registered under the old master key (the key database made beside the Cordon one)
    async with running(spec(keys=KeyStore(pii.Keyring.of(old))), nats_url, pg_dsn):
        nc = await connect(nats_url)
        household, wang, _ = await _household_of_two(nc)
        await nc.close()
    # when the registry starts with the new key first and the old one still accepted
    kconn = await asyncpg.connect(keys_dsn)
    async with running(spec(keys=KeyStore(pii.Keyring.of(new, old), keys_dsn)), nats_url, pg_dsn):
        # then every key (the residents' and the blind index's) is re-wrapped by the new one
        await eventually(lambda: kconn.fetchval("SELECT bool_and(key_id = $1) FROM registry.data_keys",
                                                pii.key_id(new)), what="every key re-wrapped")
    assert await kconn.fetchval("SELECT count(*) FROM registry.data_keys") == 4  # two residents, their household, the blind index
    await kconn.close()
    # and with the old key gone, the contacts still open and a taken ID number is still taken
    async with running(spec(keys=KeyStore(pii.Keyring.of(new), keys_dsn)), nats_url, pg_dsn):
        nc = await connect(nats_url)
        reply = await As(nc, LI_WEI).query("registry.contact", resident=wang, purpose=WHY)
        assert reply["contacts"][0]["name"] == "王小伟", reply
        again = await As(nc, None).command("registry", "register_resident", household=household, name="王小伟",
                                           id_number=prc_id(901), birth_year=1940)
        assert again["error"]["field"] == "id_number", again
        await nc.close()


async def test_without_its_key_database_the_registry_registers_no_one_and_says_why(nats_url, pg_dsn):
    # given a registry whose key database cannot be reached
    nowhere = pg_dsn.rsplit("/", 1)[0] + "/no_such_keys_database"
    async with running(spec(keys=KeyStore(pii.Keyring.of(os.urandom(32)), nowhere)), nats_url, pg_dsn):
        nc = await connect(nats_url)
        operator = As(nc, None)
        await operator.ok("registry", "register_compound", community=COMMUNITY, compound="nangong-1", name="南宫",
                          buildings=["b1"], gates=["g1"])
        # when a household (its address is sealed too) and a resident are registered: each refused as
        # unavailable, naming the key store; nothing written
        reply = await operator.command("registry", "register_household", community=COMMUNITY, compound="nangong-1",
                                       building="b1", address="b1 room 301")
        assert reply["error"]["code"] == "unavailable" and "key store" in reply["error"]["message"], reply
        reply = await operator.command("registry", "register_resident", household=str(uuid.uuid4()),
                                       name="王小伟", id_number=prc_id(903), birth_year=1940)
        assert reply["error"]["code"] == "unavailable" and "key store" in reply["error"]["message"], reply
        await nc.close()
    conn = await asyncpg.connect(pg_dsn)
    assert await conn.fetchval("SELECT count(*) FROM registry.residents") == 0
    assert await conn.fetchval("SELECT count(*) FROM registry.households") == 0
    await conn.close()


async def test_the_audit_log_finds_the_reads_of_a_resident(nats_url, pg_dsn):
    # given the registry and the audit log running, and staff reading Wang, then his household
    async with running(spec(), nats_url, pg_dsn), running(audit_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        household, wang, _ = await _household_of_two(nc)
        staff = As(nc, LI_WEI)
        await staff.query("registry.contact", resident=wang, purpose=WHY)
        await staff.query("registry.contact", household=household, purpose=WHY)
        # when the operators ask the audit log for the reads
        reads = lambda: As(nc, None).query("audit", type="PersonalDataViewed")  # noqa: E731
        rows = (await eventually(lambda: _when(reads(), lambda r: len(r["rows"]) == 2), what="audited"))["rows"]
        # then both reads are there, by whom and why; the one of Wang alone is found by his id
        assert [r["envelope"]["data"]["purpose"] for r in rows] == [WHY, WHY]
        assert {r["actor"] for r in rows} == {"staff:li-wei"}
        by_resident = await As(nc, None).query("audit", type="PersonalDataViewed", resident=wang)
        assert [r["envelope"]["data"]["subject"] for r in by_resident["rows"]] == [wang]
        await nc.close()


async def _when(reply, holds):
    answer = await reply
    return answer if holds(answer) else None
