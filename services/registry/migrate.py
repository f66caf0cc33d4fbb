"""Personal data kept in clear by a registry of before: sealed when the registry starts.

A registry of before keeps ``name``, ``id_number`` and ``phone`` in plaintext columns of
``registry.residents`` (and the birth year, copied there from its schema-1 events by the DDL). At
start, under an advisory lock (one instance does it), each such row gets a data key, its fields
sealed into ``personal`` and its ``id_hash``; then the plaintext columns are dropped. The addresses
and travel history the DDL copied from schema-1 events are sealed next (a household's with a key
of its own, an arrival's with its resident's). A row the loop has sealed is not read again, so a
start cut short resumes.
"""
from __future__ import annotations

import json

import structlog

from services.registry import handlers
from services.registry.keys import KeyStore

log = structlog.get_logger()
LOCK = 0x726567_6B6579  # "regkey": one instance seals at a time
BATCH = 500

_LEGACY = ("SELECT 1 FROM information_schema.columns WHERE table_schema = 'registry' "
           "AND table_name = 'residents' AND column_name = 'id_number'")
_PLAIN = ("SELECT resident, name, id_number, phone, birth_year FROM registry.residents "
          "WHERE personal IS NULL AND erased_at IS NULL AND id_number IS NOT NULL ORDER BY resident LIMIT $1")
_SEAL = ("UPDATE registry.residents SET personal = $2, id_hash = $3, name = NULL, id_number = NULL, phone = NULL, "
         "birth_year = NULL "
         "WHERE resident = $1")


async def seal_plaintext(pool, keys: KeyStore) -> int:
    """Seal every plaintext row (residents, then the addresses and travel history copied from
    schema-1 events) and drop the residents' plaintext columns; how many rows were sealed."""
    residents = await _seal_residents(pool, keys)
    households, arrivals = await _seal_copies(pool, keys)
    if residents or households or arrivals:
        log.info("registry.plaintext_sealed", residents=residents, households=households, arrivals=arrivals)
    return residents + households + arrivals


async def _seal_residents(pool, keys: KeyStore) -> int:
    sealed = 0
    async with pool.acquire() as conn:
        if not await conn.fetchval(_LEGACY):
            return 0
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK)
        try:
            while rows := await conn.fetch(_PLAIN, BATCH):
                data_keys = await keys.create([r["resident"] for r in rows])
                async with conn.transaction():
                    for r in rows:
                        personal = handlers.sealed_personal(data_keys[r["resident"]], r["resident"], r["name"],
                                                            r["id_number"], r["phone"], r["birth_year"])
                        await conn.execute(_SEAL, r["resident"], personal,
                                           handlers.id_hash(keys.index_key, r["id_number"]))
                sealed += len(rows)
            await conn.execute("ALTER TABLE registry.residents DROP COLUMN IF EXISTS name, "
                               "DROP COLUMN IF EXISTS id_number, DROP COLUMN IF EXISTS phone, "
                               "DROP COLUMN IF EXISTS birth_year")
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK)
    return sealed


_PLAIN_ADDRESSES = ("SELECT household, address FROM registry.households WHERE address IS NOT NULL "
                    "ORDER BY household LIMIT $1")
_SEAL_ADDRESS = "UPDATE registry.households SET sealed = $2, address = NULL WHERE household = $1"
_PLAIN_TRAVEL = ("SELECT arrival, resident, origin, transport::text, visited::text FROM registry.arrivals "
                 "WHERE origin IS NOT NULL ORDER BY arrival LIMIT $1")
_SEAL_TRAVEL = ("UPDATE registry.arrivals SET sealed = $2, origin = NULL, transport = NULL, visited = NULL "
                "WHERE arrival = $1")
_DROP_TRAVEL = "DELETE FROM registry.arrivals WHERE arrival = $1"


async def _seal_copies(pool, keys: KeyStore) -> tuple[int, int]:
    """Seal what the first schema-2 start copied in clear from schema-1 events: households'
    addresses (each a key of its own) and arrivals' travel history (the resident's key; an erased
    resident's is deleted, there is no key to seal it with)."""
    households = arrivals = 0
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK)
        try:
            while rows := await conn.fetch(_PLAIN_ADDRESSES, BATCH):
                subjects = {r["household"]: handlers.household_subject(r["household"]) for r in rows}
                data_keys = await keys.create(list(subjects.values()))
                async with conn.transaction():
                    for r in rows:
                        subject = subjects[r["household"]]
                        sealed = (handlers.seal_json(data_keys[subject], subject, {"address": r["address"]})
                                  if subject in data_keys else None)  # erased: nothing to seal with
                        await conn.execute(_SEAL_ADDRESS, r["household"], sealed)
                households += len(rows)
            while rows := await conn.fetch(_PLAIN_TRAVEL, BATCH):
                data_keys = await keys.get(sorted({r["resident"] for r in rows}))
                async with conn.transaction():
                    for r in rows:
                        key = data_keys.get(r["resident"])
                        if key is None:
                            await conn.execute(_DROP_TRAVEL, r["arrival"])
                            continue
                        travel = {"origin": r["origin"], "transport": json.loads(r["transport"]),
                                  "visited": json.loads(r["visited"])}
                        await conn.execute(_SEAL_TRAVEL, r["arrival"],
                                           handlers.seal_json(key, f"arrival:{r['arrival']}", travel))
                arrivals += len(rows)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK)
    return households, arrivals
