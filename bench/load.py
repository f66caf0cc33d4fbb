#!/usr/bin/env python
"""The whole of Cordon under the demo's traffic: `cordon load` at a ladder of rates, against raw
NATS request/reply measured in the same run.

    python bench/load.py [--rates 250,500,1000,2000,3000] [--duration S] [--seed K] [--quick]

Starts embedded NATS and PostgreSQL (durable defaults) in a temp dir and every service as a child
process (as `cordon up` does), or uses the Cordon at CORDON_NATS_URL. Then:
  0. raw: a NATS echo responder in this process, the load generator's passage payloads, closed loop
     with 256 in flight as fast as it goes: what request/reply alone can carry on this machine;
  1. for each rate: `cordon load` (open loop, latency from the scheduled send time), the default mix
     (80 % passages by pass, arrivals, supply requests, mask reservations, visitors, households).
"Sustained" is the highest rate whose replies kept up (achieved >= 98 % of target) with p99 under
250 ms and no errors. Prints a table, then (last line of stdout) one JSON object. Nothing asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.demo import load, system  # noqa: E402
from shared import log  # noqa: E402
from services.demo.client import Api  # noqa: E402
from services.demo.tables import table  # noqa: E402

P99_LIMIT_MS = 250.0


async def raw(url: str, creds: str | None, duration: float, seed: int, in_flight: int = 256) -> dict:
    """Closed loop, ``in_flight`` outstanding, as fast as it goes: request/reply to an echo
    responder with the load generator's passage payloads, nothing behind it."""
    api = await Api.connect(url, creds)

    async def respond(msg) -> None:
        await msg.respond(b'{"ok": true}')

    sub = await api.nc.subscribe("cordon.cmd.bench.echo", cb=respond)
    try:
        site = load.site_for(seed, 100)
        site.passes = {h: "ABCDEFGHJK" for h in site.households}
        gen = load.Generator(site, {"passage": 1}, seed, "raw")
        stats = load.Stats()
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + duration

        async def worker() -> None:
            while loop.time() < deadline:
                _, call = gen.next(datetime.now(load.CST))
                t0 = loop.time()
                msg = await api.nc.request("cordon.cmd.bench.echo", json.dumps(call.body).encode(), timeout=10)
                stats.record("echo", loop.time() - t0, json.loads(msg.data))
                stats.sent += 1

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        stats.seconds = loop.time() - start
        return stats.summary(0, duration, seed, "raw")
    finally:
        await sub.unsubscribe()
        await api.close()


def sustained(runs: list[dict]) -> float:
    good = [r["rate_target"] for r in runs if r["rate_achieved"] >= 0.98 * r["rate_target"]
            and r["p99_ms"] <= P99_LIMIT_MS and not r["errors"] and not r["dropped"]]
    return max(good, default=0.0)


async def main(args) -> dict:
    rates = [float(r) for r in args.rates.split(",")]
    say = lambda line: print(f"bench/load: {line}", file=sys.stderr, flush=True)  # noqa: E731
    async with system.cordon(os.environ.get("CORDON_NATS_URL"), os.environ.get("CORDON_PG_DSN"), None, say,
                             os.environ.get("CORDON_NATS_CREDS")) as (url, creds):
        base = await raw(url, creds, args.duration, args.seed)
        say(f"raw request/reply, 256 in flight: {base['rate_achieved']:g}/s, p99 {base['p99_ms']} ms")
        runs = []
        for rate in rates:
            summary = await load.run_load(url, creds, rate=rate, duration=args.duration, seed=args.seed, say=say)
            say(f"{rate:g}/s: achieved {summary['rate_achieved']:g}/s, p50 {summary['p50_ms']} ms, "
                f"p99 {summary['p99_ms']} ms, errors {sum(summary['errors'].values())}")
            runs.append(summary)
    rows = [("raw request/reply (max)", "", base["rate_achieved"], base["p50_ms"], base["p90_ms"],
             base["p99_ms"], base["max_ms"], 0)]
    rows += [("cordon load", r["rate_target"], r["rate_achieved"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"],
              sum(r["errors"].values()) + r["dropped"]) for r in runs]
    print(table(("what", "target/s", "achieved/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"), rows))
    best = sustained(runs)
    out = {"bench": "load", "duration_s": args.duration, "seed": args.seed,
           "raw_rate_achieved": base["rate_achieved"], "raw_p99_ms": base["p99_ms"], "sustained_commands_per_s": best,
           "sustained_vs_raw": round(best / base["rate_achieved"], 3) if base["rate_achieved"] else None,
           "runs": [{k: r[k] for k in ("rate_target", "rate_achieved", "p50_ms", "p90_ms", "p99_ms", "max_ms",
                                       "errors", "dropped")} for r in runs]}
    print(f"sustained: {best:g} commands/s ({out['sustained_vs_raw']} of raw request/reply at "
          f"{base['rate_achieved']:g}/s)")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="250,500,1000,2000,3000")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="rates 500,2000 for 5 s each")
    ns = parser.parse_args()
    log.setup("console", "warning")  # stdout is for the table and the JSON line
    if ns.quick:
        ns.rates, ns.duration = "500,2000", 5.0
    print(json.dumps(asyncio.run(main(ns))))
