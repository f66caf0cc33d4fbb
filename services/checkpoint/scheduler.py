"""The checkpoint's work on the clock: the daily retention of visitors' personal data.

Once a day (the city's day, ``Config.zone``), the data of every visit that came before the start of
the day ``tracing_days`` ago (``Config.shred_before``) is shredded: its data key deleted, its
sealed fields nulled, a ``VisitorDataShredded`` with the counts per community recorded. It goes
through the checkpoint's own command ``shred_visitor_data``, so it is on the record like any
other act, with a command id of the day: sent again the same day (a tick after a restart, two
replicas), it is answered from the stored reply and shreds nothing twice. After downtime, the
day's run covers every older day too (it shreds whatever is before the window).

Time is ``host.clock`` (tests inject one).
"""
from __future__ import annotations

from datetime import date, datetime

from services.checkpoint.commands import ShredVisitorData
from services.checkpoint.config import Config
from shared import log as logging
from shared import tasks

log = logging.get("checkpoint.retention")
ACTOR = "system:visitor-retention"


class RetentionFailed(Exception):
    pass


class Retention:
    def __init__(self, host, config: Config):
        self.host = host
        self.config = config
        #: The last day whose run was answered (in memory: a restart asks again, and is answered
        #: from the stored reply).
        self.done: date | None = None

    async def run(self, interval: float) -> None:
        await tasks.every(interval, self.tick, log, "retention.tick_failed")

    async def tick(self) -> int | None:
        """Shred what is due at ``host.clock()`` unless today's run is done; how many visits' data
        the day's run shredded (None: done already)."""
        now = self.host.clock()
        today = now.astimezone(self.config.zone).date()
        if self.done == today:
            return None
        shredded = await self.shred(today, now)
        self.done = today
        return shredded

    async def shred(self, today: date, now: datetime) -> int:
        before = self.config.shred_before(now)
        cmd = ShredVisitorData(command_id=f"shred-visitors:{today.isoformat()}", actor=ACTOR, occurred_at=now,
                               before=before)
        reply = await self.host.execute("shred_visitor_data", cmd)
        if not reply.get("ok"):
            raise RetentionFailed(f"shred_visitor_data for {today}: {reply.get('error')}")
        log.info("retention.shredded", day=today.isoformat(), before=before.isoformat(), visitors=reply["visitors"])
        return reply["visitors"]


def background(config: Config):
    """The ServiceSpec background task: the retention, looking at the clock every
    ``config.retention_interval_s``."""

    async def visitor_retention(host) -> None:
        await Retention(host, config).run(config.retention_interval_s)

    return visitor_retention
