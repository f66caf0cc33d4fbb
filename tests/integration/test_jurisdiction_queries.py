"""Who may read what, checked by the real services (views, audit, quarantine, logistics) on real
NATS and PostgreSQL: a committee's staff read their own community and nothing of another; a
street officer reads every community of the street and none of the next street; a city system
reads what it is granted; a gate reads nothing. Every refusal is ``forbidden``.

The caller's identity arrives as the ``Nats-Request-Info`` header that nats-server stamps on
requests from the CITY account (set here by the test on an unsecured NATS: see
tests/support/identities.py); the NATS-side permissions are tested with real credentials elsewhere.
The city is built once for the module: queries write nothing."""
from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass

import pytest

from services.audit.app import spec as audit_spec
from services.logistics.app import spec as logistics_spec
from services.quarantine.app import spec as quarantine_spec
from services.registry.app import spec as registry_spec
from services.views.app import spec as views_spec
from shared.embedded import ensure_database
from shared.identity import Identity
from shared.subjects import STREAM
from tests.support.cordon import eventually, prc_id
from tests.support.bus import operator_config
from tests.support.bus import start_secure_nats
from tests.support.identities import As, BEIXIN, JINXIU, NANGONG, forbidden
from tests.support.logistics import start_services
from tests.support.quarantine import Clock, at, day

pytestmark = pytest.mark.integration

STREET = "changning.chengjiaqiao"
COMMUNITIES = (NANGONG, BEIXIN, JINXIU)
LI_WEI = Identity(name="li-wei", role="staff", scope=NANGONG)
WANG_FANG = Identity(name="wang-fang", role="officer", scope=STREET)
VOLUNTEER = "vol-1"


@dataclass
class City:
    nc: object
    #: community -> its one resident
    residents: dict[str, str]

    def as_(self, identity: Identity | None) -> As:
        return As(self.nc, identity)


@pytest.fixture(scope="module")
async def city(pg_server, tmp_path_factory):
    """Three communities (two of one street, one of the next), each with a compound, a household,
    a resident, an open case and a supply request, seen by the views and the audit log."""
    server = await start_secure_nats(tmp_path_factory.mktemp("nats"))
    dsn = await ensure_database(pg_server.dsn, f"test_{uuid.uuid4().hex[:16]}")
    config = operator_config(server.url, pg_dsn=dsn, backdate_days=0)
    clock = Clock(at(1, "09:00"))
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(server.stop)
        nc, db = await start_services(stack, (registry_spec, quarantine_spec, logistics_spec, views_spec, audit_spec), config, clock, server.url, dsn)
        residents = await _populate(As(nc, None), db)
        await _seen_by_views_and_audit(nc, db)
        yield City(nc, residents)


async def _populate(operator: As, db) -> dict[str, str]:
    residents = {}
    for n, community in enumerate(COMMUNITIES):
        compound = f"{community.rsplit('.', 1)[1]}-1"
        await operator.ok("registry", "register_compound", community=community, compound=compound, name=compound,
                          buildings=["b1"], gates=["g1"])
        reply = await operator.ok("registry", "register_household", community=community, compound=compound,
                                  building="b1", address="b1 room 1")
        household = reply["events"][0]["data"]["household"]
        reply = await operator.ok("registry", "register_resident", household=household, name="王小伟",
                                  id_number=prc_id(700 + n), birth_year=1950)
        residents[community] = reply["events"][0]["data"]["resident"]
        await eventually(lambda: db.fetchval("SELECT 1 FROM logistics.dir_households WHERE household = $1",
                                             household))
        await operator.ok("quarantine", "open_case", community=community, resident=residents[community],
                          kind="monitoring", reason="fever", starts_on=str(day(1)), household=household,
                          compound=compound, building="b1")
        await operator.ok("logistics", "receive_stock", community=community, items=[{"item": "rice", "qty": 5}],
                          source="allocation")
        reply = await operator.ok("logistics", "request_supplies", community=community, household=household,
                                  kind="food", items=[{"item": "rice", "qty": 1}])
        # one volunteer carries a delivery in each community
        await operator.ok("logistics", "assign_delivery", request=reply["request"], volunteer=VOLUNTEER)
    return residents


async def _seen_by_views_and_audit(nc, db) -> None:
    outboxes = " + ".join(f"(SELECT count(*) FROM {s}.outbox)" for s in ("registry", "quarantine", "logistics"))
    await eventually(lambda: db.fetchval(f"SELECT {outboxes} = 0"), what="outboxes empty")
    last = (await nc.jetstream().stream_info(STREAM)).state.last_seq
    generation = await eventually(lambda: db.fetchval("SELECT generation FROM views.current"))
    await eventually(lambda: db.fetchval(f"SELECT hwm >= $1 FROM views_g{generation}.meta", last), what="views")
    await eventually(lambda: db.fetchval("SELECT hwm >= $1 FROM audit.head", last), what="audit")


def ok(reply: dict) -> dict:
    assert reply["ok"], reply
    return reply


async def test_staff_read_their_own_community(city):
    staff, mine = city.as_(LI_WEI), NANGONG
    assert ok(await staff.query("community", community=mine, on=str(day(1))))["figures"]["residents"] == 1
    assert [c["resident"] for c in ok(await staff.query("quarantine.cases", community=mine))["cases"]] == [
        city.residents[mine]]
    assert ok(await staff.query("logistics.requests", community=mine))["count"] == 1
    assert ok(await staff.query("timeline", resident=city.residents[mine]))["events"]
    assert ok(await staff.query("quarantine.history", resident=city.residents[mine]))["cases"]
    rows = ok(await staff.query("audit", limit=1000))["rows"]  # no community named: their own only
    assert rows and {r["community"] for r in rows} == {mine}
    # the volunteer also delivers elsewhere: the staff see the delivery in their community only
    assigned = ok(await staff.query("logistics.assignments", volunteer=VOLUNTEER))["assignments"]
    assert [a["community"] for a in assigned] == [mine]


async def test_staff_read_nothing_of_another_community(city):
    staff, theirs = city.as_(LI_WEI), BEIXIN
    forbidden(await staff.query("community", community=theirs), theirs)
    forbidden(await staff.query("quarantine.cases", community=theirs), theirs)
    forbidden(await staff.query("logistics.requests", community=theirs), theirs)
    forbidden(await staff.query("logistics.welfare", community=theirs), theirs)
    forbidden(await staff.query("timeline", resident=city.residents[theirs]), theirs)
    forbidden(await staff.query("quarantine.history", resident=city.residents[theirs]), theirs)
    forbidden(await staff.query("audit", community=theirs), theirs)
    forbidden(await staff.query("rollup", scope=STREET), STREET)
    # a search by resident finds nothing of theirs either: it is narrowed to the staff's community
    assert ok(await staff.query("audit", resident=city.residents[theirs]))["rows"] == []


async def test_a_street_officer_reads_every_community_of_the_street_and_none_of_the_next(city):
    officer = city.as_(WANG_FANG)
    for community in (NANGONG, BEIXIN):
        assert ok(await officer.query("community", community=community, on=str(day(1))))["figures"]["residents"] == 1
        assert ok(await officer.query("quarantine.cases", community=community))["cases"]
        assert ok(await officer.query("timeline", resident=city.residents[community]))["events"]
    report = ok(await officer.query("rollup", scope=STREET, on=str(day(1))))
    assert (report["communities"], report["figures"]["residents"]) == (2, 2)
    assert {r["community"] for r in ok(await officer.query("audit", limit=1000))["rows"]} == {NANGONG, BEIXIN}
    forbidden(await officer.query("community", community=JINXIU), JINXIU)
    forbidden(await officer.query("quarantine.cases", community=JINXIU), JINXIU)
    forbidden(await officer.query("timeline", resident=city.residents[JINXIU]), JINXIU)
    forbidden(await officer.query("rollup", scope="changning"), "changning")
    forbidden(await officer.query("audit", community=JINXIU), JINXIU)


async def test_a_city_system_reads_what_it_is_granted_and_a_gate_reads_nothing(city):
    commission = city.as_(Identity(name="health-commission", role="city-system", grants=("qry:rollup",)))
    assert ok(await commission.query("rollup", scope="city", on=str(day(1))))["communities"] == 3
    forbidden(await commission.query("community", community=NANGONG), "qry:rollup")
    forbidden(await commission.query("audit"), "qry:rollup")
    gate = city.as_(Identity(name="nangong-east", role="gate", scope=NANGONG, compound="nangong-1"))
    for view, fields in (("community", {"community": NANGONG}), ("timeline", {"resident": city.residents[NANGONG]})):
        forbidden(await gate.query(view, **fields))


async def test_from_inside_cordon_every_query_answers_as_before(city):
    operator = city.as_(None)
    assert ok(await operator.query("rollup", scope="city", on=str(day(1))))["communities"] == 3
    assert {r["community"] for r in ok(await operator.query("audit", limit=1000))["rows"]} == set(COMMUNITIES)
    assert ok(await operator.query("timeline", resident=city.residents[JINXIU]))["events"]
    assert ok(await operator.query("logistics.assignments", volunteer=VOLUNTEER))["count"] == 3
