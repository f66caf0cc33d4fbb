"""The PostgreSQL record of one service: events, outbox, command replies, inbox, dead letters.

Each service owns a schema. ``events`` is append-only with a unique ``(stream_id, version)``: that
unique key is the optimistic-concurrency check. A command's events, their outbox rows and its
reply commit in one transaction (see :mod:`shared.runtime`), so an accepted command is never lost
and never half-published.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

import asyncpg

SCHEMA_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")

#: Failures after which the same work may well succeed if tried again, with nothing committed:
#: PostgreSQL unreachable or restarting, out of connections or memory, read-only after a
#: fail-over. A command gets ``unavailable`` (retry with the same command_id); a consumer keeps
#: its batch and tries it again, in order, instead of parking it as a dead letter.
TRANSIENT = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
             asyncpg.InsufficientResourcesError, asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError,
             asyncpg.CrashShutdownError, asyncpg.ReadOnlySQLTransactionError)


def _check(schema: str) -> str:
    if not SCHEMA_NAME.match(schema):
        raise ValueError(f"bad schema name {schema!r}")
    return schema


def ddl(schema: str) -> str:
    """The record of a service with commands: events, outbox, command replies."""
    schema = _check(schema)
    return f"""
    CREATE TABLE IF NOT EXISTS {schema}.events (
        position     bigserial PRIMARY KEY,
        event_id     uuid NOT NULL UNIQUE,
        stream_id    text NOT NULL,
        version      integer NOT NULL CHECK (version > 0),
        type         text NOT NULL,
        community    text NOT NULL,
        recorded_at  timestamptz NOT NULL,
        envelope     bytea NOT NULL,
        UNIQUE (stream_id, version)
    );
    -- No foreign key to events: append() writes both in one statement, and the key's check
    -- (a lookup and a row lock per outbox row) was a tenth of the cost of every append.
    CREATE TABLE IF NOT EXISTS {schema}.outbox (
        position     bigint PRIMARY KEY,
        subject      text NOT NULL
    );
    -- The writing transaction: the relay publishes only rows of transactions older than every
    -- one still in progress, in (txid, position) order, so a row can never turn up below one
    -- already published however late its transaction commits (see shared/relay.py).
    ALTER TABLE {schema}.outbox ADD COLUMN IF NOT EXISTS txid xid8 NOT NULL DEFAULT pg_current_xact_id();
    CREATE INDEX IF NOT EXISTS outbox_txid ON {schema}.outbox (txid, position);
    DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'outbox_position_fkey'
                   AND conrelid = '{schema}.outbox'::regclass) THEN
            ALTER TABLE {schema}.outbox DROP CONSTRAINT outbox_position_fkey;  -- a record from before
        END IF;
    END $$;
    CREATE TABLE IF NOT EXISTS {schema}.commands (
        command_id   text PRIMARY KEY,
        name         text NOT NULL,
        reply        bytea NOT NULL,
        recorded_at  timestamptz NOT NULL DEFAULT now()
    );
    -- What the command said (sha256 of its name and payload as received): the same command_id
    -- with another command is refused. Empty for replies stored before it was kept.
    ALTER TABLE {schema}.commands ADD COLUMN IF NOT EXISTS fingerprint bytea;
    CREATE OR REPLACE FUNCTION {schema}.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'the event record is append-only'; END $$;
    DROP TRIGGER IF EXISTS events_append_only ON {schema}.events;
    CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON {schema}.events
        FOR EACH ROW EXECUTE FUNCTION {schema}.forbid_change();
    """


def consumer_ddl(schema: str) -> str:
    """What a service's durable consumers keep: the inbox (exactly-once effects), dead letters."""
    schema = _check(schema)
    return f"""
    CREATE TABLE IF NOT EXISTS {schema}.inbox (
        consumer     text NOT NULL,
        event_id     uuid NOT NULL,
        stream_seq   bigint,
        consumed_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, event_id)
    );
    CREATE TABLE IF NOT EXISTS {schema}.dead_letters (
        id           bigserial PRIMARY KEY,
        consumer     text NOT NULL,
        event_id     uuid,
        subject      text NOT NULL,
        stream_seq   bigint,
        payload      bytea NOT NULL,
        error        text NOT NULL,
        attempts     integer NOT NULL,
        parked_at    timestamptz NOT NULL DEFAULT now()
    );
    -- A parked message's inbox row keeps a redelivery from running it again, but says "parked",
    -- not "applied": `cordon dead-letters replay` applies it once and clears the mark. Added to
    -- a record from before once, marking the rows its dead letters stand for.
    DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = '{schema}'
                       AND table_name = 'inbox' AND column_name = 'parked') THEN
            ALTER TABLE {schema}.inbox ADD COLUMN parked boolean NOT NULL DEFAULT false;
            UPDATE {schema}.inbox i SET parked = true FROM {schema}.dead_letters d
                WHERE d.consumer = i.consumer AND d.event_id = i.event_id;
        END IF;
    END $$;
    """


async def migrate(conn: asyncpg.Connection, schema: str, extra_ddl: str = "", record: bool = True,
                  consumers: bool = True) -> None:
    """Create the service's schema and tables if missing. Safe to run concurrently and repeatedly.

    ``record`` creates the events, outbox and command tables (a service with commands),
    ``consumers`` the inbox and dead letters (a service with durable consumers); the views and
    audit, which have neither, get their schema and ``extra_ddl`` only.
    """
    async with conn.transaction():
        # Serialize concurrent migrations of the same schema (two replicas starting together).
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        # Only when missing: IF NOT EXISTS still asks for CREATE on the database, which a
        # service's own role (given its schema by shared.pgroles) does not have.
        if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", _check(schema)):
            await conn.execute(f"CREATE SCHEMA {schema}")
        if record:
            await conn.execute(ddl(schema))
        if consumers:
            await conn.execute(consumer_ddl(schema))
        if extra_ddl:
            await conn.execute(extra_ddl)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event ready to append: its encoded envelope and where it goes."""

    event_id: str
    stream_id: str
    version: int
    type: str
    community: str
    recorded_at: datetime
    envelope: bytes
    subject: str


async def load_streams(conn: asyncpg.Connection, schema: str, stream_ids: Iterable[str]):
    """Every stored envelope of the given streams, ordered by stream and version."""
    return await conn.fetch(
        f"SELECT stream_id, version, envelope FROM {schema}.events "
        "WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, version",
        list(stream_ids),
    )


async def append(conn: asyncpg.Connection, schema: str, events: list[NewEvent],
                 replies: list[tuple[str, str, bytes, datetime, bytes | None]] = ()) -> None:
    """Append events, their outbox rows and the commands' replies, in ONE statement (one round
    trip). Must run inside a transaction. ``replies`` are (command_id, name, reply, recorded_at,
    fingerprint).

    Raises ``asyncpg.UniqueViolationError`` when a (stream_id, version) or a command id is taken:
    somebody got there first.
    """
    if not events and not replies:
        return
    await conn.execute(
        f"""WITH appended AS (
                INSERT INTO {schema}.events
                    (event_id, stream_id, version, type, community, recorded_at, envelope)
                SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[],
                                     $6::timestamptz[], $7::bytea[])
                RETURNING position, event_id
            ), queued AS (
                INSERT INTO {schema}.outbox (position, subject)
                SELECT a.position, s.subject
                FROM appended a JOIN unnest($1::uuid[], $8::text[]) AS s (event_id, subject)
                     USING (event_id)
            )
            INSERT INTO {schema}.commands (command_id, name, reply, recorded_at, fingerprint)
            SELECT * FROM unnest($9::text[], $10::text[], $11::bytea[], $12::timestamptz[], $13::bytea[])""",
        [e.event_id for e in events],
        [e.stream_id for e in events],
        [e.version for e in events],
        [e.type for e in events],
        [e.community for e in events],
        [e.recorded_at for e in events],
        [e.envelope for e in events],
        [e.subject for e in events],
        [r[0] for r in replies],
        [r[1] for r in replies],
        [r[2] for r in replies],
        [r[3] for r in replies],
        [r[4] for r in replies],
    )


async def outbox_depth(conn: asyncpg.Connection, schema: str) -> int:
    """Events committed but not yet acknowledged by JetStream (the relay's backlog)."""
    return await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox")
