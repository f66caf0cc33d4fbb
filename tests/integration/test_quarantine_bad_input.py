"""Bad input to the quarantine service through the wire, against real NATS and PostgreSQL.

The story: a committee's quarantine service knows a compound with buildings b1 and b2 and three
residents; r-open has a home case that started on day 3, r-closed had a monitoring case that is
closed. Then phones and scripts send what can go wrong. Each gets an error reply with a stable
code (and the field or the rule) and leaves no trace: no event, no stored reply, no case row
changed. Afterwards the same service still accepts a valid command.

One service serves the whole module (its own NATS and database, the clock fixed on day 10).
"""
from __future__ import annotations

import contextlib
import json
import uuid

import asyncpg
import pytest

from shared.embedded import ensure_database
from tests.support.bus import start_secure_nats
from tests.support.quarantine import (
    Clock,
    at,
    client,
    day,
    directory_knows,
    query,
    quarantine,
    record_size,
    registry_facts,
)
from tests.support.cordon import COMMUNITY

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def world(pg_server, tmp_path_factory):
    server = await start_secure_nats(tmp_path_factory.mktemp("nats-quarantine-bad"))
    name = f"test_qbad_{uuid.uuid4().hex[:12]}"
    dsn = await ensure_database(pg_server.dsn, name)
    clock = Clock(at(1))
    try:
        await registry_facts(server.url, {"r-open": "b1", "r-closed": "b2", "r-free": "b2"})
        async with quarantine(server.url, dsn, clock, interval=3600) as host, client(server.url) as c:
            await directory_knows(host, "r-open", "r-closed", "r-free")
            await c.ok("open_case", community=COMMUNITY, resident="r-closed", kind="monitoring", reason="fever",
                       starts_on=str(day(1)), case="case-closed")
            clock.now = at(10)
            await c.ok("release_case", case="case-closed", on=str(day(7)))
            await c.ok("open_case", community=COMMUNITY, resident="r-open", kind="home", reason="arrival",
                       starts_on=str(day(3)), case="case-open")
            # a round today, r-free's code printed ahead
            await c.ok("schedule_screening", community=COMMUNITY, compound="sunny-garden", on=str(day(10)),
                       slots=[{"label": "all", "from": "08:00", "to": "11:00"}], screening="round-1")
            await c.ok("issue_sample_codes", screening="round-1", residents=["r-free"])
            yield host, c
    finally:
        await server.stop()
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(pg_server.dsn)
            try:
                await conn.execute(f'drop database if exists "{name}" with (force)')
            finally:
                await conn.close()


REFUSED = [
    # (command, fields, code, reason or field)
    ("record_checkin", dict(case="case-closed", on=str(day(6)), temperature_c=36.5), "rejected", "case_closed"),
    ("release_case", dict(case="case-open", on=str(day(2))), "rejected", "before_start"),
    ("release_case", dict(case="case-open", on=str(day(10))), "rejected", "quarantine_not_over"),
    ("release_case", dict(case="case-open", on=str(day(11))), "rejected", "future_day"),
    ("seal", dict(community=COMMUNITY, compound="sunny-garden", building="b9"), "not_found", "building"),
    ("seal", dict(community=COMMUNITY, compound="rainy-garden"), "not_found", "compound"),
    ("lift_seal", dict(community=COMMUNITY, compound="sunny-garden"), "rejected", "not_sealed"),
    ("open_case", dict(community=COMMUNITY, resident="r-nobody", kind="home", reason="arrival",
                       starts_on=str(day(10))), "not_found", "resident"),
    ("open_case", dict(community=COMMUNITY, resident="r-open", kind="monitoring", reason="fever",
                       starts_on=str(day(10))), "rejected", "case_open"),
    ("open_case", dict(community=COMMUNITY, resident="r-free", kind="home", reason="arrival",
                       starts_on=str(day(10)), case="case-open"), "conflict", "case"),
    ("open_case", dict(community=COMMUNITY, resident="r-free", kind="home", reason="arrival",
                       starts_on=str(day(10)), household="h-r-open", compound="sunny-garden"), "invalid", "household"),
    ("open_case", dict(community=COMMUNITY, resident="r-free", kind="home", reason="arrival",
                       starts_on=str(day(11))), "rejected", "future_day"),
    ("open_case", dict(community=COMMUNITY, resident="r-free", kind="hotel", reason="arrival",
                       starts_on=str(day(10))), "invalid", "kind"),
    ("record_checkin", dict(case="case-gone", on=str(day(10)), temperature_c=36.5), "not_found", "case"),
    ("record_checkin", dict(case="case-open", on=str(day(10)), temperature_c=50), "invalid", "temperature_c"),
    ("record_checkin", dict(case="case-open", on=str(day(10)), temperature_c="36.5"), "invalid", "temperature_c"),
    ("record_checkin", dict(case="case-open", on=str(day(10)), temperature_c=36.5, expected_version=3),
     "conflict", "expected_version"),
    ("transfer_case", dict(case="case-open", to="moon"), "invalid", "to"),
    ("record_missed_checkins", dict(on=str(day(10)), cases=["case-open"]), "rejected", "too_early"),
    ("schedule_screening", dict(community=COMMUNITY, compound="sunny-garden", on=str(day(9)),
                                slots=[{"label": "all", "from": "08:00", "to": "11:00"}]), "rejected", "past_day"),
    ("schedule_screening", dict(community=COMMUNITY, compound="sunny-garden", on=str(day(11)),
                                slots=[{"label": "all", "from": "8am", "to": "11:00"}]), "invalid", "slots[0].from"),
    ("record_sample", dict(screening="round-x", resident="r-free"), "not_found", "screening"),
    ("record_result", dict(screening="round-x", resident="r-free", result="positive"), "not_found", "screening"),
    # screening rounds (issue 17): codes ahead, samples by code, seals' planned end, stay in
    ("issue_sample_codes", dict(screening="round-x", residents=["r-free"]), "not_found", "screening"),
    ("issue_sample_codes", dict(screening="round-1", residents=["r-free"], all_residents=True), "invalid", "residents"),
    ("issue_sample_codes", dict(screening="round-1"), "invalid", "residents"),
    ("issue_sample_codes", dict(screening="round-1", residents=["r-nobody"]), "not_found", "residents[0]"),
    ("issue_sample_codes", dict(screening="round-1", residents=["r-free"]), "rejected", "already_issued"),
    ("issue_sample_codes", dict(screening="round-1", all_residents=True, building="b9"), "not_found", "building"),
    ("record_sample", dict(screening="round-1"), "invalid", "resident"),
    ("record_sample", dict(screening="round-1", code="ZZZZ-ZZZZ"), "not_found", "code"),
    ("record_sample", dict(screening="round-1", resident="r-free", code="ZZZZ-ZZZZ"), "not_found", "code"),
    ("record_sample", dict(screening="round-1", resident="r-free", stay_in_until_result="yes"), "invalid",
     "stay_in_until_result"),
    ("seal", dict(community=COMMUNITY, compound="sunny-garden", until=str(day(9))), "rejected", "past_day"),
    ("extend_seal", dict(community=COMMUNITY, compound="sunny-garden", until=str(day(12))), "rejected", "not_sealed"),
    ("extend_seal", dict(community=COMMUNITY, compound="sunny-garden", until="soon"), "invalid", "until"),
    ("extend_seal", dict(community=COMMUNITY, compound="sunny-garden"), "invalid", "until"),
    ("schedule_screening", dict(community=COMMUNITY, compound="sunny-garden", on=str(day(11)), stay_in_until_result=1,
                                slots=[{"label": "all", "from": "08:00", "to": "11:00"}]), "invalid",
     "stay_in_until_result"),
]


@pytest.mark.parametrize("command, fields, code, detail", REFUSED, ids=[f"{r[0]}-{r[3]}" for r in REFUSED])
async def test_a_refused_command_gets_a_clear_error_and_writes_nothing(world, command, fields, code, detail):
    host, c = world
    before = await record_size(host)
    reply = await c.send(command, **fields)
    assert reply["ok"] is False and reply["error"]["code"] == code, reply
    assert detail in (reply["error"].get("reason"), reply["error"].get("field"))
    assert reply["error"]["message"]
    assert await record_size(host) == before


@pytest.mark.parametrize("subject, payload, code", [
    ("open_case", b"{not json", "invalid"),
    ("open_case", b"[1, 2]", "invalid"),
    ("open_case", b"", "invalid"),
    ("close_everything", b"{}", "unknown_command"),
    ("record_checkin", json.dumps({"command_id": "big", "actor": "staff:x", "case": "case-open", "on": "2026-11-11",
                                   "temperature_c": 36.5, "symptoms": ["x" * 99] * 700}).encode(), "too_large"),
])
async def test_malformed_messages_are_refused(world, subject, payload, code):
    host, c = world
    before = await record_size(host)
    reply = await c.raw(subject, payload)
    assert reply["error"]["code"] == code
    assert await record_size(host) == before


@pytest.mark.parametrize("fields, code, field", [
    (dict(community=COMMUNITY, screening="round-x"), "not_found", "screening"),
    (dict(community="changning.chengjiaqiao.beixin", screening="round-1"), "not_found", "screening"),
    (dict(community=COMMUNITY, screening="round-1", status="done"), "invalid", "status"),
    (dict(community=COMMUNITY, screening="round-1", limit=0), "invalid", "limit"),
    (dict(community=COMMUNITY, screening="round-1", after="not a slug!"), "invalid", "after"),
    (dict(community=COMMUNITY), "invalid", "screening"),
])
async def test_a_bad_screening_status_query_names_what_is_wrong(world, fields, code, field):
    host, c = world
    before = await record_size(host)
    reply = await query(c, "quarantine.screening_status", **fields)
    assert (reply["ok"], reply["error"]["code"], reply["error"]["field"]) == (False, code, field), reply
    assert reply["error"]["message"]
    assert await record_size(host) == before


async def test_after_all_that_the_service_still_serves(world):
    host, c = world
    reply = await c.ok("record_checkin", case="case-open", on=str(day(10)), temperature_c=36.5)
    assert reply["events"][0]["type"] == "CheckinRecorded"
    again = await c.send("record_checkin", command_id=reply["events"][0]["causation_id"], case="case-open",
                         on=str(day(10)), temperature_c=36.5)
    assert again == reply  # the same command id: the first reply, nothing new
    assert await host.pool.fetchval("SELECT checkins FROM quarantine.cases WHERE case_id = 'case-open'") == 1
