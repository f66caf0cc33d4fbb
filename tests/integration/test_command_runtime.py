"""The group-commit runtime on real PostgreSQL: a batch's culprit fails alone; concurrent
appends to one stream at one version: exactly one wins."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import asyncpg
import msgspec
import pytest

from shared import store
from shared.envelope import Event, encode, event_type, utcnow, wrap
from shared.runtime import CommandSpec
from shared.service import ServiceSpec
from shared.wire import BaseCommand
from tests.support.bus import connect
from tests.support.cordon import COMMUNITY, running

pytestmark = pytest.mark.integration


@event_type("registry")  # only to have a subject; the probe schema is its own
class ProbeNoted(Event, frozen=True, kw_only=True):
    note: int


class Note(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    stream: str
    note: int


async def note(cmd: Note, ctx) -> None:
    _, version = await ctx.expect(f"probe:{cmd.stream}")
    ctx.append(f"probe:{cmd.stream}", version, [ProbeNoted(community=COMMUNITY, note=cmd.note)])
    ctx.write("INSERT INTO probe.notes VALUES ($1)", cmd.note)


def probe_spec() -> ServiceSpec:
    return ServiceSpec(
        name="probe", commands=CommandSpec(types={"note": Note}, handlers={"note": note},
                                           evolve=lambda state, event: event.note),
        extra_ddl="CREATE TABLE IF NOT EXISTS probe.notes (note integer CHECK (note <> 13))",
    )


async def send(nc, **fields):
    fields.setdefault("actor", "staff:li-wei")
    msg = await nc.request("cordon.cmd.probe.note", json.dumps(fields).encode(), timeout=10)
    return json.loads(msg.data)


async def test_one_command_that_breaks_the_batch_fails_alone(nats_url, pg_dsn):
    async with running(probe_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        replies = await asyncio.gather(*[send(nc, command_id=f"n-{i}", stream=f"s{i}", note=i)
                                         for i in range(40)])
        await nc.close()
    assert [r["ok"] for r in replies] == [i != 13 for i in range(40)]
    assert replies[13]["error"]["code"] == "internal"
    conn = await asyncpg.connect(pg_dsn)
    assert await conn.fetchval("SELECT count(*) FROM probe.events") == 39
    assert await conn.fetchval("SELECT count(*) FROM probe.commands") == 39
    await conn.close()


async def test_two_appends_to_one_stream_at_one_version_exactly_one_wins(pg_dsn):
    conn_a, conn_b = await asyncpg.connect(pg_dsn), await asyncpg.connect(pg_dsn)
    await store.migrate(conn_a, "probe")

    def new_event(n: int) -> store.NewEvent:
        import uuid
        from datetime import datetime, timezone
        return store.NewEvent(event_id=str(uuid.uuid4()), stream_id="probe:s", version=1, type="ProbeNoted",
                              community=COMMUNITY, recorded_at=datetime.now(timezone.utc),
                              envelope=msgspec.json.encode({"n": n}), subject="x")

    async def append(conn, n):
        async with conn.transaction():
            await store.append(conn, "probe", [new_event(n)])
            await asyncio.sleep(0.2)  # both are inside their transactions at the same time

    results = await asyncio.gather(append(conn_a, 1), append(conn_b, 2), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "UniqueViolationError"]
    assert await conn_a.fetchval("SELECT count(*) FROM probe.events WHERE stream_id = 'probe:s'") == 1
    await conn_a.close()
    await conn_b.close()


# -- lanes -----------------------------------------------------------------------------------


class BulkNote(BaseCommand, frozen=True, kw_only=True, forbid_unknown_fields=True):
    streams: list[str]
    note: int


def lane_spec(inside: dict) -> ServiceSpec:
    async def bulk_note(cmd: BulkNote, ctx) -> None:
        inside["now"] += 1
        inside["most"] = max(inside["most"], inside["now"])
        try:
            await asyncio.sleep(0.05)  # long enough for the other lane writer to start one too
            for stream in cmd.streams:
                _, version = await ctx.load(f"probe:{stream}")
                ctx.append(f"probe:{stream}", version, [ProbeNoted(community=COMMUNITY, note=cmd.note)])
        finally:
            inside["now"] -= 1

    return ServiceSpec(
        name="probe", commands=CommandSpec(
            types={"note": Note, "bulk_note": BulkNote}, handlers={"note": note, "bulk_note": bulk_note},
            evolve=lambda state, event: event.note, lanes={"bulk_note": 2}),
        extra_ddl="CREATE TABLE IF NOT EXISTS probe.notes (note integer CHECK (note <> 13))",
    )


async def test_lane_commands_run_beside_the_main_writer_and_a_lost_race_is_decided_again(nats_url, pg_dsn):
    inside = {"now": 0, "most": 0}
    async with running(lane_spec(inside), nats_url, pg_dsn) as host:
        nc = await connect(nats_url)
        bulk = [host.execute("bulk_note", BulkNote(command_id=f"b-{i}", actor="system:test", note=100 + i,
                                                    streams=[f"s{i}-{j}" for j in range(5)])) for i in range(6)]
        # The main writer appends to the same streams meanwhile: every stream takes both, in some order.
        main = [send(nc, command_id=f"n-{i}-{j}", stream=f"s{i}-{j}", note=i * 10 + j)
                for i in range(6) for j in range(5) if (i * 10 + j) != 13]
        replies = await asyncio.gather(*bulk, *main)
        await nc.close()
    assert all(r["ok"] for r in replies), [r for r in replies if not r["ok"]]
    assert inside["most"] == 2  # two lane commands were being decided at once
    conn = await asyncpg.connect(pg_dsn)
    rows = await conn.fetch("SELECT stream_id, array_agg(version ORDER BY version) v FROM probe.events GROUP BY 1")
    await conn.close()
    expected = {f"probe:s{i}-{j}": (1 if i * 10 + j == 13 else 2) for i in range(6) for j in range(5)}
    assert {r["stream_id"]: list(r["v"]) for r in rows} == {s: list(range(1, n + 1)) for s, n in expected.items()}


async def test_a_batch_that_lost_a_race_on_one_stream_commits_the_rest_together(nats_url, pg_dsn):
    gate, reached = asyncio.Event(), asyncio.Event()

    async def gated_note(cmd: Note, ctx) -> None:
        if cmd.note == 1:  # the first command of the batch waits while another writer wins s1
            reached.set()
            await gate.wait()
        await note(cmd, ctx)

    spec = ServiceSpec(
        name="probe", commands=CommandSpec(
            types={"note": Note}, handlers={"note": gated_note}, evolve=lambda state, event: event.note,
            prefetch=lambda cmd: [f"probe:{cmd.stream}"]),
        extra_ddl="CREATE TABLE IF NOT EXISTS probe.notes (note integer CHECK (note <> 13))",
    )
    async with running(spec, nats_url, pg_dsn) as host:
        # Queued in one go, the five are one batch; the first waits while another writer wins s1.
        tasks = [asyncio.create_task(host.execute("note", Note(command_id=f"n-{i}", actor="staff:li-wei",
                                                                stream=f"s{i}", note=i))) for i in range(1, 6)]
        await reached.wait()
        async with host.pool.acquire() as conn, conn.transaction():
            won = wrap(ProbeNoted(community=COMMUNITY, note=0), stream_id="probe:s1", stream_version=1,
                       occurred_at=utcnow(), actor="staff:other", correlation_id="elsewhere")
            await store.append(conn, "probe", [store.NewEvent(
                event_id=won.event_id, stream_id="probe:s1", version=1, type="ProbeNoted", community=COMMUNITY,
                recorded_at=won.recorded_at, envelope=encode(won), subject="x")])
        gate.set()
        replies = [await t for t in tasks]
        assert all(r["ok"] for r in replies)
        rows = await host.pool.fetch("SELECT command_id, recorded_at FROM probe.commands ORDER BY command_id")
        versions = await host.pool.fetch("SELECT stream_id, max(version) v FROM probe.events GROUP BY 1 ORDER BY 1")
    assert [tuple(r) for r in versions] == [("probe:s1", 2), ("probe:s2", 1), ("probe:s3", 1), ("probe:s4", 1),
                                            ("probe:s5", 1)]
    at = {r["command_id"].removeprefix("system:"): r["recorded_at"] for r in rows}  # host.execute: own ids
    assert len({at[f"n-{i}"] for i in range(2, 6)}) == 1  # the others committed together
    assert at["n-1"] != at["n-2"]  # the one that met the winner was decided again, alone


async def test_a_command_on_a_stream_a_lane_is_writing_waits_its_turn_outside_the_database(nats_url, pg_dsn):
    gate, reached = asyncio.Event(), asyncio.Event()

    async def bulk_note(cmd: BulkNote, ctx) -> None:
        reached.set()
        await gate.wait()  # the lane holds its streams, deciding
        for stream in cmd.streams:
            _, version = await ctx.load(f"probe:{stream}")
            ctx.append(f"probe:{stream}", version, [ProbeNoted(community=COMMUNITY, note=cmd.note)])

    spec = ServiceSpec(
        name="probe", commands=CommandSpec(
            types={"note": Note, "bulk_note": BulkNote}, handlers={"note": note, "bulk_note": bulk_note},
            evolve=lambda state, event: event.note,
            prefetch=lambda cmd: [f"probe:{s}" for s in getattr(cmd, "streams", [getattr(cmd, "stream", "")])],
            lanes={"bulk_note": 1}),
        extra_ddl="CREATE TABLE IF NOT EXISTS probe.notes (note integer CHECK (note <> 13))",
    )
    async with running(spec, nats_url, pg_dsn) as host:
        lane = asyncio.create_task(host.execute("bulk_note", BulkNote(
            command_id="b-1", actor="system:test", note=100, streams=["x", "y"])))
        await reached.wait()
        on_x = asyncio.create_task(host.execute("note", Note(command_id="n-x", actor="staff:li-wei", stream="x", note=1)))
        on_z = await host.execute("note", Note(command_id="n-z", actor="staff:li-wei", stream="z", note=2))
        assert on_z["ok"] and not on_x.done()  # other streams go on; x waits for the lane
        gate.set()
        assert (await lane)["ok"] and (await on_x)["ok"]
        rows = await host.pool.fetch("SELECT stream_id, version, type FROM probe.events ORDER BY stream_id, version")
        notes = [json.loads(r["envelope"])["data"]["note"] for r in await host.pool.fetch(
            "SELECT envelope FROM probe.events WHERE stream_id = 'probe:x' ORDER BY version")]
    assert [(r["stream_id"], r["version"]) for r in rows] == [("probe:x", 1), ("probe:x", 2), ("probe:y", 1),
                                                              ("probe:z", 1)]
    assert notes == [100, 1]  # the lane's first, then the command that waited


# -- command ids ------------------------------------------------------------------------------


async def test_a_command_id_repeats_only_the_same_command(nats_url, pg_dsn):
    async with running(probe_spec(), nats_url, pg_dsn) as host:
        nc = await connect(nats_url)
        first = await send(nc, command_id="c-1", stream="s1", note=1)
        again = await send(nc, command_id="c-1", stream="s1", note=1)
        other_payload = await send(nc, command_id="c-1", stream="s1", note=2)
        other_actor = await send(nc, command_id="c-1", stream="s1", note=1, actor="staff:someone-else")
        in_one_batch = await asyncio.gather(send(nc, command_id="c-2", stream="s2", note=3),
                                            send(nc, command_id="c-2", stream="s2", note=4))
        await nc.close()
        events = await host.pool.fetchval("SELECT count(*) FROM probe.events")
    assert first["ok"] and again == first  # the same command again: the first reply, nothing new
    for reply in (other_payload, other_actor):
        assert reply["error"]["code"] == "conflict" and reply["error"]["field"] == "command_id"
        assert "already used for another command" in reply["error"]["message"]
    assert sorted(r["ok"] for r in in_one_batch) == [False, True]
    assert events == 2  # c-1 once, c-2 once: nothing written for a reused id


async def test_the_services_own_command_ids_are_out_of_callers_reach(nats_url, pg_dsn):
    async with running(probe_spec(), nats_url, pg_dsn) as host:
        nc = await connect(nats_url)
        # A caller takes the id a scheduler will use (they are predictable: daily:<household>:<day>)
        taken = await send(nc, command_id="daily:h-1:2020-02-17", stream="s1", note=1)
        reserved = await send(nc, command_id="system:daily:h-1:2020-02-17", stream="s1", note=1)
        await nc.close()
        # The service's own command with that id still runs, and is still idempotent
        own = await host.execute("note", Note(command_id="daily:h-1:2020-02-17", actor="system:daily", stream="s9", note=9))
        own_again = await host.execute("note", Note(command_id="daily:h-1:2020-02-17", actor="system:daily", stream="s9",
                                                    note=9))
        streams = [r["stream_id"] for r in await host.pool.fetch("SELECT stream_id FROM probe.events ORDER BY position")]
    assert taken["ok"] and own["ok"] and own_again == own
    assert reserved["error"]["code"] == "invalid" and reserved["error"]["field"] == "command_id"
    assert streams == ["probe:s1", "probe:s9"]


# -- the service's clock decides -------------------------------------------------------------------


async def test_a_caller_cannot_date_a_command_ahead_of_the_services_clock(nats_url, pg_dsn):
    now = datetime(2020, 2, 2, 9, 0, tzinfo=timezone.utc)
    async with running(probe_spec(), nats_url, pg_dsn, clock=lambda: now, backdate_days=30) as host:
        nc = await connect(nats_url)
        ahead = await send(nc, command_id="c-1", stream="s1", note=1,
                           occurred_at=(now + timedelta(days=13)).isoformat())
        skewed = await send(nc, command_id="c-2", stream="s2", note=2,
                            occurred_at=(now + timedelta(minutes=2)).isoformat())
        last_month = await send(nc, command_id="c-3", stream="s3", note=3,
                                occurred_at=(now - timedelta(days=29)).isoformat())
        last_year = await send(nc, command_id="c-4", stream="s4", note=4,
                               occurred_at=(now - timedelta(days=400)).isoformat())
        await nc.close()
        # Cordon's own commands carry the time of the event they react to, whatever it is
        own = await host.execute("note", Note(command_id="r-1", actor="system:test", stream="s5", note=5,
                                              occurred_at=now - timedelta(days=400)))
        streams = [r["stream_id"] for r in await host.pool.fetch("SELECT stream_id FROM probe.events ORDER BY 1")]
    assert ahead["error"]["code"] == "invalid" and ahead["error"]["field"] == "occurred_at"
    assert "in the future" in ahead["error"]["message"]
    assert skewed["ok"] and last_month["ok"] and own["ok"]  # a clock a little fast; paper forms of last week
    assert last_year["error"]["code"] == "invalid" and "more than 30 days ago" in last_year["error"]["message"]
    assert streams == ["probe:s2", "probe:s3", "probe:s5"]
