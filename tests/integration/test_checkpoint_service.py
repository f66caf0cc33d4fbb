"""The checkpoint end to end on real NATS and PostgreSQL, next to a real registry: passes, gates,
passage decisions for every reason, the quarantine view fed from the bus, restarts, shifts.

The quarantine service is written elsewhere; its events are published here in the contract's shape
(``shared.contracts.quarantine``), as that service's relay would.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import asyncpg
import pytest

from services.checkpoint.app import spec as checkpoint_spec
from services.checkpoint.commands import parse
from services.checkpoint.config import Config
from services.registry.app import spec as registry_spec
from shared import bus, envelope
from shared.contracts.quarantine import AreaSealed, CaseClosed, CaseOpened, CaseReleased, SealLifted
from shared.contracts.registry import CompoundRegistered, HouseholdRegistered
from shared.service import ServiceHost
from shared.subjects import event_subject
from tests.support.bus import connect
from tests.support.cordon import publish_events  # noqa: E402
from tests.support.cordon import COMMUNITY, Client, community, household, read_stream, resident, running
from tests.support.cordon import eventually

pytestmark = pytest.mark.integration

AT = datetime(2022, 4, 2, 9, 0, tzinfo=timezone(timedelta(hours=8)))



async def publish(nats_url: str, *events, service: str = "quarantine") -> None:
    """Publish events in the contract's shape, as another service's relay would."""
    assert all(type(e).service == service for e in events)
    await publish_events(nats_url, events, occurred_at=AT)


@dataclass
class World:
    host: ServiceHost
    reg: Client
    chk: Client
    db: asyncpg.Connection
    nats_url: str
    h1: str  # building b1, residents r1 (and r1b)
    r1: str
    r1b: str
    h2: str  # building b2, resident r2
    r2: str

    async def passage(self, direction="out", temperature_c=36.6, gate="g1", **who) -> dict:
        reply = await self.chk.ok("check_passage", community=COMMUNITY, compound="nangong-1", gate=gate,
                                  direction=direction, temperature_c=temperature_c, **who)
        return reply

    async def reason(self, **kw) -> str | None:
        decision = (await self.passage(**kw))["decision"]
        assert decision["allowed"] == (decision["reason"] is None)
        return decision["reason"]

    async def count(self, sql: str, *args) -> int:
        return await self.db.fetchval(sql, *args)


async def directory_has(db, resident_id: str):
    return await eventually(lambda: db.fetchval("SELECT 1 FROM checkpoint.dir_residents WHERE resident = $1",
                                                resident_id))


@pytest.fixture
async def world(nats_url, pg_dsn):
    async with running(registry_spec(), nats_url, pg_dsn), \
            running(checkpoint_spec(), nats_url, pg_dsn) as host:
        nc = await connect(nats_url)
        db = await asyncpg.connect(pg_dsn)
        reg = Client(nc)
        await community(reg, buildings=("b1", "b2"), gates=("g1", "g2"))
        h1, h2 = await household(reg, building="b1"), await household(reg, building="b2")
        r1, r1b, r2 = await resident(reg, h1), await resident(reg, h1), await resident(reg, h2)
        await directory_has(db, r2)
        yield World(host, reg, Client(nc, service="checkpoint"), db, nats_url, h1, r1, r1b, h2, r2)
        await db.close()
        await nc.close()


async def test_the_gate_rules_of_the_checkpoint_itself(world):
    w = world
    allowed = await w.passage(resident=w.r1)
    assert allowed["decision"] == {"allowed": True, "reason": None}
    [event] = allowed["events"]
    assert event["type"] == "PassageAllowed" and event["stream_id"] == f"passage:{allowed['passage']}"
    assert (event["data"]["household"], event["data"]["building"]) == (w.h1, "b1")

    await w.chk.ok("set_gate", community=COMMUNITY, compound="nangong-1", gate="g1", open=False)
    assert await w.reason(resident=w.r1) == "gate_closed"
    assert await w.reason(resident=w.r1, gate="g2") is None  # the merged gates: g2 still open

    await w.chk.ok("set_control_level", community=COMMUNITY, compound="nangong-1", level="closed")
    assert await w.reason(resident=w.r1, gate="g2") == "no_valid_pass"  # closed: passes only
    issued = await w.chk.ok("issue_passes", community=COMMUNITY, compound="nangong-1", households=[w.h1])
    [p] = issued["passes"]
    printed = f"{p['number'][:5].lower()}-{p['number'][5:]}"  # as a guard types it
    assert await w.reason(gate="g2", **{"pass": printed}) is None
    assert await w.reason(gate="g2", resident=w.r2, **{"pass": p["number"]}) == "no_valid_pass"  # not hers
    assert await w.reason(gate="g2", resident="r-nobody") == "unknown_resident"

    fever = await w.passage(gate="g2", temperature_c=37.3, **{"pass": p["pass"]})
    assert fever["decision"] == {"allowed": False, "reason": "fever"}
    assert [e["type"] for e in fever["events"]] == ["PassageDenied", "FeverDetected"]
    assert await w.reason(gate="g2", temperature_c=37.2, **{"pass": p["pass"]}) is None

    await w.chk.ok("revoke_pass", reason="lost", **{"pass": p["number"]})
    assert await w.reason(gate="g2", **{"pass": p["number"]}) == "no_valid_pass"

    visitor = {"name": "张三丰", "phone": "13800001111", "host_household": w.h2, "purpose": "送药"}
    assert await w.reason(gate="g2", direction="in", visitor=visitor) == "visitors_not_admitted"
    await w.chk.ok("set_control_level", community=COMMUNITY, compound="nangong-1", level="open")
    admitted = await w.passage(gate="g2", direction="in", visitor=visitor)
    assert admitted["decision"]["allowed"] and admitted["events"][0]["data"]["visitor"] == "张*丰"
    row = await w.db.fetchrow("SELECT personal, allowed FROM checkpoint.visitors WHERE passage = $1",
                              admitted["passage"])
    assert row["allowed"] and row["personal"] and "张三丰".encode() not in row["personal"]  # sealed

    # everything reached the bus; the visitor's name and phone stayed home
    msgs = await read_stream(w.nats_url, expect=6 + 18)  # the registry's 6, the checkpoint's 18
    types = [m.subject.rsplit(".", 1)[1] for m in msgs if ".checkpoint." in m.subject]
    assert len(types) == 18
    assert types.count("FeverDetected") == 1 and types.count("PassIssued") == 1
    assert all("张三丰" not in m.data.decode() and "13800001111" not in m.data.decode() for m in msgs)


async def test_quarantine_and_seal_events_on_the_bus_change_the_next_decision(world):
    w = world
    assert await w.reason(resident=w.r1) is None
    opened = CaseOpened(community=COMMUNITY, case="case-1", resident=w.r1, household=w.h1, compound="nangong-1",
                        building="b1", kind="home", reason="arrival", starts_on=date(2022, 4, 1),
                        ends_on=date(2022, 4, 14), opened_at=AT, opened_by="staff:zhao-lei")
    await publish(w.nats_url, opened)
    await eventually(lambda: w.count("SELECT count(*) FROM checkpoint.q_cases"))
    assert await w.reason(resident=w.r1) == "under_quarantine"
    assert await w.reason(resident=w.r1b) == "under_quarantine"  # home quarantine: the household's door
    assert await w.reason(resident=w.r1, direction="in") is None  # let home
    assert await w.reason(resident=w.r2) is None

    released = CaseReleased(community=COMMUNITY, case="case-1", resident=w.r1, household=w.h1, on=date(2022, 4, 14),
                            monitoring_until=date(2022, 4, 21), released_at=AT, released_by="staff:zhao-lei")
    sealed = AreaSealed(community=COMMUNITY, compound="nangong-1", building="b2", sealed_at=AT,
                        sealed_by="staff:zhao-lei")
    await publish(w.nats_url, released, sealed)
    await eventually(lambda: w.count("SELECT count(*) FROM checkpoint.sealed_areas"))
    assert await w.reason(resident=w.r1) is None  # monitoring does not stop anyone at the gate
    assert await w.reason(resident=w.r2) == "building_sealed"

    whole = AreaSealed(community=COMMUNITY, compound="nangong-1", sealed_at=AT, sealed_by="staff:zhao-lei")
    await publish(w.nats_url, whole)
    await eventually(lambda: w.count("SELECT count(*) = 2 FROM checkpoint.sealed_areas"))
    assert await w.reason(resident=w.r1) == "compound_sealed"
    assert await w.reason(resident=w.r1, direction="in") == "no_valid_pass"  # sealed: entry by pass

    await publish(w.nats_url, SealLifted(community=COMMUNITY, compound="nangong-1", lifted_at=AT,
                                         lifted_by="staff:zhao-lei"),
                  SealLifted(community=COMMUNITY, compound="nangong-1", building="b2", lifted_at=AT,
                             lifted_by="staff:zhao-lei"),
                  CaseClosed(community=COMMUNITY, case="case-1", resident=w.r1, on=date(2022, 4, 21),
                             closed_at=AT, closed_by="staff:zhao-lei"))
    await eventually(lambda: w.db.fetchval(
        "SELECT NOT EXISTS (SELECT FROM checkpoint.sealed_areas) "
        "AND NOT EXISTS (SELECT FROM checkpoint.q_cases WHERE status <> 'closed')"))
    assert await w.reason(resident=w.r2) is None


async def test_a_restarted_checkpoint_answers_from_its_local_view_without_a_replay(nats_url, pg_dsn):
    async with running(registry_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        db = await asyncpg.connect(pg_dsn)
        reg, chk = Client(nc), Client(nc, service="checkpoint")
        await community(reg)
        h = await household(reg)
        r = await resident(reg, h)
        await publish(nats_url, CaseOpened(
            community=COMMUNITY, case="case-9", resident=r, household=h, kind="centralized",
            reason="close_contact", starts_on=date(2022, 4, 1), ends_on=date(2022, 4, 14), opened_at=AT,
            opened_by="staff:zhao-lei"))
        async with running(checkpoint_spec(), nats_url, pg_dsn) as first:
            await eventually(lambda: db.fetchval("SELECT count(*) FROM checkpoint.q_cases"))
            await directory_has(db, r)
            applied = sum(c.applied for c in first.consumers)
            assert applied == 4  # compound, household, resident, case
        async with running(checkpoint_spec(), nats_url, pg_dsn) as second:
            body = dict(community=COMMUNITY, compound="nangong-1", gate="g1", direction="out", temperature_c=36.5)
            reply = await chk.ok("check_passage", resident=r, **body)  # at once: no waiting for a catch-up
            assert reply["decision"] == {"allowed": False, "reason": "under_quarantine"}
            await asyncio.sleep(0.3)
            assert sum(c.applied for c in second.consumers) == 0  # nothing replayed
            assert [await c.lag() for c in second.consumers] == [0, 0]
        await db.close()
        await nc.close()


async def publish_compound(nats_url: str, households: int) -> list[str]:
    """A compound of ``households`` households, published in the registry's contract shape."""
    nc = await connect(nats_url)
    js = nc.jetstream()
    await bus.ensure_stream(js)
    events = [CompoundRegistered(community=COMMUNITY, compound="big-1", name="大华小区", buildings=["b1", "b2"],
                                 gates=["g1"], registered_at=AT, registered_by="staff:li-wei")]
    ids = [f"h{i}" for i in range(households)]
    events += [HouseholdRegistered(community=COMMUNITY, compound="big-1", building=f"b{i % 2 + 1}", household=h,
                                   registered_at=AT, registered_by="staff:li-wei")
               for i, h in enumerate(ids)]
    acks = []
    for event in events:
        env = envelope.wrap(event, stream_id=f"test:{uuid.uuid4()}", stream_version=1, occurred_at=AT,
                            actor="staff:li-wei", correlation_id=str(uuid.uuid4()))
        acks.append(await js.publish_async(event_subject(COMMUNITY, "registry", type(event).__name__),
                                           envelope.encode(env), headers={"Nats-Msg-Id": env.event_id}))
    await asyncio.wait_for(asyncio.gather(*acks), 30)
    await nc.close()
    return ids


async def test_one_issue_passes_call_makes_5400_unique_passes(nats_url, pg_dsn):
    ids = await publish_compound(nats_url, 5400)
    async with running(checkpoint_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        db = await asyncpg.connect(pg_dsn)
        chk = Client(nc, service="checkpoint")
        await eventually(lambda: db.fetchval("SELECT count(*) = 5400 FROM checkpoint.dir_households"), 30)
        body = dict(command_id="bulk-1", actor="staff:li-wei", community=COMMUNITY, compound="big-1",
                    households=ids)
        reply = await chk.raw("issue_passes", json.dumps(body).encode(), timeout=30)
        assert reply["issued"] == 5400 and reply["skipped"] == 0
        assert reply["events"] == [] and reply["events_omitted"] == 5400
        numbers = {p["number"] for p in reply["passes"]}
        assert len(numbers) == 5400 and {p["household"] for p in reply["passes"]} == set(ids)
        assert await db.fetchval("SELECT count(DISTINCT number) FROM checkpoint.passes") == 5400
        assert await db.fetchval("SELECT count(*) FROM checkpoint.events WHERE type = 'PassIssued'") == 5400

        again = await chk.send("issue_passes", community=COMMUNITY, compound="big-1", all_households=True)
        assert again["error"]["reason"] == "already_issued"
        two = await chk.ok("issue_passes", community=COMMUNITY, compound="big-1", all_households=True,
                           building="b1", per_household=2)
        assert two["issued"] == 2700 and len(two["passes"]) == 2700  # topped up to two each in b1
        await eventually(lambda: db.fetchval("SELECT count(*) = 0 FROM checkpoint.outbox"), 30)
        await db.close()
        await nc.close()


async def test_shifts_and_the_volunteer_figures_of_a_day(nats_url, pg_dsn):
    async with running(registry_spec(), nats_url, pg_dsn), running(checkpoint_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        db = await asyncpg.connect(pg_dsn)
        reg, chk = Client(nc), Client(nc, service="checkpoint")
        await community(reg, gates=("g1", "g2"))
        await eventually(lambda: db.fetchval("SELECT count(*) FROM checkpoint.dir_compounds"))
        day = datetime(2022, 4, 2, tzinfo=timezone(timedelta(hours=8)))
        for i, staff in enumerate(["volunteer:li", "volunteer:wu", "staff:chen"]):
            start = day + timedelta(hours=6 * i)
            await chk.ok("start_shift", community=COMMUNITY, gate="g1", staff=staff, occurred_at=start.isoformat())
            if i < 2:
                ended = await chk.ok("end_shift", community=COMMUNITY, gate="g1", staff=staff,
                                     occurred_at=(start + timedelta(hours=6, minutes=30)).isoformat())
                assert ended["hours"] == 6.5
        again = await chk.send("start_shift", community=COMMUNITY, gate="g2", staff="staff:chen")
        assert again["error"]["reason"] == "already_on_shift"
        msg = await nc.request("cordon.qry.checkpoint.shifts",
                               f'{{"community": "{COMMUNITY}", "on": "2022-04-02"}}'.encode(), timeout=5)
        figures = json.loads(msg.data)
        assert (figures["person_times"], figures["people"], figures["hours"], figures["open_shifts"]) == (3, 3, 13.0, 1)
        assert [d["on"] for d in figures["days"]] == ["2022-04-02"]
        bad = json.loads((await nc.request("cordon.qry.checkpoint.shifts", b'{"community": "x"}')).data)
        assert bad["error"]["code"] == "invalid"
        await db.close()
        await nc.close()


async def test_commands_decided_in_one_batch_see_each_others_effects(world):
    w = world
    [p] = (await w.chk.ok("issue_passes", community=COMMUNITY, compound="nangong-1", households=[w.h1]))["passes"]
    place = dict(community=COMMUNITY, compound="nangong-1")
    passage = dict(place, direction="out", temperature_c=36.6)
    batch = [  # queued together, so the runtime decides them in one transaction, in this order
        ("set_gate", dict(place, gate="g2", open=False)),
        ("check_passage", dict(passage, gate="g2", resident=w.r1)),
        ("revoke_pass", {"pass": p["number"], "reason": "lost"}),
        ("check_passage", dict(passage, gate="g1", **{"pass": p["number"]})),
        ("start_shift", dict(community=COMMUNITY, gate="g1", staff="volunteer:li")),
        ("start_shift", dict(community=COMMUNITY, gate="g2", staff="volunteer:li")),
    ]
    replies = await asyncio.gather(*[
        w.host.execute(name, parse(name, json.dumps({"command_id": f"b-{i}", "actor": "staff:li-wei", **body}).encode()))
        for i, (name, body) in enumerate(batch)])
    assert replies[1]["decision"]["reason"] == "gate_closed"
    assert replies[3]["decision"]["reason"] == "no_valid_pass"
    assert replies[5]["error"]["reason"] == "already_on_shift"
    recorded = {e["recorded_at"] for r in replies if r["ok"] for e in r["events"]}
    assert len(recorded) == 1  # one batch, one transaction


async def test_a_repeated_passage_command_is_answered_once_and_recorded_once(world):
    w = world
    first = await w.passage(resident=w.r1, command_id="gate-scan-1")
    second = await w.passage(resident=w.r1, command_id="gate-scan-1")
    assert first == second
    assert await w.count("SELECT count(*) FROM checkpoint.events WHERE type = 'PassageAllowed'") == 1


async def test_the_fever_threshold_is_a_policy_value(nats_url, pg_dsn):
    async with running(registry_spec(), nats_url, pg_dsn), \
            running(checkpoint_spec(Config(fever_c=37.5)), nats_url, pg_dsn):
        nc = await connect(nats_url)
        db = await asyncpg.connect(pg_dsn)
        reg, chk = Client(nc), Client(nc, service="checkpoint")
        await community(reg)
        r = await resident(reg, await household(reg))
        await directory_has(db, r)
        body = dict(community=COMMUNITY, compound="nangong-1", gate="g1", direction="in", resident=r)
        assert (await chk.ok("check_passage", temperature_c=37.4, **body))["decision"]["allowed"]
        assert (await chk.ok("check_passage", temperature_c=37.5, **body))["decision"]["reason"] == "fever"
        await db.close()
        await nc.close()
