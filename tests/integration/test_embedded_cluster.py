"""The embedded 3-node NATS cluster: a 3-replica stream lives on every node, a node that was down
gets what was published without it, and an acknowledged message survives losing a node and its disk."""
from __future__ import annotations

import asyncio
import shutil

import nats
import pytest
from nats.js.errors import APIError, NoStreamResponseError

from shared.bus import servers
from shared.embedded_cluster import EmbeddedNatsCluster
from tests.support.bus import connect
from tests.support.cordon import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


async def publish(js, n: int, start: int = 0) -> list[int]:
    """Publish m<start>..m<start+n-1>, each retried until acknowledged (a leader election may be
    under way); their sequences."""
    seqs = []
    for i in range(start, start + n):
        for _ in range(100):
            try:
                seqs.append((await js.publish(f"t.{i}", f"m{i}".encode(), timeout=1,
                                              headers={"Nats-Msg-Id": f"m{i}"})).seq)
                break
            except (nats.errors.TimeoutError, NoStreamResponseError, APIError):
                await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"m{i} never acknowledged")
    return seqs


async def read_all(url: str) -> list[bytes]:
    nc = await connect(url)
    try:
        js = nc.jetstream(timeout=5)
        info = await js.stream_info("T")
        return [(await js.get_msg("T", seq)).data for seq in range(1, info.state.last_seq + 1)]
    finally:
        await nc.close()


async def agreeing(cluster: EmbeddedNatsCluster, expect: tuple[int, int]):
    """Every node's own copy of T holds `expect` (messages, last sequence)."""
    states = await cluster.stream_states("T")
    return len(states) == len(cluster.nodes) and set(states.values()) == {expect}


async def test_three_nodes_hold_a_three_replica_stream(nats_cluster: EmbeddedNatsCluster) -> None:
    # Given three nodes, one client URL each, comma-separated
    assert servers(nats_cluster.urls) == [node.url for node in nats_cluster.nodes]
    assert len({node.port for node in nats_cluster.nodes}) == 3
    nc = await connect(nats_cluster.urls)
    try:
        js = nc.jetstream(timeout=5)
        # When a stream with 3 replicas is created and written to
        info = await js.add_stream(name="T", subjects=["t.>"], num_replicas=3)
        assert await publish(js, 5) == [1, 2, 3, 4, 5]
        # Then it has a leader and two current followers, and every node has its own copy
        info = await js.stream_info("T")
        assert info.config.num_replicas == 3
        assert info.cluster.leader in {n.name for n in nats_cluster.nodes}
        assert len(info.cluster.replicas) == 2
        await eventually(lambda: agreeing(nats_cluster, (5, 5)), timeout=10, what="every node's copy")
    finally:
        await nc.close()


async def test_a_message_published_while_a_node_is_down_reaches_it_when_it_is_back(
        nats_cluster: EmbeddedNatsCluster) -> None:
    nc = await connect(nats_cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    try:
        js = nc.jetstream(timeout=5)
        await js.add_stream(name="T", subjects=["t.>"], num_replicas=3)
        await publish(js, 5)
        # Given the stream leader's node killed (-9)
        down = nats_cluster.index((await js.stream_info("T")).cluster.leader)
        nats_cluster.kill(down)
        # When messages are published without it (the other two elect a leader and acknowledge)
        assert await publish(js, 5, start=5) == [6, 7, 8, 9, 10]
        assert set((await nats_cluster.stream_states("T")).values()) == {(10, 10)}
        # And the node comes back
        await nats_cluster.start_node(down)
        # Then its own copy catches up with the others, and the messages read through it are all there
        await eventually(lambda: agreeing(nats_cluster, (10, 10)), timeout=20, what="the node to catch up")
        assert await read_all(nats_cluster.url(down)) == [f"m{i}".encode() for i in range(10)]
    finally:
        await nc.close()


async def test_an_acknowledged_message_survives_losing_a_node_with_its_disk(
        nats_cluster: EmbeddedNatsCluster) -> None:
    nc = await connect(nats_cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    try:
        js = nc.jetstream(timeout=5)
        await js.add_stream(name="T", subjects=["t.>"], num_replicas=3)
        # Given messages acknowledged (an acknowledgement means a majority of the nodes stored it)
        await publish(js, 20)
        # When the leader's node is lost at once, its disk with it
        lost = nats_cluster.index((await js.stream_info("T")).cluster.leader)
        nats_cluster.kill(lost)
        shutil.rmtree(nats_cluster.nodes[lost].data_dir / "jetstream")
        # Then the two others still hold every acknowledged message, and take new ones
        assert await publish(js, 1, start=20) == [21]
        assert await read_all(nats_cluster.urls) == [f"m{i}".encode() for i in range(21)]
        # And a blank node put in its place is given the whole stream again
        await nats_cluster.start_node(lost)
        await eventually(lambda: agreeing(nats_cluster, (21, 21)), timeout=30, what="the blank node to catch up")
    finally:
        await nc.close()


async def test_a_node_whose_port_another_process_took_starts_again_on_fresh_ports(tmp_path, monkeypatch):
    # Given a port that something else listens on, handed to the last node as its client port
    # (as when another test's server binds a free port between our choice and our bind)
    import socket

    from shared import embedded_cluster
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken, chosen = squatter.getsockname()[1], []

    original = embedded_cluster.free_port

    def free_port(host="127.0.0.1"):  # the 7th port chosen is the third node's client port
        chosen.append(taken if len(chosen) == 6 else original(host))
        return chosen[-1]

    monkeypatch.setattr(embedded_cluster, "free_port", free_port)
    cluster = EmbeddedNatsCluster(tmp_path / "nodes")
    try:
        # When the cluster starts
        await cluster.start(timeout=30)
        # Then it came up on fresh ports, every node a member, the taken port not among them
        assert cluster.nodes[2].port != taken
        assert all(node.running for node in cluster.nodes)
        assert b"address already in use" in (tmp_path / "nodes" / "n3" / "nats.log").read_bytes()
    finally:
        await cluster.stop()
        squatter.close()
