"""Residents registered before their personal data was encrypted: sealed when the registry starts.

A registry of before keeps ``name``, ``id_number`` and ``phone`` in plaintext columns of
``registry.residents`` (and the birth year, copied there from its schema-1 events by the DDL). At start, under an advisory lock (one instance does it), each such row
gets a data key, its fields sealed into ``personal`` and its ``id_hash``; then the plaintext
columns are dropped. A row the loop has sealed is not read again, so a start cut short resumes.
"""
from __future__ import annotations

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
    """Seal every plaintext row and drop the plaintext columns; how many rows were sealed."""
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
    log.info("registry.plaintext_sealed", residents=sealed)
    return sealed
