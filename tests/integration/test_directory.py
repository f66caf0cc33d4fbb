"""A service's local directory of registry facts follows the registry's events, across restarts."""
from __future__ import annotations


import asyncpg
import pytest

from services.registry.app import spec as registry_spec
from shared import directory
from shared.service import ServiceSpec
from tests.support.bus import connect
from tests.support.cordon import Client, community, household, resident, running
from tests.support.cordon import eventually

pytestmark = pytest.mark.integration


def probe_spec() -> ServiceSpec:
    return ServiceSpec(name="probe", extra_ddl=directory.ddl("probe"), consumers=[directory.consumer("probe")])



async def test_the_directory_knows_where_a_resident_lives_and_when_they_move_out(nats_url, pg_dsn):
    async with running(registry_spec(), nats_url, pg_dsn):
        nc = await connect(nats_url)
        client = Client(nc)
        await community(client, buildings=("b1", "b2"))
        h = await household(client, building="b2")
        r = await resident(client, h, vulnerabilities=["elderly_alone"])
        async with running(probe_spec(), nats_url, pg_dsn) as probe:
            async def row():
                async with probe.pool.acquire() as conn:
                    return await directory.resident(conn, "probe", r)
            found = await eventually(row)
            assert (found["household"], found["building"], found["display_name"]) == (h, "b2", "王*伟")
            async with probe.pool.acquire() as conn:
                assert await directory.household_vulnerabilities(conn, "probe", h) == {"elderly_alone"}
                in_b2 = await directory.households_in(conn, "probe", found["community"], "nangong-1", "b2")
                assert [r["household"] for r in in_b2] == [h]
                assert await directory.household_of(conn, "probe", r) == h
                assert (await directory.household(conn, "probe", h, vulnerabilities=True))["vulnerabilities"] == [
                    "elderly_alone"]
                assert [c["compound"] for c in await directory.compounds_with_gate(
                    conn, "probe", found["community"], "g1")] == ["nangong-1"]
                assert (await directory.compound(conn, "probe", found["community"], "nangong-1"))["gates"] == ["g1"]
        await client.ok("move_out", resident=r)
        async with running(probe_spec(), nats_url, pg_dsn) as probe:  # restarted: resumes, no replay
            async def moved():
                async with probe.pool.acquire() as conn:
                    return (await directory.resident(conn, "probe", r))["moved_out"]
            assert await eventually(moved)
            async with probe.pool.acquire() as conn:
                assert await directory.household_vulnerabilities(conn, "probe", h) == set()
        await nc.close()


async def test_a_directory_copied_before_schema_2_loses_its_addresses_and_birth_years_at_start(pg_dsn):
    # Given a directory as a service kept it before issue 16: addresses and birth years, NOT NULL
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("""
            CREATE SCHEMA old;
            CREATE TABLE old.dir_households (household text PRIMARY KEY, community text NOT NULL,
                compound text NOT NULL, building text NOT NULL, address text NOT NULL);
            CREATE TABLE old.dir_residents (resident text PRIMARY KEY, household text NOT NULL,
                community text NOT NULL, compound text NOT NULL, building text NOT NULL, display_name text NOT NULL,
                birth_year integer NOT NULL, vulnerabilities text[] NOT NULL, moved_out boolean NOT NULL);
            INSERT INTO old.dir_households VALUES ('h-1', 'c', 'nangong-1', 'b1', '南宫小区1号101室');
            INSERT INTO old.dir_residents VALUES ('r-1', 'h-1', 'c', 'nangong-1', 'b1', '王*伟', 1941,
                '{elderly_alone}', false);""")
        # when the service starts with today's directory tables
        await conn.execute(directory.ddl("old"))
        # then the rows stay, without the address and the birth year
        assert await conn.fetchrow("SELECT building, address FROM old.dir_households") == ("b1", None)
        assert await conn.fetchrow("SELECT display_name, birth_year, vulnerabilities FROM old.dir_residents") == (
            "王*伟", None, ["elderly_alone"])
    finally:
        await conn.close()
