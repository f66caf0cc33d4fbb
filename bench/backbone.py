#!/usr/bin/env python
"""Backbone benchmark: raw JetStream and PostgreSQL limits against Cordon end to end, in one run.

    python bench/backbone.py [--duration S] [--rate R] [--quick] [--concurrency N] [--profile DIR]

Starts embedded NATS and PostgreSQL (durable defaults: fsync on, JetStream file storage) in a temp
dir and the registry service in a separate process (`python -m services.cli service registry`, as
`cordon up` does), then measures:
  1. raw JetStream `publish_async` of 200-byte messages to a scratch stream;
  2. raw PostgreSQL inserts: `executemany` in one transaction, and single-row autocommit;
  3. end to end: registry commands sent as NATS requests until their event is handled by a durable
     `shared.consumer.Consumer` in its own process: (a) closed loop with N outstanding requests,
     (b) open loop at a fixed offered rate, latency measured from the scheduled send time, with
     raw single-row commits (50/s, own connection) measured meanwhile on the same disk.
Prints a table, then (last line of stdout) one JSON object. Figures only: nothing is asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import msgspec  # noqa: E402
import nats  # noqa: E402

from bench import common  # noqa: E402
from bench.common import decode_reply, pct, raw_js, raw_pg  # noqa: E402
from shared import log as logging  # noqa: E402
from shared import store  # noqa: E402
from shared.contracts import registry as _registry_events  # noqa: E402,F401  (registers event types)
from shared.consumer import Consumer  # noqa: E402
from shared.idcard import with_check_digit  # noqa: E402

COMMUNITY = "changning.chengjiaqiao.nangong"
TARGET_E2E, TARGET_P99_MS = 3000, 25
MIX = [("register_household", 0.10), ("register_resident", 0.40), ("register_arrival", 0.50)]
now = time.perf_counter


def id_number(n: int) -> str:
    """A valid, unique 18-character PRC ID number for every n < 10**16."""
    return with_check_digit(f"1{n:016d}")


class _Causation(msgspec.Struct):
    causation_id: str = ""


_causation = msgspec.json.Decoder(_Causation)


class Load:
    """Builds registry commands with client-chosen ids and sends them as NATS requests."""

    def __init__(self, nc, consumed: dict[str, float], timeout: float):
        self.nc, self.consumed, self.timeout = nc, consumed, timeout
        self.run = f"{os.getpid():x}{int(time.time()) % 100000:x}"
        self.n = 0
        self.rng = random.Random(7)
        self.households: list[str] = []
        self.residents: list[str] = []
        self.errors: collections.Counter = collections.Counter()

    def make(self, kind: str | None = None) -> tuple[str, str, bytes, str]:
        self.n += 1
        n, cid = self.n, f"bench-{self.run}-{self.n}"
        if kind is None:
            kind = self.rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        if kind == "register_household":
            body = {"community": COMMUNITY, "compound": "bench-1", "building": "b1",
                    "address": f"room {n}", "household": f"h-{self.run}-{n}"}
        elif kind == "register_resident":
            body = {"household": self.rng.choice(self.households), "resident": f"r-{self.run}-{n}",
                    "name": "王小伟", "id_number": id_number(n), "birth_year": 1950 + n % 60}
        else:
            body = {"resident": self.rng.choice(self.residents), "arrival": f"a-{self.run}-{n}",
                    "origin": "Wuhan", "arrived_on": "2020-02-01",
                    "transport": {"kind": "train", "number": "G1722"}, "visited": [],
                    "city_class": "B", "risk_area_visited": n % 3 == 0}
        body.update(command_id=cid, actor="staff:bench")
        created = body.get("household") if kind == "register_household" else body.get("resident")
        return cid, kind, json.dumps(body, ensure_ascii=False).encode(), created

    async def one(self, kind: str | None, out: dict, t_sent: float | None = None) -> None:
        """Send one command; on success record (t_sent, t_reply) in ``out`` under its command id."""
        cid, kind, body, created = self.make(kind)
        t_sent = t_sent or now()
        try:
            msg = await self.nc.request(f"cordon.cmd.registry.{kind}", body, timeout=self.timeout)
        except nats.errors.TimeoutError:
            self.errors["timeout"] += 1
            return
        except Exception as exc:  # no responders, connection closed ...
            self.errors[type(exc).__name__] += 1
            return
        t_reply = now()
        reply = decode_reply(msg.data)
        if not reply.ok:
            self.errors[(reply.error or {}).get("code", "error")] += 1
            return
        out[cid] = (t_sent, t_reply)
        if kind == "register_household":
            self.households.append(created)
        elif kind == "register_resident":
            self.residents.append(created)

    async def closed(self, seconds: float, concurrency: int, kind: str | None = None,
                     count: int | None = None) -> tuple[dict, float, float]:
        """Keep ``concurrency`` requests outstanding for ``seconds`` (or until ``count`` sent)."""
        out: dict = {}
        t0 = now()
        stop, left = t0 + seconds, [count if count is not None else 1 << 62]

        async def worker():
            while now() < stop and left[0] > 0:
                left[0] -= 1
                await self.one(kind, out)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return out, t0, now()

    async def open(self, seconds: float, rate: float) -> tuple[dict, float, float]:
        """Send on schedule (``rate`` per second) regardless of replies; latency from the schedule."""
        out: dict = {}
        tasks: set = set()
        t0 = now() + 0.01
        for i in range(int(seconds * rate)):
            t_sched = t0 + i / rate
            if (delay := t_sched - now()) > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.one(None, out, t_sched))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        t_last = now()
        await asyncio.gather(*list(tasks))
        return out, t0, t_last

    async def drain(self, out: dict, stall: float = 5.0) -> int:
        """Wait until every accepted command's event was consumed (or none came for ``stall`` s);
        count the ones that were not."""
        last, t_last = -1, now()
        while (missing := sum(1 for c in out if c not in self.consumed)) and now() - t_last < stall:
            if missing != last:
                last, t_last = missing, now()
            await asyncio.sleep(0.02)
        if missing:
            self.errors["not_consumed"] += missing
        return missing

    def take_errors(self, r: dict, phase: str) -> None:
        r[f"{phase}_errors"], r[f"{phase}_error_kinds"] = sum(self.errors.values()), dict(self.errors)
        self.errors = collections.Counter()


class Bench(common.BenchBase):
    """The servers, the registry service and the py-spy processes of one run."""

    def __init__(self, args):
        super().__init__("cordon-bench-")
        self.args = args
        self.registry: subprocess.Popen | None = None

    async def wait_service(self, nc, timeout: float = 60.0) -> None:
        """Register the compound (same command id on every try) until the service answers."""
        body = json.dumps({"command_id": f"bench-compound-{os.getpid()}", "actor": "staff:bench",
                           "community": COMMUNITY, "compound": "bench-1", "name": "bench",
                           "buildings": ["b1"], "gates": ["g1"]}).encode()
        deadline = now() + timeout
        while True:
            if self.registry.poll() is not None:
                raise RuntimeError(f"registry exited with {self.registry.returncode}:\n{self.log_tail('registry')}")
            try:
                reply = decode_reply((await nc.request("cordon.cmd.registry.register_compound",
                                                       body, timeout=1)).data)
                if not reply.ok:
                    raise RuntimeError(f"register_compound refused: {reply.error}")
                return
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                if now() > deadline:
                    raise RuntimeError("the registry service did not answer") from None
                await asyncio.sleep(0.1)

    async def run(self) -> dict:
        a = self.args
        dsn = await self.start_servers()
        r = {"bench": "backbone", "duration_s": a.duration, "concurrency": a.concurrency}
        print(f"servers up in {self.tmp}; raw phases {a.raw_duration:g} s each ...", file=sys.stderr)
        r["raw_js_publish_per_s"] = await raw_js(self.nats.url, a.raw_duration)
        commits: list[float] = []
        many, single = await raw_pg(dsn, a.raw_duration, commits=commits)
        r["raw_pg_executemany_rows_per_s"], r["raw_pg_autocommit_rows_per_s"] = many, single
        r["raw_pg_commit_p50_ms"], r["raw_pg_commit_p99_ms"] = pct(commits, 50), pct(commits, 99)

        self.registry = self.service("registry")
        nc = await common.connect(self.nats.url, name="bench.load", pending_size=8 << 20)
        consumed: dict[str, float] = {}
        consumer = reader = None
        try:
            await self.wait_service(nc)
            # The downstream consumer is its own process, as a real one is: it does not share an
            # event loop (or the GIL) with the load generator. It reports "causation_id time"
            # lines on stdout; time.perf_counter is CLOCK_MONOTONIC, the same in every process.
            consumer = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--consumer-child", self.nats.url, dsn,
                stdout=asyncio.subprocess.PIPE)
            ready = asyncio.get_running_loop().create_future()

            async def read_consumed():
                async for line in consumer.stdout:
                    key, _, at = line.decode().partition(" ")
                    if key == "ready" and not ready.done():
                        ready.set_result(None)
                    else:
                        consumed[key] = float(at)

            reader = asyncio.create_task(read_consumed())
            await asyncio.wait_for(ready, 30)
            load = Load(nc, consumed, timeout=a.timeout)
            print(f"service pid {self.registry.pid}; warm-up: households, residents, mixed ...", file=sys.stderr)
            out, _, _ = await load.closed(60, a.concurrency, "register_household", count=a.households)
            out.update((await load.closed(60, a.concurrency, "register_resident", count=a.residents))[0])
            out.update((await load.closed(a.warmup, a.concurrency))[0])
            await load.drain(out)
            load.take_errors(r, "warmup")

            print(f"(a) max rate, {a.concurrency} outstanding, {a.duration:g} s ...", file=sys.stderr)
            if a.profile:
                self.spy(self.registry.pid, a.duration, a.profile / "service.txt")
                self.spy(os.getpid(), a.duration, a.profile / "bench.txt")
            out, t0, t1 = await load.closed(a.duration, a.concurrency)
            await load.drain(out)
            t_end = max((consumed[c] for c in out if c in consumed), default=t1)
            r["e2e_commands"] = len(out)
            r["e2e_commands_per_s"] = len(out) / (t_end - t0)
            r["e2e_replies_per_s"] = len(out) / (t1 - t0)
            r["e2e_ratio_to_raw_js"] = r["e2e_commands_per_s"] / r["raw_js_publish_per_s"]
            r["e2e_ratio_to_raw_pg_autocommit"] = r["e2e_commands_per_s"] / r["raw_pg_autocommit_rows_per_s"]
            load.take_errors(r, "e2e")
            await self.spies_done()

            await asyncio.sleep(a.settle)  # phase (b) measures the steady state at its rate
            # A plain core subscriber sees each event the moment the relay publishes it: the
            # breakdown of request -> consumed into service + relay and downstream consumer.
            published: dict[str, float] = {}

            async def on_published(msg):
                published[_causation.decode(msg.data).causation_id] = now()

            probe = await nc.subscribe("cordon.evt.>", cb=on_published)
            print(f"(b) open loop at {a.rate:g}/s, {a.duration:g} s ...", file=sys.stderr)
            async with common.CommitProbe(dsn) as commits_meanwhile:
                out, t0, t_last = await load.open(a.duration, a.rate)
            await load.drain(out)
            await probe.unsubscribe()
            r["fixed_rate"] = int(a.rate) if a.rate.is_integer() else a.rate
            r["fixed_rate_sent"] = int(a.duration * a.rate) / (t_last - t0)
            r["fixed_rate_achieved"] = len(out) / (t_last - t0)
            replies = [tr - ts for ts, tr in out.values()]
            eaten = [consumed[c] - ts for c, (ts, _) in out.items() if c in consumed]
            seen = [published[c] - ts for c, (ts, _) in out.items() if c in published]
            for name, values in (("reply", replies), ("published", seen), ("consumed", eaten)):
                for p in (50, 99):
                    r[f"{name}_p{p}_ms"] = pct(values, p)
                r[f"{name}_max_ms"] = pct(values, 100)
            r["reply_p99_ratio_to_raw_pg_commit_p99"] = r["reply_p99_ms"] / r["raw_pg_commit_p99_ms"]
            during = commits_meanwhile.latencies
            r["fixed_raw_pg_commit_p50_ms"], r["fixed_raw_pg_commit_p99_ms"] = pct(during, 50), pct(during, 99)
            r["fixed_raw_pg_commit_max_ms"] = pct(during, 100)
            r["reply_p99_ratio_to_raw_pg_commit_p99_meanwhile"] = r["reply_p99_ms"] / r["fixed_raw_pg_commit_p99_ms"]
            load.take_errors(r, "fixed")
            r["errors"] = r["warmup_errors"] + r["e2e_errors"] + r["fixed_errors"]
            return r
        finally:
            if reader is not None:
                reader.cancel()
            if consumer is not None and consumer.returncode is None:
                consumer.terminate()
                await consumer.wait()
            await nc.close()


async def consumer_child(url: str, dsn: str) -> None:
    """The downstream consumer: a durable ``shared.consumer.Consumer``; prints what it handles."""
    logging.setup(level="warning")  # stdout carries what it handles: logs go to stderr
    nc = await common.connect(url, name="bench.consumer")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    async with pool.acquire() as conn:
        await store.migrate(conn, "bench")
    out = sys.stdout

    async def handle(conn, raw, event):  # inside the consumer's transaction, before its commit
        out.write(f"{raw.causation_id} {now()}\n")

    consumer = Consumer(name="bench-downstream", schema="bench", subjects=["cordon.evt.>"],
                        handle=handle, pool=pool, nc=nc)
    await consumer.start()
    out.write("ready 0\n")
    out.flush()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        out.flush()
        try:
            await asyncio.wait_for(stop.wait(), 0.005)
        except asyncio.TimeoutError:
            pass
    await consumer.stop()
    await pool.close()
    await nc.close()


def table(r: dict) -> str:
    def f(v, unit=""):
        return "n/a" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.1f}") + (unit and f" {unit}")

    rows = [
        ("raw JetStream publish_async, 200 B", f(r["raw_js_publish_per_s"], "msg/s"), ""),
        ("raw PostgreSQL executemany, one txn", f(r["raw_pg_executemany_rows_per_s"], "rows/s"), ""),
        ("raw PostgreSQL single-row autocommit", f(r["raw_pg_autocommit_rows_per_s"], "rows/s"), ""),
        ("  its commit p50 / p99", f"{f(r['raw_pg_commit_p50_ms'])} / {f(r['raw_pg_commit_p99_ms'])} ms", ""),
        (f"e2e max, {r['concurrency']} outstanding (to consumed)", f(r["e2e_commands_per_s"], "cmd/s"),
         f">= {TARGET_E2E:,} cmd/s"),
        ("  same, replies only", f(r["e2e_replies_per_s"], "cmd/s"), ""),
        ("  ratio to raw JS / raw PG autocommit",
         f"{r['e2e_ratio_to_raw_js']:.3f} / {r['e2e_ratio_to_raw_pg_autocommit']:.2f}", ""),
        (f"fixed rate {r['fixed_rate']:g}/s: sent / accepted",
         f"{r['fixed_rate_sent']:,.0f} / {r['fixed_rate_achieved']:,.0f} cmd/s", ""),
        ("  request -> reply p50 / p99 / max",
         " / ".join(f(r[f"reply_{k}_ms"]) for k in ("p50", "p99", "max")) + " ms", ""),
        ("  reply p99 / raw PostgreSQL commit p99", f"{r['reply_p99_ratio_to_raw_pg_commit_p99']:.1f}", "<= 3"),
        ("  raw commits meanwhile (50/s) p50 / p99 / max",
         " / ".join(f(r[f"fixed_raw_pg_commit_{k}_ms"]) for k in ("p50", "p99", "max")) + " ms", ""),
        ("  reply p99 / raw commit p99 meanwhile", f"{r['reply_p99_ratio_to_raw_pg_commit_p99_meanwhile']:.1f}",
         "<= 3"),
        ("  request -> published by the relay p50 / p99",
         " / ".join(f(r[f"published_{k}_ms"]) for k in ("p50", "p99")) + " ms", ""),
        ("  request -> consumed p50 / p99 / max",
         " / ".join(f(r[f"consumed_{k}_ms"]) for k in ("p50", "p99", "max")) + " ms",
         f"p99 <= {TARGET_P99_MS} ms"),
        ("errors (warm-up / max / fixed)", f"{r['warmup_errors']} / {r['e2e_errors']} / {r['fixed_errors']}",
         "0"),
    ]
    lines = [f"{'measure':<46}{'figure':>28}   target", "-" * 88]
    lines += [f"{a:<46}{b:>28}   {c}" for a, b, c in rows]
    if r["errors"]:
        kinds = collections.Counter()
        for phase in ("warmup", "e2e", "fixed"):
            kinds.update(r[f"{phase}_error_kinds"])
        kinds = dict(kinds)
        lines.append(f"RUN HAD ERRORS: {r['errors']} ({kinds})")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--consumer-child":
        asyncio.run(consumer_child(sys.argv[2], sys.argv[3]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=20.0, help="seconds per end-to-end phase")
    p.add_argument("--rate", type=float, default=1000.0, help="offered commands/s in the fixed-rate phase")
    p.add_argument("--quick", action="store_true", help="short phases (under ~40 s in all)")
    p.add_argument("--concurrency", type=int, default=256, help="outstanding requests in the max phase")
    p.add_argument("--timeout", type=float, default=10.0, help="request timeout, seconds")
    p.add_argument("--settle", type=float, default=1.0, help="pause between phases (a) and (b), s")
    p.add_argument("--profile", type=Path, help="py-spy the service and this process in phase (a) into DIR")
    a = p.parse_args()
    if a.quick:
        a.duration = min(a.duration, 5.0)
    a.raw_duration = 2.0 if a.quick else min(5.0, a.duration)
    a.warmup = 2.0 if a.quick else 5.0
    a.households, a.residents = (100, 1000) if a.quick else (300, 3000)
    if a.profile:
        a.profile.mkdir(parents=True, exist_ok=True)
    logging.setup("console", "warning", stream=sys.stderr)
    return common.run(Bench(a), table)


if __name__ == "__main__":
    sys.exit(main())
