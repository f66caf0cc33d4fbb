"""The registry's ArrivalRegistered of schema 2 (issue 16): without the origin, the transport (a
train's number) and the places visited, which stay in registry.arrivals for tracing. A record
written before (a schema-1 arrival, travel history in it) goes on, on real NATS and PostgreSQL: the
registry's first schema-2 start copies the old travel history into its table, it verifies the old
arrival, the views count old and new arrivals alike, and the audit chain holds over both.
"""
from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta

import asyncpg
import pytest

from services.audit import log
from services.audit.app import spec as audit_spec
from services.registry import domain
from services.registry.app import spec as registry_spec
from services.views.app import spec as views_spec
from shared import pii
from shared import envelope as env
from shared import store
from shared.config import city_zone
from shared.contracts.registry import ArrivalRegisteredV1, Transport, Visit
from shared.subjects import STREAM, event_subject
from tests.support.bus import connect
from tests.support.cordon import COMMUNITY, Client, community, eventually, household, resident, running
from tests.support.views import query, wait_position

pytestmark = pytest.mark.integration

OLD = "a-old"


async def _record_schema_1(db, who: str, where: dict, arrived_on: date) -> None:
    """An arrival as the registry recorded it before issue 16: a schema-1 event (origin, train,
    places visited in it) in its record and outbox, which its relay publishes."""
    at = datetime.now().astimezone()
    event = ArrivalRegisteredV1(
        community=COMMUNITY, arrival=OLD, resident=who, **where, origin="武汉", arrived_on=arrived_on,
        transport=Transport(kind="train", number="G1722"),
        visited=[Visit(place="汉口", from_=arrived_on - timedelta(days=9), to=arrived_on - timedelta(days=1))],
        city_class="A", risk_area_visited=True, requires_verification=True, registered_at=at,
        registered_by="staff:li-wei")
    stream = domain.arrival_stream(OLD)
    e = env.wrap(event, stream_id=stream, stream_version=1, occurred_at=at, actor="staff:li-wei",
                 correlation_id="before")
    row = store.NewEvent(event_id=e.event_id, stream_id=stream, version=1, type=e.type, community=COMMUNITY,
                         recorded_at=e.recorded_at, envelope=env.encode(e),
                         subject=event_subject(COMMUNITY, "registry", e.type))
    assert b'"schema":1' in row.envelope and "G1722".encode() in row.envelope
    async with db.transaction():
        await store.append(db, "registry", [row])


async def _head_at_least(nc, n: int) -> int:
    last = (await nc.jetstream().stream_info(STREAM)).state.last_seq
    return last if last >= n else 0


async def _travel(pg_dsn: str, arrival: str) -> dict:
    """An arrival's travel history, opened as the registry does: with its resident's data key."""
    db = await asyncpg.connect(pg_dsn)
    row = await db.fetchrow("SELECT resident, sealed FROM registry.arrivals WHERE arrival = $1", arrival)
    await db.close()
    keys = await asyncpg.connect(pg_dsn + "_keys")
    wrapped = await keys.fetchrow("SELECT wrapped, key_id FROM registry.data_keys WHERE subject = $1", row["resident"])
    await keys.close()
    data_key = pii.from_env(os.environ).unwrap(row["resident"], pii.Wrapped(wrapped["key_id"], wrapped["wrapped"]))
    return {"resident": row["resident"], **json.loads(pii.unseal(data_key, f"arrival:{arrival}", row["sealed"]))}


async def _audited(db, seq: int) -> bool:
    return (await db.fetchval("SELECT hwm FROM audit.head") or 0) >= seq


async def test_a_record_of_a_schema_1_arrival_decodes_projects_and_stays_audited(nats_url, pg_dsn):
    db = await asyncpg.connect(pg_dsn)
    today = datetime.now(city_zone()).date()
    # given a resident, and their arrival recorded in schema 1 by a registry from before (no
    # registry.arrivals then)
    async with running(registry_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        reg = Client(nc)
        await community(reg)
        home = await household(reg)  # in nangong-1, building b1
        who = await resident(reg, home)
        await nc.close()
    where = dict(household=home, compound="nangong-1", building="b1")
    await db.execute("DROP TABLE registry.arrivals; DROP TABLE registry.verifications")  # (issue 17's: none then)
    await _record_schema_1(db, who, where, today - timedelta(days=2))

    async with running(registry_spec(), nats_url, pg_dsn), running(views_spec(), nats_url, pg_dsn), \
            running(audit_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        reg = Client(nc)
        # when the registry of schema 2 starts: the old travel history is copied into its table
        # (and sealed there with the resident's key: nothing of it in clear)
        await eventually(lambda: db.fetchval("SELECT sealed IS NOT NULL AND origin IS NULL FROM registry.arrivals "
                                             "WHERE arrival = $1", OLD), what="the old travel history sealed")
        old = await _travel(pg_dsn, OLD)
        assert (old["resident"], old["origin"], old["transport"]["number"]) == (who, "武汉", "G1722")
        assert [v["place"] for v in old["visited"]] == ["汉口"]
        # and the committee's list of arrivals waiting for verification is built from the record
        waiting = await query(nc, "registry.awaiting_verification", community=COMMUNITY)
        assert [(a["arrival"], a["resident"], a["city_class"]) for a in waiting["arrivals"]] == [(OLD, who, "A")]
        # and it decides on the old arrival: verified at the door
        verified = await reg.ok("verify_arrival", arrival=OLD, outcome="home_quarantine", documents_checked=True)
        assert [(e["type"], e["stream_version"]) for e in verified["events"]] == [("ArrivalVerified", 2)]
        # and a new arrival is schema 2: the day and the class on the bus, where from in the registry
        new = (await reg.ok("register_arrival", resident=who, origin="上海虹桥", arrived_on=str(today),
                            transport={"kind": "train", "number": "G7512"}, visited=[], city_class="B",
                            risk_area_visited=True))["events"][0]
        assert (new["schema"], new["data"]["city_class"], new["data"]["requires_verification"]) == (2, "B", True)
        assert not {"origin", "transport", "visited"} & set(new["data"])
        assert (await _travel(pg_dsn, new["data"]["arrival"]))["origin"] == "上海虹桥"
        waiting = await query(nc, "registry.awaiting_verification", community=COMMUNITY)
        assert [a["arrival"] for a in waiting["arrivals"]] == [new["data"]["arrival"]]  # the old one verified

        # then the board counts the old arrival and the new one alike: both arrived within 14 days,
        # the old one verified, the new one waiting
        # (the relay publishes after the reply: the stream's head is read once the record is all on it)
        recorded = await db.fetchval("SELECT count(*) FROM registry.events")
        head = await eventually(lambda: _head_at_least(nc, recorded), what="the record on the stream")
        await wait_position(nc, head)
        figures = (await query(nc, "community", community=COMMUNITY))["figures"]
        assert (figures["arrivals_14d"], figures["arrivals_pending"]) == (2, 1)
        # and the resident's timeline shows the old arrival without its travel history
        timeline = await query(nc, "timeline", resident=who)
        arrivals = [e["data"] for e in timeline["events"] if e["type"] == "ArrivalRegistered"]
        assert len(arrivals) == 2 and not any({"origin", "transport", "visited"} & set(a) for a in arrivals)

        # then the audit log holds every event as recorded, old and new, and its chain verifies
        await eventually(lambda: _audited(db, head), what="the audit log at the stream's head")
        verdict = await log.verify(db)
        assert verdict.ok and verdict.rows == head

        # and when the resident is erased, their travel history goes with their personal data
        await reg.ok("erase_resident", resident=who, legal_basis="PIPL art. 47: the person withdrew consent")
        assert await db.fetchval("SELECT count(*) FROM registry.arrivals WHERE resident = $1", who) == 0
        await nc.close()
    await db.close()
