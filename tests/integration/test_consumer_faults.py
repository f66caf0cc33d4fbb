"""A consumer under database faults, on real NATS and PostgreSQL: a stream's events take effect in
order, and a failure that is not the event's fault parks nothing."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import asyncpg
import nats
import pytest

from shared import bus, store
from shared.consumer import Consumer
from shared.contracts.registry import HouseholdRegistered, ResidentMovedOut
from tests.support.cordon import COMMUNITY, eventually, publish_events

pytestmark = pytest.mark.integration

AT = datetime(2020, 2, 1, tzinfo=timezone.utc)
APPLIED = "CREATE TABLE IF NOT EXISTS probe.applied (n serial PRIMARY KEY, event_id uuid NOT NULL, type text NOT NULL)"


async def probe_pool(pg_dsn: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await store.migrate(conn, "probe", APPLIED)
    return pool


def failing(times: int, error: Exception, failed: asyncio.Event):
    """A handler whose first ``times`` calls fail with ``error``, as if the database went away
    under it; then it records what it applies, in order."""
    calls = {"n": 0}

    async def handle(conn, raw, event):
        calls["n"] += 1
        if calls["n"] <= times:
            failed.set()
            raise error
        await conn.execute("INSERT INTO probe.applied (event_id, type) VALUES ($1, $2)", raw.event_id, raw.type)

    return handle


async def publish(nats_url: str, event, version: int = 1) -> str:
    [envelope] = await publish_events(nats_url, [event], occurred_at=AT, actor="staff:li-wei",
                                      stream_ids=["household:h-1"], versions=[version])
    return envelope.event_id


def registered():
    return HouseholdRegistered(community=COMMUNITY, compound="nangong-1", building="b1", household="h-1",
                               address="room 1", registered_at=AT, registered_by="staff:li-wei")


def moved_out():
    return ResidentMovedOut(community=COMMUNITY, resident="r-1", household="h-1", compound="nangong-1",
                            building="b1", moved_out_at=AT, moved_out_by="staff:li-wei")


async def applied(pool) -> list[str]:
    return [r["type"] for r in await pool.fetch("SELECT type FROM probe.applied ORDER BY n")]


async def test_after_a_database_blip_a_streams_events_still_take_effect_in_order(nats_url, pg_dsn):
    # Given a consumer whose database drops the connection while it applies the first event
    pool, failed = await probe_pool(pg_dsn), asyncio.Event()
    nc = await nats.connect(nats_url)
    await bus.ensure_stream(nc.jetstream())
    consumer = Consumer(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=nc,
                        handle=failing(1, ConnectionResetError("connection reset by peer"), failed),
                        ack_wait=2.0)
    await consumer.start()
    try:
        await publish(nats_url, registered())
        await asyncio.wait_for(failed.wait(), 10)
        # When the stream's next event arrives while the first one is still not applied
        await publish(nats_url, moved_out(), version=2)
        await eventually(lambda: _has(pool, 2), what="both events applied")
        await asyncio.sleep(2.5)  # past ack_wait: a redelivery would show up now
    finally:
        await consumer.stop()
        await nc.close()
    # Then they took effect in the stream's order, once each
    assert await applied(pool) == ["HouseholdRegistered", "ResidentMovedOut"]
    await pool.close()


@pytest.mark.parametrize("error", [
    asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
], ids=["too_many_connections", "read_only_after_failover", "starting_up"])
async def test_a_database_that_is_not_ready_parks_nothing(nats_url, pg_dsn, error):
    # Given a consumer that may park an event after 3 attempts, and a database that refuses 6 times
    pool, failed = await probe_pool(pg_dsn), asyncio.Event()
    nc = await nats.connect(nats_url)
    await bus.ensure_stream(nc.jetstream())
    consumer = Consumer(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=nc,
                        handle=failing(6, error, failed), park_after=3, retry_delay=0.01)
    await consumer.start()
    try:
        # When an event arrives
        await publish(nats_url, registered())
        await eventually(lambda: _has(pool, 1), timeout=20, what="the event applied")
    finally:
        await consumer.stop()
        await nc.close()
    # Then it was applied once the database came round, and nothing was parked
    assert await applied(pool) == ["HouseholdRegistered"]
    assert await pool.fetchval("SELECT count(*) FROM probe.dead_letters") == 0 and consumer.parked == 0
    await pool.close()


async def _has(pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM probe.applied") >= n
