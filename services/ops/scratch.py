"""Where `cordon reconcile` builds what it compares: scratch schemas and shadow generations of the
views, each held by a session advisory lock of the reconcile that made it, and always dropped.

They are ordinary committed schemas, not one long transaction that is rolled back: a transaction
that writes holds back every service's relay until it ends (the relays publish only below the
oldest open transaction), so the replays write in short transactions, like any consumer. The cost
is that a reconcile killed outright (``kill -9``) leaves its schema behind: the next reconcile
drops every such schema whose lock is free (its owner's session is gone); those of a reconcile
still running keep their lock and are left alone.
"""
from __future__ import annotations

import secrets

import asyncpg

from services.views import schema as views

#: Advisory lock namespace ("RECN"); the object id is hashtext(schema name).
LOCK_CLASS = 0x5245434E
PREFIX = "reconcile_"


async def claim(conn: asyncpg.Connection, name: str) -> None:
    """Hold ``name`` for this session (until :func:`release` or the connection closes)."""
    await conn.execute("SELECT pg_advisory_lock($1, hashtext($2))", LOCK_CLASS, name)


async def release(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", LOCK_CLASS, name)


async def create(conn: asyncpg.Connection) -> str:
    """A new, empty scratch schema held by this session."""
    name = f"{PREFIX}{secrets.token_hex(6)}"
    await claim(conn, name)  # before it exists: a concurrent sweep never sees it unheld
    await conn.execute(f"CREATE SCHEMA {name}")
    return name


async def drop(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    await release(conn, name)


async def create_shadow(conn: asyncpg.Connection) -> int:
    """A new generation of the views in state ``shadow``, held by this session."""
    async with conn.transaction():
        generation = await views.create(conn, "shadow")  # a savepoint: committed with the claim
        await claim(conn, views.name(generation))
    return generation


async def drop_shadow(conn: asyncpg.Connection, generation: int) -> None:
    await views.drop(conn, generation)
    await release(conn, views.name(generation))


async def sweep(conn: asyncpg.Connection) -> list[str]:
    """Drop what reconciles that are gone left behind; the names dropped."""
    dropped = []
    for name in await conn.fetch("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", PREFIX):
        if await _orphaned(conn, name[0]):
            await drop(conn, name[0])
            dropped.append(name[0])
    if await conn.fetchval("SELECT to_regclass('views.generations') IS NOT NULL"):
        for row in await conn.fetch("SELECT generation FROM views.generations WHERE state = 'shadow'"):
            if await _orphaned(conn, views.name(row[0])):
                await drop_shadow(conn, row[0])
                dropped.append(views.name(row[0]))
    return dropped


async def _orphaned(conn: asyncpg.Connection, name: str) -> bool:
    return await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", LOCK_CLASS, name)


async def leftovers(conn: asyncpg.Connection) -> list[str]:
    """Scratch schemas and shadow generations that exist now (for tests and for the curious)."""
    names = [r[0] for r in await conn.fetch(
        "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY 1", PREFIX)]
    if await conn.fetchval("SELECT to_regclass('views.generations') IS NOT NULL"):
        names += [views.name(r[0]) for r in await conn.fetch(
            "SELECT generation FROM views.generations WHERE state = 'shadow' ORDER BY 1")]
    return names
