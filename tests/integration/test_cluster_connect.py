"""A service given a 3-node cluster's comma-separated URL list connects, makes CORDON a 3-replica
stream, and when the node its connections use is killed carries on through another node: commands
answered, events published. A service started while the cluster has lost its quorum waits for it."""
from __future__ import annotations

import asyncio
import json

import asyncpg
import nats
import pytest

from services.checkpoint.app import spec as checkpoint_spec
from services.registry.app import spec
from shared.bus import ensure_stream
from shared.embedded_cluster import EmbeddedNatsCluster
from shared.service import ServiceHost, gather_health
from shared.subjects import STREAM
from tests.support.bus import connect, operator_config
from tests.support.cordon import COMMUNITY, eventually, running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


async def register(nc, i: int) -> dict | None:
    body = {"command_id": f"c-{i}", "actor": "staff:li-wei", "community": COMMUNITY, "compound": f"nangong-{i}",
            "name": "南宫小区", "buildings": ["b1"], "gates": ["g1"]}
    try:
        msg = await nc.request("cordon.cmd.registry.register_compound", json.dumps(body).encode(), timeout=1)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        return None
    return json.loads(msg.data)


async def test_a_service_on_the_cluster_url_list_carries_on_when_its_node_dies(
        nats_cluster: EmbeddedNatsCluster, pg_dsn: str) -> None:
    # Given the registry started with the cluster's URL list and 3 stream replicas
    async with running(spec(), nats_cluster.urls, pg_dsn, stream_replicas=3) as host:
        nc = await connect(nats_cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        try:
            js = nc.jetstream(timeout=5)
            assert (await js.stream_info(STREAM)).config.num_replicas == 3
            assert (await register(nc, 1))["ok"]
            # When the node its command connection is on is killed (-9)
            port = host.cmd_nc.connected_url.port
            down = next(i for i, node in enumerate(nats_cluster.nodes) if node.port == port)
            nats_cluster.kill(down)
            # Then it answers again through another node (the same command_id until a reply comes)
            reply = await eventually(lambda: register(nc, 2), timeout=30, what="a reply after the node died")
            assert reply["ok"], reply
            # (the relay's connection comes back on its own schedule: a reply needs only the command one)
            await eventually(lambda: on_another_node(host, port), timeout=30, what="both connections elsewhere")
            await eventually(lambda: answers_health(nc, "registry"), timeout=30, what="health through another node")
            # And both events reach the stream (the relay published through another node too)
            conn = await asyncpg.connect(pg_dsn)
            try:
                await eventually(lambda: outbox_empty(conn), timeout=30, what="the outbox to drain")
            finally:
                await conn.close()
            assert (await js.stream_info(STREAM)).state.messages == 2
        finally:
            await nc.close()


async def on_another_node(host, port: int) -> bool:
    return all(nc.is_connected and nc.connected_url.port != port for nc in (host.cmd_nc, host.nc))


async def outbox_empty(conn) -> bool:
    return await conn.fetchval("SELECT count(*) FROM registry.outbox") == 0


async def answers_health(nc, service: str) -> bool:
    return bool((await gather_health(nc)).get("services", {}).get(service))


async def test_a_service_started_while_the_cluster_has_no_quorum_comes_up_once_it_is_back(
        nats_cluster: EmbeddedNatsCluster, pg_dsn: str) -> None:
    nc = await connect(nats_cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    try:
        await ensure_stream(nc.jetstream(timeout=5), replicas=3)
    finally:
        await nc.close()
    # Given two of the three nodes down: no quorum, no leader, JetStream answers nothing
    nats_cluster.kill(1)
    nats_cluster.kill(2)
    # When a service with durable consumers starts (checkpoint: its directory and its quarantine copies)
    host = ServiceHost(checkpoint_spec(), operator_config(nats_cluster.urls, pg_dsn=pg_dsn,
                                                                  stream_replicas=3))
    starting = asyncio.create_task(host.start())
    try:
        await asyncio.sleep(6.0)  # longer than a JetStream request waits for its answer (5 s)
        # Then it waits rather than dying
        assert not starting.done() or starting.exception() is None, starting.exception()
        # And once a second node is back it finishes starting and answers
        await nats_cluster.start_node(1)
        await asyncio.wait_for(asyncio.shield(starting), 60)
        nc = await connect(nats_cluster.urls)
        try:
            await eventually(lambda: answers_health(nc, "checkpoint"), timeout=30, what="checkpoint on health")
            # and its durable consumers are made (a consumer still retrying when start returned,
            # while the new leader settles, follows within moments: under a loaded machine, seconds)
            async def both() -> bool:
                names = {info.name for info in await nc.jetstream(timeout=5).consumers_info(STREAM)}
                return {"checkpoint-directory", "checkpoint-quarantine"} <= names
            await eventually(both, timeout=30, what="checkpoint-directory and checkpoint-quarantine on the stream")
        finally:
            await nc.close()
    finally:
        if not starting.done():
            starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await host.stop()

