"""Identities on the bus: what the NATS server itself refuses, with real creds minted by Cordon's
authority, whatever a client tries.

The story: a street, changning.chengjiaqiao, with two committees, Nangong and Tianshan, and the
next street's committee, Hongqiao (changning.xianxia). The registry runs (its own identity) and has
registered compounds in all three; a checkpoint's durable consumer follows the stream; a stand-in
"checkpoint" and "echo" service in the CORDON account answers every command it is sent with the
identity the server stamped on it. Then Nangong's staff, a street officer, a gate device and a
stranger try everything they may and may not do. The server refuses what their identity does not
allow, tells their client (a permissions violation on its error callback), and the services go on
serving. One server and one registry serve the whole module; each story makes its own identities.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
import uuid
from dataclasses import dataclass

import asyncpg
import nats
import pytest
from nats.aio.client import RawCredentials
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import APIError

from services.registry.app import spec as registry_spec
from shared.auth import JS_PREFIX, Authority, AuthorityError, feed_name, inbox_prefix
from shared.embedded import ensure_database
from shared.identity import Identity
from shared.subjects import STREAM
from tests.support.bus import connect, start_secure_nats
from tests.support.cordon import eventually, running

pytestmark = pytest.mark.integration

STREET = "changning.chengjiaqiao"
NANGONG, TIANSHAN = f"{STREET}.nangong", f"{STREET}.tianshan"
HONGQIAO = "changning.xianxia.hongqiao"  # the next street
SERVICE_DURABLE = "checkpoint-directory"  # a service's durable consumer: no identity may pull it


@dataclass
class World:
    url: str
    authority: Authority
    admin: nats.aio.client.Client  # an operator: account CORDON, no limits
    dsn: str

    async def register(self, community: str) -> str:
        """A compound registered in ``community`` by an operator, answered by the registry."""
        compound = f"c-{uuid.uuid4().hex[:8]}"
        body = {"command_id": f"cmd-{uuid.uuid4()}", "actor": "operator:admin", "community": community,
                "compound": compound, "name": "小区", "buildings": ["b1"], "gates": ["g1"]}
        msg = await self.admin.request("cordon.cmd.registry.register_compound", json.dumps(body).encode(), timeout=5)
        assert json.loads(msg.data)["ok"], msg.data
        return compound

    async def still_serving(self) -> None:
        """The services keep serving: the registry answers, its events reach the stream and the
        service's durable consumer is there, with nothing taken from it."""
        before = (await self.admin.jetstream().stream_info(STREAM)).state.messages
        await self.register(NANGONG)
        js = self.admin.jetstream()
        await eventually(lambda: self._more_than(js, before), what="the registry's event on the stream")
        info = await js.consumer_info(STREAM, SERVICE_DURABLE)
        assert info.num_ack_pending == 0 and info.delivered.stream_seq == 0  # nobody pulled it

    @staticmethod
    async def _more_than(js, before: int) -> bool:
        return (await js.stream_info(STREAM)).state.messages > before

    async def events_of(self, prefix: str) -> list[str]:
        """The subjects of every event on the stream under ``prefix`` (as an operator reads them)."""
        async with self.registry_events() as subjects:
            return [s for s in subjects if s.startswith(f"cordon.evt.{prefix}.")]

    @contextlib.asynccontextmanager
    async def registry_events(self):
        sub = await self.admin.jetstream().subscribe("cordon.evt.>", ordered_consumer=True)
        total = (await self.admin.jetstream().stream_info(STREAM)).state.messages
        subjects = []
        try:
            for _ in range(total):
                subjects.append((await sub.next_msg(timeout=5)).subject)
            yield subjects
        finally:
            await sub.unsubscribe()


@dataclass
class Session:
    """A client connected with an identity's creds, its violations collected as the server sends them."""

    identity: Identity
    nc: nats.aio.client.Client
    creds: str
    public_key: str
    errors: list[str]
    closed: asyncio.Event

    async def violation(self, text: str, within: float = 3.0) -> None:
        """Until the server has told this client of a permissions violation mentioning ``text``."""
        wanted = text.lower()  # nats-py lowercases the server's whole message
        deadline = time.monotonic() + within
        while not any("permissions violation" in e and wanted in e for e in self.errors):
            assert time.monotonic() < deadline, f"no violation for {text!r}; errors: {self.errors}"
            await asyncio.sleep(0.02)

    async def refused_request(self, subject: str, body: bytes = b"{}") -> None:
        """A request the server does not let through: no reply comes, a violation does."""
        with pytest.raises(nats.errors.TimeoutError):
            await self.nc.request(subject, body, timeout=0.5)
        await self.violation(f'publish to "{subject}"')

    async def refused_js(self, call, what: str) -> None:
        """A JetStream API call the server does not let through: a timeout, and a violation."""
        with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
            await call
        await self.violation(what)

    def feed(self) -> nats.js.JetStreamContext:
        """CORDON's JetStream as a CITY identity reaches it: through the JS.CORDON.API prefix."""
        return self.nc.jetstream(prefix=JS_PREFIX, timeout=1.0)


async def session(url: str, authority: Authority, identity: Identity, **options) -> Session:
    public_key, creds = authority.user_creds(identity)
    errors: list[str] = []
    closed = asyncio.Event()

    async def on_error(exc):
        errors.append(str(exc))

    async def on_closed():
        closed.set()

    nc = await nats.connect(url, user_credentials=RawCredentials(creds), inbox_prefix=inbox_prefix(identity),
                            error_cb=on_error, closed_cb=on_closed, connect_timeout=2, **options)
    return Session(identity, nc, creds, public_key, errors, closed)


async def echo(msg) -> None:
    """A stand-in service in CORDON: answers with who the server says is asking."""
    info = json.loads((msg.headers or {}).get("Nats-Request-Info", "{}"))
    await msg.respond(json.dumps({"subject": msg.subject, "name": info.get("name_tag"),
                                  "tags": info.get("tags")}).encode())


@pytest.fixture(scope="module")
async def world(pg_server, tmp_path_factory):
    server = await start_secure_nats(tmp_path_factory.mktemp("nats-identities"))
    dsn = await ensure_database(pg_server.dsn, f"test_ids_{uuid.uuid4().hex[:12]}")
    try:
        async with running(registry_spec(), server.url, dsn):
            admin = await connect(server.url)
            await admin.subscribe("cordon.cmd.checkpoint.>", queue="checkpoint", cb=echo)
            await admin.subscribe("cordon.cmd.echo.>", queue="echo", cb=echo)
            await admin.jetstream().add_consumer(STREAM, ConsumerConfig(
                durable_name=SERVICE_DURABLE, filter_subject="cordon.evt.>", ack_policy=AckPolicy.EXPLICIT))
            w = World(server.url, server.authority, admin, dsn)
            for community in (NANGONG, NANGONG, TIANSHAN, TIANSHAN, HONGQIAO):
                await w.register(community)
            await eventually(lambda: w._more_than(admin.jetstream(), 4), what="the registry's events")
            try:
                yield w
            finally:
                await admin.close()
    finally:
        await server.stop()


def staff(name: str = "li-wei", community: str = NANGONG) -> Identity:
    return Identity(name=f"{name}-{uuid.uuid4().hex[:6]}", role="staff", scope=community)


# -- who may connect -------------------------------------------------------------------------------

async def test_a_connection_without_credentials_or_with_another_authoritys_is_refused(world, tmp_path):
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(world.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
    stranger = Authority.open(tmp_path / "another-cordon")  # same roles, keys the server never trusted
    _, creds = stranger.user_creds(Identity(name="admin", role="operator"))
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(world.url, user_credentials=RawCredentials(creds), allow_reconnect=False,
                           max_reconnect_attempts=0, connect_timeout=2)
    await world.still_serving()


# -- a committee's staff ---------------------------------------------------------------------------

async def test_staff_do_not_receive_another_committees_events_while_their_own_arrive(world):
    me = await session(world.url, world.authority, staff())
    try:
        # Given Nangong's staff subscribed to Tianshan's events, the whole city's and their own
        theirs, city, mine = asyncio.Queue(), asyncio.Queue(), asyncio.Queue()
        await me.nc.subscribe(f"cordon.evt.{TIANSHAN}.>", cb=theirs.put)
        await me.nc.subscribe("cordon.evt.>", cb=city.put)
        await me.nc.subscribe(f"cordon.evt.{NANGONG}.>", cb=mine.put)
        await me.nc.flush()
        # then the server refused the first two
        await me.violation(f'subscription to "cordon.evt.{TIANSHAN}.>"')
        await me.violation('subscription to "cordon.evt.>"')
        # When Tianshan registers a compound, then Nangong
        await world.register(TIANSHAN)
        await world.register(NANGONG)
        # Then Nangong's event arrives, and Tianshan's, published before it, never did
        got = await asyncio.wait_for(mine.get(), 5)
        assert got.subject.startswith(f"cordon.evt.{NANGONG}.registry.")
        assert theirs.empty() and city.empty()
    finally:
        await me.nc.close()
    await world.still_serving()


async def test_staff_cannot_send_commands_to_another_committee_nor_unscoped(world):
    me = await session(world.url, world.authority, staff())
    try:
        # Their own committee's scoped subject goes through, and the service sees who asks
        reply = json.loads((await me.nc.request(f"cordon.cmd.echo.ping.{NANGONG}", b"{}", timeout=5)).data)
        assert reply["name"] == me.identity.name
        assert f"scope:{NANGONG}" in reply["tags"] and "role:staff" in reply["tags"]
        # and an identity header the client forges is replaced by the server with the true one
        forged = {"Nats-Request-Info": json.dumps({"name_tag": "admin", "tags": ["role:operator"]})}
        reply = json.loads((await me.nc.request(f"cordon.cmd.echo.ping.{NANGONG}", b"{}", timeout=5,
                                                headers=forged)).data)
        assert reply["name"] == me.identity.name and "role:operator" not in reply["tags"]
        # Another committee's, and the unscoped subject, do not: no reply, a violation
        await me.refused_request(f"cordon.cmd.echo.ping.{TIANSHAN}")
        compound = f"c-{uuid.uuid4().hex[:8]}"
        body = json.dumps({"command_id": f"cmd-{uuid.uuid4()}", "actor": "staff:li-wei", "community": NANGONG,
                           "compound": compound, "name": "x", "buildings": ["b1"], "gates": ["g1"]}).encode()
        await me.refused_request("cordon.cmd.registry.register_compound", body)
        # and the registry recorded nothing of it
        conn = await asyncpg.connect(world.dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM registry.events WHERE stream_id LIKE $1",
                                       f"%{compound}%") == 0
        finally:
            await conn.close()
    finally:
        await me.nc.close()
    await world.still_serving()


async def test_staff_cannot_read_others_replies_nor_join_a_services_queue_group(world):
    me = await session(world.url, world.authority, staff())
    try:
        stolen = asyncio.Queue()
        await me.nc.subscribe("_INBOX.>", cb=stolen.put)
        await me.nc.subscribe("cordon.cmd.registry.>", queue="registry", cb=stolen.put)
        await me.nc.flush()
        await me.violation('subscription to "_inbox.>"')
        await me.violation('subscription to "cordon.cmd.registry.>" using queue "registry"')
        # The operator's commands and their replies still go where they belong
        await world.still_serving()
        await world.register(TIANSHAN)
        assert stolen.empty()
    finally:
        await me.nc.close()


async def test_staff_cannot_touch_the_stream_nor_another_consumer(world):
    me = await session(world.url, world.authority, staff())
    name, own = feed_name(me.identity), f"cordon.evt.{NANGONG}.>"
    js = me.feed()
    stream_before = (await world.admin.jetstream().stream_info(STREAM)).state.messages
    try:
        # A consumer outside their filter, or under another name, is refused by the server
        await me.refused_js(js.add_consumer(STREAM, ConsumerConfig(
            name=name, durable_name=name, filter_subject=f"cordon.evt.{TIANSHAN}.>")),
            f"{JS_PREFIX}.CONSUMER.CREATE.{STREAM}.{name}.cordon.evt.{TIANSHAN}.>")
        await me.refused_js(js.add_consumer(STREAM, ConsumerConfig(
            name=name, durable_name=name, filter_subject="cordon.evt.>")),
            f"{JS_PREFIX}.CONSUMER.CREATE.{STREAM}.{name}.cordon.evt.>")
        await me.refused_js(js.add_consumer(STREAM, ConsumerConfig(
            name=SERVICE_DURABLE, durable_name=SERVICE_DURABLE, filter_subject=own)),
            f"CONSUMER.CREATE.{STREAM}.{SERVICE_DURABLE}.")
        # Their own name and filter on the subject, another filter in the request: JetStream refuses it
        config = {"stream_name": STREAM, "config": {"name": name, "durable_name": name, "ack_policy": "explicit",
                                                    "filter_subject": f"cordon.evt.{TIANSHAN}.>"}}
        reply = await me.nc.request(f"{JS_PREFIX}.CONSUMER.CREATE.{STREAM}.{name}.{own}",
                                    json.dumps(config).encode(), timeout=5)
        assert json.loads(reply.data)["error"]["code"] == 400
        # A service's durable cannot be pulled
        stolen = await js.pull_subscribe_bind(SERVICE_DURABLE, stream=STREAM)
        await me.refused_js(stolen.fetch(1, timeout=1), f"CONSUMER.MSG.NEXT.{STREAM}.{SERVICE_DURABLE}")
        # The stream cannot be deleted, purged or read directly, through the prefix or not
        await me.refused_js(js.delete_stream(STREAM), f"{JS_PREFIX}.STREAM.DELETE.{STREAM}")
        await me.refused_js(js.purge_stream(STREAM), f"{JS_PREFIX}.STREAM.PURGE.{STREAM}")
        direct = me.nc.jetstream(timeout=1.0)
        await me.refused_js(direct.delete_stream(STREAM), f"$JS.API.STREAM.DELETE.{STREAM}")
        await me.refused_js(direct.get_last_msg(STREAM, f"cordon.evt.{TIANSHAN}.registry.CompoundRegistered",
                                                direct=True),
                            f"$JS.API.DIRECT.GET.{STREAM}")
    finally:
        await me.nc.close()
    # Then the stream is intact, and no consumer of theirs was made
    after = await world.admin.jetstream().stream_info(STREAM)
    assert after.state.messages >= stream_before and after.state.first_seq == 1
    with pytest.raises(APIError):
        await world.admin.jetstream().consumer_info(STREAM, name)
    await world.still_serving()


async def read_feed(s: Session, filter_subject: str) -> list[str]:
    """Create the identity's own feed consumer on ``filter_subject`` and read it to the end, acking."""
    js, name = s.feed(), feed_name(s.identity)
    await js.add_consumer(STREAM, ConsumerConfig(name=name, durable_name=name, filter_subject=filter_subject,
                                                 ack_policy=AckPolicy.EXPLICIT))
    sub = await js.pull_subscribe_bind(name, stream=STREAM)
    subjects = []
    while True:
        try:
            msgs = await sub.fetch(100, timeout=1)
        except (nats.errors.TimeoutError, asyncio.TimeoutError):  # nothing more
            return subjects
        for m in msgs:
            subjects.append(m.subject)
            await m.ack()


async def test_staff_read_their_committees_events_through_their_own_feed(world):
    identity = staff()
    me = await session(world.url, world.authority, identity)
    try:
        # When Nangong's staff create their feed (feed-<name>, Nangong's filter) and read it
        subjects = await read_feed(me, f"cordon.evt.{NANGONG}.>")
        # Then they get every Nangong event on the stream, nothing else, and their acks count
        assert subjects == await world.events_of(NANGONG) and len(subjects) >= 2
        info = await world.admin.jetstream().consumer_info(STREAM, feed_name(identity))
        assert info.num_ack_pending == 0 and info.ack_floor.consumer_seq == len(subjects)
        assert me.errors == []
    finally:
        await me.nc.close()
    await world.still_serving()


async def test_a_street_officer_reads_every_committee_of_the_street_and_none_of_the_next(world):
    officer = Identity(name=f"zhao-lei-{uuid.uuid4().hex[:6]}", role="officer", scope=STREET)
    me = await session(world.url, world.authority, officer)
    try:
        subjects = await read_feed(me, f"cordon.evt.{STREET}.>")
        assert subjects == await world.events_of(STREET)
        assert {s.split(".")[4] for s in subjects} == {"nangong", "tianshan"}
        assert not any(HONGQIAO in s for s in subjects)
        # The city-wide filter, or the next street's, is refused
        name = feed_name(officer)
        await me.refused_js(me.feed().add_consumer(STREAM, ConsumerConfig(
            name=name, durable_name=name, filter_subject="cordon.evt.changning.xianxia.>")),
            f"CONSUMER.CREATE.{STREAM}.{name}.cordon.evt.changning.xianxia.>")
        # Live, too: the street's events, not the next street's
        live = asyncio.Queue()
        await me.nc.subscribe(f"cordon.evt.{STREET}.>", cb=live.put)
        await me.nc.subscribe(f"cordon.evt.{HONGQIAO}.>", cb=live.put)
        await me.nc.flush()
        await me.violation(f'subscription to "cordon.evt.{HONGQIAO}.>"')
        await world.register(HONGQIAO)
        await world.register(TIANSHAN)
        assert (await asyncio.wait_for(live.get(), 5)).subject.startswith(f"cordon.evt.{TIANSHAN}.")
    finally:
        await me.nc.close()
    await world.still_serving()


# -- a gate device ---------------------------------------------------------------------------------

async def test_a_gate_may_only_check_passage_at_its_own_committee(world):
    gate = Identity(name=f"gate-{uuid.uuid4().hex[:6]}", role="gate", scope=NANGONG, compound="nangong-1")
    me = await session(world.url, world.authority, gate)
    try:
        reply = json.loads((await me.nc.request(f"cordon.cmd.checkpoint.check_passage.{NANGONG}", b"{}",
                                                timeout=5)).data)
        assert reply["name"] == gate.name and "compound:nangong-1" in reply["tags"]
        await me.refused_request(f"cordon.cmd.checkpoint.check_passage.{TIANSHAN}")
        await me.refused_request("cordon.cmd.checkpoint.check_passage")
        await me.refused_request(f"cordon.cmd.checkpoint.set_gate.{NANGONG}")
        await me.refused_request("cordon.qry.community")
        await me.nc.subscribe(f"cordon.evt.{NANGONG}.>")
        await me.violation(f'subscription to "cordon.evt.{NANGONG}.>"')
    finally:
        await me.nc.close()
    await world.still_serving()


async def test_a_city_system_granted_nothing_may_publish_nothing(world):
    # An empty allow list would be no limit to nats-server: such an identity could make a consumer
    # of every event through the feed import, under any name, and pull it.
    system = Identity(name=f"idle-app-{uuid.uuid4().hex[:6]}", role="city-system")
    me = await session(world.url, world.authority, system)
    name = "anything"
    try:
        await me.refused_js(me.feed().add_consumer(STREAM, ConsumerConfig(
            name=name, durable_name=name, filter_subject="cordon.evt.>", ack_policy=AckPolicy.EXPLICIT)),
            f"{JS_PREFIX}.CONSUMER.CREATE.{STREAM}.{name}.cordon.evt.>")
        await me.refused_request("cordon.qry.community")
        await me.refused_request("cordon.cmd.echo.anything")
    finally:
        await me.nc.close()
    with pytest.raises(APIError):
        await world.admin.jetstream().consumer_info(STREAM, name)
    await world.still_serving()


# -- revocation ------------------------------------------------------------------------------------

async def test_a_revoked_identity_is_cut_off_within_seconds_and_cannot_come_back(world):
    victim_identity, colleague_identity = staff("victim"), staff("colleague")
    victim = await session(world.url, world.authority, victim_identity)
    colleague = await session(world.url, world.authority, colleague_identity)
    try:
        await asyncio.sleep(1.1)  # a revocation covers user JWTs issued up to its time (seconds)
        # When the victim's key is revoked (the CITY account re-signed and pushed)
        started = time.monotonic()
        await world.authority.push_account(world.url, "CITY", {victim.public_key: int(time.time())})
        # Then its connection is closed within 5 s, and the server said why
        await asyncio.wait_for(victim.closed.wait(), 5)
        assert time.monotonic() - started < 5
        assert "revoked" in str(victim.nc.last_error)
        # and its creds connect no more, while a colleague's go on working
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(world.url, user_credentials=RawCredentials(victim.creds), allow_reconnect=False,
                               max_reconnect_attempts=0, connect_timeout=2)
        reply = await colleague.nc.request(f"cordon.cmd.echo.ping.{NANGONG}", b"{}", timeout=5)
        assert json.loads(reply.data)["name"] == colleague_identity.name
    finally:
        await victim.nc.close()
        await colleague.nc.close()
    await world.still_serving()


async def test_a_revocation_survives_a_restart_even_of_a_server_that_lost_its_account_store(nats_server):
    authority, url = nats_server.authority, nats_server.url
    identity = Identity(name="li-wei", role="staff", scope=NANGONG)
    public_key, creds = authority.user_creds(identity)
    await asyncio.sleep(1.1)
    await authority.push_account(url, "CITY", {public_key: int(time.time())})

    async def refused() -> None:
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(url, user_credentials=RawCredentials(creds), allow_reconnect=False,
                               max_reconnect_attempts=0, connect_timeout=2)

    # When the server restarts (the full resolver kept the pushed account JWT on disk)
    await nats_server.stop()
    await nats_server.start()
    await refused()
    # and when it starts again without that store: the authority preloads the latest JWT it pushed
    await nats_server.stop()
    shutil.rmtree(nats_server.data_dir / "jwt")
    await nats_server.start()
    await refused()
    # while a fresh key for the same identity connects
    _, fresh = authority.user_creds(identity)
    nc = await nats.connect(url, user_credentials=RawCredentials(fresh), inbox_prefix=inbox_prefix(identity))
    await nc.close()


async def test_an_account_jwt_the_server_refuses_raises_with_the_servers_reason(nats_server, monkeypatch):
    authority = nats_server.authority
    kept = authority.account_jwt("CITY")
    # Given an account JWT damaged on its way (its signature lost)
    mint = authority.mint_account
    monkeypatch.setattr(authority, "mint_account", lambda *a: mint(*a).rsplit(".", 1)[0])
    # When it is pushed, the server's refusal reaches the caller, and the authority keeps its last JWT
    with pytest.raises(AuthorityError, match="refused account CITY's JWT: jwt update resulted in error"):
        await authority.push_account(nats_server.url, "CITY", {})
    assert authority.account_jwt("CITY") == kept
