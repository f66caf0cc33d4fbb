#!/usr/bin/env python
"""The city's daily report after weeks of history: rollup query latency, by the committees' rows
(every community's per-day figures summed, as `detail` and before issue 18 for every rollup) and
by the scope's own sums (``rollups``: what a rollup without detail reads now).

    python bench/rollup.py [--committees 6000] [--days 60] [--queries 30] [--quick]

Starts an embedded PostgreSQL (durable defaults) in a temp dir and makes one generation of the read
models as the views make it (``services.views.schema``), then fills its ``figures`` with the history
of N committees over D days: each committee has a row a day for each of 24 metrics (levels moved by
the day's deltas, flows, stock items), laid out as ``cordon load --committees`` lays them out (28
committees a street, 16 districts). The rows are written by SQL, not by projecting events: this
measures the query over a table of the size D days of N committees make (a committee's busy day
moves about this many figures), not the projection. ``rollups`` is then filled from ``figures`` by
the same statement that adds it to a generation of before.

For the city, a district and a street, on the last day: p50 / p99 of both ways, each in its own
read-only snapshot as the query runs them; and a committee's board beside them. Prints a table, then
(last line of stdout) one JSON object. Figures only: nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from services.demo import city  # noqa: E402
from services.views import board, queries, schema  # noqa: E402
from services.views.rules import FLOWS, LEVELS  # noqa: E402
from shared import log as logging  # noqa: E402
from shared.embedded import EmbeddedPostgres, ensure_database  # noqa: E402

LAST_DAY = date(2022, 4, 30)
STOCK = ("stock.rice", "stock.masks", "stock.vegetable-pack", "stock.eggs")


class Rollup(common.BenchBase):
    def __init__(self, args):
        super().__init__("cordon-bench-rollup-")
        self.args = args

    async def run(self) -> dict:
        a = self.args
        self.pg = EmbeddedPostgres(self.tmp / "pg")
        await self.pg.start()
        dsn = await ensure_database(self.pg.dsn, "cordon")
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            generation = await schema.migrate(conn)
            s = schema.name(generation)
            metrics = [*LEVELS, *FLOWS, "arrivals", *STOCK][:24]
            t0 = time.perf_counter()
            await self._history(conn, s, metrics)
            rows = await conn.fetchval(f"SELECT count(*) FROM {s}.figures")
            fill_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            async with conn.transaction():
                await conn.execute(f"DROP TABLE {s}.rollups")
                await schema.add_rollups(conn, generation)
            rollup_rows = await conn.fetchval(f"SELECT count(*) FROM {s}.rollups")
            sums_s = time.perf_counter() - t0
            await conn.execute(f"ANALYZE {s}.figures; ANALYZE {s}.rollups; ANALYZE {s}.communities")
            print(f"history: {a.committees:,} committees × {a.days} days: {rows:,} figure rows in {fill_s:.1f} s, "
                  f"{rollup_rows:,} scope rows in {sums_s:.1f} s", file=sys.stderr)
            first = city.community(0)
            district, street = first.split(".")[0], ".".join(first.split(".")[:2])
            out = {"bench": "rollup", "committees": a.committees, "days": a.days, "figure_rows": rows,
                   "rollup_rows": rollup_rows}
            for label, scope in (("city", "city"), ("district", district), ("street", street)):
                by_rows = await self._time(conn, a.queries, lambda: self._by_committees(conn, s, scope))
                by_sums = await self._time(conn, a.queries * 3, lambda: queries._scope_sums(conn, s, scope, LAST_DAY))
                out[f"{label}_committees_p50_ms"], out[f"{label}_committees_p99_ms"] = by_rows
                out[f"{label}_scope_p50_ms"], out[f"{label}_scope_p99_ms"] = by_sums
                await self._same(conn, s, scope)
            board_ = await self._time(conn, a.queries * 3, lambda: queries._sums(conn, s, first, LAST_DAY))
            out["board_p50_ms"], out["board_p99_ms"] = board_
            return out
        finally:
            await conn.close()

    async def _history(self, conn, s: str, metrics: list[str]) -> None:
        """A row per committee, metric and day; a committee's communities row (as the views list it)."""
        names = [city.community(i) for i in range(self.args.committees)]
        await conn.execute(f"INSERT INTO {s}.communities SELECT c, 1 FROM unnest($1::text[]) c", names)
        first = LAST_DAY - timedelta(days=self.args.days - 1)
        await conn.execute(f"""
            INSERT INTO {s}.figures (community, metric, day, n)
            SELECT c, m, d::date, (hashtext(c || m || d::text) % 40)
            FROM unnest($1::text[]) c, unnest($2::text[]) m,
                 generate_series($3::date, $4::date, interval '1 day') d""", names, metrics, first, LAST_DAY)

    async def _by_committees(self, conn, s: str, scope: str) -> dict:
        sums = await queries._sums(conn, s, scope, LAST_DAY)
        total: dict[str, int] = board.flat({})
        for per in sums.values():
            board.add(total, board.flat(per))
        return total

    async def _same(self, conn, s: str, scope: str) -> None:
        """Both ways give the same figures (else the comparison means nothing)."""
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            a = await self._by_committees(conn, s, scope)
            b = board.flat(await queries._scope_sums(conn, s, scope, LAST_DAY))
        if a != b:
            raise RuntimeError(f"rollup of {scope}: the two ways differ: {a} vs {b}")

    @staticmethod
    async def _time(conn, n: int, fn) -> tuple[float, float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                await fn()
            times.append(time.perf_counter() - t0)
        return common.pct(times, 50), common.pct(times, 99)

    async def stop(self) -> None:
        if getattr(self, "pg", None):
            await self.pg.stop()


def table(r: dict) -> str:
    lines = [f"rollup after {r['days']} days of {r['committees']:,} committees "
             f"({r['figure_rows']:,} figure rows, {r['rollup_rows']:,} scope rows), on the last day:",
             f"  {'scope':<10} {'committees p50':>15} {'p99':>9} {'scope sums p50':>15} {'p99':>9} {'p99 ratio':>10}"]
    for label in ("city", "district", "street"):
        c50, c99 = r[f"{label}_committees_p50_ms"], r[f"{label}_committees_p99_ms"]
        s50, s99 = r[f"{label}_scope_p50_ms"], r[f"{label}_scope_p99_ms"]
        lines.append(f"  {label:<10} {c50:>12.1f} ms {c99:>6.1f} ms {s50:>12.2f} ms {s99:>6.2f} ms {c99 / s99:>9.0f}×")
    lines.append(f"  a committee's board: p50 {r['board_p50_ms']:.2f} ms, p99 {r['board_p99_ms']:.2f} ms")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--committees", type=int, default=6000)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--queries", type=int, default=30, help="timed runs of the committees' way (3× of the others)")
    p.add_argument("--quick", action="store_true", help="200 committees, 10 days, 5 queries")
    args = p.parse_args()
    if args.quick:
        args.committees, args.days, args.queries = 200, 10, 5
    logging.setup("console", "warning", stream=sys.stderr)
    return common.run(Rollup(args), table, digits=2)


if __name__ == "__main__":
    sys.exit(main())
