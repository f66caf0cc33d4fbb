"""`cordon db roles`: a deployment's PostgreSQL roles, one per service (see :mod:`shared.pgroles`).

    cordon db roles [--passwords DIR]

`cordon up` does this itself on every start; containers and clusters run it once as a one-shot
(compose's ``db-roles``, the Kubernetes Job ``cordon-db-roles``), after ``cordon auth init`` wrote
each service's password to ``DIR/pg/<service>.password`` and before the services start. It
connects with ``CORDON_PG_DSN`` (+ ``CORDON_PG_PASSWORD_FILE``) — the administrator's, which no
service is given — and creates or updates every role, sets its password from the file, and gives
each schema (and a record made before roles) to its service's role. Run it again at will.
"""
from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import asyncpg

from services.ops.cli import _fail
from shared import pgroles
from shared.config import Config, shown_dsn


def add_commands(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="PostgreSQL: a role per service")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    roles = db_sub.add_parser("roles", help="create (or update) every service's role, owning its schema "
                              "alone, with the passwords `cordon auth init` wrote")
    roles.add_argument("--passwords", default=None, help="the folder holding pg/<service>.password (default: "
                       "<data dir>/auth, where `cordon up` and `cordon auth init --dir` write them)")
    roles.set_defaults(run=run_roles)


def read_passwords(folder: Path) -> dict[str, str]:
    """{service: password} from ``folder/pg``; SystemExit naming the first one missing or empty."""
    passwords = {}
    for service in pgroles.SERVICES:
        path = pgroles.password_file(folder, service)
        try:
            passwords[service] = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SystemExit(f"cordon: db roles: {path}: {exc.strerror} (run `cordon auth init --dir "
                             f"{folder}` first)") from None
        if not passwords[service]:
            raise SystemExit(f"cordon: db roles: {path} is empty")
    return passwords


def run_roles(args: argparse.Namespace, config: Config) -> int:
    if not config.pg_dsn:
        return _fail("db roles needs CORDON_PG_DSN (the administrator's: a superuser)")
    passwords = read_passwords(Path(args.passwords) if args.passwords else config.data_dir / "auth")
    try:
        asyncio.run(pgroles.provision(config.pg_dsn, passwords))
    except (OSError, asyncpg.PostgresError) as exc:
        return _fail(f"db roles on {shown_dsn(config.pg_dsn)}: {type(exc).__name__}: {exc}", 1)
    for service in pgroles.SERVICES:
        print(f"cordon: {service:<11} {shown_dsn(pgroles.role_dsn(config.pg_dsn, service))} "
              f"owns schema {service}")
    return 0
