"""deploy/nats's own configs, with the include `cordon auth init` writes beside them, run as the
containers run them (only what differs on one machine is overridden on nats-server's command
line: loopback ports and the routes; the JetStream store, /data in the container, moved to a temporary
folder): the server accepts each identity Cordon's
deployment hands out and refuses a connection without credentials or with another authority's;
compose's 3-node cluster forms, and a service with its own creds makes CORDON a 3-replica stream
there and answers commands."""
from __future__ import annotations

import asyncio
import json
import os
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import pytest
from nats.aio.client import RawCredentials

from services.cli import load_spec, main
from services.ops import auth_init
from shared.auth import Authority
from shared.config import Config
from shared.embedded import EmbeddedNats, _ignore
from shared.embedded_cluster import ClusterNode, EmbeddedNatsCluster
from shared.identity import Identity
from shared.service import ServiceHost
from shared.subjects import STREAM
from tests.support.cordon import COMMUNITY, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

NATS_CONFIGS = Path(__file__).parents[2] / "deploy" / "nats"


class DeployedNode(ClusterNode):
    """A nats-server started from a deploy/nats config; its include (``auth/auth.conf`` beside the
    config, where the containers mount it) written by auth init, with this node's own JWT store."""

    def __init__(self, name: str, data_dir: Path, config: Path, authority_dir: Path) -> None:
        super().__init__(name, data_dir, "127.0.0.1", Authority.open(authority_dir))
        self.config = config
        self.authority_dir = authority_dir

    async def start(self, peers: list[int], timeout: float = 10.0) -> None:
        if self.running:
            return
        self.assign_ports()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = self.config.read_text()
        assert "store_dir: /data\n" in text  # the container's volume, here a folder of the test's
        conf = self.data_dir / "nats.conf"
        conf.write_text(text.replace("store_dir: /data\n", f'store_dir: "{self.data_dir / "store"}"\n'))
        auth_init.init(self.authority_dir, self.data_dir / "auth" / "auth.conf", str(self.data_dir / "jwt"))
        argv = [EmbeddedNats.binary(), "-c", str(conf), "-a", self.host, "-p", str(self.port),
                "-m", str(self.http_port)]
        if peers:
            argv += ["--cluster", f"nats://{self.host}:{self.route_port}",
                     "--routes", ",".join(f"nats-route://{self.host}:{p}" for p in peers)]
        self._spawn(argv, self.data_dir / "nats.log", env={**os.environ, "SERVER_NAME": self.name})

        async def probe() -> None:
            _, writer = await asyncio.open_connection(self.host, self.port)
            writer.close()
        await self._wait_ready(probe, timeout, self.data_dir / "nats.log", 0.01)


async def connect(url: str, creds) -> nats.aio.client.Client:
    return await nats.connect(url, user_credentials=creds, connect_timeout=2, allow_reconnect=False,
                              max_reconnect_attempts=0, error_cb=_ignore)


async def jetstream_answers(url: str, creds) -> bool:
    """True once JetStream answers this identity (a server just started may not yet)."""
    try:
        nc = await connect(url, creds)
    except nats.errors.Error as exc:
        if "Authorization Violation" in str(exc):
            raise  # refused: no use waiting
        return False
    try:
        return bool(await nc.jetstream(timeout=2).account_info())
    except nats.errors.Error:
        return False
    finally:
        await nc.close()


async def refused(url: str, creds=None) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect(url, creds)


@pytest.fixture
async def single(tmp_path):
    """deploy/nats/nats.conf with the include of an authority set up by `cordon auth init`."""
    assert main(["auth", "init", "--dir", str(tmp_path / "authority")]) == 0
    node = DeployedNode("nats", tmp_path / "node", NATS_CONFIGS / "nats.conf", tmp_path / "authority")
    await node.start([])
    try:
        yield node
    finally:
        await node.stop()


async def test_the_single_server_config_accepts_each_identity_auth_init_hands_out(single):
    folder = single.authority_dir
    # Given the server runs deploy/nats/nats.conf with the generated include
    # Then every service, the web gateway and the operators connect with their creds files, and
    # JetStream answers them (account CORDON)
    for creds in [*(folder / "services").glob("*.creds"), folder / "admin.creds"]:
        assert await eventually(lambda: jetstream_answers(single.url, str(creds)), what=f"{creds.name} served")
    assert len(list((folder / "services").glob("*.creds"))) == len(auth_init.IDENTITIES)


async def test_the_single_server_config_refuses_a_connection_without_credentials_or_with_a_strangers(single, tmp_path):
    # When someone connects with no credentials, or with keys another authority signed
    await refused(single.url)
    stranger = Authority.open(tmp_path / "another-cordon")
    _, creds = stranger.user_creds(Identity(name="registry", role="service"))
    # Then the server refuses both
    await refused(single.url, RawCredentials(creds))


@pytest.fixture
async def compose_cluster(tmp_path):
    """Three nodes running deploy/nats/cluster.conf as compose's nats-1..3, with auth init's include."""
    assert main(["auth", "init", "--dir", str(tmp_path / "authority")]) == 0
    cluster = EmbeddedNatsCluster(tmp_path / "nodes", authority=Authority.open(tmp_path / "authority"))
    cluster.nodes = [DeployedNode(f"nats-{i}", tmp_path / "nodes" / f"nats-{i}", NATS_CONFIGS / "cluster.conf",
                                  tmp_path / "authority") for i in (1, 2, 3)]
    try:
        await cluster.start()  # a meta leader elected, every node current
        yield cluster
    finally:
        await cluster.stop()


@asynccontextmanager
async def service(name: str, config: Config):
    host = ServiceHost(load_spec(name), config)
    await host.start()
    try:
        yield host
    finally:
        await host.stop()


async def test_compose_s_cluster_config_forms_and_a_service_makes_cordon_a_3_replica_stream_there(compose_cluster, pg_dsn):
    folder = compose_cluster.nodes[0].authority_dir
    # Given the registry started as compose starts it: the three nodes' URLs, 3 stream replicas,
    # its own creds from auth init
    config = Config(nats_url=compose_cluster.urls, pg_dsn=pg_dsn, stream_replicas=3,
                    nats_creds=str(folder / "services" / "registry.creds"))
    async with service("registry", config):
        nc = await nats.connect(compose_cluster.urls.split(","), user_credentials=str(folder / "admin.creds"))
        try:
            # Then CORDON is a 3-replica stream, on the three nodes
            info = await nc.jetstream(timeout=5).stream_info(STREAM)
            assert info.config.num_replicas == 3
            assert {info.cluster.leader, *(r.name for r in info.cluster.replicas)} == {"nats-1", "nats-2", "nats-3"}
            # and an operator's command is answered
            body = {"command_id": "c-1", "actor": "staff:li-wei", "community": COMMUNITY,
                    "compound": "nangong-1", "name": "南宫小区", "buildings": ["b1"], "gates": ["g1"]}
            reply = await nc.request("cordon.cmd.registry.register_compound", json.dumps(body).encode(), timeout=5)
            assert json.loads(reply.data)["ok"], reply.data
        finally:
            await nc.close()
    # and no node lets anyone in without credentials
    for node in compose_cluster.nodes:
        await refused(node.url)
