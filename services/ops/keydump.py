"""The key database in backups: ``cordon backup --keys-out DIR`` and ``cordon restore --keys-from FILE``.

Residents' personal data is sealed with their own data keys, which live in the key database
(``CORDON_KEYS_DSN``, else ``<database>_keys`` beside Cordon's: services/registry/keys.py), never
in Cordon's database: so an erasure (deleting a key) holds for every data backup taken before it.
A data backup restored without the key database therefore opens nobody: every resident reads as
erased. Two ways back:

- keep the key database alive (replicated, like the master key) and point the restored Cordon at
  it (``CORDON_KEYS_DSN``): the erasures made since the backup hold, everyone else opens;
- ``cordon backup --keys-out DIR``: a dump of the key database (``keys.pgdump``, taken *after* the
  data dump, so it is at least as new as the data), in a folder that must not be the data backup's
  (nor inside it, nor hold it): together they would re-open everyone erased after the key dump was
  taken, for as long as both are kept. ``cordon restore --keys-from DIR/keys.pgdump`` restores it
  into the restored Cordon's key database (which must be empty). Keep key dumps short-lived: an
  erasure reaches a key dump only when that dump is deleted.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg

from services.ops import pgtools

KEYS_DUMP, KEYS_MANIFEST = "keys.pgdump", "keys-manifest.json"
Say = Callable[[str], None]


class KeyDumpError(RuntimeError):
    """The key database cannot be dumped or restored as asked; the message says why."""


def key_database(pg_dsn: str, keys_dsn: str | None = None) -> str:
    """The key database's DSN: ``keys_dsn`` (``CORDON_KEYS_DSN``) if given, else the database
    ``<name>_keys`` on ``pg_dsn``'s server, as the registry finds it."""
    if keys_dsn:
        return keys_dsn
    parts = urlsplit(pg_dsn)
    name = unquote(parts.path.lstrip("/")) or "postgres"
    return urlunsplit(parts._replace(path="/" + quote(f"{name}_keys", safe="")))


def check_apart(out: Path, keys_out: Path) -> None:
    """The key dump's folder is not the data backup's, nor inside it, nor around it."""
    a, b = out.resolve(), keys_out.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise KeyDumpError(
            f"--keys-out {keys_out} is {'the same folder as' if a == b else 'nested with'} --out {out}: the key "
            "dump must be kept apart from the data backup. Together they open everyone erased after the key "
            "dump was taken; apart, deleting a key still erases its person from every data backup. Give "
            "--keys-out a folder elsewhere (another disk, another custodian), and keep it short-lived")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


async def dump(keys_dsn: str, keys_out: Path, say: Say) -> dict:
    """``pg_dump`` of the key database into ``keys_out/keys.pgdump`` (0600, folder 0700) and its
    manifest; the manifest."""
    from services.ops.backup import prepare_folder

    prepare_folder(keys_out)
    conn = await asyncpg.connect(keys_dsn)
    try:
        database = await conn.fetchval("SELECT current_database()")
        counts = {}
        for table in ("data_keys", "erasures"):
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"registry.{table}"):
                counts[table] = await conn.fetchval(f"SELECT count(*) FROM registry.{table}")
    finally:
        await conn.close()
    tool, target = pgtools.binary("pg_dump"), keys_out / KEYS_DUMP
    say(f"dumping the key database {database} into {target}")
    await pgtools.run([tool, "--format=custom", f"--file={target}", f"--dbname={keys_dsn}"], say, "pg_dump")
    target.chmod(0o600)
    manifest = {"kind": "cordon-keys", "format": 1, "database": database,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "counts": counts, "file": KEYS_DUMP, "bytes": target.stat().st_size, "sha256": _sha256(target)}
    path = keys_out / KEYS_MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    path.chmod(0o600)
    return manifest


def check_dump(path: Path) -> dict:
    """The key dump at ``path`` checked against the manifest beside it; the manifest."""
    manifest_path = path.parent / KEYS_MANIFEST
    if not path.is_file():
        raise KeyDumpError(f"--keys-from {path}: no such file (give the keys.pgdump that cordon backup --keys-out wrote)")
    if not manifest_path.is_file():
        raise KeyDumpError(f"--keys-from {path}: no {KEYS_MANIFEST} beside it: not a key dump of cordon backup")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("kind") != "cordon-keys" or manifest.get("sha256") != _sha256(path):
        raise KeyDumpError(f"--keys-from {path} is not the file its {KEYS_MANIFEST} describes: damaged or replaced")
    return manifest


async def check_empty(keys_dsn: str) -> None:
    """The key database to restore into holds nothing yet (absent is fine: it is created)."""
    server = urlunsplit(urlsplit(keys_dsn)._replace(path="/postgres"))
    name = unquote(urlsplit(keys_dsn).path.lstrip("/"))
    conn = await asyncpg.connect(server)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await conn.close()
    if not exists:
        return
    conn = await asyncpg.connect(keys_dsn)
    try:
        tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname NOT IN "
                                     "('pg_catalog', 'information_schema')")
    finally:
        await conn.close()
    if tables:
        raise KeyDumpError(f"the key database {name} is not empty: a key dump is restored only into a new one "
                           "(never over live keys: that would bring back keys deleted since)")


async def restore(path: Path, keys_dsn: str, say: Say) -> str:
    """Create the key database of ``keys_dsn`` if missing and ``pg_restore`` the dump into it; a line
    saying what was restored."""
    from shared.embedded import ensure_database

    manifest = check_dump(path)
    await check_empty(keys_dsn)
    name = unquote(urlsplit(keys_dsn).path.lstrip("/"))
    dsn = await ensure_database(urlunsplit(urlsplit(keys_dsn)._replace(path="/postgres")), name)
    say(f"restoring the key database {name} from {path}")
    await pgtools.run([pgtools.binary("pg_restore"), "--exit-on-error", "--no-owner", "--no-privileges",
                       f"--dbname={dsn}", str(path)], say, "pg_restore")
    counts = manifest.get("counts", {})
    return (f"key database: {name} restored from {path} (dumped {manifest['created_at']}: "
            f"{counts.get('data_keys', '?')} keys, {counts.get('erasures', '?')} erasures); residents erased "
            "before that dump stay erased")


def not_restored(keys_dsn: str | None) -> str:
    """What a restore without ``--keys-from`` says about personal data."""
    if keys_dsn:
        return ("key database: not restored; the registry reads the keys at CORDON_KEYS_DSN: start the restored "
                "Cordon with that same setting (the live key database), and residents erased since the backup "
                "stay erased")
    return ("key database: NOT restored (no --keys-from): every resident's personal data will read as erased "
            "unless the restored Cordon's registry is pointed at the live key database (CORDON_KEYS_DSN) or "
            "the restore is made again with --keys-from DIR/keys.pgdump (cordon backup --keys-out); do "
            "that before it starts, or its registry makes an empty key database of its own")
