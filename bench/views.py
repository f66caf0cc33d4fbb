#!/usr/bin/env python
"""Views benchmark: rebuild rate of every read model, beside the raw JetStream replay rate, and the
projection lag under a steady load, in one run.

    python bench/views.py [--events N] [--rate R] [--duration S] [--quick] [--audit]
                          [--one-process] [--profile DIR]

Starts embedded NATS and PostgreSQL (durable defaults: fsync on, JetStream file storage) in a temp
dir, publishes N events (default 1,000,000) in the shape of the contracts — a month of 24
committees: registrations, passes, passages, fevers, cases, seals, supplies, stock, a few event
types no view knows — then measures:
  1. raw JetStream ordered replay of the whole stream (no processing): the ceiling;
  2. `cordon views rebuild`'s code in a separate process: events/s from sequence 1 to the swap, and
     the process's resident memory as it goes (flat = does not grow with the stream). As the
     command runs it: the stream read there, the batches decoded and written by its own writer
     process (services/views/writer.py); --one-process: everything in the one process (as before
     issue 18); --profile DIR: py-spy of both into DIR/rebuild.txt;
  3. the views service (separate process, as `cordon up` runs it) under an open-loop load of R
     events/s for S seconds (after a warm-up, reported apart): lag from the scheduled publish to
     the event being in the read models (its sequence at or below the committed high-water mark,
     read every 5 ms), p50 / p99 / max;
  4. with --audit: the audit service's catch-up rate over the same stream, and `audit verify`'s.
Prints a table, then (last line of stdout) one JSON object. Figures only: nothing is asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from nats.js.api import ConsumerConfig, DeliverPolicy  # noqa: E402

from bench import common  # noqa: E402
from bench.common import pct  # noqa: E402
from shared import bus, envelope  # noqa: E402
from shared import log as logging  # noqa: E402
from shared.contracts import checkpoint as cp  # noqa: E402
from shared.contracts import logistics as lg  # noqa: E402
from shared.contracts import quarantine as qa  # noqa: E402
from shared.contracts import registry as rg  # noqa: E402
from shared.subjects import STREAM  # noqa: E402

TARGET_REBUILD, TARGET_LAG_P99_MS = 20_000, 500
CST = timezone(timedelta(hours=8))
now = time.perf_counter


# -- the stream -----------------------------------------------------------------------------------


def slug(community: str) -> str:
    """Ids are slugs (no dots): a community path made into an id prefix."""
    return community.replace(".", "-")


class Generator:
    """Events of a month in 24 committees, in the contracts' shape; the mix leans on gate passages."""

    MIX = [
        ("passage", 58), ("denied", 5), ("fever", 1), ("pass", 4), ("revoke", 1), ("checkin", 8),
        ("arrival", 3), ("verify", 2), ("case", 2), ("transfer", 1), ("release", 1), ("close", 1),
        ("request", 5), ("delivered", 3), ("refused", 1), ("welfare", 1), ("stock", 2), ("seal", 1),
        ("unknown", 1),
    ]

    def __init__(self, total: int, seed: int = 7):
        self.rng = random.Random(seed)
        self.total = total
        self.communities = [f"{d}.{s}.c{i}" for d in ("changning", "jingan", "putuo")
                            for s in ("s1", "s2") for i in range(4)]
        self.t0 = datetime(2020, 2, 1, 6, tzinfo=CST)
        self.kinds, weights = zip(*self.MIX)
        self.cum = [sum(weights[:i + 1]) for i in range(len(weights))]
        self.recent: dict[str, list] = {k: [] for k in ("pass", "arrival", "case", "request")}
        self.n = 0
        self.stock = {c: 0 for c in self.communities}

    def envelopes(self):
        """(subject, payload) pairs: first the registry of every committee, then the month."""
        yield from self.registry()
        yield from self.month()

    def registry(self):
        for c in self.communities:
            yield self._wrap(rg.CompoundRegistered, c, compound="x1", name="小区", buildings=["b1", "b2"],
                             gates=["g1", "g2"])
            for h in range(200):
                yield self._wrap(rg.HouseholdRegistered, c, compound="x1", building="b1",
                                 household=f"{slug(c)}-h{h}")
                for r in range(2):
                    yield self._wrap(rg.ResidentRegistered, c, compound="x1", building="b1",
                                     household=f"{slug(c)}-h{h}", resident=f"{slug(c)}-r{h * 2 + r}",
                                     display_name="王*伟")

    def month(self):
        while self.n < self.total:
            yield self._one()

    def _one(self):
        rng, c = self.rng, self.rng.choice(self.communities)
        kind = self.kinds[self._pick(rng.random() * self.cum[-1])]
        resident, household = f"{slug(c)}-r{rng.randrange(400)}", f"{slug(c)}-h{rng.randrange(200)}"
        gate = dict(compound="x1", gate="g1", temperature_c=36.5, resident=resident, household=household)
        match kind:
            case "passage":
                return self._wrap(cp.PassageAllowed, c, passage=uuid.uuid4().hex, direction=rng.choice(("in", "out")),
                                  **gate)
            case "denied":
                return self._wrap(cp.PassageDenied, c, passage=uuid.uuid4().hex, direction="out",
                                  reason="under_quarantine", **gate)
            case "fever":
                return self._wrap(cp.FeverDetected, c, passage=uuid.uuid4().hex, compound="x1", gate="g1",
                                  temperature_c=38.0, resident=resident)
            case "pass" | "revoke":
                if kind == "revoke" and self.recent["pass"]:
                    p, pc = self.recent["pass"].pop(rng.randrange(len(self.recent["pass"])))
                    return self._wrap(cp.PassRevoked, pc, pass_=p, compound="x1", household=household, reason="lost")
                p = self._remember("pass", (uuid.uuid4().hex, c))[0]
                return self._wrap(cp.PassIssued, c, pass_=p, compound="x1", household=household)
            case "checkin":
                return self._wrap(qa.CheckinRecorded, c, case=uuid.uuid4().hex, resident=resident,
                                  on=self._day())
            case "arrival" | "verify":
                if kind == "verify" and self.recent["arrival"]:
                    a, ac, ar = self.recent["arrival"].pop(0)
                    return self._wrap(rg.ArrivalVerified, ac, arrival=a, resident=ar, household=household,
                                      compound="x1", building="b1", outcome="cleared", documents_checked=True)
                a = self._remember("arrival", (uuid.uuid4().hex, c, resident))[0]
                return self._wrap(rg.ArrivalRegistered, c, arrival=a, resident=resident, household=household,
                                  compound="x1", building="b1", arrived_on=self._day(), city_class="A", risk_area_visited=True,
                                  requires_verification=True)
            case "case" | "transfer" | "release" | "close":
                cases = self.recent["case"]
                if kind != "case" and cases:
                    k, kc, kr = cases[rng.randrange(len(cases))]
                    if kind == "transfer":
                        return self._wrap(qa.CaseTransferred, kc, case=k, resident=kr, to="hospital")
                    if kind == "release":
                        return self._wrap(qa.CaseReleased, kc, case=k, resident=kr, on=self._day(),
                                          monitoring_until=self._day() + timedelta(days=7))
                    cases.remove((k, kc, kr))
                    return self._wrap(qa.CaseClosed, kc, case=k, resident=kr, on=self._day())
                k = self._remember("case", (uuid.uuid4().hex, c, resident))[0]
                return self._wrap(qa.CaseOpened, c, case=k, resident=resident, household=household, kind="home",
                                  reason="arrival", starts_on=self._day(), ends_on=self._day() + timedelta(days=13))
            case "request" | "delivered" | "refused" | "welfare":
                requests = self.recent["request"]
                if kind != "request" and requests:
                    q, qc = requests.pop(0)
                    if kind == "delivered":
                        return self._wrap(lg.DeliveryCompleted, qc, request=q, household=household, volunteer="v1",
                                          items=[], attempt=1)
                    if kind == "refused":
                        return self._wrap(lg.DeliveryFailed, qc, request=q, household=household, volunteer="v1",
                                          outcome="refused", attempt=1)
                    return self._wrap(lg.WelfareCheckRaised, qc, check=uuid.uuid4().hex, household=household,
                                      compound="x1", building="b1", request=q, vulnerabilities=["elderly_alone"])
                q = self._remember("request", (uuid.uuid4().hex, c))[0]
                return self._wrap(lg.SupplyRequested, c, request=q, household=household, compound="x1",
                                  building="b1", kind="food", items=[lg.ItemLine(item="vegetable-pack", qty=1)],
                                  priority=32)
            case "stock":
                self.stock[c] += rng.choice((100, -20))
                return self._wrap(lg.StockReceived, c, receipt=uuid.uuid4().hex, source="donation",
                                  items=[lg.StockLine(item="masks", qty=100, on_hand=self.stock[c])])
            case "seal":
                cls = rng.choice((qa.AreaSealed, qa.SealLifted))
                return self._wrap(cls, c, compound="x1", building=rng.choice(("b1", "b2")))
        return self._unknown(c, resident)

    def _pick(self, x: float) -> int:
        for i, bound in enumerate(self.cum):
            if x < bound:
                return i
        return len(self.cum) - 1

    def _remember(self, kind: str, item):
        bucket = self.recent[kind]
        bucket.append(item)
        if len(bucket) > 5000:
            del bucket[: len(bucket) - 5000]
        return item

    def _at(self) -> datetime:
        return self.t0 + timedelta(seconds=30 * 24 * 3600 * self.n / max(self.total, 1))

    def _day(self) -> date:
        return self._at().date()

    def _wrap(self, cls, community: str, **fields):
        when = self._at()
        values = {f: when for f in cls.__struct_fields__ if f.endswith("_at")}
        values.update({f: "staff:bench" for f in cls.__struct_fields__ if f.endswith("_by")})
        event = cls(community=community, **values, **fields)
        self.n += 1
        env = envelope.wrap(event, stream_id=f"bench:{self.n}", stream_version=1, occurred_at=when,
                            actor="staff:bench", correlation_id="bench", recorded_at=when)
        return f"cordon.evt.{community}.{cls.service}.{cls.__name__}", envelope.encode(env)

    def _unknown(self, community: str, resident: str):
        self.n += 1
        when = self._at().isoformat()
        body = {"event_id": str(uuid.uuid4()), "type": "VaccineGiven", "schema": 1, "stream_id": f"bench:{self.n}",
                "stream_version": 1, "community": community, "occurred_at": when, "recorded_at": when,
                "actor": "city:health", "correlation_id": "bench", "data": {"resident": resident}}
        return f"cordon.evt.{community}.registry.VaccineGiven", json.dumps(body).encode()


async def publish_all(js, total: int) -> tuple[int, float, int]:
    """Publish the generated stream with a Nats-Msg-Id per message, as the services' relays do."""
    gen, pending, size, started = Generator(total), [], 0, now()
    for subject, payload in gen.envelopes():
        pending.append(await js.publish_async(subject, payload, headers={"Nats-Msg-Id": str(uuid.uuid4())}))
        size += len(payload)
        if len(pending) >= 4000:
            await asyncio.wait_for(asyncio.gather(*pending), 60)
            pending.clear()
            print(f"\rpublished {gen.n:,}/{total:,}", end="", file=sys.stderr)
    await asyncio.wait_for(asyncio.gather(*pending), 60)
    print(file=sys.stderr)
    return gen.n, now() - started, size // max(gen.n, 1)


async def raw_replay(nc, total: int) -> float:
    """The whole stream through an ordered consumer into a callback that only counts."""
    js, done, count = nc.jetstream(), asyncio.Event(), [0]

    async def on_msg(msg):
        count[0] += 1
        if count[0] >= total:
            done.set()

    started = now()
    sub = await js.subscribe("cordon.evt.>", stream=STREAM, cb=on_msg, ordered_consumer=True,
                             config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    await asyncio.wait_for(done.wait(), 600)
    seconds = now() - started
    await sub.unsubscribe()
    return count[0] / seconds


# -- child processes ------------------------------------------------------------------------------


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def child_rebuild(url: str, dsn: str, batch: int, split: bool) -> None:
    """Runs the rebuild as `cordon views rebuild` does; prints progress as JSON lines."""
    from shared.config import city_zone
    from services.views.rebuild import rebuild

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    nc = await bus.connect(url, "bench.rebuild", os.environ.get("CORDON_NATS_CREDS"))
    last = [0.0]

    def progress(done: int, head: int, elapsed: float) -> None:
        if elapsed - last[0] >= 1.0 or done >= head:
            last[0] = elapsed
            print(json.dumps({"position": done, "head": head, "elapsed": elapsed, "rss_mb": rss_mb()}), flush=True)

    result = await rebuild(pool, nc, city_zone(), batch_max=batch, progress=progress,
                           writer_dsn=dsn if split else None)
    print(json.dumps({"done": True, "position": result.position, "applied": result.applied,
                      "seconds": result.seconds, "rss_mb": rss_mb()}), flush=True)
    await nc.drain()
    await pool.close()


# -- the bench ------------------------------------------------------------------------------------


class Bench(common.BenchBase):
    def __init__(self, args):
        super().__init__("cordon-bench-views-")
        self.args = args

    async def run(self) -> dict:
        a = self.args
        dsn = await self.start_servers()
        url = self.nats.url
        r: dict = {"bench": "views", "events_target": a.events}
        nc = await common.connect(url, pending_size=64 * 1024 * 1024)
        js = nc.jetstream(timeout=30)
        await bus.ensure_stream(js)
        print(f"servers up in {self.tmp}; publishing {a.events:,} events ...", file=sys.stderr)
        r["events"], seconds, r["event_bytes_avg"] = await publish_all(js, a.events)
        r["publish_per_s"] = r["events"] / seconds
        print("raw ordered replay ...", file=sys.stderr)
        r["raw_replay_per_s"] = await raw_replay(nc, r["events"])
        print("rebuild (separate process) ...", file=sys.stderr)
        await self.rebuild(url, dsn, r)
        print(f"views service under {a.rate:g} events/s for {a.duration:g} s ...", file=sys.stderr)
        await self.lag(nc, dsn, r)
        if a.audit:
            print("audit catch-up ...", file=sys.stderr)
            await self.audit(dsn, r)
        await nc.close()
        return r

    async def rebuild(self, url: str, dsn: str, r: dict) -> None:
        proc = self.spawn("rebuild", [sys.executable, str(Path(__file__).resolve()), "--child-rebuild", url, dsn,
                                      str(self.args.batch), "one" if self.args.one_process else "split"],
                           stdout=subprocess.PIPE)
        if self.args.profile:
            self.spy(proc.pid, None, self.args.profile / "rebuild.txt", children=True)
        samples, final = [], None
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, proc.stdout.readline)
            if not line:
                break
            if not line.startswith(b'{"'):
                continue
            rec = json.loads(line)
            if rec.get("done"):
                final = rec
            else:
                samples.append(rec)
                print(f"\r  {rec['position']:,}/{rec['head']:,} {rec['position'] / max(rec['elapsed'], 1e-9):,.0f} "
                      f"ev/s rss {rec['rss_mb']:.0f} MB", end="", file=sys.stderr)
        print(file=sys.stderr)
        if proc.wait() != 0 or final is None:
            raise RuntimeError(f"rebuild failed: {self.log_tail('rebuild')}")
        await self.spies_done()
        r["rebuild_per_s"] = final["position"] / final["seconds"]
        r["rebuild_s"] = final["seconds"]
        r["rebuild_applied"] = final["applied"]
        r["rebuild_ratio_to_raw_replay"] = r["rebuild_per_s"] / r["raw_replay_per_s"]
        at = {}
        for share in (0.2, 0.5, 1.0):
            first = next((s for s in samples if s["position"] >= share * final["position"]), samples[-1])
            at[share] = first["rss_mb"]
        r["rebuild_rss_mb_at_20_50_100_pct"] = [round(at[k], 1) for k in (0.2, 0.5, 1.0)]
        r["rebuild_rss_growth_20_to_100_pct_mb"] = at[1.0] - at[0.2]

    async def lag(self, nc, dsn: str, r: dict) -> None:
        a = self.args
        proc = self.service("views")
        conn = await asyncpg.connect(dsn)
        generation = await conn.fetchval("SELECT generation FROM views.current")
        mark = f"SELECT hwm FROM views_g{generation}.meta"
        js = nc.jetstream(timeout=10)
        head = (await js.stream_info(STREAM)).state.last_seq
        gen = Generator(a.events * 10, seed=11)
        gen.n = a.events  # the same month, later
        source = gen.month()
        await self.wait_mark(conn, mark, head, proc)
        await asyncio.sleep(a.settle)  # a service that has been running, not one starting
        scheduled: dict[int, float] = {}
        seen: list[tuple[int, float]] = []  # (high-water mark, when it was read)
        stop = asyncio.Event()

        async def poll() -> None:
            while not stop.is_set() or not scheduled or seen[-1][0] < max(scheduled):
                seen.append((await conn.fetchval(mark), now()))
                await asyncio.sleep(0.005)

        poller = asyncio.create_task(poll())
        started, sent, acks = now(), 0, []
        total = int(a.rate * (a.duration + a.warmup))
        while sent < total:
            due = started + sent / a.rate
            if (wait := due - now()) > 0:
                await asyncio.sleep(wait)
            subject, payload = next(source)
            fut = await js.publish_async(subject, payload, headers={"Nats-Msg-Id": str(uuid.uuid4())})
            fut.add_done_callback(lambda f, due=due: (not f.cancelled() and f.exception() is None
                                                      and scheduled.__setitem__(f.result().seq, due)))
            acks.append(fut)
            sent += 1
        await asyncio.wait_for(asyncio.gather(*acks), 30)
        r["lag_offered_per_s"] = a.rate
        r["lag_sent_per_s"] = sent / (now() - started)
        stop.set()
        await asyncio.wait_for(poller, 60)
        await conn.close()
        marks = [m for m, _ in seen]
        lags = [seen[bisect.bisect_left(marks, seq)][1] - due for seq, due in sorted(scheduled.items())]
        per_second = int(a.rate)
        r["lag_max_ms_per_second"] = [round(max(lags[i:i + per_second]) * 1000)
                                      for i in range(0, len(lags), per_second)]
        warmup = int(a.rate * a.warmup)
        r["lag_warmup_s"], r["lag_warmup_max_ms"] = a.warmup, max(lags[:warmup], default=0) * 1000
        lags = lags[warmup:]
        r["lag_events"] = len(lags)
        for k, p in (("p50", 50), ("p99", 99), ("max", 100)):
            r[f"lag_{k}_ms"] = pct(lags, p)

    async def wait_mark(self, conn, mark: str, head: int, proc, timeout: float = 120.0) -> None:
        deadline = now() + timeout
        while await conn.fetchval(mark) < head:
            if proc.poll() is not None or now() > deadline:
                raise RuntimeError(f"views service: {self.log_tail('views')}")
            await asyncio.sleep(0.05)

    async def audit(self, dsn: str, r: dict) -> None:
        conn = await asyncpg.connect(dsn)
        started = now()
        self.service("audit")
        target = r["events"]
        while True:
            hwm = await conn.fetchval("SELECT hwm FROM audit.head") if await conn.fetchval(
                "SELECT to_regclass('audit.head')") else 0
            if hwm >= target:
                break
            await asyncio.sleep(0.25)
        r["audit_catch_up_per_s"] = target / (now() - started)
        from services.audit import log as audit_log

        started = now()
        verdict = await audit_log.verify(conn)
        r["audit_verify_rows_per_s"] = verdict.rows / (now() - started)
        r["audit_verify_ok"] = verdict.ok
        await conn.close()


def table(r: dict) -> str:
    def f(v, unit=""):
        return "n/a" if v is None else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}") + (unit and f" {unit}")

    rows = [
        ("events in the stream / avg bytes", f"{r['events']:,} / {r['event_bytes_avg']} B", ""),
        ("publish_async (setting up the stream)", f(r["publish_per_s"], "ev/s"), ""),
        ("raw JetStream ordered replay", f(r["raw_replay_per_s"], "ev/s"), ""),
        ("rebuild of every read model", f(r["rebuild_per_s"], "ev/s"), f">= {TARGET_REBUILD:,} ev/s"),
        ("  ratio to raw replay", f"{r['rebuild_ratio_to_raw_replay']:.2f}", ""),
        ("  rebuild time / events applied", f"{r['rebuild_s']:.1f} s / {r['rebuild_applied']:,}", ""),
        ("  RSS at 20% / 50% / 100%", " / ".join(f"{v:.0f}" for v in r["rebuild_rss_mb_at_20_50_100_pct"]) + " MB",
         "flat"),
        (f"live at {r['lag_offered_per_s']:g} ev/s offered (sent)", f(r["lag_sent_per_s"], "ev/s"), ""),
        (f"  lag in the first {r['lag_warmup_s']:g} s (not counted): max", f(r["lag_warmup_max_ms"], "ms"), ""),
        (f"  lag p50 / p99 / max over {r['lag_events']:,} events",
         " / ".join(f(r[f"lag_{k}_ms"]) for k in ("p50", "p99", "max")) + " ms", f"p99 <= {TARGET_LAG_P99_MS} ms"),
    ]
    if "audit_catch_up_per_s" in r:
        rows.append(("audit catch-up (append + hash chain)", f(r["audit_catch_up_per_s"], "ev/s"), ""))
        rows.append((f"audit verify ({'OK' if r['audit_verify_ok'] else 'BROKEN'})",
                     f(r["audit_verify_rows_per_s"], "rows/s"), ""))
    lines = [f"{'measure':<42}{'figure':>30}   target", "-" * 86]
    lines += [f"{a:<42}{b:>30}   {c}" for a, b, c in rows]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-rebuild":
        logging.setup("json", "warning", stream=sys.stderr)
        asyncio.run(child_rebuild(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "split"))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="events in the stream to rebuild from")
    p.add_argument("--rate", type=float, default=2000.0, help="offered events/s in the lag phase")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of the lag phase")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before the lag is measured")
    p.add_argument("--settle", type=float, default=3.0, help="seconds the views service runs idle first")
    p.add_argument("--batch", type=int, default=5000, help="rebuild batch (messages per transaction)")
    p.add_argument("--audit", action="store_true", help="also measure the audit service's catch-up")
    p.add_argument("--quick", action="store_true", help="100,000 events, 10 s of lag phase")
    p.add_argument("--one-process", action="store_true",
                   help="rebuild in one process (as before the writer process), not reader + writer")
    p.add_argument("--profile", type=Path, help="py-spy the rebuild process into DIR/rebuild.txt")
    a = p.parse_args()
    if a.profile:
        a.profile.mkdir(parents=True, exist_ok=True)
    if a.quick:
        a.events, a.duration = min(a.events, 100_000), min(a.duration, 10.0)
    logging.setup("console", "warning", stream=sys.stderr)
    return common.run(Bench(a), table)


if __name__ == "__main__":
    sys.exit(main())
