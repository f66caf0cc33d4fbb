"""`cordon dead-letters`, registered on the `cordon` parser by ``add_commands``.

    cordon dead-letters list [--service S] [--consumer C] [--json]
    cordon dead-letters replay ID... | --all [--service S] [--consumer C] [--timeout SECONDS]

``list`` reads PostgreSQL (``CORDON_PG_DSN``). ``replay`` asks the running service that owns the
consumer (``cordon.sys.<service>.replay``, over ``CORDON_NATS_URL``): its handlers and runtime apply
the letters (see :mod:`shared.dead_letters`); ``--all`` picks the letters in PostgreSQL first. An
ID is ``service:id`` as ``list`` prints it, or a number with ``--service``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import datetime

from shared.config import Config

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
    rp.set_defaults(run=run_replay)


def _fail(message: str, code: int = 2) -> int:
    print(f"cordon: {message}", file=sys.stderr)
    return code


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
        scope = " ".join(f"{k} {v}" for k, v in (("of service", service), ("of consumer", consumer)) if v)
        print(f"no dead letters{' ' + scope if scope else ''}: nothing is parked", file=sys.stderr)
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
        print(f"{len(letters):,} dead letter{'s' * (len(letters) != 1)} ("
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
                                      timeout=args.timeout))


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
                         timeout: float = 60.0, out=None, err=None) -> int:
    """Replay ``targets`` (ids by service), or every letter of ``service``/``consumer``; print one
    line per letter and a summary; 0 only if every letter was applied (or found applied)."""
    import nats
    from nats.errors import NoRespondersError

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
    nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=1)
    try:
        for name, ids in targets.items():
            for i in range(0, len(ids), CHUNK):
                chunk = ids[i:i + CHUNK]
                try:
                    msg = await nc.request(dl.replay_subject(name), json.dumps({"ids": chunk}).encode(),
                                           timeout=timeout)
                    reply = json.loads(msg.data)
                except NoRespondersError:
                    reply = {"ok": False, "error": {"message": f"the {name} service is not running (no "
                                                               f"answer on {dl.replay_subject(name)}): "
                                                               "start it; the replay runs in it"}}
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
    print(f"{total:,} dead letter{'s' * (total != 1)}: {counts[dl.REPLAYED]:,} replayed, "
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
