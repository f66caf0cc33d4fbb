"""Started means answering: once a service says it has started (``ServiceHost.start`` returned, or
its health answers, which is what `cordon up`'s ready line waits for), a command sent from anywhere
is answered, never met by "no responders".

The race is milliseconds wide on loopback, so the service here reaches NATS over a link that
delays everything it sends by half a second (tests/support/proxy.py): a subscription not yet
confirmed with the server is then unknown to it for that long, every time.
"""
from __future__ import annotations

import asyncio
import json

import pytest

from services.registry.app import spec
from shared.config import Config
from shared.service import ServiceHost
from shared.subjects import HEALTH_FANOUT
from tests.support.bus import connect, creds_for, service_creds
from tests.support.cordon import COMMUNITY
from tests.support.proxy import delayed

pytestmark = pytest.mark.integration

SLOW = 0.5


def compound(n: int) -> bytes:
    return json.dumps({"command_id": f"c-{n}", "actor": "staff:li-wei", "community": COMMUNITY,
                       "compound": f"nangong-{n}", "name": "南宫小区", "buildings": ["b1"], "gates": ["g1"]}).encode()


@pytest.mark.timeout(60)
async def test_a_command_sent_the_moment_start_returns_is_answered(nats_url, pg_dsn):
    nc = await connect(nats_url)
    try:
        async with delayed(nats_url, SLOW) as slow_url:
            host = ServiceHost(spec(), Config(nats_url=slow_url, nats_creds=creds_for(nats_url), pg_dsn=pg_dsn,
                                                 backdate_days=0))
            # Given the registry has just said it started, over a slow link
            await host.start()
            try:
                # When a caller on another connection sends a command at once
                reply = await nc.request("cordon.cmd.registry.register_compound", compound(1), timeout=5)
                # Then it is answered
                assert json.loads(reply.data)["ok"]
            finally:
                await host.stop()
    finally:
        await nc.close()


async def first_health_reply(nc, within: float = 30.0) -> None:
    """Ping health every 50 ms (as `cordon up` does, but without waiting to collect) and return at
    the first answer of the registry."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    try:
        while loop.time() < deadline:
            await nc.publish(HEALTH_FANOUT, b"{}", reply=inbox)
            await asyncio.sleep(0.05)
            while sub.pending_msgs:
                msg = await sub.next_msg()
                if msg.data and json.loads(msg.data).get("service") == "registry":  # not the server's 503
                    return
        raise AssertionError(f"no health answer within {within} s")
    finally:
        await sub.unsubscribe()


@pytest.mark.timeout(60)
async def test_a_command_sent_the_moment_health_answers_is_answered(nats_url, pg_dsn):
    nc = await connect(nats_url)
    try:
        async with delayed(nats_url, SLOW) as slow_url:
            host = ServiceHost(spec(), Config(nats_url=slow_url, nats_creds=creds_for(nats_url), pg_dsn=pg_dsn,
                                                 backdate_days=0))
            starting = asyncio.create_task(host.start())
            try:
                # Given the registry starting over a slow link, watched as `cordon up` watches it
                await first_health_reply(nc)
                # When a command is sent the moment its health first answers
                reply = await nc.request("cordon.cmd.registry.register_compound", compound(2), timeout=5)
                # Then it is answered
                assert json.loads(reply.data)["ok"]
            finally:
                await starting
                await host.stop()
    finally:
        await nc.close()


@pytest.mark.timeout(60)
async def test_a_query_sent_the_moment_start_returns_is_answered(nats_url, pg_dsn):
    from services.views.app import spec as views

    nc = await connect(nats_url)
    try:
        config = Config(nats_url=nats_url, nats_creds=service_creds(nats_url, "views"), pg_dsn=pg_dsn)
        first = ServiceHost(views(), config)  # a first run, stopped: its subscriptions gone
        await first.start()
        await first.stop()
        host = ServiceHost(views(), config)
        # Given the views have just said they started (again)
        await host.start()
        try:
            # When a caller asks at once for a board of a community with no events yet
            reply = await nc.request("cordon.qry.community", json.dumps({"community": COMMUNITY}).encode(), timeout=5)
            # Then it is answered (not "no responders"): not_found, since nothing happened there
            assert json.loads(reply.data)["error"]["code"] == "not_found"
        finally:
            await host.stop()
    finally:
        await nc.close()
