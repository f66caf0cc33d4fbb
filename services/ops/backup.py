"""`cordon backup`: what a Cordon needs to come back, in one folder (``--out``).

- ``database.pgdump``: ``pg_dump --format=custom`` of the whole database: every service's record
  (events, outbox, replies, inboxes, dead letters, own tables), the views and the audit log, in one
  snapshot. The counts in the manifest are read in that same snapshot.
- ``stream.json``: the ``CORDON`` stream's state, read after the dump: its config, first and last
  sequence, messages and creation time; each durable consumer's config, ack floor and pending.
- ``stream-order.txt.gz``: one line ``<sequence> <event id>`` per message of the stream, in order.
  The views, the audit log and the inboxes count in stream sequences; ``cordon restore`` publishes
  the record again in this order so that those sequences stay true (:mod:`services.ops.restore`).
- ``auth/``: a copy of ``<data dir>/auth`` (the operator's and accounts' keys, the credentials):
  secret, folder 0700 and files 0600, like the original.
- ``manifest.json``: format, versions, when, the counts, and the size and sha256 of every file.

Why the stream is read after the dump: everything the dumped views, audit log and inboxes had
applied was on the stream when the dump began, so the order read afterwards places each of those
events (an event published later and not in the dump is skipped by the restore). The backup folder
is secret as a whole: the database holds residents' names and ID numbers.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

import asyncpg
from nats.aio.client import Client

from services.ops import pgtools
from services.ops.reconcile import stream_events
from services.ops.republish import RECORDING
from shared.subjects import STREAM

FORMAT = 1
DUMP, STREAM_STATE, ORDER, AUTH, MANIFEST = ("database.pgdump", "stream.json", "stream-order.txt.gz", "auth",
                                             "manifest.json")
Say = Callable[[str], None]


class BackupError(RuntimeError):
    """The backup cannot be taken (or read); the message says why and what to do."""


def prepare_folder(out: Path) -> None:
    """A new or empty folder for the backup, mode 0700 (it holds personal data and keys)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BackupError(f"{out} is not an empty folder: give --out a new (or empty) folder")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    out.chmod(0o700)


async def snapshot_facts(conn: asyncpg.Connection) -> dict:
    """Inside the dump's snapshot: events and outbox rows per service, the views' and the audit
    log's positions (stream sequences), the server's version."""
    events, outbox = {}, {}
    for service in RECORDING:
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{service}.events"):
            events[service] = await conn.fetchval(f"SELECT count(*) FROM {service}.events")
            outbox[service] = await conn.fetchval(f"SELECT count(*) FROM {service}.outbox")
    return {"events": events, "outbox": outbox, "views_position": await views_position(conn),
            "audit_position": await audit_position(conn),
            "server_version": await conn.fetchval("SHOW server_version")}


async def views_position(conn: asyncpg.Connection) -> int | None:
    """The stream sequence the current views generation has applied (None without views)."""
    if not await conn.fetchval("SELECT to_regclass('views.current') IS NOT NULL"):
        return None
    generation = await conn.fetchval("SELECT generation FROM views.current")
    return None if generation is None else await conn.fetchval(f"SELECT hwm FROM views_g{int(generation)}.meta")


async def audit_position(conn: asyncpg.Connection) -> int | None:
    if not await conn.fetchval("SELECT to_regclass('audit.head') IS NOT NULL"):
        return None
    return await conn.fetchval("SELECT hwm FROM audit.head")


async def dump(dsn: str, out: Path, say: Say) -> dict:
    """``pg_dump`` of the database into ``out/database.pgdump``, in a snapshot exported from a
    transaction that also reads :func:`snapshot_facts`; those facts, the tool's version and time."""
    tool = pgtools.binary("pg_dump")
    target = out / DUMP
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            facts = await snapshot_facts(conn)
            facts["database"] = await conn.fetchval("SELECT current_database()")
            say(f"dumping database {facts['database']} (PostgreSQL {facts['server_version']}) with {tool}")
            seconds = await pgtools.run([tool, "--format=custom", f"--snapshot={snapshot}", f"--file={target}",
                                         f"--dbname={dsn}"], say, "pg_dump", growing=target)
    finally:
        await conn.close()
    target.chmod(0o600)
    return {**facts, "pg_dump": await pgtools.version(tool), "dump_seconds": round(seconds, 1)}


async def stream_state(nc: Client, out: Path, say: Say) -> dict:
    """Write ``stream.json`` and ``stream-order.txt.gz``; return the stream's part of the manifest."""
    js = nc.jetstream()
    info = await js.stream_info(STREAM)
    consumers = [c for c in await js.consumers_info(STREAM) if c.config.durable_name]
    say(f"reading the order of the stream's {info.state.messages:,} messages")
    shown = [time.monotonic()]

    def progress(read: int, last: int) -> None:
        if time.monotonic() - shown[0] >= pgtools.TICK:
            shown[0] = time.monotonic()
            say(f"read {read:,} messages of {last:,}")

    order = [(seq, head.event_id) for seq, _, head in await stream_events(nc, progress=progress)]
    with gzip.open(out / ORDER, "wt", encoding="ascii") as f:
        f.writelines(f"{seq} {event_id or '-'}\n" for seq, event_id in order)
    state = {
        "stream": {"name": STREAM, "config": info.config.as_dict(),
                   "created": info.created.isoformat() if getattr(info, "created", None) else None,
                   "first_seq": info.state.first_seq, "last_seq": info.state.last_seq,
                   "messages": info.state.messages},
        "consumers": [{"name": c.name, "config": c.config.as_dict(),
                       "ack_floor": c.ack_floor.stream_seq if c.ack_floor else 0,
                       "delivered": c.delivered.stream_seq if c.delivered else 0,
                       "num_pending": c.num_pending, "num_ack_pending": c.num_ack_pending} for c in consumers],
        "order": {"file": ORDER, "messages": len(order)},
    }
    (out / STREAM_STATE).write_text(json.dumps(state, indent=2, default=str) + "\n")
    for name in (STREAM_STATE, ORDER):
        (out / name).chmod(0o600)
    return {"messages": info.state.messages, "first_seq": info.state.first_seq, "last_seq": info.state.last_seq,
            "ordered": len(order), "durable_consumers": len(consumers),
            "server_version": nc._server_info.get("version")}


def copy_secret_tree(src: Path, dst: Path) -> int:
    """Copy the folder ``src`` to the new folder ``dst``: folders 0700, files 0600 (never
    readable by anyone else on the way); temporary files (``.name.pid.tmp``) are left out. The
    number of files copied."""
    dst.mkdir(mode=0o700)
    dst.chmod(0o700)
    copied = 0
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(mode=0o700)
            target.chmod(0o700)
        elif path.is_file() and not path.name.startswith("."):
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(path.read_bytes())
            copied += 1
    return copied


def checksums(folder: Path) -> dict[str, dict]:
    """Size and sha256 of every file under ``folder`` but the manifest, by relative path."""
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        found[path.relative_to(folder).as_posix()] = {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    return found


def write_manifest(out: Path, database: dict, stream: dict, auth_files: int) -> dict:
    manifest = {
        "format": FORMAT, "kind": "cordon-backup",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"cordon": metadata.version("cordon"), "postgresql": database["server_version"],
                     "pg_dump": database["pg_dump"], "nats_server": stream["server_version"]},
        "database": {k: database[k] for k in ("database", "events", "outbox", "views_position", "audit_position")},
        "stream": {k: stream[k] for k in ("messages", "first_seq", "last_seq", "ordered", "durable_consumers")},
        "authority": {"files": auth_files, "secret": True} if auth_files else None,
        "files": checksums(out),
    }
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    path.chmod(0o600)
    return manifest


async def take(dsn: str, nc: Client, out: Path, data_dir: Path, say: Say, keys_out: Path | None = None,
               keys_dsn: str | None = None) -> dict:
    """The whole backup into ``out`` (new or empty); its manifest. With ``keys_out``, the key
    database (``keys_dsn``, else beside ``dsn``) is dumped there too, after the data, apart from it
    (:mod:`services.ops.keydump`); the manifest's ``keys`` says so."""
    from services.ops import keydump

    if keys_out is not None:
        keydump.check_apart(out, keys_out)
    prepare_folder(out)
    database = await dump(dsn, out, say)
    stream = await stream_state(nc, out, say)
    auth = data_dir / "auth"
    auth_files = copy_secret_tree(auth, out / AUTH) if auth.is_dir() else 0
    keys = None
    if keys_out is not None:
        keys = await keydump.dump(keydump.key_database(dsn, keys_dsn), keys_out, say)
        keys = {**keys, "folder": str(keys_out)}
    say("writing the manifest (sha256 of every file)")
    return {**write_manifest(out, database, stream, auth_files), "keys": keys}


def read_manifest(folder: Path, say: Say | None = None) -> dict:
    """The manifest of the backup in ``folder``, every file checked against it; :class:`BackupError`
    naming what is missing, changed or of another format."""
    path = folder / MANIFEST
    if not path.is_file():
        raise BackupError(f"{folder} holds no {MANIFEST}: not a backup written by cordon backup")
    manifest = json.loads(path.read_text())
    if manifest.get("kind") != "cordon-backup" or manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is not a cordon backup of format {FORMAT} "
                          f"(kind {manifest.get('kind')!r}, format {manifest.get('format')!r})")
    if say:
        say(f"checking the sha256 of the backup's {len(manifest['files'])} files")
    found = checksums(folder)
    for name, expected in manifest["files"].items():
        if name not in found:
            raise BackupError(f"the backup lacks {name}, which its manifest lists")
        if found[name] != expected:
            raise BackupError(f"{name} is not the file the backup wrote (its size or sha256 differs from the "
                              "manifest's): the backup is damaged")
    extra = sorted(set(found) - set(manifest["files"]))
    if extra:
        raise BackupError(f"the backup holds files its manifest does not list: {', '.join(extra)}")
    return manifest


def read_order(folder: Path) -> list[tuple[int, str]]:
    """(old sequence, event id) of every message the stream held, in stream order ('' undecodable)."""
    with gzip.open(folder / ORDER, "rt", encoding="ascii") as f:
        return [(int(seq), "" if event_id == "-" else event_id)
                for seq, event_id in (line.split() for line in f if line.strip())]
