"""Reactions on real NATS and PostgreSQL: the registry's ArrivalVerified opens exactly one case
however often it is delivered; a FeverDetected at a gate opens a monitoring case, once."""
from __future__ import annotations

import pytest

from services.quarantine.reactions import case_for
from services.registry.app import spec as registry_spec
from shared.contracts.checkpoint import FeverDetected
from tests.support.quarantine import (
    Clock,
    at,
    day,
    directory_knows,
    events_of,
    eventually,
    publish,
    published,
    quarantine,
    registry_facts,
)
from tests.support.bus import connect
from tests.support.cordon import COMMUNITY, Client, community, household, resident, running

pytestmark = pytest.mark.integration


def consumer(host, name: str):
    return next(c for c in host.consumers if c.name == name)


async def caught_up(host, name: str, applied: int) -> bool:
    c = consumer(host, name)
    return c.applied == applied and await c.lag() == 0


async def test_an_arrival_verified_delivered_three_times_opens_exactly_one_case(nats_url, pg_dsn):
    async with running(registry_spec(), nats_url, pg_dsn), quarantine(nats_url, pg_dsn) as host:
        nc = await connect(nats_url)
        registry = Client(nc)
        await community(registry)
        r = await resident(registry, await household(registry, building="b2"))
        arrival = await registry.ok("register_arrival", resident=r, origin="Wuhan", arrived_on="2020-01-30",
                                    transport={"kind": "train", "number": "G1722"}, visited=[],
                                    city_class="A", risk_area_visited=True)
        verified = await registry.ok("verify_arrival", arrival=arrival["events"][0]["data"]["arrival"],
                                     outcome="home_quarantine", documents_checked=True)
        event_id = verified["events"][0]["event_id"]
        await eventually(lambda: host.pool.fetchval("SELECT count(*) FROM quarantine.cases"))
        [msg] = await published(nats_url, "cordon.evt.*.*.*.registry.ArrivalVerified")
        js = nc.jetstream()
        # Second delivery: the consumer's inbox knows the event id.
        await js.publish(msg.subject, msg.data, headers={"Nats-Msg-Id": f"{event_id}/2"})
        await eventually(lambda: caught_up(host, "quarantine-arrivals", 1))
        # Third, as a replay after the inbox was lost: the command id derived from the event holds.
        await host.pool.execute("DELETE FROM quarantine.inbox WHERE consumer = 'quarantine-arrivals'")
        await js.publish(msg.subject, msg.data, headers={"Nats-Msg-Id": f"{event_id}/3"})
        await eventually(lambda: caught_up(host, "quarantine-arrivals", 2))
        await nc.close()
        [opened] = await events_of(host, "CaseOpened")
        assert opened["data"]["case"] == case_for(event_id) and opened["causation_id"] == event_id
        assert opened["actor"] == "system:arrival-quarantine"
        assert opened["correlation_id"] == verified["events"][0]["correlation_id"]
        assert (opened["data"]["resident"], opened["data"]["kind"], opened["data"]["reason"]) == (r, "home", "arrival")
        assert (opened["data"]["building"], opened["data"]["compound"]) == ("b2", "nangong-1")
        assert await host.pool.fetchval("SELECT count(*) FROM quarantine.cases") == 1
        assert await host.pool.fetchval("SELECT count(*) FROM quarantine.commands") == 1


def fever(resident: str | None, passage: str) -> FeverDetected:
    return FeverDetected(community=COMMUNITY, passage=passage, compound="sunny-garden", gate="north",
                         temperature_c=38.4, resident=resident, household=f"h-{resident}" if resident else None,
                         visitor=None if resident else "张*", detected_at=at(3, "07:40"),
                         detected_by="staff:guard-zhou")


async def test_a_fever_at_the_gate_opens_one_monitoring_case(nats_url, pg_dsn):
    await registry_facts(nats_url, {"r-wang": "b2"})
    async with quarantine(nats_url, pg_dsn, Clock(at(3, "08:00"))) as host:
        await directory_knows(host, "r-wang")
        first = await publish(nats_url, fever("r-wang", "p-1"), service="checkpoint", occurred_at=at(3, "07:40"))
        await eventually(lambda: caught_up(host, "quarantine-fevers", 1))
        # A second fever while the case is open, and a visitor's fever: nothing more to open.
        await publish(nats_url, fever("r-wang", "p-2"), service="checkpoint", occurred_at=at(3, "17:10"))
        await publish(nats_url, fever(None, "p-3"), service="checkpoint", occurred_at=at(3, "17:20"))
        await eventually(lambda: caught_up(host, "quarantine-fevers", 3))
        [opened] = await events_of(host, "CaseOpened")
        data = opened["data"]
        assert (data["kind"], data["reason"], data["starts_on"], data["ends_on"]) == (
            "monitoring", "fever", str(day(3)), str(day(9)))
        assert (data["household"], data["building"]) == ("h-r-wang", "b2")  # the directory's, with building
        assert opened["causation_id"] == first.event_id and opened["actor"] == "system:fever-monitoring"
        assert await host.pool.fetchval("SELECT count(*) FROM quarantine.dead_letters") == 0
        row = await host.pool.fetchrow("SELECT kind, stage, open FROM quarantine.cases")
        assert tuple(row) == ("monitoring", "monitoring", True)
