"""`cordon dead-letters`, `cordon republish` and `cordon reconcile`, registered on the `cordon` parser
by ``add_commands``.

    cordon dead-letters list [--service S] [--consumer C] [--json]
    cordon dead-letters replay ID... | --all [--service S] [--consumer C] [--timeout SECONDS]
    cordon republish --service S --since WHEN [--until WHEN] [--dry-run] [--batch N]
    cordon reconcile [--service S | --service views]...
    cordon backup --out DIR | cordon restore --from DIR [--data-dir D]   (services.ops.backup_cli)

``list`` reads PostgreSQL (``CORDON_PG_DSN``). ``replay`` asks the running service that owns the
consumer (``cordon.sys.<service>.replay``, over ``CORDON_NATS_URL``): its handlers and runtime apply
the letters (see :mod:`shared.dead_letters`); ``--all`` picks the letters in PostgreSQL first. An
ID is ``service:id`` as ``list`` prints it, or a number with ``--service``. ``republish`` reads the
service's events table and publishes to JetStream (both servers; see
:mod:`services.ops.republish`). WHEN is RFC 3339 with a zone, or a day YYYY-MM-DD (its midnight in
the city's zone).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import datetime

from services.audit.cli import when
from shared import bus
from shared.config import CREDS_HELP, Config

#: Dead letters per replay request (each request's reply carries their results).
CHUNK = 20


def add_commands(sub: argparse._SubParsersAction) -> None:
    dl = sub.add_parser("dead-letters", help="list the messages consumers parked, or apply them again")
    dl_sub = dl.add_subparsers(dest="dead_letters_cmd", required=True)
    ls = dl_sub.add_parser("list", help="every parked message, oldest first (PostgreSQL)")
    ls.add_argument("--service", help="a service's schema: checkpoint, quarantine, logistics")
    ls.add_argument("--consumer", help="a consumer's name, e.g. quarantine-arrivals")
    ls.add_argument("--json", action="store_true", help="one JSON object a line")
    ls.set_defaults(run=run_list)
    rp = dl_sub.add_parser("replay", help="apply parked messages again through their consumer's handler, "
                                          "in the running service; exit 0 only if every one was applied")
    rp.add_argument("ids", nargs="*", metavar="ID", help="service:id as `list` prints it, or id with --service")
    rp.add_argument("--all", action="store_true", help="every dead letter (of --service, of --consumer)")
    rp.add_argument("--service")
    rp.add_argument("--consumer")
    rp.add_argument("--timeout", type=float, default=60.0, help=f"seconds to wait for each {CHUNK} letters")
    rp.add_argument("--creds", default=None, help=CREDS_HELP)
    rp.set_defaults(run=run_replay)
    rb = sub.add_parser("republish", help="publish a service's recorded events to JetStream again "
                                          "(after JetStream lost some), in order, Nats-Msg-Id = event id")
    rb.add_argument("--service", required=True, help="registry, checkpoint, quarantine or logistics")
    rb.add_argument("--since", required=True, type=when, help="recorded at or after: RFC 3339 with zone, or YYYY-MM-DD")
    rb.add_argument("--until", type=when, help="recorded before (default: now)")
    rb.add_argument("--dry-run", action="store_true", help="count the events, publish nothing")
    rb.add_argument("--batch", type=int, default=1000, help="events per round of PubAcks")
    rb.add_argument("--creds", default=None, help=CREDS_HELP)
    rb.set_defaults(run=run_republish)
    rc = sub.add_parser("reconcile", help="compare each service's record with the stream, the audit log with "
                                          "the stream, and each consumer's effects (local copies, the views) "
                                          "with a replay; print every difference, exit 0 only if none")
    rc.add_argument("--service", action="append", help="only this service, or views (repeatable)")
    rc.add_argument("--creds", default=None, help=CREDS_HELP)
    rc.set_defaults(run=run_reconcile)
    from services.ops import backup_cli

    backup_cli.add_commands(sub)


def _fail(message: str, code: int = 2) -> int:
    print(f"cordon: {message}", file=sys.stderr)
    return code


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'s' * (count != 1)}"


def _local(value: datetime) -> str:
    from shared.config import city_zone

    return value.astimezone(city_zone()).isoformat(timespec="seconds")


# -- list -----------------------------------------------------------------------------------------

def run_list(args: argparse.Namespace, config: Config) -> int:
    if not config.pg_dsn:
        return _fail("dead-letters list needs CORDON_PG_DSN")
    return asyncio.run(list_letters(config.pg_dsn, args.service, args.consumer, args.json))


async def list_letters(dsn: str, service: str | None, consumer: str | None, as_json: bool = False,
                       out=None) -> int:
    import asyncpg

    from shared import dead_letters

    out = out or sys.stdout
    conn = await asyncpg.connect(dsn)
    try:
        letters = await dead_letters.listing(conn, service, consumer)
    finally:
        await conn.close()
    if not letters:
        scope = ", ".join(f"{k} {v}" for k, v in (("service", service), ("consumer", consumer)) if v)
        print(f"no dead letters{f' ({scope})' if scope else ''}: nothing is parked", file=sys.stderr)
        return 0
    for d in letters:
        if as_json:
            print(json.dumps({**d, "parked_at": d["parked_at"].isoformat()}, ensure_ascii=False), file=out)
            continue
        print(f"{d['service']}:{d['id']:<6} {_local(d['parked_at'])}  {d['consumer']}  {d['type'] or '(undecodable)'}  "
              f"seq {d['stream_seq']}  attempts {d['attempts']}  event {d['event_id'] or '-'}\n"
              f"    {d['subject']}\n    {d['error']}", file=out)
    if not as_json:
        counts: dict[str, int] = {}
        for d in letters:
            counts[d["consumer"]] = counts.get(d["consumer"], 0) + 1
        print(f"{_n(len(letters), 'dead letter')} ("
              + ", ".join(f"{c} {n:,}" for c, n in sorted(counts.items())) + ")", file=out)
    return 0


# -- replay ---------------------------------------------------------------------------------------

def run_replay(args: argparse.Namespace, config: Config) -> int:
    if not config.nats_url:
        return _fail("dead-letters replay needs CORDON_NATS_URL (the running service replays)")
    if args.all == bool(args.ids):
        return _fail("name dead letters (service:id, or ids with --service) or give --all, not both")
    if args.all and not config.pg_dsn:
        return _fail("dead-letters replay --all needs CORDON_PG_DSN to find the letters")
    if args.consumer and not args.all:
        return _fail("--consumer selects letters with --all")
    try:
        targets = None if args.all else parse_ids(args.ids, args.service)
    except ValueError as exc:
        return _fail(str(exc))
    return asyncio.run(replay_letters(config.nats_url, config.pg_dsn, targets, args.service, args.consumer,
                                      timeout=args.timeout, creds=config.nats_creds))


def parse_ids(ids: list[str], service: str | None) -> dict[str, list[int]]:
    """``service:id`` or ``id`` (with ``service``) -> ids by service, in the order given."""
    out: dict[str, list[int]] = {}
    for text in ids:
        name, _, number = text.rpartition(":")
        name = name or service
        if not name:
            raise ValueError(f"{text!r}: which service? write service:id (as `list` prints it) or pass --service")
        if service and name != service:
            raise ValueError(f"{text!r} is not of --service {service}")
        try:
            out.setdefault(name, []).append(int(number))
        except ValueError:
            raise ValueError(f"{text!r} is not a dead letter id (service:id)") from None
    return out


async def replay_letters(nats_url: str, pg_dsn: str | None, targets: dict[str, list[int]] | None,
                         service: str | None = None, consumer: str | None = None, *,
                         timeout: float = 60.0, out=None, err=None, creds: str | None = None) -> int:
    """Replay ``targets`` (ids by service), or every letter of ``service``/``consumer``; print one
    line per letter and a summary; 0 only if every letter was applied (or found applied). Connects
    to NATS with ``creds``."""
    import nats
    from nats.errors import NoRespondersError

    from shared import bus
    from shared import dead_letters as dl

    out, err = out or sys.stdout, err or sys.stderr
    if targets is None:
        import asyncpg

        conn = await asyncpg.connect(pg_dsn)
        try:
            letters = await dl.listing(conn, service, consumer)
        finally:
            await conn.close()
        targets = {}
        for d in sorted(letters, key=lambda d: (d["service"], d["id"])):  # each service's in park order
            targets.setdefault(d["service"], []).append(d["id"])
        if not targets:
            print("no dead letters to replay", file=err)
            return 0
    total = sum(map(len, targets.values()))
    counts = {dl.REPLAYED: 0, dl.ALREADY_APPLIED: 0, dl.FAILED: 0, dl.NOT_FOUND: 0, "not_replayed": 0}
    started, done = time.monotonic(), 0
    nc = await nats.connect(bus.servers(nats_url), connect_timeout=2, max_reconnect_attempts=1,
                            **bus.credentials(creds))
    try:
        for name, ids in targets.items():
            for i in range(0, len(ids), CHUNK):
                chunk = ids[i:i + CHUNK]
                try:
                    msg = await nc.request(dl.replay_subject(name), json.dumps({"ids": chunk}).encode(),
                                           timeout=timeout)
                    reply = json.loads(msg.data)
                except NoRespondersError:
                    reply = {"ok": False, "error": {"message": f"no {name} service answers on "
                                                               f"{dl.replay_subject(name)}: start it (the "
                                                               "replay runs in it; only services with "
                                                               "consumers have dead letters)"}}
                except Exception as exc:
                    reply = {"ok": False, "error": {"message": f"no reply on {dl.replay_subject(name)}: "
                                                               f"{type(exc).__name__} {exc}"}}
                results = reply.get("results", [])
                for r in results:
                    counts[r["outcome"]] += 1
                    print(_outcome(name, r), file=out)
                left = chunk[len(results):]
                if not reply.get("ok") or left:
                    message = reply.get("error", {}).get("message", "no result")
                    for letter_id in left:
                        print(f"{name}:{letter_id} not replayed: {message}", file=out)
                    counts["not_replayed"] += len(left)
                done += len(chunk)
                if total > CHUNK:
                    elapsed = time.monotonic() - started
                    print(f"replay: {done:,} of {total:,} ({done / elapsed if elapsed else 0:,.0f}/s)", file=err)
    finally:
        await nc.close()
    ok = counts[dl.REPLAYED] + counts[dl.ALREADY_APPLIED]
    print(f"{_n(total, 'dead letter')}: {counts[dl.REPLAYED]:,} replayed, "
          f"{counts[dl.ALREADY_APPLIED]:,} already applied (dropped), {counts[dl.FAILED]:,} failed again (kept), "
          f"{counts[dl.NOT_FOUND]:,} not found, {counts['not_replayed']:,} not replayed", file=out)
    return 0 if ok == total else 1


def _outcome(service: str, r: dict) -> str:
    what = f"{service}:{r['id']}"
    about = f" ({r.get('consumer')}, {r.get('type') or '?'} {r.get('event_id') or '-'})" if r.get("consumer") else ""
    if r["outcome"] == "replayed":
        return f"{what} replayed{about}: applied, dead letter deleted"
    if r["outcome"] == "already_applied":
        return f"{what} already applied{about}: the inbox has it; dead letter dropped, nothing run"
    if r["outcome"] == "failed":
        return f"{what} failed again{about}, attempt {r['attempts']}: {r['error']}; kept"
    return f"{what} not found (no such dead letter)"


# -- republish ------------------------------------------------------------------------------------

def run_republish(args: argparse.Namespace, config: Config) -> int:
    from services.ops.republish import RECORDING

    if args.service not in RECORDING:
        return _fail(f"--service must be one of {', '.join(RECORDING)} (the services that record events)")
    if not config.pg_dsn or (not config.nats_url and not args.dry_run):
        return _fail("republish needs CORDON_PG_DSN and CORDON_NATS_URL (only the DSN with --dry-run)")
    if args.until is not None and args.until <= args.since:
        return _fail("--until must be after --since")
    if args.batch < 1:
        return _fail("--batch must be at least 1")
    return asyncio.run(republish_events(config, args.service, args.since, args.until,
                                        dry_run=args.dry_run, batch=args.batch))


async def republish_events(config: Config, service: str, since: datetime, until: datetime | None, *,
                           dry_run: bool = False, batch: int = 1000, out=None, err=None) -> int:
    import asyncpg

    from services.ops import republish as rp

    out, err = out or sys.stdout, err or sys.stderr
    span = f"recorded from {_local(since)}" + (f" until {_local(until)}" if until else "")
    conn = await asyncpg.connect(config.pg_dsn)
    try:
        if dry_run:
            counted = await rp.count(conn, service, since, until)
            print(f"dry run: {_n(counted.total, f'{service} event')} {span} would be republished"
                  + (f" (positions {counted.first_position:,} to {counted.last_position:,})" if counted.total else ""),
                  file=out)
            return 0
        import nats

        nc = await nats.connect(bus.servers(config.nats_url), name=f"{service}.republish", connect_timeout=2,
                                max_reconnect_attempts=1, **bus.credentials(config.nats_creds))
        try:
            await bus.ensure_stream(nc.jetstream(), config.dedupe_window_s, config.stream_replicas)
            result = await rp.republish(conn, nc, service, since, until, batch=batch, progress=_progress(err))
        finally:
            await nc.close()
    finally:
        await conn.close()
    if not result.total:
        print(f"no {service} events {span}: nothing to republish", file=out)
        return 0
    print(f"republished {result.published:,} of {_n(result.total, f'{service} event')} {span} "
          f"(positions {result.first_position:,} to {result.last_position:,}) in {result.seconds:.1f} s "
          f"({result.rate:,.0f}/s): {result.stored:,} stored in the stream, {result.duplicates:,} dropped by "
          f"JetStream as duplicates (still in its duplicate window)", file=out)
    if result.error:
        at = result.stopped_at
        print(f"cordon: republish stopped at position {at['position']} (event {at['event_id']}, {at['subject']}): "
              f"{result.error}; the events from there on were not published", file=err)
        return 1
    return 0


def _progress(err):
    last = [0.0]

    def show(done: int, total: int, elapsed: float) -> None:
        now = time.monotonic()
        if now - last[0] < 1.0 and done < total:
            return
        last[0] = now
        print(f"republish: {done:,} of {total:,} ({done / elapsed if elapsed else 0:,.0f}/s)", file=err)

    return show


def run_reconcile(args: argparse.Namespace, config: Config) -> int:
    from services.ops.reconcile import CHECKED

    if not config.pg_dsn or not config.nats_url:
        return _fail("reconcile needs CORDON_PG_DSN and CORDON_NATS_URL")
    unknown = set(args.service or ()) - set(CHECKED)
    if unknown:
        return _fail(f"--service must be one of {', '.join(CHECKED)}")
    return asyncio.run(reconcile_all(config, tuple(args.service or CHECKED)))


async def reconcile_all(config: Config, services: tuple[str, ...], out=None, err=None, progress=None) -> int:
    """Reconcile ``services`` (see :mod:`services.ops.reconcile`), print the report on ``out`` and
    progress on ``err``; 0 only if there is no difference."""
    import asyncpg
    import nats

    from services.ops.effects import Rate
    from services.ops.reconcile import reconcile
    from shared import bus

    out, err = out or sys.stdout, err or sys.stderr
    conn = await asyncpg.connect(config.pg_dsn)
    nc = await nats.connect(bus.servers(config.nats_url), **bus.credentials(config.nats_creds))
    pool = await asyncpg.create_pool(config.pg_dsn, min_size=1, max_size=2)
    try:
        report = await reconcile(conn, nc, services, pool=pool, progress=progress or Rate(err))
    finally:
        await pool.close()
        await nc.close()
        await conn.close()
    for name, n in report.checked.items():
        pending = f", {report.pending[name]} still in the outbox" if report.pending.get(name) else ""
        print(f"{name}: {n:,} events checked{pending}", file=out)
    for line in report.effects:
        print(line, file=out)
    for difference in report.differences:
        print(f"DIFFERENT {difference}", file=out)
    for note in report.notes:
        print(f"note: {note}", file=out)
    print(f"{len(report.differences)} difference{'s' if len(report.differences) != 1 else ''}", file=out)
    return 1 if report.differences else 0
