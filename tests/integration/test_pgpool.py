"""The pools' hot paths give connections back without the reset round trip; everything else is
reset as asyncpg always did (shared/pgpool.py)."""
from __future__ import annotations

import asyncpg
import pytest

from shared import pgpool

pytestmark = pytest.mark.integration


async def last_query(observer: asyncpg.Connection, pid: int) -> str:
    return await observer.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)


async def test_stateless_work_is_given_back_without_the_reset_query(pg_dsn):
    pool = await pgpool.create_pool(pg_dsn, min_size=1, max_size=1)
    observer = await asyncpg.connect(pg_dsn)
    try:
        async with pgpool.stateless(pool) as conn, conn.transaction():
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("SELECT 'the batch' AS work")

        assert await last_query(observer, pid) == "COMMIT;"  # asyncpg's own, no reset after it

        async with pool.acquire() as conn:  # not said stateless: reset as before
            await conn.execute("SELECT 'other work'")
        assert "pg_advisory_unlock_all" in await last_query(observer, pid)
    finally:
        await observer.close()
        await pool.close()


async def test_session_state_taken_outside_stateless_is_reset_on_release(pg_dsn):
    pool = await pgpool.create_pool(pg_dsn, min_size=1, max_size=1)
    observer = await asyncpg.connect(pg_dsn)
    try:
        async with pool.acquire() as conn:  # as the relay holds its lock and settings
            await conn.execute("SELECT pg_advisory_lock(4242)")
            await conn.execute("SET work_mem = '7MB'")

        assert await observer.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
        async with pgpool.stateless(pool) as conn:
            assert await conn.fetchval("SHOW work_mem") != "7MB"
    finally:
        await observer.close()
        await pool.close()


async def test_a_failed_stateless_transaction_is_rolled_back_before_the_next_user(pg_dsn):
    pool = await pgpool.create_pool(pg_dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE t (n int)")
        with pytest.raises(RuntimeError):
            async with pgpool.stateless(pool) as conn:
                await conn.execute("BEGIN")  # a transaction asyncpg does not manage
                await conn.execute("INSERT INTO t VALUES (1)")
                raise RuntimeError("the batch failed")

        async with pgpool.stateless(pool) as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM t") == 0
    finally:
        await pool.close()


async def test_stateless_on_a_plain_asyncpg_pool_is_a_plain_acquire(pg_dsn):
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)
    observer = await asyncpg.connect(pg_dsn)
    try:
        async with pgpool.stateless(pool) as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        assert "pg_advisory_unlock_all" in await last_query(observer, pid)
    finally:
        await observer.close()
        await pool.close()
