"""The key database in backups (issue 16): a data backup carries residents' personal data sealed,
never their keys, so an erasure holds against a backup taken before it, whichever way the restored
Cordon gets its keys back: the live key database (``CORDON_KEYS_DSN``), or a key dump taken with
``cordon backup --keys-out`` after the erasure and restored with ``--keys-from``. The key dump is
never kept with the data backup, and a restore without keys says what that means."""
from __future__ import annotations

import contextlib
import io
import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from services.ops.backup_cli import backup_cordon, restore_cordon
from services.registry.app import spec
from services.registry.keys import KeyStore
from shared import pii
from shared.identity import Identity
from tests.support.bus import connect, operator_config, start_secure_nats
from tests.support.cordon import COMMUNITY, prc_id, running
from tests.support.identities import As

pytestmark = pytest.mark.integration

LI_WEI = Identity(name="li-wei", role="staff", scope=COMMUNITY)
WHY = "welfare check: the delivery went unanswered"


async def _household_of_two(nc) -> tuple[str, str, str]:
    operator = As(nc, None)
    await operator.ok("registry", "register_compound", community=COMMUNITY, compound="nangong-1", name="南宫小区",
                      buildings=["b1"], gates=["g1"])
    household = (await operator.ok("registry", "register_household", community=COMMUNITY, compound="nangong-1",
                                   building="b1", address="b1 room 301"))["events"][0]["data"]["household"]
    ids = []
    for i, name in enumerate(("王小伟", "李秀英")):
        reply = await operator.ok("registry", "register_resident", household=household, name=name,
                                  id_number=prc_id(801 + i), phone=f"+861380000080{i}", birth_year=1940)
        ids.append(reply["events"][0]["data"]["resident"])
    return household, ids[0], ids[1]


async def _contacts(nats_url: str, pg_dsn: str, household: str, keys: KeyStore | None = None) -> list[tuple]:
    """What the community's staff read of the household, on a registry running on these servers."""
    async with running(spec(keys=keys), nats_url, pg_dsn):
        nc = await connect(nats_url)
        reply = await As(nc, LI_WEI).query("registry.contact", household=household, purpose=WHY)
        await nc.close()
    assert reply["ok"], reply
    return [(c["name"], c["phone"], c["erased"]) for c in reply["contacts"]]


@contextlib.asynccontextmanager
async def _elsewhere(folder, pg_dsn: str):
    """Another NATS and a new database name on the same PostgreSQL server, to restore onto."""
    target = await start_secure_nats(folder)
    name = f"restored_{uuid.uuid4().hex[:12]}"
    try:
        yield target.url, urlunsplit(urlsplit(pg_dsn)._replace(path=f"/{name}"))
    finally:
        await target.stop()
        conn = await asyncpg.connect(urlunsplit(urlsplit(pg_dsn)._replace(path="/postgres")))
        for db in (name, f"{name}_keys"):
            await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await conn.close()


@pytest.mark.timeout(180)
async def test_an_erasure_holds_against_a_backup_of_before_restored_with_the_live_keys_or_a_later_key_dump(
        nats_url, pg_dsn, tmp_path):
    live_keys = pg_dsn + "_keys"
    async with running(spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        household, wang, li = await _household_of_two(nc)
        # given a backup taken while both residents are registered
        config = operator_config(nats_url, pg_dsn=pg_dsn, data_dir=tmp_path / "none")
        out = io.StringIO()
        assert await backup_cordon(config, tmp_path / "before", stdout=out) == 0
        assert "key database (residents' data keys) is not in this backup" in out.getvalue()
        # when Wang is erased, and a key dump is taken after it
        await As(nc, None).ok("registry", "erase_resident", resident=wang, legal_basis="the person withdrew consent")
        await nc.close()
        # (never into the data backup's folder, nor beside it inside: refused, nothing written)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert await backup_cordon(config, tmp_path / "after", keys_out=tmp_path / "after" / "keys") == 2
        assert "must be kept apart from the data backup" in err.getvalue() and not (tmp_path / "after").exists()
        out = io.StringIO()
        assert await backup_cordon(config, tmp_path / "after", stdout=out, keys_out=tmp_path / "keys") == 0
        assert "kept APART from this backup" in out.getvalue()
    assert not any(p.name.startswith("keys") for p in (tmp_path / "before").iterdir())

    # when the backup of before is restored onto other servers, the registry given the live key database
    async with _elsewhere(tmp_path / "a", pg_dsn) as (url, restored):
        out = io.StringIO()
        assert await restore_cordon(operator_config(url, pg_dsn=restored), tmp_path / "before", tmp_path / "data-a",
                                    stdout=out, keys_dsn=live_keys) == 0
        assert "the registry reads the keys at CORDON_KEYS_DSN" in out.getvalue()
        contacts = await _contacts(url, restored, household, KeyStore(pii.from_env(os.environ), live_keys))
    # then Wang's data, back from before his erasure, opens with nothing; Li reads as before
    assert contacts == [(None, None, True), ("李秀英", "+8613800000801", False)]

    # when it is restored into a fresh place with the key dump taken after the erasure
    async with _elsewhere(tmp_path / "b", pg_dsn) as (url, restored):
        out = io.StringIO()
        assert await restore_cordon(operator_config(url, pg_dsn=restored), tmp_path / "before", tmp_path / "data-b",
                                    stdout=out, keys_from=tmp_path / "keys" / "keys.pgdump") == 0
        assert "residents erased before that dump stay erased" in out.getvalue(), out.getvalue()
        # the registry finds its keys beside the restored database, as on any start
        contacts = await _contacts(url, restored, household)
    # then likewise: Wang erased, Li reads
    assert contacts == [(None, None, True), ("李秀英", "+8613800000801", False)]

    # and without either, the restore says every resident will read as erased
    async with _elsewhere(tmp_path / "c", pg_dsn) as (url, restored):
        out = io.StringIO()
        assert await restore_cordon(operator_config(url, pg_dsn=restored), tmp_path / "before", tmp_path / "data-c",
                                    stdout=out) == 0
        assert "NOT restored (no --keys-from): every resident's personal data will read as erased" in out.getvalue()
        assert await _contacts(url, restored, household) == [(None, None, True), (None, None, True)]
