"""The daily food of confined households: each day, one request per household with a daily supply.

A background task looks every ``daily_interval_s`` seconds (``CORDON_DAILY_INTERVAL_S``) for active
plans whose last daily request is older than today (in the city's zone, ``CORDON_TIMEZONE``, by
``host.clock``, which tests replace) and raises the day's request, the most vulnerable households
first. The command id ``daily:<household>:<date>``
and the request id derived from household and date make it idempotent: a restart, two replicas
or a second tick on the same day write nothing new.
"""
from __future__ import annotations

import asyncio
from datetime import date

from services.logistics import tables
from services.logistics.commands import RaiseDailyRequest
from services.logistics.config import Config
from services.logistics.reactions import ACTOR, feed_late_households
from shared import log as logging
from shared import tasks

log = logging.get("logistics.scheduler")

CHUNK = 500


async def raise_due(host, config: Config) -> dict[str, int]:
    """Raise today's request for every plan that has none yet; count the replies by outcome."""
    await feed_late_households(host)
    now = host.clock()
    today: date = config.day(now)
    async with host.pool.acquire() as conn:
        households = [r["household"] for r in await conn.fetch(tables.DUE_PLANS, today)]
    counts: dict[str, int] = {}
    for i in range(0, len(households), CHUNK):
        commands = [RaiseDailyRequest(command_id=f"daily:{h}:{today.isoformat()}", actor=ACTOR,
                                      occurred_at=now, household=h, on=today)
                    for h in households[i:i + CHUNK]]
        replies = await asyncio.gather(*(host.execute("raise_daily_request", c) for c in commands))
        for reply in replies:
            key = "raised" if reply["ok"] else reply["error"].get("reason") or reply["error"]["code"]
            counts[key] = counts.get(key, 0) + 1
    if counts:
        log.info("daily.raised", on=today.isoformat(), **counts)
    return counts


def daily_requests(config: Config):
    """The background task for ``ServiceSpec.background``: every ``config.daily_interval_s``."""

    async def daily_requests(host) -> None:
        await tasks.every(config.daily_interval_s, lambda: raise_due(host, config), log, "daily.failed")

    return daily_requests
