"""The committee's quarantine work lists and the auto-release policy, on one running quarantine
service (real NATS and PostgreSQL) with a clock the test moves through 14 days: what is due for
release and whose check-in is still missing, the scheduler releasing exactly the home cases whose
last check-ins were normal (once), staff releasing the rest, the lists following; bad requests
refused with nothing written; another committee's staff refused."""
from __future__ import annotations

import asyncio
import json

import pytest

from services.quarantine.config import Config as QuarantineConfig
from services.quarantine.scheduler import Scheduler
from shared.identity import Identity
from tests.support.cordon import COMMUNITY
from tests.support.identities import BEIXIN, As, forbidden
from tests.support.quarantine import (
    Clock,
    at,
    client,
    day,
    directory_knows,
    events_of,
    query,
    quarantine,
    record_size,
    registry_facts,
)

pytestmark = pytest.mark.integration

POLICY_ON = QuarantineConfig(auto_release=True)  # the last 3 check-ins looked at
#: case -> (kind, the day it opens); home and centralized cases end on day 14 when they start on day 1.
#: case-0's id sorts first and its end (day 16) last.
CASES = {"case-0": ("home", 3), "case-a": ("home", 1), "case-b": ("home", 1), "case-c": ("home", 1),
         "case-d": ("centralized", 1), "case-e": ("monitoring", 8)}
RESIDENTS = {case: "r-" + case.removeprefix("case-") for case in CASES}


def cases(reply: dict) -> list[str]:
    assert reply["ok"], reply
    return [x["case"] for x in reply["cases"]]


async def test_the_lists_show_what_is_due_and_the_policy_releases_exactly_the_normal_home_cases_once(
        nats_url, pg_dsn):
    # Given six cases: a, b, c at home and d centralized from day 1 (last day: day 14), e's monitoring
    # from day 8 (last day: day 14), 0 at home from day 3; everyone checks in every morning but b has a
    # fever on day 13 and c says nothing on day 12 (the service is down that evening: day 12's missed
    # check-ins are recorded the next day)
    clock = Clock(at(1))
    await registry_facts(nats_url, {r: "b1" for r in RESIDENTS.values()})
    async with quarantine(nats_url, pg_dsn, clock, settings=POLICY_ON, interval=3600) as host, \
            client(nats_url) as c:
        await directory_knows(host, *RESIDENTS.values())
        scheduler = Scheduler(host, POLICY_ON)
        for n in range(1, 14):
            clock.now = at(n, "09:00")
            for case, (kind, opens) in CASES.items():
                if n == opens:
                    await c.ok("open_case", community=COMMUNITY, resident=RESIDENTS[case], kind=kind,
                               reason="arrival", starts_on=str(day(n)), case=case)
                if n >= opens and (case, n) != ("case-c", 12):
                    fever = (case, n) == ("case-b", 13)
                    await c.ok("record_checkin", case=case, on=str(day(n)), temperature_c=38.2 if fever else 36.5)
            if n == 13:
                # a past day's list is read from that day's record, not from the case's last check-in:
                # c, silent on day 12 and back today, is on it until that day is marked missed
                assert cases(await query(c, "quarantine.checkins_due", community=COMMUNITY, on=str(day(12)))) == [
                    "case-c"]
                await c.ok("record_missed_checkins", on=str(day(12)), cases=["case-c"])
            clock.now = at(n, "19:00")
            if n != 12:
                assert (await scheduler.tick())["released"] == 0
        assert [e["data"]["case"] for e in await events_of(host, "CheckinMissed")] == ["case-c"]

        # When the last day begins, before anyone checks in
        clock.now = at(14, "08:00")
        # Then every case is due a check-in today, and five are due for release (0 ends on day 16)
        due = await query(c, "quarantine.checkins_due", community=COMMUNITY)
        assert cases(due) == list(CASES) and due["on"] == str(day(14))
        assert due["due_by"] == at(14, "18:00").isoformat()
        assert cases(await query(c, "quarantine.due_for_release", community=COMMUNITY)) == [
            "case-a", "case-b", "case-c", "case-d", "case-e"]
        # and the policy waits for today's check-ins
        assert (await scheduler.tick())["released"] == 0

        # When all but 0 check in, and the scheduler looks (twice at once, then again)
        clock.now = at(14, "09:00")
        for case in ("case-a", "case-b", "case-c", "case-d", "case-e"):
            await c.ok("record_checkin", case=case, on=str(day(14)), temperature_c=36.6)
        assert cases(await query(c, "quarantine.checkins_due", community=COMMUNITY)) == ["case-0"]
        clock.now = at(14, "09:01")
        await asyncio.gather(scheduler.tick(), Scheduler(host, POLICY_ON).tick())  # as two instances would
        assert (await scheduler.tick())["released"] == 0
        # Then only a, the home case with three normal check-ins, was released, once, and the record
        # says the system did it
        [released] = await events_of(host, "CaseReleased")
        assert (released["data"]["case"], released["data"]["on"]) == ("case-a", str(day(14)))
        assert released["actor"] == released["data"]["released_by"] == "system:auto-release"
        # and b (fever), c (missed), d (centralized) and e (monitoring) stay on the list for staff
        due_list = await query(c, "quarantine.due_for_release", community=COMMUNITY)
        assert [(x["case"], x["stage"], x["days_overdue"]) for x in due_list["cases"]] == [
            ("case-b", "home", 0), ("case-c", "home", 0), ("case-d", "centralized", 0), ("case-e", "monitoring", 0)]
        assert due_list["cases"][0]["display_name"] == "王*伟"

        # When staff release b after looking at it
        await c.ok("release_case", case="case-b", on=str(day(14)))
        # Then the list follows, page by page in the order staff work (the most overdue first)
        first = await query(c, "quarantine.due_for_release", community=COMMUNITY, on=str(day(16)), limit=2)
        assert [(x["case"], x["days_overdue"]) for x in first["cases"]] == [("case-c", 2), ("case-d", 2)]
        assert first["next"] == f"{day(14)}:case-d"
        rest = await query(c, "quarantine.due_for_release", community=COMMUNITY, on=str(day(16)),
                           after=first["next"])
        assert [(x["case"], x["days_overdue"]) for x in rest["cases"]] == [("case-e", 2), ("case-0", 0)]
        assert rest["next"] is None
        # and c is off day 12's check-in list, now marked missed that day
        assert cases(await query(c, "quarantine.checkins_due", community=COMMUNITY, on=str(day(12)))) == []
        page = await query(c, "quarantine.checkins_due", community=COMMUNITY, on=str(day(15)), limit=2)
        assert (cases(page), page["next"]) == (["case-0", "case-a"], "case-a")

        # Bad requests: a clear error naming the field, nothing written
        before = await record_size(host)
        for name, fields, field in [
            ("quarantine.due_for_release", {}, "community"),
            ("quarantine.due_for_release", {"community": "changning"}, "community"),
            ("quarantine.due_for_release", {"community": COMMUNITY, "on": "tomorrow"}, "on"),
            ("quarantine.due_for_release", {"community": COMMUNITY, "limit": 0}, "limit"),
            ("quarantine.due_for_release", {"community": COMMUNITY, "after": "case-c"}, "after"),
            ("quarantine.due_for_release", {"community": COMMUNITY, "after": "2026-11-15:Case C"}, "after"),
            ("quarantine.checkins_due", {"community": COMMUNITY, "on": "2026-13-01"}, "on"),
            ("quarantine.checkins_due", {"community": COMMUNITY, "after": "Case C"}, "after"),
            ("quarantine.checkins_due", {"community": COMMUNITY, "sort": "name"}, "sort"),
        ]:
            reply = await query(c, name, **fields)
            assert (reply["ok"], reply["error"]["code"], reply["error"].get("field")) == (False, "invalid", field)
            assert reply["error"]["message"]
        bad = json.loads((await c.nc.request("cordon.qry.quarantine.checkins_due", b"[1]", timeout=5)).data)
        assert bad["error"]["code"] == "invalid"
        assert await record_size(host) == before

        # Another committee's staff may not read these lists; the committee's own may
        zhou = As(c.nc, Identity(name="zhou-min", role="staff", scope=BEIXIN))
        for name in ("quarantine.due_for_release", "quarantine.checkins_due"):
            forbidden(await zhou.query(name, community=COMMUNITY), "may not read", COMMUNITY)
            own = await As(c.nc, Identity(name="li-wei", role="staff", scope=COMMUNITY)).query(name, community=COMMUNITY)
            assert own["ok"] and own["cases"]
