"""A street for the live board's stories: every service running on the test's servers, two
committees of one street (Nangong and Beixin), each with a compound, households, residents and
passes; Nangong with a little of everything its board lists (a passage, an open supply request, a
welfare check, a missed check-in). Set up as Cordon's operators would, on NATS."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from services.audit.app import spec as audit_spec
from services.checkpoint.app import spec as checkpoint_spec
from services.logistics.app import spec as logistics_spec
from services.quarantine.app import spec as quarantine_spec
from services.registry.app import spec as registry_spec
from services.views.app import spec as views_spec
from shared.config import city_zone
from shared.identity import Identity
from tests.support.bus import connect
from tests.support.cordon import eventually, outboxes_empty, prc_id, running
from tests.support.identities import BEIXIN, NANGONG, As

STREET = "changning.chengjiaqiao"
LI_WEI = Identity(name="li-wei", role="staff", scope=NANGONG)
ZHAO_LEI = Identity(name="zhao-lei", role="staff", scope=BEIXIN)
NANGONG_GATE = Identity(name="nangong-east", role="gate", scope=NANGONG, compound="nangong-1")
WANG_FANG = Identity(name="wang-fang", role="officer", scope=STREET)
#: The first household's address has markup in it: were it ever shown, the board would have to
#: escape it; since HouseholdRegistered schema 2 it stays in the registry and the board never has it.
ADDRESSES = ("b1-101 <east wing> & store",)
SPECS = (registry_spec, checkpoint_spec, quarantine_spec, logistics_spec, views_spec, audit_spec)


@dataclass
class Committee:
    community: str
    compound: str
    #: resident -> the id of their pass
    passes: dict[str, str] = field(default_factory=dict)


@dataclass
class Street:
    nats_url: str
    operator: As
    db: asyncpg.Connection
    nangong: Committee
    beixin: Committee

    async def caught_up(self) -> None:
        """Every event recorded so far is on the stream, in the views and in the audit log."""
        await caught_up(self.operator.nc, self.db)


@contextlib.asynccontextmanager
async def street(nats_url: str, pg_dsn: str, busy: bool = True):
    """``busy``: Nangong's day too (its home case brings the schedulers' events at any moment)."""
    async with contextlib.AsyncExitStack() as stack:
        for spec in SPECS:
            await stack.enter_async_context(running(spec(), nats_url, pg_dsn))
        nc = await connect(nats_url)
        stack.push_async_callback(nc.close)
        db = await asyncpg.connect(pg_dsn)
        stack.push_async_callback(db.close)
        operator = As(nc, None)
        nangong = await _committee(operator, db, NANGONG, "南宫新村", 3)
        beixin = await _committee(operator, db, BEIXIN, "北新公寓", 1)
        if busy:
            await _nangong_day(operator, db, nangong)
        s = Street(nats_url, operator, db, nangong, beixin)
        await s.caught_up()
        yield s


async def _committee(operator: As, db, community: str, name: str, households: int) -> Committee:
    compound = f"{community.rsplit('.', 1)[1]}-1"
    await operator.ok("registry", "register_compound", community=community, compound=compound, name=name,
                      buildings=["b1"], gates=["g1"])
    committee = Committee(community, compound)
    residents = []
    for n in range(households):
        reply = await operator.ok("registry", "register_household", community=community, compound=compound,
                                  building="b1", address=ADDRESSES[n] if n < len(ADDRESSES) else f"b1-{101 + n}")
        household = reply["events"][0]["data"]["household"]
        reply = await operator.ok("registry", "register_resident", household=household, name="王小伟",
                                  id_number=prc_id(len(community) * 100 + n), birth_year=1940 + n,
                                  vulnerabilities=["elderly_alone"] if n == 0 else [])
        residents.append(reply["events"][0]["data"]["resident"])
    for resident in residents:
        await eventually(lambda: db.fetchval("SELECT 1 FROM checkpoint.dir_residents WHERE resident = $1", resident))
    issued = await operator.ok("checkpoint", "issue_passes", community=community, compound=compound,
                               all_households=True)
    by_household = {p["household"]: p["pass"] for p in issued["passes"]}
    homes = await db.fetch("SELECT resident, household FROM checkpoint.dir_residents WHERE resident = ANY($1)",
                           residents)
    committee.passes = {r["resident"]: by_household[r["household"]] for r in homes}
    return committee


async def _nangong_day(operator: As, db, c: Committee) -> None:
    """A passage, a supply request nobody answered at the door (a welfare check, the request open
    again), and a case that missed yesterday's check-in."""
    first, second, *_ = c.passes
    await operator.ok("checkpoint", "check_passage", community=c.community, compound=c.compound, gate="g1",
                      direction="out", temperature_c=36.4, **{"pass": c.passes[second]})
    household = await db.fetchval("SELECT household FROM checkpoint.dir_residents WHERE resident = $1", first)
    await eventually(lambda: db.fetchval("SELECT 1 FROM logistics.dir_households WHERE household = $1", household))
    await operator.ok("logistics", "receive_stock", community=c.community, source="allocation",
                      items=[{"item": "rice", "qty": 20}, {"item": "masks", "qty": 200}])
    reply = await operator.ok("logistics", "request_supplies", community=c.community, household=household,
                              kind="food", items=[{"item": "rice", "qty": 1}])
    await operator.ok("logistics", "assign_delivery", request=reply["request"], volunteer="vol-1")
    await operator.ok("logistics", "record_delivery", request=reply["request"], outcome="no_answer")
    # a home case opened yesterday morning, whose check-in of yesterday never came
    zone = city_zone()
    yesterday = datetime.now(zone).date() - timedelta(days=1)
    third = list(c.passes)[2]
    home = await db.fetchval("SELECT household FROM checkpoint.dir_residents WHERE resident = $1", third)
    case = await operator.ok("quarantine", "open_case", community=c.community, resident=third, kind="home",
                             reason="close_contact", starts_on=str(yesterday), household=home,
                             compound=c.compound, building="b1",
                             occurred_at=datetime.combine(yesterday, datetime.min.time().replace(hour=9),
                                                          zone).isoformat())
    await operator.ok("quarantine", "record_missed_checkins", on=str(yesterday),
                      cases=[case["events"][0]["data"]["case"]])


async def caught_up(nc, db) -> None:
    from shared.subjects import STREAM

    await outboxes_empty(db, "registry", "checkpoint", "quarantine", "logistics")
    last = (await nc.jetstream().stream_info(STREAM)).state.last_seq
    generation = await eventually(lambda: db.fetchval("SELECT generation FROM views.current"))
    await eventually(lambda: db.fetchval(f"SELECT hwm >= $1 FROM views_g{generation}.meta", last), what="views")
    await eventually(lambda: db.fetchval("SELECT hwm >= $1 FROM audit.head", last), what="audit")
