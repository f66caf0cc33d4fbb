"""A consumer under database faults, on real NATS and PostgreSQL: a stream's events take effect in
order, and a failure that is not the event's fault parks nothing."""
from __future__ import annotations

import asyncio
import random
from datetime import datetime, timezone

import asyncpg
import pytest

from shared import bus, store
from shared.consumer import Consumer
from shared.pull import Puller
from shared.contracts.registry import HouseholdRegistered, ResidentMovedOut
from tests.support.bus import connect, creds_for
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
                               registered_at=AT, registered_by="staff:li-wei")


def moved_out():
    return ResidentMovedOut(community=COMMUNITY, resident="r-1", household="h-1", compound="nangong-1",
                            building="b1", moved_out_at=AT, moved_out_by="staff:li-wei")


async def applied(pool) -> list[str]:
    return [r["type"] for r in await pool.fetch("SELECT type FROM probe.applied ORDER BY n")]


async def test_after_a_database_blip_a_streams_events_still_take_effect_in_order(nats_url, pg_dsn):
    # Given a consumer whose database drops the connection while it applies the first event
    pool, failed = await probe_pool(pg_dsn), asyncio.Event()
    nc = await connect(nats_url)
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
    nc = await connect(nats_url)
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


async def test_a_lead_connection_the_server_ended_while_idle_is_replaced_and_the_next_event_applied(nats_url, pg_dsn):
    # Given a consumer that leads (its advisory lock on a pooled connection) and has applied an event
    pool, failed = await probe_pool(pg_dsn), asyncio.Event()
    nc = await connect(nats_url)
    await bus.ensure_stream(nc.jetstream())
    consumer = Consumer(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=nc,
                        handle=failing(0, RuntimeError("unused"), failed))
    await consumer.start()
    try:
        await publish(nats_url, registered())
        await eventually(lambda: _has(pool, 1), what="the first event applied")
        # When the server ends that connection while the consumer waits for messages (as a
        # PostgreSQL restart does): asyncpg then hands the pooled connection back, and every call
        # on the consumer's handle to it fails, is_closed() included
        ended = await pool.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory'")
        assert ended == 1
        await asyncio.sleep(0.3)
        # And the stream's next event arrives
        await publish(nats_url, moved_out(), version=2)
        # Then the consumer leads again on another connection and applies it
        await eventually(lambda: _has(pool, 2), timeout=10, what="the second event applied")
    finally:
        await consumer.stop()
        await nc.close()
    assert await applied(pool) == ["HouseholdRegistered", "ResidentMovedOut"]
    await pool.close()


async def test_after_nats_restarts_an_event_lost_on_its_way_takes_effect_before_the_streams_next(nats_server, pg_dsn):
    # Given a consumer that never saw the first event of a stream, though JetStream delivered it
    # (it was on its way when NATS went down: JetStream holds it unacknowledged until ack_wait)
    pool, lost = await probe_pool(pg_dsn), asyncio.Event()

    class LosesTheFirstBatch(Consumer):
        async def _process(self, msgs):
            if not lost.is_set():
                lost.set()
                return  # neither applied nor acknowledged
            await super()._process(msgs)

    nc = await bus.connect(nats_server.url, "test.consumer", creds_for(nats_server.url))
    await bus.ensure_stream(nc.jetstream())
    consumer = LosesTheFirstBatch(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=nc,
                                  handle=failing(0, RuntimeError("unused"), asyncio.Event()))
    await consumer.start()
    try:
        await publish(nats_server.url, registered())
        await asyncio.wait_for(lost.wait(), 10)
        # When NATS restarts, and the stream's next event arrives
        await nats_server.stop()
        await nats_server.start()
        await publish(nats_server.url, moved_out(), version=2)
        # Then the lost event takes effect first (it would come back only after ack_wait, 30 s,
        # behind the next one, were the consumer to go on pulling as before)
        await eventually(lambda: _has(pool, 2), timeout=45, what="both events applied")
    finally:
        await consumer.stop()
        await nc.close()
    assert await applied(pool) == ["HouseholdRegistered", "ResidentMovedOut"]
    await pool.close()


async def _has(pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM probe.applied") >= n


class LosesTheThird(Puller):
    """A puller whose third delivery never reaches it, as when the node leading a consumer dies with
    a delivery in its buffers: the consumer counts it delivered and unacknowledged, and goes on."""

    lost: list[int] = []

    async def _received(self, msg) -> None:
        if msg.reply and not (msg.headers and msg.headers.get("Status")):
            if msg.metadata.sequence.consumer == 3 and not self.lost:
                self.lost.append(msg.metadata.sequence.stream)
                return
        await super()._received(msg)


async def test_a_delivery_lost_on_its_way_is_not_skipped(nats_url, pg_dsn, monkeypatch):
    # Given a consumer whose third delivery is lost on its way to it
    monkeypatch.setattr("shared.consumer.Puller", LosesTheThird)
    LosesTheThird.lost = []
    pool = await probe_pool(pg_dsn)
    nc = await connect(nats_url)
    await bus.ensure_stream(nc.jetstream())

    async def handle(conn, raw, event):
        await conn.execute("INSERT INTO probe.applied (event_id, type) VALUES ($1, $2)", raw.event_id,
                           f"v{raw.stream_version}")

    consumer = Consumer(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=nc, handle=handle,
                        ack_wait=2.0)
    await consumer.start()
    try:
        # When a stream's four events arrive
        await publish_events(nats_url, [registered() for _ in range(4)], occurred_at=AT, actor="staff:li-wei",
                             stream_ids=["household:h-1"] * 4, versions=[1, 2, 3, 4])
        await eventually(lambda: _has(pool, 4), timeout=20, what="every event applied")
        await asyncio.sleep(2.5)  # past ack_wait: a late redelivery would show up now
    finally:
        await consumer.stop()
        await nc.close()
    # Then the lost one was not skipped: the consumer went back for it before applying the fourth
    assert LosesTheThird.lost == [3]
    assert await applied(pool) == ["v1", "v2", "v3", "v4"]
    await pool.close()


async def test_acknowledgements_lost_on_their_way_do_not_wait_for_ack_wait(nats_url, pg_dsn):
    # Given a consumer whose first acknowledgements are lost on their way (a node of the cluster
    # died with them), and an ack_wait far longer than the test
    class LosesItsFirstAcks(Consumer):
        lost = False

        async def _ack(self, msgs):
            if not self.lost:
                self.lost = True
                for msg in msgs:
                    msg.reply = "nowhere." + msg.reply  # sent, and received by no one
            await super()._ack(msgs)

    pool = await probe_pool(pg_dsn)
    nc = await connect(nats_url)
    await bus.ensure_stream(nc.jetstream())

    async def handle(conn, raw, event):
        await conn.execute("INSERT INTO probe.applied (event_id, type) VALUES ($1, $2)", raw.event_id, raw.type)

    consumer = LosesItsFirstAcks(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=nc,
                                 handle=handle, ack_wait=120.0)
    await consumer.start()
    try:
        # When a stream's events are applied and the consumer falls idle
        await publish_events(nats_url, [registered() for _ in range(3)], occurred_at=AT, actor="staff:li-wei",
                             stream_ids=["household:h-1"] * 3, versions=[1, 2, 3])
        await eventually(lambda: _has(pool, 3), timeout=20, what="every event applied")
        # Then the server sees them acknowledged long before ack_wait, and none was applied twice
        await eventually(lambda: _acknowledged(nc), timeout=20, what="the server to count every event acknowledged")
        assert consumer.lost
    finally:
        await consumer.stop()
        await nc.close()
    assert await pool.fetchval("SELECT count(DISTINCT event_id) FROM probe.applied") == 3
    assert await pool.fetchval("SELECT count(*) FROM probe.applied") == 3
    await pool.close()


async def _acknowledged(nc) -> bool:
    info = await nc.jetstream().consumer_info("CORDON", "probe")
    return info.num_ack_pending == 0 and info.num_pending == 0


# -- replicas -------------------------------------------------------------------------------------


def ordered(applied_rows) -> dict[str, list[int]]:
    by_stream: dict[str, list[int]] = {}
    for row in applied_rows:
        by_stream.setdefault(row["stream_id"], []).append(row["version"])
    return by_stream


async def test_two_replicas_of_a_consumer_apply_every_streams_events_in_order_once(nats_url, pg_dsn):
    # Given 4 streams of 150 events each, interleaved on the stream, and two replicas of one
    # consumer whose effects take a moment (more or less, as a database's do)
    pool = await asyncpg.create_pool(pg_dsn, min_size=2, max_size=8)
    async with pool.acquire() as conn:
        await store.migrate(conn, "probe", "CREATE TABLE IF NOT EXISTS probe.seen (n serial PRIMARY KEY, "
                                           "event_id uuid NOT NULL, stream_id text NOT NULL, version int NOT NULL)")
    jitter = random.Random(7)

    async def handle(conn, raw, event):
        await asyncio.sleep(jitter.random() * 0.004)
        await conn.execute("INSERT INTO probe.seen (event_id, stream_id, version) VALUES ($1, $2, $3)",
                           raw.event_id, raw.stream_id, raw.stream_version)

    count = 600
    streams = [f"household:h-{i % 4}" for i in range(count)]
    versions = [i // 4 + 1 for i in range(count)]
    ncs = [await connect(nats_url) for _ in range(2)]
    await bus.ensure_stream(ncs[0].jetstream())
    replicas = [Consumer(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=nc, handle=handle,
                         batch=5) for nc in ncs]
    for replica in replicas:
        await replica.start()
    try:
        # When the events arrive while both run
        await publish_events(nats_url, [registered() for _ in range(count)], occurred_at=AT, actor="staff:li-wei",
                             stream_ids=streams, versions=versions)
        await eventually(lambda: _seen(pool, count), timeout=60, what="every event applied")
        await asyncio.sleep(1.0)
    finally:
        for replica, nc in zip(replicas, ncs):
            await replica.stop()
            await nc.close()
    rows = await pool.fetch("SELECT event_id, stream_id, version FROM probe.seen ORDER BY n")
    await pool.close()
    # Then each event took effect once, and each stream's in order
    assert len(rows) == count and len({r["event_id"] for r in rows}) == count
    assert all(v == list(range(1, count // 4 + 1)) for v in ordered(rows).values())


async def test_when_the_active_replica_dies_the_other_takes_over_in_order(nats_url, pg_dsn):
    # Given two replicas, the active one killed after committing a batch and before acknowledging it
    pool = await asyncpg.create_pool(pg_dsn, min_size=2, max_size=8)
    async with pool.acquire() as conn:
        await store.migrate(conn, "probe", "CREATE TABLE IF NOT EXISTS probe.seen (n serial PRIMARY KEY, "
                                           "event_id uuid NOT NULL, stream_id text NOT NULL, version int NOT NULL)")
    committed = asyncio.Event()

    class DiesBeforeAck(Consumer):
        async def _ack(self, msgs):
            committed.set()
            await asyncio.Event().wait()

    async def handle(conn, raw, event):
        await conn.execute("INSERT INTO probe.seen (event_id, stream_id, version) VALUES ($1, $2, $3)",
                           raw.event_id, raw.stream_id, raw.stream_version)

    events = [registered() for _ in range(60)]
    streams = [f"household:h-{i % 3}" for i in range(60)]
    versions = [i // 3 + 1 for i in range(60)]
    ncs = [await connect(nats_url) for _ in range(2)]
    await bus.ensure_stream(ncs[0].jetstream())
    await publish_events(nats_url, events, occurred_at=AT, actor="staff:li-wei", stream_ids=streams, versions=versions)
    dying = DiesBeforeAck(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=ncs[0],
                          handle=handle, batch=10)
    await dying.start()
    await asyncio.wait_for(committed.wait(), 10)
    other = Consumer(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=ncs[1], handle=handle,
                     batch=10)
    other.standby_poll = 0.1
    await other.start()
    try:
        await eventually(lambda: _standby(other), what="the second replica waiting")
        # When the active one dies
        await dying.stop()
        # Then the other leads, at once, and everything is applied once, in order
        await eventually(lambda: _seen(pool, 60), timeout=20, what="every event applied")
        await asyncio.sleep(1.0)
        assert await other.lag() == 0
    finally:
        await other.stop()
        for nc in ncs:
            await nc.close()
    rows = await pool.fetch("SELECT event_id, stream_id, version FROM probe.seen ORDER BY n")
    await pool.close()
    assert len(rows) == 60 and len({r["event_id"] for r in rows}) == 60
    assert all(v == list(range(1, 21)) for v in ordered(rows).values())


async def _seen(pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM probe.seen") >= n


async def _standby(consumer: Consumer) -> bool:
    return consumer.standby
