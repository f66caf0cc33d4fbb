"""Comparing a live table with its replay, row for row, in SQL: what one holds and the other does not.

``EXCEPT ALL`` both ways (ALL: a table without a key, the views' timeline, may hold a row twice,
and a row held twice must not pass for one held once). Rows on either side with the same key are
paired, so a changed row is told as the columns that differ rather than as two rows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg

#: Rows shown per table (the count says how many differ in all).
SHOWN = 3


@dataclass(frozen=True)
class Table:
    name: str
    #: the columns that name a row (its primary key); empty: rows are compared whole, unpaired
    key: tuple[str, ...] = ()
    #: which rows count, as an SQL condition (empty: all)
    where: str = ""


async def columns(conn: asyncpg.Connection, schema: str, table: str) -> list[str]:
    """The table's columns in order (those of the replay: the live table is compared on them)."""
    rows = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum", f"{schema}.{table}")
    return [r[0] for r in rows]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def differences(conn: asyncpg.Connection, live: str, replay: str, table: Table,
                      shown: int = SHOWN) -> tuple[int, list[str]]:
    """How many rows of ``live.table`` and ``replay.table`` differ (a pair with the same key counts
    once), and a line for each of the first ``shown``."""
    cols = ", ".join(_q(c) for c in await columns(conn, replay, table.name))
    where = f" WHERE {table.where}" if table.where else ""
    here = f"SELECT {cols} FROM {live}.{_q(table.name)}{where}"
    there = f"SELECT {cols} FROM {replay}.{_q(table.name)}{where}"
    if table.key:
        pairs = " AND ".join(f"l.{_q(k)} = r.{_q(k)}" for k in table.key)
        order = ", ".join(f"coalesce(l.{_q(k)}, r.{_q(k)})" for k in table.key)
        pick = (f"SELECT row_to_json(l)::text AS here, row_to_json(r)::text AS there, count(*) OVER () AS n "
                f"FROM l FULL JOIN r ON {pairs} ORDER BY {order}")
    else:
        pick = ("SELECT here, there, count(*) OVER () AS n FROM ("
                "SELECT row_to_json(l)::text AS here, NULL AS there FROM l "
                "UNION ALL SELECT NULL, row_to_json(r)::text FROM r) d")
    rows = await conn.fetch(
        f"WITH l AS ({here} EXCEPT ALL {there}), r AS ({there} EXCEPT ALL {here}) {pick} LIMIT $1", shown)
    if not rows:
        return 0, []
    where_live = f"{live}.{table.name}"
    lines = [_line(where_live, table.key, r["here"], r["there"]) for r in rows]
    n = rows[0]["n"]
    if n > len(rows):
        lines.append(f"{where_live}: {n - len(rows):,} more row{'s' * (n - len(rows) != 1)} differ")
    return n, lines


def _line(table: str, key: tuple[str, ...], here: str | None, there: str | None) -> str:
    if here is None:
        return f"{table} lacks a row the replay has: {there}"
    if there is None:
        return f"{table} has a row the replay does not: {here}"
    ours, theirs = json.loads(here), json.loads(there)
    named = " ".join(f"{k}={ours[k]}" for k in key)
    changed = "; ".join(f"{c} {json.dumps(ours[c], ensure_ascii=False)} here, "
                        f"{json.dumps(theirs[c], ensure_ascii=False)} in the replay"
                        for c in ours if ours[c] != theirs.get(c))
    return f"{table} {named}: {changed}"
