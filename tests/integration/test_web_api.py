"""The web gateway's HTTP API against the real thing (issue 14): NATS in operator mode, PostgreSQL,
the six services and `cordon web`'s app served by uvicorn, every caller logged in with creds minted
by the server's own authority.

What it shows: every command of every service and every query is reachable over HTTP; every error
code is answered under its status by a real case (a refusal of the service itself, or of the server
through the session's own connection); idempotency goes through the `Idempotency-Key` header; who
may do what is decided by the identity (401 for no identity, 403 for the wrong one); and bad input
(oversized, wrongly typed or malformed bodies, unknown paths, a slow client) gets a clear error,
writes nothing, and leaves the gateway serving the next caller.

"Nothing written" is the record: every command service's events and stored replies and the stream's
length, taken once every outbox is empty and every consumer has caught up (`City.record`).

One NATS, one database, the services and the gateway serve the whole module; each story makes its
own records, so the stories do not depend on each other's order.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import time
import uuid
from dataclasses import dataclass, field

import asyncpg
import httpx
import msgspec
import pytest

from services.audit.app import spec as audit_spec
from services.checkpoint.app import spec as checkpoint_spec
from services.demo.client import Api
from services.logistics.app import spec as logistics_spec
from services.quarantine.app import spec as quarantine_spec
from services.registry.app import spec as registry_spec
from services.views.app import spec as views_spec
from shared.auth import Authority
from shared.config import Config
from shared.embedded import ensure_database
from shared.identity import Identity
from shared.service import ServiceHost
from shared.subjects import SERVICES, STREAM
from shared.wire import BaseCommand
from tests.support.bus import connect, service_creds, start_secure_nats
from tests.support.cordon import prc_id
from tests.support.identities import BEIXIN, NANGONG
from tests.support.logistics import stop
from tests.support.quarantine import Clock, at, day
from tests.support.web import creds, gateway, login

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SPECS = {"registry": registry_spec, "checkpoint": checkpoint_spec, "quarantine": quarantine_spec,
         "logistics": logistics_spec, "views": views_spec, "audit": audit_spec}
OPERATOR = Identity(name="ops-web", role="operator")
LI_WEI = Identity(name="li-wei", role="staff", scope=NANGONG)
ZHAO_LEI = Identity(name="zhao-lei", role="staff", scope=BEIXIN)
ARRIVALS_APP = Identity(name="arrivals-app", role="city-system",
                        grants=("cmd:registry.register_arrival", "qry:community"))
NANGONG_EAST = Identity(name="nangong-east", role="gate", scope=NANGONG, compound="nangong-1")
#: How long a body may take to arrive at this module's gateway (the slow client's story).
BODY_TIMEOUT_S = 1.0
JSON = {"content-type": "application/json"}


@dataclass
class City:
    url: str
    authority: Authority
    http: httpx.AsyncClient
    nc: object  # an operator's own NATS connection: the stream, health
    db: asyncpg.Connection
    config: Config
    clock: Clock
    hosts: dict[str, ServiceHost]
    #: identity name -> the headers of its session
    sessions: dict[str, dict[str, str]] = field(default_factory=dict)
    h_a: str = ""  # a household of Nangong (compound nangong-1), resident r_a
    r_a: str = ""

    async def command(self, who: Identity | None, service: str, name: str, body: dict | bytes,
                      key: str | None = None, **headers: str) -> httpx.Response:
        """POST a command as ``who`` (None: no token), its ``Idempotency-Key`` ``key`` (a new one
        when None)."""
        sent = {**JSON, **(self.sessions[who.name] if who else {}),
                "idempotency-key": key or f"k-{uuid.uuid4()}", **headers}
        content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        return await self.http.post(f"/v1/commands/{service}/{name}", content=content, headers=sent)

    async def ok(self, who: Identity, service: str, name: str, body: dict, key: str | None = None) -> dict:
        reply = await self.command(who, service, name, body, key)
        assert reply.status_code == 200, reply.text
        return reply.json()

    async def query(self, who: Identity | None, view: str, **params) -> httpx.Response:
        return await self.http.get(f"/v1/queries/{view}", params=params,
                                   headers=self.sessions[who.name] if who else {})

    async def household(self, who: Identity = LI_WEI, community: str = NANGONG, compound: str = "nangong-1",
                        key: str | None = None) -> str:
        reply = await self.ok(who, "registry", "register_household", {
            "community": community, "compound": compound, "building": "b1",
            "address": f"b1 room {uuid.uuid4().hex[:6]}"}, key)
        return reply["events"][0]["data"]["household"]

    async def record(self) -> dict[str, int]:
        """What a refused request must not change: each command service's events and stored
        replies (``registry.events``, ...), and the stream's length (``stream``), once every
        service has caught up."""
        await Api(self.nc).settle(timeout=30)
        counts = {f"{s}.{t}": await self.db.fetchval(f"SELECT count(*) FROM {s}.{t}")
                  for s in SERVICES for t in ("events", "commands")}
        return {**counts, "stream": (await self.nc.jetstream().stream_info(STREAM)).state.messages}

    async def events_of(self, service: str, command_id: str) -> int:
        """How many events of ``service``'s record the command ``command_id`` caused."""
        return await self.db.fetchval(
            f"SELECT count(*) FROM {service}.events WHERE convert_from(envelope, 'UTF8')::jsonb->>'causation_id' = $1",
            command_id)

    async def still_serving(self) -> None:
        """The gateway and the services go on: a household registered over HTTP by Nangong's staff."""
        await self.household()

    async def start(self, name: str) -> None:
        host = ServiceHost(SPECS[name](), Config(nats_url=self.url, pg_dsn=self.config.pg_dsn, backdate_days=0,
                                                 nats_creds=service_creds(self.url, name)), clock=self.clock)
        await host.start()
        self.hosts[name] = host

    @contextlib.asynccontextmanager
    async def stopped(self, name: str):
        """``name`` not running for the block, started again after it."""
        await stop(self.hosts.pop(name))
        try:
            yield
        finally:
            await self.start(name)


@pytest.fixture(scope="module")
async def city(pg_server, tmp_path_factory):
    """Two communities of one street, Nangong and Beixin, a compound each, a household and its
    resident in Nangong; the six services on a clock fixed at 09:00 of day 1 (before the evening
    sweep: no service writes by itself); the gateway, and a session for each identity of the stories."""
    server = await start_secure_nats(tmp_path_factory.mktemp("nats-web"))
    dsn = await ensure_database(pg_server.dsn, f"test_web_{uuid.uuid4().hex[:12]}")
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(server.stop)
        config = Config(nats_url=server.url, pg_dsn=dsn)
        city = City(server.url, server.authority, None, None, None, config, Clock(at(1, "09:00")), {})
        for name in SPECS:
            await city.start(name)
        stack.push_async_callback(lambda: asyncio.gather(*(stop(h) for h in city.hosts.values())))
        base = await stack.enter_async_context(gateway(server.url, body_timeout_s=BODY_TIMEOUT_S))
        city.http = await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=30))
        city.nc = await connect(server.url)
        stack.push_async_callback(city.nc.close)
        city.db = await asyncpg.connect(dsn)
        stack.push_async_callback(city.db.close)
        for identity in (OPERATOR, LI_WEI, ZHAO_LEI, ARRIVALS_APP, NANGONG_EAST):
            city.sessions[identity.name] = await login(city.http, creds(server.url, identity)[1])
        for community, compound in ((NANGONG, "nangong-1"), (BEIXIN, "beixin-1")):
            await city.ok(OPERATOR, "registry", "register_compound", {
                "community": community, "compound": compound, "name": compound, "buildings": ["b1"],
                "gates": ["g1", "g2"]})
        city.h_a = await city.household(OPERATOR)
        reply = await city.ok(OPERATOR, "registry", "register_resident", {
            "household": city.h_a, "name": "王小伟", "id_number": prc_id(800), "birth_year": 1950})
        city.r_a = reply["events"][0]["data"]["resident"]
        await city.record()  # every directory knows them
        yield city


def refused(reply: httpx.Response, status: int, code: str, field: str | None = None, says: str = "") -> dict:
    """``reply`` is the refusal ``code`` under ``status`` (naming ``field``, saying ``says``)."""
    assert reply.status_code == status, (reply.status_code, reply.text)
    assert reply.headers["content-type"].startswith("application/json"), reply.headers
    error = reply.json()["error"]
    assert reply.json()["ok"] is False and error["code"] == code, reply.text
    if field is not None:
        assert error.get("field") == field, reply.text
    assert says in error["message"], reply.text
    return error


@contextlib.asynccontextmanager
async def raw_connection(city: City):
    """A TCP connection to the gateway, for what an HTTP client library would not send."""
    reader, writer = await asyncio.open_connection(city.http.base_url.host, city.http.base_url.port)
    try:
        yield reader, writer
    finally:
        writer.close()


def request_head(city: City, key: str, length: int) -> bytes:
    """The head of Nangong's staff's POST of a household with ``Content-Length: length``."""
    return "\r\n".join([
        "POST /v1/commands/registry/register_household HTTP/1.1", f"host: {city.http.base_url.netloc.decode()}",
        f"authorization: {city.sessions[LI_WEI.name]['authorization']}", "content-type: application/json",
        f"idempotency-key: {key}", f"content-length: {length}", "", ""]).encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict]:
    """The status and JSON body of the response coming on ``reader``."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode().split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length:"))
    return int(lines[0].split()[1]), json.loads(await reader.readexactly(length))


# -- every command and query reachable ------------------------------------------------------------

def first_required(cls: type) -> str:
    """The field a command missing all of its own fields is refused for: its first required one."""
    base = set(BaseCommand.__struct_fields__)
    return next(f.encode_name for f in msgspec.inspect.type_info(cls).fields if f.required and f.name not in base)


async def test_every_command_of_every_service_reaches_its_service(city):
    before = await city.record()
    for service in SERVICES:
        commands = importlib.import_module(f"services.{service}.commands").COMMANDS
        for name, cls in commands.items():
            # An operator (account CORDON, the unscoped subject) sends the command with none of its fields
            reply = await city.command(OPERATOR, service, name, {}, key=f"empty-{service}-{name}")
            # Then the service that has it refuses it for its first field (another would not know it)
            wanted = first_required(cls)
            refused(reply, 422, "invalid", field=wanted, says=f"{wanted} is required in {name}")
    assert await city.record() == before


async def test_a_day_of_real_commands_of_every_service_over_http(city):
    # Registry: Nangong's staff register a household and a resident; the city's arrivals app an arrival
    h = await city.household()
    resident = await city.ok(LI_WEI, "registry", "register_resident", {
        "household": h, "name": "李四", "id_number": prc_id(801), "birth_year": 1960})
    r = resident["events"][0]["data"]["resident"]
    assert resident["events"][0]["actor"] == "staff:li-wei"
    arrival = await city.ok(ARRIVALS_APP, "registry", "register_arrival", {
        "resident": r, "origin": "Hangzhou", "arrived_on": str(day(1)),
        "transport": {"kind": "train", "number": "G7512"}, "visited": [], "city_class": "B",
        "risk_area_visited": False})
    assert arrival["events"][0]["actor"] == "city:arrivals-app"
    await city.record()  # the other services know the household and the resident
    # Checkpoint: staff issue the household's pass, the gate device lets it through
    passes = await city.ok(LI_WEI, "checkpoint", "issue_passes", {
        "community": NANGONG, "compound": "nangong-1", "households": [h]})
    number = passes["passes"][0]["number"]
    passage = await city.ok(NANGONG_EAST, "checkpoint", "check_passage", {
        "community": NANGONG, "compound": "nangong-1", "gate": "g1", "direction": "in", "temperature_c": 36.4,
        "pass": number})
    assert passage["decision"]["allowed"] is True and passage["events"][0]["actor"] == "gate:nangong-east"
    # Quarantine: a case opened and a check-in recorded
    case = await city.ok(LI_WEI, "quarantine", "open_case", {
        "community": NANGONG, "resident": r, "kind": "home", "reason": "close_contact",
        "starts_on": str(day(1))})
    checkin = await city.ok(LI_WEI, "quarantine", "record_checkin", {
        "case": case["events"][0]["data"]["case"], "on": str(day(1)), "temperature_c": 36.6})
    assert checkin["events"][0]["type"] == "CheckinRecorded"
    # Logistics: stock received, masks reserved for the household
    await city.ok(LI_WEI, "logistics", "receive_stock", {
        "community": NANGONG, "items": [{"item": "masks", "qty": 50}], "source": "allocation"})
    masks = await city.ok(LI_WEI, "logistics", "reserve_masks", {"community": NANGONG, "household": h, "qty": 5})
    assert masks["voucher"] and masks["events"][0]["actor"] == "staff:li-wei"


#: A request of each query the module's city can answer; a query added to QUERIES needs one here.
def query_samples(city: City, visit: str) -> dict[str, dict]:
    return {
        "community": {"community": NANGONG, "on": str(day(1))},
        "rollup": {"scope": "changning", "on": str(day(1)), "detail": "true"},
        "timeline": {"resident": city.r_a, "limit": "10"},
        "audit": {"community": NANGONG, "limit": "5"},
        "health": {},
        "registry.identities": {},
        "registry.contact": {"resident": city.r_a, "purpose": "a welfare call"},
        "registry.names": {"community": NANGONG, "residents": city.r_a},
        "registry.awaiting_verification": {"community": NANGONG, "limit": "5"},
        "registry.household": {"household": city.h_a},
        "registry.compound_households": {"community": NANGONG, "compound": "nangong-1", "limit": "5"},
        "registry.tip_offs": {"community": NANGONG, "open": "true"},
        "registry.pending_registrations": {"community": NANGONG, "limit": "5"},
        "checkpoint.shifts": {"community": NANGONG, "on": str(day(1))},
        "checkpoint.visitor_contact": {"passage": visit, "purpose": "contact tracing"},
        "checkpoint.parcels": {"community": NANGONG, "uncollected": "false", "limit": "5"},
        "quarantine.cases": {"community": NANGONG, "status": "all", "limit": "2"},
        "quarantine.history": {"resident": city.r_a},
        "quarantine.screening_status": {"community": NANGONG, "screening": "round-web", "status": "pending"},
        "quarantine.due_for_release": {"community": NANGONG, "on": str(day(20)), "limit": "2"},
        "quarantine.checkins_due": {"community": NANGONG, "on": str(day(2)), "limit": "2"},
        "logistics.requests": {"community": NANGONG, "limit": "3"},
        "logistics.assignments": {"volunteer": "staff:li-wei"},
        "logistics.stock": {"community": NANGONG},
        "logistics.welfare": {"community": NANGONG},
        "logistics.group_orders": {"community": NANGONG, "open": "true"},
        "logistics.volunteer_hours": {"community": NANGONG, "on": str(day(1))},
        "logistics.vulnerable": {"community": NANGONG, "limit": "5"},
    }


async def test_every_query_answers_over_http_with_its_reply(city):
    from shared.contracts.queries import QUERIES  # the typed queries (branch typed-queries)

    visit = await city.ok(OPERATOR, "checkpoint", "check_passage", {
        "community": NANGONG, "compound": "nangong-1", "gate": "g2", "direction": "in", "temperature_c": 36.4,
        "visitor": {"name": "张三丰", "phone": "13800001111", "host_household": city.h_a, "purpose": "送药"}})
    await city.ok(LI_WEI, "quarantine", "schedule_screening", {
        "community": NANGONG, "compound": "nangong-1", "on": str(day(1)), "screening": "round-web",
        "slots": [{"label": "everyone", "from": "08:00", "to": "11:00"}]})
    samples = query_samples(city, visit["passage"])
    assert set(QUERIES) <= set(samples), f"no sample request for {set(QUERIES) - set(samples)}"
    for view, query in QUERIES.items():
        # The query string's fields are typed to the view's request ("10" is 10, "true" is true)
        # (names and phones go to the resident's (the visited) committee's staff only)
        personal = view in ("registry.contact", "checkpoint.visitor_contact")
        reply = await city.query(LI_WEI if personal else OPERATOR, view, **samples[view])
        assert reply.status_code == 200, (view, reply.text)
        # and the reply is the view's, field for field
        try:
            msgspec.json.decode(reply.content, type=query.reply)
        except msgspec.ValidationError as exc:
            pytest.fail(f"the reply of {view} is not its {query.reply.__name__}: {exc}")


async def test_a_query_string_that_does_not_fit_the_request_names_its_field(city):
    # A value of the wrong type, a field missing, one the view does not take, a day that is none
    cases = await city.query(LI_WEI, "quarantine.cases", community=NANGONG, limit="abc")
    refused(cases, 422, "invalid", field="limit", says="limit='abc'")
    refused(await city.query(LI_WEI, "community"), 422, "invalid", field="community")
    refused(await city.query(LI_WEI, "community", community=NANGONG, colour="red"), 422, "invalid", field="colour")
    refused(await city.query(LI_WEI, "community", community=NANGONG, on="yesterday"), 422, "invalid", field="on")
    # A view no service answers
    refused(await city.query(LI_WEI, "weather", community=NANGONG), 404, "unknown_path", says="weather")
    # and the same query typed right is answered
    assert (await city.query(LI_WEI, "quarantine.cases", community=NANGONG, limit="2")).status_code == 200


# -- every error code by a real case -------------------------------------------------------------

async def test_a_command_no_service_has_is_unknown(city):
    before = await city.record()
    # A service's own answer: the registry has no such command
    refused(await city.command(LI_WEI, "registry", "fly", {"community": NANGONG}), 404, "unknown_command",
            says="registry has no command 'fly'")
    # A command of another service sent to this one
    refused(await city.command(OPERATOR, "checkpoint", "register_compound", {}), 404, "unknown_command",
            says="checkpoint has no command 'register_compound'")
    # No such service, and names no subject can carry: the gateway's own answer, not "retry later"
    for service, name in (("weather", "forecast"), ("registry", "a b"), ("registry", "a..b"), ("registry", "*"),
                          ("registry", ">"), ("registry", "register_compound.x")):
        refused(await city.command(OPERATOR, service, name, {}), 404, "unknown_command")
    assert await city.record() == before
    await city.still_serving()


async def test_a_household_in_a_compound_that_does_not_exist_is_not_found(city):
    before = await city.record()
    reply = await city.command(LI_WEI, "registry", "register_household", {
        "community": NANGONG, "compound": "nowhere-1", "building": "b1", "address": "b1 room 1"})
    refused(reply, 404, "not_found", says="nowhere-1")
    assert await city.record() == before


async def test_an_idempotency_key_sent_again_gives_the_same_reply_once(city):
    key = f"h-{uuid.uuid4()}"
    body = {"community": NANGONG, "compound": "nangong-1", "building": "b1", "address": "b1 room 1201"}
    first = await city.command(LI_WEI, "registry", "register_household", body, key)
    assert first.status_code == 200, first.text
    before = await city.record()
    # When the same command is sent again with the same key: the same reply, word for word
    again = await city.command(LI_WEI, "registry", "register_household", body, key)
    assert again.status_code == 200 and again.content == first.content
    assert first.json()["events"][0]["type"] == "HouseholdRegistered"  # its address stays in the registry
    # and one event in the record, for the key
    assert await city.record() == before
    assert await city.events_of("registry", key) == 1


async def test_the_same_key_with_another_body_is_a_conflict(city):
    key = f"h-{uuid.uuid4()}"
    body = {"community": NANGONG, "compound": "nangong-1", "building": "b1", "address": "b1 room 1301"}
    assert (await city.command(LI_WEI, "registry", "register_household", body, key)).status_code == 200
    before = await city.record()
    reply = await city.command(LI_WEI, "registry", "register_household", {**body, "address": "b1 room 1302"}, key)
    refused(reply, 409, "conflict")
    assert await city.record() == before


async def test_a_key_and_a_body_command_id_that_differ_are_invalid(city):
    before = await city.record()
    body = {"command_id": "h-body", "community": NANGONG, "compound": "nangong-1", "building": "b1",
            "address": "b1 room 1401"}
    refused(await city.command(LI_WEI, "registry", "register_household", body, "h-header"), 422, "invalid",
            field="command_id")
    assert await city.record() == before
    # The same id in both is one command
    same = await city.command(LI_WEI, "registry", "register_household", {**body, "command_id": "h-same"}, "h-same")
    assert same.status_code == 200, same.text


async def test_a_valid_command_the_rules_refuse_now_is_rejected(city):
    before = await city.record()
    # The gate is open already: a change that changes nothing is refused, with the rule
    error = refused(await city.command(LI_WEI, "checkpoint", "set_gate", {
        "community": NANGONG, "compound": "nangong-1", "gate": "g2", "open": True}), 409, "rejected")
    assert error["reason"] == "gate_already_open"
    assert await city.record() == before


async def test_a_body_over_the_limit_is_too_large_and_not_read(city):
    before = await city.record()
    address = "x" * (64 * 1024)
    body = {"community": NANGONG, "compound": "nangong-1", "building": "b1", "address": address}
    # Said by its Content-Length: the gateway refuses it itself, before reading it
    refused(await city.command(LI_WEI, "registry", "register_household", body), 413, "too_large",
            says="the body is over 65536 bytes")

    # and sent in chunks without one: counted as it arrives
    async def chunks():
        raw = json.dumps(body).encode()
        for i in range(0, len(raw), 8192):
            yield raw[i:i + 8192]

    reply = await city.http.post("/v1/commands/registry/register_household", content=chunks(),
                                 headers={**JSON, **city.sessions[LI_WEI.name], "idempotency-key": "big-1"})
    refused(reply, 413, "too_large", says="the body is over 65536 bytes")
    # and one that says it is 10 MB is refused on its headers: its body is not waited for
    async with raw_connection(city) as (reader, writer):
        writer.write(request_head(city, "big-2", 10 * 1024 * 1024))
        status, reply = await read_response(reader)
        assert status == 413 and reply["error"]["code"] == "too_large", (status, reply)
    assert await city.record() == before
    await city.still_serving()


async def test_no_identity_or_one_the_server_does_not_know_is_unauthenticated(city, tmp_path):
    before = await city.record()
    household = {"community": NANGONG, "compound": "nangong-1", "building": "b1", "address": "b1 room 1501"}
    # No token, a token made up, a cookie made up
    refused(await city.command(None, "registry", "register_household", household), 401, "unauthenticated")
    refused(await city.command(None, "registry", "register_household", household,
                               authorization="Bearer " + "A" * 43), 401, "unauthenticated")
    refused(await city.command(None, "registry", "register_household", household,
                               cookie="cordon_session=made-up"), 401, "unauthenticated")
    refused(await city.query(None, "health"), 401, "unauthenticated")
    # Creds of another Cordon's authority: same roles and names, keys the server never trusted
    _, foreign = Authority.open(tmp_path / "another-cordon").user_creds(LI_WEI)
    refused(await city.http.post("/v1/tokens", content=foreign, headers={"content-type": "text/plain"}),
            401, "unauthenticated", says="li-wei")
    # Text that is no creds file at all
    refused(await city.http.post("/v1/tokens", content="hello", headers={"content-type": "text/plain"}),
            422, "invalid", field="creds")
    assert await city.record() == before


async def test_a_revoked_identity_is_logged_out_and_cannot_log_in_again(city):
    victim = Identity(name=f"victim-{uuid.uuid4().hex[:6]}", role="staff", scope=NANGONG)
    key, text = creds(city.url, victim)
    # Given staff logged in over HTTP and working
    city.sessions[victim.name] = await login(city.http, text)
    h = await city.household(victim)
    await city.record()  # logistics knows the household
    await asyncio.sleep(1.1)  # a revocation covers user JWTs issued up to its second
    async with city.stopped("logistics"):
        # and a request of theirs waiting for its reply (logistics busy: the request taken, no reply yet)
        taken = asyncio.Event()

        async def take(msg) -> None:
            taken.set()

        busy = await city.nc.subscribe("cordon.cmd.logistics.>", cb=take)
        before = await city.record()
        waiting = asyncio.create_task(city.command(victim, "logistics", "reserve_masks", {
            "community": NANGONG, "household": h, "qty": 1}))
        await asyncio.wait_for(taken.wait(), 10)
        # When the key is revoked (the CITY account's JWT re-signed with it and pushed to the server)
        await city.authority.push_account(city.url, "CITY", revoked={key: int(time.time())})
        # Then the waiting request is answered: the session is over (not "no reply, retry" later)
        refused(await waiting, 401, "unauthenticated", says=f"the session of '{victim.name}' is over")
        await busy.unsubscribe()
    # and what the token sends next is refused as unauthenticated, and nothing of it is written
    body = {"community": NANGONG, "compound": "nangong-1", "building": "b1", "address": "b1 room 1601"}
    refused(await city.command(victim, "registry", "register_household", body), 401, "unauthenticated",
            says=victim.name)
    assert await city.record() == before
    # and the creds log in no more, while a colleague's session goes on
    refused(await city.http.post("/v1/tokens", content=text, headers={"content-type": "text/plain"}),
            401, "unauthenticated", says=victim.name)
    await city.still_serving()


async def test_logging_out_ends_the_token(city):
    # A login with the JSON form of the creds (the media type in any case, with a charset)
    _, text = creds(city.url, Identity(name=f"wang-{uuid.uuid4().hex[:6]}", role="staff", scope=NANGONG))
    reply = await city.http.post("/v1/tokens", content=json.dumps({"creds": text}),
                                 headers={"content-type": "Application/JSON; charset=UTF-8"})
    assert reply.status_code == 201, reply.text
    assert reply.json()["identity"]["community"] == NANGONG and reply.json()["identity"]["role"] == "staff"
    headers = {"authorization": f"Bearer {reply.json()['token']}"}
    assert (await city.http.delete("/v1/tokens/current", headers=headers)).status_code == 200
    refused(await city.http.get("/v1/queries/health", headers=headers), 401, "unauthenticated")


async def test_an_identity_outside_its_jurisdiction_is_forbidden(city):
    before = await city.record()
    household = {"compound": "beixin-1", "building": "b1", "address": "b1 room 1701"}
    # Nangong's staff sending in Beixin: their credentials do not allow Beixin's subject
    refused(await city.command(LI_WEI, "registry", "register_household", {"community": BEIXIN, **household}),
            403, "forbidden", says=BEIXIN)
    # ... nor an actor not their own: the service refuses it
    refused(await city.command(LI_WEI, "registry", "register_household", {
        "community": NANGONG, "compound": "nangong-1", "building": "b1", "address": "b1 room 1702",
        "actor": "staff:zhao-lei"}), 403, "forbidden", field="actor")
    # A city system without the grant
    refused(await city.command(ARRIVALS_APP, "registry", "register_compound", {
        "community": NANGONG, "compound": "nangong-9", "name": "x", "buildings": ["b1"], "gates": ["g1"]}),
        403, "forbidden", says="arrivals-app")
    # A gate device sending another command than a passage check
    refused(await city.command(NANGONG_EAST, "checkpoint", "set_gate", {
        "community": NANGONG, "compound": "nangong-1", "gate": "g1", "open": False}), 403, "forbidden")
    # ... or checking passage at another community's compound
    refused(await city.command(NANGONG_EAST, "checkpoint", "check_passage", {
        "community": BEIXIN, "compound": "beixin-1", "gate": "g1", "direction": "in", "temperature_c": 36.5,
        "resident": city.r_a}), 403, "forbidden")
    assert await city.record() == before
    # Beixin's own staff may
    await city.household(ZHAO_LEI, BEIXIN, "beixin-1")


async def test_a_query_outside_the_identitys_reach_is_forbidden(city):
    # Staff querying another community: the service refuses it
    refused(await city.query(LI_WEI, "community", community=BEIXIN), 403, "forbidden", field="community")
    # A city system a view it is not granted, a gate device any view: their credentials do not
    # allow the subject, and the gateway says so at once instead of waiting for a reply that cannot come
    refused(await city.query(ARRIVALS_APP, "audit", community=NANGONG), 403, "forbidden",
            says="its credentials do not allow")
    refused(await city.query(NANGONG_EAST, "health"), 403, "forbidden", says="its credentials do not allow")
    # while what they may read, they read
    assert (await city.query(ARRIVALS_APP, "community", community=BEIXIN)).status_code == 200
    assert (await city.query(LI_WEI, "community", community=NANGONG)).status_code == 200


async def test_a_service_not_running_is_unavailable_and_the_same_key_later_applies_once(city):
    h = await city.household()
    await city.record()  # logistics knows the household
    body = {"community": NANGONG, "household": h, "qty": 2}
    async with city.stopped("logistics"):
        before = await city.record()
        # When logistics is not running: no one answers its subject
        refused(await city.command(LI_WEI, "logistics", "reserve_masks", body, "m-1"), 503, "unavailable")
        assert await city.record() == before
    # Then, once it is back, the same key is applied, once
    first = await city.command(LI_WEI, "logistics", "reserve_masks", body, "m-1")
    again = await city.command(LI_WEI, "logistics", "reserve_masks", body, "m-1")
    assert first.status_code == 200 and again.content == first.content
    assert await city.events_of("logistics", "m-1") == 1


# -- bad input: the gateway's own refusals --------------------------------------------------------

async def test_a_body_that_is_not_json_is_refused_and_nothing_written(city):
    before = await city.record()
    path, token = "/v1/commands/registry/register_household", city.sessions[LI_WEI.name]
    # Wrong content types
    for kind in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**token, **({"content-type": kind} if kind else {})}
        reply = await city.http.post(path, content=b'{"community": "x"}', headers=headers)
        refused(reply, 415, "unsupported_media_type", says=kind or "no content type")
    refused(await city.http.post("/v1/tokens", content=b"\x89PNG", headers={"content-type": "image/png"}),
            415, "unsupported_media_type")
    # Malformed JSON, and JSON that is not an object
    for raw in (b'{"community": ', b"[1, 2]", b'"register"', b"\xff\xfe"):
        refused(await city.command(LI_WEI, "registry", "register_household", raw, f"bad-{uuid.uuid4()}"),
                422, "invalid")
    assert await city.record() == before
    await city.still_serving()


async def test_an_unknown_path_or_method_is_answered_in_json(city):
    refused(await city.http.get("/v1/nothing/here"), 404, "unknown_path", says="/v1/nothing/here")
    refused(await city.http.get("/v1/commands/registry/register_household"), 405, "method_not_allowed")
    refused(await city.http.delete("/v1/queries/health"), 405, "method_not_allowed")
    assert (await city.http.get("/healthz")).json() == {"ok": True}
    assert (await city.http.get("/readyz")).status_code == 200


async def test_a_slow_client_is_cut_off_while_others_are_served(city):
    before = await city.record()
    body = json.dumps({"community": NANGONG, "compound": "nangong-1", "building": "b1",
                       "address": "b1 room 1801 (sent one byte at a time)"}).encode()
    async with raw_connection(city) as (reader, writer):
        # Given a client that sends its headers, then its body a byte every 0.1 s (far slower than
        # the gateway waits for a body)
        writer.write(request_head(city, "slow-1", len(body)))
        await writer.drain()

        async def trickle() -> None:
            for i in range(len(body)):
                writer.write(body[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0.1)

        sending = asyncio.create_task(trickle())
        # When another client sends a command meanwhile: it is served
        await city.still_serving()
        assert not sending.done()
        # Then the slow one gets 408 before its body is complete
        status, reply = await read_response(reader)
        assert not sending.done()
        assert status == 408, (status, reply)
        error = reply["error"]
        assert error["code"] == "timeout" and f"{BODY_TIMEOUT_S:g} s" in error["message"], error
        sending.cancel()
    # Nothing of it is written: the record grew by the other client's household only
    one_more = ("registry.events", "registry.commands", "stream")
    assert await city.record() == {k: n + (k in one_more) for k, n in before.items()}
    assert await city.db.fetchval("SELECT count(*) FROM registry.commands WHERE command_id = 'slow-1'") == 0
    await city.still_serving()


async def test_logging_in_while_nats_is_down_is_unavailable_not_unauthenticated(nats_server):
    # Given the gateway serving, and then its NATS server down
    _, text = creds(nats_server.url, LI_WEI)
    async with gateway(nats_server.url) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        await nats_server.stop()
        # When staff log in: the creds are not refused, the server is away, and they are told to retry
        reply = await http.post("/v1/tokens", content=text, headers={"content-type": "text/plain"})
        refused(reply, 503, "unavailable", says="try again")
        # Then, NATS back, the same creds log in
        await nats_server.start()
        await login(http, text)
