"""Helpers for the quarantine integration tests (no tests here): the service with a clock the test
moves by hand, registry and checkpoint events published in their contracts' shape (as those
services' relays would), and small waits and counts."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import nats

from services.quarantine.app import spec
from services.quarantine.config import Config as QuarantineConfig
from shared import envelope
from shared.config import Config
from shared.contracts.registry import CompoundRegistered, HouseholdRegistered, ResidentRegistered
from shared.envelope import Event
from shared.service import ServiceHost
from tests.support.bus import connect, service_creds
from tests.support.cordon import publish_events  # noqa: E402
from tests.support.cordon import COMMUNITY, Client
from tests.support.cordon import eventually

CITY = ZoneInfo("Asia/Shanghai")
DAY1 = date(2026, 11, 2)
STAFF = "staff:li-wei"


def day(n: int) -> date:
    """Day n of a story (day 1 is 2026-11-02)."""
    return DAY1 + timedelta(days=n - 1)


def at(n: int, clock: str = "09:00") -> datetime:
    return datetime.combine(day(n), time.fromisoformat(clock), tzinfo=CITY)


class Clock:
    """The service's idea of now, moved by the test."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@contextlib.asynccontextmanager
async def quarantine(nats_url: str, pg_dsn: str, clock=None, settings: QuarantineConfig | None = None,
                     interval: float = 0.02, **config):
    settings = dataclasses.replace(settings or QuarantineConfig(), scheduler_interval_s=interval)
    config.setdefault("nats_creds", service_creds(nats_url, "quarantine"))
    host = ServiceHost(spec(settings), Config(nats_url=nats_url, pg_dsn=pg_dsn, **config),
                       clock=clock or Clock(at(1)))
    await host.start()
    try:
        yield host
    finally:
        await host.stop()


@contextlib.asynccontextmanager
async def client(nats_url: str):
    nc = await connect(nats_url)
    try:
        yield Client(nc, service="quarantine")
    finally:
        await nc.close()


async def query(c: Client, name: str, **fields) -> dict:
    msg = await c.nc.request(f"cordon.qry.{name}", json.dumps(fields).encode(), timeout=5)
    return json.loads(msg.data)


async def publish(nats_url: str, event: Event, *, service: str, occurred_at: datetime,
                  event_id: str | None = None, msg_id: str | None = None) -> envelope.Envelope:
    """Publish one event as ``service``'s relay would (``msg_id`` defaults to the event id)."""
    assert type(event).service == service
    [env] = await publish_events(nats_url, [event], occurred_at=occurred_at, event_id=event_id, msg_id=msg_id)
    return env


async def registry_facts(nats_url: str, residents: dict[str, str], buildings=("b1", "b2")) -> None:
    """A compound ``sunny-garden`` and, for each resident -> building, a household and the resident."""
    when = at(1, "07:00")
    common = dict(community=COMMUNITY, compound="sunny-garden", registered_at=when, registered_by=STAFF)
    await publish(nats_url, CompoundRegistered(**common, name="Sunny Garden", buildings=list(buildings),
                                               gates=["north"]), service="registry", occurred_at=when)
    for resident, building in residents.items():
        await publish(nats_url, HouseholdRegistered(**common, building=building, household=f"h-{resident}"),
                      service="registry", occurred_at=when)
        await publish(nats_url, ResidentRegistered(**common, building=building, household=f"h-{resident}",
                                                   resident=resident, display_name="王*伟"),
                      service="registry", occurred_at=when)



async def directory_knows(host: ServiceHost, *residents: str) -> None:
    async def known():
        return await host.pool.fetchval("SELECT count(*) FROM quarantine.dir_residents WHERE resident = ANY($1)",
                                        list(residents)) == len(residents)
    await eventually(known)


async def events_of(host: ServiceHost, type_name: str) -> list[dict]:
    rows = await host.pool.fetch("SELECT envelope FROM quarantine.events WHERE type = $1 ORDER BY position",
                                 type_name)
    return [json.loads(r["envelope"]) for r in rows]


async def record_size(host: ServiceHost) -> tuple:
    """Everything a refused command must not touch."""
    return tuple([await host.pool.fetchval(f"SELECT count(*) FROM quarantine.{table}")
                  for table in ("events", "commands", "cases", "sample_codes", "round_samples")]
                 + [await host.pool.fetchval("SELECT coalesce(sum(checkins + missed), 0) FROM quarantine.cases")])


async def swept(host: ServiceHost, on: date) -> bool:
    return bool(await host.pool.fetchval("SELECT 1 FROM quarantine.sweeps WHERE day = $1", on))


async def published(nats_url: str, subjects: str, idle: float = 0.3) -> list:
    """Every message on the CORDON stream matching ``subjects``, in order (read until idle)."""
    from nats.js.api import ConsumerConfig, DeliverPolicy

    nc = await connect(nats_url)
    try:
        sub = await nc.jetstream().subscribe(subjects, ordered_consumer=True,
                                             config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        out = []
        while True:
            try:
                out.append(await sub.next_msg(timeout=idle))
            except (asyncio.TimeoutError, nats.errors.TimeoutError):
                return out
    finally:
        await nc.close()
