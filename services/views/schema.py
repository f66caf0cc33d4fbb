"""Where the read models live: one PostgreSQL schema per *generation*, and a pointer to the current one.

``views.current`` names the generation queries read and the live projector writes. A rebuild
fills a new generation beside it from the stream, then swaps the pointer in one transaction and
drops the old schema: the old models answer until the new ones have caught up.

Every write to a generation holds its advisory lock (``lock``) for the transaction, and reads the
generation's ``hwm`` (the last stream sequence applied) under it: so replicas, the live projector
and a swap never interleave, and each batch applies only what lies after ``hwm``.
"""
from __future__ import annotations

import asyncpg

LOCK_CLASS = 0x56494557  # "VIEW": advisory lock namespace; the object id is the generation

POINTER_DDL = """
CREATE TABLE IF NOT EXISTS views.generations (
    generation  integer PRIMARY KEY,
    state       text NOT NULL,           -- building | current | retired | dropped | shadow
    created_at  timestamptz NOT NULL DEFAULT now(),
    swapped_at  timestamptz
);
CREATE TABLE IF NOT EXISTS views.current (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    generation  integer NOT NULL REFERENCES views.generations
);
"""


def name(generation: int) -> str:
    return f"views_g{int(generation)}"


def ddl(generation: int) -> str:
    s = name(generation)
    return f"""
    CREATE SCHEMA {s};
    CREATE TABLE {s}.meta (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        hwm bigint NOT NULL DEFAULT 0,          -- last stream sequence applied
        applied bigint NOT NULL DEFAULT 0,      -- events that passed the inbox
        duplicates bigint NOT NULL DEFAULT 0,   -- replays of an event already applied
        undecodable bigint NOT NULL DEFAULT 0,
        updated_at timestamptz);
    INSERT INTO {s}.meta DEFAULT VALUES;
    -- the inbox: an event id applied once, whatever its stream sequence
    CREATE TABLE {s}.seen (event_id uuid PRIMARY KEY);
    CREATE TABLE {s}.figures (
        community text COLLATE "C" NOT NULL, metric text COLLATE "C" NOT NULL, day date NOT NULL,
        n bigint NOT NULL, PRIMARY KEY (community, metric, day));
    {rollups_ddl(generation)}
    CREATE TABLE {s}.members (
        set text NOT NULL, key text NOT NULL, community text NOT NULL, metric text NOT NULL,
        value bigint NOT NULL, PRIMARY KEY (set, key));
    CREATE TABLE {s}.communities (community text COLLATE "C" PRIMARY KEY, first_seq bigint NOT NULL);
    -- indexed by ``index`` (a rebuild indexes once, after the bulk of the stream: much cheaper)
    CREATE TABLE {s}.timeline (
        resident text NOT NULL, seq bigint NOT NULL, event_id uuid NOT NULL, type text NOT NULL,
        occurred_at timestamptz NOT NULL, actor text NOT NULL, community text NOT NULL,
        data bytea NOT NULL);
    -- event types no rule knows (or not registered here), counted rather than failed on
    CREATE TABLE {s}.ignored (type text PRIMARY KEY, n bigint NOT NULL);
    """


def rollups_ddl(generation: int) -> str:
    """Each figure's deltas summed per scope above the community (``''`` the city, a district,
    ``district.street``): a city's rollup reads a few rows a day, however many committees it has."""
    return f"""CREATE TABLE {name(generation)}.rollups (
        scope text COLLATE "C" NOT NULL, metric text COLLATE "C" NOT NULL, day date NOT NULL,
        n bigint NOT NULL, PRIMARY KEY (scope, metric, day));"""


async def add_rollups(conn: asyncpg.Connection, generation: int) -> bool:
    """Inside a transaction holding the generation's lock: give a generation made before the
    ``rollups`` table its table, filled from its figures. True if it had none."""
    s = name(generation)
    if await conn.fetchval("SELECT to_regclass($1)", f"{s}.rollups") is not None:
        return False
    await conn.execute(rollups_ddl(generation))
    await conn.execute(f"""
        INSERT INTO {s}.rollups (scope, metric, day, n)
        SELECT a.scope, f.metric, f.day, sum(f.n) FROM {s}.figures f,
               LATERAL (VALUES (''), (split_part(f.community, '.', 1)),
                               (split_part(f.community, '.', 1) || '.' || split_part(f.community, '.', 2))) AS a(scope)
        GROUP BY a.scope, f.metric, f.day""")
    return True


def index_ddl(generation: int) -> str:
    return f"CREATE INDEX IF NOT EXISTS timeline_resident ON {name(generation)}.timeline (resident, seq)"


async def index(conn: asyncpg.Connection, generation: int) -> None:
    """The secondary indexes queries need (the timeline by resident)."""
    await conn.execute(index_ddl(generation))


async def lock(conn: asyncpg.Connection, generation: int) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_CLASS, generation)


async def migrate(conn: asyncpg.Connection) -> int:
    """Make sure a current generation exists (the first start creates generation 1); return it."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", LOCK_CLASS)
        await conn.execute("CREATE SCHEMA IF NOT EXISTS views")
        await conn.execute(POINTER_DDL)
        current = await conn.fetchval("SELECT generation FROM views.current")
        if current is None:
            current = await _create(conn, "current")
            await conn.execute("INSERT INTO views.current (generation) VALUES ($1)", current)
        else:
            await lock(conn, current)
            await add_rollups(conn, current)
        return current


async def current(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT generation FROM views.current")


async def create(conn: asyncpg.Connection, state: str = "building") -> int:
    """A new, empty generation to build beside the current one (``shadow``: built by `cordon
    reconcile` to compare with the current one, never swapped in, always dropped)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", LOCK_CLASS)
        return await _create(conn, state)


async def _create(conn: asyncpg.Connection, state: str) -> int:
    generation = await conn.fetchval("SELECT coalesce(max(generation), 0) + 1 FROM views.generations")
    await conn.execute("INSERT INTO views.generations (generation, state) VALUES ($1, $2)", generation, state)
    await conn.execute(ddl(generation))
    if state == "current":
        await conn.execute(index_ddl(generation))
    return generation


async def lock_current(conn: asyncpg.Connection) -> int:
    """Inside a transaction: the current generation, locked against a concurrent swap."""
    while True:
        generation = await current(conn)
        await lock(conn, generation)
        if await current(conn) == generation:  # a swap may have committed while we waited
            return generation


async def swap(conn: asyncpg.Connection, generation: int) -> int:
    """Make ``generation`` current, after any batch in flight on the old one; return the old one."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", LOCK_CLASS)
        old = await lock_current(conn)
        await conn.execute("UPDATE views.current SET generation = $1", generation)
        await conn.execute("UPDATE views.generations SET state = 'current', swapped_at = now() "
                           "WHERE generation = $1", generation)
        await conn.execute("UPDATE views.generations SET state = 'retired' WHERE generation = $1", old)
        return old


async def drop(conn: asyncpg.Connection, generation: int) -> None:
    """Remove a generation that is not current (a retired one, or an abandoned build)."""
    async with conn.transaction():
        if await current(conn) == generation:
            raise ValueError(f"generation {generation} is current")
        await conn.execute(f"DROP SCHEMA IF EXISTS {name(generation)} CASCADE")
        await conn.execute("UPDATE views.generations SET state = 'dropped' WHERE generation = $1", generation)


async def hwm(conn: asyncpg.Connection, generation: int) -> int:
    return await conn.fetchval(f"SELECT hwm FROM {name(generation)}.meta")
