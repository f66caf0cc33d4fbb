"""Durable consumers on a 3-node NATS cluster (CORDON and the consumers with 3 replicas): created
while the cluster has lost its quorum, they wait for it; rewound to their ack floor while a node is
down (the one leading the consumer), they stay the consumers they were and apply every stream's
events once, in order."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import asyncpg
import nats
import pytest

from shared import store
from shared.bus import ensure_stream, patiently
from shared.consumer import Consumer
from shared.contracts.registry import HouseholdRegistered
from shared.embedded_cluster import EmbeddedNatsCluster
from shared.subjects import STREAM
from tests.support import bus
from tests.support.cordon import COMMUNITY, eventually, publish_events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

AT = datetime(2020, 2, 1, tzinfo=timezone.utc)
SEEN = ("CREATE TABLE IF NOT EXISTS probe.seen (n serial PRIMARY KEY, event_id uuid NOT NULL, "
        "stream_id text NOT NULL, version int NOT NULL)")


def registered() -> HouseholdRegistered:
    return HouseholdRegistered(community=COMMUNITY, compound="nangong-1", building="b1", household="h-1",
                               registered_at=AT, registered_by="staff:li-wei")


async def record(conn, raw, event) -> None:
    await conn.execute("INSERT INTO probe.seen (event_id, stream_id, version) VALUES ($1, $2, $3)",
                       raw.event_id, raw.stream_id, raw.stream_version)


async def connect(cluster: EmbeddedNatsCluster):
    return await bus.connect(cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1)


async def test_a_durable_consumer_started_while_the_cluster_has_no_quorum_waits_for_it(
        nats_cluster: EmbeddedNatsCluster, pg_dsn: str) -> None:
    nc = await connect(nats_cluster)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    consumer = Consumer(name="test-directory", schema="public", subjects=["cordon.evt.>"], handle=None,
                        pool=pool, nc=nc)
    starting = None
    try:
        await ensure_stream(nc.jetstream(timeout=5), replicas=3)
        # Given two of the three nodes down: JetStream cannot place or create anything
        nats_cluster.kill(1)
        nats_cluster.kill(2)
        # When a durable consumer is created (as a service's start does)
        starting = asyncio.create_task(consumer.start())
        await asyncio.sleep(6.0)  # longer than a JetStream request waits for its answer (5 s)
        # Then it waits rather than failing, and exists once a second node is back
        assert not starting.done() or starting.exception() is None, starting.exception()
        await nats_cluster.start_node(1)
        await asyncio.wait_for(asyncio.shield(starting), 60)
        # (its info may time out while the consumer, just placed, elects its leader: asked patiently)
        info = await patiently(lambda: nc.jetstream(timeout=5).consumer_info(STREAM, "test-directory"), "info")
        assert info.config.num_replicas in (0, 3)
    finally:
        if starting is not None and not starting.done():
            starting.cancel()
        await asyncio.gather(*([starting] if starting else []), return_exceptions=True)
        await consumer.stop()
        await pool.close()
        await nc.close()


async def test_a_consumer_rewound_while_its_leader_s_node_is_down_stays_itself_and_goes_on_in_order(
        nats_cluster: EmbeddedNatsCluster, pg_dsn: str) -> None:
    pool = await asyncpg.create_pool(pg_dsn, min_size=2, max_size=8)
    async with pool.acquire() as conn:
        await store.migrate(conn, "probe", SEEN)
    committed = asyncio.Event()

    class DiesBeforeAck(Consumer):
        async def _ack(self, msgs):
            committed.set()
            await asyncio.Event().wait()

    ncs = [await connect(nats_cluster) for _ in range(2)]
    await ensure_stream(ncs[0].jetstream(timeout=5), replicas=3)
    streams = [f"household:h-{i % 3}" for i in range(60)]
    await publish_events(nats_cluster.url(0), [registered() for _ in range(60)], occurred_at=AT, actor="staff:li-wei",
                         stream_ids=streams, versions=[i // 3 + 1 for i in range(60)])
    # Given a consumer that committed a batch and died before acknowledging it
    dying = DiesBeforeAck(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=ncs[0],
                          handle=record, batch=10)
    await dying.start()
    other = Consumer(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=ncs[1], handle=record,
                     batch=10)
    try:
        await asyncio.wait_for(committed.wait(), 20)
        await dying.stop()
        js = ncs[1].jetstream(timeout=5)
        before = await js.consumer_info(STREAM, "probe")
        assert before.num_ack_pending >= 10  # its batch, and what else it had been sent
        # And the node leading the consumer down, long enough for the cluster to count it offline
        down = nats_cluster.index(before.cluster.leader)
        nats_cluster.kill(down)
        await eventually(lambda: offline(js, nats_cluster.nodes[down].name), timeout=30, what="the node offline")
        # When another instance takes over: it rewinds the consumer to its ack floor
        await other.start()
        await eventually(lambda: seen(pool, 60), timeout=30, what="every event applied")
        await asyncio.sleep(1.0)
        # Then the consumer is the same one (not deleted and made again: that needs every node up)
        after = await js.consumer_info(STREAM, "probe")
        assert after.created == before.created and after.config.num_replicas == before.config.num_replicas
        assert after.num_pending == 0 and after.num_ack_pending == 0
    finally:
        await other.stop()
        for nc in ncs:
            await nc.close()
    # And every event took effect once, each stream's in order
    rows = await pool.fetch("SELECT event_id, stream_id, version FROM probe.seen ORDER BY n")
    await pool.close()
    assert len(rows) == 60 and len({r["event_id"] for r in rows}) == 60
    by_stream: dict[str, list[int]] = {}
    for row in rows:
        by_stream.setdefault(row["stream_id"], []).append(row["version"])
    assert all(versions == list(range(1, 21)) for versions in by_stream.values()), by_stream


async def offline(js, name: str) -> bool:
    """The stream's leader counts node `name` offline (or not current) in its replicas."""
    try:
        info = await js.stream_info(STREAM)
    except nats.errors.TimeoutError:  # the stream is electing a new leader
        return False
    return any(r.name == name and (r.offline or not r.current) for r in info.cluster.replicas or [])


async def seen(pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM probe.seen") >= n
