"""A screening round end to end on one running Cordon (quarantine and checkpoint on real NATS and
PostgreSQL, the registry's facts published as its relay would): codes printed ahead, samples
recorded by code, a resident told to stay in turned back at the gate with ``awaiting_result`` until
the result is recorded, then let out; the round's status list at each step; the seal of a sealed
building extended by the round."""
from __future__ import annotations

import pytest

from services.checkpoint.app import spec as checkpoint_spec
from tests.support.cordon import COMMUNITY, Client, eventually, running
from tests.support.quarantine import (
    Clock,
    at,
    client,
    day,
    directory_knows,
    events_of,
    published,
    quarantine,
    query,
    registry_facts,
)

pytestmark = pytest.mark.integration


async def status(c: Client, which: str = "not_sampled", **page) -> dict:
    reply = await query(c, "quarantine.screening_status", community=COMMUNITY, screening="round-3", status=which,
                        **page)
    assert reply["ok"], reply
    return reply


def residents(reply: dict) -> list[str]:
    return [r["resident"] for r in reply["residents"]]


async def test_a_stay_in_round_codes_ahead_samples_by_code_the_gate_until_the_result(nats_url, pg_dsn):
    clock = Clock(at(1, "07:00"))
    await registry_facts(nats_url, {"r-wang": "b1", "r-li": "b2", "r-zhao": "b2"})
    async with quarantine(nats_url, pg_dsn, clock, interval=3600) as host, client(nats_url) as c, \
            running(checkpoint_spec(), nats_url, pg_dsn) as gate_host:
        gate = Client(c.nc, service="checkpoint")
        await directory_knows(host, "r-wang", "r-li", "r-zhao")
        await eventually(lambda: gate_host.pool.fetchval("SELECT count(*) = 3 FROM checkpoint.dir_residents"))

        async def at_gate(direction: str = "out") -> str | None:
            reply = await gate.ok("check_passage", community=COMMUNITY, compound="sunny-garden", gate="north",
                                  direction=direction, temperature_c=36.5, resident="r-wang")
            return reply["decision"]["reason"]

        # Given building b2 sealed until day 2, when a round that tells the sampled to stay in is
        # scheduled for day 2, then the seal lasts until the round's results (day 4)
        await c.ok("seal", community=COMMUNITY, compound="sunny-garden", building="b2", until=str(day(2)))
        scheduled = await c.ok("schedule_screening", community=COMMUNITY, compound="sunny-garden", on=str(day(2)),
                               screening="round-3", stay_in_until_result=True,
                               slots=[{"label": "everyone", "from": "07:00", "to": "11:00"}])
        assert [(e["type"], e["data"].get("until")) for e in scheduled["events"]] == [
            ("ScreeningScheduled", None), ("SealExtended", str(day(4)))]

        # When codes are printed ahead for every resident of the compound
        issued = await c.ok("issue_sample_codes", screening="round-3", all_residents=True)
        code_of = {p["resident"]: p["code"] for p in issued["codes"]}
        assert sorted(code_of) == ["r-li", "r-wang", "r-zhao"]
        assert issued["events"][0]["data"]["count"] == 3
        # then nobody is sampled yet, everyone holds a code; a second print finds no one new
        before = await status(c)
        assert residents(before) == ["r-li", "r-wang", "r-zhao"]
        assert all(r["code_issued"] for r in before["residents"])
        assert (before["counts"]["residents"], before["counts"]["codes_issued"]) == (3, 3)
        assert (await c.send("issue_sample_codes", screening="round-3", residents=["r-li"]))["error"]["reason"] \
            == "already_issued"

        # On the round's day, Wang brings his slip alone (typed lower case, with the dash): it names him
        clock.now = at(2, "07:30")
        slip = f"{code_of['r-wang'][:4]}-{code_of['r-wang'][4:]}".lower()
        sampled = await c.ok("record_sample", screening="round-3", code=slip)
        taken = sampled["events"][0]["data"]
        assert (taken["resident"], taken["stay_in_until_result"]) == ("r-wang", True)
        # Li shows Zhao's slip: refused, nothing recorded; then her own
        wrong = await c.send("record_sample", screening="round-3", resident="r-li", code=code_of["r-zhao"])
        assert wrong["error"]["reason"] == "code_of_another_resident"
        await c.ok("record_sample", screening="round-3", resident="r-li", code=code_of["r-li"])

        # The status lists: Zhao not sampled; Li and Wang pending and staying in, a page at a time
        assert residents(await status(c)) == ["r-zhao"]
        first = await status(c, "staying_in", limit=1)
        assert (residents(first), first["next"]) == (["r-li"], "r-li")
        assert residents(await status(c, "staying_in", after="r-li")) == ["r-wang"]
        pending = await status(c, "pending")
        assert residents(pending) == ["r-li", "r-wang"] and all(r["stay_in"] for r in pending["residents"])
        assert {k: pending["counts"][k] for k in ("not_sampled", "sampled", "pending", "staying_in")} == {
            "not_sampled": 1, "sampled": 2, "pending": 2, "staying_in": 2}

        # At the gate: Wang is turned back going out until his result is back, and let home
        await eventually(lambda: gate_host.pool.fetchval("SELECT count(*) = 2 FROM checkpoint.awaiting_results"))
        assert await at_gate("out") == "awaiting_result"
        assert await at_gate("in") is None

        # The seal of b2 is not lifted on day 2, as first planned: the round's results are awaited
        lift = await c.send("lift_seal", community=COMMUNITY, compound="sunny-garden", building="b2")
        assert lift["error"]["reason"] == "seal_not_over"

        # When his negative result is recorded, then he goes out, and the lists move on
        clock.now = at(3, "10:00")
        await c.ok("record_result", screening="round-3", resident="r-wang", result="negative")
        await eventually(lambda: gate_host.pool.fetchval("SELECT count(*) = 1 FROM checkpoint.awaiting_results"))
        assert await at_gate("out") is None
        after = await status(c, "staying_in")
        assert residents(after) == ["r-li"]
        assert (after["counts"]["negative"], after["counts"]["pending"]) == (1, 1)

        # The denial is on the record with its reason, and no printed code went on the bus
        denied = await gate_host.pool.fetchval(
            "SELECT count(*) FROM checkpoint.events WHERE type = 'PassageDenied' "
            "AND convert_from(envelope, 'UTF8')::jsonb->'data'->>'reason' = 'awaiting_result'")
        assert denied == 1
        assert [e["data"]["previous_until"] for e in await events_of(host, "SealExtended")] == [str(day(2))]
        await eventually(lambda: host.pool.fetchval("SELECT count(*) = 0 FROM quarantine.outbox"))
    on_the_bus = b"".join(m.data for m in await published(nats_url, "cordon.evt.>"))
    assert not [code for code in code_of.values() if code.encode() in on_the_bus]


async def test_a_round_under_way_at_the_upgrade_keeps_its_samples_in_the_status_list(nats_url, pg_dsn):
    clock = Clock(at(2, "08:00"))
    await registry_facts(nats_url, {"r-wang": "b1", "r-li": "b2", "r-zhao": "b2"})
    async with quarantine(nats_url, pg_dsn, clock, interval=3600) as host, client(nats_url) as c:
        await directory_knows(host, "r-wang", "r-li", "r-zhao")
        await c.ok("schedule_screening", community=COMMUNITY, compound="sunny-garden", on=str(day(2)),
                   screening="round-3", slots=[{"label": "everyone", "from": "07:00", "to": "11:00"}])
        await c.ok("record_sample", screening="round-3", resident="r-wang", stay_in_until_result=True)
        await c.ok("record_sample", screening="round-3", resident="r-li")
        await c.ok("record_result", screening="round-3", resident="r-li", result="positive")
        told = [await status(c, which) for which in ("not_sampled", "pending", "staying_in")]
        # Given a quarantine of before issue 17: its record has the samples, no table of them
        await host.pool.execute("DROP TABLE quarantine.round_samples")
    # when it starts as this version, then the round's lists are what they were
    async with quarantine(nats_url, pg_dsn, clock, interval=3600), client(nats_url) as c:
        assert [await status(c, which) for which in ("not_sampled", "pending", "staying_in")] == told
    assert [residents(r) for r in told] == [["r-zhao"], ["r-wang"], ["r-wang"]]
    assert (told[0]["counts"]["positive"], told[0]["counts"]["sampled"]) == (1, 2)
