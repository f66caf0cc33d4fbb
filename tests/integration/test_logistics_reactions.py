"""Logistics reacting to the quarantine service on real NATS and PostgreSQL: a home quarantine or a
seal gives each confined household one food request a day, the vulnerable first, until the case
closes or the seal lifts; redelivery, replay and restarts change nothing."""
from __future__ import annotations

import json
from datetime import date

import pytest

from services.logistics.domain import daily_request_id
from services.logistics.config import Config, from_env
from services.logistics.scheduler import raise_due
from shared.subjects import STREAM
from tests.support.logistics import (
    Clock,
    case_closed,
    case_opened,
    compound,
    eventually,
    household,
    known,
    lifted,
    logistics,
    publish,
    republish,
    rows,
    sealed,
    today,
)
from tests.support.bus import connect
from tests.support.cordon import COMMUNITY

pytestmark = pytest.mark.integration

DAILY = "SELECT request, household, daily_on FROM logistics.requests WHERE daily_on IS NOT NULL ORDER BY request"


async def daily_requests(pg_dsn: str) -> list[tuple]:
    return [(r["household"], r["daily_on"]) for r in await rows(pg_dsn, DAILY)]


async def supply_events(pg_dsn: str) -> list[str]:
    found = await rows(pg_dsn, "SELECT type FROM logistics.events WHERE type IN "
                               "('SupplyRequested', 'DailySupplyStarted') ORDER BY position")
    return [r["type"] for r in found]


async def test_a_case_opened_delivered_twice_and_replayed_gives_one_daily_request(nats_url, pg_dsn):
    await publish(nats_url, [compound(), *household("h-1")])
    opened = case_opened("c-1", "h-1")
    [event_id] = await publish(nats_url, [(opened, "quarantine", "case:c-1")])
    async with logistics(nats_url, pg_dsn, daily_interval_s=3600) as host:
        await eventually(lambda: daily_requests(pg_dsn), what="the daily request")
        await republish(nats_url, opened, "quarantine", event_id)  # delivered a second time
        await eventually(lambda: _acked(host, "logistics-cases", 2), what="the second delivery")
    # Replay from scratch: the consumer and its inbox forgotten, every event delivered again.
    nc = await connect(nats_url)
    await nc.jetstream().delete_consumer(STREAM, "logistics-cases")
    await nc.close()
    await rows(pg_dsn, "DELETE FROM logistics.inbox WHERE consumer = 'logistics-cases'")
    async with logistics(nats_url, pg_dsn, daily_interval_s=3600) as host:
        await eventually(lambda: _acked(host, "logistics-cases", 2), what="the replay")
    assert await daily_requests(pg_dsn) == [("h-1", today())]
    assert await supply_events(pg_dsn) == ["DailySupplyStarted", "SupplyRequested"]
    [request] = await rows(pg_dsn, "SELECT request, priority_reasons FROM logistics.requests")
    assert request["request"] == daily_request_id("h-1", today())
    assert request["priority_reasons"] == ["quarantined"]


async def _acked(host, consumer: str, n: int) -> bool:
    """The consumer has been delivered ``n`` messages and acknowledged them all (after commit)."""
    info = await host.nc.jetstream().consumer_info(STREAM, consumer)
    return info.delivered.consumer_seq >= n and info.num_pending == 0 and info.num_ack_pending == 0


async def test_a_seal_feeds_every_household_of_the_building_the_vulnerable_first(nats_url, pg_dsn):
    await publish(nats_url, [
        compound(), *household("h-plain"), *household("h-chronic", vulnerabilities=["chronic_illness"]),
        *household("h-alone", vulnerabilities=["elderly_alone"]),
        *household("h-device", vulnerabilities=["medical_device", "limited_mobility"]),
        *household("h-other-building", building="b2", vulnerabilities=["elderly_alone"]),
    ])
    async with logistics(nats_url, pg_dsn, daily_interval_s=3600) as host:
        await known(host, ["h-plain", "h-chronic", "h-alone", "h-device", "h-other-building"])
        await publish(nats_url, [(sealed("b1"), "quarantine", "seal:nangong-1:b1")])
        await eventually(lambda: _count(pg_dsn, 4), what="four daily requests")
        nc = await connect(nats_url)
        reply = json.loads((await nc.request("cordon.qry.logistics.requests",
                                             json.dumps({"community": COMMUNITY}).encode())).data)
        await nc.close()
    assert [r["household"] for r in reply["requests"]] == ["h-alone", "h-device", "h-chronic", "h-plain"]
    assert reply["requests"][0]["priority_reasons"] == ["sealed", "elderly_alone"]
    recorded = await rows(pg_dsn, "SELECT envelope FROM logistics.events WHERE type = 'SupplyRequested' "
                                  "ORDER BY position")
    order = [json.loads(r["envelope"])["data"]["household"] for r in recorded]
    assert order == ["h-alone", "h-device", "h-chronic", "h-plain"]  # recorded in priority order too


async def _count(pg_dsn: str, n: int) -> bool:
    return len(await daily_requests(pg_dsn)) >= n


async def test_each_day_brings_one_request_until_the_case_closes_or_the_seal_lifts(nats_url, pg_dsn):
    clock = Clock()
    await publish(nats_url, [compound(), *household("h-1"), *household("h-2", building="b2")])
    await publish(nats_url, [(case_opened("c-1", "h-1"), "quarantine", "case:c-1"),
                             (sealed("b2"), "quarantine", "seal:nangong-1:b2")])
    async with logistics(nats_url, pg_dsn, clock=clock, daily_interval_s=0.05) as host:
        await known(host, ["h-1", "h-2"])
        await eventually(lambda: _count(pg_dsn, 2), what="day one")
        clock.advance(days=1)
        await eventually(lambda: _count(pg_dsn, 4), what="day two")
    day1, day2 = today(), clock().date()
    assert sorted(await daily_requests(pg_dsn)) == [("h-1", day1), ("h-1", day2), ("h-2", day1), ("h-2", day2)]

    # A restart on the same day, and a scheduler tick after it, raise nothing new.
    async with logistics(nats_url, pg_dsn, clock=clock, daily_interval_s=0.05) as host:
        await _ticks(host)
        assert len(await daily_requests(pg_dsn)) == 4
        await publish(nats_url, [(case_closed("c-1", "h-1"), "quarantine", "case:c-1"),
                                 (lifted("b2"), "quarantine", "seal:nangong-1:b2")])
        await eventually(lambda: _inactive(pg_dsn, 2), what="both plans to stop")
        clock.advance(days=1)
        await _ticks(host)
    assert len(await daily_requests(pg_dsn)) == 4  # nothing on day three
    stopped = await rows(pg_dsn, "SELECT household, causes, active FROM logistics.plans ORDER BY household")
    assert [(r["household"], r["causes"], r["active"]) for r in stopped] == [("h-1", [], False), ("h-2", [], False)]


async def _inactive(pg_dsn: str, n: int) -> bool:
    return len(await rows(pg_dsn, "SELECT 1 FROM logistics.plans WHERE NOT active")) >= n


async def _ticks(host) -> None:
    """Scheduler passes, awaited: the same work the background task does every interval."""
    for _ in range(2):
        await raise_due(host, Config())


async def test_a_case_for_a_household_the_directory_does_not_know_yet_still_feeds_it(nats_url, pg_dsn):
    # CaseOpened carries where the household lives: no need to wait for the registry's events.
    await publish(nats_url, [(case_opened("c-9", "h-new"), "quarantine", "case:c-9")])
    async with logistics(nats_url, pg_dsn, daily_interval_s=3600):
        await eventually(lambda: daily_requests(pg_dsn), what="the daily request")
    assert await daily_requests(pg_dsn) == [("h-new", today())]


async def test_a_household_the_directory_learns_of_after_the_seal_is_fed_too(nats_url, pg_dsn):
    await publish(nats_url, [compound(), (sealed("b1"), "quarantine", "seal:nangong-1:b1")])
    async with logistics(nats_url, pg_dsn, daily_interval_s=0.05) as host:
        await _ticks(host)  # the seal is taken while no household of b1 is known
        assert await daily_requests(pg_dsn) == []
        await publish(nats_url, [*household("h-late")])
        await known(host, ["h-late"])
        await eventually(lambda: daily_requests(pg_dsn), what="the late household's daily request")
    assert await daily_requests(pg_dsn) == [("h-late", today())]


async def test_the_citys_zone_decides_the_day_of_the_daily_food(nats_url, pg_dsn):
    # 08:00 on 2 April in Shanghai is 20:00 on 1 April in New York: a city there feeds for 1 April.
    clock = Clock()
    config = from_env({"CORDON_TIMEZONE": "America/New_York", "CORDON_DAILY_INTERVAL_S": "3600"})
    await publish(nats_url, [compound(), *household("h-1"), (case_opened("c-1", "h-1"), "quarantine", "case:c-1")])
    async with logistics(nats_url, pg_dsn, clock=clock, config=config) as host:
        await eventually(lambda: daily_requests(pg_dsn), what="the daily request")
        assert await daily_requests(pg_dsn) == [("h-1", date(2022, 4, 1))]
        clock.advance(hours=4)  # midnight in New York
        await raise_due(host, config)
    assert await daily_requests(pg_dsn) == [("h-1", date(2022, 4, 1)), ("h-1", date(2022, 4, 2))]
