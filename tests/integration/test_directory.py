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


async def test_a_batch_applied_at_once_leaves_the_directory_as_one_event_at_a_time_does(pg_dsn):
    from datetime import datetime, timezone

    from shared.contracts.registry import (CompoundRegistered, HouseholdRegistered, ResidentMovedOut,
                                           ResidentRegistered, ResidentUpdated)

    at, by, c = datetime(2020, 2, 17, 9, tzinfo=timezone.utc), "staff:li-wei", "changning.xinhua.nangong"

    def compound(k, name, buildings):
        return CompoundRegistered(community=c, compound=k, name=name, buildings=buildings, gates=["g1"],
                                  registered_at=at, registered_by=by)

    def household(h, k="k1", b="b1"):
        return HouseholdRegistered(community=c, compound=k, building=b, household=h, registered_at=at,
                                   registered_by=by)

    def resident(r, h, vulnerabilities=()):
        return ResidentRegistered(community=c, compound="k1", building="b1", household=h, resident=r,
                                  display_name="王*伟", vulnerabilities=list(vulnerabilities), registered_at=at,
                                  registered_by=by)

    def moved(r, h):
        return ResidentMovedOut(community=c, resident=r, household=h, compound="k1", building="b1",
                                moved_out_at=at, moved_out_by=by)

    def updated(r, h, vulnerabilities):
        return ResidentUpdated(community=c, resident=r, household=h, compound="k1", building="b1",
                               vulnerabilities=vulnerabilities, updated_at=at, updated_by=by)

    # Given a batch with runs of each type, keys repeated within a run, and an order that matters
    batch = [
        compound("k1", "南宫", ["b1"]), compound("k2", "新华", ["b1", "b2"]), compound("k1", "南宫小区", ["b1", "b3"]),
        household("h1"), household("h2", b="b3"), household("h1", b="b9"),
        resident("r1", "h1", ["elderly_alone"]), resident("r2", "h1"), resident("r3", "h2"), resident("r1", "h2"),
        moved("r2", "h1"), moved("r3", "h2"),
        resident("r4", "h2", ["limited_mobility"]),
        updated("r1", "h1", ["chronic_illness"]), updated("r4", "h2", []), updated("r1", "h1", ["medical_device"]),
        moved("r4", "h2"), household("h3"),
    ]
    conn = await asyncpg.connect(pg_dsn)
    try:
        for schema in ("one_by_one", "at_once"):
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
            await conn.execute(directory.ddl(schema))
        # When one copy takes the events one at a time and the other the batch at once
        for event in batch:
            await directory.apply(conn, "one_by_one", event)
        async with conn.transaction():
            await directory.apply_many(conn, "at_once", batch)
        # Then both hold the same rows
        for table, key in (("dir_compounds", "community, compound"), ("dir_households", "household"),
                           ("dir_residents", "resident")):
            rows = [[tuple(r) for r in await conn.fetch(f"SELECT * FROM {s}.{table} ORDER BY {key}")]
                    for s in ("one_by_one", "at_once")]
            assert rows[0] == rows[1], table
        residents = {r["resident"]: r for r in await conn.fetch("SELECT * FROM at_once.dir_residents")}
        assert residents["r1"]["vulnerabilities"] == ["medical_device"] and residents["r1"]["household"] == "h1"
        assert [residents[r]["moved_out"] for r in ("r1", "r2", "r3", "r4")] == [False, True, True, True]
        assert (await conn.fetchrow("SELECT * FROM at_once.dir_compounds WHERE compound = 'k1'"))["buildings"] == [
            "b1", "b3"]
    finally:
        for schema in ("one_by_one", "at_once"):
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
