#!/usr/bin/env python
"""The web gateway against NATS: the same commands over HTTP (`cordon web`) and over NATS, at the
same rates, alternated, in one run; and how soon a committee's live board shows a command.

    python bench/web.py [--rate R] [--duration S] [--rounds N] [--ladder 250,500,...] [--pool P] [--quick]

Starts embedded NATS (operator mode) and PostgreSQL (durable defaults) in a temp dir, every service
as `cordon up` runs it (`cordon service NAME`, each with its own credentials) and `cordon web` as a
process. Sets up, over NATS as an operator: a compound of --households households, each with a
pass. Then, as one staff identity of the community (creds minted by the run's authority; the same
identity on both transports, so the server's permissions and the services' checks are the same):
  0. raw limits, closed loop with --pool requests outstanding: GET /healthz (uvicorn, Starlette and
     aiohttp, nothing behind them) and NATS request/reply to an echo responder in this process;
  1. fixed rate: the mix (80 % check_passage by pass number, 20 % register_household) at --rate/s
     for --duration s, open loop (latency from the scheduled send time), over HTTP (aiohttp
     ClientSession, keep-alive, a pool of --pool connections, the session's bearer token) and over
     NATS (the staff's own connection, the community's scoped subjects), alternated --rounds times;
  2. ladder: each rate of --ladder for --step s, HTTP then NATS; a transport's sustained rate is the
     highest whose replies kept up (achieved >= 98 % of target) with p99 <= 250 ms and no errors
     (as bench/load.py); a transport stops climbing at its first rate that does not;
  3. live board: GET /board/events as the staff (server-sent events), then --samples gate checks
     one at a time, --gap s apart: the time from each reply to the next `event: board` message.
     Measures nothing, and says so, when the gateway has no board.
Prints a table, then (last line of stdout) one JSON object. Figures only: nothing is asserted.
Target (printed): HTTP carries >= 50 % of the NATS rate.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import nats  # noqa: E402
from nats.aio.client import RawCredentials  # noqa: E402

from bench import common  # noqa: E402
from bench.common import cpu_s, decode_reply, pct  # noqa: E402
from services.demo.client import Api, cmd  # noqa: E402
from services.supervisor import wait_ready, wait_web  # noqa: E402
from shared import log as logging  # noqa: E402
from shared.auth import inbox_prefix  # noqa: E402
from shared.identity import Identity  # noqa: E402

COMMUNITY = "changning.chengjiaqiao.nangong"
COMPOUND = "bench-1"
STAFF = Identity(name="bench-staff", role="staff", scope=COMMUNITY)
SERVICES = ("registry", "checkpoint", "quarantine", "logistics", "views", "audit")
TARGET_RATIO, P99_LIMIT_MS = 0.5, 250.0
MAX_IN_FLIGHT = 20_000  # beyond this a command is counted dropped instead of sent (as cordon load)
ECHO = "bench.echo"
now = time.perf_counter


# -- what is sent -----------------------------------------------------------------------------------

class Mix:
    """The commands of the load: 80 % check_passage by a household's pass number, 20 %
    register_household; bodies from templates, each with a command id of its own."""

    def __init__(self, passes: list[str], seed: int = 7):
        rng = random.Random(seed)
        self.run = f"{int(time.time() * 1000) % 0xFFFFFF:x}"
        self.n = 0
        self.templates = [self._template(rng, passes) for _ in range(1000)]

    @staticmethod
    def _template(rng: random.Random, passes: list[str]) -> tuple[str, str, str]:
        common = {"command_id": "@ID@", "actor": STAFF.actor, "community": COMMUNITY, "compound": COMPOUND}
        if rng.random() < 0.8:
            body = {**common, "gate": rng.choice(["g1", "g2"]), "direction": rng.choice(["in", "out"]),
                    "temperature_c": round(rng.uniform(35.8, 37.2), 1), "pass": rng.choice(passes)}
            return "checkpoint", "check_passage", json.dumps(body)
        body = {**common, "building": f"b{rng.randint(1, 10)}", "address": "room @ID@"}
        return "registry", "register_household", json.dumps(body)

    def next(self) -> tuple[str, str, bytes]:
        self.n += 1
        service, command, body = self.templates[self.n % len(self.templates)]
        return service, command, body.replace("@ID@", f"w-{self.run}-{self.n}").encode()


class Http:
    """Commands as an HTTP client sends them: aiohttp with keep-alive, a pool of connections, the
    session's bearer token. (Not httpx, which `cordon feed` uses: its connection pool costs 2-6 ms
    of client CPU a request on this machine, and more with many requests waiting for a connection,
    so that the client, not the gateway, was what the figures measured; aiohttp's costs 0.35 ms.)"""

    name = "http"

    def __init__(self, base: str, token: str, pool: int, timeout: float):
        self.base = base
        self.client = aiohttp.ClientSession(
            headers={"authorization": f"Bearer {token}"}, timeout=aiohttp.ClientTimeout(total=timeout),
            connector=aiohttp.TCPConnector(limit=pool))

    async def send(self, service: str, command: str, body: bytes) -> bytes:
        async with self.client.post(f"{self.base}/v1/commands/{service}/{command}", data=body,
                                    headers={"content-type": "application/json"}) as reply:
            return await reply.read()

    async def raw(self) -> bytes:
        async with self.client.get(f"{self.base}/healthz") as reply:
            return await reply.read()

    async def close(self) -> None:
        await self.client.close()


class Nats:
    """The same commands on the staff's own NATS connection, on the community's scoped subjects."""

    name = "nats"

    def __init__(self, nc, timeout: float):
        self.nc, self.timeout = nc, timeout

    async def send(self, service: str, command: str, body: bytes) -> bytes:
        return (await self.nc.request(f"cordon.cmd.{service}.{command}.{COMMUNITY}", body,
                                      timeout=self.timeout)).data


# -- the loads -------------------------------------------------------------------------------------

class Phase:
    """What one load phase got back: latencies of the replies, errors by kind."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: collections.Counter = collections.Counter()
        self.sent = self.dropped = 0
        self.seconds = 0.0
        self.client_cpu_s = 0.0

    def summary(self, rate: float) -> dict:
        return {"rate_target": rate, "sent": self.sent, "completed": len(self.latencies), "dropped": self.dropped,
                "rate_achieved": len(self.latencies) / self.seconds if self.seconds else 0.0,
                "p50_ms": pct(self.latencies, 50), "p99_ms": pct(self.latencies, 99),
                "max_ms": pct(self.latencies, 100), "errors": sum(self.errors.values()),
                "error_kinds": dict(self.errors),
                "client_cpu_us_per_request": self.client_cpu_s / max(1, self.sent) * 1e6}


async def open_loop(transport, mix: Mix, rate: float, duration: float) -> Phase:
    """``rate`` commands a second for ``duration`` s, each on schedule whatever the replies do;
    latency from the scheduled send time (no coordinated omission)."""
    phase, pending = Phase(), set()
    cpu0, start = time.process_time(), now()

    async def one(service: str, command: str, body: bytes, due: float) -> None:
        try:
            reply = decode_reply(await transport.send(service, command, body))
        except Exception as exc:  # noqa: BLE001 - a timeout, a refused connection: an error of its kind
            phase.errors[type(exc).__name__] += 1
            return
        if not reply.ok:
            phase.errors[f"{command}: {(reply.error or {}).get('code')}"] += 1
            return
        phase.latencies.append(now() - due)

    for i in range(int(rate * duration)):
        due = start + i / rate
        if (delay := due - now()) > 0.002:
            await asyncio.sleep(delay)
        if len(pending) >= MAX_IN_FLIGHT:
            phase.dropped += 1
            continue
        task = asyncio.ensure_future(one(*mix.next(), min(due, now())))
        pending.add(task)
        task.add_done_callback(pending.discard)
        phase.sent += 1
    if pending:
        await asyncio.wait(pending)
    phase.seconds = max(now() - start, duration)  # replies that lag behind lower the rate
    phase.client_cpu_s = time.process_time() - cpu0
    return phase


async def closed_loop(call, seconds: float, concurrency: int) -> tuple[float, float | None]:
    """As fast as it goes with ``concurrency`` outstanding: (requests/s, p99 ms)."""
    latencies: list[float] = []
    t0 = now()

    async def worker() -> None:
        while now() - t0 < seconds:
            started = now()
            await call()
            latencies.append(now() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (now() - t0), pct(latencies, 99)


def sustained(runs: list[dict]) -> float:
    good = [r["rate_target"] for r in runs if r["rate_achieved"] >= 0.98 * r["rate_target"]
            and (r["p99_ms"] or 0) <= P99_LIMIT_MS and not r["errors"] and not r["dropped"]]
    return max(good, default=0.0)


# -- the live board ---------------------------------------------------------------------------------

async def board_latency(base: str, token: str, check, samples: int, gap: float) -> dict:
    """From a gate check's reply to the next ``event: board`` message of the staff's live board."""
    arrivals: asyncio.Queue[float] = asyncio.Queue()

    async def read(lines) -> None:
        event = None
        async for line in lines:
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line == "" and event is not None:
                if event == "board":
                    arrivals.put_nowait(now())
                event = None

    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=None)) as client:
        async with client.stream("GET", "/board/events", headers={"authorization": f"Bearer {token}"}) as stream:
            if stream.status_code != 200:
                return {"board": f"not measured: GET /board/events answered {stream.status_code} "
                                 "(no live board in this gateway)"}
            reader = asyncio.create_task(read(stream.aiter_lines()))
            try:
                await asyncio.wait_for(arrivals.get(), 30)  # the board as the page opens
                latencies = []
                for _ in range(samples):
                    await asyncio.sleep(gap)
                    while not arrivals.empty():
                        arrivals.get_nowait()
                    await check()
                    replied = now()
                    # the message may come before this task reads the reply: that counts as 0
                    latencies.append(max(0.0, await asyncio.wait_for(arrivals.get(), 30) - replied))
            finally:
                reader.cancel()
    return {"board": "measured", "board_samples": len(latencies), "board_p50_ms": pct(latencies, 50),
            "board_p99_ms": pct(latencies, 99), "board_max_ms": pct(latencies, 100)}


# -- the run ----------------------------------------------------------------------------------------

async def echo(nc) -> None:
    reply = b'{"ok":true}'

    async def on(msg) -> None:
        await nc.publish(msg.reply, reply)

    await nc.subscribe(ECHO, cb=on)


class Bench(common.BenchBase):
    """The servers, the services and the gateway of one run."""

    def __init__(self, args):
        super().__init__("cordon-bench-web-")
        self.args = args
        self.port = 0

    async def start(self) -> None:
        await self.start_servers()
        for name in SERVICES:
            self.service(name)
        with socket.socket() as probe:  # a free port for the gateway
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.web = self.spawn("web", [sys.executable, "-m", "services.cli", "web", "--port", str(self.port)],
                              {"CORDON_NATS_CREDS": str(self.authority.service_creds("web"))})
        await wait_ready(self.nats.url, list(SERVICES), timeout=90, creds=str(self.authority.admin_creds()))
        await wait_web(self.port, timeout=90)

    async def set_up(self, admin: Api) -> list[str]:
        """The compound, its households and one pass each; the pass numbers."""
        h = self.args.households
        body = dict(actor="operator:bench", community=COMMUNITY, compound=COMPOUND)
        await admin.many([cmd("registry", "register_compound", command_id="setup-compound", **body, name="压测小区",
                              buildings=[f"b{i}" for i in range(1, 11)], gates=["g1", "g2"])])
        replies = await admin.many([cmd("registry", "register_household", command_id=f"setup-h{i}", **body,
                                        building=f"b{i % 10 + 1}", address=f"room {i}") for i in range(h)])
        if not all(r.get("ok") for r in replies):
            raise RuntimeError(f"set-up refused: {next(r for r in replies if not r.get('ok'))}")
        await admin.settle(timeout=120)
        issued = (await admin.many([cmd("checkpoint", "issue_passes", command_id="setup-passes", **body,
                                        all_households=True)]))[0]
        if not issued.get("ok"):
            raise RuntimeError(f"issue_passes refused: {issued}")
        await admin.settle(timeout=120)
        return [p["number"] for p in issued["passes"]]

    async def run(self) -> dict:
        a = self.args
        print(f"starting NATS, PostgreSQL, {', '.join(SERVICES)} and web in {self.tmp} ...", file=sys.stderr)
        await self.start()
        base = f"http://127.0.0.1:{self.port}"
        r: dict = {"bench": "web", "rate": a.rate, "duration_s": a.duration, "rounds": a.rounds, "pool": a.pool,
                   "households": a.households, "load_average_at_start": os.getloadavg()[0]}
        admin = Api(await common.connect(self.nats.url, name="bench.admin", pending_size=8 << 20), in_flight=64)
        _, creds = self.authority.user_creds(STAFF)
        staff_nc = await nats.connect(self.nats.url, user_credentials=RawCredentials(creds), name="bench.staff",
                                      inbox_prefix=inbox_prefix(STAFF), pending_size=8 << 20)
        async with httpx.AsyncClient(base_url=base) as login:
            token = (await login.post("/v1/tokens", content=creds, headers={"content-type": "text/plain"})).json()["token"]
        http, bus = Http(base, token, a.pool, a.timeout), Nats(staff_nc, a.timeout)
        try:
            print(f"setting up {a.households} households and their passes ...", file=sys.stderr)
            mix = Mix(await self.set_up(admin))
            await self.raw_limits(r, http, admin.nc)
            await self.fixed(r, (http, bus), mix, admin)
            await self.ladder(r, (http, bus), mix, admin)
            await admin.settle(timeout=120)
            print(f"live board: {a.samples} gate checks ...", file=sys.stderr)
            r.update(await board_latency(base, token, lambda: bus.send(*mix_check(mix)), a.samples, a.gap))
            r["errors"] = r["http_errors"] + r["nats_errors"]
            return r
        finally:
            await http.close()
            await staff_nc.close()
            await admin.nc.close()

    async def raw_limits(self, r: dict, http: Http, nc) -> None:
        a = self.args
        print(f"raw limits: {a.pool} outstanding, {a.step:g} s each ...", file=sys.stderr)
        await echo(nc)
        r["raw_http_max_per_s"], r["raw_http_p99_ms"] = await closed_loop(http.raw, a.step, a.pool)
        r["raw_nats_max_per_s"], r["raw_nats_p99_ms"] = await closed_loop(
            lambda: nc.request(ECHO, b"{}", timeout=a.timeout), a.step, a.pool)

    async def fixed(self, r: dict, transports, mix: Mix, admin: Api) -> None:
        a = self.args
        phases: dict[str, list[Phase]] = {t.name: [] for t in transports}
        web_cpu = 0.0
        for n in range(a.rounds):
            for transport in transports if n % 2 == 0 else reversed(transports):
                await admin.settle(timeout=120)  # each phase starts with nothing left behind the last
                print(f"fixed rate, round {n + 1}: {transport.name} at {a.rate:g}/s for {a.duration:g} s ...",
                      file=sys.stderr)
                cpu0 = cpu_s(self.web.pid)
                phases[transport.name].append(await open_loop(transport, mix, a.rate, a.duration))
                if transport.name == "http":
                    web_cpu += cpu_s(self.web.pid) - cpu0
        for name, runs in phases.items():
            merged = Phase()
            for p in runs:
                merged.latencies += p.latencies
                merged.errors.update(p.errors)
                merged.sent += p.sent
                merged.dropped += p.dropped
                merged.seconds += p.seconds
                merged.client_cpu_s += p.client_cpu_s
            s = merged.summary(a.rate)
            for key in ("rate_achieved", "p50_ms", "p99_ms", "max_ms", "errors", "error_kinds", "dropped",
                        "client_cpu_us_per_request"):
                r[f"{name}_{key}"] = s[key]
        r["web_cpu_us_per_request"] = web_cpu / max(1, sum(p.sent for p in phases["http"])) * 1e6
        r["ratio_http_to_nats_fixed"] = r["http_rate_achieved"] / r["nats_rate_achieved"]

    async def ladder(self, r: dict, transports, mix: Mix, admin: Api) -> None:
        a = self.args
        runs: dict[str, list[dict]] = {t.name: [] for t in transports}
        climbing = {t.name for t in transports}
        for rate in a.ladder:
            for transport in transports:
                if transport.name not in climbing:
                    continue
                await admin.settle(timeout=120)
                s = (await open_loop(transport, mix, rate, a.step)).summary(rate)
                print(f"ladder {transport.name} {rate:g}/s: achieved {s['rate_achieved']:,.0f}/s, "
                      f"p99 {s['p99_ms'] or 0:,.1f} ms, errors {s['errors']}", file=sys.stderr)
                runs[transport.name].append({k: s[k] for k in ("rate_target", "rate_achieved", "p50_ms", "p99_ms",
                                                               "errors", "dropped")})
                if sustained(runs[transport.name][-1:]) < rate:
                    climbing.discard(transport.name)
        for name, steps in runs.items():
            r[f"{name}_sustained_per_s"] = sustained(steps)
            r[f"{name}_ladder"] = steps
        nats_best = r["nats_sustained_per_s"]
        r["ratio_http_to_nats_sustained"] = r["http_sustained_per_s"] / nats_best if nats_best else None


def mix_check(mix: Mix) -> tuple[str, str, bytes]:
    """The next gate check of the mix (a household's pass at a gate)."""
    while True:
        service, command, body = mix.next()
        if command == "check_passage":
            return service, command, body


def table(r: dict) -> str:
    def f(v, unit=""):
        return "n/a" if v is None else f"{v:,.0f}{unit}" if v >= 100 else f"{v:.2f}{unit}"

    def ratio(v):
        return "n/a" if v is None else f"{v:.2f}"

    rows = [
        (f"raw: GET /healthz, {r['pool']} outstanding", f(r["raw_http_max_per_s"], " /s"), ""),
        (f"raw: NATS request/reply to an echo, {r['pool']} outstanding", f(r["raw_nats_max_per_s"], " /s"), ""),
        (f"HTTP at {r['rate']:g}/s: achieved", f(r["http_rate_achieved"], " /s"), ""),
        ("  p50 / p99 / max", " / ".join(f(r[f"http_{k}_ms"]) for k in ("p50", "p99", "max")) + " ms", ""),
        (f"NATS at {r['rate']:g}/s: achieved", f(r["nats_rate_achieved"], " /s"), ""),
        ("  p50 / p99 / max", " / ".join(f(r[f"nats_{k}_ms"]) for k in ("p50", "p99", "max")) + " ms", ""),
        ("HTTP / NATS rate at the fixed rate", ratio(r["ratio_http_to_nats_fixed"]), f">= {TARGET_RATIO:g}"),
        ("highest rate sustained: HTTP", f(r["http_sustained_per_s"], " /s"), ""),
        ("highest rate sustained: NATS", f(r["nats_sustained_per_s"], " /s"), ""),
        ("HTTP / NATS highest rate sustained", ratio(r["ratio_http_to_nats_sustained"]), f">= {TARGET_RATIO:g}"),
        ("CPU per request: gateway process", f(r["web_cpu_us_per_request"], " µs"), ""),
        ("CPU per request: this client, HTTP / NATS",
         f"{r['http_client_cpu_us_per_request']:,.0f} / {r['nats_client_cpu_us_per_request']:,.0f} µs", ""),
    ]
    if r.get("board") == "measured":
        rows.append((f"live board: reply -> event: board ({r['board_samples']}), p50 / p99",
                     f"{f(r['board_p50_ms'])} / {f(r['board_p99_ms'])} ms", ""))
    else:
        rows.append(("live board", r.get("board", "not measured"), ""))
    rows += [("errors (HTTP / NATS)", f"{r['http_errors']} / {r['nats_errors']}", "0"),
             ("machine load average at start (2 cores, shared)", f"{r['load_average_at_start']:.2f}", "")]
    lines = [f"{'measure':<58}{'figure':>24}   target", "-" * 94]
    lines += [f"{a:<58}{b:>24}   {c}" for a, b, c in rows]
    if r["errors"]:
        lines.append(f"RUN HAD ERRORS: {r['http_error_kinds']} {r['nats_error_kinds']}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=500.0, help="commands/s of the fixed-rate phases")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of each fixed-rate phase")
    p.add_argument("--rounds", type=int, default=2, help="fixed-rate phases per transport, alternated")
    p.add_argument("--ladder", default="250,500,1000,1500,2000,3000", help="rates of the ladder, commands/s")
    p.add_argument("--step", type=float, default=5.0, help="seconds of each ladder step and raw phase")
    p.add_argument("--pool", type=int, default=64, help="HTTP connections (and outstanding requests when raw)")
    p.add_argument("--households", type=int, default=500)
    p.add_argument("--samples", type=int, default=40, help="gate checks timed to the live board")
    p.add_argument("--gap", type=float, default=0.5, help="seconds between them (the board coalesces 150 ms)")
    p.add_argument("--timeout", type=float, default=10.0, help="request timeout, seconds")
    p.add_argument("--quick", action="store_true", help="short phases: one round, a shorter ladder")
    a = p.parse_args()
    if a.quick:
        a.duration, a.rounds, a.step, a.samples = min(a.duration, 5.0), 1, min(a.step, 3.0), min(a.samples, 15)
        a.ladder = ",".join(x for x in a.ladder.split(",") if float(x) <= 2000)
    a.ladder = [float(x) for x in a.ladder.split(",")]
    logging.setup("console", "warning", stream=sys.stderr)
    return common.run(Bench(a), table)


if __name__ == "__main__":
    sys.exit(main())
