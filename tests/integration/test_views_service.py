"""The views service on real NATS and PostgreSQL: boards, rollups, timelines, idempotency, bad input."""
from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import uuid
from datetime import timedelta

import asyncpg
import pytest

from services.views import cli as views_cli
from services.views.app import spec
from shared import bus
from shared.contracts.checkpoint import PassageAllowed
from tests.support.views import (
    C, C2, C3, D, Stream, at, ev, query, scripted_day, shown, wait_position,
)
from tests.support.bus import operator_config
from tests.support.cordon import eventually, running

pytestmark = pytest.mark.integration

async def test_a_scripted_day_in_one_committee_gives_exact_board_figures(nats_url, pg_dsn):
    s = await Stream.connect(nats_url)
    day = await scripted_day(s)
    async with running(spec(), nats_url, pg_dsn):
        await wait_position(s.nc, day.last_seq)
        for (community, on), expected in day.boards.items():
            reply = await query(s.nc, "community", community=community, on=on.isoformat())
            assert reply["ok"], reply
            assert shown(reply) == expected, (community, on)
            assert reply["position"] == day.last_seq
    await s.close()


async def test_a_rollup_equals_the_sum_of_its_committees_boards(nats_url, pg_dsn):
    s = await Stream.connect(nats_url)
    day = await scripted_day(s)
    async with running(spec(), nats_url, pg_dsn):
        await wait_position(s.nc, day.last_seq)
        boards = {c: (await query(s.nc, "community", community=c, on=D.isoformat()))["figures"] for c in (C, C2, C3)}
        for scope, members in (("changning.chengjiaqiao", (C, C2)), ("changning", (C, C2)), ("city", (C, C2, C3)),
                               (C2, (C2,))):
            reply = await query(s.nc, "rollup", scope=scope, on=D.isoformat(), detail=True)
            assert reply["ok"] and reply["communities"] == len(members), reply
            keys = set().union(*(boards[c] for c in members))
            assert reply["figures"] == {k: sum(boards[c].get(k, 0) for c in members) for k in keys}
            assert [row[0] for row in reply["detail"]["rows"]] == sorted(members)
        city = await query(s.nc, "rollup", scope="city", on=D.isoformat())
        assert city["residents"] == 4 + 1 + 1 and city["stock"] == {"heater": 2, "masks": 110}
        # Without detail a scope's total comes from its own sums (rollups), not its committees':
        # the same figures on the day, before it and after it (levels carry, flows start again).
        totals = await _totals_both_ways(s.nc)
        assert totals[("city", D)]["passages_in"] > 0 and totals[("city", D + timedelta(days=1))]["passages_in"] == 0
    # A generation made before the rollups table gets one, filled from its figures, at the next start.
    async with _conn(pg_dsn) as conn:
        generation = await conn.fetchval("SELECT generation FROM views.current")
        await conn.execute(f"DROP TABLE views_g{generation}.rollups")
    async with running(spec(), nats_url, pg_dsn):
        await wait_position(s.nc, day.last_seq)
        assert await _totals_both_ways(s.nc) == totals
    await s.close()


async def _totals_both_ways(nc) -> dict:
    """Each scope's figures on three days, asked without detail; each equal to the sum of its
    committees' (asked with detail)."""
    out = {}
    for scope in ("city", "changning", "changning.chengjiaqiao", C2):
        for on in (D - timedelta(days=1), D, D + timedelta(days=1)):
            total = await query(nc, "rollup", scope=scope, on=on.isoformat())
            summed = await query(nc, "rollup", scope=scope, on=on.isoformat(), detail=True)
            assert total["ok"] and total["figures"] == summed["figures"], (scope, on)
            assert total["communities"] == summed["communities"] and "detail" not in total
            out[(scope, on)] = total["figures"]
    return out


async def test_a_redelivered_or_replayed_event_changes_no_figure(nats_url, pg_dsn):
    s = await Stream.connect(nats_url)
    day = await scripted_day(s)
    async with running(spec(), nats_url, pg_dsn):
        await wait_position(s.nc, day.last_seq)
        before = await query(s.nc, "rollup", scope="city", on=D.isoformat(), detail=True)
        # The same envelopes published again under new message ids: new stream sequences, same events.
        for payload in s.sent[-12:]:
            await s.raw(f"cordon.evt.{C}.checkpoint.PassageAllowed", payload)
        await wait_position(s.nc, s.last_seq)
        again = await query(s.nc, "rollup", scope="city", on=D.isoformat(), detail=True)
        assert again["detail"] == before["detail"]
    async with _conn(pg_dsn) as conn:
        generation = await conn.fetchval("SELECT generation FROM views.current")
        meta = await conn.fetchrow(f"SELECT * FROM views_g{generation}.meta")
        assert meta["duplicates"] == 12 and meta["applied"] == day.last_seq
        # The whole stream delivered again from the start (the mark lost): the inbox drops all of it.
        await conn.execute(f"UPDATE views_g{generation}.meta SET hwm = 0")
    async with running(spec(), nats_url, pg_dsn):
        await wait_position(s.nc, s.last_seq)
        replayed = await query(s.nc, "rollup", scope="city", on=D.isoformat(), detail=True)
        assert replayed["detail"] == before["detail"]
        timeline = await query(s.nc, "timeline", resident="r3")
        assert len({e["event_id"] for e in timeline["events"]}) == len(timeline["events"])
    await s.close()


class _conn:
    def __init__(self, dsn):
        self.dsn = dsn

    async def __aenter__(self):
        self.conn = await asyncpg.connect(self.dsn)
        return self.conn

    async def __aexit__(self, *exc):
        await self.conn.close()


async def test_a_restart_resumes_where_it_stopped_and_counts_nothing_twice(nats_url, pg_dsn):
    s = await Stream.connect(nats_url)
    day = await scripted_day(s)
    async with running(spec(), nats_url, pg_dsn):
        await wait_position(s.nc, day.last_seq)
    for i in range(4):  # while the views are down
        await s.publish(ev(PassageAllowed, at(D, 20), passage=f"late-{i}", direction="in", compound="nangong-1",
                           gate="g1", temperature_c=36.5, resident="r1"))
    async with running(spec(), nats_url, pg_dsn):
        await wait_position(s.nc, s.last_seq)
        reply = await query(s.nc, "community", community=C, on=D.isoformat())
        assert reply["passages_today"] == {"in": 8, "out": 3, "denied": 2}
    await s.close()


async def test_unknown_and_undecodable_messages_are_counted_and_skipped(nats_url, pg_dsn):
    s = await Stream.connect(nats_url)
    async with running(spec(), nats_url, pg_dsn) as host:
        unknown = {"event_id": str(uuid.uuid4()), "type": "VaccineGiven", "schema": 1, "stream_id": "vaccine:1",
                   "stream_version": 1, "community": C, "occurred_at": "2020-02-17T08:00:00+08:00",
                   "recorded_at": "2020-02-17T08:00:00+08:00", "actor": "city:health", "correlation_id": "c",
                   "data": {"resident": "r1", "dose": 2}}
        await s.raw(f"cordon.evt.{C}.registry.VaccineGiven", json.dumps(unknown).encode())
        await s.raw(f"cordon.evt.{C}.registry.ResidentRegistered", b"\x00not json at all")
        await s.publish(ev(PassageAllowed, at(D, 9), passage="p1", direction="in", compound="nangong-1",
                           gate="g1", temperature_c=36.5, resident="r1"))
        await wait_position(s.nc, s.last_seq)
        board = await query(s.nc, "community", community=C, on=D.isoformat())
        assert board["passages_today"]["in"] == 1 and board["residents"] == 0
        timeline = await query(s.nc, "timeline", resident="r1")
        assert [e["type"] for e in timeline["events"]] == ["VaccineGiven", "PassageAllowed"]
        status = (await host.status())["consumers"]["views"]
        assert status["parked"] == 1 and status["applied"] == 2 and status["lag"] == 0
        async with _conn(pg_dsn) as conn:
            generation = await conn.fetchval("SELECT generation FROM views.current")
            assert await conn.fetchval(f"SELECT n FROM views_g{generation}.ignored WHERE type = 'VaccineGiven'") == 1
    await s.close()


async def test_a_residents_timeline_lists_every_event_naming_them_in_order_with_actors(nats_url, pg_dsn):
    s = await Stream.connect(nats_url)
    day = await scripted_day(s)
    async with running(spec(), nats_url, pg_dsn):
        await wait_position(s.nc, day.last_seq)
        reply = await query(s.nc, "timeline", resident="r3")
        assert reply["ok"] and not reply["truncated"]
        assert [(e["type"], e["actor"]) for e in reply["events"]] == [
            ("ResidentRegistered", "staff:li-wei"),
            ("ArrivalRegistered", "staff:li-wei"),
            ("ArrivalVerified", "staff:zhao"),
            ("CaseOpened", "system:arrival-quarantine"),
            ("PassageDenied", "staff:guard"),
        ]
        assert reply["events"][2]["data"]["outcome"] == "home_quarantine"
        times = [e["occurred_at"] for e in reply["events"]]
        assert times == sorted(times)
        short = await query(s.nc, "timeline", resident="r1", limit=2)
        assert len(short["events"]) == 2 and short["truncated"]
    await s.close()


@pytest.mark.parametrize("view, fields, code, field", [
    ("community", {"community": "changning.chengjiaqiao.nowhere"}, "not_found", "community"),
    ("community", {"community": "changning.chengjiaqiao"}, "invalid", "community"),
    ("community", {"community": C, "on": "2020-02-30"}, "invalid", "on"),
    ("community", {"community": C, "on": "yesterday"}, "invalid", "on"),
    ("community", {"community": C, "at_least": -1}, "invalid", "at_least"),
    ("rollup", {"scope": "changning..x"}, "invalid", "scope"),
    ("rollup", {"scope": "pudong"}, "not_found", "scope"),
    ("rollup", {"scope": "changning", "on": "17.02.2020"}, "invalid", "on"),
    ("timeline", {"resident": "nobody"}, "not_found", "resident"),
    ("timeline", {"resident": "r 1"}, "invalid", "resident"),
    ("timeline", {"resident": "r1", "extra": 1}, "invalid", "extra"),
])
async def test_queries_with_bad_input_get_clear_errors_and_the_service_keeps_serving(
        nats_url, pg_dsn, view, fields, code, field):
    s = await Stream.connect(nats_url)
    await s.publish(ev(PassageAllowed, at(D, 9), passage="p1", direction="in", compound="nangong-1",
                       gate="g1", temperature_c=36.5, resident="r1"))
    async with running(spec(), nats_url, pg_dsn):
        await wait_position(s.nc, s.last_seq)
        reply = await query(s.nc, view, **fields)
        assert reply["ok"] is False and reply["error"]["code"] == code, reply
        assert reply["error"]["field"] == field and reply["error"]["message"]
        garbage = json.loads((await s.nc.request(f"cordon.qry.{view}", b"[1,2", timeout=5)).data)
        assert garbage["error"]["code"] == "invalid"
        assert (await query(s.nc, "community", community=C, on=D.isoformat()))["passages_today"]["in"] == 1
    await s.close()


async def test_a_board_asked_at_least_a_sequence_shows_that_event_or_says_it_is_behind(nats_url, pg_dsn):
    s = await Stream.connect(nats_url)
    passage = dict(direction="in", compound="nangong-1", gate="g1", temperature_c=36.5, resident="r1")
    await s.publish(ev(PassageAllowed, at(D, 9), passage="p1", **passage))
    on = D.isoformat()
    async with running(spec(), nats_url, pg_dsn):
        await wait_position(s.nc, s.last_seq)
        async with _conn(pg_dsn) as conn:
            # Given the projector held back (its generation's lock taken) and a passage published
            tx = conn.transaction()
            await tx.start()
            generation = await conn.fetchval("SELECT generation FROM views.current")
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", 0x56494557, generation)
            await s.publish(ev(PassageAllowed, at(D, 10), passage="p2", **passage))
            seen = s.last_seq
            # a board asked without at_least answers at once, without it, and does not know
            plain = await query(s.nc, "community", community=C, on=on)
            assert (plain["passages_today"]["in"], plain["position"], plain["behind"]) == (1, seen - 1, False)
            # asked at least its sequence while the views cannot get there: after 2 s, the board it
            # has, saying it is behind
            late = await query(s.nc, "community", community=C, on=on, at_least=seen)
            assert (late["passages_today"]["in"], late["position"], late["behind"]) == (1, seen - 1, True)
            # When asked again, and the projector goes on while the query waits
            board = asyncio.create_task(query(s.nc, "community", community=C, on=on, at_least=seen))
            report = asyncio.create_task(query(s.nc, "rollup", scope="city", on=on, at_least=seen))
            await asyncio.sleep(0.3)
            assert not board.done() and not report.done()  # they wait for the views
            await tx.commit()
        # Then both answer with the passage counted
        for reply in (await board, await report):
            assert reply["ok"] and reply["passages_today"]["in"] == 2, reply
            assert reply["position"] >= seen and reply["behind"] is False
    await s.close()


async def test_health_reports_the_views_lag_behind_the_stream_head(nats_url, pg_dsn):
    s = await Stream.connect(nats_url)
    async with running(spec(), nats_url, pg_dsn) as host:
        await wait_position(s.nc, 0)
        projector = next(c for c in host.followers if c.name == "views")
        # Hold the projector's generation lock: events arrive but cannot be applied, so lag grows.
        async with _conn(pg_dsn) as conn, conn.transaction():
            generation = await conn.fetchval("SELECT generation FROM views.current")
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", 0x56494557, generation)
            for i in range(5):
                await s.publish(ev(PassageAllowed, at(D, 9), passage=f"p{i}", direction="in", compound="nangong-1",
                                   gate="g1", temperature_c=36.5, resident="r1"))
            await asyncio.sleep(0.2)
            health = await query(s.nc, "health")
            assert health["services"]["views"][0]["consumers"]["views"]["lag"] == 5
        await wait_position(s.nc, s.last_seq)
        assert await projector.lag() == 0
    await s.close()


async def test_the_report_command_prints_the_daily_report_as_csv_and_json(nats_url, pg_dsn, capsys):
    s = await Stream.connect(nats_url)
    day = await scripted_day(s)
    config = operator_config(nats_url)
    async with running(spec(), nats_url, pg_dsn):
        await wait_position(s.nc, day.last_seq)
        parser = argparse.ArgumentParser(prog="cordon")
        views_cli.add_commands(parser.add_subparsers(dest="cmd"))
        args = parser.parse_args(["report", "--scope", "changning", "--on", D.isoformat()])
        capsys.readouterr()  # the service's own log lines so far
        assert await asyncio.to_thread(args.run, args, config) == 0
        rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
        assert [r["community"] for r in rows] == [C, C2, "total:changning"]
        assert [int(r["residents"]) for r in rows] == [4, 1, 5]
        assert [int(r["passages_in"]) for r in rows] == [4, 2, 6] and rows[-1]["stock.masks"] == "110"
        args = parser.parse_args(["report", "--scope", "changning", "--on", D.isoformat(), "--format", "json"])
        assert await asyncio.to_thread(args.run, args, config) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["scope"] == "changning" and report["figures"]["residents"] == 5
        args = parser.parse_args(["report", "--scope", "changning..x"])
        assert await asyncio.to_thread(args.run, args, config) == 1
        assert "invalid" in capsys.readouterr().err
    await s.close()


async def test_a_second_replica_applies_nothing_twice(nats_url, pg_dsn):
    s = await Stream.connect(nats_url)
    async with running(spec(), nats_url, pg_dsn), running(spec(), nats_url, pg_dsn):
        day = await scripted_day(s)
        await wait_position(s.nc, day.last_seq)
        await asyncio.sleep(0.3)  # let the slower replica go over the same messages
        reply = await query(s.nc, "community", community=C, on=D.isoformat())
        assert shown(reply) == day.boards[(C, D)]
    await s.close()


async def test_nats_restarted_mid_stream_the_views_lose_nothing_and_count_nothing_twice(nats_server, pg_dsn):
    async def passages(s: Stream, start: int, count: int) -> None:
        for i in range(start, start + count):
            await s.publish(ev(PassageAllowed, at(D, 9), passage=f"p{i}", direction="in", compound="nangong-1",
                               gate="g1", temperature_c=36.5, resident="r1"))

    async with running(spec(), nats_server.url, pg_dsn):
        s = await Stream.connect(nats_server.url)
        await passages(s, 0, 30)
        await wait_position(s.nc, 30)
        await s.close()
        nats_server.kill()  # the views' pull consumer lived in the server's memory: gone
        await nats_server.start()
        s = await Stream.connect(nats_server.url)
        await passages(s, 30, 30)
        await wait_position(s.nc, 60, timeout=20)
        board = await query(s.nc, "community", community=C, on=D.isoformat())
        assert board["passages_today"]["in"] == 60 and board["position"] == 60
        await s.close()


async def test_a_recreated_stream_is_reported_on_health_and_not_skipped_over(nats_url, pg_dsn):
    # Given the views have applied three events
    s = await Stream.connect(nats_url)
    async with running(spec(), nats_url, pg_dsn):
        for i in range(3):
            await s.publish(ev(PassageAllowed, at(D, 9), passage=f"p{i}", direction="in", compound="nangong-1",
                               gate="g1", temperature_c=36.5, resident="r1"))
        await wait_position(s.nc, 3)
        # When the stream is deleted and created anew (sequences start again at 1)
        await s.js.delete_stream("CORDON")
        await bus.ensure_stream(s.js)
        await s.publish(ev(PassageAllowed, at(D, 10), passage="p9", direction="in", compound="nangong-1",
                           gate="g1", temperature_c=36.5, resident="r1"))

        async def reported():
            views = (await query(s.nc, "health"))["services"]["views"][0]
            return views if not views["ok"] else None

        # Then health says so and what to do, and the new stream's first event is not skipped
        views = await eventually(reported, timeout=20, what="health to report the recreated stream")
        assert "created anew" in views["problems"][0] and "cordon republish" in views["problems"][0]
        await wait_position(s.nc, 1)
        board = await query(s.nc, "community", community=C, on=D.isoformat())
        assert board["passages_today"]["in"] == 4
    await s.close()


async def test_a_query_that_fails_unexpectedly_answers_internal_and_the_next_one_is_served(nats_url, pg_dsn, monkeypatch):
    from services.views import queries as views_queries

    s = await Stream.connect(nats_url)
    day = await scripted_day(s)
    async with running(spec(), nats_url, pg_dsn):
        await wait_position(s.nc, day.last_seq)
        real = views_queries._scope_sums

        async def broken(*args, **kwargs):
            raise RuntimeError("a bug")

        # Given a bug in the scope's sums, when a rollup is asked: an answer, not a timeout
        monkeypatch.setattr(views_queries, "_scope_sums", broken)
        reply = await query(s.nc, "rollup", scope="city", on=D.isoformat())
        assert reply["ok"] is False and reply["error"]["code"] == "internal"
        assert "rollup" in reply["error"]["message"]
        # and the service goes on serving
        monkeypatch.setattr(views_queries, "_scope_sums", real)
        assert (await query(s.nc, "rollup", scope="city", on=D.isoformat()))["ok"]
    await s.close()
