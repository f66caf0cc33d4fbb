"""Helpers for integration tests: a running service, a client that sends commands, readers of the stream."""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import uuid

from nats.js.api import ConsumerConfig, DeliverPolicy

from shared import pgroles
from shared.config import Config
from shared.service import ServiceHost, ServiceSpec
from shared.idcard import with_check_digit
from shared.subjects import STREAM
from tests.support.bus import connect, service_creds

COMMUNITY = "changning.chengjiaqiao.nangong"
_ids = itertools.count()


def prc_id(serial: int) -> str:
    """A valid 18-character PRC ID number (check digit computed)."""
    return with_check_digit(f"3101051950{serial:07d}"[-17:])


#: Databases whose roles are provisioned (once per database: the roles themselves are the server's).
_provisioned: set[str] = set()


async def as_role(pg_dsn: str, service: str) -> str:
    """``service``'s own role's DSN on ``pg_dsn``'s database, provisioning the roles there first
    (once per database). The embedded server trusts loopback: no password is needed."""
    if pg_dsn not in _provisioned:
        await pgroles.provision(pg_dsn)
        _provisioned.add(pg_dsn)
    return pgroles.role_dsn(pg_dsn, service)


@contextlib.asynccontextmanager
async def running(spec: ServiceSpec, nats_url: str, pg_dsn: str, clock=None, **config):
    """A service on the test's servers; ``clock`` (a callable returning an aware datetime) lets a
    test drive time. With ``CORDON_TEST_PG_ROLES=1`` it connects as its own PostgreSQL role (as
    under `cordon up`): the existing tests then run with least privilege."""
    extra = {"clock": clock} if clock is not None else {}
    if os.environ.get("CORDON_TEST_PG_ROLES") == "1" and spec.name in pgroles.SERVICES:
        pg_dsn = await as_role(pg_dsn, spec.name)
    config.setdefault("backdate_days", 0)  # the stories replay days of 2020 and 2022
    config.setdefault("nats_creds", service_creds(nats_url, spec.name))  # its own identity
    host = ServiceHost(spec, Config(nats_url=nats_url, pg_dsn=pg_dsn, **config), **extra)
    await host.start()
    try:
        yield host
    finally:
        await host.stop()


class Client:
    """Sends commands as an integrator would: JSON over NATS request/reply."""

    def __init__(self, nc, service: str = "registry"):
        self.nc = nc
        self.service = service

    async def raw(self, command: str, payload: bytes, timeout: float = 5.0) -> dict:
        msg = await self.nc.request(f"cordon.cmd.{self.service}.{command}", payload, timeout=timeout)
        return json.loads(msg.data)

    async def send(self, command: str, /, **fields) -> dict:
        fields.setdefault("command_id", f"cmd-{uuid.uuid4()}")
        fields.setdefault("actor", "staff:li-wei")
        return await self.raw(command, json.dumps(fields, ensure_ascii=False).encode())

    async def ok(self, command: str, /, **fields) -> dict:
        reply = await self.send(command, **fields)
        assert reply["ok"], reply
        return reply


async def community(client: Client, compound: str = "nangong-1", buildings=("b1", "b2"), gates=("g1",)) -> None:
    await client.ok("register_compound", community=COMMUNITY, compound=compound, name="南宫小区",
                    buildings=list(buildings), gates=list(gates))


async def household(client: Client, compound: str = "nangong-1", building: str = "b1") -> str:
    reply = await client.ok("register_household", community=COMMUNITY, compound=compound,
                            building=building, address=f"{building} room {next(_ids)}")
    return reply["events"][0]["data"]["household"]


async def resident(client: Client, household_id: str, **extra) -> str:
    serial = next(_ids)
    reply = await client.ok("register_resident", household=household_id, name="王小伟",
                            id_number=prc_id(serial), birth_year=1950, **extra)
    return reply["events"][0]["data"]["resident"]


async def read_stream(nats_url: str, expect: int, timeout: float = 10.0, subjects: str = "cordon.evt.>") -> list:
    """The messages of CORDON on ``subjects`` (waits until ``expect`` of them are there), in stream order."""
    nc = await connect(nats_url)
    try:
        js = nc.jetstream()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            count = await _matching(js, subjects)
            if count >= expect or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        sub = await js.subscribe(subjects, ordered_consumer=True,
                                 config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        out = []
        for _ in range(count):
            try:
                out.append(await sub.next_msg(timeout=2))
            except Exception:
                break
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


async def _matching(js, subjects: str) -> int:
    state = (await js.stream_info(STREAM)).state
    if subjects == "cordon.evt.>" or not state.messages:
        return state.messages
    return sum((await js.stream_info(STREAM, subjects_filter=subjects)).state.subjects.values())


async def publish_events(nats_url: str, events, *, occurred_at, actor: str = "staff:zhao-lei",
                         stream_ids=None, versions=None, event_id: str | None = None,
                         msg_id: str | None = None) -> list:
    """Publish events as their owning services' relays would: subject from the event's own service,
    ``Nats-Msg-Id`` = event id unless ``msg_id`` says otherwise. Returns the envelopes."""
    from shared import bus, envelope
    from shared.subjects import event_subject

    nc = await connect(nats_url)
    try:
        js = nc.jetstream()
        await bus.ensure_stream(js)
        out = []
        for i, event in enumerate(events):
            env = envelope.wrap(
                event, stream_id=stream_ids[i] if stream_ids else f"test:{uuid.uuid4()}",
                stream_version=versions[i] if versions else 1, occurred_at=occurred_at, actor=actor,
                correlation_id=str(uuid.uuid4()), event_id=event_id)
            await js.publish(event_subject(event.community, type(event).service, env.type),
                             envelope.encode(env), headers={"Nats-Msg-Id": msg_id or env.event_id})
            out.append(env)
        return out
    finally:
        await nc.close()


async def eventually(check, timeout: float = 10.0, what: str = "condition"):
    """Poll ``check()`` until it returns something true (returned); fail the test after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await check()):
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
    return result


async def outboxes_empty(db, *services: str) -> None:
    """Until the outboxes of ``services`` are empty: every event they recorded is on the stream."""
    total = " + ".join(f"(SELECT count(*) FROM {s}.outbox)" for s in services)
    await eventually(lambda: db.fetchval(f"SELECT {total} = 0"), what=f"the outboxes of {', '.join(services)} empty")
