"""A service's key store: each subject's data key, wrapped by the master key, in a database of its
own, in a schema of the service's own.

Why not in Cordon's database: crypto-shredding erases a person by deleting their key, and that must
hold for every copy of the personal data, backups taken *before* the erasure included. ``cordon
backup`` dumps the Cordon database (``database.pgdump``), and anyone can ``pg_dump`` it: if the keys
were in it, a copy taken yesterday would still open the person erased today. So the keys live in
the key database (``CORDON_KEYS_DSN``; by default the database ``<name>_keys`` on the same server,
created on first start), which no dump of the Cordon database holds; the sealed fields are useless
without it. The key database is kept like the master key (replicated, not in the data backups; a
backup of it of its own erases its copies only as those age out: keep them short).

Each service that keeps personal data has its own schema there, named as its schema in Cordon's
database (the registry's residents in ``registry``, the checkpoint's visitors in ``checkpoint``),
owned by its own role (``shared.pgroles``): a service reads its own keys and no one else's.

One row per subject: ``<schema>.data_keys`` (subject, wrapped key, key id of the master key).
:meth:`KeyStore.erase` deletes a key and records the subject in ``<schema>.erasures``, so a key for
it is never made again (a person erased on a legal basis); :meth:`KeyStore.shred` deletes keys
without that record (retention: the subjects are visits, whose ids never come again). A master key
rotation (:meth:`KeyStore.rotate`, run when the service starts) re-wraps every row not wrapped by
the current master key; nothing else changes (no data re-sealed, no hash recomputed).
"""
from __future__ import annotations

import asyncio
import os
from datetime import datetime
from typing import Awaitable, Callable, Mapping
from urllib.parse import unquote, urlsplit

import asyncpg
import structlog

from shared import pgpool, pii
from shared.embedded import ensure_database
from shared.errors import Unavailable

log = structlog.get_logger()

DDL_LOCK = 0x6B6579_646462  # "keydb": one service instance at a time creates tables there
#: The subject whose "data key" is the blind index's key (not a resident id: ids are slugs).
INDEX_SUBJECT = "cordon:blind-index"

#: What a key store reads when it opens: the master keyring and the key database's DSN, if set.
Settings = Callable[[], tuple[pii.Keyring, str | None]]


def key_settings(env: Mapping[str, str] | None = None) -> tuple[pii.Keyring, str | None]:
    """The master keyring (``CORDON_MASTER_KEY`` or ``CORDON_MASTER_KEY_FILE``, see
    :func:`shared.pii.from_env`) and the key database's DSN (``CORDON_KEYS_DSN``; None: beside the
    Cordon database). The same for every service that keeps personal data. Read when the service
    starts, not when its spec is built: tools that only list the commands have no master key."""
    env = os.environ if env is None else env
    return pii.from_env(env), env.get("CORDON_KEYS_DSN") or None


def keys_dsn(pg_dsn: str) -> tuple[str, str]:
    """The server DSN and the key database's name beside the Cordon database of ``pg_dsn``."""
    parts = urlsplit(pg_dsn)
    name = unquote(parts.path.lstrip("/")) or "postgres"
    return pg_dsn, f"{name}_keys"


def ddl(schema: str) -> str:
    """The key store's tables in ``schema`` of the key database. The schema is created only when
    missing: ``CREATE SCHEMA IF NOT EXISTS`` still asks for CREATE on the database, which a service
    given its schema by ``shared.pgroles`` (the checkpoint's) does not have."""
    return f"""
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '{schema}') THEN CREATE SCHEMA {schema}; END IF;
END $$;
CREATE TABLE IF NOT EXISTS {schema}.data_keys (
    subject    text PRIMARY KEY,
    wrapped    bytea NOT NULL,
    key_id     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.erasures (
    subject      text PRIMARY KEY,
    legal_basis  text NOT NULL,
    erased_at    timestamptz NOT NULL
);
"""


class KeyStore:
    """Data keys by subject, in ``schema`` of the key database: made, read (unwrapped), deleted;
    opened once the service knows its database (:meth:`open`)."""

    def __init__(self, schema: str, keyring: pii.Keyring | None = None, dsn: str | None = None, *,
                 index_key: bool = False, settings: Settings = key_settings):
        if not schema.isidentifier():
            raise ValueError(f"a key store's schema is a plain name, not {schema!r}")
        self.schema = schema
        #: None until :meth:`open` reads it from the environment (a spec is also built by tools
        #: that only list commands, with no master key at hand).
        self.keyring = keyring
        self._dsn = dsn
        self._settings = settings
        self._with_index = index_key
        self._pool: asyncpg.Pool | None = None
        self._opened = asyncio.Event()
        self._failed: Exception | None = None
        #: The blind index's key (``shared.pii.blind_index``; with ``index_key`` only), kept as the
        #: data key of :data:`INDEX_SUBJECT`: random, wrapped by the master key, re-wrapped by a rotation.
        self.index_key: bytes | None = None
        s = schema
        self._insert = (f"INSERT INTO {s}.data_keys (subject, wrapped, key_id) "
                        "SELECT s, w, k FROM unnest($1::text[], $2::bytea[], $3::text[]) AS t(s, w, k) "
                        f"WHERE NOT EXISTS (SELECT 1 FROM {s}.erasures e WHERE e.subject = t.s) "
                        "ON CONFLICT (subject) DO NOTHING RETURNING subject")
        self._select = f"SELECT subject, wrapped, key_id FROM {s}.data_keys WHERE subject = ANY($1)"

    async def open(self, pg_dsn: str) -> None:
        """Read the master key (if not given), connect to the key database (``CORDON_KEYS_DSN``,
        else ``<db>_keys`` beside ``pg_dsn``, created if missing) and create its tables. A failure
        is kept: every command and read that needs a key is then ``unavailable``, saying why."""
        try:
            if self.keyring is None:
                self.keyring, configured = self._settings()
                self._dsn = self._dsn or configured
            dsn = self._dsn
            if not dsn:
                server, name = keys_dsn(pg_dsn)
                dsn = await ensure_database(server, name)
            self._pool = await pgpool.create_pool(dsn, min_size=1, max_size=4)
            async with self._pool.acquire() as conn, conn.transaction():
                # replicas start together: CREATE ... IF NOT EXISTS is not safe against a concurrent twin
                await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK)
                await conn.execute(ddl(self.schema))
            if self._with_index:
                self.index_key = (await self._create(self._pool, [INDEX_SUBJECT]))[INDEX_SUBJECT]
        except Exception as err:
            self._failed = err
            log.error(f"{self.schema}.keys_unavailable", error=str(err))
            raise
        finally:
            self._opened.set()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def _ready(self) -> asyncpg.Pool:
        await self._opened.wait()
        if self._failed is not None:
            raise Unavailable(f"the key store is not open ({self._failed}); personal data can be neither "
                              "written nor read")
        return self._pool

    async def create(self, subjects: list[str]) -> dict[str, bytes]:
        """A data key for each subject (made and stored if it has none; an erased subject gets
        none): subject -> data key. One round trip when every subject is new (the usual case: a
        registration), a second to read the keys of those that had one."""
        return await self._create(await self._ready(), subjects)

    async def _create(self, pool, subjects: list[str]) -> dict[str, bytes]:
        fresh = {s: pii.new_data_key() for s in subjects}
        wrapped = [self.keyring.wrap(s, k) for s, k in fresh.items()]
        async with pgpool.stateless(pool) as conn:
            rows = await conn.fetch(self._insert, list(fresh), [w.blob for w in wrapped], [w.key_id for w in wrapped])
        made = {r["subject"]: fresh[r["subject"]] for r in rows}
        if len(made) < len(fresh):  # a subject that had a key keeps it; an erased one gets none
            made.update(await self._get(pool, [s for s in fresh if s not in made]))
        return made

    async def get(self, subjects: list[str]) -> dict[str, bytes]:
        """The data keys the store holds for these subjects (an erased or shredded one is absent)."""
        return await self._get(await self._ready(), subjects)

    async def _get(self, pool, subjects: list[str]) -> dict[str, bytes]:
        async with pgpool.stateless(pool) as conn:
            rows = await conn.fetch(self._select, subjects)
        return {r["subject"]: self.keyring.unwrap(r["subject"], pii.Wrapped(r["key_id"], r["wrapped"]))
                for r in rows}

    async def erase(self, subject: str, legal_basis: str, at: datetime) -> bool:
        """Delete the subject's key for good and record the erasure; True if there was a key."""
        pool = await self._ready()
        async with pool.acquire() as conn, conn.transaction():
            deleted = await conn.fetchval(
                f"DELETE FROM {self.schema}.data_keys WHERE subject = $1 RETURNING subject", subject)
            await conn.execute(f"INSERT INTO {self.schema}.erasures (subject, legal_basis, erased_at) "
                               "VALUES ($1, $2, $3) ON CONFLICT (subject) DO NOTHING", subject, legal_basis, at)
        return deleted is not None

    async def shred(self, subjects: list[str]) -> int:
        """Delete these subjects' keys (retention: what was sealed with them opens no more,
        wherever a copy went); how many there were. No erasure is recorded: a subject shredded
        so is one that does not come again (a visit)."""
        pool = await self._ready()
        async with pool.acquire() as conn:
            status = await conn.execute(f"DELETE FROM {self.schema}.data_keys WHERE subject = ANY($1)", subjects)
        return int(status.split()[-1])

    async def rotate(self, batch: int = 500) -> int:
        """Re-wrap every data key not wrapped by the current master key; how many were. In short
        transactions of ``batch`` keys: the key database usually shares its server with Cordon's,
        and a long transaction there would hold back every service's relay (one xid horizon)."""
        pool, done, s = await self._ready(), 0, self.schema
        while True:
            async with pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(f"SELECT subject, wrapped, key_id FROM {s}.data_keys WHERE key_id <> $1 "
                                        "LIMIT $2 FOR UPDATE SKIP LOCKED", self.keyring.current, batch)
                for r in rows:
                    new = self.keyring.rewrap(r["subject"], pii.Wrapped(r["key_id"], r["wrapped"]))
                    await conn.execute(f"UPDATE {s}.data_keys SET wrapped = $2, key_id = $3 WHERE subject = $1",
                                       r["subject"], new.blob, new.key_id)
            done += len(rows)
            if len(rows) < batch:
                break
        if done:
            log.info(f"{s}.keys_rewrapped", keys=done, key_id=self.keyring.current)
        return done


def opener(keys: KeyStore, seal_plaintext: Callable[[asyncpg.Pool, KeyStore], Awaitable[int]]):
    """A service's ``on_start`` hook: before it takes commands, open ``keys``, seal what an older
    version of the service left in plaintext (``seal_plaintext(pool, keys)``), re-wrap what an
    earlier master key wrapped (a rotation). A key store that cannot open leaves the service up,
    answering what needs a key ``unavailable``, saying why."""

    async def open_key_store(host) -> None:
        try:
            await keys.open(host.config.pg_dsn)
        except Exception:  # kept by the store, logged, said in every refusal
            return
        await seal_plaintext(host.pool, keys)
        await keys.rotate()

    return open_key_store


def closer(keys: KeyStore):
    """A service's background task that closes the key store's pool when the service stops."""

    async def close_key_store(host) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await keys.close()

    return close_key_store
