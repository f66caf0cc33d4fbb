"""The retention of residents: once a city day, the registry shreds the personal data of residents
who moved out more than ``CORDON_RESIDENT_RETENTION_DAYS`` ago and whose quarantine cases are all
closed (Sara Alert's purge after inactivity; issue 16).

A background task of the registry, on ``host.clock`` (tests inject one). It finds the residents
due in its own tables (``registry.residents.moved_out_at``, the copy of the quarantine's cases
``registry.q_cases``: :mod:`services.registry.copies`), keyset-paginated by community, and sends
them through the registry's own command path: ``apply_retention``, one community and at most
:data:`~services.registry.commands.MAX_RETENTION` residents a command, which decides again in its
transaction, deletes each one's data key, empties their sealed data and records a ResidentErased
each (``legal_basis`` "retention: …") and one RetentionApplied with the count, never who. The day
is then noted in ``registry.retention_runs`` (the day, the cut-off, how many) and not run again.

Idempotent: a resident erased is no longer due, a command sent again with the same id (derived
from the day, the community and the residents) gets its stored reply, and a run cut short is
run again on the next tick; nobody is shredded twice.
"""
from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta

from services.registry import tables
from services.registry.commands import MAX_RETENTION, ApplyRetention
from services.registry.config import Config
from shared import log as logging
from shared import tasks

log = logging.get("registry.retention")
ACTOR = "system:retention"


class RetentionFailed(Exception):
    pass


class Retention:
    """The daily run on ``host`` (its pool, clock and runtime) under ``config``."""

    def __init__(self, host, config: Config, *, chunk: int = MAX_RETENTION):
        self.host = host
        self.config = config
        self.chunk = chunk

    async def run(self, interval: float) -> None:
        await tasks.every(interval, self.tick, log, "retention.tick_failed")

    async def tick(self) -> int | None:
        """Run today's retention unless done already; how many were shredded (None: done before)."""
        now = self.host.clock()
        today = self.config.day(now)
        if await self.host.pool.fetchval("SELECT 1 FROM registry.retention_runs WHERE day = $1", today):
            return None
        return await self.apply(today, now)

    def cutoff(self, now: datetime) -> datetime:
        """Residents who moved out before this instant are due."""
        return now - timedelta(days=self.config.resident_retention_days)

    async def apply(self, today: date, now: datetime) -> int:
        """Shred every resident due at ``now``; note the day; how many were shredded."""
        before, shredded, cursor = self.cutoff(now), 0, ("", "")
        while rows := await self.host.pool.fetch(tables.DUE_FOR_RETENTION, before, *cursor, self.chunk):
            cursor = (rows[-1]["community"], rows[-1]["resident"])
            for community, residents in _by_community(rows).items():
                shredded += await self._shred(today, now, before, community, residents)
        await self.host.pool.execute(
            "INSERT INTO registry.retention_runs (day, before, shredded, applied_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (day) DO UPDATE SET shredded = registry.retention_runs.shredded + $3, applied_at = $4",
            today, before, shredded, now)
        log.info("retention.applied", kind="residents", day=today.isoformat(), before=before.isoformat(),
                 count=shredded)
        return shredded

    async def _shred(self, today: date, now: datetime, before: datetime, community: str, residents: list[str]) -> int:
        digest = hashlib.sha1("\n".join(residents).encode()).hexdigest()[:20]
        cmd = ApplyRetention(command_id=f"retention:{today}:{community}:{digest}", actor=ACTOR, occurred_at=now,
                             community=community, before=before, residents=residents)
        reply = await self.host.execute("apply_retention", cmd)
        if not reply["ok"]:
            raise RetentionFailed(f"apply_retention in {community}: {reply['error']}")
        return reply["shredded"]


def _by_community(rows) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for row in rows:
        grouped.setdefault(row["community"], []).append(row["resident"])
    return grouped


def background(config: Config):
    """The ServiceSpec background task: the retention, looking at the clock every
    ``config.retention_interval_s``."""

    async def resident_retention(host) -> None:
        await Retention(host, config).run(config.retention_interval_s)

    return resident_retention
