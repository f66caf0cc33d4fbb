"""The gate's other work (issue 17) on one running Cordon (registry, checkpoint, views on real NATS
and PostgreSQL), sent as the committee's staff would: where residents go when going out, vehicles
checked at the gate, parcels and takeaway at the drop point and its work list, and the board's
figures of it all. Then bad input (a clear error, nothing written) and another community's staff
(forbidden, nothing written).

The quarantine service is not started: its CaseOpened is published in the contract's shape, as its
relay would (tests/support/cordon.py ``publish_events``). Callers from the city's account are
simulated with the ``Nats-Request-Info`` header (tests/support/identities.py).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import asyncpg
import pytest

from services.checkpoint.app import spec as checkpoint_spec
from services.registry.app import spec as registry_spec
from services.views.app import spec as views_spec
from shared import pii
from shared.contracts.quarantine import CaseOpened
from shared.identity import Identity
from shared.subjects import STREAM
from tests.support.bus import connect
from tests.support.cordon import eventually, prc_id, publish_events, read_stream, running
from tests.support.identities import BEIXIN, NANGONG, As, forbidden

pytestmark = pytest.mark.integration

DAY = date(2022, 4, 2)
AT = datetime(2022, 4, 2, 9, 0, tzinfo=timezone(timedelta(hours=8)))
LI_WEI = Identity(name="li-wei", role="staff", scope=NANGONG, community=NANGONG)
ZHAO_MIN = Identity(name="zhao-min", role="staff", scope=BEIXIN, community=BEIXIN)
PLATE = "沪A·7Q391"
OUTSIDE_DRIVER = {"name": "刘建国", "phone": "13912345678"}
GATE = {"community": NANGONG, "compound": "nangong-1", "gate": "g1"}


@dataclass
class Gate:
    nc: object
    db: asyncpg.Connection
    pg_dsn: str
    staff: As  # Li Wei, of Nangong
    h1: str  # building b1: residents r1, r2
    r1: str
    r2: str
    h2: str  # building b2: resident r3 (put in home quarantine by the story)
    r3: str

    async def send(self, command: str, **fields) -> dict:
        fields.setdefault("occurred_at", AT.isoformat())
        return await self.staff.command("checkpoint", command, NANGONG, **fields)

    async def ok(self, command: str, **fields) -> dict:
        reply = await self.send(command, **fields)
        assert reply["ok"], reply
        return reply

    async def vehicle(self, **fields) -> dict:
        fields = {**GATE, "direction": "out", "plate": PLATE, "purpose": "resident", **fields}
        return (await self.ok("check_vehicle", **fields))["decision"]

    async def parcels(self, **fields) -> dict:
        return await self.staff.query("checkpoint.parcels", community=NANGONG, **fields)

    async def written(self) -> dict:
        """What the checkpoint holds: its record, stored replies, its tables, and the stream (once
        the relay has published what was recorded: the count is not caught mid-way)."""
        await eventually(lambda: _equals(self.db.fetchval("SELECT count(*) FROM checkpoint.outbox"), 0),
                         what="the checkpoint's outbox empty")
        counts = {t: await self.db.fetchval(f"SELECT count(*) FROM checkpoint.{t}")
                  for t in ("events", "commands", "vehicles", "parcels")}
        counts["stream"] = (await self.nc.jetstream().stream_info(STREAM)).state.messages
        return counts


async def _registered(nc, db) -> dict:
    """Nangong's compound (b1, b2; gates g1, g2) with two households and three residents, and a
    compound in Beixin, all known to the checkpoint's directory."""
    operator = As(nc, None)
    for community in (NANGONG, BEIXIN):
        await operator.ok("registry", "register_compound", community=community,
                          compound=f"{community.rsplit('.', 1)[1]}-1", name="小区", buildings=["b1", "b2"],
                          gates=["g1", "g2"])
    ids: dict = {}
    for key, building in (("h1", "b1"), ("h2", "b2")):
        reply = await operator.ok("registry", "register_household", community=NANGONG, compound="nangong-1",
                                  building=building, address=f"{building} 101")
        ids[key] = reply["events"][0]["data"]["household"]
    for n, (key, home) in enumerate((("r1", "h1"), ("r2", "h1"), ("r3", "h2"))):
        reply = await operator.ok("registry", "register_resident", household=ids[home], name="王小伟",
                                  id_number=prc_id(9000 + n), birth_year=1960)
        ids[key] = reply["events"][0]["data"]["resident"]
    await eventually(lambda: _equals(db.fetchval("SELECT count(*) FROM checkpoint.dir_residents"), 3),
                     what="residents in the checkpoint's directory")
    return ids


async def _equals(value, expected):
    return (await value) == expected or None


@pytest.fixture
async def gate(nats_url, pg_dsn):
    async with running(registry_spec(), nats_url, pg_dsn), running(checkpoint_spec(), nats_url, pg_dsn), \
            running(views_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        db = await asyncpg.connect(pg_dsn)
        try:
            yield Gate(nc, db, pg_dsn, As(nc, LI_WEI), **await _registered(nc, db))
        finally:
            await db.close()
            await nc.close()


async def _quarantined(gate: Gate, nats_url: str) -> None:
    """r3 in home quarantine, as the quarantine service's relay would publish it."""
    await publish_events(nats_url, [CaseOpened(
        community=NANGONG, case="case-1", resident=gate.r3, household=gate.h2, compound="nangong-1",
        building="b2", kind="home", reason="arrival", starts_on=DAY, ends_on=DAY + timedelta(days=13),
        opened_at=AT, opened_by="staff:li-wei")], occurred_at=AT)
    await eventually(lambda: gate.db.fetchval("SELECT count(*) FROM checkpoint.q_cases"), what="the case copied")


async def test_a_day_at_the_gate_outings_vehicles_and_the_drop_point_reach_the_board(gate, nats_url):
    # given r3's household in home quarantine
    await _quarantined(gate, nats_url)

    # when r1 walks out to the hospital, then the passage records where to, as a category
    walk = await gate.ok("check_passage", **GATE, direction="out", temperature_c=36.5, resident=gate.r1,
                         destination="medical")
    assert walk["decision"]["allowed"] and walk["events"][0]["data"]["destination"] == "medical"

    # when r1 drives out with r3 aboard, then the car stays in, for r3
    assert await gate.vehicle(driver={"resident": gate.r1}, passengers=[gate.r3]) == {
        "allowed": False, "reason": "under_quarantine", "resident": gate.r3}
    # and with r2 aboard instead it goes
    assert (await gate.vehicle(driver={"resident": gate.r1}, passengers=[gate.r2]))["allowed"]
    # and under closed management a delivery van coming in is turned back to the drop point
    await gate.ok("set_control_level", community=NANGONG, compound="nangong-1", level="closed")
    van = await gate.vehicle(direction="in", driver=OUTSIDE_DRIVER, purpose="delivery")
    assert van == {"allowed": False, "reason": "vehicles_not_admitted", "resident": None}

    # then the plate and the outside driver are sealed in the checkpoint, never in clear, never on the bus
    rows = await gate.db.fetch("SELECT vehicle, personal FROM checkpoint.vehicles ORDER BY checked_at, vehicle")
    assert len(rows) == 3 and all(r["personal"] for r in rows)
    sealed = b"".join(r["personal"] for r in rows)
    assert "7Q391".encode() not in sealed and OUTSIDE_DRIVER["phone"].encode() not in sealed
    opened = await _opened(gate.pg_dsn, rows)
    assert {o["plate"] for o in opened} == {"沪A7Q391"}
    assert OUTSIDE_DRIVER["phone"] in {o["driver_phone"] for o in opened}
    on_the_bus = b"".join(m.data for m in await read_stream(nats_url, (await gate.written())["stream"]))
    assert b"7Q391" not in on_the_bus and OUTSIDE_DRIVER["phone"].encode() not in on_the_bus
    assert OUTSIDE_DRIVER["name"].encode() not in on_the_bus

    # when takeaway is left for h1 and groceries for h2 (in quarantine)
    pk1 = (await gate.ok("drop_parcel", **GATE, household=gate.h1, kind="takeaway"))["parcel"]
    later = (AT + timedelta(minutes=20)).isoformat()
    pk2 = (await gate.ok("drop_parcel", **GATE, household=gate.h2, kind="groceries", occurred_at=later))["parcel"]
    # then the drop point's work list shows both, oldest first, h2's to be carried to the door
    waiting = await gate.parcels(gate="g1")
    assert [(p["parcel"], p["to_the_door"]) for p in waiting["parcels"]] == [(pk1, False), (pk2, True)]
    assert (await gate.parcels(limit=1))["next"] == pk1

    # when r3 comes for the groceries, then a volunteer must take them to the door, and does
    refused = await gate.send("collect_parcel", parcel=pk2, resident=gate.r3)
    assert refused["error"]["reason"] == "must_be_delivered" and "under_quarantine" in refused["error"]["message"]
    await gate.ok("collect_parcel", parcel=pk2, volunteer="volunteer:zhang-min")
    # and r2 collects the takeaway, once
    await gate.ok("collect_parcel", parcel=pk1, resident=gate.r2)
    again = await gate.send("collect_parcel", parcel=pk1, volunteer="volunteer:zhang-min")
    assert again["error"]["reason"] == "already_collected"

    # then nothing waits, and the whole day's list says who took what
    assert (await gate.parcels())["parcels"] == []
    day = {p["parcel"]: (p["resident"], p["volunteer"]) for p in (await gate.parcels(uncollected=False))["parcels"]}
    assert day == {pk1: (gate.r2, None), pk2: (None, "volunteer:zhang-min")}

    # and the committee's board counts it all
    want = {"vehicles_checked": 3, "vehicles_denied": 2, "parcels_dropped": 2, "parcels_collected": 2,
            "parcels_waiting": 0, "outings_medical": 1, "outings_work": 0, "passages_out": 1}

    async def board():
        reply = await gate.staff.query("community", community=NANGONG, on=DAY.isoformat())
        got = {k: reply.get("figures", {}).get(k, 0) for k in want}
        return reply if got == want else None

    reply = await eventually(board, what=f"the board showing {want}")
    assert reply["vehicles_today"] == {"checked": 3, "denied": 2}
    assert reply["parcels"] == {"dropped_today": 2, "collected_today": 2, "waiting": 0}
    assert reply["outings_today"]["medical"] == 1


async def _opened(pg_dsn: str, rows) -> list[dict]:
    """The sealed vehicle fields opened with each check's data key, from the key database."""
    conn = await asyncpg.connect(pg_dsn + "_keys")
    try:
        out = []
        for r in rows:
            subject = f"vehicle:{r['vehicle']}"
            wrapped = await conn.fetchrow("SELECT wrapped, key_id FROM checkpoint.data_keys WHERE subject = $1",
                                          subject)
            data_key = pii.from_env(os.environ).unwrap(subject, pii.Wrapped(wrapped["key_id"], wrapped["wrapped"]))
            out.append(json.loads(pii.unseal(data_key, subject, r["personal"])))
        return out
    finally:
        await conn.close()


async def test_bad_input_and_another_communitys_staff_get_a_clear_refusal_and_nothing_is_written(gate):
    # given a parcel waiting for h1 and a vehicle check on the record
    parcel = (await gate.ok("drop_parcel", **GATE, household=gate.h1, kind="parcel"))["parcel"]
    taken = (await gate.ok("check_vehicle", **GATE, direction="in", plate=PLATE, purpose="resident",
                           driver={"resident": gate.r1}))["vehicle"]
    before = await gate.written()
    car = {**GATE, "direction": "in", "plate": PLATE, "purpose": "resident", "driver": {"resident": gate.r1}}
    walk = {**GATE, "temperature_c": 36.5, "resident": gate.r1}
    bad = [  # command, fields, code, field or reason
        ("check_vehicle", {**car, "gate": "g9"}, "not_found", "gate"),
        ("check_vehicle", {**car, "plate": "A?"}, "invalid", "plate"),
        ("check_vehicle", {**car, "purpose": "sightseeing"}, "invalid", "purpose"),
        ("check_vehicle", {**car, "driver": {"name": "刘建国"}, "purpose": "delivery"}, "invalid", "driver.phone"),
        ("check_vehicle", {**car, "passengers": [gate.r1]}, "invalid", "passengers"),
        ("check_vehicle", {**car, "vehicle": taken}, "conflict", "vehicle"),
        ("drop_parcel", {**GATE, "household": "h-nobody", "kind": "parcel"}, "not_found", "household"),
        ("drop_parcel", {**GATE, "household": gate.h1, "kind": "furniture"}, "invalid", "kind"),
        ("drop_parcel", {**GATE, "gate": "g9", "household": gate.h1, "kind": "parcel"}, "not_found", "gate"),
        ("drop_parcel", {**GATE, "household": gate.h1, "kind": "parcel", "parcel": parcel}, "conflict", "parcel"),
        ("collect_parcel", {"parcel": "pk-nobody", "volunteer": "volunteer:zhang-min"}, "not_found", "parcel"),
        ("collect_parcel", {"parcel": parcel, "resident": gate.r1, "volunteer": "volunteer:zhang-min"}, "invalid",
         "resident"),
        ("collect_parcel", {"parcel": parcel, "resident": gate.r3}, "rejected", "not_of_household"),
        ("check_passage", {**walk, "direction": "in", "destination": "work"}, "invalid", "destination"),
        ("check_passage", {**walk, "direction": "out", "destination": "阿姨家 12号"}, "invalid", "destination"),
    ]
    for command, fields, code, where in bad:
        reply = await gate.send(command, **fields)
        assert not reply["ok"] and reply["error"]["code"] == code, (command, fields, reply)
        said = reply["error"].get("reason") if code == "rejected" else reply["error"].get("field")
        assert said == where and len(reply["error"]["message"]) > 15, (command, reply)
    for fields, where in (({"limit": 0}, "limit"), ({"gate": "G 1"}, "gate"), ({"waiting": True}, "waiting")):
        reply = await gate.parcels(**fields)
        assert reply["error"]["code"] == "invalid" and reply["error"].get("field") == where, reply

    # when staff of Beixin act on Nangong's gate, parcel or work list, then each is forbidden
    zhao = As(gate.nc, ZHAO_MIN)
    forbidden(await zhao.command("checkpoint", "check_vehicle", NANGONG, **car), "may not act in")
    forbidden(await zhao.command("checkpoint", "drop_parcel", BEIXIN, **GATE, household=gate.h1, kind="parcel"),
              "must be the same")
    forbidden(await zhao.command("checkpoint", "collect_parcel", BEIXIN, parcel=parcel,
                                 volunteer="volunteer:zhang-min"), f"parcel:{parcel}", NANGONG)
    forbidden(await zhao.query("checkpoint.parcels", community=NANGONG), "may not read")
    # and Beixin's own work list holds nothing of Nangong's
    assert (await zhao.query("checkpoint.parcels", community=BEIXIN))["parcels"] == []

    # then nothing was written: no event, no stored reply, no row, nothing on the bus
    assert await gate.written() == before
    # and the parcel still waits for its household
    await gate.ok("collect_parcel", parcel=parcel, resident=gate.r2)
