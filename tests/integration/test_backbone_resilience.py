"""Nothing accepted is lost, nothing is applied twice: outages and crashes on real NATS + PostgreSQL."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import asyncpg
import pytest

from services.registry.app import spec
from shared import bus, store
from shared import envelope as env
from shared.consumer import Consumer
from shared.contracts.registry import HouseholdRegistered
from shared.relay import Relay
from tests.support.bus import connect
from tests.support.cordon import publish_events  # noqa: E402
from tests.support.cordon import COMMUNITY, Client, community, read_stream, running

pytestmark = pytest.mark.integration

EFFECTS = """CREATE TABLE IF NOT EXISTS probe.effects (
    event_id uuid PRIMARY KEY, stream_seq bigint, applied integer NOT NULL)"""


async def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)


async def recorded_event_ids(pg_dsn: str) -> list[str]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT event_id::text FROM registry.events ORDER BY position")
        return [r[0] for r in rows]
    finally:
        await conn.close()


async def outbox_empty(pg_dsn: str) -> bool:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM registry.outbox") == 0
    finally:
        await conn.close()


async def test_nats_killed_mid_run_every_committed_event_arrives_once_in_order(nats_server, pg_dsn):
    async with running(spec(), nats_server.url, pg_dsn):
        nc = await connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        client = Client(nc)
        await community(client)
        accepted = 0
        for i in range(240):
            if i == 80:
                nats_server.kill()
            if i == 120:
                await nats_server.start()
            try:
                reply = await client.raw("register_household", json.dumps({
                    "command_id": f"h-{i}", "actor": "staff:li-wei", "community": COMMUNITY,
                    "compound": "nangong-1", "building": "b1", "address": f"b1 room {i}",
                }).encode(), timeout=0.5)
                accepted += reply["ok"]
            except Exception:
                await asyncio.sleep(0.02)  # no reply while NATS is down: the integrator retries later
        await wait_until(lambda: outbox_empty(pg_dsn))
        await nc.close()
    recorded = await recorded_event_ids(pg_dsn)
    assert accepted >= 150 and len(recorded) >= accepted + 1
    published = [json.loads(m.data)["event_id"] for m in await read_stream(nats_server.url, len(recorded))]
    assert published == recorded  # every committed event, once, in commit order


class CrashBeforeDelete(Relay):
    async def _delete(self, conn, positions):
        raise RuntimeError("relay killed between publish and delete")


async def test_relay_killed_between_publish_and_delete_sends_no_duplicate(nats_url, pg_dsn):
    async with running(spec(), nats_url, pg_dsn) as host:
        await host.relay.stop()  # this instance's relay is "down": events stay in the outbox
        nc = await connect(nats_url)
        client = Client(nc)
        await community(client)
        for i in range(20):
            await client.ok("register_household", community=COMMUNITY, compound="nangong-1",
                            building="b2", address=f"b2 room {i}")
        crashing = CrashBeforeDelete(service="registry", pool=host.pool, nc=host.nc)
        async with host.pool.acquire() as conn:
            with pytest.raises(RuntimeError, match="killed"):
                await crashing.publish_once(conn)
            assert await store.outbox_depth(conn, "registry") == 21  # published, not deleted
        restarted = Relay(service="registry", pool=host.pool, nc=host.nc)
        await restarted.start()
        await wait_until(lambda: outbox_empty(pg_dsn))
        await restarted.stop()
        await nc.close()
    recorded = await recorded_event_ids(pg_dsn)
    published = [json.loads(m.data)["event_id"] for m in await read_stream(nats_url, 42, timeout=1.0)]
    assert published == recorded and len(recorded) == 21


async def test_without_the_event_stream_the_relay_keeps_every_row_and_says_why(nats_url, pg_dsn):
    async with running(spec(), nats_url, pg_dsn) as host:
        await host.relay.stop()
        nc = await connect(nats_url)
        js = nc.jetstream()
        await js.delete_stream("CORDON")
        await community(Client(nc))
        relay = Relay(service="registry", pool=host.pool, nc=host.nc, ack_timeout=2.0)
        async with host.pool.acquire() as conn:
            with pytest.raises(RuntimeError, match="no stream captures"):
                await relay.publish_once(conn)
            assert await store.outbox_depth(conn, "registry") == 1
            # Captured by a stream that is not Cordon's: refused too, the row kept.
            await js.add_stream(name="STRAY", subjects=["cordon.evt.>"])
            with pytest.raises(RuntimeError, match="captured by stream STRAY"):
                await relay.publish_once(conn)
            assert await store.outbox_depth(conn, "registry") == 1
            await js.delete_stream("STRAY")
            await bus.ensure_stream(js)
            assert await relay.publish_once(conn) == 1
            assert await store.outbox_depth(conn, "registry") == 0
        await nc.close()
    [published] = await read_stream(nats_url, 1)
    assert json.loads(published.data)["event_id"] == (await recorded_event_ids(pg_dsn))[0]


def probe_event(n: int, stream: str | None = None, version: int = 1) -> store.NewEvent:
    return store.NewEvent(event_id=env.new_id(), stream_id=stream or f"probe:{n}", version=version,
                          type="ProbeNoted", community=COMMUNITY, recorded_at=env.utcnow(),
                          envelope=b'{"n":%d}' % n, subject=f"cordon.evt.{COMMUNITY}.registry.ProbeNoted")


async def test_rows_of_a_transaction_still_open_hold_back_the_rows_committed_after_it(nats_url, pg_dsn):
    # Two writers (lanes, replicas) take positions at insert and commit in either order.
    async with running(spec(), nats_url, pg_dsn) as host:
        await host.relay.stop()
        relay = Relay(service="registry", pool=host.pool, nc=host.nc)
        async with host.pool.acquire() as slow, host.pool.acquire() as fast, host.pool.acquire() as conn:
            async with conn.transaction():
                await store.append(conn, "registry", [probe_event(0)])
            assert await relay.publish_once(conn) == 1  # the relay has published up to here
            late = slow.transaction()
            await late.start()
            await store.append(slow, "registry", [probe_event(1)])  # takes the lower position
            async with fast.transaction():
                await store.append(fast, "registry", [probe_event(2)])
            assert await relay.publish_once(conn) == 0  # event 2 waits: an older transaction is open
            await late.commit()
            assert await relay.publish_once(conn) == 2  # event 1, then event 2
            assert await store.outbox_depth(conn, "registry") == 0
    published = [json.loads(m.data)["n"] for m in await read_stream(nats_url, 3)]
    assert published == [0, 1, 2]


async def test_a_stream_stays_in_order_however_late_its_first_event_commits(nats_url, pg_dsn):
    # A big issue_passes or a slow fsync: a stream's first event commits seconds after its insert,
    # and its next event is appended at once. The relay must publish the first one first.
    async with running(spec(), nats_url, pg_dsn) as host:
        await host.relay.stop()
        relay = Relay(service="registry", pool=host.pool, nc=host.nc)
        async with host.pool.acquire() as slow, host.pool.acquire() as other, host.pool.acquire() as conn:
            late = slow.transaction()
            await late.start()
            await store.append(slow, "registry", [probe_event(1, "probe:s", 1)])
            async with other.transaction():
                await store.append(other, "registry", [probe_event(9)])  # another stream goes on
            await relay.publish_once(conn)
            await asyncio.sleep(2.5)  # longer than any look-back for a late commit
            async with other.transaction():
                await store.append(other, "registry", [probe_event(8)])
            await relay.publish_once(conn)  # the service and its relay go on meanwhile
            await late.commit()
            async with other.transaction():
                await store.append(other, "registry", [probe_event(2, "probe:s", 2)])
            while await relay.publish_once(conn):
                pass
            await asyncio.sleep(2.5)  # and goes on polling: every row goes out in the end
            while await relay.publish_once(conn):
                pass
            assert await store.outbox_depth(conn, "registry") == 0
    published = [json.loads(m.data)["n"] for m in await read_stream(nats_url, 4)]
    assert [n for n in published if n in (1, 2)] == [1, 2]


# -- consumers -------------------------------------------------------------------------------


async def publish_households(nats_url: str, count: int) -> list[str]:
    at = datetime(2020, 2, 1, tzinfo=timezone.utc)
    events = [HouseholdRegistered(community=COMMUNITY, compound="nangong-1", building="b1", household=f"h-{i}",
                                  registered_at=at, registered_by="staff:li-wei")
              for i in range(count)]
    envs = await publish_events(nats_url, events, occurred_at=at, actor="staff:li-wei",
                                stream_ids=[f"household:h-{i}" for i in range(count)])
    return [env.event_id for env in envs]


async def effects_schema(pg_dsn: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await store.migrate(conn, "probe", EFFECTS)
    return pool


async def count_effects(pool) -> list:
    return await pool.fetch("SELECT applied FROM probe.effects")


def recording(gate: asyncio.Event | None = None, block_at: int | None = None, poison: set | None = None,
              reached: asyncio.Event | None = None):
    calls = {"n": 0}

    async def handle(conn, raw, event):
        calls["n"] += 1
        if block_at is not None and calls["n"] == block_at:
            reached.set()
            await gate.wait()  # the process "dies" here, mid-batch, before commit
        if poison and raw.event_id in poison:
            raise ValueError(f"cannot apply {event.household}")
        await conn.execute(
            "INSERT INTO probe.effects VALUES ($1, NULL, 1) "
            "ON CONFLICT (event_id) DO UPDATE SET applied = probe.effects.applied + 1",
            raw.event_id,
        )

    return handle


async def test_a_consumer_killed_mid_batch_applies_no_event_twice(nats_url, pg_dsn):
    ids = await publish_households(nats_url, 300)
    pool = await effects_schema(pg_dsn)
    nc1 = await connect(nats_url)
    stuck = asyncio.Event()
    dying = Consumer(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=nc1,
                     handle=recording(asyncio.Event(), block_at=150, reached=stuck), batch=100, ack_wait=1.0)
    await dying.start()
    await asyncio.wait_for(stuck.wait(), 20)  # earlier batches committed, this one stuck mid-way
    await dying.stop()
    await nc1.close()
    committed = len(await count_effects(pool))
    assert 0 < committed < 150  # the stuck batch's first effects were rolled back

    nc2 = await connect(nats_url)
    survivor = Consumer(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=nc2,
                        handle=recording(), batch=100, ack_wait=1.0)
    await survivor.start()
    await wait_until(lambda: _count(pool, 300))
    await asyncio.sleep(1.5)  # give any redelivery a chance to double-apply
    await survivor.stop()
    await nc2.close()
    applied = await count_effects(pool)
    assert len(applied) == len(ids) and all(a["applied"] == 1 for a in applied)
    await pool.close()


class CrashBeforeAck(Consumer):
    async def _ack(self, msgs):
        await asyncio.Event().wait()  # committed, then "killed" before acknowledging


async def test_a_consumer_killed_after_commit_before_ack_applies_no_event_twice(nats_url, pg_dsn):
    await publish_households(nats_url, 120)
    pool = await effects_schema(pg_dsn)
    nc1 = await connect(nats_url)
    dying = CrashBeforeAck(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool,
                           nc=nc1, handle=recording(), batch=50, ack_wait=1.0)
    await dying.start()
    await wait_until(lambda: _count(pool, 1))  # a batch committed; its acks never go out
    await dying.stop()
    await nc1.close()
    nc2 = await connect(nats_url)
    survivor = Consumer(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=nc2,
                        handle=recording(), batch=50, ack_wait=1.0)
    await survivor.start()
    await wait_until(lambda: _count(pool, 120))
    await wait_until(lambda: _lag_zero(survivor))
    await survivor.stop()
    await nc2.close()
    applied = await count_effects(pool)
    assert len(applied) == 120 and all(a["applied"] == 1 for a in applied)
    await pool.close()


async def test_a_poison_message_is_parked_and_the_stream_goes_on(nats_url, pg_dsn):
    ids = await publish_households(nats_url, 30)
    nc = await connect(nats_url)
    await nc.jetstream().publish(f"cordon.evt.{COMMUNITY}.registry.HouseholdRegistered", b"not json",
                                 headers={"Nats-Msg-Id": "garbage-1"})
    later = await publish_households(nats_url, 5)
    pool = await effects_schema(pg_dsn)
    consumer = Consumer(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=nc,
                        handle=recording(poison={ids[7]}), batch=10, park_after=3, retry_delay=0.01)
    await consumer.start()
    await wait_until(lambda: _count(pool, 34))
    await consumer.stop()
    await nc.close()
    parked = await pool.fetch("SELECT event_id::text, error, attempts, subject FROM probe.dead_letters ORDER BY id")
    assert [p["event_id"] for p in parked] == [ids[7], None]
    assert "cannot apply h-7" in parked[0]["error"] and parked[0]["attempts"] == 3
    assert "cannot decode" in parked[1]["error"]
    applied = {str(r["event_id"]) for r in await pool.fetch("SELECT event_id FROM probe.effects")}
    assert applied == (set(ids) - {ids[7]}) | set(later)
    await pool.close()


async def _count(pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM probe.effects") >= n


async def _lag_zero(consumer: Consumer) -> bool:
    return await consumer.lag() == 0
