"""`cordon`: run Cordon and talk to it.

    cordon up [--data-dir D] [--nats-port P] [--pg-port P]   embedded servers + every service + web
    cordon service NAME [--metrics-port P]                    one service (containers)
    cordon health                                             ask every running service
    cordon request SUBJECT JSON                               send a command or query, print the reply

Every command that connects to NATS takes --creds (default CORDON_NATS_CREDS, else the
<data dir>/auth/admin.creds that `cordon up` writes).
    cordon demo [--scale S] [--seed K]                        play a day in a street, print the boards
    cordon load --rate N --duration S                         open-loop load, latency percentiles
    cordon report --scope S [--on D] [--format csv|json]      the daily report of a scope
    cordon views rebuild                                      rebuild the read models, then swap
    cordon audit verify | show                                check or search the audit log
    cordon dead-letters list | replay                         parked messages: list, apply again
    cordon identity add | list | revoke                       issue, list and revoke identities
    cordon auth init --dir D [--nats-conf-out F]              a deployment's NATS keys, include and creds
    cordon web [--host H] [--port P]                          the HTTP gateway: API, live board, feeds
    cordon feed --community C [--since D] [--durable N] [--json]   a community's events, one line each, resumed
    cordon contact --resident R | --household H --purpose P   one record's names and phones (staff; recorded)
    cordon erase-resident --resident R --legal-basis B [--yes]   shred a resident's personal data (operators)
    cordon republish --service S --since T [--until T]        publish recorded events to JetStream again
    cordon backup --out DIR                                   pg_dump + the stream's state + the keys
    cordon restore --from DIR [--data-dir D]                  a backup into an empty data dir
    cordon asyncapi [--write]                                 the message API document
    cordon openapi [--write]                                  the web gateway's HTTP API document
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import sys
from pathlib import Path

from shared import bus
from shared import log as logging
from shared.config import CREDS_HELP, Config
from shared.subjects import query_subject

#: Every service that exists, in start order: name -> "module:function" returning its ServiceSpec.
SERVICES: dict[str, str] = {
    "registry": "services.registry.app:spec",
    "checkpoint": "services.checkpoint.app:spec",
    "quarantine": "services.quarantine.app:spec",
    "logistics": "services.logistics.app:spec",
    "views": "services.views.app:spec",
    "audit": "services.audit.app:spec",
}


def load_spec(name: str):
    module, func = SERVICES[name].split(":")
    return getattr(importlib.import_module(module), func)()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cordon", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start embedded NATS + PostgreSQL (unless configured) and every service")
    up.add_argument("--data-dir", default=None, help="where embedded servers keep data (default .cordon)")
    up.add_argument("--nats-port", type=int, default=4222)
    up.add_argument("--pg-port", type=int, default=55432)
    up.add_argument("--services", default=",".join(SERVICES), help="comma-separated subset to run")
    up.add_argument("--web-port", type=int, default=8080,
                    help="port of the web gateway (the board, the HTTP API); 0: no gateway")
    up.add_argument("--metrics-port", type=int, default=None,
                    help="first of the services' metrics ports (/metrics, /livez, /readyz), one each in "
                         "start order (CORDON_METRICS_PORT, default 9300); 0: none")
    svc = sub.add_parser("service", help="run one service in the foreground")
    svc.add_argument("name", choices=sorted(SERVICES))
    svc.add_argument("--metrics-port", type=int, default=None,
                     help="port of /metrics, /livez and /readyz (CORDON_METRICS_PORT, default 9300); 0: none")
    health = sub.add_parser("health", help="print every running service's health")
    health.add_argument("--nats-url", default=None)
    health.add_argument("--creds", default=None, help=CREDS_HELP)
    req = sub.add_parser("request", help="send a command or query and print the reply")
    req.add_argument("subject")
    req.add_argument("payload", help="JSON, or - for standard input")
    req.add_argument("--nats-url", default=None)
    req.add_argument("--timeout", type=float, default=5.0)
    req.add_argument("--creds", default=None, help=CREDS_HELP)
    doc = sub.add_parser("asyncapi", help="print (or --write) the AsyncAPI document of the message API")
    doc.add_argument("--write", action="store_true", help="write shared/contracts/asyncapi.json")
    http = sub.add_parser("openapi", help="print (or --write) the OpenAPI document of the web gateway")
    http.add_argument("--write", action="store_true", help="write shared/contracts/openapi.json")
    from services.audit import cli as audit_cli
    from services.demo import cli as demo_cli
    from services.ops import auth_init as auth_cli
    from services.ops import cli as ops_cli
    from services.ops import db_roles as db_cli
    from services.ops import identity as identity_cli
    from services.views import cli as views_cli
    from services.ops import erase as erase_cli
    from services.web import contact_cli, feed_cli
    from services.imports import cli as import_cli
    from services.web import server as web_cli

    views_cli.add_commands(sub)
    audit_cli.add_commands(sub)
    demo_cli.add_commands(sub)
    ops_cli.add_commands(sub)
    identity_cli.add_commands(sub)
    auth_cli.add_commands(sub)
    db_cli.add_commands(sub)
    web_cli.add_commands(sub)
    feed_cli.add_commands(sub)
    contact_cli.add_commands(sub)
    erase_cli.add_commands(sub)
    import_cli.add_commands(sub)
    args = parser.parse_args(argv)
    config = Config.from_env(data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None,
                             metrics_port=getattr(args, "metrics_port", None))
    if hasattr(args, "creds"):  # a command that connects to NATS as a client
        config = dataclasses.replace(config, nats_creds=config.client_creds(args.creds))
    quiet = getattr(args, "quiet_logs", False) and not args.verbose  # a user-facing command
    logging.setup("json" if quiet else config.log_format, config.log_level, logging.SINK if quiet else None)
    try:
        if getattr(args, "run", None):
            return args.run(args, config)
        if args.cmd == "asyncapi":
            return write_asyncapi(args.write)
        if args.cmd == "openapi":
            return write_openapi(args.write)
        if args.cmd == "up":
            from services.supervisor import run_up

            return asyncio.run(run_up(config, args.nats_port, args.pg_port, args.services.split(","),
                                      web_port=args.web_port, metrics_ports=metrics_ports(config.metrics_port)))
        if args.cmd == "service":
            return asyncio.run(run_service(args.name, config))
        if args.cmd == "health":
            return asyncio.run(run_request(args.nats_url or config.nats_url, query_subject("health"), b"{}", 3.0,
                                           config.nats_creds))
        if args.cmd == "request":
            payload = sys.stdin.buffer.read() if args.payload == "-" else args.payload.encode()
            return asyncio.run(run_request(args.nats_url or config.nats_url, args.subject, payload, args.timeout,
                                           config.nats_creds))
    except KeyboardInterrupt:
        return 130
    return 2


def metrics_ports(base: int) -> dict[str, int]:
    """Each service's metrics port under `cordon up`: ``base`` + its place in :data:`SERVICES`, so
    a service keeps its port whichever subset runs (none when ``base`` is 0)."""
    return {name: base + i for i, name in enumerate(SERVICES)} if base else {}


def asyncapi_text() -> str:
    from shared import asyncapi  # imports shared.contracts, which registers every event type
    from shared.contracts.queries import QUERIES

    return asyncapi.render(command_types(), QUERIES)


def command_types() -> dict[str, dict[str, type]]:
    """Service -> command name -> its struct, for every service: what both API documents describe."""
    return {name: load_spec(name).command_types for name in SERVICES}


def openapi_text() -> str:
    from shared import openapi

    return openapi.render(command_types())


def write_openapi(write: bool) -> int:
    from shared import openapi

    return write_document(openapi.PATH, openapi_text(), write)


def write_asyncapi(write: bool) -> int:
    from shared import asyncapi

    return write_document(asyncapi.PATH, asyncapi_text(), write)


def write_document(path: Path, text: str, write: bool) -> int:
    """Write a generated API document to its committed place, or print it."""
    if write:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    else:
        sys.stdout.write(text)
    return 0


async def run_service(name: str, config: Config) -> int:
    import signal

    from shared.probes import PortTaken
    from shared.service import ServiceHost

    host = ServiceHost(load_spec(name), config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await host.start()
    except PortTaken as exc:
        print(f"cordon: {exc}", file=sys.stderr, flush=True)
        return 1
    await stop.wait()
    await host.stop()
    return 0


async def run_request(url: str | None, subject: str, payload: bytes, timeout: float,
                      creds: str | None = None) -> int:
    import nats

    from shared.bus import servers

    if not url:
        print("cordon: set CORDON_NATS_URL or pass --nats-url", file=sys.stderr)
        return 2
    nc = await nats.connect(servers(url), connect_timeout=2, max_reconnect_attempts=1, **bus.credentials(creds))
    try:
        reply = await nc.request(subject, payload, timeout=timeout)
    except Exception as exc:
        print(f"cordon: no reply on {subject}: {type(exc).__name__} {exc}", file=sys.stderr)
        return 1
    finally:
        await nc.close()
    body = json.loads(reply.data)
    print(json.dumps(body, ensure_ascii=False, indent=2))
    return 0 if body.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
