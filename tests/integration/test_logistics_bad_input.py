"""Bad input on the logistics subjects, through the wire, against real NATS and PostgreSQL.

A committee's logistics service is running with households in its directory, stock, an open
request, a voucher. Then phones and scripts send what can go wrong: negative and zero quantities,
items not in the catalogue, unknown households, requests and vouchers, a mistyped voucher number,
a phone number in a note, a name where a volunteer id belongs, bytes that are not JSON, payloads
over the limit. Each gets ``{"ok": false, "error": {"code", "message", "field"/"reason"}}`` and
leaves no trace: no event, no stored reply, no row, no stock moved, nothing on the stream. The
queries refuse bad input the same way. Afterwards the service still accepts valid commands.

One service serves the module (its own NATS and database), so each case costs milliseconds.
"""
from __future__ import annotations

import json
import uuid

import pytest

from shared.embedded import ensure_database
from shared.subjects import STREAM
from tests.support.bus import connect, start_secure_nats
from tests.support.logistics import compound, counts, household, known, logistics, publish
from tests.support.cordon import COMMUNITY, Client

pytestmark = pytest.mark.integration

OTHER = "jingan.wanli.other"
VEG = [{"item": "vegetable-pack", "qty": 1}]


@pytest.fixture(scope="module")
async def world(pg_server, tmp_path_factory):
    server = await start_secure_nats(tmp_path_factory.mktemp("nats-logistics-bad"))
    dsn = await ensure_database(pg_server.dsn, f"test_lbad_{uuid.uuid4().hex[:12]}")
    await publish(server.url, [compound(), *household("h-1"), *household("h-2", vulnerabilities=["elderly_alone"])])
    try:
        async with logistics(server.url, dsn, daily_interval_s=3600) as host:
            await known(host, ["h-1", "h-2"])
            nc = await connect(server.url)
            client = Client(nc, service="logistics")
            await client.ok("receive_stock", community=COMMUNITY, items=[{"item": "masks", "qty": 5}],
                            source="donation")
            request = (await client.ok("request_supplies", community=COMMUNITY, household="h-1", kind="food",
                                       items=VEG, request="r-open"))["request"]
            await client.ok("reserve_masks", community=COMMUNITY, household="h-1", qty=2, voucher="v-1")
            yield {"client": client, "nc": nc, "dsn": dsn, "request": request}
            await nc.close()
    finally:
        await server.stop()


def cmd(command: str, **fields) -> tuple[str, bytes]:
    fields.setdefault("command_id", f"bad-{uuid.uuid4()}")
    fields.setdefault("actor", "staff:li-wei")
    return command, json.dumps(fields, ensure_ascii=False).encode()


# (case, (command, payload), expected code, expected field or reason)
CASES = [
    ("negative quantity", cmd("request_supplies", community=COMMUNITY, household="h-1", kind="food",
                              items=[{"item": "rice", "qty": -2}]), "invalid", "items[0].qty"),
    ("zero quantity received", cmd("receive_stock", community=COMMUNITY, items=[{"item": "masks", "qty": 0}],
                                   source="donation"), "invalid", "items[0].qty"),
    ("negative masks reserved", cmd("reserve_masks", community=COMMUNITY, household="h-1", qty=-1),
     "invalid", "qty"),
    ("more masks than the limit", cmd("reserve_masks", community=COMMUNITY, household="h-1", qty=11),
     "invalid", "qty"),
    ("unknown item", cmd("request_supplies", community=COMMUNITY, household="h-1", kind="food",
                         items=[{"item": "lobster", "qty": 1}]), "invalid", "items[0].item"),
    ("unknown item received", cmd("receive_stock", community=COMMUNITY, items=[{"item": "gold", "qty": 1}],
                                  source="donation"), "invalid", "items[0].item"),
    ("medicine into stock", cmd("receive_stock", community=COMMUNITY, items=[{"item": "medicine", "qty": 1}],
                                source="purchase"), "invalid", "items[0].item"),
    ("an item twice", cmd("request_supplies", community=COMMUNITY, household="h-1", kind="food",
                          items=VEG * 2), "invalid", "items[1]"),
    ("no items", cmd("request_supplies", community=COMMUNITY, household="h-1", kind="food", items=[]),
     "invalid", "items"),
    ("unknown household", cmd("request_supplies", community=COMMUNITY, household="h-nobody", kind="food",
                              items=VEG), "not_found", "household"),
    ("household of another community", cmd("request_supplies", community=OTHER, household="h-1", kind="food",
                                            items=VEG), "not_found", "household"),
    ("masks for an unknown household", cmd("reserve_masks", community=COMMUNITY, household="h-nobody", qty=1),
     "not_found", "household"),
    ("unknown voucher", cmd("redeem_voucher", voucher="v-nobody"), "not_found", "voucher"),
    ("voucher number mistyped", cmd("redeem_voucher", voucher="0000019"), "invalid", "voucher"),
    ("printed number chosen by the caller", cmd("reserve_masks", community=COMMUNITY, household="h-1", qty=1,
                                                number="0000018"), "invalid", "number"),
    ("voucher id taken", cmd("reserve_masks", community=COMMUNITY, household="h-2", qty=1, voucher="v-1"),
     "conflict", "voucher"),
    ("unknown request assigned", cmd("assign_delivery", request="r-nobody", volunteer="vol-1"),
     "not_found", "request"),
    ("unknown request recorded", cmd("record_delivery", request="r-nobody", outcome="delivered"),
     "not_found", "request"),
    ("out of stock", cmd("assign_delivery", request="r-open", volunteer="vol-1"), "rejected", "out_of_stock"),
    ("delivery never assigned", cmd("record_delivery", request="r-open", outcome="delivered"),
     "rejected", "not_assigned"),
    ("request id taken", cmd("request_supplies", community=COMMUNITY, household="h-1", kind="food", items=VEG,
                             request="r-open"), "conflict", "request"),
    ("no welfare check open", cmd("resolve_welfare_check", household="h-2", outcome="safe"),
     "rejected", "no_open_check"),
    ("a day without a daily supply", cmd("raise_daily_request", household="h-1", on="2022-04-02"),
     "rejected", "no_daily_supply"),
    ("stopping what never started", cmd("stop_daily_supply", household="h-1", cause="case:c-1"),
     "rejected", "not_started"),
    ("daily supply of an unknown resident", cmd("start_daily_supply", resident="r-nobody", cause="case:c-1"),
     "not_found", "resident"),
    ("a phone number in a note", cmd("request_supplies", community=COMMUNITY, household="h-1", kind="food",
                                     items=VEG, note="call 13800138000"), "invalid", "note"),
    ("a name for a volunteer", cmd("assign_delivery", request="r-open", volunteer="张伟"), "invalid", "volunteer"),
    ("NUL in a note", cmd("cancel_request", request="r-open", note="a\u0000b"), "invalid", "note"),
    ("quoted quantity", cmd("reserve_masks", community=COMMUNITY, household="h-1", qty="2"), "invalid", "qty"),
    ("unknown field", cmd("redeem_voucher", voucher="v-1", qty=1), "invalid", "qty"),
    ("missing field", cmd("assign_delivery", request="r-open"), "invalid", "volunteer"),
    ("unknown kind", cmd("request_supplies", community=COMMUNITY, household="h-1", kind="luxury", items=VEG),
     "invalid", "kind"),
    ("unknown outcome", cmd("record_delivery", request="r-open", outcome="lost"), "invalid", "outcome"),
    ("bad community path", cmd("receive_stock", community="changning", items=VEG, source="donation"),
     "invalid", "community"),
    ("a wildcard in an id", cmd("redeem_voucher", voucher="v.>"), "invalid", "voucher"),
    ("not JSON", ("request_supplies", b"{items: lots}"), "invalid", None),
    ("an array", ("receive_stock", b"[]"), "invalid", None),
    ("nothing", ("redeem_voucher", b""), "invalid", None),
    ("too large", ("request_supplies", b'{"note": "' + b"x" * 70_000 + b'"}'), "too_large", None),
    ("unknown command", ("buy_vegetables", b"{}"), "unknown_command", None),
]


async def stream_messages(nc) -> int:
    return (await nc.jetstream().stream_info(STREAM)).state.messages


@pytest.mark.parametrize("case, sent, code, detail", CASES, ids=[c[0] for c in CASES])
async def test_bad_input_gets_a_clear_error_and_writes_nothing(world, case, sent, code, detail):
    client, nc = world["client"], world["nc"]
    before, on_stream = await counts(world["dsn"]), await stream_messages(nc)
    reply = await client.raw(*sent)
    assert reply["ok"] is False, reply
    error = reply["error"]
    assert error["code"] == code, error
    assert error["message"]
    if detail is not None:
        assert detail in (error.get("field"), error.get("reason")), error
    assert await counts(world["dsn"]) == before
    assert await stream_messages(nc) == on_stream


QUERY_CASES = [
    ("logistics.requests", b'{}', "community"),
    ("logistics.requests", b'{"community": "changning"}', "community"),
    ("logistics.requests", b'{"community": "%s", "limit": 0}' % COMMUNITY.encode(), "limit"),
    ("logistics.requests", b'{"community": "%s", "status": "open"}' % COMMUNITY.encode(), "status"),
    ("logistics.assignments", b'{"volunteer": "Zhang Wei"}', "volunteer"),
    ("logistics.assignments", b'[]', None),
    ("logistics.stock", b'not json', None),
    ("logistics.welfare", b'{"community": 7}', "community"),
]


@pytest.mark.parametrize("view, payload, field", QUERY_CASES)
async def test_bad_queries_are_invalid(world, view, payload, field):
    reply = json.loads((await world["nc"].request(f"cordon.qry.{view}", payload, timeout=5)).data)
    assert reply["ok"] is False and reply["error"]["code"] == "invalid", reply
    if field is not None:
        assert reply["error"]["field"] == field, reply


async def test_after_the_barrage_the_service_still_serves(world):
    client, nc = world["client"], world["nc"]
    await client.ok("receive_stock", community=COMMUNITY, items=VEG, source="donation")
    await client.ok("assign_delivery", request=world["request"], volunteer="vol-1")
    redeemed = await client.ok("redeem_voucher", voucher="v-1")
    assert redeemed["on_hand"] == 3
    board = json.loads((await nc.request("cordon.qry.logistics.requests",
                                         json.dumps({"community": COMMUNITY}).encode())).data)
    assert [(r["request"], r["status"]) for r in board["requests"]] == [(world["request"], "assigned")]
