"""Dead letters: what a consumer parked, listed, and applied again once its handler is fixed.

A consumer parks a message that keeps failing (:mod:`shared.consumer`): ``<schema>.dead_letters``
keeps the message and its error, and the consumer's inbox row for the event says ``parked`` (so a
redelivery does not run it again). :func:`replay` applies a dead letter through the same consumer's
handler, as the consumer would have: the effect, the inbox row (``parked`` cleared) and the dead
letter's deletion commit together, written last. If the inbox says the event was applied, the
dead letter is dropped and nothing runs; if the handler fails again, the dead letter stays with
one attempt more and the new error.

Replays run in the service that owns the handlers (a reaction's handler runs that service's own
commands through its runtime): every instance of a service with consumers answers
``cordon.sys.<service>.replay`` {ids: [...]} (one queue group) with one result per id, in order
(see ``ServiceHost.on_replay``). ``cordon dead-letters list | replay`` (services/ops/cli.py) is the
operator's side.
"""
from __future__ import annotations

from typing import Mapping

import asyncpg

from shared import envelope as env
from shared.consumer import Handle
from shared.store import _check

REPLAYED, ALREADY_APPLIED, FAILED, NOT_FOUND = "replayed", "already_applied", "failed", "not_found"
#: Most dead letters one replay request may name.
MAX_IDS = 1000


def replay_subject(service: str) -> str:
    """``cordon.sys.<service>.replay``: where a service's instances replay its dead letters."""
    return f"cordon.sys.{service}.replay"


class _Applied(Exception):
    """The inbox says the event was applied (before, or by a replay meanwhile)."""


class _Gone(Exception):
    """The dead letter was deleted meanwhile (another replay took it)."""


async def replay(pool: asyncpg.Pool, schema: str, handles: Mapping[str, Handle], letter_id: int) -> dict:
    """Apply dead letter ``letter_id`` of ``schema`` again; what happened, as a JSON-able dict."""
    s = _check(schema)
    async with pool.acquire() as conn:
        letter = await conn.fetchrow(
            f"SELECT consumer, event_id::text, stream_seq, payload FROM {s}.dead_letters WHERE id = $1",
            letter_id)
        if letter is None:
            return {"id": letter_id, "outcome": NOT_FOUND}
        consumer = letter["consumer"]
        out = {"id": letter_id, "consumer": consumer, "event_id": letter["event_id"], "type": None}
        try:
            handle = handles.get(consumer)
            if handle is None:
                raise LookupError(f"the {schema} service has no consumer {consumer!r} (any more)")
            raw, event = env.decode(bytes(letter["payload"]))  # an unknown type may be known now
            out.update(event_id=raw.event_id, type=raw.type)
            async with conn.transaction():
                applied = await conn.fetchval(
                    f"SELECT NOT parked FROM {s}.inbox WHERE consumer = $1 AND event_id = $2",
                    consumer, raw.event_id)
                if applied:
                    raise _Applied
                await handle(conn, raw, event)
                # Written last, as the consumer does: until then the transaction holds back no
                # relay while a reaction's handler waits on its commands. The checks hold against
                # a replay of the same letter running meanwhile: the loser rolls back.
                claimed = await conn.fetchval(
                    f"""INSERT INTO {s}.inbox (consumer, event_id, stream_seq, parked)
                        VALUES ($1, $2, $3, false)
                        ON CONFLICT (consumer, event_id) DO UPDATE SET parked = false, consumed_at = now()
                        WHERE inbox.parked RETURNING true""",
                    consumer, raw.event_id, letter["stream_seq"])
                if not claimed:
                    raise _Applied
                if await conn.execute(f"DELETE FROM {s}.dead_letters WHERE id = $1", letter_id) == "DELETE 0":
                    raise _Gone
        except _Applied:
            await conn.execute(f"DELETE FROM {s}.dead_letters WHERE id = $1", letter_id)
            return {**out, "outcome": ALREADY_APPLIED}
        except _Gone:
            return {**out, "outcome": NOT_FOUND}
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            attempts = await conn.fetchval(
                f"UPDATE {s}.dead_letters SET attempts = attempts + 1, error = $2 WHERE id = $1 "
                "RETURNING attempts", letter_id, error)
            if attempts is None:
                return {**out, "outcome": NOT_FOUND}
            return {**out, "outcome": FAILED, "error": error, "attempts": attempts}
        return {**out, "outcome": REPLAYED}


async def schemas(conn: asyncpg.Connection) -> list[str]:
    """Every schema that has a ``dead_letters`` table (the services with consumers)."""
    rows = await conn.fetch("SELECT table_schema FROM information_schema.tables "
                            "WHERE table_name = 'dead_letters' ORDER BY 1")
    return [r[0] for r in rows]


async def listing(conn: asyncpg.Connection, service: str | None = None, consumer: str | None = None) -> list[dict]:
    """Every dead letter (of ``service``, of ``consumer``), oldest first."""
    out = []
    for schema in await schemas(conn):
        if service is not None and schema != service:
            continue
        rows = await conn.fetch(
            f"""SELECT id, consumer, event_id::text, subject, stream_seq, payload, error, attempts, parked_at
                FROM {_check(schema)}.dead_letters WHERE $1::text IS NULL OR consumer = $1 ORDER BY id""",
            consumer)
        for r in rows:
            try:
                event_type = env.decode_raw(bytes(r["payload"])).type
            except Exception:
                event_type = None
            out.append({"service": schema, "id": r["id"], "consumer": r["consumer"], "event_id": r["event_id"],
                        "subject": r["subject"], "stream_seq": r["stream_seq"], "type": event_type,
                        "attempts": r["attempts"], "error": r["error"], "parked_at": r["parked_at"]})
    out.sort(key=lambda d: (d["parked_at"], d["service"], d["id"]))
    return out
