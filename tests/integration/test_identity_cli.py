"""`cordon identity add | list | revoke`, as an operator uses it, on a NATS server in operator mode
with the real registry: the creds it writes work, and only as far as the identity reaches; the
grant and the revocation are recorded; a revoked identity is off the bus within seconds."""
from __future__ import annotations

import asyncio
import io
import json
import stat
import time
from pathlib import Path

import nats
import pytest

from services.ops.identity import add, list_identities, revoke
from services.registry.app import spec as registry_spec
from shared.identity import Identity
from shared.subjects import STREAM
from tests.support.bus import operator_config
from tests.support.cordon import running

pytestmark = pytest.mark.integration

NANGONG = "changning.chengjiaqiao.nangong"
BEIXIN = "changning.chengjiaqiao.beixin"


def compound(community: str, n: int, actor: str = "staff:li-wei") -> bytes:
    return json.dumps({"command_id": f"c-{community}-{n}", "actor": actor, "community": community,
                       "compound": f"compound-{n}", "name": "南宫小区", "buildings": ["b1"], "gates": ["g1"]}).encode()


async def as_identity(url: str, creds: Path, name: str, closed: asyncio.Event | None = None):
    async def on_closed():
        if closed is not None:
            closed.set()

    async def ignore(_):
        pass

    return await nats.connect(url, user_credentials=str(creds), inbox_prefix=f"_INBOX.{name}",
                              closed_cb=on_closed, error_cb=ignore, max_reconnect_attempts=2,
                              reconnect_time_wait=0.2)


@pytest.mark.timeout(90)
async def test_an_identity_is_issued_works_in_its_community_only_is_listed_and_revoked(nats_server, pg_dsn, tmp_path):
    config = operator_config(nats_server.url, pg_dsn=pg_dsn)
    authority = nats_server.authority
    async with running(registry_spec(), nats_server.url, pg_dsn):
        # Given an operator issues li-wei, staff of Nangong
        creds = tmp_path / "li-wei.creds"
        out = io.StringIO()
        li = Identity(name="li-wei", role="staff", scope=NANGONG)
        assert await add(config, authority, li, creds, stdout=out) == 0, out.getvalue()
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600 and "staff:li-wei" in out.getvalue()
        # Then her credentials send Nangong's commands, recorded as hers
        closed = asyncio.Event()
        nc = await as_identity(nats_server.url, creds, "li-wei", closed)
        subject = f"cordon.cmd.registry.register_compound.{NANGONG}"
        reply = json.loads((await nc.request(subject, compound(NANGONG, 1), timeout=5)).data)
        assert reply["ok"] and reply["events"][0]["actor"] == "staff:li-wei"
        # And not Beixin's (the server does not carry it: no one answers)
        with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
            await nc.request(f"cordon.cmd.registry.register_compound.{BEIXIN}", compound(BEIXIN, 2), timeout=1)
        # And the same name cannot be issued twice; no creds file is written for the refusal
        again = tmp_path / "li-wei-2.creds"
        assert await add(config, authority, li, again, stdout=io.StringIO()) == 1 and not again.exists()
        # When the register is listed
        listing = io.StringIO()
        assert await list_identities(config, stdout=listing) == 0
        assert "li-wei" in listing.getvalue() and "1 identities, 0 revoked" in listing.getvalue()
        # And she is revoked (a revocation covers JWTs issued up to its second)
        await asyncio.sleep(1.1)
        started = time.monotonic()
        assert await revoke(config, authority, "li-wei", "left the committee", stdout=io.StringIO()) == 0
        # Then her connection is closed within 5 s, and she cannot connect again
        await asyncio.wait_for(closed.wait(), timeout=5)
        assert time.monotonic() - started < 5
        with pytest.raises(Exception):
            await nats.connect(nats_server.url, user_credentials=str(creds), max_reconnect_attempts=0,
                               allow_reconnect=False, connect_timeout=2)
        # And the grant and the revocation are events on the stream, as every record is
        admin = await nats.connect(nats_server.url, user_credentials=config.nats_creds)
        try:
            sub = await admin.jetstream().pull_subscribe("cordon.evt.*.*.*.registry.>", stream=STREAM)
            types = [json.loads(m.data)["type"] for m in await sub.fetch(10, timeout=2)]
            assert "IdentityGranted" in types and "IdentityRevoked" in types
            listing = io.StringIO()
            assert await list_identities(config, stdout=listing) == 0
            assert "1 identities, 1 revoked" in listing.getvalue()
        finally:
            await admin.close()
