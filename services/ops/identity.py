"""`cordon identity add|list|revoke`: Cordon's identities, issued by its authority, recorded by the
registry (every grant and revocation an audited event), revoked on the NATS server at once.

    cordon identity add --role staff --community D.S.C --name N --out N.creds
    cordon identity add --role officer --scope D[.S] [--community D.S.C] --name N --out N.creds
    cordon identity add --role city-system --grant cmd:registry.register_arrival [--grant …] --name N --out F
    cordon identity add --role gate --community D.S.C --compound K --name N --out N.creds
    cordon identity add --role operator --name N --out N.creds
    cordon identity list [--json]
    cordon identity revoke --name N [--reason TEXT]

``add`` mints a fresh user key and JWT with the authority's keys (``<data dir>/auth``), records the
grant through the registry (``grant_identity``: a name taken, a bad scope… is refused there and no
file is written), and only then writes the creds file, mode 0600. ``revoke`` records the
revocation, then re-signs the identity's account with every key ever revoked and pushes it to the
server: its connections close at once and it cannot connect again.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from datetime import datetime
from pathlib import Path

from services.ops.cli import _fail
from shared import bus
from shared.config import CREDS_HELP, Config
from shared.errors import CommandError
from shared.identity import ROLES, Identity

ROLE_CHOICES = [r for r in ROLES if r != "service"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    ident = sub.add_parser("identity", help="issue, list and revoke identities (NATS credentials)")
    ident_sub = ident.add_subparsers(dest="identity_command", required=True)
    add = ident_sub.add_parser("add", help="issue an identity: record it in the registry, write its .creds")
    add.add_argument("--role", required=True, choices=ROLE_CHOICES)
    add.add_argument("--name", required=True, help="a slug, unique city-wide (li-wei)")
    add.add_argument("--scope", help="an officer's district or district.street (staff and gates: --community)")
    add.add_argument("--community", help="district.street.committee: staff's and gates' own; where an officer "
                                         "may also send commands")
    add.add_argument("--compound", help="a gate's compound")
    add.add_argument("--grant", action="append", default=[], help="a city system's grant: "
                     "cmd:<service>.<command>, qry:<view> or evt (repeatable)")
    add.add_argument("--out", required=True, help="where to write the .creds file (mode 0600; not overwritten)")
    add.add_argument("--creds", default=None, help=CREDS_HELP)
    add.add_argument("--data-dir", default=None, help="the Cordon whose authority (<data dir>/auth) "
                          "issues identities (default CORDON_DATA_DIR, else .cordon)")
    add.set_defaults(run=run_add)
    ls = ident_sub.add_parser("list", help="every identity ever issued, revoked ones included")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.add_argument("--creds", default=None, help=CREDS_HELP)
    ls.add_argument("--data-dir", default=None, help="the Cordon whose authority (<data dir>/auth) "
                          "issues identities (default CORDON_DATA_DIR, else .cordon)")
    ls.set_defaults(run=run_list)
    rv = ident_sub.add_parser("revoke", help="revoke an identity: recorded, and cut off the bus at once")
    rv.add_argument("--name", required=True)
    rv.add_argument("--reason", default=None)
    rv.add_argument("--creds", default=None, help=CREDS_HELP)
    rv.add_argument("--data-dir", default=None, help="the Cordon whose authority (<data dir>/auth) "
                          "issues identities (default CORDON_DATA_DIR, else .cordon)")
    rv.set_defaults(run=run_revoke)


def _identity(args: argparse.Namespace) -> Identity:
    scope = args.scope or (args.community if args.role in ("staff", "gate") else "city")
    return Identity(name=args.name, role=args.role, scope=scope, community=args.community,
                    compound=args.compound, grants=tuple(args.grant))


def _authority(config: Config):
    from shared.auth import Authority

    path = config.data_dir / "auth"
    if not (path / "operator.nk").exists():
        raise FileNotFoundError(f"no authority in {path}: run `cordon up` first, or give --data-dir / "
                                "CORDON_DATA_DIR of the Cordon whose keys issue identities")
    return Authority.open(path)


def _check(config: Config) -> str | None:
    if not config.nats_url:
        return "needs CORDON_NATS_URL (the Cordon to record identities in)"
    return None


def run_add(args: argparse.Namespace, config: Config) -> int:
    if problem := _check(config):
        return _fail(problem)
    try:
        identity = _identity(args)
        authority = _authority(config)
    except CommandError as exc:
        return _fail(exc.message)
    except FileNotFoundError as exc:
        return _fail(str(exc))
    out = Path(args.out)
    if out.exists():
        return _fail(f"{out} exists: credentials are never overwritten; choose another --out")
    return asyncio.run(add(config, authority, identity, out))


async def add(config: Config, authority, identity: Identity, out: Path, stdout=None) -> int:
    """Mint ``identity``'s credentials, record the grant, then write them to ``out`` (0600)."""
    stdout = stdout or sys.stdout
    public_key, creds = authority.user_creds(identity)
    body = {"command_id": f"grant-{identity.name}-{uuid.uuid4()}", "actor": "operator:admin",
            "identity": identity.name, "role": identity.role, "scope": identity.scope,
            "community": identity.community, "compound": identity.compound, "grants": list(identity.grants),
            "public_key": public_key}
    reply = await _request(config, "cordon.cmd.registry.grant_identity", body)
    if not reply.get("ok"):
        return _refused(reply)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(creds)
    print(f"identity {identity.name}: {identity.role} of {identity.community or identity.scope}, acts as "
          f"{identity.actor}; credentials in {out} (0600), key {public_key}", file=stdout)
    return 0


def run_list(args: argparse.Namespace, config: Config) -> int:
    if problem := _check(config):
        return _fail(problem)
    return asyncio.run(list_identities(config, args.json))


async def list_identities(config: Config, as_json: bool = False, stdout=None) -> int:
    stdout = stdout or sys.stdout
    reply = await _request(config, "cordon.qry.registry.identities", {})
    if not reply.get("ok"):
        return _refused(reply)
    rows = reply["identities"]
    for row in rows:
        if as_json:
            print(json.dumps(row, ensure_ascii=False, default=str), file=stdout)
            continue
        where = row.get("community") or row.get("scope")
        extra = f" compound {row['compound']}" if row.get("compound") else ""
        extra += f" grants {','.join(row['grants'])}" if row.get("grants") else ""
        state = f"revoked {row['revoked_at']}" if row.get("revoked_at") else "active"
        print(f"{row['name']:<20} {row['role']:<12} {where:<36}{extra} granted {row['granted_at']} {state}",
              file=stdout)
    if not as_json:
        print(f"{len(rows)} identities, {sum(1 for r in rows if r.get('revoked_at'))} revoked", file=stdout)
    return 0


def run_revoke(args: argparse.Namespace, config: Config) -> int:
    if problem := _check(config):
        return _fail(problem)
    try:
        authority = _authority(config)
    except FileNotFoundError as exc:
        return _fail(str(exc))
    return asyncio.run(revoke(config, authority, args.name, args.reason))


async def revoke(config: Config, authority, name: str, reason: str | None = None, stdout=None) -> int:
    """Record the revocation, then push every revoked key of the identity's account to the server."""
    from shared.auth import CITY, CORDON

    stdout = stdout or sys.stdout
    body = {"command_id": f"revoke-{name}-{uuid.uuid4()}", "actor": "operator:admin", "identity": name,
            "reason": reason}
    nc = await bus.connect(config.nats_url, "cordon.identity", config.nats_creds)
    try:
        reply = await _ask(nc, "cordon.cmd.registry.revoke_identity", body)
        listed = await _ask(nc, "cordon.qry.registry.identities", {}) if reply.get("ok") else {}
    finally:
        await nc.close()
    if not reply.get("ok"):
        return _refused(reply)
    if not listed.get("ok"):
        return _refused(listed)
    for account in (CITY, CORDON):
        revoked = {row["public_key"]: _unix(row["revoked_at"]) for row in listed["identities"]
                   if row.get("revoked_at") and (CORDON if row["role"] == "operator" else CITY) == account}
        if revoked or account == CITY:
            await authority.push_account(bus.servers(config.nats_url)[0], account, revoked)
    print(f"identity {name} revoked: recorded, and its connections closed", file=stdout)
    return 0


def _unix(value) -> int:
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return int(at.timestamp())


async def _request(config: Config, subject: str, body: dict) -> dict:
    nc = await bus.connect(config.nats_url, "cordon.identity", config.nats_creds)
    try:
        return await _ask(nc, subject, body)
    finally:
        await nc.close()


async def _ask(nc, subject: str, body: dict) -> dict:
    msg = await nc.request(subject, json.dumps(body, ensure_ascii=False).encode(), timeout=10)
    return json.loads(msg.data)


def _refused(reply: dict) -> int:
    error = reply.get("error") or {}
    detail = f" ({error['reason']})" if error.get("reason") else ""
    return _fail(f"refused: {error.get('code')}{detail}: {error.get('message')}", code=1)
