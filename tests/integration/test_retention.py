"""The retention of residents on real NATS and PostgreSQL, with a clock the test moves: once a city
day the registry shreds exactly the residents who moved out more than the retention period ago and
whose quarantine cases are all closed (the registry's copy of the quarantine's events), through its
own command path, and records how many (never who); nobody is shredded twice."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.registry.app import spec
from services.registry.config import Config
from services.registry.retention import Retention
from shared.contracts.quarantine import CaseClosed, CaseOpened
from shared.identity import Identity
from tests.support.bus import connect
from tests.support.cordon import COMMUNITY, eventually, prc_id, publish_events, running
from tests.support.identities import As, forbidden

pytestmark = pytest.mark.integration

CITY = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=CITY)
LI_WEI = Identity(name="li-wei", role="staff", scope=COMMUNITY)
WHY = "checking the retention of residents who left"


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def _register(operator: As, names: list[str]) -> dict[str, str]:
    """A compound, a household and one resident per name: name -> resident id."""
    await operator.ok("registry", "register_compound", community=COMMUNITY, compound="nangong-1", name="南宫小区",
                      buildings=["b1"], gates=["g1"])
    household = (await operator.ok("registry", "register_household", community=COMMUNITY, compound="nangong-1",
                                   building="b1", address="b1 room 301"))["events"][0]["data"]["household"]
    ids = {}
    for i, name in enumerate(names):
        reply = await operator.ok("registry", "register_resident", household=household, name=name,
                                  id_number=prc_id(700 + i), phone=f"+86138000007{i:02d}", birth_year=1950)
        ids[name] = reply["events"][0]["data"]["resident"]
    return ids


async def _case(nats_url: str, case: str, resident: str, *, closed: bool) -> None:
    """A quarantine case of ``resident``, as the quarantine's relay publishes it (closed or not)."""
    common = dict(community=COMMUNITY, case=case, resident=resident)
    events = [CaseOpened(**common, kind="home", reason="close_contact", starts_on=T0.date(),
                         ends_on=T0.date() + timedelta(days=13), opened_at=T0, opened_by="staff:li-wei")]
    if closed:
        events.append(CaseClosed(**common, on=T0.date() + timedelta(days=20), closed_at=T0 + timedelta(days=20),
                                 closed_by="system:checkin-scheduler"))
    await publish_events(nats_url, events, occurred_at=T0, stream_ids=[f"case:{case}"] * len(events),
                         versions=list(range(1, len(events) + 1)))


async def _events(pg_dsn: str, type_name: str) -> list[dict]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT envelope FROM registry.events WHERE type = $1 ORDER BY position", type_name)
        return [json.loads(r["envelope"]) for r in rows]
    finally:
        await conn.close()


async def _ran(host, day) -> bool:
    return bool(await host.pool.fetchval("SELECT 1 FROM registry.retention_runs WHERE day = $1", day))


async def test_retention_shreds_exactly_who_moved_out_long_enough_with_every_case_closed(nats_url, pg_dsn):
    clock = Clock(T0)
    config = Config(resident_retention_days=180, retention_interval_s=0.05)
    async with running(spec(config), nats_url, pg_dsn, clock=clock) as host:
        nc = await connect(nats_url)
        operator, staff = As(nc, None), As(nc, LI_WEI)
        ids = await _register(operator, ["王一", "李二", "张三", "赵四", "孙五"])
        gone, case_closed, case_open, recent, stays = ids.values()
        # given on day 0: three residents move out, one with a case closed since, one with a case still open
        for resident in (gone, case_closed, case_open):
            await operator.ok("registry", "move_out", resident=resident)
        await _case(nats_url, "case-closed", case_closed, closed=True)
        await _case(nats_url, "case-open", case_open, closed=False)
        await eventually(lambda: host.pool.fetchval("SELECT count(*) = 2 FROM registry.q_cases"), what="cases copied")
        # and on day 100 a fourth moves out; the fifth never does
        clock.now = T0 + timedelta(days=100)
        await operator.ok("registry", "move_out", resident=recent)
        await eventually(lambda: _ran(host, clock.now.date()), what="day 100's run")
        assert await _events(pg_dsn, "ResidentErased") == []  # nobody is due yet
        # when the clock reaches day 181 (180 days after the first moves)
        clock.now = T0 + timedelta(days=181)
        await eventually(lambda: _ran(host, clock.now.date()), what="day 181's run")
        # then exactly the two due are shredded, each through the registry's own erasure, on a legal basis
        erased = await _events(pg_dsn, "ResidentErased")
        assert sorted(e["data"]["resident"] for e in erased) == sorted([gone, case_closed])
        assert all(e["actor"] == "system:retention" and e["data"]["legal_basis"].startswith("retention: ")
                   for e in erased)
        # and one RetentionApplied counts them, naming nobody
        [applied] = await _events(pg_dsn, "RetentionApplied")
        assert applied["community"] == COMMUNITY
        assert {k: applied["data"][k] for k in ("kind", "count")} == {"kind": "residents", "count": 2}
        assert datetime.fromisoformat(applied["data"]["before"]) == clock.now - timedelta(days=180)
        assert not {gone, case_closed} & set(json.dumps(applied).split('"'))
        # and their data keys are gone, their sealed data emptied; the others read as before
        contacts = (await staff.query("registry.contact", resident=gone, purpose=WHY))["contacts"]
        assert [(c["name"], c["phone"], c["erased"]) for c in contacts] == [(None, None, True)]
        for resident, name in ((case_open, "张三"), (recent, "赵四"), (stays, "孙五")):
            [contact] = (await staff.query("registry.contact", resident=resident, purpose=WHY))["contacts"]
            assert (contact["name"], contact["erased"]) == (name, False)
        keys = await asyncpg.connect(pg_dsn + "_keys")
        left = {r[0] for r in await keys.fetch("SELECT subject FROM registry.data_keys")}
        assert {case_open, recent, stays} <= left and not {gone, case_closed} & left
        assert {r[0] for r in await keys.fetch("SELECT subject FROM registry.erasures")} == {gone, case_closed}
        await keys.close()
        # when the day's run is made again, and the next day's runs
        assert await Retention(host, config).apply(clock.now.date(), clock.now) == 0
        clock.now = T0 + timedelta(days=182)
        await eventually(lambda: _ran(host, clock.now.date()), what="day 182's run")
        # then nobody is shredded twice, and no count is recorded for nothing
        assert len(await _events(pg_dsn, "ResidentErased")) == 2
        assert len(await _events(pg_dsn, "RetentionApplied")) == 1
        # when the open case closes, its resident is due on the next day's run
        await publish_events(nats_url, [CaseClosed(community=COMMUNITY, case="case-open", resident=case_open,
                                                   on=clock.now.date(), closed_at=clock.now, closed_by="staff:li-wei")],
                             occurred_at=clock.now, stream_ids=["case:case-open"], versions=[2])
        await eventually(lambda: host.pool.fetchval(
            "SELECT closed_at IS NOT NULL FROM registry.q_cases WHERE case_id = 'case-open'"), what="case closed")
        clock.now = T0 + timedelta(days=183)
        await eventually(lambda: _ran(host, clock.now.date()), what="day 183's run")
        erased = await _events(pg_dsn, "ResidentErased")
        assert [e["data"]["resident"] for e in erased[2:]] == [case_open]
        assert [e["data"]["count"] for e in await _events(pg_dsn, "RetentionApplied")] == [2, 1]
        await nc.close()


async def test_only_cordon_itself_may_apply_retention(nats_url, pg_dsn):
    async with running(spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        ids = await _register(As(nc, None), ["王一"])
        # when a community's staff send apply_retention on their own scoped subject
        reply = await As(nc, LI_WEI).command("registry", "apply_retention", COMMUNITY, community=COMMUNITY,
                                             before=T0.isoformat(), residents=list(ids.values()))
        # then it is refused, and nothing is shredded
        forbidden(reply, "inside Cordon")
        assert await _events(pg_dsn, "ResidentErased") == []
        await nc.close()
