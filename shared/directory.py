"""A service's local copy of the registry's public facts: compounds (buildings, gates), households
and residents (masked names, vulnerabilities as ResidentUpdated last set them, moved out), fed by a
durable consumer.

A household's address and a resident's birth year left the events in their schema 2 (issue 16):
no service needs them to decide. Copies made from schema-1 events dropped them too (``upcast``);
the columns stay, null, so a copy made before the change reads the same as one made after
(``cordon reconcile`` compares them), and are emptied by the table changes below.

Services never import each other; this is how checkpoint, quarantine and logistics know where a
resident lives without asking the registry. The copy lives in the consuming service's own schema
(``<schema>.dir_*``), so it survives restarts without a replay and answers inside the service's
own transactions.
"""
from __future__ import annotations

import json

import asyncpg

from shared.contracts.registry import (
    CompoundRegistered,
    HouseholdRegistered,
    ResidentMovedOut,
    ResidentRegistered,
    ResidentUpdated,
)
from shared.consumer import HandleMany
from shared.envelope import Event, RawEnvelope
from shared.service import ConsumerSpec, LocalCopy
from shared.subjects import event_filters

EVENTS = ("CompoundRegistered", "HouseholdRegistered", "ResidentRegistered", "ResidentMovedOut", "ResidentUpdated")


def ddl(schema: str) -> str:
    return f"""
    CREATE TABLE IF NOT EXISTS {schema}.dir_compounds (
        community text NOT NULL, compound text NOT NULL, name text NOT NULL,
        buildings text[] NOT NULL, gates text[] NOT NULL,
        PRIMARY KEY (community, compound));
    CREATE TABLE IF NOT EXISTS {schema}.dir_households (
        household text PRIMARY KEY, community text NOT NULL, compound text NOT NULL,
        building text NOT NULL, address text);
    CREATE INDEX IF NOT EXISTS dir_households_area ON {schema}.dir_households (community, compound, building);
    CREATE TABLE IF NOT EXISTS {schema}.dir_residents (
        resident text PRIMARY KEY, household text NOT NULL, community text NOT NULL,
        compound text NOT NULL, building text NOT NULL, display_name text NOT NULL,
        birth_year integer, vulnerabilities text[] NOT NULL, moved_out boolean NOT NULL);
    CREATE INDEX IF NOT EXISTS dir_residents_household ON {schema}.dir_residents (household);
    -- a copy made before schema 2 held addresses and birth years: they go.
    ALTER TABLE {schema}.dir_households ALTER COLUMN address DROP NOT NULL;
    ALTER TABLE {schema}.dir_residents ALTER COLUMN birth_year DROP NOT NULL;
    UPDATE {schema}.dir_households SET address = NULL WHERE address IS NOT NULL;
    UPDATE {schema}.dir_residents SET birth_year = NULL WHERE birth_year IS NOT NULL;
    """


def consumer(schema: str) -> ConsumerSpec:
    """The durable consumer ``<schema>-directory`` that keeps ``<schema>.dir_*`` current."""

    def build(host) -> object:
        async def handle(conn: asyncpg.Connection, raw: RawEnvelope, event: Event) -> None:
            await apply(conn, schema, event)

        return handle

    def build_many(host) -> HandleMany:
        async def handle_many(conn: asyncpg.Connection, items: list[tuple[RawEnvelope, Event]]) -> None:
            await apply_many(conn, schema, [event for _, event in items])

        return handle_many

    return ConsumerSpec(
        name=f"{schema}-directory",
        subjects=event_filters("registry", *EVENTS),
        handle=build,
        copy=COPY,
        handle_many=build_many,
    )


async def apply_many(conn: asyncpg.Connection, schema: str, events: list[Event]) -> None:
    """Apply a batch of registry events in order, one statement per run of the same type.

    Why: one statement a resident made a bulk registration (the import, ``cordon load``'s set-up of
    10,000 residents) cost every other service a round trip a resident, and their directories
    were still applying it half a minute after the registry had answered. Runs keep the order
    between types (registered, then moved out); within a run, an insert that does nothing on
    conflict keeps the first, as one at a time would, and an update keeps each key's last."""
    run: list[Event] = []
    for event in (e.upcast() for e in events):
        if run and type(event) is not type(run[0]):
            await _apply_run(conn, schema, run)
            run = []
        run.append(event)
    if run:
        await _apply_run(conn, schema, run)


async def _apply_run(conn: asyncpg.Connection, schema: str, run: list) -> None:
    if len(run) == 1:
        return await apply(conn, schema, run[0])
    match run[0]:
        case CompoundRegistered():
            last = {(e.community, e.compound): e for e in run}.values()
            await conn.execute(
                f"""INSERT INTO {schema}.dir_compounds
                    SELECT c, k, n, array(SELECT jsonb_array_elements_text(b)), array(SELECT jsonb_array_elements_text(g))
                    FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::jsonb[]) AS u(c, k, n, b, g)
                    ON CONFLICT (community, compound) DO UPDATE
                    SET name = excluded.name, buildings = excluded.buildings, gates = excluded.gates""",
                [e.community for e in last], [e.compound for e in last], [e.name for e in last],
                [_json(e.buildings) for e in last], [_json(e.gates) for e in last])
        case HouseholdRegistered():
            await conn.execute(
                f"""INSERT INTO {schema}.dir_households
                    SELECT h, c, k, b, NULL FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(h, c, k, b)
                    ON CONFLICT (household) DO NOTHING""",
                [e.household for e in run], [e.community for e in run], [e.compound for e in run],
                [e.building for e in run])
        case ResidentRegistered():
            await conn.execute(
                f"""INSERT INTO {schema}.dir_residents
                    SELECT r, h, c, k, b, n, NULL, array(SELECT jsonb_array_elements_text(v)), false
                    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[])
                         AS u(r, h, c, k, b, n, v)
                    ON CONFLICT (resident) DO NOTHING""",
                [e.resident for e in run], [e.household for e in run], [e.community for e in run],
                [e.compound for e in run], [e.building for e in run], [e.display_name for e in run],
                [_json(e.vulnerabilities) for e in run])
        case ResidentMovedOut():
            await conn.execute(
                f"UPDATE {schema}.dir_residents SET moved_out = true WHERE resident = ANY($1::text[])",
                [e.resident for e in run])
        case ResidentUpdated():
            last = {e.resident: e for e in run}.values()
            await conn.execute(
                f"""UPDATE {schema}.dir_residents d SET vulnerabilities = array(SELECT jsonb_array_elements_text(u.v))
                    FROM unnest($1::text[], $2::jsonb[]) AS u(r, v) WHERE d.resident = u.r""",
                [e.resident for e in last], [_json(e.vulnerabilities) for e in last])
        case _:
            for event in run:  # a type of EVENTS this function does not batch yet: one at a time
                await apply(conn, schema, event)


def _json(values) -> str:
    """A list as one JSON text: unnest cannot take an array of arrays of different lengths."""
    return json.dumps(list(values), ensure_ascii=False)


async def apply(conn: asyncpg.Connection, schema: str, event: Event) -> None:
    """Apply one registry event to the directory (idempotent upserts); an event of an earlier
    schema as its current self."""
    event = event.upcast()
    match event:
        case CompoundRegistered():
            await conn.execute(
                f"""INSERT INTO {schema}.dir_compounds VALUES ($1, $2, $3, $4, $5)
                    ON CONFLICT (community, compound) DO UPDATE
                    SET name = $3, buildings = $4, gates = $5""",
                event.community, event.compound, event.name, event.buildings, event.gates)
        case HouseholdRegistered():
            await conn.execute(
                f"""INSERT INTO {schema}.dir_households VALUES ($1, $2, $3, $4, NULL)
                    ON CONFLICT (household) DO NOTHING""",
                event.household, event.community, event.compound, event.building)
        case ResidentRegistered():
            await conn.execute(
                f"""INSERT INTO {schema}.dir_residents VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, false)
                    ON CONFLICT (resident) DO NOTHING""",
                event.resident, event.household, event.community, event.compound, event.building,
                event.display_name, list(event.vulnerabilities))
        case ResidentMovedOut():
            await conn.execute(
                f"UPDATE {schema}.dir_residents SET moved_out = true WHERE resident = $1", event.resident)
        case ResidentUpdated():
            # the full new list: logistics ranks and raises welfare checks by it from now on
            await conn.execute(
                f"UPDATE {schema}.dir_residents SET vulnerabilities = $2 WHERE resident = $1",
                event.resident, list(event.vulnerabilities))


async def _apply_envelope(conn: asyncpg.Connection, schema: str, raw: RawEnvelope, event: Event) -> None:
    await apply(conn, schema, event)


#: The directory as ``cordon reconcile`` checks it (see :class:`shared.service.LocalCopy`).
COPY = LocalCopy(tables=("dir_compounds", "dir_households", "dir_residents"), ddl=ddl, apply=_apply_envelope)


# -- reads: every service reads its copy through these, inside its own transactions ----------

_VULNERABILITIES = """ARRAY(SELECT DISTINCT v FROM {schema}.dir_residents r, unnest(r.vulnerabilities) v
                            WHERE r.household = h.household AND NOT r.moved_out) AS vulnerabilities"""


def _household_columns(schema: str, vulnerabilities: bool) -> str:
    columns = "h.household, h.community, h.compound, h.building, h.address"
    return columns + (", " + _VULNERABILITIES.format(schema=schema) if vulnerabilities else "")


async def compound(conn, schema: str, community: str, compound_id: str):
    """The compound's row (community, compound, name, buildings, gates) or None."""
    return await conn.fetchrow(
        f"SELECT * FROM {schema}.dir_compounds WHERE community = $1 AND compound = $2", community, compound_id)


async def compounds_with_gate(conn, schema: str, community: str, gate: str) -> list:
    """The rows of the community's compounds that have a gate of this name, by compound."""
    return await conn.fetch(
        f"SELECT * FROM {schema}.dir_compounds WHERE community = $1 AND $2 = ANY(gates) ORDER BY compound",
        community, gate)


async def household(conn, schema: str, household_id: str, *, vulnerabilities: bool = False):
    """The household's row (household, community, compound, building, address; with
    ``vulnerabilities``, every vulnerability of its current residents) or None."""
    return await conn.fetchrow(
        f"SELECT {_household_columns(schema, vulnerabilities)} FROM {schema}.dir_households h "
        "WHERE h.household = $1", household_id)


async def households(conn, schema: str, household_ids: list[str]) -> list:
    """The rows of the households named (unknown ids are left out), by household."""
    return await conn.fetch(
        f"SELECT {_household_columns(schema, False)} FROM {schema}.dir_households h "
        "WHERE h.household = ANY($1::text[]) ORDER BY h.household", household_ids)


async def households_in(conn, schema: str, community: str, compound_id: str, building: str | None = None,
                        *, vulnerabilities: bool = False) -> list:
    """The rows of the households in a compound, or in one building of it, by household (with
    ``vulnerabilities`` as in :func:`household`)."""
    return await conn.fetch(
        f"SELECT {_household_columns(schema, vulnerabilities)} FROM {schema}.dir_households h "
        "WHERE h.community = $1 AND h.compound = $2 AND ($3::text IS NULL OR h.building = $3) "
        "ORDER BY h.household", community, compound_id, building)


async def household_vulnerabilities(conn, schema: str, household_id: str) -> set[str]:
    """Every vulnerability of the household's current residents (elderly_alone, …)."""
    rows = await conn.fetch(
        f"SELECT DISTINCT unnest(vulnerabilities) AS v FROM {schema}.dir_residents "
        "WHERE household = $1 AND NOT moved_out", household_id)
    return {r["v"] for r in rows}


async def resident(conn, schema: str, resident_id: str):
    """The resident's row (resident, household, community, compound, building, display_name,
    birth_year, vulnerabilities, moved_out) or None."""
    return await conn.fetchrow(f"SELECT * FROM {schema}.dir_residents WHERE resident = $1", resident_id)


async def household_of(conn, schema: str, resident_id: str) -> str | None:
    """The household a resident is registered in, or None for an unknown resident."""
    return await conn.fetchval(f"SELECT household FROM {schema}.dir_residents WHERE resident = $1", resident_id)
