"""`cordon republish` on real NATS and PostgreSQL: events the stream lost come back from the record,
in order, and nothing downstream takes effect twice."""
from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.js.api import DiscardPolicy

from services.audit import log as audit_log
from services.audit.app import spec as audit_spec
from services.ops.cli import republish_events
from services.registry.app import spec as registry_spec
from services.views.app import spec as views_spec
from shared import store
from shared.consumer import Consumer
from shared.subjects import STREAM
from tests.support.bus import connect, operator_config
from tests.support.cordon import COMMUNITY, Client, community, eventually, household, read_stream, running

pytestmark = pytest.mark.integration

LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)
EFFECTS = """CREATE TABLE IF NOT EXISTS probe.effects (
    event_id uuid PRIMARY KEY, stream_seq bigint NOT NULL, applied integer NOT NULL)"""


async def fetch(pg_dsn: str, sql: str, *args) -> list:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def recorded(pg_dsn: str) -> list[str]:
    return [r[0] for r in await fetch(pg_dsn, "SELECT event_id::text FROM registry.events ORDER BY position")]


async def outbox_empty(pg_dsn: str) -> bool:
    return (await fetch(pg_dsn, "SELECT count(*) FROM registry.outbox"))[0][0] == 0


async def in_stream(nats_url: str) -> list[str]:
    """The event ids in the stream, in stream order (a copy stored twice shows twice)."""
    async with await connect(nats_url) as nc:
        expect = (await nc.jetstream().stream_info(STREAM)).state.messages
    return [json.loads(m.data)["event_id"] for m in await read_stream(nats_url, expect)]


async def probe_consumer(pg_dsn: str, nc) -> tuple[Consumer, asyncpg.Pool]:
    """A durable consumer that records how often each event took effect."""
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await store.migrate(conn, "probe", EFFECTS)

    async def handle(conn, raw, event):
        await conn.execute("INSERT INTO probe.effects VALUES ($1, 0, 1) ON CONFLICT (event_id) "
                           "DO UPDATE SET applied = probe.effects.applied + 1", raw.event_id)

    consumer = Consumer(name="probe", schema="probe", subjects=["cordon.evt.>"], pool=pool, nc=nc,
                        handle=handle, batch=50)
    return consumer, pool


async def caught_up(nc, consumer: Consumer, pg_dsn: str) -> bool:
    last = (await nc.jetstream().stream_info(STREAM)).state.last_seq
    audit = (await fetch(pg_dsn, "SELECT hwm FROM audit.head"))[0][0]
    return await consumer.lag() == 0 and audit == last


async def test_events_the_stream_lost_come_back_in_order_and_take_effect_once(nats_server, pg_dsn):
    url = nats_server.url
    # Given a registry whose stream keeps duplicates for 1 s, the audit log, and a durable consumer
    async with running(registry_spec(), url, pg_dsn, dedupe_window_s=1.0), \
            running(audit_spec(), url, pg_dsn):
        nc = await connect(url)
        consumer, pool = await probe_consumer(pg_dsn, nc)
        await consumer.start()
        try:
            client = Client(nc)
            await community(client)
            for _ in range(5):
                await household(client)
            await eventually(lambda: outbox_empty(pg_dsn), what="the outbox published")
            await asyncio.sleep(0.05)
            cut = datetime.now(timezone.utc)
            await asyncio.sleep(0.05)
            for _ in range(5):
                await household(client)
            await eventually(lambda: outbox_empty(pg_dsn), what="the outbox published")
            events = await recorded(pg_dsn)
            assert len(events) == 11 and await in_stream(url) == events
            await eventually(lambda: caught_up(nc, consumer, pg_dsn), what="consumer and audit caught up")

            # When the stream loses its last 5 events (their outbox rows are long gone), past the window
            js = nc.jetstream()
            last = (await js.stream_info(STREAM)).state.last_seq
            for seq in range(last - 4, last + 1):
                await js.delete_msg(STREAM, seq)
            assert await in_stream(url) == events[:6]
            await asyncio.sleep(2.5)

            # Then republishing what was recorded since the cut restores them, in order
            config = operator_config(url, pg_dsn=pg_dsn, dedupe_window_s=1.0)
            out = io.StringIO()
            assert await republish_events(config, "registry", cut, None, out=out, err=io.StringIO()) == 0
            assert "republished 5 of 5 registry events" in out.getvalue()
            assert "5 stored in the stream, 0 dropped" in out.getvalue()
            assert await in_stream(url) == events

            # And everything since long ago: the 5 just restored are in the window (dropped by
            # JetStream); the 6 beyond it are stored a second time
            out = io.StringIO()
            assert await republish_events(config, "registry", LONG_AGO, None, out=out, err=io.StringIO()) == 0
            assert "republished 11 of 11" in out.getvalue() and "6 stored in the stream, 5 dropped" in out.getvalue()
            assert await in_stream(url) == events + events[:6]

            # And downstream nothing took effect twice: the consumer's inbox and the audit log
            # (by event id) dropped every second copy
            await eventually(lambda: caught_up(nc, consumer, pg_dsn), what="consumer and audit caught up")
            applied = await fetch(pg_dsn, "SELECT event_id::text, applied FROM probe.effects")
            assert sorted(r[0] for r in applied) == sorted(events) and {r[1] for r in applied} == {1}
            audited = await fetch(pg_dsn, "SELECT event_id::text FROM audit.log ORDER BY n")
            assert [r[0] for r in audited] == events
            assert (await fetch(pg_dsn, "SELECT duplicates FROM audit.head"))[0][0] == 11
        finally:
            await consumer.stop()
            await pool.close()
            await nc.close()


async def test_republishing_events_still_in_the_duplicate_window_adds_nothing(nats_url, pg_dsn):
    async with running(registry_spec(), nats_url, pg_dsn):
        async with await connect(nats_url) as nc:
            client = Client(nc)
            await community(client)
            for _ in range(3):
                await household(client)
        await eventually(lambda: outbox_empty(pg_dsn), what="the outbox published")
        events = await recorded(pg_dsn)
        assert await in_stream(nats_url) == events

        config = operator_config(nats_url, pg_dsn=pg_dsn)
        out = io.StringIO()
        assert await republish_events(config, "registry", LONG_AGO, None, dry_run=True, out=out) == 0
        assert "dry run: 4 registry events" in out.getvalue()

        out = io.StringIO()
        assert await republish_events(config, "registry", LONG_AGO, None, out=out, err=io.StringIO()) == 0
        assert "republished 4 of 4" in out.getvalue() and "0 stored in the stream, 4 dropped" in out.getvalue()
        assert await in_stream(nats_url) == events

        # A range with nothing recorded in it publishes nothing
        out = io.StringIO()
        future = datetime.now(timezone.utc) + timedelta(days=1)
        assert await republish_events(config, "registry", future, None, out=out) == 0
        assert "nothing to republish" in out.getvalue()


async def test_a_refused_publish_stops_the_republish_and_says_where(nats_url, pg_dsn):
    async with running(registry_spec(), nats_url, pg_dsn, dedupe_window_s=1.0):
        async with await connect(nats_url) as nc:
            await community(Client(nc))
            await household(Client(nc))
            await eventually(lambda: outbox_empty(pg_dsn), what="the outbox published")
            await asyncio.sleep(2.5)  # past the duplicate window: JetStream would store them again
            # A stream that is full and refuses new messages
            js = nc.jetstream()
            info = await js.stream_info(STREAM)
            await js.update_stream(dataclasses.replace(info.config, max_msgs=info.state.messages,
                                                       discard=DiscardPolicy.NEW))
            events = await recorded(pg_dsn)
            config = operator_config(nats_url, pg_dsn=pg_dsn, dedupe_window_s=1.0)
            out, err = io.StringIO(), io.StringIO()
            assert await republish_events(config, "registry", LONG_AGO, None, out=out, err=err) == 1
            assert "republished 0 of 2" in out.getvalue()
            assert f"republish stopped at position 1 (event {events[0]}" in err.getvalue()
            assert "maximum messages exceeded" in err.getvalue()


def stream_dir(nats_server) -> Path:
    [found] = nats_server.data_dir.glob(f"jetstream/**/streams/{STREAM}")
    return found


async def followers_at(pg_dsn: str, url: str) -> tuple[int, int, int]:
    """(stream's last sequence, audit's mark, the current views' mark)."""
    async with await connect(url) as nc:
        last = (await nc.jetstream().stream_info(STREAM)).state.last_seq
    [[audit]] = await fetch(pg_dsn, "SELECT hwm FROM audit.head")
    [[generation]] = await fetch(pg_dsn, "SELECT generation FROM views.current")
    [[views]] = await fetch(pg_dsn, f"SELECT hwm FROM views_g{generation}.meta")
    return last, audit, views


async def test_after_the_stream_lost_its_tail_views_and_audit_follow_its_next_events(nats_server, pg_dsn):
    url = nats_server.url
    async with running(registry_spec(), url, pg_dsn), running(audit_spec(), url, pg_dsn), \
            running(views_spec(), url, pg_dsn):
        async with await connect(url) as nc:
            client = Client(nc)
            await community(client)
            await household(client)
            await eventually(lambda: outbox_empty(pg_dsn), what="the outbox published")
            # What the disk holds when the power goes: the stream as of its first 2 events
            on_disk = Path(tempfile.mkdtemp(dir=nats_server.data_dir)) / "msgs"
            shutil.copytree(stream_dir(nats_server) / "msgs", on_disk)
            await household(client)
            await household(client)
            await eventually(lambda: outbox_empty(pg_dsn), what="the outbox published")
            await eventually(lambda: _all_at(pg_dsn, url, 4), what="audit and views at sequence 4")

        # Given the power loss: JetStream comes back with 2 events; the outbox rows of the others are gone
        await nats_server.stop()
        shutil.rmtree(stream_dir(nats_server) / "msgs")
        shutil.copytree(on_disk, stream_dir(nats_server) / "msgs")
        (stream_dir(nats_server) / "msgs" / "index.db").unlink(missing_ok=True)
        await nats_server.start()
        events = await recorded(pg_dsn)
        await eventually(lambda: _stream_is(url, events[:2]), what="the stream recovered")

        # When the next event comes, under sequence 3 again (the audit and views had seen up to 4)
        async with await connect(url) as nc:
            await eventually(lambda: _registered_after_restart(Client(nc)), what="the registry answering")
        await eventually(lambda: outbox_empty(pg_dsn), what="the outbox published")
        events = await recorded(pg_dsn)
        assert len(events) == 5 and await in_stream(url) == events[:2] + events[4:]

        # Then the audit log and the views follow it (they lowered their marks to the stream's)
        await eventually(lambda: _all_at(pg_dsn, url, 3), what="audit and views at sequence 3")
        assert [r[0] for r in await fetch(pg_dsn, "SELECT event_id::text FROM audit.log ORDER BY n")] == events

        # And republishing restores the lost two in order; the audit and views count them as seen
        config = operator_config(url, pg_dsn=pg_dsn)
        out = io.StringIO()
        assert await republish_events(config, "registry", LONG_AGO, None, out=out, err=io.StringIO()) == 0
        assert "2 stored in the stream, 3 dropped" in out.getvalue()
        assert await in_stream(url) == events[:2] + events[4:] + events[2:4]
        await eventually(lambda: _all_at(pg_dsn, url, 5), what="audit and views at sequence 5")
        assert [r[0] for r in await fetch(pg_dsn, "SELECT event_id::text FROM audit.log ORDER BY n")] == events
        [[duplicates]] = await fetch(pg_dsn, "SELECT duplicates FROM audit.head")
        assert duplicates == 2
        [[applied, view_duplicates]] = await fetch(pg_dsn, "SELECT applied, duplicates FROM views_g1.meta")
        assert (applied, view_duplicates) == (5, 2)
        # The audit chain verifies: the sequences start again where the log recorded its rewind
        conn = await asyncpg.connect(pg_dsn)
        try:
            verdict = await audit_log.verify(conn)
            rewinds = await conn.fetch("SELECT n, from_seq, to_seq FROM audit.rewinds")
        finally:
            await conn.close()
        assert verdict.ok, verdict.to_dict()
        assert [tuple(r) for r in rewinds] == [(5, 4, 2)]


async def _all_at(pg_dsn: str, url: str, seq: int) -> bool:
    return await followers_at(pg_dsn, url) == (seq, seq, seq)


async def _stream_is(url: str, expected: list[str]) -> bool:
    try:
        return await in_stream(url) == expected
    except nats.errors.Error:  # JetStream still recovering its streams
        return False


async def _registered_after_restart(client: Client) -> bool:
    """A household registered once the registry answers again (the same command id each try)."""
    try:
        reply = await client.send("register_household", command_id="after-the-loss", community=COMMUNITY,
                                  compound="nangong-1", building="b1", address="b1 room 99")
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return False
    assert reply["ok"], reply
    return True
