"""``cordon erase-resident``: an operator shreds a resident's personal data, on a legal basis.

    cordon erase-resident --resident R --legal-basis "why, under which rule" [--yes] [--creds FILE]

It sends the registry's ``erase_resident`` {resident, legal_basis} on NATS with the operators'
credentials (the command is accepted only from inside Cordon): the registry deletes the resident's
data key, so their name, ID number, phone and birth year are unreadable in the database, in every
backup and in every copy, for good, and records ``ResidentErased``. It asks first (type ``yes``)
unless ``--yes``; with no terminal to ask, it erases nothing without ``--yes``.

Exit codes: 0 erased; 1 refused by the registry (not found, already erased, …); 2 a usage problem
or not confirmed.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid

from services.ops.cli import _fail
from shared import bus
from shared.config import CREDS_HELP, Config


def add_commands(sub: argparse._SubParsersAction) -> None:
    erase = sub.add_parser("erase-resident", help="shred a resident's personal data for good (operators; a "
                                                  "recorded legal basis)")
    erase.add_argument("--resident", required=True, help="the resident's id")
    erase.add_argument("--legal-basis", required=True, help="why the data is erased: recorded in ResidentErased")
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    erase.add_argument("--creds", default=None, help=CREDS_HELP)
    erase.set_defaults(run=run)


def run(args: argparse.Namespace, config: Config) -> int:
    if not config.nats_url:
        return _fail("needs CORDON_NATS_URL (the Cordon whose registry holds the resident)")
    if not args.yes and not confirmed(args.resident):
        return _fail("not erased: nothing was changed (confirm with yes, or give --yes)")
    return asyncio.run(erase(config, args.resident, args.legal_basis))


def confirmed(resident: str) -> bool:
    """Ask on the terminal; no terminal (or end of input) is no."""
    print(f"erase resident {resident}? Their name, ID number, phone and birth year become unreadable "
          "everywhere, backups included, for good. Type yes to erase: ", end="", file=sys.stderr, flush=True)
    try:
        return input().strip().lower() == "yes"
    except EOFError:
        print(file=sys.stderr)
        return False


async def erase(config: Config, resident: str, legal_basis: str, stdout=None) -> int:
    stdout = stdout or sys.stdout
    body = {"command_id": f"erase-{resident}-{uuid.uuid4()}", "actor": "operator:admin", "resident": resident,
            "legal_basis": legal_basis}
    nc = await bus.connect(config.nats_url, "cordon.erase", config.nats_creds)
    try:
        msg = await nc.request("cordon.cmd.registry.erase_resident", json.dumps(body, ensure_ascii=False).encode(),
                               timeout=10)
    finally:
        await nc.close()
    reply = json.loads(msg.data)
    if not reply.get("ok"):
        error = reply.get("error") or {}
        detail = f" ({error['reason']})" if error.get("reason") else ""
        return _fail(f"refused: {error.get('code')}{detail}: {error.get('message')}", code=1)
    print(f"resident {resident} erased: their data key is deleted (ResidentErased {reply['events'][0]['event_id']})",
          file=stdout)
    return 0
