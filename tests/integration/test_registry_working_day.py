"""The committee's working day in the registry (issue 17), on one running Cordon (registry, logistics,
views; real NATS with authentication, real PostgreSQL, a clock the test moves):

the arrivals waiting for door-to-door verification, oldest first with how long each has waited; a
household and a compound's households; a resident's vulnerabilities updated, and logistics ranking
by the new ones; screening calls to returnees; a neighbour's tip-off followed up once; the board's
figures of the day. Then every new command and query given bad input: a clear error, nothing written;
and another community's staff refused.
"""
from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass

import asyncpg
import pytest

from services.logistics.app import spec as logistics_spec
from services.registry import tables
from services.registry.app import spec as registry_spec
from services.views.app import spec as views_spec
from shared import directory
from shared.consumer import Consumer
from shared.embedded import ensure_database
from shared.identity import Identity
from shared.subjects import STREAM, event_filters
from tests.support.bus import operator_config, start_secure_nats
from tests.support.cordon import eventually, prc_id
from tests.support.identities import BEIXIN, NANGONG, As, forbidden
from tests.support.logistics import start_services
from tests.support.quarantine import Clock, at, day

pytestmark = pytest.mark.integration

LI_WEI = Identity(name="li-wei", role="staff", scope=NANGONG)
ZHAO = Identity(name="zhao-min", role="staff", scope=BEIXIN)  # another community's staff
WANG_FANG = Identity(name="wang-fang", role="officer", scope="changning.chengjiaqiao")  # the street's
COMPOUND = "nangong-1"
#: What the registry's own tables of this slice hold, and its record: a refusal changes none.
COUNTS = ("events", "commands", "tip_offs", "verifications")


@dataclass
class Day:
    nc: object
    db: asyncpg.Connection
    clock: Clock

    def as_(self, identity: Identity | None = LI_WEI) -> As:
        return As(self.nc, identity)

    async def ok(self, command: str, **fields) -> dict:
        """A command of li-wei, on the subject of Nangong."""
        return await self.as_().ok("registry", command, NANGONG, **fields)

    async def query(self, view: str, identity: Identity | None = LI_WEI, **fields) -> dict:
        return await self.as_(identity).query(view, **fields)

    async def counts(self) -> dict:
        return {t: await self.db.fetchval(f"SELECT count(*) FROM registry.{t}") for t in COUNTS}


@pytest.fixture(scope="module")
async def today(pg_server, tmp_path_factory):
    """Nangong's compound (b1, b2) with households h-1 (b1: r-1, r-2 elderly living alone) and h-2
    (b2: r-3), r-2's arrival a-b cleared on registration, and Beixin's compound with one household;
    the clock at 09:00 of day 1."""
    server = await start_secure_nats(tmp_path_factory.mktemp("nats"))
    dsn = await ensure_database(pg_server.dsn, f"test_{uuid.uuid4().hex[:16]}")
    config = operator_config(server.url, pg_dsn=dsn, backdate_days=0)
    clock = Clock(at(1, "09:00"))
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(server.stop)
        nc, db = await start_services(stack, (registry_spec, logistics_spec, views_spec), config, clock, server.url, dsn)
        world = Day(nc, db, clock)
        await _committees(world)
        yield world


async def _committees(d: Day) -> None:
    await d.ok("register_compound", community=NANGONG, compound=COMPOUND, name="南宫小区", buildings=["b1", "b2"],
               gates=["g1"])
    for household, building in (("h-1", "b1"), ("h-2", "b2")):
        await d.ok("register_household", community=NANGONG, compound=COMPOUND, building=building,
                   address=f"{building} room 1", household=household)
    for n, (resident, household, flags) in enumerate((("r-1", "h-1", []), ("r-2", "h-1", ["elderly_alone"]),
                                                      ("r-3", "h-2", []))):
        await d.ok("register_resident", household=household, resident=resident, name="王小伟",
                   id_number=prc_id(1700 + n), birth_year=1950, vulnerabilities=flags)
    # r-2 came back from Hangzhou (class B, no risk area: cleared at once, on no work list)
    await d.ok("register_arrival", **arrival("r-2", "a-b", "B", False))
    beixin = d.as_(ZHAO)
    await beixin.ok("registry", "register_compound", BEIXIN, community=BEIXIN, compound="beixin-1", name="北新",
                    buildings=["b1"], gates=["g1"])
    await beixin.ok("registry", "register_household", BEIXIN, community=BEIXIN, compound="beixin-1", building="b1",
                    address="b1 room 9", household="hb-1")


def arrival(resident: str, arrival_id: str, city_class: str = "A", risk: bool = True) -> dict:
    return dict(resident=resident, arrival=arrival_id, origin="Wuhan", arrived_on=str(day(1)),
                transport={"kind": "train", "number": "G1722"}, visited=[], city_class=city_class,
                risk_area_visited=risk)


async def test_the_committees_working_day(today: Day):
    d = today
    # Given arrivals registered through the morning, one each hour: a-1 (class A), a-2 (class A),
    # a-3 (class B, no risk area: cleared at once), a-4 (class B via a risk area: waits)
    for hour, (resident, arrival_id, city_class, risk) in enumerate((
            ("r-1", "a-1", "A", True), ("r-3", "a-2", "A", True), ("r-2", "a-3", "B", False),
            ("r-2", "a-4", "B", True))):
        d.clock.now = at(1, f"{9 + hour:02d}:00")
        await d.ok("register_arrival", **arrival(resident, arrival_id, city_class, risk))
    # When a-2 is verified at noon, and staff look at 15:30
    d.clock.now = at(1, "12:00")
    await d.ok("verify_arrival", arrival="a-2", outcome="cleared", documents_checked=True)
    d.clock.now = at(1, "15:30")
    # Then the list has a-1 and a-4, oldest first, a page at a time, with the hours waited till 15:30
    first = await d.query("registry.awaiting_verification", community=NANGONG, limit=1)
    assert first["count"] == 2 and first["next"] == "a-1", first
    [a1] = first["arrivals"]
    assert (a1["arrival"], a1["resident"], a1["display_name"], a1["household"], a1["building"], a1["waited_hours"]) \
        == ("a-1", "r-1", "王*伟", "h-1", "b1", 6.5)
    second = await d.query("registry.awaiting_verification", community=NANGONG, limit=1, after="a-1")
    assert [(a["arrival"], a["waited_hours"]) for a in second["arrivals"]] == [("a-4", 3.5)]
    assert second["next"] is None
    # and nothing personal is in it (no name, no origin, no train)
    assert "王小伟" not in json.dumps(first, ensure_ascii=False) and "G1722" not in json.dumps(first)

    # Given the household and the compound asked for: residents with masked names and flags
    household = await d.query("registry.household", household="h-1")
    assert (household["community"], household["compound"], household["building"]) == (NANGONG, COMPOUND, "b1")
    assert [(r["resident"], r["display_name"], r["vulnerabilities"], r["moved_out"])
            for r in household["residents"]] == [("r-1", "王*伟", [], False), ("r-2", "王*伟", ["elderly_alone"], False)]
    page = await d.query("registry.compound_households", community=NANGONG, compound=COMPOUND, limit=1)
    assert (page["households"], page["next"]) == ([{"household": "h-1", "building": "b1", "residents": 2}], "h-1")
    rest = await d.query("registry.compound_households", community=NANGONG, compound=COMPOUND, after="h-1")
    assert (rest["households"], rest["next"]) == ([{"household": "h-2", "building": "b2", "residents": 1}], None)

    # When r-3 (h-2) is found to depend on a medical device
    await d.ok("update_resident", resident="r-3", vulnerabilities=["medical_device"])
    # Then the registry answers with it, logistics' directory follows, and a request of h-2 ranks by it
    assert (await d.query("registry.household", household="h-2"))["residents"][0]["vulnerabilities"] == [
        "medical_device"]
    await eventually(lambda: d.db.fetchval("SELECT vulnerabilities = '{medical_device}' FROM logistics.dir_residents "
                                           "WHERE resident = 'r-3'"), what="logistics' directory updated")
    vulnerable = await d.query("logistics.vulnerable", community=NANGONG)
    assert {(r["resident"], tuple(r["vulnerabilities"])) for r in vulnerable["residents"]} == {
        ("r-2", ("elderly_alone",)), ("r-3", ("medical_device",))}
    request = await d.as_().ok("logistics", "request_supplies", NANGONG, community=NANGONG, household="h-2",
                               kind="food", items=[{"item": "rice", "qty": 1}])
    assert "medical_device" in request["events"][0]["data"]["priority_reasons"]

    # When returnees are called: r-1 at home (their latest arrival), r-3 no answer about a-2
    reached = await d.ok("record_call", resident="r-1", outcome="reached_at_home")
    assert reached["events"][0]["data"]["arrival"] == "a-1"
    await d.ok("record_call", resident="r-3", arrival="a-2", outcome="no_answer")
    # and a neighbour tells of h-2 not staying home, which staff follow up
    tip = await d.ok("record_tip_off", community=NANGONG, compound=COMPOUND, household="h-2",
                     kind="not_staying_home", note="楼上邻居说他每天下午出门")
    tip_off = tip["events"][0]["data"]["tip_off"]
    assert tip["events"][0]["data"]["building"] == "b2" and "note" not in tip["events"][0]["data"]
    listed = await d.query("registry.tip_offs", community=NANGONG, open=True)
    assert listed["open"] == 1 and [t["note"] for t in listed["tip_offs"]] == ["楼上邻居说他每天下午出门"]
    # (the street's officer sees the tip-off, not the words)
    assert (await d.query("registry.tip_offs", WANG_FANG, community=NANGONG))["tip_offs"][0]["note"] is None
    await d.ok("follow_up_tip_off", tip_off=tip_off, outcome="confirmed", note="已上门劝导")
    # Then a second follow-up is refused, and the work list has nothing open
    again = await d.as_().command("registry", "follow_up_tip_off", NANGONG, tip_off=tip_off, outcome="unfounded")
    assert (again["ok"], again["error"]["reason"]) == (False, "already_followed_up"), again
    done = await d.query("registry.tip_offs", community=NANGONG)
    assert done["open"] == 0 and [(t["outcome"], t["follow_up_note"]) for t in done["tip_offs"]] == [
        ("confirmed", "已上门劝导")]
    assert await d.query("registry.tip_offs", community=NANGONG, open=True) == {
        "ok": True, "community": NANGONG, "open": 0, "tip_offs": []}

    # And the board of the day counts the calls (one reached) and the tip-off followed up
    last = (await d.nc.jetstream().stream_info(STREAM)).state.last_seq
    board = await d.query("community", community=NANGONG, on=str(day(1)), at_least=last)
    assert (board["calls_today"], board["tip_offs"]) == ({"made": 2, "reached": 1}, {"open": 0, "followed_up_today": 1})
    assert board["figures"]["calls"] == 2 and board["figures"]["tip_offs_followed_up"] == 1


# -- bad input: a clear error, nothing written ----------------------------------------------------


BAD_COMMANDS = [  # (command, fields, code, field or reason)
    ("update_resident", dict(resident="r-1", vulnerabilities=["flying"]), "invalid", "vulnerabilities[0]"),
    ("update_resident", dict(resident="r-1", vulnerabilities=["elderly_alone", "elderly_alone"]), "invalid",
     "vulnerabilities[1]"),
    ("update_resident", dict(resident="r-1"), "invalid", "vulnerabilities"),
    ("update_resident", dict(resident="R 1", vulnerabilities=[]), "invalid", "resident"),
    ("update_resident", dict(resident="r-nobody", vulnerabilities=[]), "not_found", "resident"),
    ("update_resident", dict(resident="r-2", vulnerabilities=["elderly_alone"]), "rejected", "no_change"),
    ("record_call", dict(resident="r-1", outcome="maybe"), "invalid", "outcome"),
    ("record_call", dict(resident="r-1", outcome="no_answer", note="he said"), "invalid", "note"),
    ("record_call", dict(resident="r-nobody", outcome="no_answer"), "not_found", "resident"),
    ("record_call", dict(resident="r-1", arrival="a-nowhere", outcome="no_answer"), "not_found", "arrival"),
    ("record_call", dict(resident="r-1", arrival="a-b", outcome="no_answer"), "rejected",
     "arrival_of_another_resident"),
    ("record_tip_off", dict(community=NANGONG, compound=COMPOUND, kind="rumour"), "invalid", "kind"),
    ("record_tip_off", dict(community=NANGONG, compound=COMPOUND, kind="other", note="his phone 13800138000"),
     "invalid", "note"),
    ("record_tip_off", dict(community=NANGONG, compound="nowhere", kind="other"), "not_found", "compound"),
    ("record_tip_off", dict(community=NANGONG, compound=COMPOUND, building="b9", kind="other"), "not_found",
     "building"),
    ("record_tip_off", dict(community=NANGONG, compound=COMPOUND, household="h-1", building="b2", kind="other"),
     "rejected", "household_elsewhere"),
    ("follow_up_tip_off", dict(tip_off="t-nowhere", outcome="confirmed"), "not_found", "tip_off"),
    ("follow_up_tip_off", dict(tip_off="t-1", outcome="perhaps"), "invalid", "outcome"),
]


@pytest.mark.parametrize("command, fields, code, where", BAD_COMMANDS,
                         ids=[f"{c}-{i}" for i, (c, *_) in enumerate(BAD_COMMANDS)])
async def test_a_bad_command_is_refused_clearly_and_writes_nothing(today: Day, command, fields, code, where):
    before = await today.counts()
    reply = await today.as_().command("registry", command, NANGONG, **fields)
    assert not reply["ok"] and reply["error"]["code"] == code, reply
    assert reply["error"].get("reason" if code == "rejected" else "field") == where, reply
    assert await today.counts() == before


BAD_QUERIES = [  # (view, fields, code, field)
    ("registry.awaiting_verification", dict(community="nangong"), "invalid", "community"),
    ("registry.awaiting_verification", dict(community=NANGONG, limit=0), "invalid", "limit"),
    ("registry.awaiting_verification", dict(community=NANGONG, after="A 1"), "invalid", "after"),
    ("registry.household", dict(), "invalid", "household"),
    ("registry.household", dict(household="h-nowhere"), "not_found", "household"),
    ("registry.compound_households", dict(community=NANGONG), "invalid", "compound"),
    ("registry.compound_households", dict(community=NANGONG, compound="nowhere"), "not_found", "compound"),
    ("registry.compound_households", dict(community=NANGONG, compound=COMPOUND, limit=100000), "invalid", "limit"),
    ("registry.tip_offs", dict(community=NANGONG, open="yes"), "invalid", "open"),
    ("registry.tip_offs", dict(community=NANGONG, colour="red"), "invalid", "colour"),
]


@pytest.mark.parametrize("view, fields, code, field", BAD_QUERIES,
                         ids=[f"{v}-{i}" for i, (v, *_) in enumerate(BAD_QUERIES)])
async def test_a_bad_query_is_refused_naming_the_field_and_writes_nothing(today: Day, view, fields, code, field):
    before = await today.counts()
    reply = await today.query(view, None, **fields)  # (from inside Cordon: staff are refused a place not theirs)
    assert (reply["ok"], reply["error"]["code"], reply["error"].get("field")) == (False, code, field), reply
    assert await today.counts() == before


async def test_another_communitys_staff_may_neither_act_nor_read_here(today: Day):
    # Given a tip-off of Nangong's
    tip = await today.ok("record_tip_off", community=NANGONG, compound=COMPOUND, kind="gathering")
    tip_off = tip["events"][0]["data"]["tip_off"]
    before = await today.counts()
    beixin = today.as_(ZHAO)
    # Commands on Nangong's records, sent on their own community's subject: refused, nothing written
    for command, fields in (("update_resident", dict(resident="r-1", vulnerabilities=["chronic_illness"])),
                            ("record_call", dict(resident="r-1", outcome="no_answer")),
                            ("record_tip_off", dict(community=NANGONG, compound=COMPOUND, kind="gathering")),
                            ("follow_up_tip_off", dict(tip_off=tip_off, outcome="confirmed"))):
        forbidden(await beixin.command("registry", command, BEIXIN, **fields))
    # nor on Nangong's subject
    forbidden(await beixin.command("registry", "update_resident", NANGONG, resident="r-1", vulnerabilities=[]))
    # Queries of Nangong's work lists and records
    for view, fields in (("registry.awaiting_verification", dict(community=NANGONG)),
                         ("registry.household", dict(household="h-1")),
                         ("registry.compound_households", dict(community=NANGONG, compound=COMPOUND)),
                         ("registry.tip_offs", dict(community=NANGONG))):
        forbidden(await beixin.query(view, **fields))
    # while their own household is theirs to read
    assert (await beixin.query("registry.household", household="hb-1"))["community"] == BEIXIN
    assert await today.counts() == before


async def test_a_directory_deployed_before_takes_resident_updates_from_where_it_was(today: Day):
    # Given a service's directory consumer as deployed before issue 17: without ResidentUpdated, and
    # every event it wanted applied already
    old_events = [e for e in directory.EVENTS if e != "ResidentUpdated"]
    deployed = Consumer(name="probe-directory", schema="probe", subjects=event_filters("registry", *old_events),
                        handle=None, pool=None, nc=today.nc)
    await deployed._ensure_consumer()
    js = today.nc.jetstream()
    assert (await js.consumer_info(STREAM, "probe-directory")).num_pending > 0
    # When the service starts again, its consumer now listening to ResidentUpdated too
    upgraded = Consumer(name="probe-directory", schema="probe", subjects=event_filters("registry", *directory.EVENTS),
                        handle=None, pool=None, nc=today.nc)
    await upgraded._ensure_consumer()
    # Then the durable has the new filter (JetStream's create updates a durable that exists) and kept
    # its place: a ResidentUpdated is one more to deliver
    info = await js.consumer_info(STREAM, "probe-directory")
    assert set(info.config.filter_subjects) == set(upgraded.subjects)
    pending = info.num_pending
    await today.ok("update_resident", resident="r-1", vulnerabilities=["chronic_illness"])
    await eventually(lambda: _pending_grew(js, pending), what="the update to deliver")


async def _pending_grew(js, before: int) -> bool:
    return (await js.consumer_info(STREAM, "probe-directory")).num_pending == before + 1


async def test_the_work_lists_writes_hold_whichever_runs_first_in_a_batch(today: Day):
    # A batch runs each statement once for all its commands, in the order statements first appeared
    # (Context.write): an arrival registered and verified in one batch, after another verification,
    # has its verification written before its registration; so does a tip-off followed up at once
    at_ = at(1, "10:00")
    written = today.db.transaction()
    await written.start()
    try:
        await today.db.execute(tables.VERIFIED, "a-batch", NANGONG, at_)
        await today.db.execute(tables.INSERT_WAITING, "a-batch", NANGONG, "r-1", "h-1", COMPOUND, "b1", day(1), "A",
                               at_)
        await today.db.execute(tables.FOLLOWED_UP, "t-batch", NANGONG, COMPOUND, "unfounded", None, at_,
                               "staff:li-wei")
        await today.db.execute(tables.INSERT_TIP_OFF, "t-batch", NANGONG, COMPOUND, None, None, "other", None, at_,
                               "staff:li-wei")
        # Then the arrival is verified (off the list) and the tip-off followed up (not open)
        assert await today.db.fetchval("SELECT verified_at FROM registry.verifications WHERE arrival = 'a-batch'")
        assert tuple(await today.db.fetchrow(
            "SELECT kind, outcome FROM registry.tip_offs WHERE tip_off = 't-batch'")) == ("other", "unfounded")
    finally:
        await written.rollback()  # nothing of this test stays
