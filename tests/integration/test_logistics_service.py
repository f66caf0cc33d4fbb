"""The logistics service end to end on real NATS and PostgreSQL: requests in priority order, stock
that never goes negative, deliveries, a welfare check on the committee's feed at once, vouchers."""
from __future__ import annotations

import asyncio
import json

import pytest

from tests.support.bus import connect
from tests.support.logistics import compound, counts, household, known, logistics, publish
from tests.support.cordon import COMMUNITY, Client, read_stream

pytestmark = pytest.mark.integration

VEG = "vegetable-pack"


@pytest.fixture
async def world(nats_url, pg_dsn):
    """A running logistics service whose directory knows five households of one compound."""
    await publish(nats_url, [
        compound(), *household("h-plain"), *household("h-alone", vulnerabilities=["elderly_alone"]),
        *household("h-device", vulnerabilities=["medical_device"]), *household("h-chronic", residents=2,
                                                                               vulnerabilities=["chronic_illness"]),
        *household("h-mobility", building="b2", vulnerabilities=["limited_mobility"]),
    ])
    async with logistics(nats_url, pg_dsn, daily_interval_s=3600) as host:
        await known(host, ["h-plain", "h-alone", "h-device", "h-chronic", "h-mobility"])
        nc = await connect(nats_url)
        yield host, Client(nc, service="logistics"), nc
        await nc.close()


async def query(nc, view: str, **fields) -> dict:
    return json.loads((await nc.request(f"cordon.qry.{view}", json.dumps(fields).encode(), timeout=5)).data)


async def request(client: Client, h: str, qty: int = 1, kind: str = "food", item: str = VEG) -> dict:
    return await client.ok("request_supplies", community=COMMUNITY, household=h, kind=kind,
                           items=[{"item": item, "qty": qty}])


async def test_the_committee_sees_open_requests_in_priority_order_with_what_is_missing(world):
    _, client, nc = world
    ids = {}
    for h in ("h-plain", "h-chronic", "h-mobility", "h-alone", "h-device"):
        ids[h] = (await request(client, h, qty=2))["request"]
    medicine = (await request(client, "h-plain", kind="medicine", item="medicine"))["request"]
    reply = await client.ok("receive_stock", community=COMMUNITY, items=[{"item": VEG, "qty": 5}],
                            source="donation", **{"from": "Hema supermarket"})
    assert reply["events"][0]["data"]["items"] == [{"item": VEG, "qty": 5, "on_hand": 5}]
    board = await query(nc, "logistics.requests", community=COMMUNITY)
    order = [r["request"] for r in board["requests"]]
    assert order == [ids["h-alone"], ids["h-mobility"], ids["h-device"], ids["h-chronic"], medicine, ids["h-plain"]]
    missing = {r["household"] + ":" + r["kind"]: r["missing"] for r in board["requests"]}
    assert missing["h-alone:food"] == [] and missing["h-mobility:food"] == []
    assert missing["h-device:food"] == [{"item": VEG, "need": 2, "missing": 1}]  # 5 - 2 - 2 = 1 left
    assert missing["h-plain:medicine"] == []  # a refill is fetched from the pharmacy
    # The address stays in the registry (HouseholdRegistered schema 2): the board names the household.
    assert board["requests"][0]["address"] is None and board["on_hand"] == {VEG: 5}


async def test_a_request_the_store_cannot_meet_stays_open_says_why_and_writes_nothing(world, pg_dsn):
    _, client, nc = world
    reply = await request(client, "h-alone", qty=3)
    assert reply["missing"] == [{"item": VEG, "need": 3, "on_hand": 0, "missing": 3}]
    before = await counts(pg_dsn)
    refused = await client.send("assign_delivery", request=reply["request"], volunteer="vol-1")
    assert refused["error"]["code"] == "rejected" and refused["error"]["reason"] == "out_of_stock"
    assert "vegetable-pack needs 3, 0 on hand" in refused["error"]["message"]
    assert await counts(pg_dsn) == before
    [open_request] = (await query(nc, "logistics.requests", community=COMMUNITY))["requests"]
    assert open_request["status"] == "open" and open_request["missing"][0]["missing"] == 3


async def test_a_delivery_from_assignment_to_the_door(world, pg_dsn):
    _, client, nc = world
    await client.ok("receive_stock", community=COMMUNITY, items=[{"item": VEG, "qty": 4}], source="allocation")
    rid = (await request(client, "h-chronic", qty=3))["request"]
    assigned = await client.ok("assign_delivery", request=rid, volunteer="volunteer:zhang-3")
    assert [e["type"] for e in assigned["events"]] == ["DeliveryAssigned", "StockConsumed"]
    assert assigned["events"][1]["data"]["items"] == [{"item": VEG, "qty": 3, "on_hand": 1}]
    carried = await query(nc, "logistics.assignments", volunteer="volunteer:zhang-3")
    assert [(a["request"], a["address"], a["items"]) for a in carried["assignments"]] == [
        (rid, None, [{"item": VEG, "qty": 3}])]  # the door: from the registry's read path (issue 16)
    done = await client.ok("record_delivery", request=rid, outcome="delivered")
    assert done["events"][0]["type"] == "DeliveryCompleted"
    assert (await query(nc, "logistics.assignments", volunteer="volunteer:zhang-3"))["assignments"] == []
    assert (await query(nc, "logistics.requests", community=COMMUNITY))["requests"] == []
    assert (await query(nc, "logistics.stock", community=COMMUNITY))["on_hand"] == {VEG: 1}


async def test_no_answer_at_a_vulnerable_household_puts_a_welfare_check_on_the_committees_feed(
        world, pg_dsn, nats_url):
    _, client, nc = world
    feed = await nc.subscribe(f"cordon.evt.{COMMUNITY}.>")  # what a committee's client subscribes to
    await client.ok("receive_stock", community=COMMUNITY, items=[{"item": VEG, "qty": 1}], source="donation")
    rid = (await request(client, "h-alone"))["request"]
    await client.ok("assign_delivery", request=rid, volunteer="vol-7")
    failed = await client.ok("record_delivery", request=rid, outcome="no_answer")
    assert [e["type"] for e in failed["events"]] == ["DeliveryFailed", "StockReturned", "WelfareCheckRaised"]
    check = failed["events"][2]
    assert check["stream_id"] == "welfare:h-alone"
    assert check["data"]["vulnerabilities"] == ["elderly_alone"] and check["data"]["request"] == rid
    seen = {}
    while "WelfareCheckRaised" not in seen:
        msg = await feed.next_msg(timeout=5)
        seen[msg.subject.rsplit(".", 1)[1]] = msg
    assert seen["WelfareCheckRaised"].subject == f"cordon.evt.{COMMUNITY}.logistics.WelfareCheckRaised"
    assert json.loads(seen["WelfareCheckRaised"].data)["event_id"] == check["event_id"]
    [open_check] = (await query(nc, "logistics.welfare", community=COMMUNITY))["checks"]
    assert (open_check["check"], open_check["household"]) == ("h-alone-w1", "h-alone")
    # The goods came back and the request is open for another attempt.
    assert (await query(nc, "logistics.stock", community=COMMUNITY))["on_hand"] == {VEG: 1}
    [again] = (await query(nc, "logistics.requests", community=COMMUNITY))["requests"]
    assert (again["status"], again["attempts"]) == ("open", 1)
    resolved = await client.ok("resolve_welfare_check", household="h-alone", outcome="hospitalized",
                               note="found after a stroke; ambulance called")
    assert resolved["events"][0]["data"]["check"] == "h-alone-w1"
    assert (await query(nc, "logistics.welfare", community=COMMUNITY))["checks"] == []
    await feed.unsubscribe()
    on_stream = [m.subject.rsplit(".", 1)[1] for m in await read_stream(nats_url, expect=20)
                 if ".logistics." in m.subject]  # 12 registry events, then 8 of logistics
    assert on_stream.count("WelfareCheckRaised") == 1 and on_stream[-1] == "WelfareCheckResolved"


async def test_no_answer_at_a_household_nobody_flagged_raises_no_check(world):
    _, client, nc = world
    await client.ok("receive_stock", community=COMMUNITY, items=[{"item": VEG, "qty": 1}], source="purchase")
    rid = (await request(client, "h-plain"))["request"]
    await client.ok("assign_delivery", request=rid, volunteer="vol-7")
    failed = await client.ok("record_delivery", request=rid, outcome="no_answer")
    assert [e["type"] for e in failed["events"]] == ["DeliveryFailed", "StockReturned"]
    assert (await query(nc, "logistics.welfare", community=COMMUNITY))["checks"] == []


async def test_masks_are_reserved_with_numbered_vouchers_up_to_the_limit(world, pg_dsn):
    _, client, _ = world
    first = await client.ok("reserve_masks", community=COMMUNITY, household="h-plain", qty=6)
    second = await client.ok("reserve_masks", community=COMMUNITY, household="h-plain", qty=4)
    assert first["number"] != second["number"] and first["voucher"] == first["number"]
    assert second["events"][0]["data"]["reserved_in_period"] == 10
    before = await counts(pg_dsn)
    over = await client.send("reserve_masks", community=COMMUNITY, household="h-plain", qty=1)
    assert over["error"]["reason"] == "limit_reached"
    assert await counts(pg_dsn) == before
    chosen = await client.ok("reserve_masks", community=COMMUNITY, household="h-alone", qty=2, voucher="v-alone-1")
    assert chosen["voucher"] == "v-alone-1" and chosen["number"].isdigit()
    taken = await client.send("reserve_masks", community=COMMUNITY, household="h-device", qty=2, voucher="v-alone-1")
    assert taken["error"]["code"] == "conflict" and taken["error"]["field"] == "voucher"
    await client.ok("receive_stock", community=COMMUNITY, items=[{"item": "masks", "qty": 7}], source="allocation")
    redeemed = await client.ok("redeem_voucher", voucher=first["voucher"])
    assert redeemed["on_hand"] == 1 and [e["type"] for e in redeemed["events"]] == ["VoucherRedeemed", "StockConsumed"]
    short = await client.send("redeem_voucher", voucher="v-alone-1")
    assert short["error"]["reason"] == "out_of_stock"


async def test_a_repeated_command_id_answers_the_same_and_moves_no_stock_twice(world, pg_dsn):
    _, client, nc = world
    fields = dict(command_id="receive-1", community=COMMUNITY, items=[{"item": "masks", "qty": 100}],
                  source="donation")
    first, second = await asyncio.gather(client.send("receive_stock", **fields), client.send("receive_stock", **fields))
    assert first == second and first["ok"]
    assert (await query(nc, "logistics.stock", community=COMMUNITY))["on_hand"] == {"masks": 100}
