"""PostgreSQL pools whose hot paths give a connection back without asyncpg's reset round trip.

On release, asyncpg's pool sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
RESET ALL`` so that the next user gets a clean session: one round trip per acquisition. A
command batch acquires once, so a lone command paid it on its batch's connection and again on
the key database's. Measured with ``bench/backbone.py --concurrency 1`` (the registry's CPU over
8 s of one command at a time, alternated with the code before, six runs each): 3.85 ms of the
registry's CPU a command without it against 4.15 ms with it, and 135 against 120 commands/s. In
full batches it is lost in the noise.

Safe by default: a connection is reset as before unless the work that held it said it leaves no
session state (:func:`stateless`): only transactions and single statements, no session-level
``SET``, advisory lock or ``LISTEN``. The relay's and the consumer's held connections, and the
migrations' session locks, keep the reset.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import asyncpg


class Connection(asyncpg.Connection):
    """asyncpg's connection, with a mark that the work which held it left no session state."""

    __slots__ = ("_stateless",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stateless = False

    def mark_stateless(self) -> None:
        """The work that held this connection set nothing beyond its transactions: give it back
        without the reset query (asyncpg still rolls back an open transaction first)."""
        self._stateless = True


async def _reset(conn: Connection) -> None:
    if conn._stateless:
        conn._stateless = False
        return
    if query := conn.get_reset_query():
        await conn.execute(query)


async def create_pool(dsn: str, **kwargs: Any) -> asyncpg.Pool:
    """``asyncpg.create_pool`` whose connections :func:`stateless` can give back without a reset."""
    return await asyncpg.create_pool(dsn, connection_class=Connection, reset=_reset, **kwargs)


@asynccontextmanager
async def stateless(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """``pool.acquire()`` for work that leaves no session state; released without the reset
    round trip when the pool came from :func:`create_pool` (otherwise exactly ``acquire``)."""
    async with pool.acquire() as conn:
        try:
            yield conn
        finally:
            if (mark := getattr(conn, "mark_stateless", None)) is not None:
                mark()
