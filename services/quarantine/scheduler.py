"""The time-driven work of the quarantine service, run as a background task of the service:

- once a day's check-in hour has passed, CheckinMissed for every case that owes that day's
  check-in and has none (``record_missed_checkins``, one command per chunk of 1,000 cases, four in
  flight; the service gives that command four writers of its own, so chunks are decided while
  others commit — 100,000 marks in ~4.2 s on the 2-core machine, ``bench/quarantine.py``);
- a monitoring case whose last day has passed is closed (``release_case`` on its last day).
- with ``CORDON_AUTO_RELEASE`` on, a home case whose planned last day is today and whose last
  check-ins were normal is released (``release_case``, by ``system:auto-release``; the rule is
  :mod:`services.quarantine.autorelease`).

Time is ``host.clock`` (tests inject one and run 21 days in milliseconds). Everything goes through
the service's own commands with ids derived from the day and the cases, and the cases to act on
are found set-based in ``quarantine.cases`` with keyset pagination (flat memory). So a sweep that
is interrupted, or repeated after a restart, emits nothing twice: at most one CheckinMissed per
case and day is also what the day's stream key allows. ``quarantine.sweeps`` remembers the days
finished; after downtime the scheduler catches up at most ``catchup_days`` days.
"""
from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from datetime import date, datetime, timedelta

import msgspec

from services.quarantine import autorelease, domain, tables
from services.quarantine.commands import RecordMissedCheckins, ReleaseCase
from services.quarantine.config import Config
from shared import log as logging
from shared import tasks

log = logging.get("quarantine.scheduler")
ACTOR = "system:checkin-scheduler"


class SweepFailed(Exception):
    pass


class _MissedReply(msgspec.Struct):
    ok: bool
    missed: int = 0
    error: dict | None = None


_missed_reply = msgspec.json.Decoder(_MissedReply)


def days_due(last_swept: date | None, now: datetime, config: Config, catchup_days: int) -> list[date]:
    """The days whose check-in hour has passed and that are not swept yet, oldest first: on a
    first start only the latest such day, after downtime at most ``catchup_days`` of them."""
    end = config.day(now) - timedelta(days=0 if config.past_checkin_hour(now) else 1)
    start = end if last_swept is None else max(last_swept + timedelta(days=1),
                                              end - timedelta(days=catchup_days - 1))
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


class Scheduler:
    def __init__(self, host, config: Config, *, chunk: int | None = None, in_flight: int = 4,
                 catchup_days: int = 2):
        self.host = host
        self.config = config
        #: Cases per record_missed_checkins: the configured sweep chunk unless given (tests, bench).
        self.chunk = config.sweep_chunk if chunk is None else chunk
        self.in_flight = in_flight
        self.catchup_days = catchup_days

    async def run(self, interval: float) -> None:
        await tasks.every(interval, self.tick, log, "scheduler.tick_failed")

    async def tick(self) -> dict:
        """Do what is due at ``host.clock()``; returns what was done."""
        now = self.host.clock()
        closed = await self.close_ended_monitoring(now)
        released = await self.auto_release(now)
        missed = {day.isoformat(): await self.sweep(day, now) for day in await self.days_to_sweep(now)}
        return {"closed": closed, "released": released, "missed": missed}

    async def days_to_sweep(self, now: datetime) -> list[date]:
        async with self.host.pool.acquire() as conn:
            last = await conn.fetchval("SELECT max(day) FROM quarantine.sweeps")
        return days_due(last, now, self.config, self.catchup_days)

    async def sweep(self, day: date, now: datetime) -> int:
        """CheckinMissed on ``day`` for every case due and silent; returns how many."""
        missed, cursor, pending = 0, "", set()
        try:
            while True:
                async with self.host.pool.acquire() as conn:
                    rows = await conn.fetch(tables.DUE_WITHOUT_CHECKIN, day, cursor, self.chunk)
                if rows:
                    cursor = rows[-1][0]
                    pending.add(asyncio.create_task(self._missed(day, [r[0] for r in rows], now)))
                if pending and (len(pending) >= self.in_flight or not rows):
                    # Keep a few chunks in flight: the command runtime commits them together.
                    done, pending = await asyncio.wait(
                        pending, return_when=asyncio.FIRST_COMPLETED if rows else asyncio.ALL_COMPLETED)
                    missed += sum(task.result() for task in done)  # a failed chunk fails the sweep
                if not rows and not pending:
                    break
        finally:
            await asyncio.gather(*pending, return_exceptions=True)
        async with self.host.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO quarantine.sweeps (day, missed, swept_at) VALUES ($1, $2, $3) "
                "ON CONFLICT (day) DO UPDATE SET missed = quarantine.sweeps.missed + $2, swept_at = $3",
                day, missed, now)
        log.info("scheduler.swept", day=day.isoformat(), missed=missed)
        return missed

    async def _missed(self, day: date, cases: list[str], now: datetime) -> int:
        digest = hashlib.sha1("\n".join(cases).encode()).hexdigest()[:20]
        cmd = RecordMissedCheckins(command_id=f"missed:{day}:{digest}", actor=ACTOR, occurred_at=now,
                                   on=day, cases=cases)
        reply = _missed_reply.decode(await self.host.runtime.execute("record_missed_checkins", cmd, internal=True))
        if not reply.ok:
            raise SweepFailed(f"record_missed_checkins for {day}: {reply.error}")
        return reply.missed

    async def close_ended_monitoring(self, now: datetime) -> int:
        """Close every monitoring case whose last day is before today, on that last day."""
        today, cursor, closed = self.config.day(now), "", 0
        while True:
            async with self.host.pool.acquire() as conn:
                rows = await conn.fetch(tables.MONITORING_ENDED, today, cursor, self.chunk)
            if not rows:
                return closed
            cursor = rows[-1][0]
            replies = await asyncio.gather(*(self.host.execute("release_case", ReleaseCase(
                command_id=f"close:{r['case_id']}", actor=ACTOR, occurred_at=now, case=r["case_id"],
                on=r["ends_on"])) for r in rows))
            for row, reply in zip(rows, replies):
                if reply["ok"]:
                    closed += 1
                else:
                    log.warning("scheduler.close_refused", case=row["case_id"], error=reply["error"])

    async def auto_release(self, now: datetime) -> int:
        """With the policy on, release every home case whose planned last day is today and whose last
        check-ins were normal; returns how many. One command id per case and day: a tick that runs
        again, or a second instance, releases nothing twice."""
        if not self.config.auto_release:
            return 0
        today, cursor, released = self.config.day(now), "", 0
        while True:
            async with self.host.pool.acquire() as conn:
                rows = await conn.fetch(tables.HOME_ENDING, today, cursor, self.chunk)
                if not rows:
                    return released
                cases = [tables.case_of_row(r) for r in rows]
                days = await self._checkin_days(conn, cases)
            cursor = rows[-1][0]
            due = [c for c in cases if autorelease.leave_to_staff(c, days[c.case], today, self.config) is None]
            replies = await asyncio.gather(*(self.host.execute("release_case", ReleaseCase(
                command_id=f"auto-release:{c.case}:{today}", actor=autorelease.ACTOR, occurred_at=now,
                case=c.case, on=today)) for c in due))
            for case, reply in zip(due, replies):
                if reply["ok"]:
                    released += 1
                    log.info("scheduler.auto_released", case=case.case, on=today.isoformat())
                else:
                    log.warning("scheduler.auto_release_refused", case=case.case, error=reply["error"])

    async def _checkin_days(self, conn, cases: list[domain.Case]) -> dict[str, dict]:
        """case id -> {day: CheckinDay} over the policy's window, from the days' streams."""
        streams = {domain.day_stream(c.case, d): (c.case, d) for c in cases
                   for d in autorelease.window(c, self.config)}
        types: dict[tuple, set[str]] = defaultdict(set)
        for stream_id, type_ in await conn.fetch(tables.TYPES_IN_STREAMS, list(streams)):
            types[streams[stream_id]].add(type_)
        days: dict[str, dict] = {c.case: {} for c in cases}
        for (case_id, day), held in types.items():
            days[case_id][day] = autorelease.CheckinDay.of(held)
        return days


def background(config: Config):
    """The ServiceSpec background task: the scheduler, ticking every ``config.scheduler_interval_s``."""

    async def checkin_scheduler(host) -> None:
        await Scheduler(host, config).run(config.scheduler_interval_s)

    checkin_scheduler.chunk = config.sweep_chunk  # what it was set to, for the operator's checks and tests

    return checkin_scheduler
