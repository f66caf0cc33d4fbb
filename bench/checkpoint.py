#!/usr/bin/env python
"""Checkpoint benchmark: passages per second and decision latency, against raw NATS request/reply
measured in the same run.

    python bench/checkpoint.py [--duration S] [--rate R] [--concurrency N] [--quick]

Starts embedded NATS and PostgreSQL (durable defaults: fsync on) in a temp dir, then two processes:
a raw NATS echo responder (nats-py, replies at once) and the checkpoint service
(``python -m services.cli service checkpoint``, as ``cordon up`` runs it). It loads a compound of
5,400 households, one resident each, into the checkpoint's directory by publishing registry events
in the contract's shape, and quarantine facts the same way (100 residents in quarantine, one
building sealed). Then:
  0. bulk issue: ONE issue_passes for all 5,400 households, request -> reply;
  1. raw NATS request/reply to the echo responder, same payloads: (a) max rate with N outstanding,
     (b) open loop at R/s, latency from the scheduled send time;
  2. check_passage, the same two loads (in (b), raw single-row PostgreSQL commits meanwhile);
     mix: printed pass number 50 %, resident id 30 %, both 10 %, visitor 10 %; in and out; 1 %
     fevers. After (a), the time until the outbox is empty: every passage recorded in PostgreSQL
     and published on JetStream (the sustained rate).
Prints a table, then (last line of stdout) one JSON object. Figures only: nothing is asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import nats  # noqa: E402

from bench import common  # noqa: E402
from bench.common import cpu_s, decode_reply, pct  # noqa: E402
from shared import bus, envelope  # noqa: E402
from shared import log as logging  # noqa: E402
from shared.contracts.quarantine import AreaSealed, CaseOpened  # noqa: E402
from shared.contracts.registry import CompoundRegistered, HouseholdRegistered, ResidentRegistered  # noqa: E402
from shared.subjects import event_subject  # noqa: E402

COMMUNITY = "changning.chengjiaqiao.nangong"
COMPOUND = "bench-1"
BUILDINGS = [f"b{i}" for i in range(1, 11)]
TARGET_RATE, TARGET_P99_MS, TARGET_BULK_S = 3000, 10, 2.0
ECHO = "bench.echo"
now = time.perf_counter


# -- the world: registry and quarantine facts, published in the contracts' shape ------------------


async def publish_world(url: str, households: int) -> list[tuple[str, str]]:
    """Compound, households (one resident each), 100 quarantine cases, one sealed building."""
    at = datetime(2022, 4, 2, tzinfo=timezone.utc)
    by = "staff:bench"
    people = [(f"h{i}", f"r{i}") for i in range(households)]
    events = [(CompoundRegistered(community=COMMUNITY, compound=COMPOUND, name="bench", buildings=BUILDINGS,
                                  gates=["g1", "g2"], registered_at=at, registered_by=by), "registry")]
    for i, (h, r) in enumerate(people):
        b = BUILDINGS[i % len(BUILDINGS)]
        events.append((HouseholdRegistered(community=COMMUNITY, compound=COMPOUND, building=b, household=h,
                                           registered_at=at, registered_by=by), "registry"))
        events.append((ResidentRegistered(community=COMMUNITY, compound=COMPOUND, building=b, household=h,
                                          resident=r, display_name="王*伟", registered_at=at,
                                          registered_by=by), "registry"))
    for i in range(0, min(households, 5400), 54):  # 100 cases: home and centralized
        h, r = people[i]
        events.append((CaseOpened(community=COMMUNITY, case=f"case-{i}", resident=r, household=h, compound=COMPOUND,
                                  kind="home" if i % 108 else "centralized", reason="arrival",
                                  starts_on=date(2022, 4, 1), ends_on=date(2022, 4, 14), opened_at=at,
                                  opened_by=by), "quarantine"))
    events.append((AreaSealed(community=COMMUNITY, compound=COMPOUND, building="b10", sealed_at=at, sealed_by=by),
                   "quarantine"))
    nc = await common.connect(url)
    js = nc.jetstream()
    await bus.ensure_stream(js)
    acks = []
    for event, service in events:
        env = envelope.wrap(event, stream_id=f"bench:{uuid.uuid4()}", stream_version=1, occurred_at=at,
                            actor=by, correlation_id=str(uuid.uuid4()))
        acks.append(await js.publish_async(event_subject(COMMUNITY, service, type(event).__name__),
                                           envelope.encode(env), headers={"Nats-Msg-Id": env.event_id}))
    await asyncio.wait_for(asyncio.gather(*acks), 60)
    await nc.close()
    return people


class Load:
    """check_passage payloads (the mix of the module docstring) and the two load shapes."""

    def __init__(self, nc, subject: str, people: list[tuple[str, str]], passes: dict[str, str], timeout: float):
        self.nc, self.subject, self.timeout = nc, subject, timeout
        self.run = f"{os.getpid():x}{int(time.time()) % 100000:x}"
        self.n = 0
        self.errors: collections.Counter = collections.Counter()
        self.reasons: collections.Counter = collections.Counter()
        rng = random.Random(7)
        self.templates = [self._template(rng, people, passes) for _ in range(2000)]

    @staticmethod
    def _template(rng, people, passes) -> str:
        h, r = rng.choice(people)
        body = {"command_id": "@ID@", "actor": "staff:bench", "community": COMMUNITY, "compound": COMPOUND,
                "gate": rng.choice(["g1", "g2"]), "direction": rng.choice(["in", "out"]),
                "temperature_c": 37.8 if rng.random() < 0.01 else round(rng.uniform(35.8, 37.2), 1)}
        kind = rng.random()
        if kind < 0.5:
            body["pass"] = passes[h]
        elif kind < 0.8:
            body["resident"] = r
        elif kind < 0.9:
            body.update({"pass": passes[h], "resident": r})
        else:
            body["visitor"] = {"name": "张三丰", "phone": "13800001111", "host_household": h, "purpose": "送菜"}
        return json.dumps(body, ensure_ascii=False)

    def body(self) -> bytes:
        self.n += 1
        return self.templates[self.n % len(self.templates)].replace("@ID@", f"b-{self.run}-{self.n}").encode()

    async def one(self, out: list, t_sched: float | None = None) -> None:
        body = self.body()
        t_sent = t_sched or now()
        try:
            msg = await self.nc.request(self.subject, body, timeout=self.timeout)
        except nats.errors.TimeoutError:
            self.errors["timeout"] += 1
            return
        except Exception as exc:
            self.errors[type(exc).__name__] += 1
            return
        t_reply = now()
        if self.subject != ECHO:
            reply = decode_reply(msg.data)
            if not reply.ok:
                self.errors[(reply.error or {}).get("code", "error")] += 1
                return
        out.append(t_reply - t_sent)

    async def closed(self, seconds: float, concurrency: int) -> tuple[list, float, float]:
        out: list = []
        t0 = now()
        stop = t0 + seconds

        async def worker():
            while now() < stop:
                await self.one(out)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return out, t0, now()

    async def open(self, seconds: float, rate: float) -> tuple[list, float, float]:
        out: list = []
        tasks: set = set()
        t0 = now() + 0.01
        for i in range(int(seconds * rate)):
            t_sched = t0 + i / rate
            if (delay := t_sched - now()) > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.one(out, t_sched))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        t_last = now()
        await asyncio.gather(*list(tasks))
        return out, t0, t_last


async def echo_main(url: str) -> None:
    """The raw responder: replies to every request at once, nothing else."""
    nc = await common.connect(url, pending_size=8 << 20)
    reply = b'{"ok":true}'

    async def on(msg):
        await nc.publish(msg.reply, reply)

    await nc.subscribe(ECHO, cb=on)
    await asyncio.Event().wait()


class Bench(common.BenchBase):
    """The servers, the echo responder and the checkpoint service of one run."""

    def __init__(self, args):
        super().__init__("cordon-bench-checkpoint-")
        self.args = args
        self.echo: subprocess.Popen | None = None
        self.checkpoint: subprocess.Popen | None = None

    async def wait_for(self, db, sql: str, what: str, timeout: float = 120.0) -> float:
        t0 = now()
        while not await db.fetchval(sql):
            for proc in self.children:
                if proc.poll() is not None:
                    raise RuntimeError(f"a child exited with {proc.returncode}; logs in {self.tmp}")
            if now() - t0 > timeout:
                raise RuntimeError(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)
        return now() - t0

    def spy_phase(self, seconds: float, folder: Path) -> None:
        """py-spy the service and this process (raw stacks in ``folder``)."""
        exe = Path(sys.executable).parent / "py-spy"
        for name, pid in (("service", self.checkpoint.pid), ("bench", os.getpid())):
            subprocess.Popen([str(exe), "record", "--pid", str(pid), "-d", str(int(seconds)), "--format", "raw",
                              "--nonblocking", "-o", str(folder / f"{name}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def run(self) -> dict:
        a = self.args
        dsn = await self.start_servers()
        self.echo = self.spawn("echo", [sys.executable, __file__, "--echo", self.nats.url])
        self.checkpoint = self.service("checkpoint")
        r: dict = {"bench": "checkpoint", "duration_s": a.duration, "concurrency": a.concurrency,
                   "households": a.households, "load_average_at_start": os.getloadavg()[0]}
        db = await asyncpg.connect(dsn)
        nc = await common.connect(self.nats.url, name="bench.load", pending_size=8 << 20)
        try:
            print(f"servers up in {self.tmp}; loading {a.households} households ...", file=sys.stderr)
            t0 = now()
            people = await publish_world(self.nats.url, a.households)
            await self.wait_for(db, "SELECT to_regclass('checkpoint.sealed_areas') IS NOT NULL", "the service")
            await self.wait_for(db, f"SELECT count(*) = {a.households} FROM checkpoint.dir_residents "
                                    "WHERE (SELECT count(*) FROM checkpoint.sealed_areas) = 1", "the directory")
            r["directory_load_s"] = now() - t0

            body = json.dumps({"command_id": f"bulk-{uuid.uuid4()}", "actor": "staff:bench", "community": COMMUNITY,
                               "compound": COMPOUND, "all_households": True}).encode()
            t0 = now()
            msg = await nc.request("cordon.cmd.checkpoint.issue_passes", body, timeout=60)
            r["bulk_issue_s"] = now() - t0
            issued = json.loads(msg.data)
            if not issued.get("ok"):
                raise RuntimeError(f"issue_passes refused: {issued}")
            r["bulk_issued"] = issued["issued"]
            r["bulk_reply_bytes"] = len(msg.data)
            passes = {p["household"]: p["number"] for p in issued["passes"]}
            r["bulk_published_s"] = r["bulk_issue_s"] + await self.wait_for(
                db, "SELECT count(*) = 0 FROM checkpoint.outbox", "the bulk outbox")

            for name, subject in (("raw", ECHO), ("passage", "cordon.cmd.checkpoint.check_passage")):
                await self.phase(r, name, Load(nc, subject, people, passes, a.timeout), db, dsn)
            r["ratio_rate_to_raw"] = r["passage_max_per_s"] / r["raw_max_per_s"]
            r["ratio_p99_to_raw"] = (r["passage_p99_ms"] / r["raw_p99_ms"]) if r["raw_p99_ms"] else None
            r["passages_recorded"] = await db.fetchval(
                "SELECT count(*) FROM checkpoint.events WHERE type IN ('PassageAllowed', 'PassageDenied')")
            r["errors"] = r["raw_errors"] + r["passage_errors"]
            return r
        finally:
            await db.close()
            await nc.close()

    async def phase(self, r: dict, name: str, load: Load, db, dsn: str) -> None:
        a = self.args
        print(f"{name}: warm-up, then (a) {a.concurrency} outstanding {a.duration:g} s ...", file=sys.stderr)
        await load.closed(a.warmup, a.concurrency)
        load.errors.clear()
        if a.profile and name == "passage":
            self.spy_phase(a.duration, a.profile)
        pid = (self.echo if name == "raw" else self.checkpoint).pid
        cpu0 = cpu_s(pid)
        out, t0, t1 = await load.closed(a.duration, a.concurrency)
        r[f"{name}_max_per_s"] = len(out) / (t1 - t0)
        r[f"{name}_cpu_us_per_request"] = (cpu_s(pid) - cpu0) / max(1, len(out)) * 1e6
        r[f"{name}_max_p50_ms"], r[f"{name}_max_p99_ms"] = pct(out, 50), pct(out, 99)
        if name == "passage":
            drained = await self.wait_for(db, "SELECT count(*) = 0 FROM checkpoint.outbox", "the outbox")
            r["passage_sustained_per_s"] = len(out) / (t1 - t0 + drained)
            r["passage_outbox_drain_s"] = drained
        await asyncio.sleep(1)
        print(f"{name}: (b) open loop at {a.rate:g}/s for {a.duration:g} s ...", file=sys.stderr)
        async with common.CommitProbe(dsn) as commits:  # a passage is committed before its reply
            out, t0, t_last = await load.open(a.duration, a.rate)
        for k, p in (("p50", 50), ("p99", 99), ("max", 100)):
            r[f"{name}_raw_pg_commit_{k}_ms"] = pct(commits.latencies, p)
        r[f"{name}_fixed_sent_per_s"] = int(a.duration * a.rate) / (t_last - t0)
        r[f"{name}_fixed_ok"] = len(out)
        for p in (50, 99):
            r[f"{name}_p{p}_ms"] = pct(out, p)
        r[f"{name}_max_ms"] = pct(out, 100)
        r[f"{name}_errors"] = sum(load.errors.values())
        r[f"{name}_error_kinds"] = dict(load.errors)


def table(r: dict) -> str:
    def f(v, unit=""):
        return "n/a" if v is None else f"{v:,.0f}{unit}" if v >= 100 else f"{v:.2f}{unit}"

    rows = [
        (f"bulk issue_passes, {r['bulk_issued']:,} passes: reply", f(r["bulk_issue_s"], " s"),
         f"< {TARGET_BULK_S:g} s"),
        ("  same, until all published", f(r["bulk_published_s"], " s"), ""),
        (f"raw NATS req/reply, {r['concurrency']} outstanding", f(r["raw_max_per_s"], " /s"), ""),
        (f"check_passage, {r['concurrency']} outstanding: replies", f(r["passage_max_per_s"], " /s"),
         f">= {TARGET_RATE:,} /s"),
        ("  sustained (until recorded and published)", f(r["passage_sustained_per_s"], " /s"),
         f">= {TARGET_RATE:,} /s"),
        ("  ratio to raw NATS req/reply", f"{r['ratio_rate_to_raw']:.3f}", ""),
        ("  CPU per request: service / raw responder",
         f"{r['passage_cpu_us_per_request']:,.0f} / {r['raw_cpu_us_per_request']:,.0f} µs", ""),
        (f"raw NATS at {r['args_rate']:g}/s: p50 / p99 / max",
         " / ".join(f(r[f"raw_{k}_ms"]) for k in ("p50", "p99", "max")) + " ms", ""),
        (f"check_passage at {r['args_rate']:g}/s: p50 / p99 / max",
         " / ".join(f(r[f"passage_{k}_ms"]) for k in ("p50", "p99", "max")) + " ms", f"p99 <= {TARGET_P99_MS} ms"),
        ("  raw PG commits meanwhile (50/s): p50 / p99 / max",
         " / ".join(f(r[f"passage_raw_pg_commit_{k}_ms"]) for k in ("p50", "p99", "max")) + " ms", ""),
        ("  sent rate (open loop)", f(r["passage_fixed_sent_per_s"], " /s"), ""),
        ("passages recorded (all phases, incl. warm-up)", f"{r['passages_recorded']:,}", ""),
        ("errors (raw / passage)", f"{r['raw_errors']} / {r['passage_errors']}", "0"),
        ("machine load average at start (2 cores, shared)", f"{r['load_average_at_start']:.2f}", ""),
    ]
    lines = [f"{'measure':<52}{'figure':>26}   target", "-" * 92]
    lines += [f"{a:<52}{b:>26}   {c}" for a, b, c in rows]
    if r["errors"]:
        lines.append(f"RUN HAD ERRORS: {r['raw_error_kinds']} {r['passage_error_kinds']}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=15.0, help="seconds per measured phase")
    p.add_argument("--rate", type=float, default=1000.0, help="offered passages/s in the fixed-rate phase")
    p.add_argument("--concurrency", type=int, default=128, help="outstanding requests in the max phase")
    p.add_argument("--households", type=int, default=5400)
    p.add_argument("--timeout", type=float, default=10.0, help="request timeout, seconds")
    p.add_argument("--quick", action="store_true", help="short phases")
    p.add_argument("--profile", type=Path, help="py-spy the service and this process in the max phase into DIR")
    p.add_argument("--echo", metavar="NATS_URL", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.echo:
        asyncio.run(echo_main(a.echo))
        return 0
    if a.quick:
        a.duration = min(a.duration, 5.0)
    a.warmup = 2.0 if a.quick else 4.0
    if a.profile:
        a.profile.mkdir(parents=True, exist_ok=True)
    logging.setup("console", "warning", stream=sys.stderr)
    return common.run(Bench(a), table, {"args_rate": a.rate})


if __name__ == "__main__":
    sys.exit(main())
