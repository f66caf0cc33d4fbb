"""A committee's logistics day of issue 17 on a running Cordon (registry, checkpoint, logistics,
views on real NATS and PostgreSQL), as one story: a group order from a supplier placed, delivered
to a gate and handed out building by building; volunteers registered in teams, their delivery and
door-to-door hours recorded and their gate shifts counted from the checkpoint; a door-to-door visit
and the vulnerable list, longest without contact first, a page at a time; the board's figures.

Every command and query is also sent with bad input (a clear error naming the field or the rule)
and by another committee's staff (``forbidden``), and none of those writes anything: no event, no
stored reply, no row, nothing on the stream.
"""
from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest

from services.checkpoint.app import spec as checkpoint_spec
from services.logistics.app import spec as logistics_spec
from services.registry.app import spec as registry_spec
from services.views.app import spec as views_spec
from shared.identity import Identity
from shared.subjects import STREAM
from tests.support.bus import operator_config
from tests.support.cordon import eventually, outboxes_empty, prc_id
from tests.support.identities import As, BEIXIN, NANGONG, forbidden
from tests.support.logistics import start_services
from tests.support.quarantine import Clock, at, day

pytestmark = pytest.mark.integration

LI_WEI = Identity(name="li-wei", role="staff", scope=NANGONG)
ZHAO_LEI = Identity(name="zhao-lei", role="staff", scope=BEIXIN)
ZHANG = "volunteer:zhang-3"
TABLES = ("events", "commands", "group_orders", "volunteers", "volunteer_hours", "visits")


async def written(db, nc) -> tuple:
    """What a refused command must not change: logistics' events, stored replies and tables, and
    the stream once every outbox is empty."""
    await outboxes_empty(db, "logistics", "checkpoint")
    counts = [await db.fetchval(f"SELECT count(*) FROM logistics.{t}") for t in TABLES]
    return (*counts, (await nc.jetstream().stream_info(STREAM)).state.messages)


@pytest.fixture
async def cordon(nats_url, pg_dsn):
    clock = Clock(at(1, "10:00"))
    config = operator_config(nats_url, pg_dsn=pg_dsn, backdate_days=0)
    async with contextlib.AsyncExitStack() as stack:
        nc, db = await start_services(stack, (registry_spec, checkpoint_spec, logistics_spec, views_spec), config, clock, nats_url, pg_dsn)
        yield nc, db, await _populate(As(nc, None), db)


async def _populate(operator: As, db) -> dict[str, str]:
    """Nangong's compound (b1, b2; gates g1, g2) with an elderly resident living alone (h1) and one
    of limited mobility (h2), a resident of h1 nobody flagged; Beixin's with one elderly resident."""
    people = {}
    for community, compound in ((NANGONG, "nangong-1"), (BEIXIN, "beixin-1")):
        await operator.ok("registry", "register_compound", community=community, compound=compound,
                          name=compound, buildings=["b1", "b2"], gates=["g1", "g2"])
    for key, community, compound, building, flags in (
            ("h1", NANGONG, "nangong-1", "b1", ["elderly_alone"]), ("h2", NANGONG, "nangong-1", "b2",
                                                                    ["limited_mobility"]),
            ("hb", BEIXIN, "beixin-1", "b1", ["elderly_alone"])):
        reply = await operator.ok("registry", "register_household", community=community, compound=compound,
                                  building=building, address=f"{building} room 1")
        people[key] = reply["events"][0]["data"]["household"]
        reply = await operator.ok("registry", "register_resident", household=people[key], name="王小伟",
                                  id_number=prc_id(300 + len(people)), birth_year=1940, vulnerabilities=flags)
        people[f"r{key[1:]}"] = reply["events"][0]["data"]["resident"]
    await operator.ok("registry", "register_resident", household=people["h1"], name="王小明",
                      id_number=prc_id(399), birth_year=1990)
    await eventually(lambda: db.fetchval("SELECT count(*) = 4 FROM logistics.dir_residents"), what="directory")
    await eventually(lambda: db.fetchval("SELECT count(*) = 2 FROM checkpoint.dir_compounds"), what="gates")
    return people


async def test_a_committees_group_orders_volunteers_and_vulnerable_residents(cordon):
    nc, db, people = cordon
    li, zhao = As(nc, LI_WEI), As(nc, ZHAO_LEI)
    today = str(day(1))

    # -- a group order of vegetable boxes for three households, from a shop -------------------------
    order = (await li.ok("logistics", "place_group_order", NANGONG, community=NANGONG, compound="nangong-1",
                         supplier="盒马鲜生", items=[{"item": "vegetable-box", "qty": 3}], households=3))
    order = order["events"][0]["data"]["order"]
    early = await li.command("logistics", "hand_out_group_order", NANGONG, order=order, building="b1", households=1)
    assert early["error"]["reason"] == "not_delivered", early
    await li.ok("logistics", "record_group_order_delivered", NANGONG, order=order, gate="g1")
    await li.ok("logistics", "hand_out_group_order", NANGONG, order=order, building="b1", households=2)
    twice = await li.command("logistics", "hand_out_group_order", NANGONG, order=order, building="b1", households=1)
    assert twice["error"]["reason"] == "already_handed_out", twice
    over = await li.command("logistics", "hand_out_group_order", NANGONG, order=order, building="b2", households=2)
    assert over["error"]["reason"] == "more_than_ordered" and "at most 1 more" in over["error"]["message"], over
    done = await li.ok("logistics", "hand_out_group_order", NANGONG, order=order, building="b2", households=1)
    assert done["events"][0]["data"]["complete"] is True
    # a second order is at the gate, not handed out yet
    second = await li.ok("logistics", "place_group_order", NANGONG, community=NANGONG, compound="nangong-1",
                         supplier="叮咚买菜", items=[{"item": "meat-set", "qty": 2}], households=2, order="o-meat")
    await li.ok("logistics", "record_group_order_delivered", NANGONG, order="o-meat", gate="g2")
    assert second["events"][0]["actor"] == "staff:li-wei"
    listed = await li.query("logistics.group_orders", community=NANGONG, open=True)
    assert [(o["order"], o["status"], o["gate"]) for o in listed["orders"]] == [("o-meat", "delivered", "g2")]
    every = await li.query("logistics.group_orders", community=NANGONG)
    assert {o["order"]: (o["status"], o["handed_out"], o["buildings"]) for o in every["orders"]} == {
        "o-meat": ("delivered", 0, {}), order: ("handed_out", 3, {"b1": 2, "b2": 1})}

    # -- volunteers: a party branch's volunteer, her hours, and gate shifts from the checkpoint ------
    await li.ok("logistics", "register_volunteer", NANGONG, volunteer=ZHANG, community=NANGONG,
                team="party-branch-3", unit_kind="party_branch")
    again = await li.command("logistics", "register_volunteer", NANGONG, volunteer=ZHANG, community=NANGONG,
                             team="party-branch-3", unit_kind="party_branch")
    assert again["error"]["reason"] == "already_registered", again
    for kind, hours in (("delivery", 2.5), ("door_to_door", 1.5)):
        await li.ok("logistics", "record_volunteer_hours", NANGONG, volunteer=ZHANG, community=NANGONG,
                    on=today, kind=kind, hours=hours)
    for staff, minutes in ((ZHANG, 90), ("volunteer:li", 60)):  # li is in no team logistics knows
        start = at(1, "08:00")
        await li.ok("checkpoint", "start_shift", NANGONG, community=NANGONG, gate="g1", staff=staff,
                    occurred_at=start.isoformat())
        await li.ok("checkpoint", "end_shift", NANGONG, community=NANGONG, gate="g1", staff=staff,
                    occurred_at=(start + timedelta(minutes=minutes)).isoformat())
    await eventually(lambda: db.fetchval("SELECT count(*) = 4 FROM logistics.volunteer_hours"), what="gate hours")
    hours = await li.query("logistics.volunteer_hours", community=NANGONG, on=today)
    assert hours["hours"] == 6.5 and hours["from"] == hours["to"] == today
    assert [(t["team"], t["unit_kind"], t["hours"], t["kinds"], t["volunteers"]) for t in hours["teams"]] == [
        ("party-branch-3", "party_branch", 5.5, {"delivery": 2.5, "door_to_door": 1.5, "gate_shift": 1.5}, 1),
        (None, None, 1.0, {"gate_shift": 1.0}, 1)]

    # -- a visit, and the vulnerable list: never contacted first, a page at a time ----------------------
    await li.ok("logistics", "record_visit", NANGONG, household=people["h1"], outcome="well", volunteer="vol-1")
    first = await li.query("logistics.vulnerable", community=NANGONG, limit=1)
    [never] = first["residents"]
    assert (never["resident"], never["vulnerabilities"], never["last_contact"], never["days_without_contact"]) == (
        people["r2"], ["limited_mobility"], None, None)
    assert never["display_name"] == "王*伟" and first["next"]
    rest = await li.query("logistics.vulnerable", community=NANGONG, limit=1, after=first["next"])
    [visited] = rest["residents"]
    assert (visited["resident"], visited["last_contact"], visited["days_without_contact"]) == (
        people["r1"], "visit", 0)
    assert rest["next"] is None  # the flagged residents only, and only Nangong's

    # -- the board counts the orders and each team's hours of the day -----------------------------------
    async def board():
        reply = await li.query("community", community=NANGONG, on=today)
        return reply if reply.get("volunteer_hours_today", {}).get("(none)") else None
    shown = await eventually(board, what="the board")
    assert (shown["group_orders_open"], shown["group_orders_delivered_today"]) == (1, 2)
    assert shown["volunteer_hours_today"] == {"(none)": 1.0, "party-branch-3": 5.5}
    assert shown["figures"]["volunteer_minutes.party-branch-3"] == 330

    # -- bad input and another committee's staff: a clear error, and nothing written ---------------------
    before = await written(db, nc)
    bad = [
        (("place_group_order", dict(community=NANGONG, compound="nangong-1", supplier="call 13800138000",
                                    items=[{"item": "eggs", "qty": 1}], households=1)), "invalid", "supplier"),
        (("place_group_order", dict(community=NANGONG, compound="nangong-9", supplier="盒马鲜生",
                                    items=[{"item": "eggs", "qty": 1}], households=1)), "not_found", "compound"),
        (("record_group_order_delivered", dict(order=order, gate="g9")), "rejected", "already_delivered"),
        (("record_group_order_delivered", dict(order="o-meat", gate="g2")), "rejected", "already_delivered"),
        (("record_group_order_delivered", dict(order="o-nothing", gate="g1")), "not_found", "order"),
        (("hand_out_group_order", dict(order="o-meat", building="b9", households=1)), "not_found", "building"),
        (("hand_out_group_order", dict(order="o-meat", building="b1", households=0)), "invalid", "households"),
        (("register_volunteer", dict(volunteer=ZHANG, community=NANGONG, team="t", unit_kind="army")),
         "invalid", "unit_kind"),
        (("register_volunteer", dict(volunteer="张三", community=NANGONG, team="t", unit_kind="resident")),
         "invalid", "volunteer"),
        (("record_volunteer_hours", dict(volunteer="vol-nobody", community=NANGONG, on=today, kind="delivery",
                                         hours=1)), "not_found", "volunteer"),
        (("record_volunteer_hours", dict(volunteer=ZHANG, community=NANGONG, on=str(day(2)), kind="delivery",
                                         hours=1)), "rejected", "future_day"),
        (("record_volunteer_hours", dict(volunteer=ZHANG, community=NANGONG, on=today, kind="delivery",
                                         hours=25)), "invalid", "hours"),
        (("record_volunteer_hours", dict(volunteer=ZHANG, community=NANGONG, on=today, kind="gate_shift",
                                         hours=1)), "invalid", "shift"),
        (("record_visit", dict(household="h-nobody", outcome="well")), "not_found", "household"),
        (("record_visit", dict(household=people["h1"], outcome="fine")), "invalid", "outcome"),
    ]
    for (command, fields), code, detail in bad:
        reply = await li.command("logistics", command, NANGONG, **fields)
        assert not reply["ok"] and reply["error"]["code"] == code, (command, reply)
        assert detail in (reply["error"].get("field"), reply["error"].get("reason")), (command, reply)
    for view, fields, field in (("logistics.group_orders", dict(open="yes"), "open"),
                                ("logistics.volunteer_hours", dict(on=today, to=today), "on"),
                                ("logistics.vulnerable", dict(after="garbage"), "after"),
                                ("logistics.vulnerable", dict(limit=0), "limit")):
        reply = await li.query(view, community=NANGONG, **fields)
        assert reply["error"]["code"] == "invalid" and reply["error"]["field"] == field, (view, reply)
    # Beixin's staff, on their own subject, at Nangong's order, volunteer, household and lists
    forbidden(await zhao.command("logistics", "place_group_order", BEIXIN, community=NANGONG, compound="nangong-1",
                                 supplier="盒马鲜生", items=[{"item": "eggs", "qty": 1}], households=1), NANGONG)
    for command, fields in (("record_group_order_delivered", dict(order="o-meat", gate="g1")),
                            ("hand_out_group_order", dict(order="o-meat", building="b1", households=1)),
                            ("register_volunteer", dict(volunteer=ZHANG, community=BEIXIN, team="t",
                                                        unit_kind="resident")),
                            ("record_volunteer_hours", dict(volunteer=ZHANG, community=BEIXIN, on=today,
                                                            kind="delivery", hours=1)),
                            ("record_visit", dict(household=people["h1"], outcome="well"))):
        forbidden(await zhao.command("logistics", command, BEIXIN, **fields), NANGONG)
    for view in ("logistics.group_orders", "logistics.volunteer_hours", "logistics.vulnerable"):
        forbidden(await zhao.query(view, community=NANGONG), NANGONG)
    assert await written(db, nc) == before
    # ... while Beixin's own list is theirs to read
    theirs = await zhao.query("logistics.vulnerable", community=BEIXIN)
    assert [r["resident"] for r in theirs["residents"]] == [people["rb"]]
