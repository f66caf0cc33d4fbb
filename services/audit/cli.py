"""`cordon audit verify` and `cordon audit show`, registered on the `cordon` parser by ``add_commands``.

    cordon audit verify                    walk the chain; exit 1 naming the first bad row
    cordon audit show [--actor A] [--resident R] [--community PATH|PREFIX] [--type T]
                      [--since WHEN] [--until WHEN] [--limit N] [--format table|json]

Both read PostgreSQL (``CORDON_PG_DSN``) directly: they are operators' tools. WHEN is RFC 3339 with
a zone, or a day YYYY-MM-DD (its midnight in the city's zone, ``CORDON_TIMEZONE``).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import date, datetime

from shared.config import Config


def add_commands(sub: argparse._SubParsersAction) -> None:
    audit = sub.add_parser("audit", help="the hash-chained audit log of every event")
    audit_sub = audit.add_subparsers(dest="audit_cmd", required=True)
    verify = audit_sub.add_parser("verify", help="walk the hash chain; name the first row that does not match")
    verify.set_defaults(run=run_verify)
    show = audit_sub.add_parser("show", help="rows by actor, resident, community, type and time")
    show.add_argument("--actor")
    show.add_argument("--resident")
    show.add_argument("--community", help="a community path or a prefix: changning, changning.chengjiaqiao")
    show.add_argument("--type", help="event type, e.g. PassageDenied")
    show.add_argument("--since", type=when, help="from (inclusive): RFC 3339 with zone, or YYYY-MM-DD")
    show.add_argument("--until", type=when, help="to (exclusive): RFC 3339 with zone, or YYYY-MM-DD")
    show.add_argument("--limit", type=int, default=100)
    show.add_argument("--format", choices=("table", "json"), default="table")
    show.set_defaults(run=run_show)


def when(text: str) -> datetime:
    """RFC 3339 with a zone, or a day: its midnight in the city's zone."""
    from shared.config import city_zone

    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=city_zone())
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not YYYY-MM-DD or RFC 3339 with a zone") from None
    if value.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a zone, e.g. 2020-02-17T08:00:00+08:00")
    return value


def _dsn(config: Config) -> str | None:
    if not config.pg_dsn:
        print("cordon: set CORDON_PG_DSN", file=sys.stderr)
    return config.pg_dsn


def run_verify(args: argparse.Namespace, config: Config) -> int:
    dsn = _dsn(config)
    return asyncio.run(_verify(dsn)) if dsn else 2


async def _verify(dsn: str) -> int:
    import asyncpg

    from services.audit import log

    conn = await asyncpg.connect(dsn)
    try:
        verdict = await log.verify(conn)
    finally:
        await conn.close()
    if verdict.ok:
        print(f"audit log OK: {verdict.rows:,} rows; head row {verdict.head_n} hash {verdict.head_hash}")
        return 0
    f = verdict.finding
    print(f"audit log BROKEN at row {f.n} ({f.problem}): {f.detail}", file=sys.stderr)
    print(json.dumps(verdict.to_dict()))
    return 1


def run_show(args: argparse.Namespace, config: Config) -> int:
    dsn = _dsn(config)
    return asyncio.run(_show(dsn, args)) if dsn else 2


async def _show(dsn: str, args: argparse.Namespace) -> int:
    import asyncpg

    from services.audit import log
    from shared.errors import CommandError

    filters = log.Filters(actor=args.actor, resident=args.resident, community=args.community,
                          type=args.type, since=args.since, until=args.until, limit=args.limit)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await log.show(conn, filters)
    except CommandError as err:
        print(f"cordon: {err.code}: {err.message}", file=sys.stderr)
        return 2
    finally:
        await conn.close()
    for row in rows:
        if args.format == "json":
            data = json.loads(row.pop("envelope"))
            print(json.dumps({**row, "occurred_at": _iso(row["occurred_at"]), "envelope": data},
                             ensure_ascii=False))
        else:
            print(f"{row['n']:>8} {_iso(row['occurred_at']):<25} {row['actor'] or '?':<20} "
                  f"{row['type'] or '?':<22} {row['community'] or '?':<34} {row['resident'] or '-'}")
    return 0


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else "?"
