"""Visitors' personal data on real NATS and PostgreSQL (issue 16): a visitor's name, phone and
purpose sealed with a data key of the visit's own, in the checkpoint's schema of the key database;
read back through ``checkpoint.visitor_contact`` by staff of the visited community only, only within
the tracing window, each read recorded first; shredded by the daily retention once the window is
over, counts on the record, nothing twice.

Time is the checkpoint's injected clock (days of tests/support/quarantine.py: day 1 is 2026-11-02);
callers from the city's account are simulated with the ``Nats-Request-Info`` header
(tests/support/identities.py)."""
from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import pytest

from services.checkpoint.app import spec as checkpoint_spec
from services.checkpoint.config import Config
from services.checkpoint.scheduler import Retention
from services.ops import pgtools
from services.registry.app import spec as registry_spec
from shared import pii
from shared.identity import Identity
from shared.keystore import KeyStore
from shared.service import ServiceHost
from tests.support.bus import connect
from tests.support.cordon import eventually, prc_id, read_stream, running
from tests.support.identities import BEIXIN, NANGONG, As, forbidden
from tests.support.quarantine import Clock, at

pytestmark = pytest.mark.integration

LI_WEI = Identity(name="li-wei", role="staff", scope=NANGONG)
ZHAO_MIN = Identity(name="zhao-min", role="staff", scope=BEIXIN)
OFFICER = Identity(name="wang-fang", role="officer", scope="changning.chengjiaqiao")
WHY = "tracing: a case was confirmed in building b1"
#: Quick ticks: the retention looks at the (injected) clock often, and acts once a day.
SETTINGS = Config(retention_interval_s=0.05)


@dataclass
class Gate:
    host: ServiceHost
    nc: object
    db: asyncpg.Connection
    clock: Clock
    pg_dsn: str
    households: dict[str, str]  # community -> a household there

    async def visit(self, when: datetime, community: str = NANGONG, name: str = "张三丰",
                    phone: str = "13800001111", purpose: str = "送药给外婆") -> str:
        """A visitor let in at ``when`` (the level is open: visitors are admitted); the passage id."""
        compound = f"{community.rsplit('.', 1)[1]}-1"
        reply = await As(self.nc, None).ok(
            "checkpoint", "check_passage", community=community, compound=compound, gate="g1", direction="in",
            temperature_c=36.5, occurred_at=when.isoformat(),
            visitor={"name": name, "phone": phone, "host_household": self.households[community], "purpose": purpose})
        assert reply["decision"]["allowed"], reply
        return reply["passage"]

    async def reads_recorded(self) -> list[dict]:
        rows = await self.db.fetch("SELECT envelope FROM checkpoint.events WHERE type = 'VisitorContactViewed' "
                                   "ORDER BY position")
        return [json.loads(r["envelope"]) for r in rows]


async def _places(nc, db) -> dict[str, str]:
    """A compound with gate g1 and a household in Nangong and in Beixin, known to the checkpoint."""
    operator, households = As(nc, None), {}
    for community in (NANGONG, BEIXIN):
        compound = f"{community.rsplit('.', 1)[1]}-1"
        await operator.ok("registry", "register_compound", community=community, compound=compound, name="小区",
                          buildings=["b1"], gates=["g1"])
        reply = await operator.ok("registry", "register_household", community=community, compound=compound,
                                  building="b1", address="b1 room 101")
        households[community] = reply["events"][0]["data"]["household"]
    await eventually(lambda: _when(db.fetchval("SELECT count(*) FROM checkpoint.dir_households"), 2),
                     what="households in the checkpoint's directory")
    return households


async def _when(value, expected):
    return (await value) == expected or None


@pytest.fixture
async def gate(nats_url, pg_dsn):
    clock = Clock(at(29, "12:00"))
    async with running(registry_spec(), nats_url, pg_dsn), \
            running(checkpoint_spec(SETTINGS), nats_url, pg_dsn, clock=clock) as host:
        nc = await connect(nats_url)
        db = await asyncpg.connect(pg_dsn)
        yield Gate(host, nc, db, clock, pg_dsn, await _places(nc, db))
        await db.close()
        await nc.close()


async def _keys(pg_dsn: str, passages: list[str]) -> set[str]:
    """The passages whose data key the key database holds (the checkpoint's schema)."""
    conn = await asyncpg.connect(pg_dsn + "_keys")
    try:
        rows = await conn.fetch("SELECT subject FROM checkpoint.data_keys WHERE subject = ANY($1)", passages)
        return {r["subject"] for r in rows}
    finally:
        await conn.close()


async def test_a_visitors_name_phone_and_purpose_are_sealed_at_rest(gate, tmp_path):
    # given a visitor let in at the gate
    passage = await gate.visit(at(29, "10:00"))
    # then the visit is kept sealed, with a data key of its own in the key database
    row = await gate.db.fetchrow("SELECT * FROM checkpoint.visitors WHERE passage = $1", passage)
    assert row["personal"] is not None and not {"name", "phone", "purpose"} & set(row.keys())
    assert await _keys(gate.pg_dsn, [passage]) == {passage}
    # and a dump of the database holds none of it in clear
    dump = tmp_path / "cordon.pgdump"
    proc = await asyncio.create_subprocess_exec(pgtools.binary("pg_dump"), "--format=custom", "--compress=0",
                                                "--file", str(dump), gate.pg_dsn)
    assert await proc.wait() == 0
    raw = dump.read_bytes()
    assert passage.encode() in raw and gate.households[NANGONG].encode() in raw  # the visit's row is in it
    for clear in ("张三丰", "13800001111", "送药给外婆"):
        # neither as text nor as a bytea's hex (how a dump writes the sealed column), nor in the row
        assert clear.encode() not in raw and clear.encode().hex().encode() not in raw, clear
        assert clear.encode() not in row["personal"], clear
    # and the sealed value opens with the visit's key from the key database, and only so
    conn = await asyncpg.connect(gate.pg_dsn + "_keys")
    wrapped = await conn.fetchrow("SELECT wrapped, key_id FROM checkpoint.data_keys WHERE subject = $1", passage)
    await conn.close()
    data_key = pii.from_env(os.environ).unwrap(passage, pii.Wrapped(wrapped["key_id"], wrapped["wrapped"]))
    assert json.loads(pii.unseal(data_key, passage, row["personal"])) == {
        "name": "张三丰", "phone": "13800001111", "purpose": "送药给外婆"}


async def test_staff_of_the_visited_community_read_a_visitor_and_each_read_is_one_recorded_event(gate):
    passage = await gate.visit(at(29, "10:00"))
    staff = As(gate.nc, LI_WEI)
    # when staff of the visited community ask, with a purpose
    reply = await staff.query("checkpoint.visitor_contact", passage=passage, purpose=WHY)
    # then they see who came, to whom, when
    assert reply["ok"], reply
    assert {k: reply[k] for k in ("name", "phone", "visit_purpose", "host_household", "community", "gate")} == {
        "name": "张三丰", "phone": "13800001111", "visit_purpose": "送药给外婆",
        "host_household": gate.households[NANGONG], "community": NANGONG, "gate": "g1"}
    assert datetime.fromisoformat(reply["checked_at"]) == at(29, "10:00")
    # and the read is on the record: who, which visit, why; never what was shown
    [viewed] = await gate.reads_recorded()
    assert viewed["event_id"] == reply["viewed"] and viewed["community"] == NANGONG
    assert {k: viewed["data"][k] for k in ("viewer", "passage", "purpose")} == {
        "viewer": "staff:li-wei", "passage": passage, "purpose": WHY}
    # when they read it again: one more event, one per read
    await staff.query("checkpoint.visitor_contact", passage=passage, purpose=WHY)
    assert len(await gate.reads_recorded()) == 2
    # and the reads went out on the stream without the visitor's name or phone
    subjects = f"cordon.evt.{NANGONG}.checkpoint.VisitorContactViewed"
    msgs = await read_stream(gate.host.config.nats_url, expect=2, subjects=subjects)
    assert len(msgs) == 2
    assert all("张三丰" not in m.data.decode() and "13800001111" not in m.data.decode() for m in msgs)


async def test_anyone_but_the_visited_communitys_staff_is_refused_and_nothing_is_recorded(gate):
    passage = await gate.visit(at(29, "10:00"))
    # another community's staff, the street's officer, a caller from inside Cordon
    forbidden(await As(gate.nc, ZHAO_MIN).query("checkpoint.visitor_contact", passage=passage, purpose=WHY),
              NANGONG)
    forbidden(await As(gate.nc, OFFICER).query("checkpoint.visitor_contact", passage=passage, purpose=WHY),
              "staff of the visited community")
    forbidden(await As(gate.nc, None).query("checkpoint.visitor_contact", passage=passage, purpose=WHY),
              "inside Cordon")
    # a read without a reason is not a read; a passage that had no visitor is not found
    reply = await As(gate.nc, LI_WEI).query("checkpoint.visitor_contact", passage=passage, purpose="x")
    assert reply["error"]["field"] == "purpose", reply
    reply = await As(gate.nc, LI_WEI).query("checkpoint.visitor_contact", passage="p-none", purpose=WHY)
    assert reply["error"]["code"] == "not_found", reply
    assert await gate.reads_recorded() == []


async def test_outside_the_tracing_window_the_contact_is_refused_saying_why(gate):
    # given, on day 30 at noon, a visit 28 days and 13 hours ago and one 27 days and 13 hours ago
    # (the window: 28 days)
    old, recent = await gate.visit(at(1, "23:00")), await gate.visit(at(2, "23:00"))
    gate.clock.now = at(30, "12:00")
    staff = As(gate.nc, LI_WEI)
    # when staff ask for the older: refused, naming the window; no read recorded, nothing shown
    reply = await staff.query("checkpoint.visitor_contact", passage=old, purpose=WHY)
    assert reply["error"]["code"] == "not_found" and "tracing window of 28 days" in reply["error"]["message"], reply
    assert "张三丰" not in json.dumps(reply, ensure_ascii=False)
    assert await gate.reads_recorded() == []
    # and the younger one is still theirs to read
    assert (await staff.query("checkpoint.visitor_contact", passage=recent, purpose=WHY))["name"] == "张三丰"
    # when a day passes, it is outside too
    gate.clock.now = at(31, "12:00")
    reply = await staff.query("checkpoint.visitor_contact", passage=recent, purpose=WHY)
    assert reply["error"]["code"] == "not_found", reply
    assert len(await gate.reads_recorded()) == 1


async def _shredded(db) -> list[dict]:
    rows = await db.fetch("SELECT envelope FROM checkpoint.events WHERE type = 'VisitorDataShredded' "
                          "ORDER BY position")
    return [json.loads(r["envelope"]) for r in rows]


async def test_the_daily_retention_shreds_exactly_what_is_due_and_nothing_twice(gate):
    # given visits on day 1 (two in Nangong, one in Beixin) and on day 2 (Nangong), with the clock
    # on day 29: nothing due yet (the window: 28 days, whole days of the city)
    due = [await gate.visit(at(1, "10:00")), await gate.visit(at(1, "23:59")),
           await gate.visit(at(1, "12:00"), community=BEIXIN)]
    younger = [await gate.visit(at(2, "00:00")), await gate.visit(at(2, "10:00"))]
    # and a delivery van on day 1 (issue 17: its plate and driver sealed like a visitor's data)
    van = (await As(gate.nc, None).ok(
        "checkpoint", "check_vehicle", community=NANGONG, compound="nangong-1", gate="g1", direction="in",
        plate="沪B12345", driver={"name": "刘建国", "phone": "13912345678"}, purpose="delivery",
        occurred_at=at(1, "11:00").isoformat()))["vehicle"]
    await asyncio.sleep(0.2)  # the retention ticks every 0.05 s
    assert await _shredded(gate.db) == []
    # when the clock reaches day 30
    gate.clock.now = at(30, "00:30")
    events = await eventually(lambda: _when_any(_shredded(gate.db)), what="the day's retention")
    # then exactly the visits before day 2 are shredded: their keys gone, their sealed fields null
    assert await _keys(gate.pg_dsn, due + younger) == set(younger)
    rows = await gate.db.fetch("SELECT passage FROM checkpoint.visitors WHERE personal IS NULL "
                               "AND shredded_at = $1", at(30, "00:30"))
    assert {r["passage"] for r in rows} == set(due)
    # and it is on the record per community, counts only
    assert [(e["community"], e["data"]["visitors"], e["actor"]) for e in events] == [
        (BEIXIN, 1, "system:visitor-retention"), (NANGONG, 2, "system:visitor-retention")]
    assert datetime.fromisoformat(events[0]["data"]["before"]) == at(2, "00:00")
    # and the van's plate went with them: its key gone, its sealed fields null, counted in Nangong
    assert [e["data"]["vehicles"] for e in events] == [0, 1]
    assert await _keys(gate.pg_dsn, [f"vehicle:{van}"]) == set()
    assert await gate.db.fetchval("SELECT personal IS NULL FROM checkpoint.vehicles WHERE vehicle = $1", van)
    assert all("张三丰" not in json.dumps(e, ensure_ascii=False) for e in events)
    # when the day's run is sent again (a restart, another replica): nothing twice
    assert await Retention(gate.host, SETTINGS).tick() == 3  # the day's stored answer
    await asyncio.sleep(0.2)
    assert len(await _shredded(gate.db)) == 2
    # when the next day comes, the younger visits are due, and only they
    gate.clock.now = at(31, "00:30")
    events = await eventually(lambda: _when_any(_shredded(gate.db), more_than=2), what="the next day's retention")
    assert [(e["community"], e["data"]["visitors"]) for e in events[2:]] == [(NANGONG, 2)]
    assert await _keys(gate.pg_dsn, due + younger) == set()


async def _when_any(rows, more_than: int = 0):
    found = await rows
    return found if len(found) > more_than else None


async def test_a_checkpoint_of_before_has_its_visitors_plaintext_sealed_when_it_starts(nats_url, pg_dsn):
    clock = Clock(at(29, "12:00"))
    # given a checkpoint of before: a visitor in clear in checkpoint.visitors, without a key
    async with running(registry_spec(), nats_url, pg_dsn), \
            running(checkpoint_spec(SETTINGS), nats_url, pg_dsn, clock=clock) as host:
        nc = await connect(nats_url)
        db = await asyncpg.connect(pg_dsn)
        passage = await Gate(host, nc, db, clock, pg_dsn, await _places(nc, db)).visit(at(29, "10:00"))
        await nc.close()
    await db.execute("""
        ALTER TABLE checkpoint.visitors ADD COLUMN name text, ADD COLUMN phone text, ADD COLUMN purpose text;
        UPDATE checkpoint.visitors SET personal = NULL, name = '李四光', phone = '13900002222', purpose = '探亲';
    """)
    keys = await asyncpg.connect(pg_dsn + "_keys")
    await keys.execute("DELETE FROM checkpoint.data_keys WHERE subject = $1", passage)
    await keys.close()
    # when the checkpoint starts
    async with running(checkpoint_spec(SETTINGS), nats_url, pg_dsn, clock=clock):
        nc = await connect(nats_url)
        # then the row is sealed and the columns in clear are gone
        columns = {r["column_name"] for r in await db.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'checkpoint' "
            "AND table_name = 'visitors'")}
        assert not {"name", "phone", "purpose"} & columns
        assert await db.fetchval("SELECT personal IS NOT NULL FROM checkpoint.visitors WHERE passage = $1", passage)
        # and the read path opens it
        reply = await As(nc, LI_WEI).query("checkpoint.visitor_contact", passage=passage, purpose=WHY)
        assert (reply["name"], reply["phone"], reply["visit_purpose"]) == ("李四光", "13900002222", "探亲"), reply
        await nc.close()
    await db.close()


async def test_without_its_key_database_the_gate_lets_residents_through_and_refuses_visitors(nats_url, pg_dsn):
    # given a checkpoint whose key database cannot be reached
    nowhere = pg_dsn.rsplit("/", 1)[0] + "/no_such_keys_database"
    keys = KeyStore("checkpoint", pii.Keyring.of(os.urandom(32)), nowhere)
    clock = Clock(at(29, "12:00"))
    async with running(registry_spec(), nats_url, pg_dsn), \
            running(checkpoint_spec(SETTINGS, keys), nats_url, pg_dsn, clock=clock) as host:
        nc = await connect(nats_url)
        db = await asyncpg.connect(pg_dsn)
        gate = Gate(host, nc, db, clock, pg_dsn, await _places(nc, db))
        operator = As(nc, None)
        resident = (await operator.ok("registry", "register_resident", household=gate.households[NANGONG],
                                      name="王小伟", id_number=prc_id(911), birth_year=1950))
        resident = resident["events"][0]["data"]["resident"]
        await eventually(lambda: db.fetchval("SELECT 1 FROM checkpoint.dir_residents WHERE resident = $1", resident))
        place = dict(community=NANGONG, compound="nangong-1", gate="g1", temperature_c=36.5)
        # when a resident and a visitor come to the gate in the same moment
        res, vis = await asyncio.gather(
            operator.command("checkpoint", "check_passage", direction="out", resident=resident, **place),
            operator.command("checkpoint", "check_passage", direction="in", **place, visitor={
                "name": "张三丰", "phone": "13800001111", "host_household": gate.households[NANGONG],
                "purpose": "送药"}))
        # then the resident passes, the visitor is refused unavailable naming the key store; nothing of them kept
        assert res["ok"] and res["decision"]["allowed"], res
        assert vis["error"]["code"] == "unavailable" and "key store" in vis["error"]["message"], vis
        assert await db.fetchval("SELECT count(*) FROM checkpoint.visitors") == 0
        await db.close()
        await nc.close()
