"""`cordon backup` and `cordon restore` as an operator runs them, on real processes (`cordon up`
with every service, embedded NATS and PostgreSQL): a Cordon that lived a day is backed up and
stopped, restored into an empty data dir and started; it shows the same boards, `cordon reconcile`
finds no difference, its identities are those it had, and it goes on taking commands. A restore
never goes over data, nor from a damaged backup. And on servers given to it, from a Cordon whose
stream held a copy stored twice and whose quarantine was down: the stream holds each event once,
the views are rebuilt and the audit log rewound to the new numbering, the consumer that was behind
applies what it had not, and reconcile finds no difference."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import pytest

from services.audit import log as audit_log
from services.cli import load_spec
from services.demo.street import STREET
from services.ops.backup_cli import backup_cordon, restore_cordon
from services.ops.republish import subject_of
from shared.subjects import STREAM
from tests.support import faults
from tests.support.bus import connect, operator_config, start_secure_nats
from tests.support.cli import Up, cordon
from tests.support.cordon import COMMUNITY, Client, community, eventually, household, resident, running
from tests.support.faults import reconciled, settle

pytestmark = pytest.mark.integration

DAY = "2020-02-17"
COMMITTEES = ("nangong", "tianshan", "xinjing")
#: The demo replays 17 February 2020: the services must take commands dated then.
BACKDATED = {"CORDON_BACKDATE_DAYS": "0"}


async def boards(url: str) -> dict:
    """Every committee's board and the street's daily report for the demo's day, as the views answer
    (without the stream position the views had reached: the schedulers act on today as soon as a
    Cordon starts, which adds events of today, not of that day)."""
    nc = await connect(url)
    try:
        found = {}
        for committee in COMMITTEES:
            msg = await nc.request("cordon.qry.community", json.dumps(
                {"community": f"{STREET}.{committee}", "on": DAY}).encode(), timeout=5)
            found[committee] = json.loads(msg.data)
        msg = await nc.request("cordon.qry.rollup", json.dumps({"scope": STREET, "on": DAY, "detail": True}).encode(),
                               timeout=5)
        found["street"] = json.loads(msg.data)
        assert all(board.pop("ok") and board.pop("position") for board in found.values()), found
        return found
    finally:
        await nc.close()


async def as_identity(url: str, creds) -> nats.NATS:
    return await nats.connect(url, user_credentials=str(creds), inbox_prefix=f"_INBOX.{creds.stem}",
                              allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)


async def identities(up: Up, folder) -> None:
    """Staff li-wei issued; zhou-li issued, then revoked."""
    for name in ("li-wei", "zhou-li"):
        code, out, err = await cordon("identity", "add", "--role", "staff", "--community", COMMUNITY, "--name", name,
                                      "--out", str(folder / f"{name}.creds"), **up.variables)
        assert code == 0, err
    code, out, err = await cordon("identity", "revoke", "--name", "zhou-li", "--reason", "left", **up.variables)
    assert code == 0, err


@pytest.mark.timeout(420)
async def test_a_cordon_backed_up_and_restored_into_an_empty_data_dir_shows_the_same_boards_and_reconciles(tmp_path):
    first, second, kept = tmp_path / "first", tmp_path / "second", tmp_path / "backup"
    # Given a Cordon that lived a day of the demo, issued an identity and revoked another
    up = await Up.start(first, **BACKDATED)
    try:
        code, out, err = await cordon("demo", "--scale", "0.01", "--nats-url", up.url, CORDON_DATA_DIR=str(first))
        assert code == 0 and out.count("show exactly what the scenario did") == 3, err
        await identities(up, tmp_path)
        await settle(up.dsn, up.url)
        before = await boards(up.url)

        # When it is backed up while it runs, then stopped
        code, out, err = await cordon("backup", "--out", str(kept), **up.variables)
        assert code == 0, err
    finally:
        await up.stop()

    # Then the backup holds the database, the stream's state and order, and the keys, all secret
    manifest = json.loads((kept / "manifest.json").read_text())
    database, stream = manifest["database"], manifest["stream"]
    assert stream["ordered"] == stream["messages"] == stream["last_seq"] > 500
    assert 500 < database["views_position"] <= stream["last_seq"] and 500 < database["audit_position"] <= stream["last_seq"]
    # (a scheduler may record an event between the dump and the reading of the stream)
    assert sum(database["events"].values()) - sum(database["outbox"].values()) <= stream["messages"]
    assert {"database.pgdump", "stream.json", "stream-order.txt.gz", "auth/operator.nk", "auth/CITY.jwt"} <= set(
        manifest["files"])
    assert kept.stat().st_mode & 0o777 == (kept / "auth").stat().st_mode & 0o777 == 0o700
    assert {oct(p.stat().st_mode & 0o777) for p in kept.rglob("*") if p.is_file()} == {"0o600"}
    assert "SECRET" in out and "personal data" in out

    # When it is restored into an empty data dir and started
    code, out, err = await cordon("restore", "--from", str(kept), "--data-dir", str(second))
    assert code == 0, err
    assert "views: at sequence" in out and "audit log: at sequence" in out  # nothing renumbered
    up = await Up.start(second, **BACKDATED)
    try:
        await settle(up.dsn, up.url)
        # Then every board and the street's report are what they were
        assert await boards(up.url) == before
        # the identities are those it had: li-wei's credentials work, zhou-li's revoked ones do not
        staff = await as_identity(up.url, tmp_path / "li-wei.creds")
        reply = await staff.request("cordon.qry.community", json.dumps({"community": COMMUNITY, "on": DAY}).encode(),
                                    timeout=5)
        assert json.loads(reply.data)["figures"] == before["nangong"]["figures"]
        await staff.close()
        with pytest.raises(nats.errors.Error, match="(?i)authorization violation|revoked"):
            await as_identity(up.url, tmp_path / "zhou-li.creds")

        # and it takes new commands, which reach the services that consume them and the views
        nc = await connect(up.url)
        try:
            client, at = Client(nc), "2020-02-17T21:00:00+08:00"
            await client.ok("register_compound", community=COMMUNITY, compound="restored-1", name="新楼",
                            buildings=["b1"], gates=["g1"], occurred_at=at)
            await client.ok("register_household", community=COMMUNITY, compound="restored-1", building="b1",
                            address="b1-101", occurred_at=at)
        finally:
            await nc.close()
        households = before["nangong"]["figures"]["households"] + 1
        await eventually(lambda: _households(up.url, households), timeout=15, what="the new household on the board")
        await settle(up.dsn, up.url)

        # and `cordon reconcile` finds no difference, the audit log's chain holds
        code, out, err = await cordon("reconcile", **up.variables, timeout=180)
        assert code == 0 and "0 differences" in out, out + err
        code, out, err = await cordon("audit", "verify", **up.variables)
        assert code == 0, out + err
    finally:
        await up.stop()

    # And a restore never goes over a Cordon's data, nor from a damaged backup
    listing = sorted(p.relative_to(second) for p in second.rglob("*"))
    code, out, err = await cordon("restore", "--from", str(kept), "--data-dir", str(second))
    assert code == 2 and f"the data dir {second} is not empty" in err
    assert sorted(p.relative_to(second) for p in second.rglob("*")) == listing
    damaged = tmp_path / "damaged"
    shutil.copytree(kept, damaged)
    with open(damaged / "stream.json", "a") as f:
        f.write(" ")
    code, out, err = await cordon("restore", "--from", str(damaged), "--data-dir", str(tmp_path / "third"))
    assert code == 1 and "stream.json is not the file the backup wrote" in err
    assert not (tmp_path / "third").exists()


async def _households(url: str, expected: int) -> bool:
    nc = await connect(url)
    try:
        msg = await nc.request("cordon.qry.community", json.dumps({"community": COMMUNITY, "on": DAY}).encode(),
                               timeout=5)
        return json.loads(msg.data)["figures"]["households"] == expected
    finally:
        await nc.close()


# -- an old stream numbered otherwise, a consumer behind, servers given --------------------------

SERVICES = ("registry", "checkpoint", "quarantine", "logistics", "views", "audit")


@contextlib.asynccontextmanager
async def cordon_hosts(url: str, dsn: str, names=SERVICES):
    """Every named service as a ServiceHost on the given servers, started in order, stopped in reverse."""
    async with contextlib.AsyncExitStack() as stack:
        for name in names:
            await stack.enter_async_context(running(load_spec(name), url, dsn))
        yield


async def residents_known(pg_dsn: str, schema: str) -> set[str]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return {r[0] for r in await conn.fetch(f"SELECT resident FROM {schema}.dir_residents")}
    finally:
        await conn.close()


async def copy_stored_twice(url: str, pg_dsn: str) -> str:
    """The first registry event stored on the stream again under another message id (as a republish
    beyond the duplicate window stores it): the stream holds a message the record holds once."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        row = await conn.fetchrow("SELECT event_id::text, type, community, envelope FROM registry.events "
                                  "ORDER BY position LIMIT 1")
    finally:
        await conn.close()
    nc = await connect(url)
    try:
        await nc.jetstream().publish(subject_of("registry", row["community"], row["type"], row["envelope"]),
                                     bytes(row["envelope"]), headers={"Nats-Msg-Id": f"copy-{row['event_id']}"})
    finally:
        await nc.close()
    return row["event_id"]


async def figures(url: str) -> dict:
    nc = await connect(url)
    try:
        msg = await nc.request("cordon.qry.community", json.dumps({"community": COMMUNITY}).encode(), timeout=5)
        return json.loads(msg.data)["figures"]
    finally:
        await nc.close()


@pytest.mark.timeout(240)
async def test_a_restore_onto_given_servers_renumbers_what_the_old_stream_numbered_otherwise_and_skips_nothing(
        nats_server, pg_server, pg_dsn, tmp_path):
    url = nats_server.url
    # Given a Cordon whose stream once stored an event twice (the views and the audit log dropped
    # the copy), and whose quarantine service was down while residents were registered
    async with cordon_hosts(url, pg_dsn, [n for n in SERVICES if n != "quarantine"]):
        client = Client(await connect(url))
        async with running(load_spec("quarantine"), url, pg_dsn):
            await community(client)
            first = [await resident(client, await household(client)) for _ in range(3)]
            await copy_stored_twice(url, pg_dsn)
            await eventually(lambda: _quiet_but_quarantine(url, pg_dsn, also=False), what="all caught up")
        later = [await resident(client, await household(client)) for _ in range(3)]
        await client.nc.close()
        await eventually(lambda: _quiet_but_quarantine(url, pg_dsn), what="all but quarantine caught up")
        before = await figures(url)
        assert not set(later) & await residents_known(pg_dsn, "quarantine")

        # When it is backed up (no data dir: no keys) and restored onto another NATS and a new database
        out = io.StringIO()
        config = operator_config(url, pg_dsn=pg_dsn, data_dir=tmp_path / "none")
        assert await backup_cordon(config, tmp_path / "backup", stdout=out) == 0, out.getvalue()
    target = await start_secure_nats(tmp_path / "target")
    restored = urlunsplit(urlsplit(pg_dsn)._replace(path=f"/restored_{uuid.uuid4().hex[:12]}"))
    try:
        out = io.StringIO()
        config = operator_config(target.url, pg_dsn=restored)
        assert await restore_cordon(config, tmp_path / "backup", tmp_path / "data", stdout=out) == 0
        said = out.getvalue()

        # Then the stream holds each recorded event once, and what counted in the old numbering moved
        nc = await connect(target.url)
        recorded = await _recorded(restored)
        assert (await nc.jetstream().stream_info(STREAM)).state.messages == recorded
        await nc.close()
        assert "views: rebuilt from the new stream" in said and "audit log: its position" in said, said
        assert "authority: none in the backup" in said
        # the quarantine's directory consumer starts at the first registry event it never applied
        start = int(re.search(r"consumer quarantine-directory: starts at sequence ([\d,]+)", said)[1].replace(",", ""))
        assert start < recorded

        # When the services start on the restored Cordon
        async with cordon_hosts(target.url, restored):
            await settle(restored, target.url)
            # Then the quarantine knows the residents registered while it was down, the board is
            # the same, reconcile finds no difference and the audit log's chain holds
            assert set(first + later) <= await residents_known(restored, "quarantine")
            assert await figures(target.url) == before
            code, report = await reconciled(target.url, restored)
            assert code == 0, report
            conn = await asyncpg.connect(restored)
            try:
                assert (await audit_log.verify(conn)).ok
                assert await conn.fetchval("SELECT count(*) FROM audit.rewinds") == 1
            finally:
                await conn.close()
    finally:
        await target.stop()
        conn = await asyncpg.connect(pg_server.dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{urlsplit(restored).path[1:]}" WITH (FORCE)')
        finally:
            await conn.close()


async def _quiet_but_quarantine(url: str, pg_dsn: str, also: bool = True) -> bool:
    """Nothing moves (but the quarantine's record and consumers, unless ``also`` is False)."""
    moving = await faults.moving(pg_dsn, url)
    return all(also and line.startswith(("quarantine", "consumer quarantine")) for line in moving)


async def _recorded(pg_dsn: str) -> int:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return sum([await conn.fetchval(f"SELECT count(*) FROM {s}.events")
                    for s in ("registry", "checkpoint", "quarantine", "logistics")])
    finally:
        await conn.close()
