#!/usr/bin/env python
"""Logistics benchmark: supply requests and mask-voucher redemptions per second, and their latency,
against raw PostgreSQL and JetStream limits measured in the same run.

    python bench/logistics.py [--duration S] [--rate R] [--concurrency N] [--households H] [--quick]

Starts embedded NATS and PostgreSQL (durable defaults: fsync on) in a temp dir and the logistics
service in a separate process, publishes a directory of H households (registry events in their
contract's shape), then measures, all as NATS requests an integrator would send:
  1. request_supplies, closed loop with N outstanding, then open loop at a fixed offered rate
     (latency from the scheduled send time, so a stall counts against it);
  2. reserve_masks (one mask per voucher, filling the households' weekly limits) to have vouchers;
  3. redeem_voucher, closed loop then fixed rate: every redemption takes masks from ONE stock row
     (the community's), the hot spot the never-negative rule serializes;
  4. that the outbox drains: every accepted command's events reach JetStream.
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
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench import common  # noqa: E402
from bench.common import decode_reply, pct, raw_js, raw_pg  # noqa: E402
from shared import bus, envelope  # noqa: E402
from shared import log as logging  # noqa: E402
from shared.contracts.registry import HouseholdRegistered, ResidentRegistered  # noqa: E402
from shared.subjects import event_subject  # noqa: E402

COMMUNITY = "changning.chengjiaqiao.nangong"
VULNERABLE = ["elderly_alone", "limited_mobility", "medical_device", "chronic_illness"]
now = time.perf_counter


async def serve() -> int:
    """The service process: logistics alone, as `cordon service logistics` would run it."""
    from services.logistics.app import spec
    from services.logistics.config import from_env as logistics_config
    from shared.config import Config
    from shared.service import ServiceHost

    logging.setup("json", os.environ.get("CORDON_LOG_LEVEL", "warning"))
    host = ServiceHost(spec(logistics_config({**os.environ, "CORDON_DAILY_INTERVAL_S": "3600"})), Config.from_env())
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await host.start()
    await stop.wait()
    await host.stop()
    return 0


async def publish_directory(url: str, households: int) -> list[str]:
    """Households (one resident each, a quarter of them vulnerable) as the registry publishes them."""
    nc = await common.connect(url)
    js = nc.jetstream()
    await bus.ensure_stream(js)
    at, ids, futures = datetime.now(timezone.utc), [], []
    for i in range(households):
        h = f"bh-{i}"
        compound, building = f"bench-{i % 3}", f"b{i % 20}"
        events = [
            (HouseholdRegistered(community=COMMUNITY, compound=compound, building=building, household=h,
                                 registered_at=at, registered_by="staff:bench"),
             f"household:{h}"),
            (ResidentRegistered(community=COMMUNITY, compound=compound, building=building, household=h,
                                resident=f"{h}-r", display_name="王*伟",
                                vulnerabilities=[VULNERABLE[i % 16]] if i % 16 < 4 else [],
                                registered_at=at, registered_by="staff:bench"), f"resident:{h}-r"),
        ]
        for event, stream in events:
            env = envelope.wrap(event, stream_id=stream, stream_version=1, occurred_at=at, actor="staff:bench",
                                correlation_id=str(uuid.uuid4()))
            futures.append(await js.publish_async(
                event_subject(COMMUNITY, "registry", type(event).__name__), envelope.encode(env),
                headers={"Nats-Msg-Id": env.event_id}))
        ids.append(h)
    await asyncio.wait_for(asyncio.gather(*futures), 60)
    await nc.close()
    return ids


class Load:
    """Sends logistics commands as NATS requests; records (t_sent, t_reply) per accepted command."""

    def __init__(self, nc, households: list[str], timeout: float):
        self.nc, self.households, self.timeout = nc, households, timeout
        self.run = f"{os.getpid():x}{int(time.time()) % 100000:x}"
        self.n = 0
        self.rng = random.Random(7)
        self.vouchers: collections.deque[str] = collections.deque()
        self.errors: collections.Counter = collections.Counter()

    def make(self, kind: str) -> tuple[str, bytes]:
        self.n += 1
        body: dict = {"command_id": f"bench-{self.run}-{self.n}", "actor": "staff:bench"}
        if kind == "request_supplies":
            body.update(community=COMMUNITY, household=self.rng.choice(self.households), kind="food",
                        items=[{"item": "vegetable-pack", "qty": 1 + self.n % 3}])
        elif kind == "reserve_masks":
            body.update(community=COMMUNITY, household=self.households[(self.n // 10) % len(self.households)],
                        qty=1)
        else:
            body.update(voucher=self.vouchers.popleft())
        return f"cordon.cmd.logistics.{kind}", json.dumps(body).encode()

    async def one(self, kind: str, out: list, t_sent: float | None = None) -> None:
        subject, body = self.make(kind)
        t_sent = t_sent or now()
        try:
            msg = await self.nc.request(subject, body, timeout=self.timeout)
        except Exception as exc:  # timeout, no responders, connection closed ...
            self.errors[f"{kind}:{type(exc).__name__}"] += 1
            return
        reply = decode_reply(msg.data)
        if not reply.ok:
            error = reply.error or {}
            self.errors[f"{kind}:{error.get('reason') or error.get('code')}"] += 1
            return
        out.append((t_sent, now()))
        if reply.voucher:
            self.vouchers.append(reply.voucher)

    async def closed(self, kind: str, seconds: float, concurrency: int, count: int | None = None):
        out: list = []
        t0 = now()
        stop, left = t0 + seconds, [count if count is not None else 1 << 62]

        async def worker():
            while now() < stop and left[0] > 0:
                left[0] -= 1
                await self.one(kind, out)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return out, now() - t0

    async def open(self, kind: str, seconds: float, rate: float, count: int | None = None):
        out: list = []
        tasks: set = set()
        n = int(seconds * rate) if count is None else min(int(seconds * rate), count)
        t0 = now() + 0.01
        for i in range(n):
            t_sched = t0 + i / rate
            if (delay := t_sched - now()) > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.one(kind, out, t_sched))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        t_last = now()
        await asyncio.gather(*list(tasks))
        return out, n / max(t_last - t0, 1e-9), t_last - t0


def latencies(out: list) -> dict:
    values = [tr - ts for ts, tr in out]
    return {p: pct(values, p) for p in (50, 99, 100)}


class Bench(common.BenchBase):
    def __init__(self, args):
        super().__init__("cordon-bench-logistics-")
        self.args = args
        self.logistics = None

    def start_service(self) -> None:
        """The service with its daily tick an hour apart (`serve`): `cordon service` has no knob for it."""
        self.logistics = self.spawn("logistics", [sys.executable, str(Path(__file__).resolve()), "--serve"])

    async def wait_directory(self, dsn: str, households: int, timeout: float = 120.0) -> float:
        """Until the service's directory holds every household's resident; seconds it took."""
        t0 = now()
        conn = await asyncpg.connect(dsn)
        try:
            while True:
                if self.logistics.poll() is not None:
                    raise RuntimeError(f"logistics exited with {self.logistics.returncode}:\n"
                                       f"{self.log_tail('logistics')}")
                try:
                    n = await conn.fetchval("SELECT count(*) FROM logistics.dir_residents")
                except asyncpg.UndefinedTableError:
                    n = 0
                if n >= households:
                    return now() - t0
                if now() - t0 > timeout:
                    raise RuntimeError(f"the directory holds {n} of {households} residents")
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    async def outbox_drain(self, dsn: str, timeout: float = 60.0) -> float:
        t0 = now()
        conn = await asyncpg.connect(dsn)
        try:
            while await conn.fetchval("SELECT count(*) FROM logistics.outbox") and now() - t0 < timeout:
                await asyncio.sleep(0.02)
            return now() - t0
        finally:
            await conn.close()

    async def run(self) -> dict:
        a = self.args
        dsn = await self.start_servers()
        r: dict = {"bench": "logistics", "duration_s": a.duration, "rate": a.rate, "concurrency": a.concurrency,
                   "households": a.households}
        print(f"servers up in {self.tmp}; raw phases {a.raw_duration:g} s each ...", file=sys.stderr)
        r["raw_js_publish_per_s"] = await raw_js(self.nats.url, a.raw_duration)
        r["raw_pg_executemany_rows_per_s"], r["raw_pg_autocommit_rows_per_s"] = await raw_pg(dsn, a.raw_duration)
        households = await publish_directory(self.nats.url, a.households)
        self.start_service()
        r["directory_catch_up_s"] = await self.wait_directory(dsn, a.households)
        nc = await common.connect(self.nats.url, name="bench.load", pending_size=8 << 20)
        try:
            load = Load(nc, households, a.timeout)
            await load.closed("request_supplies", 2.0, a.concurrency)  # warm-up
            load.errors.clear()

            print(f"(1) request_supplies: max with {a.concurrency} outstanding, then {a.rate:g}/s ...",
                  file=sys.stderr)
            out, took = await load.closed("request_supplies", a.duration, a.concurrency)
            self.record(r, "requests_max", out, took)
            out, offered, took = await load.open("request_supplies", a.duration, a.rate)
            self.record(r, "requests_fixed", out, took, offered)

            print("(2) reserve_masks: vouchers for the redemptions ...", file=sys.stderr)
            out, took = await load.closed("reserve_masks", a.duration, a.concurrency, count=a.households * 10)
            self.record(r, "reservations_max", out, took)
            for i in range(-(-len(load.vouchers) // 100_000)):  # enough masks for every voucher
                reply = decode_reply((await nc.request("cordon.cmd.logistics.receive_stock", json.dumps({
                    "command_id": f"bench-stock-{load.run}-{i}", "actor": "staff:bench", "community": COMMUNITY,
                    "items": [{"item": "masks", "qty": 100_000}], "source": "allocation"}).encode(), timeout=10)).data)
                if not reply.ok:
                    raise RuntimeError(f"receive_stock refused: {reply.error}")

            print("(3) redeem_voucher: max, then fixed rate, all on one stock row ...", file=sys.stderr)
            budget = len(load.vouchers)
            out, took = await load.closed("redeem_voucher", a.duration, a.concurrency, count=int(budget * 0.6))
            self.record(r, "redemptions_max", out, took)
            out, offered, took = await load.open("redeem_voucher", a.duration, a.rate, count=len(load.vouchers))
            self.record(r, "redemptions_fixed", out, took, offered)
            r["outbox_drained_after_s"] = await self.outbox_drain(dsn)
        finally:
            await nc.close()
        for name in ("requests_max", "redemptions_max"):
            r[f"{name}_ratio_to_raw_pg_autocommit"] = r[f"{name}_per_s"] / r["raw_pg_autocommit_rows_per_s"]
            r[f"{name}_ratio_to_raw_js"] = r[f"{name}_per_s"] / r["raw_js_publish_per_s"]
        r["error_kinds"] = dict(load.errors)
        r["errors"] = sum(load.errors.values())
        return r

    @staticmethod
    def record(r: dict, name: str, out: list, took: float, offered: float | None = None) -> None:
        r[f"{name}_count"] = len(out)
        r[f"{name}_per_s"] = len(out) / took if took > 0 else 0.0
        if offered is not None:
            r[f"{name}_offered_per_s"] = offered
        for p, v in latencies(out).items():
            r[f"{name}_{'max' if p == 100 else f'p{p}'}_ms"] = v


def table(r: dict) -> str:
    def f(v, unit="/s"):
        return "n/a" if v is None else f"{v:,.0f} {unit}" if v >= 100 else f"{v:.1f} {unit}"

    def lat(name):
        return " / ".join(f(r.get(f"{name}_{k}_ms"), "") for k in ("p50", "p99", "max")) + "ms"

    rows = [
        ("raw JetStream publish_async, 200 B", f(r["raw_js_publish_per_s"], "msg/s")),
        ("raw PostgreSQL executemany, one txn", f(r["raw_pg_executemany_rows_per_s"], "rows/s")),
        ("raw PostgreSQL single-row autocommit", f(r["raw_pg_autocommit_rows_per_s"], "rows/s")),
        (f"directory of {r['households']:,} households caught up", f(r["directory_catch_up_s"], "s")),
        (f"request_supplies max, {r['concurrency']} outstanding", f(r["requests_max_per_s"], "cmd/s")),
        ("  reply p50 / p99 / max", lat("requests_max")),
        ("  ratio to raw PG autocommit / raw JS",
         f"{r['requests_max_ratio_to_raw_pg_autocommit']:.2f} / {r['requests_max_ratio_to_raw_js']:.3f}"),
        (f"request_supplies fixed {r['rate']:g}/s: offered / accepted",
         f"{r['requests_fixed_offered_per_s']:,.0f} / {r['requests_fixed_per_s']:,.0f} cmd/s"),
        ("  from schedule p50 / p99 / max", lat("requests_fixed")),
        ("reserve_masks max", f(r["reservations_max_per_s"], "cmd/s")),
        ("redeem_voucher max (one hot stock row)", f(r["redemptions_max_per_s"], "cmd/s")),
        ("  reply p50 / p99 / max", lat("redemptions_max")),
        ("  ratio to raw PG autocommit / raw JS",
         f"{r['redemptions_max_ratio_to_raw_pg_autocommit']:.2f} / {r['redemptions_max_ratio_to_raw_js']:.3f}"),
        (f"redeem_voucher fixed {r['rate']:g}/s: offered / accepted",
         f"{r['redemptions_fixed_offered_per_s']:,.0f} / {r['redemptions_fixed_per_s']:,.0f} cmd/s"),
        ("  from schedule p50 / p99 / max", lat("redemptions_fixed")),
        ("outbox drained after the load", f(r["outbox_drained_after_s"], "s")),
        ("errors", str(r["errors"])),
    ]
    lines = [f"{'measure':<50}{'figure':>34}", "-" * 84]
    lines += [f"{a:<50}{b:>34}" for a, b in rows]
    if r["errors"]:
        lines.append(f"RUN HAD ERRORS: {r['error_kinds']}")
    return "\n".join(lines)


def main() -> int:
    if "--serve" in sys.argv:
        return asyncio.run(serve())
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    p.add_argument("--rate", type=float, default=1000.0, help="offered commands/s in the fixed-rate phases")
    p.add_argument("--concurrency", type=int, default=256, help="outstanding requests in the max phases")
    p.add_argument("--households", type=int, default=6000, help="households in the directory")
    p.add_argument("--timeout", type=float, default=10.0, help="request timeout, seconds")
    p.add_argument("--quick", action="store_true", help="short phases (about a minute in all)")
    a = p.parse_args()
    if a.quick:
        a.duration, a.households = min(a.duration, 4.0), min(a.households, 2000)
    a.raw_duration = 2.0 if a.quick else min(5.0, a.duration)
    logging.setup("console", "warning", stream=sys.stderr)
    return common.run(Bench(a), table)


if __name__ == "__main__":
    sys.exit(main())
