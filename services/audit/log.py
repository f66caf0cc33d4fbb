"""The audit log in PostgreSQL: append a batch of stream messages once each, verify, search.

One writer at a time (an advisory lock per batch, the head row read under it), so replicas of the
audit service never fork the chain. A message is appended once: by stream sequence (the head's
``hwm``) and by event id (an event replayed under a new sequence is counted, not appended).
``audit.log`` refuses UPDATE and DELETE; verification catches whoever gets around that.

Stream sequences only grow along the log, except after a *rewind*: when the stream lost its last
messages (a single node's power loss) and gives its next messages their sequences again, the tail
lowers ``hwm`` to the stream's last sequence (:meth:`Appender.rewind`) and ``audit.rewinds``
records at which row the sequences start again, so verification accepts exactly that.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.audit import chain
from shared.tail import Batch, Reposition
from shared.errors import Invalid
from shared.subjects import check_scope

LOCK = (0x41554454, 0)  # "AUDT"

DDL = f"""
CREATE TABLE IF NOT EXISTS audit.log (
    n            bigint PRIMARY KEY,
    stream_seq   bigint NOT NULL,
    subject      text NOT NULL,
    event_id     uuid UNIQUE,
    type         text,
    community    text COLLATE "C",
    actor        text,
    resident     text,
    stream_id    text,
    occurred_at  timestamptz,
    envelope     bytea NOT NULL,
    hash         bytea NOT NULL,
    appended_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS log_actor ON audit.log (actor, n);
CREATE INDEX IF NOT EXISTS log_resident ON audit.log (resident, n) WHERE resident IS NOT NULL;
CREATE INDEX IF NOT EXISTS log_community ON audit.log (community, n);
CREATE INDEX IF NOT EXISTS log_occurred ON audit.log (occurred_at);
-- a committee's latest events of one type (the live board's lists: denials, missed check-ins)
CREATE INDEX IF NOT EXISTS log_community_type ON audit.log (community, type, n);
CREATE TABLE IF NOT EXISTS audit.head (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    n            bigint NOT NULL,
    hash         bytea NOT NULL,
    hwm          bigint NOT NULL,
    duplicates   bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit.head (n, hash, hwm) VALUES (0, '\\x{chain.GENESIS.hex()}'::bytea, 0)
    ON CONFLICT DO NOTHING;
-- Row n is the first after the stream lost its tail: its sequence follows to_seq, not the row before.
CREATE TABLE IF NOT EXISTS audit.rewinds (
    n            bigint PRIMARY KEY,
    from_seq     bigint NOT NULL,
    to_seq       bigint NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION audit.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
DROP TRIGGER IF EXISTS log_append_only ON audit.log;
CREATE TRIGGER log_append_only BEFORE UPDATE OR DELETE ON audit.log
    FOR EACH ROW EXECUTE FUNCTION audit.append_only();
"""

COLUMNS = ("n", "stream_seq", "subject", "event_id", "type", "community", "actor", "resident",
           "stream_id", "occurred_at", "envelope", "hash")


async def position(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT hwm FROM audit.head")


class Appender:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool
        self.appended = 0
        self.duplicates = 0

    async def position(self) -> int:
        return await position(self.pool)

    async def rewind(self, seen: int, to: int) -> None:
        """Lower ``hwm`` from ``seen`` to ``to`` (the stream's last sequence, after it lost its tail),
        recording where the log's sequences start again. Nothing if ``hwm`` moved meanwhile."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *LOCK)
            n = await conn.fetchval("UPDATE audit.head SET hwm = $2, updated_at = now() WHERE hwm = $1 "
                                    "RETURNING n", seen, to)
            if n is not None:
                await conn.execute(
                    "INSERT INTO audit.rewinds (n, from_seq, to_seq) VALUES ($1, $2, $3) "
                    "ON CONFLICT (n) DO UPDATE SET to_seq = least(rewinds.to_seq, excluded.to_seq)",
                    n + 1, seen, to)

    def prepare(self, batch: Batch) -> list[tuple]:
        return [(seq, msg.subject, msg.data, chain.columns(msg.data)) for seq, _, msg in batch]

    async def apply(self, items: list[tuple], after: int | None) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            # Safe without a synchronous commit: the head commits with the rows, the stream replays.
            await conn.execute("SET LOCAL synchronous_commit TO off")
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *LOCK)
            n, prev, hwm = await conn.fetchrow("SELECT n, hash, hwm FROM audit.head")
            if after is not None and hwm < after:
                raise Reposition(hwm)
            items = [i for i in items if i[0] > hwm]
            if not items:
                return hwm
            fresh = await _fresh(conn, items)
            records = []
            for seq, subject, data, cols in fresh:
                n += 1
                prev = chain.link(prev, n, seq, subject, data)
                records.append((n, seq, subject, cols.event_id, cols.type, cols.community, cols.actor,
                                cols.resident, cols.stream_id, cols.occurred_at, data, prev))
            if records:
                await conn.copy_records_to_table("log", schema_name="audit", columns=COLUMNS,
                                                 records=records)
            duplicates = len(items) - len(fresh)
            await conn.execute("UPDATE audit.head SET n = $1, hash = $2, hwm = $3, "
                               "duplicates = duplicates + $4, updated_at = now()",
                               n, prev, items[-1][0], duplicates)
        self.appended += len(fresh)
        self.duplicates += duplicates
        return items[-1][0]


async def _fresh(conn, items: list) -> list:
    """Items whose event id is not in the log yet (once each); unreadable ones are all kept."""
    ids = [cols.event_id for _, _, _, cols in items if cols.event_id is not None]
    logged = set()
    if ids:
        logged = {r[0] for r in await conn.fetch(
            "SELECT event_id::text FROM audit.log WHERE event_id = ANY($1::uuid[])", ids)}
    out = []
    for item in items:
        event_id = item[3].event_id
        if event_id is None or event_id not in logged:
            out.append(item)
            if event_id is not None:
                logged.add(event_id)
    return out


@dataclass
class Verdict:
    ok: bool
    rows: int
    head_n: int
    head_hash: str
    finding: chain.Finding | None

    def to_dict(self) -> dict:
        out = {"ok": self.ok, "rows": self.rows, "head": {"n": self.head_n, "hash": self.head_hash}}
        if self.finding:
            out["first_bad_row"] = {"n": self.finding.n, "problem": self.finding.problem,
                                    "detail": self.finding.detail}
        return out


async def verify(conn: asyncpg.Connection, progress=None) -> Verdict:
    """Walk the whole log in one snapshot and name the first row that does not match."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        verifier = chain.Verifier({r[0]: r[1] for r in await conn.fetch("SELECT n, to_seq FROM audit.rewinds")})
        head_n, head_hash = await conn.fetchrow("SELECT n, hash FROM audit.head")
        query = (f"SELECT {', '.join(c for c in COLUMNS)} FROM audit.log ORDER BY n")
        async for r in conn.cursor(query, prefetch=2000):
            cols = chain.Columns(str(r["event_id"]) if r["event_id"] else None, r["type"], r["community"],
                                 r["actor"], r["resident"], r["stream_id"], r["occurred_at"])
            row = chain.Row(r["n"], r["stream_seq"], r["subject"], r["envelope"], r["hash"], cols)
            if verifier.check(row):
                break
            if progress and verifier.rows % 10000 == 0:
                progress(verifier.rows, head_n)
        verifier.finish(head_n, head_hash)
    return Verdict(verifier.finding is None, verifier.rows, head_n, head_hash.hex(), verifier.finding)


@dataclass(frozen=True)
class Filters:
    actor: str | None = None
    resident: str | None = None
    #: A community path or any prefix of the tree (district, district.street).
    community: str | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    #: The newest rows first (the last ``limit`` of those matching), as a live board lists them.
    newest_first: bool = False


MAX_SHOW = 10000


async def show(conn: asyncpg.Connection, f: Filters) -> list[dict]:
    """Rows matching every given filter, oldest first (by ``n``), or newest first."""
    where, args = [], []

    def arg(value) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.actor:
        where.append(f"actor = {arg(f.actor)}")
    if f.resident:
        where.append(f"resident = {arg(f.resident)}")
    if f.community:
        check_scope(f.community, "community")
        p = arg(f.community)
        if f.community.count(".") == 2:  # a committee: nothing lies under it (an index serves it)
            where.append(f"community = {p}")
        else:
            where.append(f"(community = {p} OR (community >= ({p} || '.') COLLATE \"C\" "
                         f"AND community < ({p} || '/') COLLATE \"C\"))")
    if f.type:
        where.append(f"type = {arg(f.type)}")
    for bound, op in ((f.since, ">="), (f.until, "<")):
        if bound is not None:
            if bound.utcoffset() is None:
                raise Invalid("since/until need a time zone, e.g. 2020-02-17T00:00:00+08:00")
            where.append(f"occurred_at {op} {arg(bound)}")
    if not 1 <= f.limit <= MAX_SHOW:
        raise Invalid(f"limit must be 1 to {MAX_SHOW}", field="limit")
    sql = (f"SELECT n, stream_seq, event_id::text, type, occurred_at, actor, community, resident, "
           f"stream_id, subject, encode(hash, 'hex') AS hash, envelope FROM audit.log "
           f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY n {'DESC' if f.newest_first else ''} "
           f"LIMIT {arg(f.limit)}")
    return [dict(r) for r in await conn.fetch(sql, *args)]
