"""``cordon import arrivals|residents FILE``: a list from the city, or a committee's household book,
registered row by row through the public API (README "Bulk lists from the city").

    cordon import arrivals FILE [--community C] [--creds li-wei.creds] [--in-flight 256] [--json]
    cordon import residents FILE [...]

It connects to NATS with the caller's credentials (``--creds``, ``CORDON_NATS_CREDS``, else the
operators' ``admin.creds``) and sends each row as its own command, as that identity: staff send
in their own community (on its scoped subject, replies on their own inbox); an operator names
the community with ``--community``. Progress on stderr; the summary on stdout (``--json``: one
JSON object); the refused rows in ``FILE.errors.csv`` beside the input.

Exit codes: 0 every row imported or there already; 1 some rows refused (see the error report);
2 the file or the arguments are wrong (nothing sent); 3 NATS unreachable or the credentials refused.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import nats

from shared import bus
from shared.config import CREDS_HELP, Config
from shared.errors import Invalid
from shared.log import user_facing
from shared.subjects import check_community

EXIT_REFUSED, EXIT_INVALID, EXIT_UNREACHABLE = 1, 2, 3


def add_commands(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("import", help="register the city's list of arrivals, or a household book, row by row "
                                           "(progress, an error report beside the file, safe to run again)")
    parser.add_argument("kind", choices=("arrivals", "residents"))
    parser.add_argument("file", type=Path, help="CSV (a header line) or JSON lines")
    parser.add_argument("--community", default=None, help="the community (default: your identity's)")
    parser.add_argument("--in-flight", type=int, default=256, help="requests in flight (default 256)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--nats-url", default=None, help="a running Cordon (default CORDON_NATS_URL)")
    parser.add_argument("--creds", default=None, help=CREDS_HELP)
    parser.set_defaults(run=run)
    user_facing(parser)


def run(args: argparse.Namespace, config: Config) -> int:
    url = args.nats_url or config.nats_url
    if not url:
        return _fail(EXIT_INVALID, "set CORDON_NATS_URL or pass --nats-url")
    return asyncio.run(main(url, config.nats_creds, args, sys.stdout, sys.stderr))


def _fail(code: int, message: str) -> int:
    print(f"cordon import: {message}", file=sys.stderr)
    return code


def caller(creds: str | None, community: str | None) -> tuple[str, str, str | None]:
    """(actor, community, inbox prefix) of the identity the credentials hold."""
    from services.web.sessions import read_creds

    if not creds:
        raise Invalid("no credentials: give --creds FILE (your identity's .creds) or set CORDON_NATS_CREDS",
                      field="creds")
    try:
        _, read = read_creds(Path(creds).read_text())
    except OSError as exc:
        raise Invalid(f"cannot read the credentials {creds}: {exc.strerror}", field="creds") from None
    identity = read["identity"]
    community = community or identity.community
    if community is None:
        raise Invalid(f"{identity.name} acts in no community of its own: give --community", field="community")
    check_community(community)
    return identity.actor, community, None if identity.trusted else f"_INBOX.{identity.name}"


async def main(url: str, creds: str | None, args: argparse.Namespace, out, err) -> int:
    from services.demo.client import Api, NoReply
    from services.imports.rows import FileError
    from services.imports.run import run as import_file

    try:
        actor, community, inbox = caller(creds, args.community)
        if not args.file.is_file():
            raise Invalid(f"no file {args.file}", field="file")
    except Invalid as exc:
        return _fail(EXIT_INVALID, exc.message)
    try:
        nc = await nats.connect(bus.servers(url), connect_timeout=3, max_reconnect_attempts=3, name="cordon-import",
                                **bus.credentials(creds), **({"inbox_prefix": inbox} if inbox else {}))
    except Exception as exc:  # noqa: BLE001 - nats-py raises several kinds for a refused or failed connection
        return _fail(EXIT_UNREACHABLE, f"cannot connect to NATS at {url}: {type(exc).__name__} {exc}")
    api = Api(nc, in_flight=max(1, args.in_flight))
    try:
        summary, report = await import_file(api, args.kind, args.file, community, actor, err)
    except FileError as exc:
        return _fail(EXIT_INVALID, f"{args.file}: {exc}; nothing was sent")
    except NoReply as exc:
        return _fail(EXIT_UNREACHABLE, f"{exc}; run it again: the rows sent are not sent twice")
    finally:
        await api.close()
    print(json.dumps(summary.as_json(args.kind, report)) if args.json else summary.text(args.kind, report), file=out)
    return EXIT_REFUSED if summary.errors else 0
