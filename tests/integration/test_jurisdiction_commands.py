"""Who may send which command where, checked by the real services (registry, quarantine,
checkpoint) on real NATS and PostgreSQL: one story per rule. Every refusal is ``forbidden``,
writes nothing (events, stored replies, rows; the stream keeps its length) and leaves the service
serving the next, entitled command.

The caller's identity arrives as the ``Nats-Request-Info`` header that nats-server stamps on
requests from the CITY account (set here by the test on an unsecured NATS: see
tests/support/identities.py). That NATS itself refuses what a user's permissions do not allow is
tested with real credentials elsewhere (the NATS side)."""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import asyncpg
import pytest

from services.checkpoint.app import spec as checkpoint_spec
from services.quarantine.app import spec as quarantine_spec
from services.registry.app import spec as registry_spec
from shared.identity import Identity
from shared.subjects import STREAM
from tests.support.cordon import eventually, prc_id, running
from tests.support.bus import connect
from tests.support.identities import As, BEIXIN, NANGONG, forbidden
from tests.support.quarantine import Clock, at, day

pytestmark = pytest.mark.integration

LI_WEI = Identity(name="li-wei", role="staff", scope=NANGONG)
ZHAO_LEI = Identity(name="zhao-lei", role="staff", scope=BEIXIN)
ARRIVALS_APP = Identity(name="arrivals-app", role="city-system", grants=("cmd:registry.register_arrival",))
NANGONG_EAST = Identity(name="nangong-east", role="gate", scope=NANGONG, compound="nangong-1")
SERVICES = ("registry", "quarantine", "checkpoint")


@dataclass
class City:
    nc: object
    db: asyncpg.Connection
    operator: As
    h_a: str  # a household of Nangong (compound nangong-1), resident r_a
    r_a: str
    h_b: str  # a household of Beixin (compound beixin-1), resident r_b, whose case is case-b
    r_b: str

    def as_(self, identity: Identity) -> As:
        return As(self.nc, identity)

    async def record(self) -> tuple:
        """What a refused command must not change: every service's events and stored replies, and
        the stream once every outbox is empty."""
        outboxes = " + ".join(f"(SELECT count(*) FROM {s}.outbox)" for s in SERVICES)
        await eventually(lambda: self.db.fetchval(f"SELECT {outboxes} = 0"), what="outboxes empty")
        counts = [await self.db.fetchval(f"SELECT count(*) FROM {s}.{t}")
                  for s in SERVICES for t in ("events", "commands")]
        info = await self.nc.jetstream().stream_info(STREAM)
        return (*counts, info.state.messages)


@pytest.fixture
async def city(nats_url, pg_dsn):
    clock = Clock(at(1, "09:00"))  # before the evening sweep: the quarantine writes nothing by itself
    async with contextlib.AsyncExitStack() as stack:
        for spec in (registry_spec, quarantine_spec, checkpoint_spec):
            await stack.enter_async_context(running(spec(), nats_url, pg_dsn, clock=clock))
        nc = await connect(nats_url)
        stack.push_async_callback(nc.close)
        db = await asyncpg.connect(pg_dsn)
        stack.push_async_callback(db.close)
        operator = As(nc, None)  # from inside CORDON: sets the city up
        for community, compound in ((NANGONG, "nangong-1"), (NANGONG, "nangong-2"), (BEIXIN, "beixin-1")):
            await operator.ok("registry", "register_compound", community=community, compound=compound,
                              name=compound, buildings=["b1"], gates=["g1"])
        households, residents = [], []
        for n, (community, compound) in enumerate(((NANGONG, "nangong-1"), (BEIXIN, "beixin-1"))):
            reply = await operator.ok("registry", "register_household", community=community, compound=compound,
                                      building="b1", address=f"b1 room {n}")
            households.append(reply["events"][0]["data"]["household"])
            reply = await operator.ok("registry", "register_resident", household=households[-1], name="王小伟",
                                      id_number=prc_id(900 + n), birth_year=1950)
            residents.append(reply["events"][0]["data"]["resident"])
        await eventually(lambda: db.fetchval("SELECT count(*) = 2 FROM quarantine.dir_residents"))
        await eventually(lambda: db.fetchval("SELECT count(*) = 3 FROM checkpoint.dir_compounds"))
        await operator.ok("quarantine", "open_case", community=BEIXIN, resident=residents[1], kind="home",
                          reason="close_contact", starts_on=str(day(1)), case="case-b")
        yield City(nc, db, operator, households[0], residents[0], households[1], residents[1])


async def test_staff_of_one_community_cannot_touch_a_case_of_another(city):
    before = await city.record()
    li_wei = city.as_(LI_WEI)
    # Li Wei, staff of Nangong, releases Beixin's case on her own community's subject
    forbidden(await li_wei.command("quarantine", "release_case", NANGONG, case="case-b", on=str(day(1))),
              "case:case-b", BEIXIN)
    # ... or moves it to hospital on Beixin's subject: refused on the subject, before anything is read
    error = forbidden(await li_wei.command("quarantine", "transfer_case", BEIXIN, case="case-b", to="hospital"),
                      BEIXIN)
    assert error["field"] == "subject"
    # Then nothing is written, and Beixin's staff, who may, are served
    assert await city.record() == before
    moved = await city.as_(ZHAO_LEI).ok("quarantine", "transfer_case", BEIXIN, case="case-b", to="hospital")
    assert moved["events"][0]["actor"] == "staff:zhao-lei"


async def test_staff_cannot_put_another_communitys_resident_under_quarantine(city):
    # Given a resident of Beixin with no case yet, known to the quarantine's directory
    reply = await city.operator.ok("registry", "register_resident", household=city.h_b, name="赵六",
                                   id_number=prc_id(950), birth_year=1970)
    r_b2 = reply["events"][0]["data"]["resident"]
    await eventually(lambda: city.db.fetchval("SELECT 1 FROM quarantine.dir_residents WHERE resident = $1", r_b2))
    before = await city.record()
    # When Nangong's staff name that resident in a case of their own community: the directory says
    # where the resident lives, and that is refused before any rule is applied
    forbidden(await city.as_(LI_WEI).command("quarantine", "open_case", NANGONG, community=NANGONG,
                                             resident=r_b2, kind="home", reason="close_contact",
                                             starts_on=str(day(1))), f"resident:{r_b2}", BEIXIN)
    # ... and Beixin's resident who has a case already: refused on that case, whatever its state
    forbidden(await city.as_(LI_WEI).command("quarantine", "open_case", NANGONG, community=NANGONG,
                                             resident=city.r_b, kind="home", reason="close_contact",
                                             starts_on=str(day(1))), "case:case-b", BEIXIN)
    assert await city.record() == before


async def test_staff_cannot_register_anyone_in_another_communitys_compound_or_household(city):
    before = await city.record()
    li_wei = city.as_(LI_WEI)
    # A household in Beixin's compound, sent on Nangong's subject: the payload names Beixin
    forbidden(await li_wei.command("registry", "register_household", NANGONG, community=BEIXIN,
                                   compound="beixin-1", building="b1", address="b1 room 9"), "subject of " + NANGONG)
    # A resident in Beixin's household: no community in the payload, the household says where
    forbidden(await li_wei.command("registry", "register_resident", NANGONG, household=city.h_b, name="李四",
                                   id_number=prc_id(911), birth_year=1960), BEIXIN)
    assert await city.record() == before
    # Her own community's household is hers to fill
    added = await li_wei.ok("registry", "register_resident", NANGONG, household=city.h_a, name="李四",
                            id_number=prc_id(911), birth_year=1960)
    assert added["events"][0]["community"] == NANGONG


async def test_a_forged_actor_and_a_system_actor_are_forbidden(city):
    before = await city.record()
    li_wei = city.as_(LI_WEI)
    for actor in ("staff:zhao-lei", "system:quarantine-arrivals", "operator:admin"):
        error = forbidden(await li_wei.command("quarantine", "open_case", NANGONG, actor=actor, community=NANGONG,
                                               resident=city.r_a, kind="home", reason="close_contact",
                                               starts_on=str(day(1))), "staff:li-wei")
        assert error["field"] == "actor"
    assert await city.record() == before
    opened = await li_wei.ok("quarantine", "open_case", NANGONG, community=NANGONG, resident=city.r_a,
                             kind="home", reason="close_contact", starts_on=str(day(1)))
    assert opened["events"][0]["actor"] == "staff:li-wei"


async def test_staff_send_on_their_communitys_subject_only(city):
    before = await city.record()
    error = forbidden(await city.as_(LI_WEI).command(
        "registry", "register_household", None, community=NANGONG, compound="nangong-1", building="b1",
        address="b1 room 8"), "cordon.cmd.registry.register_household.<district>.<street>.<committee>")
    assert error["field"] == "subject"
    assert await city.record() == before


async def test_a_city_system_registers_arrivals_in_any_community_but_verifies_none(city):
    app = city.as_(ARRIVALS_APP)
    arrival = dict(origin="Wuhan", arrived_on=str(day(1)), transport={"kind": "train", "number": "G1722"},
                   visited=[{"place": "Wuhan", "from": str(day(1)), "to": str(day(1))}], city_class="A",
                   risk_area_visited=True)
    in_nangong = await app.ok("registry", "register_arrival", resident=city.r_a, **arrival)
    in_beixin = await app.ok("registry", "register_arrival", BEIXIN, resident=city.r_b, **arrival)
    assert [r["events"][0]["community"] for r in (in_nangong, in_beixin)] == [NANGONG, BEIXIN]
    assert in_nangong["events"][0]["actor"] == "city:arrivals-app"
    before = await city.record()
    arrival_id = in_beixin["events"][0]["data"]["arrival"]
    for community in (None, BEIXIN):
        forbidden(await app.command("registry", "verify_arrival", community, arrival=arrival_id,
                                    outcome="home_quarantine", documents_checked=True),
                  "cmd:registry.register_arrival")
    forbidden(await app.command("registry", "register_compound", None, community=NANGONG, compound="x",
                                name="x", buildings=["b1"], gates=["g1"]))
    assert await city.record() == before
    verified = await city.as_(ZHAO_LEI).ok("registry", "verify_arrival", BEIXIN, arrival=arrival_id,
                                           outcome="home_quarantine", documents_checked=True)
    assert verified["events"][0]["data"]["outcome"] == "home_quarantine"


async def test_a_gate_device_checks_passage_at_its_own_compound_only(city):
    gate = city.as_(NANGONG_EAST)
    passage = dict(gate="g1", direction="in", temperature_c=36.5, resident=city.r_a)
    checked = await gate.ok("checkpoint", "check_passage", NANGONG, community=NANGONG, compound="nangong-1",
                            **passage)
    assert checked["events"][0]["actor"] == "gate:nangong-east"
    before = await city.record()
    error = forbidden(await gate.command("checkpoint", "check_passage", NANGONG, community=NANGONG,
                                         compound="nangong-2", **passage), "nangong-1")
    assert error["field"] == "compound"
    forbidden(await gate.command("checkpoint", "check_passage", BEIXIN, community=BEIXIN, compound="beixin-1",
                                 **passage))
    forbidden(await gate.command("checkpoint", "set_gate", NANGONG, community=NANGONG, compound="nangong-1",
                                 gate="g1", open=False))
    forbidden(await gate.command("checkpoint", "check_passage", None, community=NANGONG, compound="nangong-1",
                                 **passage))
    assert await city.record() == before
    assert (await gate.command("checkpoint", "check_passage", NANGONG, community=NANGONG, compound="nangong-1",
                               **passage))["ok"]


async def test_an_identity_header_that_cannot_be_read_is_unauthenticated(city):
    before = await city.record()
    for header in ("{not json", '{"name_tag": "li-wei", "tags": ["role:mayor"]}', '{"acc": "ACITY"}'):
        stranger = As(city.nc, None, headers={"Nats-Request-Info": header})
        replies = await asyncio.gather(
            stranger.command("registry", "register_household", NANGONG, community=NANGONG, compound="nangong-1",
                             building="b1", address="b1 room 7"),
            stranger.query("quarantine.cases", community=NANGONG))
        for reply in replies:
            assert not reply["ok"] and reply["error"]["code"] == "unauthenticated", reply
    assert await city.record() == before
