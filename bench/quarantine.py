#!/usr/bin/env python
"""Quarantine benchmark: daily check-ins end to end, and the scheduler's sweep of 100,000 open cases.

    python bench/quarantine.py [--quick] [--duration S] [--concurrency N] [--rate R] [--cases N]

Starts embedded NATS and PostgreSQL (durable defaults: fsync on, JetStream file storage) in a temp
dir, then measures on this machine, in one run:
  0. raw limits: NATS request/reply to a trivial responder in another process (same concurrency),
     and PostgreSQL single-row autocommit and executemany inserts;
  1. check-ins: the quarantine service in a separate process (as `cordon service` runs it), cases
     opened over NATS, then `record_checkin` requests: (a) closed loop, N outstanding, for S seconds
     — sustained check-ins/s; (b) open loop at a fixed rate — p50/p99 latency measured from the
     *scheduled* send time to the reply (no coordinated omission);
  2. the sweep: in this process, a service host with a clock the bench sets; --cases (100,000)
     cases opened through the service's own commands, 90 % of them checked in today; then the time
     `Scheduler.sweep` takes after the check-in hour (a) with 10 % silent and (b) the next day with
     every case silent (100,000 CheckinMissed) — until every mark is recorded (committed), and
     separately until the relay has them all on JetStream — then (c) the day after again while
     staff record late check-ins at --late-rate (200/s), their latency and errors — and the
     process's peak RSS growth during each
     (flat memory: (b) emits 10x the events of (a) with about the same growth). Compared with the
     raw time to insert as many rows with executemany.
The residents' directory rows (the registry's facts a service keeps locally) are written with COPY
beforehand, as the directory consumer would have. Prints a table, then (last line) one JSON object.
Figures only: nothing is asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import nats  # noqa: E402

from bench import common  # noqa: E402
from bench.common import decode_reply, pct  # noqa: E402
from services.quarantine.app import spec  # noqa: E402
from services.quarantine.commands import OpenCase, RecordCheckin  # noqa: E402
from services.quarantine.config import Config as QuarantineConfig  # noqa: E402
from services.quarantine.scheduler import Scheduler  # noqa: E402
from shared import log as logging  # noqa: E402
from shared.config import Config  # noqa: E402
from shared.embedded import ensure_database  # noqa: E402
from shared.service import ServiceHost  # noqa: E402

COMMUNITY = "changning.chengjiaqiao.nangong"
TARGET_SWEEP_S = 5.0
POLICY = QuarantineConfig(scheduler_interval_s=10**6)  # the sweep phase sweeps by hand
now = time.perf_counter


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def seed_directory(dsn: str, prefix: str, count: int) -> None:
    """The registry's facts as the directory consumer keeps them: one resident per household."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = [(f"{prefix}{i}", f"h-{prefix}{i}", COMMUNITY, "bench-1", f"b{i % 40}", "王*伟", 1950, [], False)
                for i in range(count)]
        await conn.copy_records_to_table("dir_residents", schema_name="quarantine", records=rows)
    finally:
        await conn.close()


async def wait_schema(dsn: str, timeout: float = 60.0) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = now() + timeout
        while not await conn.fetchval("SELECT to_regclass('quarantine.cases') IS NOT NULL"):
            if now() > deadline:
                raise RuntimeError("the quarantine service did not create its tables")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def outbox_drained(dsn: str, timeout: float = 120.0) -> float:
    """Wait until the service's relay has published everything; the time it was seen empty."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = now() + timeout
        while await conn.fetchval("SELECT count(*) FROM quarantine.outbox"):
            if now() > deadline:
                raise RuntimeError("the outbox did not drain")
            await asyncio.sleep(0.02)
        return now()
    finally:
        await conn.close()


# -- raw limits ------------------------------------------------------------------------------


async def echo_answers(url: str, timeout: float = 30.0) -> None:
    """Until the --echo child answers (its start, imports included, takes over a second here)."""
    nc = await common.connect(url)
    try:
        deadline = now() + timeout
        while True:
            try:
                await nc.request("bench.echo", b"", timeout=1)
                return
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                if now() > deadline:
                    raise
                await asyncio.sleep(0.05)
    finally:
        await nc.close()


async def raw_request_reply(url: str, seconds: float, concurrency: int) -> float:
    nc = await common.connect(url)
    try:
        body, done, stop = b"x" * 150, [0], now() + seconds

        async def worker():
            while now() < stop:
                await nc.request("bench.echo", body, timeout=5)
                done[0] += 1

        t0 = now()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done[0] / (now() - t0)
    finally:
        await nc.close()


# -- check-ins over NATS -----------------------------------------------------------------------


class Load:
    def __init__(self, nc, cases: int, days: int, today: date):
        self.nc, self.cases, self.days, self.today = nc, cases, days, today
        self.n, self.errors = 0, {}

    def next_checkin(self) -> bytes:
        """Every (case, day) pair once, so each check-in starts a fresh day stream, as in life."""
        i, self.n = self.n, self.n + 1
        case, back = i % self.cases, (i // self.cases) % self.days
        return json.dumps({"command_id": f"ci-{i}", "actor": "staff:bench", "case": f"bc-{case}",
                           "on": str(self.today - timedelta(days=back)), "temperature_c": 36.4 + (i % 12) / 10,
                           "symptoms": ["cough"] if i % 50 == 0 else []}).encode()

    async def one(self, subject: str, body: bytes, out: list, t_sent: float | None = None) -> None:
        t_sent = t_sent or now()
        try:
            reply = decode_reply((await self.nc.request(subject, body, timeout=10)).data)
        except Exception as exc:
            self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
            return
        if not reply.ok:
            code = (reply.error or {}).get("reason") or (reply.error or {}).get("code", "error")
            self.errors[code] = self.errors.get(code, 0) + 1
            return
        out.append(now() - t_sent)

    async def closed(self, seconds: float, concurrency: int) -> tuple[int, float]:
        out, stop, t0 = [], now() + seconds, now()

        async def worker():
            while now() < stop:
                await self.one("cordon.cmd.quarantine.record_checkin", self.next_checkin(), out)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(out), now() - t0

    async def open(self, seconds: float, rate: float) -> tuple[list[float], float]:
        out, tasks, t0 = [], set(), now() + 0.01
        for i in range(int(seconds * rate)):
            t_sched = t0 + i / rate
            if (delay := t_sched - now()) > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.one("cordon.cmd.quarantine.record_checkin", self.next_checkin(),
                                                out, t_sched))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        t_last = now()
        await asyncio.gather(*list(tasks))
        return out, len(out) / (t_last - t0)


# -- the sweep, in process ---------------------------------------------------------------------


async def bounded(coros, limit: int) -> list:
    """Run coroutine factories with at most ``limit`` in flight; their results in order."""
    results, it = [None] * len(coros), iter(enumerate(coros))

    async def worker():
        for i, make in it:
            results[i] = await make()

    await asyncio.gather(*(worker() for _ in range(limit)))
    return results


async def late_checkins(host, on: date, cases: int, rate: float, stop: asyncio.Event) -> tuple[list[float], int]:
    """record_checkin of ``on`` at a fixed rate until ``stop``, cases spread over all of them (some
    before the sweep reaches them, some after: a late check-in is accepted either way). Seconds
    from the scheduled time to the reply, as the command runtime gives it; and the errors."""
    latencies, refused, pending, start, i = [], [], set(), now(), 0

    async def one(n: int, due: float) -> None:
        reply = await host.execute("record_checkin", RecordCheckin(
            command_id=f"late-{on}-{n}", actor="staff:bench", case=f"sc-{(n * 7919) % cases:06d}", on=on,
            temperature_c=36.6))
        (latencies if reply["ok"] else refused).append(now() - due)

    while not stop.is_set():
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - now()))
        task = asyncio.create_task(one(i, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
        i += 1
    await asyncio.gather(*pending)
    return latencies, len(refused)


async def sweep_phase(r: dict, a, nats_url: str, dsn: str) -> None:
    clock_now = [datetime.combine(date.today(), datetime.min.time(), POLICY.zone) + timedelta(hours=10)]
    host = ServiceHost(spec(POLICY), Config(nats_url=nats_url, pg_dsn=dsn,
                                            nats_creds=os.environ.get("CORDON_NATS_CREDS")),
                       clock=lambda: clock_now[0])
    await host.start()
    try:
        await seed_directory(dsn, "s-", a.cases)
        today = POLICY.day(clock_now[0])
        t0 = now()
        replies = await bounded([lambda i=i: host.execute("open_case", OpenCase(
            command_id=f"open-s-{i}", actor="staff:bench", community=COMMUNITY, resident=f"s-{i}", kind="home",
            reason="close_contact", starts_on=today, case=f"sc-{i:06d}")) for i in range(a.cases)], 512)
        r["setup_open_case_per_s"] = a.cases / (now() - t0)
        r["setup_errors"] = sum(not x["ok"] for x in replies)
        checked = [i for i in range(a.cases) if i % 10]
        t0 = now()
        replies = await bounded([lambda i=i: host.execute("record_checkin", RecordCheckin(
            command_id=f"ci-s-{i}", actor="staff:bench", case=f"sc-{i:06d}", on=today, temperature_c=36.5))
            for i in checked], 512)
        r["setup_checkin_in_process_per_s"] = len(checked) / (now() - t0)
        r["setup_errors"] += sum(not x["ok"] for x in replies)
        # The set-up's 190,000 reply dicts are the bench's, not the service's: kept alive, every
        # full garbage collection during the sweep walked them too (a third of its time at 100,000).
        print(f"  {a.cases:,} cases open, {len(checked):,} checked in; sweeping ...", file=sys.stderr)
        del replies, checked
        gc.collect()
        # The set-up's ~190,000 events are published before the sweeps start: a sweep then shares
        # the service's loop only with the relay publishing its own CheckinMissed, as on a real
        # evening, not with a backlog the bench created.
        await outbox_drained(dsn, timeout=600)
        for label, day in (("a", today), ("b", today + timedelta(days=1)), ("c", today + timedelta(days=2))):
            clock_now[0] = POLICY.deadline(day) + timedelta(minutes=30)
            r[f"sweep_{label}_open_cases"] = await host.pool.fetchval(
                "SELECT count(*) FROM quarantine.cases WHERE open")
            base, peak, running = rss_mb(), [rss_mb()], [True]

            async def sample():
                while running[0]:
                    peak[0] = max(peak[0], rss_mb())
                    await asyncio.sleep(0.02)

            sampler = asyncio.create_task(sample())
            stop_late, late = asyncio.Event(), None
            if label == "c":  # staff keep recording late check-ins while the sweep runs
                late = asyncio.create_task(late_checkins(host, day, a.cases, a.late_rate, stop_late))
            t0 = now()
            missed = await Scheduler(host, POLICY, chunk=a.chunk).sweep(day, clock_now[0])
            r[f"sweep_{label}_s"] = now() - t0
            if late is not None:
                stop_late.set()
                latencies, errors = await late
                r.update(late_checkin_rate=a.late_rate, late_checkins_sent=len(latencies) + errors,
                         late_checkins_errors=errors,
                         late_checkin_p50_ms=pct(latencies, 50), late_checkin_p99_ms=pct(latencies, 99),
                         late_checkin_max_ms=max(latencies, default=0.0) * 1000)
            # Recorded is what the sweep answers for; when the feed has them all is the relay's
            # part, measured too.
            r[f"sweep_{label}_published_s"] = await outbox_drained(dsn, timeout=600) - t0
            running[0] = False
            await sampler
            r[f"sweep_{label}_missed"] = missed
            r[f"sweep_{label}_rss_growth_mb"] = peak[0] - base
            r[f"sweep_{label}_missed_per_s"] = missed / r[f"sweep_{label}_s"]
        t0 = now()
        await host.pool.fetch("SELECT count(*) FROM quarantine.cases WHERE open AND stage <> 'hospital' "
                              "AND due_from <= $1 AND (last_checkin_on IS NULL OR last_checkin_on < $1)",
                              today + timedelta(days=2))
        r["sweep_query_only_s"] = now() - t0
    finally:
        await host.stop()


# -- the run -----------------------------------------------------------------------------------


class Bench(common.BenchBase):
    def __init__(self, a):
        super().__init__("cordon-qbench-")
        self.a = a

    async def run(self) -> dict:
        a = self.a
        dsn = await self.start_servers()
        r: dict = {"bench": "quarantine", "duration_s": a.duration, "concurrency": a.concurrency, "cases": a.cases}
        print(f"servers up in {self.tmp}; raw limits ...", file=sys.stderr)
        echo = self.spawn("echo", [sys.executable, __file__, "--echo"])
        await echo_answers(self.nats.url)
        r["raw_request_reply_per_s"] = await raw_request_reply(self.nats.url, a.raw_duration, a.concurrency)
        await self.stop_children(echo)
        # autocommit first, then executemany into the rows it left (the order this bench always had)
        many, single = await common.raw_pg(dsn, a.raw_duration, autocommit_first=True)
        r["raw_pg_autocommit_rows_per_s"], r["raw_pg_executemany_rows_per_s"] = single, many

        service = self.service("quarantine", {"CORDON_SCHEDULER_INTERVAL_S": "3600"})
        await wait_schema(dsn)
        await seed_directory(dsn, "c-", a.checkin_cases)
        nc = await common.connect(self.nats.url, name="bench.load", pending_size=8 << 20)
        try:
            today = POLICY.day(datetime.now(POLICY.zone))
            load = Load(nc, a.checkin_cases, POLICY.quarantine_days, today)
            print(f"check-ins: opening {a.checkin_cases:,} cases over NATS ...", file=sys.stderr)
            opened: list = []
            await bounded([lambda i=i: load.one("cordon.cmd.quarantine.open_case", json.dumps({
                "command_id": f"open-{i}", "actor": "staff:bench", "community": COMMUNITY, "resident": f"c-{i}",
                "kind": "home", "reason": "arrival", "case": f"bc-{i}",
                "starts_on": str(today - timedelta(days=POLICY.quarantine_days - 1))}).encode(), opened)
                for i in range(a.checkin_cases)], 128)
            r["checkin_setup_errors"] = sum(load.errors.values())
            load.errors = {}
            await load.closed(a.warmup, a.concurrency)
            load.errors = {}
            await outbox_drained(dsn)
            print(f"(a) check-ins, {a.concurrency} outstanding, {a.duration:g} s ...", file=sys.stderr)
            t0 = now()
            done, elapsed = await load.closed(a.duration, a.concurrency)
            r["checkin_replies_per_s"] = done / elapsed
            # Sustained: until every event of those check-ins is on JetStream (the relay kept up).
            r["checkins_per_s"] = done / (await outbox_drained(dsn) - t0)
            r["checkins_ratio_to_raw_request_reply"] = r["checkins_per_s"] / r["raw_request_reply_per_s"]
            r["checkins_ratio_to_raw_pg_autocommit"] = r["checkins_per_s"] / r["raw_pg_autocommit_rows_per_s"]
            r["checkin_errors_max"] = dict(load.errors)
            load.errors = {}
            rate = a.rate or round(r["checkins_per_s"] * 0.5, -1)
            print(f"(b) check-ins at a fixed {rate:g}/s, {a.duration:g} s ...", file=sys.stderr)
            latencies, achieved = await load.open(a.duration, rate)
            await outbox_drained(dsn)
            r["fixed_rate"], r["fixed_rate_achieved"] = rate, achieved
            for p in (50, 99):
                r[f"checkin_p{p}_ms"] = pct(latencies, p)
            r["checkin_max_ms"] = pct(latencies, 100)
            r["checkin_errors_fixed"] = dict(load.errors)
        finally:
            await nc.close()
            await self.stop_children(service)
        print(f"the sweep: {a.cases:,} cases in process ...", file=sys.stderr)
        await sweep_phase(r, a, self.nats.url, await ensure_database(self.pg.dsn, "sweep"))
        rows = r["sweep_b_missed"] or 1
        r["sweep_b_ratio_to_raw_executemany"] = r["sweep_b_s"] / (rows / r["raw_pg_executemany_rows_per_s"])
        r["errors"] = (r["checkin_setup_errors"] + sum(r["checkin_errors_max"].values())
                       + sum(r["checkin_errors_fixed"].values()) + r["setup_errors"] + r["late_checkins_errors"])
        return r


def table(r: dict) -> str:
    def f(v, unit="/s"):
        return "n/a" if v is None else f"{v:,.0f} {unit}" if v >= 100 else f"{v:.2f} {unit}"

    rows = [
        ("raw NATS request/reply, trivial responder", f(r["raw_request_reply_per_s"], "req/s"), ""),
        ("raw PostgreSQL single-row autocommit", f(r["raw_pg_autocommit_rows_per_s"], "rows/s"), ""),
        ("raw PostgreSQL executemany, one txn", f(r["raw_pg_executemany_rows_per_s"], "rows/s"), ""),
        (f"check-ins sustained, {r['concurrency']} outstanding", f(r["checkins_per_s"], "/s"), ""),
        ("  same, replies only (relay not waited for)", f(r["checkin_replies_per_s"], "/s"), ""),
        ("  ratio to raw request/reply / raw PG autocommit",
         f"{r['checkins_ratio_to_raw_request_reply']:.2f} / {r['checkins_ratio_to_raw_pg_autocommit']:.2f}", ""),
        (f"check-ins at {r['fixed_rate']:g}/s: achieved", f(r["fixed_rate_achieved"], "/s"), ""),
        ("  request -> reply p50 / p99 / max",
         " / ".join(f(r[f"checkin_{k}_ms"], "") for k in ("p50", "p99", "max")) + "ms", ""),
        ("setup: open_case / record_checkin in process",
         f"{r['setup_open_case_per_s']:,.0f} / {r['setup_checkin_in_process_per_s']:,.0f} /s", ""),
        (f"sweep (a): {r['sweep_a_open_cases']:,} open, {r['sweep_a_missed']:,} missed",
         f(r["sweep_a_s"], "s"), f"< {TARGET_SWEEP_S:g} s"),
        (f"sweep (b): {r['sweep_b_open_cases']:,} open, {r['sweep_b_missed']:,} missed",
         f(r["sweep_b_s"], "s"), f"< {TARGET_SWEEP_S:g} s"),
        ("  (b) CheckinMissed per second", f(r["sweep_b_missed_per_s"], "/s"), ""),
        ("  (a) / (b) all on JetStream after", f"{r['sweep_a_published_s']:.2f} / {r['sweep_b_published_s']:.2f} s", ""),
        (f"sweep (c): as (b), with late check-ins at {r['late_checkin_rate']:g}/s", f(r["sweep_c_s"], "s"), ""),
        ("  late check-in p50 / p99 / max (in process)",
         f"{r['late_checkin_p50_ms']:.1f} / {r['late_checkin_p99_ms']:.1f} / {r['late_checkin_max_ms']:.1f} ms", ""),
        ("  late check-ins sent / errors", f"{r['late_checkins_sent']:,} / {r['late_checkins_errors']}", "0 errors"),
        ("  (b) time ÷ raw executemany of as many rows", f"{r['sweep_b_ratio_to_raw_executemany']:.1f}x", ""),
        ("  peak RSS growth (a) / (b)",
         f"{r['sweep_a_rss_growth_mb']:.1f} / {r['sweep_b_rss_growth_mb']:.1f} MB", "flat"),
        ("  the due-set query alone over all cases", f(r["sweep_query_only_s"], "s"), ""),
        ("errors (setup, check-ins)", str(r["errors"]), "0"),
    ]
    lines = [f"{'measure':<50}{'figure':>28}   target", "-" * 90]
    lines += [f"{x:<50}{y:>28}   {z}" for x, y, z in rows]
    if r["errors"]:
        lines.append(f"RUN HAD ERRORS: max {r['checkin_errors_max']}, fixed {r['checkin_errors_fixed']}")
    return "\n".join(lines)


async def echo() -> None:
    """--echo: a trivial NATS responder (the raw request/reply limit)."""
    nc = await common.connect(os.environ["CORDON_NATS_URL"])

    async def reply(msg):
        await msg.respond(msg.data)

    await nc.subscribe("bench.echo", cb=reply)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await nc.close()


def main() -> int:
    if "--echo" in sys.argv:
        asyncio.run(echo())
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=15.0, help="seconds per check-in phase")
    p.add_argument("--concurrency", type=int, default=128, help="outstanding check-ins in the max phase")
    p.add_argument("--rate", type=float, default=1000.0, help="fixed rate, check-ins/s (0: half the max)")
    p.add_argument("--cases", type=int, default=100_000, help="open cases for the sweep")
    p.add_argument("--late-rate", type=float, default=200.0, help="late check-ins/s during sweep (c)")
    p.add_argument("--chunk", type=int, default=1000, help="cases per sweep transaction (CORDON_SWEEP_CHUNK)")
    p.add_argument("--quick", action="store_true", help="short phases and 20,000 cases")
    a = p.parse_args()
    if a.quick:
        a.duration, a.cases = min(a.duration, 5.0), min(a.cases, 20_000)
    a.raw_duration, a.warmup = (2.0, 2.0) if a.quick else (4.0, 3.0)
    a.checkin_cases = 2000 if a.quick else 5000
    logging.setup("console", "warning", stream=sys.stderr)
    return common.run(Bench(a), table, digits=4)


if __name__ == "__main__":
    sys.exit(main())
