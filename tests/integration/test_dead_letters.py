"""`cordon dead-letters list | replay` on real NATS and PostgreSQL: a parked message is applied
again through its consumer's handler, in the running service, once."""
from __future__ import annotations

import io
from datetime import datetime, timezone

import asyncpg
import pytest

from services.ops.cli import list_letters, parse_ids, replay_letters
from shared import store
from shared.contracts.registry import HouseholdRegistered
from shared.service import ConsumerSpec, ServiceSpec
from tests.support.bus import connect, creds_for
from tests.support.cordon import COMMUNITY, eventually, publish_events, running

pytestmark = pytest.mark.integration

AT = datetime(2020, 2, 1, tzinfo=timezone.utc)
EFFECTS = """CREATE TABLE IF NOT EXISTS probe.effects (
    event_id uuid PRIMARY KEY, household text NOT NULL, applied integer NOT NULL)"""


def probe_spec(broken: set[str]) -> ServiceSpec:
    """A service with one consumer whose handler cannot apply the households in ``broken`` (the
    bug); emptying the set is the fix, deployed."""

    def build(host):
        async def handle(conn, raw, event):
            if event.household in broken:
                raise ValueError(f"cannot apply {event.household}")
            await conn.execute(
                "INSERT INTO probe.effects VALUES ($1, $2, 1) "
                "ON CONFLICT (event_id) DO UPDATE SET applied = probe.effects.applied + 1",
                raw.event_id, event.household)

        return handle

    return ServiceSpec(name="probe", extra_ddl=EFFECTS,
                       consumers=[ConsumerSpec(name="probe-households", subjects=["cordon.evt.>"], handle=build)])


async def publish_households(nats_url: str, names: list[str]) -> list[str]:
    events = [HouseholdRegistered(community=COMMUNITY, compound="nangong-1", building="b1", household=h,
                                  registered_at=AT, registered_by="staff:li-wei")
              for h in names]
    envs = await publish_events(nats_url, events, occurred_at=AT, actor="staff:li-wei",
                                stream_ids=[f"household:{h}" for h in names])
    return [e.event_id for e in envs]


async def rows(pg_dsn: str, sql: str, *args) -> list[dict]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def letters(pg_dsn: str) -> list[dict]:
    return await rows(pg_dsn, "SELECT id, event_id::text, attempts, error FROM probe.dead_letters ORDER BY id")


async def effects(pg_dsn: str) -> dict[str, int]:
    return {r["household"]: r["applied"] for r in await rows(pg_dsn, "SELECT household, applied FROM probe.effects")}


async def test_a_parked_message_is_replayed_once_after_its_handler_is_fixed(nats_url, pg_dsn):
    broken = {"h-2"}
    async with running(probe_spec(broken), nats_url, pg_dsn, park_after=2):
        # Given a consumer that parked the one message its handler could not apply
        ids = await publish_households(nats_url, ["h-1", "h-2", "h-3"])
        await eventually(lambda: letters(pg_dsn), what="the message parked")
        await eventually(lambda: _applied(pg_dsn, 2), what="the others applied")
        [letter] = await letters(pg_dsn)
        assert letter["event_id"] == ids[1] and letter["attempts"] == 2
        listed = io.StringIO()
        assert await list_letters(pg_dsn, None, None, out=listed) == 0
        assert f"probe:{letter['id']}" in listed.getvalue() and "HouseholdRegistered" in listed.getvalue()
        assert "ValueError: cannot apply h-2" in listed.getvalue()

        # When it is replayed before the fix: it fails again, is kept, one attempt more, exit 1
        out = io.StringIO()
        code = await replay_letters(nats_url, pg_dsn, parse_ids([f"probe:{letter['id']}"], None), out=out,
                                    creds=creds_for(nats_url))
        assert code == 1 and "failed again" in out.getvalue() and "kept" in out.getvalue()
        [kept] = await letters(pg_dsn)
        assert kept["id"] == letter["id"] and kept["attempts"] == 3 and "cannot apply h-2" in kept["error"]
        assert "h-2" not in await effects(pg_dsn)

        # When the handler is fixed and every dead letter of the service is replayed
        broken.clear()
        out = io.StringIO()
        assert await replay_letters(nats_url, pg_dsn, None, service="probe", out=out,
                                    creds=creds_for(nats_url)) == 0
        assert "replayed" in out.getvalue() and "1 replayed" in out.getvalue()

        # Then it took effect once, the dead letter is gone, and the inbox says applied
        assert await effects(pg_dsn) == {"h-1": 1, "h-2": 1, "h-3": 1}
        assert await letters(pg_dsn) == []
        inbox = await rows(pg_dsn, "SELECT parked FROM probe.inbox WHERE event_id = $1", ids[1])
        assert inbox == [{"parked": False}]

        # And the same id again is no longer there (exit 1); nothing is applied twice
        out = io.StringIO()
        assert await replay_letters(nats_url, pg_dsn, {"probe": [letter["id"]]}, out=out,
                                    creds=creds_for(nats_url)) == 1
        assert "not found" in out.getvalue()
        assert await effects(pg_dsn) == {"h-1": 1, "h-2": 1, "h-3": 1}
        empty = io.StringIO()
        assert await list_letters(pg_dsn, "probe", None, out=empty) == 0 and empty.getvalue() == ""


async def test_a_dead_letter_whose_event_the_inbox_says_applied_is_dropped_without_running(nats_url, pg_dsn):
    broken = {"h-9"}
    async with running(probe_spec(broken), nats_url, pg_dsn, park_after=2):
        [event_id] = await publish_households(nats_url, ["h-9"])
        [letter] = await eventually(lambda: letters(pg_dsn), what="the message parked")
        # The event was applied meanwhile (e.g. parked only because its acknowledgement kept failing)
        await rows(pg_dsn, "UPDATE probe.inbox SET parked = false WHERE event_id = $1", event_id)
        broken.clear()
        out = io.StringIO()
        assert await replay_letters(nats_url, pg_dsn, {"probe": [letter["id"]]}, out=out,
                                    creds=creds_for(nats_url)) == 0
        assert "already applied" in out.getvalue()
        assert await letters(pg_dsn) == [] and await effects(pg_dsn) == {}


async def test_replay_needs_the_service_running(nats_url, pg_dsn):
    out = io.StringIO()
    assert await replay_letters(nats_url, pg_dsn, {"probe": [1]}, out=out, creds=creds_for(nats_url)) == 1
    assert "no probe service answers" in out.getvalue()


def test_ids_name_their_service():
    assert parse_ids(["quarantine:3", "quarantine:4"], None) == {"quarantine": [3, 4]}
    assert parse_ids(["3", "logistics:5"], "logistics") == {"logistics": [3, 5]}
    for bad, service in ((["3"], None), (["quarantine:x"], None), (["checkpoint:1"], "logistics")):
        with pytest.raises(ValueError):
            parse_ids(bad, service)


async def _applied(pg_dsn: str, n: int) -> bool:
    return len(await effects(pg_dsn)) >= n


async def test_a_parked_reaction_is_replayed_through_its_services_runtime(nats_url, pg_dsn):
    from services.registry.app import spec as registry_spec
    from tests.support.cordon import Client, community, household, resident
    from tests.support.quarantine import quarantine

    async with running(registry_spec(), nats_url, pg_dsn), quarantine(nats_url, pg_dsn, park_after=2) as host:
        # Given the quarantine service's runtime failing while ArrivalVerified comes: the reaction is parked
        async def broken_runtime(name, cmd):
            return {"ok": False, "error": {"code": "internal", "message": "a bug in open_case"}}

        host.execute = broken_runtime
        async with await connect(nats_url) as nc:
            registry = Client(nc)
            await community(registry)
            r = await resident(registry, await household(registry, building="b2"))
            arrival = await registry.ok("register_arrival", resident=r, origin="Wuhan", arrived_on="2020-01-30",
                                        transport={"kind": "train", "number": "G1722"}, visited=[],
                                        city_class="A", risk_area_visited=True)
            await registry.ok("verify_arrival", arrival=arrival["events"][0]["data"]["arrival"],
                              outcome="home_quarantine", documents_checked=True)
        [letter] = await eventually(lambda: _quarantine_letters(pg_dsn), what="the reaction parked")
        assert letter["consumer"] == "quarantine-arrivals" and "a bug in open_case" in letter["error"]
        assert await host.pool.fetchval("SELECT count(*) FROM quarantine.cases") == 0

        # When the fix is deployed and the consumer's letters are replayed
        del host.execute
        out = io.StringIO()
        assert await replay_letters(nats_url, pg_dsn, None, "quarantine", "quarantine-arrivals", out=out,
                                    creds=creds_for(nats_url)) == 0

        # Then the case is opened, once, and the letter is gone
        assert "replayed (quarantine-arrivals, ArrivalVerified" in out.getvalue()
        assert await host.pool.fetchval("SELECT count(*) FROM quarantine.cases") == 1
        assert await _quarantine_letters(pg_dsn) == []


async def _quarantine_letters(pg_dsn: str) -> list[dict]:
    return await rows(pg_dsn, "SELECT consumer, error FROM quarantine.dead_letters")


async def test_a_record_from_before_marks_its_parked_events_once(pg_dsn):
    applied, parked = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
    conn = await asyncpg.connect(pg_dsn)
    try:
        # Given an inbox from before the mark: one event applied, one parked (it has a dead letter)
        await conn.execute("CREATE SCHEMA IF NOT EXISTS probe")
        await conn.execute(store.consumer_ddl("probe").split("-- A parked message's inbox row")[0])
        await conn.execute("INSERT INTO probe.inbox (consumer, event_id) VALUES ('c', $1), ('c', $2)", applied, parked)
        await conn.execute("INSERT INTO probe.dead_letters (consumer, event_id, subject, payload, error, attempts) "
                           "VALUES ('c', $1, 's', '', 'e', 5)", parked)
        # When the service starts on it: the parked event's row says so
        await store.migrate(conn, "probe", record=False)
        assert dict(await conn.fetch("SELECT event_id::text, parked FROM probe.inbox")) == {applied: False, parked: True}
        # And a later start changes nothing (here the letter was replayed meanwhile)
        await conn.execute("UPDATE probe.inbox SET parked = false")
        await store.migrate(conn, "probe", record=False)
        assert dict(await conn.fetch("SELECT event_id::text, parked FROM probe.inbox")) == {applied: False, parked: False}
    finally:
        await conn.close()
