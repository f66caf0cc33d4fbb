"""`cordon restore`: a Cordon back from a backup (:mod:`services.ops.backup`), into an empty data dir.

In order: the backup's files are checked against its manifest; the authority (``auth/``) is copied
back; PostgreSQL and NATS are started (embedded in the data dir, unless ``CORDON_PG_DSN`` /
``CORDON_NATS_URL`` name servers, whose database must be empty and which must have no ``CORDON``
stream); the database is created and ``pg_restore``\\ d; then the stream is rebuilt from the record.

**The stream, from the record.** Every event of every service's ``events`` table is published
again, as ``cordon republish`` does (subject, ``Nats-Msg-Id`` = event id, each PubAck checked), in
the order the old stream held them (the backup's ``stream-order.txt.gz``), then those the old
stream did not hold yet (still in an outbox), service by service in position order. What the
record holds in that order is exactly what the old stream held up to every position the restored
database knows of, so the new stream gives each event the sequence it had before: the views'
position, the audit log's ``hwm`` and the inboxes' ``stream_seq`` stay true as they are. The
outboxes are then emptied (all they held is published). Only when the old stream held messages the
record does not (a copy stored twice, a message from outside Cordon, messages removed) do the
sequences move: each restored position is then mapped to the new stream (:class:`Renumbering`),
the views are rebuilt from the new stream (``cordon views rebuild``) and the audit log's ``hwm``
is lowered to the mapped position with a row in ``audit.rewinds`` (as after a power loss), so that
``cordon audit verify`` accepts where its sequences start again.

**The durable consumers** are created before any service starts, each as the backup's
``stream.json`` describes it (filters, ack policy, ack wait, …), to start at the first event of its
subjects that its inbox does not hold: everything before it has taken effect (the inbox commits with
the effect), nothing after it is skipped. The backup's ack floor is not used for them: the dump and
the stream's state are not read at the same instant, and the inbox may hold more than the floor
says (applied, not yet acknowledged) or, taken alone, less. What the inbox holds beyond that start
comes again and is dropped by it, as after any redelivery. A durable consumer without an inbox (an
identity's feed, ``feed-<name>``) starts after its ack floor, mapped to the new stream.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig

from services.ops import backup, pgtools
from services.ops.restream import Rebuilt, Renumbering, RestoreError, empty_outboxes, rebuild_stream
from services.ops.reconcile import matches
from services.supervisor import DATABASE  # the embedded PostgreSQL's, as cordon up names it
from shared import bus
from shared import log as logging
from shared.subjects import STREAM

Say = Callable[[str], None]


def check_empty(data_dir: Path) -> None:
    """The data dir must be new or empty: a restore never mixes with another Cordon's data."""
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise RestoreError(f"the data dir {data_dir} is not empty: restore into a new (or empty) folder "
                           "(--data-dir NEW or CORDON_DATA_DIR), never over a Cordon's data")


# -- the database ---------------------------------------------------------------------------------

def admin_dsn(dsn: str) -> str:
    """The same server's ``postgres`` database (to create another one from)."""
    return urlunsplit(urlsplit(dsn)._replace(path="/postgres"))


async def empty_database(dsn: str) -> str:
    """The database of ``dsn``, created if missing; :class:`RestoreError` if it holds anything."""
    from shared.embedded import ensure_database

    name = urlsplit(dsn).path.lstrip("/") or DATABASE
    dsn = await ensure_database(admin_dsn(dsn), name)
    conn = await asyncpg.connect(dsn)
    try:
        schemas = [r[0] for r in await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('public', 'information_schema') "
            "AND nspname NOT LIKE 'pg\\_%' ORDER BY 1")]
        tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    if schemas or tables:
        raise RestoreError(f"the database {name} is not empty (schemas {', '.join(schemas) or 'public'}): "
                           "restore into a new database (CORDON_PG_DSN naming one that does not exist yet)")
    return dsn


async def restore_database(dsn: str, source: Path, say: Say) -> float:
    tool = pgtools.binary("pg_restore")
    say(f"restoring the database ({(source / backup.DUMP).stat().st_size / 1e6:,.1f} MB) with {tool}")
    return await pgtools.run([tool, "--exit-on-error", "--no-owner", "--no-privileges", f"--dbname={dsn}",
                              str(source / backup.DUMP)], say, "pg_restore")


# -- what counts in stream sequences ------------------------------------------------------------

async def keep_positions(pool: asyncpg.Pool, nc: Client, renumbering: Renumbering, say: Say) -> list[str]:
    """The views' and the audit log's positions on the new stream (see the module); what was done."""
    lines = []
    async with pool.acquire() as conn:
        views, audit = await backup.views_position(conn), await backup.audit_position(conn)
        if audit is not None:
            lines.append(await _audit_position(conn, audit, renumbering.position(audit)))
    if views is not None:
        to = renumbering.position(views)
        if to == views:
            lines.append(f"views: at sequence {views:,}, the same event as before")
        else:
            from services.views.rebuild import rebuild
            from shared.config import city_zone

            say(f"the views' position {views:,} is {to:,} on the new stream: rebuilding the views from it")
            result = await rebuild(pool, nc, city_zone())
            lines.append(f"views: rebuilt from the new stream up to sequence {result.position:,} (the old stream "
                         f"numbered its messages otherwise: its position {views:,} is {to:,} here)")
    return lines


async def _audit_position(conn: asyncpg.Connection, audit: int, to: int) -> str:
    if to == audit:
        return f"audit log: at sequence {audit:,}, the same event as before"
    async with conn.transaction():
        n = await conn.fetchval("UPDATE audit.head SET hwm = $1, updated_at = now() RETURNING n", to)
        await conn.execute("INSERT INTO audit.rewinds (n, from_seq, to_seq) VALUES ($1, $2, $3) "
                           "ON CONFLICT (n) DO UPDATE SET to_seq = least(rewinds.to_seq, excluded.to_seq)",
                           n + 1, audit, to)
    return (f"audit log: its position {audit:,} is {to:,} on the new stream; lowered there, recorded in "
            f"audit.rewinds (row {n + 1:,} on follows the new stream's sequences)")


async def create_consumers(conn: asyncpg.Connection, nc: Client, consumers: list[dict], rebuilt: Rebuilt) -> list[str]:
    """Each durable consumer of the backup, starting where its inbox (or ack floor) says (see the module)."""
    js, lines = nc.jetstream(), []
    for saved in consumers:
        config = ConsumerConfig.from_response(dict(saved["config"]))
        name = config.durable_name or saved["name"]
        inbox = f"{name.split('-', 1)[0]}.inbox"
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", inbox):
            start = await _after_inbox(conn, inbox, name, config, rebuilt.messages)
            why = "the first event of its subjects its inbox does not hold"
        else:
            start = rebuilt.renumbering.position(saved["ack_floor"]) + 1
            why = f"after its ack floor (old sequence {saved['ack_floor']:,})"
        metadata = {k: v for k, v in (config.metadata or {}).items() if not k.startswith("_nats")} or None
        await js.add_consumer(STREAM, dataclasses.replace(
            config, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start, opt_start_time=None,
            num_replicas=None, metadata=metadata))
        lines.append(f"consumer {name}: starts at sequence {start:,}, {why}")
    return lines


async def _after_inbox(conn, inbox: str, name: str, config: ConsumerConfig, messages: list[tuple[str, str]]) -> int:
    held = {r[0] for r in await conn.fetch(f"SELECT event_id::text FROM {inbox} WHERE consumer = $1", name)}
    subjects = config.filter_subjects or ([config.filter_subject] if config.filter_subject else [">"])
    for seq, (subject, event_id) in enumerate(messages, 1):
        if event_id not in held and any(matches(p, subject) for p in subjects):
            return seq
    return len(messages) + 1


# -- the whole restore --------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def servers(data_dir: Path, pg_dsn: str | None, nats_url: str | None, creds: str | None,
                  say: Say) -> AsyncIterator[tuple[str, str, str | None]]:
    """PostgreSQL and NATS to restore onto: those named, else embedded ones in ``data_dir`` (NATS in
    operator mode with the authority in ``data_dir/auth``), stopped at the end. Yields (an empty
    database's DSN, the NATS URL, the credentials to connect with)."""
    from shared.auth import Authority
    from shared.embedded import EmbeddedNats, EmbeddedPostgres, ensure_database

    started = []
    try:
        if not pg_dsn:
            pg = EmbeddedPostgres(data_dir / "postgres")
            say(f"starting PostgreSQL in {pg.data_dir}")
            await pg.start()
            started.append(pg)
            pg_dsn = await ensure_database(pg.dsn, DATABASE)
        else:
            pg_dsn = await empty_database(pg_dsn)
        if not nats_url:
            authority = Authority.open(data_dir / "auth")
            server = EmbeddedNats(data_dir / "nats", authority=authority)
            say(f"starting NATS in {server.data_dir}")
            await server.start()
            started.append(server)
            nats_url, creds = server.url, str(authority.admin_creds())
        yield pg_dsn, nats_url, creds
    finally:
        for server in reversed(started):
            await server.stop()


async def restore(source: Path, data_dir: Path, *, pg_dsn: str | None, nats_url: str | None, creds: str | None,
                  replicas: int, say: Say, keys_from: Path | None = None, keys_dsn: str | None = None) -> list[str]:
    """Restore the backup in ``source`` into the empty ``data_dir`` (see the module); with
    ``keys_from``, the key dump of ``cordon backup --keys-out`` into the new key database
    (``keys_dsn``, else beside the database: :mod:`services.ops.keydump`); the lines that say what
    was restored."""
    from services.ops import keydump

    check_empty(data_dir)
    manifest = backup.read_manifest(source, say)
    if keys_from is not None:
        keydump.check_dump(keys_from)  # before anything is written
    state = json.loads((source / backup.STREAM_STATE).read_text())
    order = backup.read_order(source)
    data_dir.mkdir(parents=True, exist_ok=True)
    logging.to_file(data_dir / "logs" / "restore.log")  # a quiet command's log (see shared.log)
    lines = [f"restored the backup of {manifest['created_at']} (cordon {manifest['versions']['cordon']}) "
             f"into {data_dir}"]
    if (source / backup.AUTH).is_dir():
        files = backup.copy_secret_tree(source / backup.AUTH, data_dir / "auth")
        lines.append(f"authority: {files} files in {data_dir / 'auth'} (secret: folder 0700, files 0600)")
    else:
        lines.append("authority: none in the backup (taken without a data dir's auth/): identities issued "
                     "before need issuing again by whoever holds the old keys")
    async with servers(data_dir, pg_dsn, nats_url, creds, say) as (dsn, url, client_creds):
        if keys_from is not None:
            await keydump.check_empty(keydump.key_database(dsn, keys_dsn))
        await restore_database(dsn, source, say)
        if keys_from is not None:
            lines.append(await keydump.restore(keys_from, keydump.key_database(dsn, keys_dsn), say))
        else:
            lines.append(keydump.not_restored(keys_dsn))
        lines.append(await give_to_roles(dsn))
        nc = await bus.connect(url, "cordon.restore", client_creds)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        try:
            lines += await _rebuild(pool, nc, state, order, replicas, say)
        finally:
            await pool.close()
            await nc.close()
    return lines


async def give_to_roles(dsn: str) -> str:
    """After ``pg_restore --no-owner`` everything belongs to the administrator: where the server has
    the services' roles already (a deployment's, or given servers), give each schema and the key
    database back to its role now (``shared.pgroles.provision``, passwords left as they are)."""
    from shared import pgroles

    conn = await asyncpg.connect(dsn)
    try:
        roles = await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)",
                                    [pgroles.role(s) for s in pgroles.SERVICES])
    finally:
        await conn.close()
    if roles < len(pgroles.SERVICES):
        return ("roles: none on this server yet: cordon up gives each schema to its service's role when it starts; "
                "on a deployment's servers, run cordon db roles before the services start")
    await pgroles.provision(dsn)
    return "roles: each schema, and the key database, given back to its service's role (cordon db roles)"


async def _rebuild(pool: asyncpg.Pool, nc: Client, state: dict, order: list, replicas: int, say: Say) -> list[str]:
    dedupe = StreamConfig.from_response(dict(state["stream"]["config"])).duplicate_window or 1200.0
    async with pool.acquire() as conn:
        rebuilt = await rebuild_stream(conn, nc, order, dedupe, replicas, say)
        emptied = await empty_outboxes(conn)
        result, kept = rebuilt.result, len(rebuilt.renumbering.old)
        lines = [f"stream {STREAM}: {result.total:,} recorded events published again in {result.seconds:.1f} s, "
                 f"{kept:,} in the old stream's order"
                 + (f", then {result.total - kept:,} it did not hold yet ({emptied:,} outbox rows emptied)"
                    if result.total > kept or emptied else "")]
        lines += await create_consumers(conn, nc, state["consumers"], rebuilt)
    lines += await keep_positions(pool, nc, rebuilt.renumbering, say)
    return lines
