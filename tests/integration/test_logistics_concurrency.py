"""Mask vouchers under concurrency, on real NATS and PostgreSQL: a voucher redeemed twice at the same
moment is redeemed once; 200 redemptions against less stock never take it below zero; and the same
holds across two replicas of the service sharing one database."""
from __future__ import annotations

import asyncio
import collections
import json

import pytest

from services.logistics.commands import RedeemVoucher
from tests.support.bus import connect
from tests.support.logistics import compound, household, known, logistics, publish, rows
from tests.support.cordon import COMMUNITY, Client

pytestmark = pytest.mark.integration

HOUSEHOLDS = [f"h-{i}" for i in range(20)]


async def setup(nats_url: str, host, client: Client, vouchers_per_household: int, masks: int) -> list[str]:
    """20 households with vouchers of one mask each, and ``masks`` masks in stock."""
    await known(host, HOUSEHOLDS)

    async def reserve(h: str) -> list[dict]:  # one household's vouchers one after another
        return [await client.ok("reserve_masks", community=COMMUNITY, household=h, qty=1)
                for _ in range(vouchers_per_household)]
    replies = [r for rs in await asyncio.gather(*[reserve(h) for h in HOUSEHOLDS]) for r in rs]
    if masks:
        await client.ok("receive_stock", community=COMMUNITY, items=[{"item": "masks", "qty": masks}],
                        source="allocation")
    return [r["voucher"] for r in replies]


async def seed(nats_url: str) -> None:
    await publish(nats_url, [compound()] + [e for h in HOUSEHOLDS for e in household(h)])


def outcomes(replies: list[dict]) -> collections.Counter:
    return collections.Counter("ok" if r["ok"] else r["error"].get("reason") or r["error"]["code"] for r in replies)


async def stock_trail(pg_dsn: str) -> list[int]:
    """on_hand after each masks change, in the order the record holds them."""
    found = await rows(pg_dsn, "SELECT envelope FROM logistics.events WHERE type IN ('StockReceived', "
                               "'StockConsumed') ORDER BY position")
    return [line["on_hand"] for r in found for line in json.loads(r["envelope"])["data"]["items"]]


async def on_hand(pg_dsn: str) -> int:
    [row] = await rows(pg_dsn, "SELECT on_hand FROM logistics.stock WHERE item = 'masks'")
    return row["on_hand"]


async def test_two_redemptions_of_one_voucher_at_the_same_moment_one_wins(nats_url, pg_dsn):
    await seed(nats_url)
    async with logistics(nats_url, pg_dsn, daily_interval_s=3600) as host:
        nc = await connect(nats_url)
        client = Client(nc, service="logistics")
        [voucher, *_] = await setup(nats_url, host, client, 1, masks=5)
        replies = await asyncio.gather(*[client.send("redeem_voucher", voucher=voucher) for _ in range(2)])
        await nc.close()
    assert outcomes(replies) == {"ok": 1, "already_redeemed": 1}
    [loser] = [r for r in replies if not r["ok"]]
    assert loser["error"]["code"] == "rejected" and "already redeemed" in loser["error"]["message"]
    assert await on_hand(pg_dsn) == 4
    assert len(await rows(pg_dsn, "SELECT 1 FROM logistics.events WHERE type = 'VoucherRedeemed'")) == 1


async def test_200_concurrent_redemptions_never_take_stock_below_zero(nats_url, pg_dsn):
    await seed(nats_url)
    async with logistics(nats_url, pg_dsn, daily_interval_s=3600) as host:
        nc = await connect(nats_url)
        client = Client(nc, service="logistics")
        vouchers = await setup(nats_url, host, client, 10, masks=150)
        assert len(vouchers) == 200
        replies = await asyncio.gather(*[client.send("redeem_voucher", voucher=v) for v in vouchers])
        await nc.close()
    assert outcomes(replies) == {"ok": 150, "out_of_stock": 50}
    for r in replies:
        if not r["ok"]:
            assert "out of masks" in r["error"]["message"] and r["error"]["field"] == "voucher"
    assert await on_hand(pg_dsn) == 0
    assert await stock_trail(pg_dsn) == [150, *range(149, -1, -1)]  # one at a time, down to zero
    assert sorted(r["on_hand"] for r in replies if r["ok"]) == list(range(150))


def redeem(name: str, host, voucher: str):
    return host.execute("redeem_voucher", RedeemVoucher(command_id=f"{name}-{voucher}", actor="staff:li-wei",
                                                        voucher=voucher))


async def test_across_two_replicas_a_voucher_is_redeemed_once(nats_url, pg_dsn):
    await seed(nats_url)
    async with logistics(nats_url, pg_dsn, daily_interval_s=3600) as one, \
            logistics(nats_url, pg_dsn, daily_interval_s=3600) as two:
        nc = await connect(nats_url)
        vouchers = await setup(nats_url, one, Client(nc, service="logistics"), 5, masks=60)
        await nc.close()
        # Every voucher redeemed by both replicas at the same moment, each with its own command id.
        replies = await asyncio.gather(*[redeem("one", one, v) for v in vouchers],
                                       *[redeem("two", two, v) for v in reversed(vouchers)])
    # Each voucher that got masks was refused to the other replica as redeemed; each one that did
    # not was out of stock for both.
    assert outcomes(replies) == {"ok": 60, "already_redeemed": 60, "out_of_stock": 80}
    redeemed = await rows(pg_dsn, "SELECT envelope FROM logistics.events WHERE type = 'VoucherRedeemed'")
    assert len(redeemed) == 60 == len({json.loads(r["envelope"])["data"]["voucher"] for r in redeemed})
    assert await on_hand(pg_dsn) == 0


async def test_across_two_replicas_each_redemption_decides_on_the_one_before(nats_url, pg_dsn):
    await seed(nats_url)
    async with logistics(nats_url, pg_dsn, daily_interval_s=3600) as one, \
            logistics(nats_url, pg_dsn, daily_interval_s=3600) as two:
        nc = await connect(nats_url)
        vouchers = await setup(nats_url, one, Client(nc, service="logistics"), 5, masks=100)
        await nc.close()
        # Disjoint vouchers (different households, so different streams): only the stock is shared,
        # and there is exactly enough. Without the stock row lock both replicas would read 100 and
        # report the same on_hand figures (the CHECK alone would not notice: the sum is right).
        half = len(vouchers) // 2
        replies = await asyncio.gather(*[redeem("one", one, v) for v in vouchers[:half]],
                                       *[redeem("two", two, v) for v in vouchers[half:]])
    assert outcomes(replies) == {"ok": 100}
    assert await on_hand(pg_dsn) == 0
    assert await stock_trail(pg_dsn) == [100, *range(99, -1, -1)]
    assert sorted(r["on_hand"] for r in replies) == list(range(100))
