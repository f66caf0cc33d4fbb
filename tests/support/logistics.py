"""Helpers for the logistics integration tests (no tests here): a running logistics service with
an injectable clock, and registry/quarantine events published in their contracts' shape, as the
real services would publish them (those services are not needed to test logistics' reactions)."""
from __future__ import annotations

import contextlib
import uuid
from datetime import date, datetime, timedelta, timezone

import asyncpg

from services.logistics.app import spec as logistics_spec
from services.logistics.config import Config as LogisticsConfig
from shared import envelope
from shared.config import Config
from shared.contracts.quarantine import AreaSealed, CaseClosed, CaseOpened, SealLifted
from shared.contracts.registry import CompoundRegistered, HouseholdRegistered, ResidentRegistered
from shared.envelope import Event
from shared.service import ServiceHost
from shared.subjects import event_subject
from tests.support.bus import connect, service_creds
from tests.support.cordon import publish_events  # noqa: E402
from tests.support.cordon import COMMUNITY
from tests.support.cordon import eventually

CST = timezone(timedelta(hours=8))
MORNING = datetime(2022, 4, 2, 8, 0, tzinfo=CST)
STAFF = "staff:li-wei"


class Clock:
    """A clock a test moves by hand: the service's idea of now."""

    def __init__(self, at: datetime = MORNING):
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta) -> None:
        self.at += timedelta(**delta)


@contextlib.asynccontextmanager
async def logistics(nats_url: str, pg_dsn: str, clock=None, config: LogisticsConfig | None = None,
                    **settings):
    """The logistics service, like ``tests.support.cordon.running`` plus a clock; with ``config``,
    or the default settings changed by ``settings`` (e.g. ``daily_interval_s=3600``)."""
    host = ServiceHost(logistics_spec(config or LogisticsConfig(**settings)),
                       Config(nats_url=nats_url, nats_creds=service_creds(nats_url, "logistics"), pg_dsn=pg_dsn),
                       clock=clock or Clock())
    await host.start()
    try:
        yield host
    finally:
        await stop(host)


async def start_services(stack: contextlib.AsyncExitStack, specs, config: Config, clock, nats_url: str,
                         dsn: str):
    """Each of ``specs`` as a host on ``clock``, then an operator's NATS connection and a database
    connection: (nc, db), all closed by ``stack`` (the hosts with :func:`stop`)."""
    for spec in specs:
        host = ServiceHost(spec(), config, clock=clock)
        await host.start()
        stack.push_async_callback(stop, host)
    nc = await connect(nats_url)
    stack.push_async_callback(nc.close)
    db = await asyncpg.connect(dsn)
    stack.push_async_callback(db.close)
    return nc, db


async def stop(host: ServiceHost) -> None:
    """``host.stop()``, without its 30-second hang. Workaround for a backbone issue (reported):
    nats-py's pull ``fetch`` takes a late status message off a subscription's queue with
    ``get_nowait()`` and never calls ``task_done()``, so ``nc.drain()`` in ServiceHost.stop waits
    for its drain timeout. The consumers' pull subscriptions are unsubscribed (which does not wait)
    once the consumers have stopped."""
    for consumer in host.consumers:
        await consumer.stop()
    for sub in list(host.nc._subs.values()):
        if sub.subject.startswith("_INBOX.") and not sub.subject.endswith(".*"):
            await sub.unsubscribe()
    await host.stop()


async def publish(nats_url: str, items: list[tuple[Event, str, str]], at: datetime = MORNING) -> list[str]:
    """Publish events (event, service, stream id) as their owning service would; their ids."""
    envs = await publish_events(nats_url, [e for e, _, _ in items], occurred_at=at, actor=STAFF,
                                stream_ids=[s for _, _, s in items], versions=range(1, len(items) + 1))
    return [env.event_id for env in envs]


async def republish(nats_url: str, event: Event, service: str, event_id: str, at: datetime = MORNING) -> None:
    """The same event again under a new message id: a replay or a second delivery of one event."""
    nc = await connect(nats_url)
    env = envelope.wrap(event, stream_id="x", stream_version=1, occurred_at=at, actor=STAFF,
                        correlation_id=str(uuid.uuid4()), event_id=event_id)
    await nc.jetstream().publish(event_subject(event.community, service, type(event).__name__),
                                 envelope.encode(env), headers={"Nats-Msg-Id": str(uuid.uuid4())})
    await nc.close()


def compound(compound_id: str = "nangong-1", buildings=("b1", "b2")) -> tuple[Event, str, str]:
    return (CompoundRegistered(community=COMMUNITY, compound=compound_id, name="南宫小区",
                               buildings=list(buildings), gates=["g1"], registered_at=MORNING,
                               registered_by=STAFF), "registry", f"compound:{compound_id}")


def household(h: str, building: str = "b1", compound_id: str = "nangong-1", vulnerabilities=(),
              residents: int = 1) -> list[tuple[Event, str, str]]:
    """A household and its residents; the first resident carries ``vulnerabilities``."""
    out = [(HouseholdRegistered(community=COMMUNITY, compound=compound_id, building=building, household=h,
                                registered_at=MORNING, registered_by=STAFF),
            "registry", f"household:{h}")]
    for i in range(residents):
        out.append((ResidentRegistered(
            community=COMMUNITY, compound=compound_id, building=building, household=h, resident=f"{h}-r{i}",
            display_name="王*伟", vulnerabilities=list(vulnerabilities) if i == 0 else [],
            registered_at=MORNING, registered_by=STAFF), "registry", f"resident:{h}-r{i}"))
    return out


def case_opened(case: str, h: str, kind: str = "home", building: str = "b1") -> CaseOpened:
    return CaseOpened(community=COMMUNITY, case=case, resident=f"{h}-r0", household=h, compound="nangong-1",
                      building=building, kind=kind, reason="arrival", starts_on=MORNING.date(),
                      ends_on=MORNING.date() + timedelta(days=13), opened_at=MORNING, opened_by=STAFF)


def case_closed(case: str, h: str) -> CaseClosed:
    return CaseClosed(community=COMMUNITY, case=case, resident=f"{h}-r0", household=h, compound="nangong-1",
                      building="b1", on=MORNING.date(), closed_at=MORNING, closed_by=STAFF)


def sealed(building: str | None = "b1") -> AreaSealed:
    return AreaSealed(community=COMMUNITY, compound="nangong-1", building=building, sealed_at=MORNING,
                      sealed_by=STAFF)


def lifted(building: str | None = "b1") -> SealLifted:
    return SealLifted(community=COMMUNITY, compound="nangong-1", building=building, lifted_at=MORNING,
                      lifted_by=STAFF)



async def known(host: ServiceHost, households: list[str]) -> None:
    """Wait until logistics' directory knows every household (and its residents)."""
    async def check():
        n = await host.pool.fetchval(
            "SELECT count(DISTINCT household) FROM logistics.dir_residents WHERE household = ANY($1)", households)
        return n == len(households)
    await eventually(check, what="the directory")


async def rows(pg_dsn: str, sql: str, *args) -> list:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def counts(pg_dsn: str) -> dict[str, int]:
    """Rows in every logistics table a command may write: what 'writes nothing' is checked on (not the
    outbox, which the relay empties meanwhile: every outbox row is an event, counted already)."""
    out = {}
    for table in ("events", "commands", "stock", "requests", "vouchers", "plans", "welfare_checks"):
        out[table] = (await rows(pg_dsn, f"SELECT count(*) AS n FROM logistics.{table}"))[0]["n"]
    out["on_hand"] = (await rows(pg_dsn, "SELECT coalesce(sum(on_hand), 0) AS n FROM logistics.stock"))[0]["n"]
    return out


def today() -> date:
    return MORNING.date()
