#!/usr/bin/env python
"""Cordon against the usual Python event store, side by side in one run (issue 18).

    python bench/peer.py [--duration S] [--quick] [--threads 1,4,8] [--concurrency N]

The usual way to event-source in Python is the ``eventsourcing`` library on PostgreSQL (a
``bench`` extra: ``pip install -e '.[bench]'``). On one embedded PostgreSQL (and NATS), this run:
  1. measures the raw limits (JetStream ``publish_async``, PostgreSQL executemany and autocommit);
  2. the library: an ``Application`` saving new one-event aggregates (a resident registered), from
     1, 4 and 8 threads, each with a connection pool of that size, for ``--duration`` s each;
  3. Cordon's registry end to end, as ``bench/backbone.py`` phase (a): ``register_resident`` /
     ``register_arrival`` / ``register_household`` requests, N outstanding, each counted when a
     durable consumer in its own process has handled its event (request → commit → JetStream →
     consumer);
  then 2 and 3 again (alternated: this machine's speed drifts). Prints a table, then (last line of
  stdout) one JSON object with both figures and the ratio of Cordon to the library's best thread
  count. Figures only: nothing is asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import backbone, common  # noqa: E402
from bench.common import raw_js, raw_pg  # noqa: E402
from shared import log as logging  # noqa: E402
from shared.embedded import ensure_database  # noqa: E402

now = time.perf_counter


@functools.cache
def peer_classes():
    """The library's aggregate and application (defined once: the library keys classes by topic)."""
    try:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate
    except ImportError:
        sys.exit("bench/peer.py needs the eventsourcing library: pip install -e '.[bench]'")

    class Resident(Aggregate):
        def __init__(self, household: str, display_name: str, vulnerabilities: list[str]):
            self.household = household
            self.display_name = display_name
            self.vulnerabilities = vulnerabilities

    class Registry(Application):
        def register(self, household: str, display_name: str) -> None:
            self.save(Resident(household, display_name, ["elderly_alone"]))

    return Registry


def peer_app(dsn: str, pool: int):
    """An ``eventsourcing`` application on the PostgreSQL of ``dsn``, with a pool of ``pool``."""
    Registry = peer_classes()
    parts = urlsplit(dsn)
    return Registry(env={
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")), "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(parts.port), "POSTGRES_USER": parts.username or os.environ.get("USER", "postgres"),
        "POSTGRES_PASSWORD": parts.password or "trust",  # the embedded server trusts loopback
        "POSTGRES_POOL_SIZE": str(pool), "POSTGRES_MAX_OVERFLOW": "0",
    })


def peer_rate(dsn: str, threads: int, seconds: float) -> float:
    """Events/s of the library saving new one-event aggregates from ``threads`` threads."""
    app = peer_app(dsn, threads)
    counts = [0] * threads
    stop = threading.Event()

    def worker(i: int) -> None:
        while not stop.is_set():
            app.register(f"household-{i}", "王*伟")
            counts[i] += 1

    app.register("warm-up", "王*伟")  # the tables exist, the pool has a connection
    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    t0 = now()
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    elapsed = now() - t0
    app.close()
    return sum(counts) / elapsed


class Peer(backbone.Bench):
    """The servers, the registry and its downstream consumer, and the library's application."""

    async def run(self) -> dict:
        a = self.args
        dsn = await self.start_servers()
        peer_dsn = await ensure_database(self.pg.dsn, "peer")
        r = {"bench": "peer", "duration_s": a.duration, "concurrency": a.concurrency, "threads": a.threads}
        print(f"servers up in {self.tmp}; raw phases {a.raw_duration:g} s each ...", file=sys.stderr)
        r["raw_js_publish_per_s"] = await raw_js(self.nats.url, a.raw_duration)
        r["raw_pg_executemany_rows_per_s"], r["raw_pg_autocommit_rows_per_s"] = await raw_pg(dsn, a.raw_duration)
        self.registry = self.service("registry")
        nc = await common.connect(self.nats.url, name="bench.load", pending_size=8 << 20)
        consumer = reader = None
        try:
            await self.wait_service(nc)
            consumer, reader, consumed = await self.downstream(dsn)
            load = backbone.Load(nc, consumed, timeout=a.timeout)
            out, _, _ = await load.closed(60, a.concurrency, "register_household", count=a.households)
            out.update((await load.closed(60, a.concurrency, "register_resident", count=a.residents))[0])
            await load.drain(out)
            load.take_errors(r, "warmup")
            for round_ in (1, 2):
                for n in a.threads:
                    print(f"round {round_}: eventsourcing, {n} thread(s), {a.duration:g} s ...", file=sys.stderr)
                    rate = await asyncio.to_thread(peer_rate, peer_dsn, n, a.duration)
                    r[f"peer_r{round_}_t{n}_events_per_s"] = rate
                print(f"round {round_}: Cordon end to end, {a.concurrency} outstanding, {a.duration:g} s ...",
                      file=sys.stderr)
                out, t0, t1 = await load.closed(a.duration, a.concurrency)
                await load.drain(out)
                t_end = max((consumed[c] for c in out if c in consumed), default=t1)
                r[f"cordon_r{round_}_commands_per_s"] = len(out) / (t_end - t0)
                load.take_errors(r, f"cordon_r{round_}")
            summarise(r, a.threads)
            return r
        finally:
            if reader is not None:
                reader.cancel()
            if consumer is not None and consumer.returncode is None:
                consumer.terminate()
                await consumer.wait()
            await nc.close()

    async def downstream(self, dsn: str):
        """bench/backbone.py's consumer child (its own process), and the map of what it handled."""
        consumed: dict[str, float] = {}
        consumer = await asyncio.create_subprocess_exec(
            sys.executable, backbone.__file__, "--consumer-child", self.nats.url, dsn,
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
        return consumer, reader, consumed


def summarise(r: dict, threads: list[int]) -> None:
    """Each side's figure is its mean over the two rounds; the library's is its best thread count."""
    for n in threads:
        r[f"peer_t{n}_events_per_s"] = (r[f"peer_r1_t{n}_events_per_s"] + r[f"peer_r2_t{n}_events_per_s"]) / 2
    best = max(threads, key=lambda n: r[f"peer_t{n}_events_per_s"])
    r["peer_best_threads"], r["peer_best_events_per_s"] = best, r[f"peer_t{best}_events_per_s"]
    r["cordon_commands_per_s"] = (r["cordon_r1_commands_per_s"] + r["cordon_r2_commands_per_s"]) / 2
    r["ratio_cordon_to_peer"] = r["cordon_commands_per_s"] / r["peer_best_events_per_s"]
    r["peer_ratio_to_raw_pg_autocommit"] = r["peer_best_events_per_s"] / r["raw_pg_autocommit_rows_per_s"]
    r["errors"] = r["warmup_errors"] + r["cordon_r1_errors"] + r["cordon_r2_errors"]


def table(r: dict) -> str:
    lines = [f"raw JetStream publish_async      {r['raw_js_publish_per_s']:>10,.0f} msg/s",
             f"raw PostgreSQL executemany       {r['raw_pg_executemany_rows_per_s']:>10,.0f} rows/s",
             f"raw PostgreSQL autocommit        {r['raw_pg_autocommit_rows_per_s']:>10,.0f} rows/s"]
    for n in r["threads"]:
        lines.append(f"eventsourcing, {n} thread(s)        {r[f'peer_t{n}_events_per_s']:>10,.0f} events/s "
                     f"(rounds {r[f'peer_r1_t{n}_events_per_s']:,.0f} / {r[f'peer_r2_t{n}_events_per_s']:,.0f})")
    lines.append(f"Cordon end to end (published, consumed) {r['cordon_commands_per_s']:>7,.0f} commands/s "
                 f"(rounds {r['cordon_r1_commands_per_s']:,.0f} / {r['cordon_r2_commands_per_s']:,.0f})")
    lines.append(f"Cordon / eventsourcing at {r['peer_best_threads']} thread(s): {r['ratio_cordon_to_peer']:.1f}x")
    if r.get("errors"):
        lines.append(f"RUN HAD ERRORS: {r['errors']}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=15.0, help="seconds per measured phase")
    p.add_argument("--quick", action="store_true", help="short phases (about a minute in all)")
    p.add_argument("--threads", default="1,4,8", help="the library's thread counts, comma-separated")
    p.add_argument("--concurrency", type=int, default=256, help="Cordon's outstanding requests")
    p.add_argument("--timeout", type=float, default=10.0, help="request timeout, seconds")
    a = p.parse_args()
    a.threads = [int(n) for n in a.threads.split(",")]
    if a.quick:
        a.duration = min(a.duration, 4.0)
    a.raw_duration = 2.0 if a.quick else 5.0
    a.households, a.residents = (100, 1000) if a.quick else (300, 3000)
    a.profile = None
    logging.setup("console", "warning", stream=sys.stderr)
    return common.run(Peer(a), table)


if __name__ == "__main__":
    sys.exit(main())
