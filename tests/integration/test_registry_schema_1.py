"""The registry's schema 2 (issue 16): HouseholdRegistered without the address, ResidentRegistered
without the birth year. A Cordon whose record was written before (schema-1 events, address and
birth year in them) goes on from it, on real NATS and PostgreSQL: the registry decides on its old
households and residents, the other services' directories and the views count and show them as
schema 2, and the audit chain holds over old and new events alike. The first start of the schema-2
registry copies what the old events carried into its own tables (registry.households, the birth
year, sealed with the resident's personal data), where the read path finds them.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from services.audit import log
from services.audit.app import spec as audit_spec
from services.checkpoint.app import spec as checkpoint_spec
from services.registry.app import spec as registry_spec
from services.views.app import spec as views_spec
from shared import envelope as env
from shared import store
from shared.contracts.registry import HouseholdRegisteredV1, ResidentRegisteredV1
from shared.identity import Identity
from shared.subjects import STREAM, event_subject
from tests.support.bus import connect
from tests.support.cordon import COMMUNITY, Client, community, eventually, outboxes_empty, prc_id, running
from tests.support.identities import As
from tests.support.views import query, wait_position

pytestmark = pytest.mark.integration

AT = datetime(2022, 4, 2, 6, 0, tzinfo=timezone(timedelta(hours=8)))
ADDRESS = "南宫小区1号101室"
OLD_HOUSEHOLD, OLD_RESIDENT = "h-old", "r-old"
LI_WEI = Identity(name="li-wei", role="staff", scope=COMMUNITY)
WHY = "welfare check after the schema change"


async def _record_schema_1(db) -> None:
    """A household and its resident as the registry recorded them before issue 16: schema-1 events
    (the address, the birth year) in its record and outbox, which its relay publishes."""
    fields = dict(community=COMMUNITY, compound="nangong-1", building="b1", household=OLD_HOUSEHOLD,
                  registered_at=AT, registered_by="staff:li-wei")
    old = [(HouseholdRegisteredV1(**fields, address=ADDRESS), f"household:{OLD_HOUSEHOLD}"),
           (ResidentRegisteredV1(**fields, resident=OLD_RESIDENT, display_name="王*伟", birth_year=1941,
                                 vulnerabilities=["elderly_alone"]), f"resident:{OLD_RESIDENT}")]
    rows = []
    for event, stream_id in old:
        e = env.wrap(event, stream_id=stream_id, stream_version=1, occurred_at=AT, actor="staff:li-wei",
                     correlation_id="before")
        rows.append(store.NewEvent(
            event_id=e.event_id, stream_id=stream_id, version=1, type=e.type, community=COMMUNITY,
            recorded_at=e.recorded_at, envelope=env.encode(e),
            subject=event_subject(COMMUNITY, "registry", e.type)))
    assert all(b'"schema":1' in r.envelope for r in rows)
    async with db.transaction():
        await store.append(db, "registry", rows)
        # the resident's personal data, as the registry kept it then: no birth year beside it
        await db.execute("INSERT INTO registry.residents (resident, household, community, name, id_number, phone, "
                         "registered_at) VALUES ($1, $2, $3, '王小伟', $4, NULL, $5)", OLD_RESIDENT, OLD_HOUSEHOLD,
                         COMMUNITY, prc_id(4241), AT)


_BEFORE = """
    DROP TABLE registry.households;
    DROP TABLE registry.residents;
    CREATE TABLE registry.residents (resident text PRIMARY KEY, household text NOT NULL, community text NOT NULL,
        name text NOT NULL, id_number text NOT NULL UNIQUE, phone text, registered_at timestamptz NOT NULL);
"""


async def _stream_head(nc) -> int:
    return (await nc.jetstream().stream_info(STREAM)).state.last_seq


async def _audited(db, seq: int) -> bool:
    return (await db.fetchval("SELECT hwm FROM audit.head") or 0) >= seq


async def test_a_record_of_schema_1_registry_events_decodes_projects_and_stays_audited(nats_url, pg_dsn):
    db = await asyncpg.connect(pg_dsn)
    # given a household and its resident recorded in schema 1, address and birth year in them, by a
    # registry from before (its tables then: no registry.households, names in clear and no birth year in
    # registry.residents)
    async with running(registry_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        await community(Client(nc), gates=("g1",))
        await nc.close()
        await db.execute(_BEFORE)
        await _record_schema_1(db)
    services = (registry_spec(), checkpoint_spec(), views_spec(), audit_spec())
    async with running(services[0], nats_url, pg_dsn), running(services[1], nats_url, pg_dsn), \
            running(services[2], nats_url, pg_dsn), running(services[3], nats_url, pg_dsn):
        nc = await connect(nats_url)
        reg = Client(nc)
        # when the registry of schema 2 starts: it copies what the old events carried into its tables
        # (the birth year sealed with the name), and the read path answers them
        # (the address sealed with the household's own key: nothing of it left in clear)
        row = await db.fetchrow("SELECT community, address, sealed FROM registry.households WHERE household = $1",
                                OLD_HOUSEHOLD)
        assert (row["community"], row["address"]) == (COMMUNITY, None)
        assert row["sealed"] and ADDRESS.encode() not in row["sealed"]
        [old] = (await As(nc, LI_WEI).query("registry.contact", resident=OLD_RESIDENT, purpose=WHY))["contacts"]
        assert (old["name"], old["birth_year"], old["address"]) == ("王小伟", 1941, ADDRESS)
        assert await db.fetchval("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'registry' "
                                 "AND table_name = 'residents' AND column_name IN ('name', 'birth_year')") == 0
        # and where each old household is, from its event: the compound's households and the
        # household's residents answer for them (issue 17)
        listed = await As(nc, LI_WEI).query("registry.compound_households", community=COMMUNITY, compound="nangong-1")
        assert listed["households"] == [{"household": OLD_HOUSEHOLD, "building": "b1", "residents": 1}]
        old_home = await As(nc, LI_WEI).query("registry.household", household=OLD_HOUSEHOLD)
        assert [(r["resident"], r["vulnerabilities"]) for r in old_home["residents"]] == [
            (OLD_RESIDENT, ["elderly_alone"])]

        # when the registry decides on them: a resident joins the old household, the old one moves out
        joined = await reg.ok("register_resident", household=OLD_HOUSEHOLD, name="王小丽", id_number=prc_id(4242),
                              birth_year=1975)
        [new] = joined["events"]
        assert (new["type"], new["schema"]) == ("ResidentRegistered", 2) and "birth_year" not in new["data"]
        assert (new["data"]["building"], new["data"]["household"]) == ("b1", OLD_HOUSEHOLD)
        moved = await reg.ok("move_out", resident=OLD_RESIDENT, reason="moved in with family")
        assert [(e["type"], e["stream_version"]) for e in moved["events"]] == [("ResidentMovedOut", 2)]
        # and the birth year of the new resident stays in the registry, sealed with the name
        [joiner] = (await As(nc, LI_WEI).query("registry.contact", resident=new["data"]["resident"],
                                               purpose=WHY))["contacts"]
        assert (joiner["name"], joiner["birth_year"], joiner["address"]) == ("王小丽", 1975, ADDRESS)

        # then the checkpoint's directory knows the old household and residents, without address or birth year
        await eventually(lambda: db.fetchval("SELECT moved_out FROM checkpoint.dir_residents WHERE resident = $1",
                                             OLD_RESIDENT), what="the move-out in the directory")
        assert await db.fetchrow("SELECT building, address FROM checkpoint.dir_households WHERE household = $1",
                                 OLD_HOUSEHOLD) == ("b1", None)
        assert await db.fetchval("SELECT count(*) FROM checkpoint.dir_residents WHERE birth_year IS NOT NULL") == 0

        # then the board counts the old household and residents as schema 2 would (once every event is on the
        # stream: a contact read is committed before its reply and published just after, so the head read
        # before the outboxes are empty can miss the last read's PersonalDataViewed)
        await outboxes_empty(db, "registry", "checkpoint")
        head = await _stream_head(nc)
        await wait_position(nc, head)
        then = (await query(nc, "community", community=COMMUNITY, on="2022-04-02"))["figures"]
        now = (await query(nc, "community", community=COMMUNITY))["figures"]
        assert (then["households"], then["residents"]) == (1, 1)  # the day of the schema-1 events
        assert (now["households"], now["residents"]) == (1, 1)  # 王小丽 in, r-old out
        # and the old resident's timeline shows the registration without the birth year
        timeline = await query(nc, "timeline", resident=OLD_RESIDENT)
        # (and the read of their contact above, which is on the record of them too)
        assert [e["type"] for e in timeline["events"]] == ["ResidentRegistered", "PersonalDataViewed",
                                                           "ResidentMovedOut"]
        assert "birth_year" not in timeline["events"][0]["data"]

        # then the audit log holds every event as recorded, old and new, and its chain verifies
        await eventually(lambda: _audited(db, head), what="the audit log at the stream's head")
        verdict = await log.verify(db)
        assert verdict.ok and verdict.rows == head
        await db.close()
        await nc.close()
