"""`cordon report` and `cordon views rebuild`, registered on the `cordon` parser by ``add_commands``.

    cordon report --scope changning --on 2020-02-17 [--format csv|json]   the daily report (rollup)
    cordon views rebuild [--batch N] [--keep-old]                         rebuild every read model

Each command sets ``run(args, config) -> exit code`` on its parser.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from shared import bus
from shared.config import CREDS_HELP, Config
from shared.subjects import query_subject


def add_commands(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="the daily report of a scope (city, district, street, "
                                           "community) as CSV or JSON, from the views service")
    report.add_argument("--scope", required=True, help="city, a district, district.street or a community")
    report.add_argument("--on", default=None, help="YYYY-MM-DD (default: today in the city)")
    report.add_argument("--format", choices=("csv", "json"), default="csv")
    report.add_argument("--nats-url", default=None)
    report.add_argument("--timeout", type=float, default=10.0)
    report.add_argument("--creds", default=None, help=CREDS_HELP)
    report.set_defaults(run=run_report)
    views = sub.add_parser("views", help="operate the read models")
    views_sub = views.add_subparsers(dest="views_cmd", required=True)
    rebuild = views_sub.add_parser("rebuild", help="rebuild every read model from the stream beside "
                                                   "the current ones, then swap (progress on stderr)")
    rebuild.add_argument("--batch", type=int, default=5000, help="stream messages per transaction")
    rebuild.add_argument("--keep-old", action="store_true", help="keep the old generation's schema")
    rebuild.add_argument("--creds", default=None, help=CREDS_HELP)
    rebuild.set_defaults(run=run_rebuild)


def run_report(args: argparse.Namespace, config: Config) -> int:
    url = args.nats_url or config.nats_url
    if not url:
        print("cordon: set CORDON_NATS_URL or pass --nats-url", file=sys.stderr)
        return 2
    return asyncio.run(_report(url, args.scope, args.on, args.format, args.timeout, config.nats_creds))


async def _report(url: str, scope: str, on: str | None, fmt: str, timeout: float, creds: str | None = None) -> int:
    import nats

    from services.views import board
    from shared.bus import servers

    query = {"scope": scope, "detail": True, **({"on": on} if on else {})}
    nc = await nats.connect(servers(url), connect_timeout=2, max_reconnect_attempts=1, **bus.credentials(creds))
    try:
        msg = await nc.request(query_subject("rollup"), json.dumps(query).encode(), timeout=timeout)
    except Exception as exc:
        print(f"cordon: no reply from the views service: {type(exc).__name__} {exc}", file=sys.stderr)
        return 1
    finally:
        await nc.close()
    reply = json.loads(msg.data)
    if not reply.get("ok"):
        error = reply.get("error", {})
        print(f"cordon: {error.get('code')}: {error.get('message')}", file=sys.stderr)
        return 1
    if fmt == "json":
        print(json.dumps(reply, ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(board.to_csv(reply))
    return 0


def run_rebuild(args: argparse.Namespace, config: Config) -> int:
    if not config.nats_url or not config.pg_dsn:
        print("cordon: views rebuild needs CORDON_NATS_URL and CORDON_PG_DSN", file=sys.stderr)
        return 2
    if args.batch < 1:
        print("cordon: --batch must be at least 1", file=sys.stderr)
        return 2
    return asyncio.run(_rebuild(config, args.batch, args.keep_old))


async def _rebuild(config: Config, batch: int, keep_old: bool) -> int:
    import asyncpg

    from shared.config import city_zone
    from services.views.rebuild import rebuild

    from shared import pgroles

    # as the views service's role when roles are provisioned: the new generation is the service's
    # (an administrator's DSN would leave it owned by the administrator, unwritable by the service)
    pool = await asyncpg.create_pool(config.pg_dsn, min_size=1, max_size=4,
                                     setup=lambda conn: pgroles.act_as(conn, "views"))
    nc = await bus.connect(config.nats_url, "views.rebuild", config.nats_creds)
    try:
        result = await rebuild(pool, nc, city_zone(), batch_max=batch, progress=ProgressBar(),
                               keep_old=keep_old, writer_dsn=config.pg_dsn)
    finally:
        await nc.drain()
        await pool.close()
    print(f"\nrebuilt generation {result.generation} to stream sequence {result.position:,} "
          f"({result.applied:,} events) in {result.seconds:.1f} s, {result.rate:,.0f} events/s; "
          f"generation {result.retired} {'kept' if keep_old else 'dropped'}", file=sys.stderr)
    return 0


class ProgressBar:
    """``[#####-----] 512,340/1,000,000  51.2%  28,410 ev/s  eta 17 s`` on one line of stderr."""

    def __init__(self, stream=None, width: int = 30, every: float = 0.2):
        self.stream = stream or sys.stderr
        self.width = width
        self.every = every
        self.last = 0.0

    def __call__(self, done: int, total: int, elapsed: float) -> None:
        now = time.monotonic()
        if now - self.last < self.every and done < total:
            return
        self.last = now
        self.stream.write("\r" + self.render(done, total, elapsed))
        self.stream.flush()

    def render(self, done: int, total: int, elapsed: float) -> str:
        fraction = done / total if total else 1.0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        filled = int(fraction * self.width)
        return (f"rebuild [{'#' * filled}{'-' * (self.width - filled)}] {done:,}/{total:,} "
                f"{fraction:6.1%} {rate:,.0f} ev/s eta {eta:.0f} s")
