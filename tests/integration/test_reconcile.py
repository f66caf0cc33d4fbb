"""`cordon reconcile` on real NATS and PostgreSQL: a clean Cordon has no difference; an event the
stream lost is found, and gone once republished."""
from __future__ import annotations

import asyncio
import dataclasses
import io
import asyncpg
import pytest

from services.audit.app import spec as audit_spec
from services.checkpoint.app import spec as checkpoint_spec
from services.ops.cli import reconcile_all, republish_events
from services.registry.app import spec as registry_spec
from shared.config import Config
from shared.subjects import STREAM
from tests.support.bus import connect, operator_config
from tests.support.cordon import Client, community, eventually, household, running

pytestmark = pytest.mark.integration


async def settled(pg_dsn: str) -> bool:
    conn = await asyncpg.connect(pg_dsn)
    try:
        outbox = await conn.fetchval("SELECT count(*) FROM registry.outbox")
        events = await conn.fetchval("SELECT count(*) FROM registry.events")
        logged = await conn.fetchval("SELECT count(*) FROM audit.log") if await conn.fetchval(
            "SELECT to_regclass('audit.log') IS NOT NULL") else -1
        return outbox == 0 and logged == events
    finally:
        await conn.close()


async def reconciled(config: Config) -> tuple[int, str]:
    out = io.StringIO()
    code = await reconcile_all(config, ("registry", "checkpoint", "quarantine", "logistics"), out=out)
    return code, out.getvalue()


async def test_reconcile_finds_what_the_stream_lost_and_is_clean_once_it_is_republished(nats_url, pg_dsn):
    config = operator_config(nats_url, pg_dsn=pg_dsn)
    async with running(registry_spec(), nats_url, pg_dsn), running(audit_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        client = Client(nc)
        await community(client)
        for _ in range(3):
            await household(client)
        await eventually(lambda: settled(pg_dsn), what="published and audited")
        # Given a Cordon whose record, stream and audit log agree
        code, out = await reconciled(config)
        assert code == 0 and "registry: 4 events checked" in out and "0 differences" in out
        # When the stream loses its last event (a power loss on a single node)
        js = nc.jetstream()
        last = (await js.stream_info(STREAM)).state.last_seq
        await js.delete_msg(STREAM, last)
        # Then reconcile names it, as recorded but not on the stream, and as logged but not streamed
        code, out = await reconciled(config)
        assert code == 1 and "is recorded but not on the stream" in out and "1 difference" in out
        # And once it is republished from the record, all agrees again. (A node that lost its
        # tail lost those ids from its duplicate window too; a deleted message's id stays in it,
        # so the window is shortened here for the test to be that node.)
        stream = (await js.stream_info(STREAM)).config
        await js.update_stream(dataclasses.replace(stream, duplicate_window=0.5))
        await asyncio.sleep(1.0)
        conn = await asyncpg.connect(pg_dsn)
        since = await conn.fetchval("SELECT max(recorded_at) FROM registry.events")  # what was lost
        await conn.close()
        assert await republish_events(config, "registry", since, None, out=io.StringIO(), err=io.StringIO()) == 0
        code, out = await reconciled(config)
        assert code == 0, out
        await nc.close()


async def test_reconcile_finds_an_event_a_consumer_acknowledged_without_its_effect(nats_url, pg_dsn):
    config = operator_config(nats_url, pg_dsn=pg_dsn)
    async with running(registry_spec(), nats_url, pg_dsn), running(checkpoint_spec(), nats_url, pg_dsn) as host:
        nc = await connect(nats_url)
        client = Client(nc)
        await community(client)
        h = await household(client)

        async def applied():
            return await host.pool.fetchval("SELECT count(*) FROM checkpoint.inbox WHERE consumer = "
                                            "'checkpoint-directory'") == 2 and await _acked(nc, "checkpoint-directory", 2)

        await eventually(applied, what="the directory applied both events")
        code, out = await reconciled(config)
        assert code == 0 and "consumer checkpoint-directory: 2 events checked" in out, out
        # When an acknowledged event's effect is lost (its inbox row and effect gone)
        await host.pool.execute("DELETE FROM checkpoint.inbox WHERE consumer = 'checkpoint-directory' AND "
                                "stream_seq = (SELECT max(stream_seq) FROM checkpoint.inbox)")
        await host.pool.execute("DELETE FROM checkpoint.dir_households WHERE household = $1", h)
        code, out = await reconciled(config)
        assert code == 1 and "consumer checkpoint-directory: acknowledged stream sequence" in out, out
        await nc.close()


async def _acked(nc, consumer: str, n: int) -> bool:
    info = await nc.jetstream().consumer_info(STREAM, consumer)
    return info.ack_floor.stream_seq >= n and info.num_ack_pending == 0
