"""Rebuilding the read models beside the live ones, on real NATS and PostgreSQL."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
from datetime import timedelta

import asyncpg
import pytest

from services.views import cli as views_cli
from services.views import schema
from services.views.app import spec
from shared.config import city_zone
from services.views.rebuild import WriterFailed, rebuild
from shared import bus
from shared.contracts.checkpoint import PassageAllowed
from tests.support.bus import creds_for, operator_config
from tests.support.views import C, C2, D, Stream, at, ev, query, scripted_day, wait_position
from tests.support.cordon import running

pytestmark = pytest.mark.integration


async def snapshot(nc) -> dict:
    """Every figure the views answer for the scripted day: boards, rollups, timelines."""
    out = {}
    for on in (D, D - timedelta(days=1)):
        for community in (C, C2):
            reply = await query(nc, "community", community=community, on=on.isoformat())
            out[("community", community, on)] = {k: v for k, v in reply.items() if k != "position"}
        reply = await query(nc, "rollup", scope="city", on=on.isoformat(), detail=True)
        out[("rollup", on)] = {k: v for k, v in reply.items() if k != "position"}
    for resident in ("r1", "r3", "w-r1"):
        out[("timeline", resident)] = (await query(nc, "timeline", resident=resident))["events"]
    return out


async def generations(pg_dsn: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT generation, state FROM views.generations ORDER BY generation")
        schemas = {r[0] for r in await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'views_g%'")}
        return [(r[0], r[1]) for r in rows if r[1] == "dropped" or schema.name(r[0]) in schemas]
    finally:
        await conn.close()


async def test_a_rebuild_gives_the_same_figures_as_the_live_models_and_the_live_path_follows_on(nats_url, pg_dsn):
    s = await Stream.connect(nats_url)
    day = await scripted_day(s)
    async with running(spec(), nats_url, pg_dsn) as host:
        await wait_position(s.nc, day.last_seq)
        live = await snapshot(s.nc)
        nc = await bus.connect(nats_url, "test.rebuild", creds_for(nats_url))
        calls = []
        result = await rebuild(host.pool, nc, city_zone(), batch_max=7,
                               progress=lambda *a: calls.append(a), tick=0.01)
        await nc.close()
        assert (result.generation, result.retired, result.position) == (2, 1, day.last_seq)
        assert result.applied == day.last_seq and calls and calls[-1][0] == day.last_seq
        assert await generations(pg_dsn) == [(1, "dropped"), (2, "current")]
        assert await snapshot(s.nc) == live
        # The live projector now feeds the new generation.
        await s.publish(ev(PassageAllowed, at(D, 21), passage="after", direction="out", compound="nangong-1",
                           gate="g1", temperature_c=36.5, resident="r1"))
        await wait_position(s.nc, s.last_seq)
        board = await query(s.nc, "community", community=C, on=D.isoformat())
        assert board["passages_today"]["out"] == 4
    await s.close()


@contextlib.asynccontextmanager
async def a_scripted_day_on_the_views(nats_url, pg_dsn):
    """The views service over the scripted day, caught up: (day, host, the answers, a connection)."""
    s = await Stream.connect(nats_url)
    day = await scripted_day(s)
    try:
        async with running(spec(), nats_url, pg_dsn) as host:
            await wait_position(s.nc, day.last_seq)
            live = await snapshot(s.nc)
            nc = await bus.connect(nats_url, "test.rebuild", creds_for(nats_url))
            try:
                yield day, host, live, nc
            finally:
                await nc.close()
            assert await snapshot(s.nc) == live
    finally:
        await s.close()


async def test_a_rebuild_written_by_a_second_process_gives_the_same_figures(nats_url, pg_dsn):
    async with a_scripted_day_on_the_views(nats_url, pg_dsn) as (day, host, live, nc):
        result = await rebuild(host.pool, nc, city_zone(), batch_max=5, tick=0.01, writer_dsn=pg_dsn)
        assert (result.generation, result.retired, result.position) == (2, 1, day.last_seq)
        assert result.applied == day.last_seq
    # (the figures after the swap are the live ones: checked on leaving)


async def test_when_the_writing_process_fails_the_rebuild_stops_and_leaves_nothing_behind(nats_url, pg_dsn):
    async with a_scripted_day_on_the_views(nats_url, pg_dsn) as (day, host, live, nc):
        unreachable = pg_dsn.rsplit("/", 1)[0] + "/no_such_database"
        with pytest.raises(WriterFailed, match="exit code 1"):
            await asyncio.wait_for(rebuild(host.pool, nc, city_zone(), batch_max=5, tick=0.01,
                                           writer_dsn=unreachable), 60)
        assert await generations(pg_dsn) == [(1, "current"), (2, "dropped")]
    # (the current models still answer as before: checked on leaving)


async def test_the_old_models_answer_until_the_new_ones_have_caught_up(nats_url, pg_dsn):
    s = await Stream.connect(nats_url)
    day = await scripted_day(s)
    async with running(spec(), nats_url, pg_dsn) as host:
        await wait_position(s.nc, day.last_seq)
        live = await snapshot(s.nc)
        nc = await bus.connect(nats_url, "test.rebuild", creds_for(nats_url))
        try:  # closed whatever happens: a client left reconnecting logs into the next tests' output
            building = asyncio.Event()
            task = asyncio.create_task(rebuild(host.pool, nc, city_zone(), batch_max=1, tick=0.01,
                                               progress=lambda done, *_: done > 0 and building.set()))
            await building.wait()
            during = []
            while not task.done():  # one event per transaction: many chances to see a half-built model
                async with host.pool.acquire() as conn:
                    current = await schema.current(conn)
                    partial = await conn.fetchval("SELECT hwm FROM views_g2.meta")
                during.append((current, partial, await snapshot(s.nc) == live))
            await task
        finally:
            await nc.close()
        assert all(same for _, _, same in during), during
        assert any(current == 1 and 0 < partial < day.last_seq for current, partial, _ in during), during
        assert await snapshot(s.nc) == live
    await s.close()


async def test_an_abandoned_rebuild_leaves_the_current_models_alone(nats_url, pg_dsn):
    s = await Stream.connect(nats_url)
    day = await scripted_day(s)
    async with running(spec(), nats_url, pg_dsn) as host:
        await wait_position(s.nc, day.last_seq)
        live = await snapshot(s.nc)
        nc = await bus.connect(nats_url, "test.rebuild", creds_for(nats_url))
        seen = asyncio.Event()
        task = asyncio.create_task(rebuild(host.pool, nc, city_zone(), batch_max=1, tick=0.01,
                                           progress=lambda done, *_: done > 10 and seen.set()))
        await seen.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await nc.close()
        assert await generations(pg_dsn) == [(1, "current"), (2, "dropped")]
        assert await snapshot(s.nc) == live
    await s.close()


async def test_the_rebuild_command_shows_progress_and_rate_and_swaps(nats_url, pg_dsn, capsys):
    s = await Stream.connect(nats_url)
    day = await scripted_day(s)
    async with running(spec(), nats_url, pg_dsn):
        await wait_position(s.nc, day.last_seq)
        live = await snapshot(s.nc)
        parser = argparse.ArgumentParser(prog="cordon")
        views_cli.add_commands(parser.add_subparsers(dest="cmd"))
        args = parser.parse_args(["views", "rebuild", "--batch", "10", "--keep-old"])
        assert await asyncio.to_thread(args.run, args, operator_config(nats_url, pg_dsn=pg_dsn)) == 0
        err = capsys.readouterr().err
        assert "rebuild [" in err and f"{day.last_seq}/{day.last_seq}" in err and "ev/s" in err
        assert f"rebuilt generation 2 to stream sequence {day.last_seq}" in err and "generation 1 kept" in err
        assert await generations(pg_dsn) == [(1, "retired"), (2, "current")]
        assert await snapshot(s.nc) == live
        args = parser.parse_args(["views", "rebuild"])
        assert await asyncio.to_thread(args.run, args, operator_config(nats_url)) == 2
    await s.close()


async def test_rebuilding_an_empty_stream_swaps_in_empty_models(nats_url, pg_dsn):
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
    nc = await bus.connect(nats_url, "test.rebuild", creds_for(nats_url))
    await bus.ensure_stream(nc.jetstream())
    result = await rebuild(pool, nc, city_zone(), tick=0.01)
    assert (result.generation, result.retired, result.position) == (2, 1, 0)
    async with pool.acquire() as conn:
        assert await schema.current(conn) == 2
    await nc.close()
    await pool.close()
