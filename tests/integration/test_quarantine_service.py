"""The quarantine service end to end on real NATS and PostgreSQL, with a clock the test moves: a
21-day case driven by the scheduler, missed check-ins once per case and day across a restart, one
open case per resident under concurrent requests and two instances, screening, seals, queries."""
from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

import pytest

from services.quarantine import domain, tables
from services.quarantine.config import Config as QuarantineConfig
from services.quarantine.scheduler import Scheduler
from tests.support.quarantine import (
    Clock,
    at,
    client,
    day,
    directory_knows,
    events_of,
    eventually,
    published,
    query,
    quarantine,
    registry_facts,
    swept,
)
from shared import envelope as env
from shared import store
from tests.support.cordon import COMMUNITY

pytestmark = pytest.mark.integration


async def test_a_21_day_home_case_runs_in_simulated_days(nats_url, pg_dsn):
    clock = Clock(at(1, "08:00"))
    await registry_facts(nats_url, {"r-wang": "b2"})
    async with quarantine(nats_url, pg_dsn, clock) as host, client(nats_url) as c:
        await directory_knows(host, "r-wang")
        opened = await c.ok("open_case", community=COMMUNITY, resident="r-wang", kind="home", reason="arrival",
                            starts_on=str(day(1)), case="case-1")
        data = opened["events"][0]["data"]
        assert (data["household"], data["building"], data["ends_on"]) == ("h-r-wang", "b2", str(day(14)))
        for n in range(1, 22):
            clock.now = at(n, "09:00")
            if n != 5:
                await c.ok("record_checkin", case="case-1", on=str(day(n)), temperature_c=36.5, symptoms=[])
            if n == 14:
                released = await c.ok("release_case", case="case-1", on=str(day(14)))
                assert released["events"][0]["data"]["monitoring_until"] == str(day(21))
            clock.now = at(n, "18:30")
            await eventually(lambda: swept(host, day(n)))
        clock.now = at(22, "00:10")
        await eventually(lambda: host.pool.fetchval("SELECT NOT open FROM quarantine.cases WHERE case_id = 'case-1'"))
        [missed] = await events_of(host, "CheckinMissed")
        assert (missed["data"]["on"], missed["actor"]) == (str(day(5)), "system:checkin-scheduler")
        [closed] = await events_of(host, "CaseClosed")
        assert (closed["data"]["on"], closed["actor"]) == (str(day(21)), "system:checkin-scheduler")
        row = await host.pool.fetchrow("SELECT checkins, missed, last_checkin_on FROM quarantine.cases")
        assert tuple(row) == (20, 1, day(21))
        refused = await c.send("record_checkin", case="case-1", on=str(day(22)), temperature_c=36.5)
        assert refused["error"]["reason"] == "case_closed"


async def test_the_scheduler_emits_checkin_missed_once_per_case_and_day_across_a_restart(nats_url, pg_dsn):
    clock = Clock(at(1, "09:00"))
    await registry_facts(nats_url, {"r-a": "b1", "r-b": "b1"})
    async with quarantine(nats_url, pg_dsn, clock) as host, client(nats_url) as c:
        await directory_knows(host, "r-a", "r-b")
        for resident in ("r-a", "r-b"):
            await c.ok("open_case", community=COMMUNITY, resident=resident, kind="home", reason="close_contact",
                       starts_on=str(day(1)), case=f"case-{resident}")
        await c.ok("record_checkin", case="case-r-a", on=str(day(1)), temperature_c=36.4)
        clock.now = at(1, "18:30")
        await eventually(lambda: swept(host, day(1)))
        assert [e["data"]["case"] for e in await events_of(host, "CheckinMissed")] == ["case-r-b"]
        # As if the service died mid-sweep, before it could note the day done, and the sweep's table
        # had lost the mark too: only the day's own stream still says "missed".
        await host.pool.execute("DELETE FROM quarantine.sweeps")
        await host.pool.execute("UPDATE quarantine.cases SET last_missed_on = NULL")
    clock.now = at(1, "19:00")
    async with quarantine(nats_url, pg_dsn, clock) as host:
        await eventually(lambda: swept(host, day(1)))
        clock.now = at(2, "18:30")
        await eventually(lambda: swept(host, day(2)))
        missed = [(e["data"]["case"], e["data"]["on"]) for e in await events_of(host, "CheckinMissed")]
        assert sorted(missed) == [("case-r-a", str(day(2))), ("case-r-b", str(day(1))), ("case-r-b", str(day(2)))]
        await eventually(lambda: host.pool.fetchval("SELECT count(*) = 0 FROM quarantine.outbox"))
    assert len(await published(nats_url, "cordon.evt.*.*.*.quarantine.CheckinMissed")) == 3


async def test_one_open_case_per_resident_under_concurrent_requests_and_two_instances(nats_url, pg_dsn):
    residents = {f"r-{i}": "b1" for i in range(5)}
    await registry_facts(nats_url, residents)
    clock = Clock(at(1))
    async with quarantine(nats_url, pg_dsn, clock) as one, quarantine(nats_url, pg_dsn, clock) as two, \
            client(nats_url) as c:
        await directory_knows(one, *residents)
        await directory_knows(two, *residents)
        replies = await asyncio.gather(*(
            c.send("open_case", community=COMMUNITY, resident=r, kind="home", reason="close_contact",
                   starts_on=str(day(1)), case=f"{r}-try-{k}") for k in range(6) for r in residents))
        accepted = [r for r in replies if r["ok"]]
        assert len(accepted) == len(residents)
        assert {r["error"]["reason"] for r in replies if not r["ok"]} == {"case_open"}
        assert await one.pool.fetchval("SELECT count(*) FROM quarantine.cases") == len(residents)
        assert len(await events_of(one, "CaseOpened")) == len(residents)


async def test_a_screening_round_with_a_positive_result_opens_a_centralized_case(nats_url, pg_dsn):
    await registry_facts(nats_url, {"r-wang": "b1", "r-li": "b2"})
    async with quarantine(nats_url, pg_dsn, Clock(at(1, "07:30"))) as host, client(nats_url) as c:
        await directory_knows(host, "r-wang", "r-li")
        round_ = await c.ok("schedule_screening", community=COMMUNITY, compound="sunny-garden", on=str(day(1)),
                            slots=[{"label": "students", "from": "07:00", "to": "08:00"},
                                   {"label": "everyone", "from": "08:00", "to": "11:00"}])
        screening = round_["events"][0]["data"]["screening"]
        for resident, slot in (("r-wang", "everyone"), ("r-li", "students")):
            await c.ok("record_sample", screening=screening, resident=resident, slot=slot)
        negative = await c.ok("record_result", screening=screening, resident="r-li", result="negative")
        assert [e["type"] for e in negative["events"]] == ["ResultRecorded"]
        positive = await c.ok("record_result", screening=screening, resident="r-wang", result="positive")
        assert [e["type"] for e in positive["events"]] == ["ResultRecorded", "CaseOpened"]
        opened = positive["events"][1]["data"]
        assert (opened["kind"], opened["reason"], opened["case"]) == ("centralized", "positive_test", positive["case"])
        again = await c.send("record_result", screening=screening, resident="r-wang", result="positive")
        assert again["error"]["reason"] == "result_already_recorded"
        assert await host.pool.fetchval("SELECT resident FROM quarantine.cases WHERE open") == "r-wang"


async def test_seal_a_building_and_lift_it_published_for_the_gates(nats_url, pg_dsn):
    await registry_facts(nats_url, {"r-wang": "b2"})
    async with quarantine(nats_url, pg_dsn) as host, client(nats_url) as c:
        await eventually(lambda: host.pool.fetchval("SELECT count(*) FROM quarantine.dir_compounds"))
        sealed = await c.ok("seal", community=COMMUNITY, compound="sunny-garden", building="b2")
        again = await c.send("seal", community=COMMUNITY, compound="sunny-garden", building="b2")
        assert again["error"]["reason"] == "already_sealed"
        await c.ok("lift_seal", community=COMMUNITY, compound="sunny-garden", building="b2")
        await eventually(lambda: host.pool.fetchval("SELECT count(*) = 0 FROM quarantine.outbox"))
    msgs = await published(nats_url, "cordon.evt.*.*.*.quarantine.>")
    assert [m.subject for m in msgs] == [f"cordon.evt.{COMMUNITY}.quarantine.AreaSealed",
                                         f"cordon.evt.{COMMUNITY}.quarantine.SealLifted"]
    assert json.loads(msgs[0].data) == sealed["events"][0]


async def test_the_case_list_of_a_committee_and_the_history_of_a_resident(nats_url, pg_dsn):
    clock = Clock(at(1))
    await registry_facts(nats_url, {"r-wang": "b1", "r-li": "b2"})
    # The scheduler ticks once, at the start: this story is about the queries, not missed days.
    async with quarantine(nats_url, pg_dsn, clock, interval=3600) as host, client(nats_url) as c:
        await directory_knows(host, "r-wang", "r-li")
        await c.ok("open_case", community=COMMUNITY, resident="r-wang", kind="monitoring", reason="fever",
                   starts_on=str(day(1)), case="case-1")
        await c.ok("open_case", community=COMMUNITY, resident="r-li", kind="home", reason="arrival",
                   starts_on=str(day(1)), case="case-2")
        await c.ok("record_checkin", case="case-1", on=str(day(1)), temperature_c=37.8, symptoms=["cough"])
        clock.now = at(8)
        await c.ok("release_case", case="case-1", on=str(day(7)))
        await c.ok("open_case", community=COMMUNITY, resident="r-wang", kind="home", reason="close_contact",
                   starts_on=str(day(8)), case="case-3")

        board = await query(c, "quarantine.cases", community=COMMUNITY)
        assert [(x["case"], x["stage"], x["display_name"]) for x in board["cases"]] == [
            ("case-2", "home", "王*伟"), ("case-3", "home", "王*伟")]
        closed = await query(c, "quarantine.cases", community=COMMUNITY, status="closed")
        assert [(x["case"], x["checkins"], x["closed_on"]) for x in closed["cases"]] == [("case-1", 1, str(day(7)))]
        page = await query(c, "quarantine.cases", community=COMMUNITY, status="all", limit=2)
        assert len(page["cases"]) == 2 and page["next"] == "case-2"
        rest = await query(c, "quarantine.cases", community=COMMUNITY, status="all", after=page["next"])
        assert [x["case"] for x in rest["cases"]] == ["case-3"] and rest["next"] is None
        assert (await query(c, "quarantine.cases", community="jingan.wanli.nobody"))["cases"] == []

        history = await query(c, "quarantine.history", resident="r-wang")
        assert [x["case"] for x in history["cases"]] == ["case-1", "case-3"]
        assert [e["type"] for e in history["events"]] == [
            "CaseOpened", "CheckinRecorded", "SymptomsReported", "CaseClosed", "CaseOpened"]
        # the check-in's readings, off the bus, merged back for the committee's staff
        checkin, abnormal = history["events"][1:3]
        assert {k: checkin["data"][k] for k in ("temperature_c", "symptoms")} == {"temperature_c": 37.8,
                                                                                   "symptoms": ["cough"]}
        assert (abnormal["data"]["fever"], abnormal["data"]["symptomatic"], abnormal["data"]["symptoms"]) == (
            True, True, ["cough"])
        # which the events, as recorded and published, do not carry
        recorded = await host.pool.fetch("SELECT envelope FROM quarantine.events WHERE type = ANY($1::text[])",
                                         ["CheckinRecorded", "SymptomsReported"])
        assert len(recorded) == 2 and not any(b"37.8" in r[0] or b"cough" in r[0] for r in recorded)
        assert (await query(c, "quarantine.history", resident="r-nobody"))["cases"] == []

        for name, fields, field in [
            ("quarantine.cases", {}, "community"),
            ("quarantine.cases", {"community": "changning"}, "community"),
            ("quarantine.cases", {"community": COMMUNITY, "status": "gone"}, "status"),
            ("quarantine.cases", {"community": COMMUNITY, "limit": "10"}, "limit"),
            ("quarantine.cases", {"community": COMMUNITY, "sort": "name"}, "sort"),
            ("quarantine.history", {"resident": "Wang Wei"}, "resident"),
        ]:
            reply = await query(c, name, **fields)
            assert (reply["ok"], reply["error"]["code"], reply["error"].get("field")) == (False, "invalid", field)
        bad = json.loads((await c.nc.request("cordon.qry.quarantine.cases", b"[1]", timeout=5)).data)
        assert bad["error"]["code"] == "invalid"


@asynccontextmanager
async def home_cases_after_day_1(nats_url, pg_dsn, count: int, *, checked_in: str, in_hospital: str):
    """Given home cases case-0, case-1, ... from day 1, one checked in that day and one taken to
    hospital; the clock past that day's check-in hour. Yields (host, client, clock)."""
    residents = {f"r-{i}": "b1" for i in range(count)}
    await registry_facts(nats_url, residents)
    clock = Clock(at(1))
    async with quarantine(nats_url, pg_dsn, clock, interval=3600) as host, client(nats_url) as c:
        await directory_knows(host, *residents)
        for i, r in enumerate(residents):
            await c.ok("open_case", community=COMMUNITY, resident=r, kind="home", reason="close_contact",
                       starts_on=str(day(1)), case=f"case-{i}")
        await c.ok("record_checkin", case=checked_in, on=str(day(1)), temperature_c=36.6)
        await c.ok("transfer_case", case=in_hospital, to="hospital")
        clock.now = at(1, "19:00")
        yield host, c, clock


async def test_a_sweep_in_small_chunks_marks_each_silent_case_once(nats_url, pg_dsn):
    async with home_cases_after_day_1(nats_url, pg_dsn, 7, checked_in="case-3", in_hospital="case-5") as (
            host, c, clock):
        scheduler = Scheduler(host, QuarantineConfig(), chunk=2, in_flight=2)
        assert await scheduler.sweep(day(1), clock.now) == 5
        assert await scheduler.sweep(day(1), clock.now) == 0
        missed = sorted(e["data"]["case"] for e in await events_of(host, "CheckinMissed"))
        assert missed == ["case-0", "case-1", "case-2", "case-4", "case-6"]
        assert await host.pool.fetchval("SELECT missed FROM quarantine.sweeps WHERE day = $1", day(1)) == 5


async def case_row_and_replay(host, case_id: str):
    row = await host.pool.fetchrow(tables.CASES_BY_ID, [case_id])
    async with host.pool.acquire() as conn:
        events = [env.decode(r["envelope"])[1] for r in await store.load_streams(conn, "quarantine", [f"case:{case_id}"])]
    return tables.case_of_row(row), domain.replay(events)


async def test_a_case_row_is_the_state_its_events_replay_to_at_every_step(nats_url, pg_dsn):
    # The missed-check-in sweep reads cases from their rows; this is what lets it.
    await registry_facts(nats_url, {"r-zhao": "b1"})
    clock = Clock(at(1))
    async with quarantine(nats_url, pg_dsn, clock, interval=3600) as host, client(nats_url) as c:
        await directory_knows(host, "r-zhao")
        steps = [
            (1, "open_case", dict(community=COMMUNITY, resident="r-zhao", kind="home", reason="arrival",
                                  starts_on=str(day(1)), case="case-z")),
            (1, "record_checkin", dict(case="case-z", on=str(day(1)), temperature_c=36.5)),
            (3, "transfer_case", dict(case="case-z", to="hospital")),
            (6, "release_case", dict(case="case-z", on=str(day(6)))),
            (8, "transfer_case", dict(case="case-z", to="centralized")),
            (21, "release_case", dict(case="case-z", on=str(day(21)))),
            (28, "release_case", dict(case="case-z", on=str(day(28)))),
        ]
        for n, name, fields in steps:
            clock.now = at(n)
            await c.ok(name, **fields)
            snapshot, replayed = await case_row_and_replay(host, "case-z")
            assert snapshot == replayed, (n, name)
        assert replayed.closed and replayed.stage == "monitoring"


async def test_record_missed_checkins_answers_counts_and_the_reason_for_each_case_skipped(nats_url, pg_dsn):
    async with home_cases_after_day_1(nats_url, pg_dsn, 3, checked_in="case-1", in_hospital="case-2") as (
            host, c, clock):
        reply = await c.ok("record_missed_checkins", on=str(day(1)), cases=["case-0", "case-1", "case-2", "case-9"])
        assert reply["missed"] == 1 and reply["events"] == []
        assert reply["skipped"] == {"case-1": "checked_in", "case-2": "in_hospital", "case-9": "not_found"}
        [missed] = await events_of(host, "CheckinMissed")
        assert missed["data"]["case"] == "case-0"
        again = await c.ok("record_missed_checkins", on=str(day(1)), cases=["case-0"])
        assert again["missed"] == 0 and again["skipped"] == {"case-0": "already_missed"}
