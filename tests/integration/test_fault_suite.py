"""Faults under load, with every service a real process (as `cordon up` runs them): whether the
registry or NATS is killed (-9) mid-load, every accepted command's events are recorded and on the
stream once, in order, every consumer holds what it acknowledged, and `cordon reconcile` finds no
difference."""
from __future__ import annotations

import asyncio
import io
import json
import os
import signal

import asyncpg
import nats
import pytest

from services.demo import system
from services.ops.cli import reconcile_all
from services.supervisor import wait_ready
from tests.support.bus import connect, creds_for, operator_config
from tests.support.cordon import COMMUNITY, eventually

pytestmark = pytest.mark.integration

NAMES = ["registry", "checkpoint", "audit"]


def environment(nats_url: str, pg_dsn: str) -> dict[str, str]:
    return {**os.environ, "CORDON_NATS_URL": nats_url, "CORDON_PG_DSN": pg_dsn, "CORDON_LOG_FORMAT": "json",
            "CORDON_LOG_LEVEL": "warning", "CORDON_NATS_CREDS": creds_for(nats_url)}


async def request(nc, command: str, body: dict) -> dict | None:
    """The reply, or None when none came (the service was down or killed mid-command)."""
    try:
        msg = await nc.request(f"cordon.cmd.registry.{command}", json.dumps(body).encode(), timeout=2.0)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        return None
    return json.loads(msg.data)


async def settled(pg_dsn: str, nc) -> bool:
    conn = await asyncpg.connect(pg_dsn)
    try:
        if await conn.fetchval("SELECT count(*) FROM registry.outbox"):
            return False
        events = await conn.fetchval("SELECT count(*) FROM registry.events")
        logged = await conn.fetchval("SELECT count(*) FROM audit.log")
    finally:
        await conn.close()
    info = await nc.jetstream().consumer_info("CORDON", "checkpoint-directory")
    return logged == events and info.num_pending == 0 and info.num_ack_pending == 0


async def kill_the_registry(procs, env, tmp_path, nats_server) -> None:
    procs["registry"].send_signal(signal.SIGKILL)
    await procs["registry"].wait()
    await asyncio.sleep(0.5)
    procs["registry"] = await system._spawn("registry", env, tmp_path)


async def kill_nats(procs, env, tmp_path, nats_server) -> None:
    nats_server.kill()  # -9: the services keep their records and reconnect
    await asyncio.sleep(1.0)
    await nats_server.start()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("fault", [kill_the_registry, kill_nats], ids=["registry_killed", "nats_killed"])
async def test_under_load_a_fault_loses_nothing_and_everything_reconciles(nats_server, pg_dsn, tmp_path, fault):
    nats_url = nats_server.url
    env = environment(nats_url, pg_dsn)
    procs = {name: await system._spawn(name, env, tmp_path) for name in NAMES}
    nc = await connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    try:
        await wait_ready(nats_url, NAMES, creds=creds_for(nats_url))
        compound = {"command_id": "c-1", "actor": "staff:li-wei", "community": COMMUNITY, "compound": "nangong-1",
                    "name": "南宫小区", "buildings": ["b1"], "gates": ["g1"]}
        assert (await request(nc, "register_compound", compound))["ok"]
        bodies = [{"command_id": f"h-{i}", "actor": "staff:li-wei", "community": COMMUNITY, "compound": "nangong-1",
                   "building": "b1", "address": f"room {i}"} for i in range(600)]
        replies: dict[str, dict | None] = {}

        async def load() -> None:  # ~200 households/s, 40 at a time
            for start in range(0, len(bodies), 40):
                chunk = bodies[start:start + 40]
                for body, reply in zip(chunk, await asyncio.gather(*(request(nc, "register_household", b)
                                                                     for b in chunk))):
                    replies[body["command_id"]] = reply
                await asyncio.sleep(0.2)

        # Given a steady load, when the fault strikes in the middle of it and passes
        loading = asyncio.create_task(load())
        await asyncio.sleep(1.0)
        await fault(procs, env, tmp_path, nats_server)
        await loading
        await wait_ready(nats_url, ["registry"], creds=creds_for(nats_url))
        unanswered = [b for b in bodies if replies[b["command_id"]] is None]
        assert unanswered, "the kill interrupted nothing: the test proves nothing"
        # Then a command whose reply was lost is answered by sending it again with its command_id
        for body in bodies:
            if replies[body["command_id"]] is None:
                replies[body["command_id"]] = await request(nc, "register_household", body)
        assert all(r is not None and r["ok"] for r in replies.values()), [r for r in replies.values() if not r or
                                                                          not r["ok"]][:3]
        await eventually(lambda: settled(pg_dsn, nc), timeout=60, what="published, audited and consumed")
        # And every accepted command's event is recorded once
        conn = await asyncpg.connect(pg_dsn)
        try:
            recorded = {r[0] for r in await conn.fetch("SELECT event_id::text FROM registry.events")}
            count = await conn.fetchval("SELECT count(*) FROM registry.events")
        finally:
            await conn.close()
        accepted = {e["event_id"] for r in replies.values() for e in r["events"]}
        assert accepted <= recorded and count == len(recorded) == 601
        # And the stream, the consumers and the audit log agree with the record
        out = io.StringIO()
        assert await reconcile_all(operator_config(nats_url, pg_dsn=pg_dsn), ("registry",), out=out) == 0, \
            out.getvalue()
        assert "consumer checkpoint-directory: 601 events checked" in out.getvalue()
    finally:
        await nc.close()
        await asyncio.gather(*(system._stop(p) for p in procs.values()), return_exceptions=True)
