"""`cordon demo` and `cordon load`, registered on the `cordon` parser by :func:`add_commands`.

    cordon demo [--seed 7] [--scale 1] [--data-dir D]       a day in a street, the board, the report
    cordon load --rate N --duration S [--warmup W] [--seed K] [--mix passage=80,masks=5,...]
    cordon load --committees N --duration S [--speed F | --days D] [--warmup W] [--households H]

Both talk to the Cordon at ``CORDON_NATS_URL`` (or ``--nats-url``) when one answers there; with
``CORDON_PG_DSN`` too and no services answering, they start the services on those servers; with
neither, they start embedded NATS and PostgreSQL (in ``--data-dir``, default a temporary folder)
and every service, and stop them at the end (NATS in operator mode, as ``cordon up`` runs it).
``--creds`` (default ``CORDON_NATS_CREDS``, else ``<data dir>/auth/admin.creds``) is what they
connect to a running Cordon with. Their own log goes to ``<data dir>/logs/demo.log`` (``load.log``)
beside the services' logs, or nowhere when they play on a running Cordon; ``-v`` prints it on
stderr. Each parser gets ``run(args, config) -> exit code``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from shared.log import user_facing
from shared.config import CREDS_HELP


def _scale(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError("scale must be more than 0 and at most 1 (e.g. 0.02)")
    return value


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be more than 0")
        return value
    return parse


def _non_negative(kind):
    def parse(text: str):
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError("must be 0 or more")
        return value
    return parse


def add_commands(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="play a day in a street of committees through the message API; "
                                       "print the committee's board and the street's daily report")
    demo.add_argument("--seed", type=int, default=7, help="the same seed plays the same day (default 7)")
    demo.add_argument("--scale", type=_scale, default=1.0,
                      help="shrink every count, e.g. 0.02 for a quick look (default 1: the reports' sizes)")
    demo.add_argument("--in-flight", type=_positive(int), default=128, help="requests in flight (default 128)")
    demo.add_argument("--data-dir", default=None, help="where embedded servers keep data (default: temporary)")
    demo.add_argument("--nats-url", default=None, help="a running Cordon (default CORDON_NATS_URL)")
    demo.add_argument("--creds", default=None, help=CREDS_HELP)
    demo.set_defaults(run=run_demo)
    user_facing(demo)

    load = sub.add_parser("load", help="open-loop load of the demo's traffic: achieved rate and latency "
                                       "percentiles per command kind, one JSON line last")
    load.add_argument("--rate", type=_positive(float), default=None, help="commands a second (or --committees)")
    load.add_argument("--duration", type=_positive(float), required=True, help="seconds")
    load.add_argument("--warmup", type=_non_negative(float), default=0.0,
                      help="seconds of the same load sent first and not counted (the services settle "
                           "after the set-up; default 0)")
    load.add_argument("--seed", type=int, default=7)
    load.add_argument("--mix", default=None, help="kind=weight,... of passage, resident, visitor, arrival, "
                                                  "request, masks, household; case, checkin, sample (quarantine) "
                                                  "(default passage=80,...)")
    load.add_argument("--households", type=_positive(int), default=None,
                      help="households of the set-up compound (default 1000; with --committees, 100 each)")
    load.add_argument("--committees", type=_positive(int), default=None,
                      help="offer N residential committees' traffic at their real daily rate "
                           "(15,000 commands a committee a day), each in its own community")
    load.add_argument("--speed", type=_positive(float), default=None,
                      help="with --committees: time compression, simulated seconds per second (default 1)")
    load.add_argument("--days", type=_positive(float), default=None,
                      help="with --committees: simulated days the run covers (sets --speed)")
    load.add_argument("--run-id", default=None, help="reuse a run's command ids (replays its replies)")
    load.add_argument("--data-dir", default=None, help="where embedded servers keep data (default: temporary)")
    load.add_argument("--nats-url", default=None, help="a running Cordon (default CORDON_NATS_URL)")
    load.add_argument("--creds", default=None, help=CREDS_HELP)
    load.set_defaults(run=run_load)
    user_facing(load)


def _failed(name: str, exc: Exception) -> int:
    print(f"cordon {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1


def run_demo(args: argparse.Namespace, config) -> int:
    from services.demo.client import NoReply
    from services.demo.run import main

    try:
        return asyncio.run(main(args.nats_url or config.nats_url, config.pg_dsn,
                                Path(args.data_dir) if args.data_dir else None,
                                seed=args.seed, scale=args.scale, in_flight=args.in_flight,
                                creds=config.nats_creds))
    except (ConnectionError, NoReply, RuntimeError, TimeoutError) as exc:
        return _failed("demo", exc)


def _load_form(args: argparse.Namespace) -> None:
    """One of the two forms: --rate, or --committees [--speed | --days]; refused before anything starts."""
    from services.demo import city, load

    if args.committees is None:
        if args.rate is None:
            raise ValueError("give --rate R, or --committees N")
        if args.speed is not None or args.days is not None:
            raise ValueError("--speed and --days go with --committees")
        return
    if args.rate is not None:
        raise ValueError("--committees sets the rate: give --rate or --committees, not both")
    if any(k in load.QUARANTINE_KINDS for k in load.parse_mix(args.mix)):
        raise ValueError("the quarantine kinds are not offered with --committees (their set-up is dated today)")
    city.Plan.of(args.committees, args.warmup + args.duration, args.speed, args.days)


def run_load(args: argparse.Namespace, config) -> int:
    from services.demo import load, system

    try:
        mix = load.parse_mix(args.mix)
        _load_form(args)
    except ValueError as exc:
        print(f"cordon load: {exc}", file=sys.stderr)
        return 2

    def say(line: str) -> None:
        print(f"cordon load: {line}", file=sys.stderr, flush=True)

    async def go() -> dict:
        async with system.cordon(args.nats_url or config.nats_url, config.pg_dsn,
                                 Path(args.data_dir) if args.data_dir else None, say,
                                 config.nats_creds, log_name="load") as (url, creds):
            return await load.run_load(url, creds, rate=args.rate, duration=args.duration, warmup=args.warmup,
                                       seed=args.seed, mix=mix,
                                       households=args.households, run=args.run_id, committees=args.committees,
                                       speed=args.speed, days=args.days, say=say)

    from services.demo.client import NoReply

    try:
        summary = asyncio.run(go())
    except (ConnectionError, NoReply, RuntimeError, TimeoutError) as exc:
        return _failed("load", exc)
    print(load.render(summary))
    print(json.dumps(summary, ensure_ascii=False))
    return 0 if not summary["errors"] and not summary["dropped"] else 1
