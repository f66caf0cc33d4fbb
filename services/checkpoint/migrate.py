"""Visitors recorded before their personal data was encrypted: sealed when the checkpoint starts.

A checkpoint of before keeps a visitor's ``name``, ``phone`` and ``purpose`` in plaintext columns
of ``checkpoint.visitors``. At start, under an advisory lock (one instance does it), each such row
gets a data key (subject: its passage), its fields sealed into ``personal``; then the plaintext
columns are dropped. A row the loop has sealed is not read again, so a start cut short resumes.
Visits already beyond the tracing window are sealed too: the day's retention shreds them next.
"""
from __future__ import annotations

import structlog

from services.checkpoint import handlers
from shared.keystore import KeyStore

log = structlog.get_logger()
LOCK = 0x636B70_6B6579  # "ckpkey": one instance seals at a time
BATCH = 500

_LEGACY = ("SELECT 1 FROM information_schema.columns WHERE table_schema = 'checkpoint' "
           "AND table_name = 'visitors' AND column_name = 'name'")
_PLAIN = ("SELECT passage, name, phone, purpose FROM checkpoint.visitors "
          "WHERE personal IS NULL AND name IS NOT NULL ORDER BY passage LIMIT $1")
_SEAL = "UPDATE checkpoint.visitors SET personal = $2, name = NULL, phone = NULL, purpose = NULL WHERE passage = $1"


async def seal_plaintext(pool, keys: KeyStore) -> int:
    """Seal every plaintext visitor and drop the plaintext columns; how many rows were sealed."""
    sealed = 0
    async with pool.acquire() as conn:
        if not await conn.fetchval(_LEGACY):
            return 0
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK)
        try:
            while rows := await conn.fetch(_PLAIN, BATCH):
                data_keys = await keys.create([r["passage"] for r in rows])
                async with conn.transaction():
                    for r in rows:
                        personal = handlers.sealed_visitor(data_keys[r["passage"]], r["passage"], r["name"],
                                                           r["phone"], r["purpose"] or "")
                        await conn.execute(_SEAL, r["passage"], personal)
                sealed += len(rows)
            await conn.execute("ALTER TABLE checkpoint.visitors DROP COLUMN IF EXISTS name, "
                               "DROP COLUMN IF EXISTS phone, DROP COLUMN IF EXISTS purpose")
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK)
    log.info("checkpoint.plaintext_sealed", visitors=sealed)
    return sealed
