"""`cordon backup` and `cordon restore`, registered on the `cordon` parser by ``add_commands``.

    cordon backup --out DIR [--data-dir D] [--creds F] [-v]
    cordon restore --from DIR [--data-dir D] [--creds F] [-v]

``backup`` reads the Cordon at ``CORDON_PG_DSN`` and ``CORDON_NATS_URL`` (as ``cordon up`` prints
them) and copies ``<data dir>/auth`` when there is one (:mod:`services.ops.backup`). ``restore``
writes a new Cordon into an empty data dir: embedded servers there, unless ``CORDON_PG_DSN`` /
``CORDON_NATS_URL`` name empty ones (:mod:`services.ops.restore`). Progress goes to stderr, what was
done to stdout; the log to ``<data dir>/logs/restore.log`` (``-v``: stderr too).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from shared import bus
from shared import log as logging
from shared.config import CREDS_HELP, Config


def add_commands(sub: argparse._SubParsersAction) -> None:
    bk = sub.add_parser("backup", help="write a backup of the running Cordon into a new folder: a pg_dump of "
                                       "the database, the stream's state and order, the authority's keys")
    bk.add_argument("--out", required=True, help="a new (or empty) folder; it will hold personal data and keys")
    bk.add_argument("--data-dir", default=None, help="the Cordon's data dir, whose auth/ is copied (default .cordon)")
    bk.add_argument("--keys-out", default=None, help="also dump the key database (residents' data keys) into this "
                    "new folder, which must be apart from --out: keep it short-lived")
    bk.add_argument("--creds", default=None, help=CREDS_HELP)
    bk.set_defaults(run=run_backup)
    logging.user_facing(bk)
    rs = sub.add_parser("restore", help="restore a backup into an empty data dir: the authority, the database, "
                                        "the stream rebuilt from the record, the durable consumers")
    rs.add_argument("--from", dest="source", required=True, help="the folder cordon backup wrote")
    rs.add_argument("--data-dir", default=None, help="a new (or empty) data dir (default .cordon)")
    rs.add_argument("--keys-from", default=None, help="the keys.pgdump of cordon backup --keys-out: restored into the "
                    "new Cordon's key database (without it, or CORDON_KEYS_DSN naming the live one, every resident "
                    "reads as erased)")
    rs.add_argument("--creds", default=None, help=CREDS_HELP + "; only with CORDON_NATS_URL")
    rs.set_defaults(run=run_restore)
    logging.user_facing(rs)


def _say(command: str):
    def say(line: str) -> None:
        print(f"cordon {command}: {line}", file=sys.stderr, flush=True)
    return say


def _fail(message: str, code: int) -> int:
    print(f"cordon: {message}", file=sys.stderr, flush=True)
    return code


def run_backup(args: argparse.Namespace, config: Config) -> int:
    if not config.pg_dsn or not config.nats_url:
        return _fail("backup needs CORDON_PG_DSN and CORDON_NATS_URL: the servers of the Cordon to back up "
                     "(cordon up prints both)", 2)
    return asyncio.run(backup_cordon(config, Path(args.out), keys_out=Path(args.keys_out) if args.keys_out else None))


async def backup_cordon(config: Config, out: Path, stdout=None, keys_out: Path | None = None) -> int:
    from services.ops import backup, keydump, pgtools

    if keys_out is not None:
        try:
            keydump.check_apart(out, keys_out)
        except keydump.KeyDumpError as exc:
            return _fail(str(exc), 2)

    stdout = stdout or sys.stdout
    try:
        nc = await bus.connect(config.nats_url, "cordon.backup", config.nats_creds)
    except Exception as exc:
        return _fail(f"cannot reach NATS at {config.nats_url}: {type(exc).__name__}: {exc}", 1)
    try:
        manifest = await backup.take(config.pg_dsn, nc, out, config.data_dir, _say("backup"), keys_out=keys_out,
                                     keys_dsn=os.environ.get("CORDON_KEYS_DSN") or None)
    except (backup.BackupError, keydump.KeyDumpError, pgtools.ToolError) as exc:
        return _fail(str(exc), 1)
    finally:
        await nc.close()
    for line in summary(out, manifest):
        print(line, file=stdout)
    return 0


def summary(out: Path, manifest: dict) -> list[str]:
    from services.ops import backup

    db, stream, files = manifest["database"], manifest["stream"], manifest["files"]
    size = files[backup.DUMP]["bytes"] / 1e6
    events = ", ".join(f"{s} {n:,}" for s, n in db["events"].items())
    positions = ", ".join(f"{what} at sequence {db[key]:,}" for what, key in
                          (("views", "views_position"), ("audit log", "audit_position")) if db[key] is not None)
    lines = [f"backup written to {out} ({manifest['created_at']})",
             f"  {backup.DUMP:<20} {size:,.1f} MB: database {db['database']}, events {events}"
             + (f"; {positions}" if positions else ""),
             f"  {backup.STREAM_STATE:<20} stream: {stream['messages']:,} messages (sequences {stream['first_seq']:,} "
             f"to {stream['last_seq']:,}), {stream['durable_consumers']} durable consumers",
             f"  {backup.ORDER:<20} the stream's order: {stream['ordered']:,} messages"]
    if manifest["authority"]:
        lines.append(f"  {backup.AUTH + '/':<20} the authority: {manifest['authority']['files']} files, its keys "
                     "sign every identity: SECRET")
    lines += [f"  {backup.MANIFEST:<20} versions, counts, the sha256 of every file"]
    keys = manifest.get("keys")
    if keys:
        lines.append(f"  keys: {keys['folder']}/{keys['file']}: the key database {keys['database']} "
                     f"({keys['counts'].get('data_keys', 0):,} data keys): kept APART from this backup; "
                     "delete it when no longer needed, an erasure reaches it only then")
    else:
        lines.append("  keys: the key database (residents' data keys) is not in this backup: keep it alive and "
                     "replicated, or take --keys-out; restored without it, every resident reads as erased")
    lines += [
              "keep it as secret as the data dir: it holds residents' personal data"
              + (" and the authority's keys" if manifest["authority"] else ""),
              f"restore it with: cordon restore --from {out} --data-dir NEW_FOLDER"]
    return lines


def run_restore(args: argparse.Namespace, config: Config) -> int:
    from services.ops import restore

    try:
        restore.check_empty(config.data_dir)
    except restore.RestoreError as exc:
        return _fail(str(exc), 2)
    return asyncio.run(restore_cordon(config, Path(args.source), config.data_dir,
                                      keys_from=Path(args.keys_from) if args.keys_from else None,
                                      keys_dsn=os.environ.get("CORDON_KEYS_DSN") or None))


async def restore_cordon(config: Config, source: Path, data_dir: Path, stdout=None, keys_from: Path | None = None,
                         keys_dsn: str | None = None) -> int:
    from services.ops import backup, keydump, pgtools, restore

    stdout = stdout or sys.stdout
    try:
        lines = await restore.restore(source, data_dir, pg_dsn=config.pg_dsn, nats_url=config.nats_url,
                                      creds=config.nats_creds if config.nats_url else None,
                                      replicas=config.stream_replicas, say=_say("restore"),
                                      keys_from=keys_from, keys_dsn=keys_dsn)
    except Exception as exc:
        known = isinstance(exc, (backup.BackupError, restore.RestoreError, pgtools.ToolError, keydump.KeyDumpError))
        message = str(exc) if known else f"{type(exc).__name__}: {exc}"
        if data_dir.exists() and any(data_dir.iterdir()):
            message += f"\nthe data dir {data_dir} is partly restored: remove it before trying again"
        return _fail(message, 1)
    for line in lines:
        print(line, file=stdout)
    print(f"next: cordon up --data-dir {data_dir}, then check with cordon reconcile (CORDON_PG_DSN and "
          "CORDON_NATS_URL set as cordon up prints them): it must exit 0", file=stdout)
    return 0
