"""The views' queries on ``cordon.qry.<view>``: the committee's board, rollups, a resident's timeline.

Each reads the current generation in one read-only snapshot, so the figures and the stream
position (``position``: the last stream sequence they include) agree. Unknown community, scope or
resident is ``not_found`` (a typo in a path must not look like a quiet day); malformed input is
``invalid`` with the field named. Requests and replies are the structs of
:mod:`shared.contracts.queries`.

A board or report asked ``at_least`` a stream sequence (the web board asks with the sequence of the
event it just showed) waits until the views have applied the stream that far, polling their
position, at most ``AT_LEAST_WAIT_S``; then it answers anyway, with ``behind`` true: a client never
gets, unknowingly, a board older than an event it has seen.
"""
from __future__ import annotations

import asyncio
from datetime import date, tzinfo
from typing import Any, Awaitable, Callable

import asyncpg
import msgspec

from services.views import board, schema
from services.views.rules import WINDOW_DAYS
from shared import access
from shared.contracts.queries import AT_LEAST_WAIT_S
from shared.errors import NotFound
from shared.identity import Identity

SCOPE = """(community = $1 OR (community >= ($1 || '.') COLLATE "C" AND community < ($1 || '/') COLLATE "C"))"""
CITY = "($1::text IS NOT NULL)"
#: How often a query waiting for ``at_least`` reads the views' position again.
POLL_S = 0.01


def _where(scope: str) -> str:
    return CITY if scope == "city" else SCOPE


def today(host, zone: tzinfo) -> date:
    return host.clock().astimezone(zone).date()


async def read(pool: asyncpg.Pool, fn: Callable[[asyncpg.Connection, str], Awaitable[Any]]) -> Any:
    """Run ``fn(conn, schema)`` on the current generation in a read-only snapshot. A rebuild may
    drop the generation between reading the pointer and the tables: then read the new one."""
    for attempt in range(3):
        async with pool.acquire() as conn:
            try:
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    generation = await schema.current(conn)
                    if generation is None:
                        break
                    return await fn(conn, schema.name(generation))
            except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
                if attempt == 2:
                    raise
                if attempt == 1:  # a generation made before a table was added (the views' start adds it)
                    await schema.migrate(conn)
    async with pool.acquire() as conn:  # first query before the projector created generation 1
        await schema.migrate(conn)
    return await read(pool, fn)


async def caught_up(pool: asyncpg.Pool, at_least: int | None, wait: float = AT_LEAST_WAIT_S) -> None:
    """Return once the views have applied the stream up to ``at_least`` (None: at once), or after
    ``wait`` seconds: the caller then answers with the position it has and says it is behind."""
    if at_least is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while await read(pool, _position) < at_least and loop.time() < deadline:
        await asyncio.sleep(POLL_S)


def _where_now(q, position: int) -> dict:
    """The ``position`` and ``behind`` every board and report carries."""
    return {"position": position, "behind": q.at_least is not None and position < q.at_least}


async def community(host, payload: bytes, identity: Identity | None, *, zone: tzinfo) -> dict:
    """The committee's board (the host has checked that ``identity`` reads the community)."""
    q = board.parse("community", payload)
    on = q.on or today(host, zone)
    await caught_up(host.pool, q.at_least)

    async def fn(conn, s: str) -> dict:
        if not await conn.fetchval(f"SELECT 1 FROM {s}.communities WHERE community = $1", q.community):
            raise NotFound(f"no events recorded for community {q.community}: check the path "
                           "district.street.committee", field="community")
        sums = await _sums(conn, s, q.community, on)
        figures = board.flat(sums.get(q.community, {}))
        return {"ok": True, "community": q.community, "on": on.isoformat(),
                **_where_now(q, await _position(conn, s)), **board.nest(figures), "figures": figures}

    return await read(host.pool, fn)


async def rollup(host, payload: bytes, identity: Identity | None, *, zone: tzinfo) -> dict:
    """A scope's figures (the host has checked that ``identity`` reads the scope)."""
    q = board.parse("rollup", payload)
    on = q.on or today(host, zone)
    await caught_up(host.pool, q.at_least)

    async def fn(conn, s: str) -> dict:
        if q.detail or q.scope.count(".") == 2:  # per community (a community is its own scope)
            names = [r[0] for r in await conn.fetch(
                f"SELECT community FROM {s}.communities WHERE {_where(q.scope)} ORDER BY community", q.scope)]
            count = len(names)
        else:  # the scope's own sums: a few rows a day, however many communities it holds
            count = await conn.fetchval(f"SELECT count(*) FROM {s}.communities WHERE {_where(q.scope)}", q.scope)
        if not count and q.scope != "city":
            raise NotFound(f"no community under scope {q.scope!r}: use 'city', a district, "
                           "district.street or a community path", field="scope")
        if q.detail or q.scope.count(".") == 2:
            sums = await _sums(conn, s, q.scope, on)
            per = {c: board.flat(sums.get(c, {})) for c in names}
            total: dict[str, int] = board.flat({})
            for figures in per.values():
                board.add(total, figures)
        else:
            total = board.flat(await _scope_sums(conn, s, q.scope, on))
        reply = {"ok": True, "scope": q.scope, "on": on.isoformat(), "communities": count,
                 **_where_now(q, await _position(conn, s)), **board.nest(total), "figures": total}
        if q.detail:
            cols = board.columns(per.values())
            reply["detail"] = {"columns": cols,
                               "rows": [[c, *(per[c].get(k, 0) for k in cols)] for c in names]}
        return reply

    return await read(host.pool, fn)


async def timeline(host, payload: bytes, identity: Identity | None) -> dict:
    """A resident's events, for an identity that reads the community the resident lives in."""
    q = board.parse("timeline", payload)

    async def fn(conn, s: str) -> dict:
        rows = await conn.fetch(
            f"SELECT seq, event_id::text, type, occurred_at, actor, community, data FROM {s}.timeline "
            "WHERE resident = $1 ORDER BY occurred_at, seq LIMIT $2", q.resident, q.limit + 1)
        if not rows:
            raise NotFound(f"no event names resident {q.resident}", field="resident")
        if identity is not None:
            home = await conn.fetchval(
                f"SELECT community FROM {s}.timeline WHERE resident = $1 AND type = 'ResidentRegistered' "
                "ORDER BY seq DESC LIMIT 1", q.resident)
            access.forbid_unreadable(identity, {home or rows[0][5]}, f"the timeline of resident {q.resident}")
        events = [{"seq": r[0], "event_id": r[1], "type": r[2], "occurred_at": r[3], "actor": r[4],
                   "community": r[5], "data": msgspec.Raw(r[6])} for r in rows[:q.limit]]
        return {"ok": True, "resident": q.resident, "position": await _position(conn, s),
                "events": events, "truncated": len(rows) > q.limit}

    return await read(host.pool, fn)


async def _position(conn, s: str) -> int:
    return await conn.fetchval(f"SELECT hwm FROM {s}.meta")


async def _scope_sums(conn, s: str, scope: str, on: date) -> dict[str, board.Sums]:
    """Per metric, a scope's sums (as :func:`_sums`) from its own rows in ``rollups``."""
    rows = await conn.fetch(
        f"""SELECT metric,
                   coalesce(sum(n) FILTER (WHERE day = $2), 0)::bigint,
                   sum(n)::bigint,
                   coalesce(sum(n) FILTER (WHERE day > $2::date - {WINDOW_DAYS}), 0)::bigint
            FROM {s}.rollups WHERE scope = $1 AND day <= $2 GROUP BY metric""",
        "" if scope == "city" else scope, on)
    return {metric: (on_day, to_date, window) for metric, on_day, to_date, window in rows}


async def _sums(conn, s: str, scope: str, on: date) -> dict[str, dict[str, board.Sums]]:
    """Per community and metric: the sum on ``on``, up to ``on``, and over the window ending on it."""
    rows = await conn.fetch(
        f"""SELECT community, metric,
                   coalesce(sum(n) FILTER (WHERE day = $2), 0)::bigint,
                   sum(n)::bigint,
                   coalesce(sum(n) FILTER (WHERE day > $2::date - {WINDOW_DAYS}), 0)::bigint
            FROM {s}.figures WHERE {_where(scope)} AND day <= $2
            GROUP BY community, metric""",
        scope, on)
    out: dict[str, dict[str, board.Sums]] = {}
    for community_, metric, on_day, to_date, window in rows:
        out.setdefault(community_, {})[metric] = (on_day, to_date, window)
    return out
