"""``cordon contact``: one record's names, phones and address, for the committee's staff, recorded.

    cordon contact --resident R | --household H --purpose "why" [--creds li-wei.creds] [--json]
                   [--url http://127.0.0.1:8080]

It asks ``registry.contact`` through the web gateway, as ``cordon feed`` does: it logs in with the
identity's ``.creds`` (``POST /v1/tokens``), asks ``GET /v1/queries/registry.contact`` with the
token, and logs out. Why the gateway and not NATS: the contact query answers staff only (an
operator's or a service's connection from inside Cordon is refused by design: no person to name
in the record), and staff's laptops reach the gateway, the one port a deployment opens to people,
not NATS (deploy/k8s/network.yaml lets only Cordon's pods reach it); the gateway sends the query on
the identity's own connection, so the registry checks exactly the same identity.

Each run is one read, recorded by the registry as PersonalDataViewed (who, whose, the purpose)
before anything is shown. The contacts go to stdout, a line each (``--json``: the reply); the note
of the record to stderr.

Exit codes (as ``cordon feed``): 2 invalid (no credentials, a purpose that says nothing, an id
that is no slug, one not registered); 3 credentials refused; 4 forbidden (another community's
resident, not staff); 5 the gateway unreachable or not answering.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import TextIO

import httpx

from services.web.feed_cli import DEFAULT_URL, EXIT_UNREACHABLE, Exit, Retry, _read_creds, _reason, refuse
from shared.config import CREDS_HELP, Config


def add_commands(sub: argparse._SubParsersAction) -> None:
    contact = sub.add_parser("contact", help="a resident's or household's names, phones and address (staff of its "
                                             "own committee; every read recorded)")
    who = contact.add_mutually_exclusive_group(required=True)
    who.add_argument("--resident", help="the resident's id")
    who.add_argument("--household", help="a household's id: each of its residents")
    contact.add_argument("--purpose", required=True, help="why (recorded with the read, at least 5 characters)")
    contact.add_argument("--json", action="store_true", help="print the registry's reply as JSON")
    contact.add_argument("--url", default=None, help=f"the web gateway (default CORDON_WEB_URL, else {DEFAULT_URL})")
    contact.add_argument("--creds", default=None, help=CREDS_HELP)
    contact.set_defaults(run=run)


def run(args: argparse.Namespace, shared: Config) -> int:
    params = {"resident": args.resident} if args.resident else {"household": args.household}
    url = args.url or os.environ.get("CORDON_WEB_URL") or DEFAULT_URL
    return asyncio.run(contact(url, shared.nats_creds, {**params, "purpose": args.purpose}, args.json,
                               sys.stdout, sys.stderr))


async def contact(url: str, creds_path: str | None, params: dict[str, str], as_json: bool, out: TextIO,
                  err: TextIO) -> int:
    """Ask, print; the exit code."""
    try:
        creds = _read_creds(creds_path)
        async with httpx.AsyncClient(base_url=url, timeout=15.0) as http:
            reply = await _ask(http, url, creds, params)
    except Exit as exc:
        print(f"cordon contact: {exc.message}", file=err, flush=True)
        return exc.code
    if as_json:
        print(json.dumps(reply, ensure_ascii=False), file=out)
    else:
        for c in reply["contacts"]:
            print(line(c), file=out)
    print(f"cordon contact: this read is recorded (PersonalDataViewed {reply['viewed']}, purpose: "
          f"{reply['purpose']})", file=err)
    return 0


async def _ask(http: httpx.AsyncClient, url: str, creds: str, params: dict[str, str]) -> dict:
    """Log in, ask, log out: the session lives for this one read."""
    try:
        login = await http.post("/v1/tokens", content=creds, headers={"content-type": "text/plain"})
        if login.status_code != 201:
            refuse(login, "logging in")
        headers = {"authorization": f"Bearer {login.json()['token']}"}
        try:
            reply = await http.get("/v1/queries/registry.contact", params=params, headers=headers)
        finally:
            await http.delete("/v1/tokens/current", headers=headers)
        if reply.status_code != 200:
            refuse(reply, "registry.contact")
    except httpx.TransportError as exc:
        raise Exit(EXIT_UNREACHABLE, f"cannot reach the gateway at {url} ({_reason(exc)}): is `cordon web` "
                                     "running there? (--url, CORDON_WEB_URL)") from None
    except Retry as exc:
        raise Exit(EXIT_UNREACHABLE, str(exc)) from None
    return reply.json()


def line(c: dict) -> str:
    """One contact: name, phone, address, birth year, and the ids (tab-separated)."""
    if c.get("erased"):
        return f"(erased)\t\t\t\tresident {c['resident']}\thousehold {c['household']}"
    return "\t".join([c.get("name") or "", c.get("phone") or "-", c.get("address") or "-",
                      str(c.get("birth_year") or "-"), f"resident {c['resident']}", f"household {c['household']}"])
