"""Least privilege in PostgreSQL: each service connects as its own role, owning its schema alone.

The registry's personal tables (``registry.residents``) are readable by the registry's role and
no other service's; every service still migrates and works under its role; a record made before
roles (every table the administrator's) is given to the services' roles when they are provisioned.
"""
from __future__ import annotations

import argparse
import asyncio
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from services.audit.app import spec as audit
from services.checkpoint.app import spec as checkpoint
from services.logistics.app import spec as logistics
from services.quarantine.app import spec as quarantine
from services.registry.app import spec as registry
from services.views.app import spec as views
from services.cli import main
from services.supervisor import service_roles
from services.views import cli as views_cli
from shared import pgroles
from shared.config import Config
from shared.embedded import EmbeddedPostgres, ensure_database
from tests.support.bus import connect, operator_config
from tests.support.views import Stream, scripted_day, wait_position
from tests.support.cordon import COMMUNITY, Client, as_role, community, eventually, household, resident, running

pytestmark = pytest.mark.integration

OTHERS = ("checkpoint", "quarantine", "logistics", "views", "audit")


async def fetchval(dsn: str, sql: str):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def keys_database(dsn: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=parts.path + "_keys"))


async def owners(dsn: str, schema: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class "
                                "WHERE relnamespace = $1::regnamespace", schema)
        return {r[0] for r in rows} | {await conn.fetchval(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", schema)}
    finally:
        await conn.close()


@pytest.mark.timeout(90)
async def test_only_the_registrys_role_reads_the_residents(nats_url, pg_dsn):
    # Given the registry running as its own role, with a resident registered
    dsn = await as_role(pg_dsn, "registry")
    nc = await connect(nats_url)
    try:
        async with running(registry(), nats_url, dsn):
            client = Client(nc)
            await community(client)
            await resident(client, await household(client))
    finally:
        await nc.close()
    # Then the registry's role reads its residents
    assert await fetchval(dsn, "SELECT count(*) FROM registry.residents") == 1
    # And every other service's role is refused them, and may not add to the registry's schema
    for other in OTHERS:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for schema registry"):
            await fetchval(await as_role(pg_dsn, other), "SELECT count(*) FROM registry.residents")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await fetchval(await as_role(pg_dsn, other), "CREATE TABLE registry.copy (x int)")
    # And everything in the registry's schema is its role's
    assert await owners(pg_dsn, "registry") == {"cordon_registry"}
    # And the key database (the residents' data keys) is the registry's role's alone
    keys = keys_database(pg_dsn)
    assert await owners(keys, "registry") == {"cordon_registry"}
    assert await fetchval(keys, "SELECT count(*) FROM registry.data_keys") >= 2  # the resident's, the index key
    for other in OTHERS:
        if other in pgroles.KEY_SCHEMAS:  # the checkpoint keeps its visitors' keys there, in its own schema
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for schema registry"):
                await fetchval(pgroles.role_dsn(keys, other), "SELECT count(*) FROM registry.data_keys")
            continue
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
            await fetchval(pgroles.role_dsn(keys, other), "SELECT 1")


@pytest.mark.timeout(90)
async def test_only_the_checkpoints_role_reads_the_visitors_keys(nats_url, pg_dsn):
    # Given the registry and the checkpoint running as their own roles, and a visitor let in
    nc = await connect(nats_url)
    try:
        async with running(registry(), nats_url, await as_role(pg_dsn, "registry")), \
                running(checkpoint(), nats_url, await as_role(pg_dsn, "checkpoint")):
            client = Client(nc)
            await community(client)
            host = await household(client)
            await eventually(lambda: fetchval(pg_dsn, "SELECT count(*) FROM checkpoint.dir_households"))
            reply = await Client(nc, "checkpoint").ok(
                "check_passage", community=COMMUNITY, compound="nangong-1", gate="g1", direction="in",
                temperature_c=36.5, visitor={"name": "张三丰", "phone": "13800001111", "host_household": host,
                                             "purpose": "送药"})
    finally:
        await nc.close()
    # Then the visit's data key is in the checkpoint's schema of the key database, the checkpoint role's
    keys = keys_database(pg_dsn)
    mine = pgroles.role_dsn(keys, "checkpoint")
    assert await fetchval(mine, f"SELECT count(*) FROM checkpoint.data_keys WHERE subject = '{reply['passage']}'") == 1
    assert await owners(keys, "checkpoint") == {"cordon_checkpoint"}
    # And the registry's role, though it owns the key database, is refused them, and the
    # checkpoint's is refused the residents' keys
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for schema checkpoint"):
        await fetchval(pgroles.role_dsn(keys, "registry"), "SELECT count(*) FROM checkpoint.data_keys")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for schema registry"):
        await fetchval(mine, "SELECT count(*) FROM registry.data_keys")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await fetchval(mine, "CREATE TABLE registry.copy (x int)")
    # And no other service's role connects there at all
    for other in ("quarantine", "logistics", "views", "audit"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
            await fetchval(pgroles.role_dsn(keys, other), "SELECT 1")


@pytest.mark.timeout(120)
async def test_every_service_migrates_and_answers_under_its_own_role(nats_url, pg_dsn):
    # Given a database with the roles and nothing else
    await pgroles.provision(pg_dsn)
    nc = await connect(nats_url)
    try:
        # When every service starts as its own role
        specs = [registry(), checkpoint(), quarantine(), logistics(), views(), audit()]
        hosts = [running(spec, nats_url, await as_role(pg_dsn, spec.name)) for spec in specs]
        for host in hosts:
            await host.__aenter__()
        try:
            # Then a command is accepted (the registry's record written as its role)
            await community(Client(nc))
        finally:
            for host in reversed(hosts):
                await host.__aexit__(None, None, None)
    finally:
        await nc.close()
    # And each schema, with what its service made in it, is its own role's alone
    for spec in specs:
        assert await owners(pg_dsn, spec.name) == {f"cordon_{spec.name}"}, spec.name
    generation = await fetchval(pg_dsn, "SELECT generation FROM views.current")
    assert await owners(pg_dsn, f"views_g{generation}") == {"cordon_views"}


@pytest.mark.timeout(120)
async def test_a_rebuild_on_a_database_without_roles_works_while_another_database_has_them(nats_url, pg_dsn):
    # Given the roles provisioned for another database of the same server (roles are the server's)
    other = await ensure_database(pg_dsn, pg_dsn.rsplit("/", 1)[1] + "_other")
    await pgroles.provision(other)
    s = await Stream.connect(nats_url)
    try:
        day = await scripted_day(s)
        # and the views of this database run with the administrator's DSN, as before roles
        async with running(views(), nats_url, pg_dsn):
            await wait_position(s.nc, day.last_seq)
            # When the operators rebuild them
            parser = argparse.ArgumentParser(prog="cordon")
            views_cli.add_commands(parser.add_subparsers(dest="cmd"))
            args = parser.parse_args(["views", "rebuild", "--batch", "10"])
            # Then it works as the administrator here (cordon_views has nothing in this database)
            assert await asyncio.to_thread(args.run, args, operator_config(nats_url, pg_dsn=pg_dsn)) == 0
            assert "cordon_views" not in await owners(pg_dsn, "views_g2")
    finally:
        await s.close()
        admin = await asyncpg.connect(pg_dsn)
        for name in (other.rsplit("/", 1)[1], other.rsplit("/", 1)[1] + "_keys"):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.mark.timeout(90)
async def test_a_record_from_before_roles_is_given_to_the_services_roles(nats_url, pg_dsn):
    nc = await connect(nats_url)
    try:
        client = Client(nc)
        # Given a registry that ran with the administrator's DSN: its tables are the administrator's
        async with running(registry(), nats_url, pg_dsn):
            await community(client)
        assert "cordon_registry" not in await owners(pg_dsn, "registry")
        # When the roles are provisioned, and the registry starts again as its role
        await pgroles.provision(pg_dsn)
        assert await owners(pg_dsn, "registry") == {"cordon_registry"}
        async with running(registry(), nats_url, pgroles.role_dsn(pg_dsn, "registry")):
            # Then it keeps its record and goes on writing it
            await resident(client, await household(client))
    finally:
        await nc.close()
    assert await fetchval(pg_dsn, "SELECT count(*) FROM registry.residents") == 1
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await fetchval(pgroles.role_dsn(pg_dsn, "audit"), "SELECT count(*) FROM registry.residents")


@pytest.mark.timeout(120)
async def test_an_operators_rebuild_leaves_the_views_writable_by_the_views_role(nats_url, pg_dsn):
    s = await Stream.connect(nats_url)
    try:
        day = await scripted_day(s)
        async with running(views(), nats_url, await as_role(pg_dsn, "views")):
            await wait_position(s.nc, day.last_seq)
            # When the operators rebuild the views with the administrator's DSN
            parser = argparse.ArgumentParser(prog="cordon")
            views_cli.add_commands(parser.add_subparsers(dest="cmd"))
            args = parser.parse_args(["views", "rebuild", "--batch", "10"])
            assert await asyncio.to_thread(args.run, args, operator_config(nats_url, pg_dsn=pg_dsn)) == 0
            # Then the new generation is the views role's, and the live projector goes on writing it
            assert await owners(pg_dsn, "views_g2") == {"cordon_views"}
            more = await scripted_day(s)
            await wait_position(s.nc, more.last_seq)
    finally:
        await s.close()


@pytest.mark.timeout(90)
async def test_a_deployment_s_roles_log_in_with_the_passwords_auth_init_wrote(tmp_path, nats_url, monkeypatch):
    # Given a PostgreSQL asking every role but the superuser for its password, as deployments run it
    server = EmbeddedPostgres(tmp_path / "pg", extra_settings={"fsync": "off"})
    await server.start()
    try:
        conn = await asyncpg.connect(server.dsn)
        try:
            await conn.execute("CREATE DATABASE cordon")
            (server.data_dir / "pg_hba.conf").write_text("host all postgres 127.0.0.1/32 trust\n"
                                                         "host all all 127.0.0.1/32 scram-sha-256\n")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()
        admin = f"postgresql://postgres@{server.host}:{server.port}/cordon"
        # When the operators run `cordon auth init`, then `cordon db roles` with the administrator's DSN
        auth = tmp_path / "auth"
        assert await asyncio.to_thread(main, ["auth", "init", "--dir", str(auth)]) == 0
        monkeypatch.setenv("CORDON_PG_DSN", admin)
        assert await asyncio.to_thread(main, ["db", "roles", "--passwords", str(auth)]) == 0
        # Then each service logs in as its own role with its DSN and its password file, as deployed
        def deployed(service: str, password_of: str) -> str:
            return Config.from_env({"CORDON_PG_DSN": pgroles.role_dsn(admin, service),
                                    "CORDON_PG_PASSWORD_FILE": str(auth / "pg" / f"{password_of}.password")}).pg_dsn
        for service in pgroles.SERVICES:
            assert await fetchval(deployed(service, service), "SELECT current_user") == f"cordon_{service}"
        # And one service's password opens no other's role
        with pytest.raises(asyncpg.InvalidPasswordError):
            await fetchval(deployed("registry", "checkpoint"), "SELECT 1")
        # And the registry runs as its role there
        nc = await connect(nats_url)
        try:
            async with running(registry(), nats_url, deployed("registry", "registry")):
                await community(Client(nc))
        finally:
            await nc.close()
        assert await owners(admin, "registry") == {"cordon_registry"}
    finally:
        await server.stop()


async def test_cordon_up_on_a_server_whose_user_may_not_create_roles_says_so_and_keeps_the_one_dsn(
        pg_dsn, tmp_path, capsys):
    # Given a configured PostgreSQL whose user owns the database but may not create roles
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("DO $$ BEGIN CREATE ROLE plain_owner LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        database = await conn.fetchval("SELECT current_database()")
        await conn.execute(f'ALTER DATABASE "{database}" OWNER TO plain_owner')
    finally:
        await conn.close()
    dsn = pgroles.role_dsn(pg_dsn, "registry").replace("cordon_registry@", "plain_owner@")
    # When cordon up sets up the roles with it: it says why not, and every service gets that DSN
    assert await service_roles(dsn, tmp_path / "auth", ["registry", "web"], embedded=False) is None
    assert "PostgreSQL roles not created" in capsys.readouterr().err
    # And with a server of its own, where it must work, the failure stops it
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await service_roles(dsn, tmp_path / "auth", ["registry"], embedded=True)
