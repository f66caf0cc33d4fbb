"""Applying a batch of stream messages to a generation of the read models, in one transaction.

Per batch: decode (pure Python), then under the generation's lock: skip what lies at or before the
stored high-water mark, let the inbox (``seen``) drop event ids already applied (an event replayed
under a new stream sequence), load the state of the things the batch names, fold, and write
figures, things, timeline rows and the new mark with a few set-based statements. Nothing of a
batch outlives it in Python: memory stays flat however long the stream.
"""
from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import date, datetime, tzinfo

import asyncpg
import msgspec

from services.views import fold, rules, schema
from shared.tail import Batch, Reposition
from shared import envelope as env
from shared import log as logging

log = logging.get("views")




class _Envelope(msgspec.Struct):
    """The envelope fields the views read (the others are skipped unparsed)."""

    event_id: str
    type: str
    schema: int
    community: str
    occurred_at: datetime
    actor: str
    data: msgspec.Raw = msgspec.Raw(b"null")


_envelope = msgspec.json.Decoder(_Envelope)
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def _event_id(value: str) -> str:
    """The id as PostgreSQL spells it back; raises ValueError if it is not a UUID."""
    return value if _CANONICAL_UUID.match(value) else str(uuid.UUID(value))


class _Probe(msgspec.Struct):
    """The one field every event about a person shares, read from any event type."""

    resident: str | None = None


_probe = msgspec.json.Decoder(_Probe)


class Item(msgspec.Struct, frozen=True, gc=False):
    """One stream message as the projection applies it (a Struct: built per event, 3 % of a
    rebuild's writing process as a NamedTuple)."""

    seq: int
    event_id: str | None  # None: undecodable, skipped
    type: str = ""
    community: str = ""
    day: date | None = None
    ops: tuple = ()
    resident: str | None = None
    occurred_at: datetime | None = None
    actor: str = ""
    data: bytes = b""
    registered: bool = True
    #: False for an event about Cordon itself (rules.NOT_VIEWED): applied (its id, its sequence)
    #: but its community is not listed among the communities.
    viewed: bool = True


def decode(payload: bytes, seq: int, zone: tzinfo) -> Item:
    """One message as the projection needs it; never raises (a bad message is ``event_id`` None)."""
    try:
        raw = _envelope.decode(payload)
        event_id = _event_id(raw.event_id)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return Item(seq, None)
    day = rules.local_day(raw.occurred_at, zone)
    try:
        cls = env.lookup(raw.type, raw.schema)
    except env.UnknownEventType:
        return Item(seq, event_id, raw.type, raw.community, day, (), _resident(raw.data), raw.occurred_at,
                    raw.actor, bytes(raw.data), False)
    if cls in rules.NOT_VIEWED:
        return Item(seq, event_id, raw.type, raw.community, day, viewed=False)
    try:
        recorded = msgspec.json.decode(raw.data, type=cls)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return Item(seq, None)
    # An event of an earlier schema is read, and shown on the timeline, as its type's current
    # schema: what a change took out of the events (a pass's printed number) stays out of the views.
    event = recorded.upcast()
    data = bytes(raw.data) if event is recorded else env.encode(event)
    resident = getattr(event, "resident", None)
    return Item(seq, event_id, raw.type, raw.community, day, rules.ops(event, raw.community, day),
                resident if isinstance(resident, str) else None, raw.occurred_at, raw.actor, data)


def _resident(data: msgspec.Raw) -> str | None:
    try:
        return _probe.decode(data).resident
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class Projection:
    """The read models of one generation (``generation`` None: whichever is current)."""

    def __init__(self, pool: asyncpg.Pool, zone: tzinfo, generation: int | None = None):
        self.pool = pool
        self.zone = zone
        self.generation = generation
        self.applied = 0
        self.duplicates = 0
        self.undecodable = 0

    async def position(self) -> int:
        async with self.pool.acquire() as conn:
            generation = self.generation or await schema.current(conn)
            return await schema.hwm(conn, generation)

    async def rewind(self, seen: int, to: int) -> None:
        """Lower the mark from ``seen`` to ``to`` (the stream's last sequence, after it lost its
        tail); the inbox drops what comes again. Nothing if the mark moved meanwhile."""
        async with self.pool.acquire() as conn, conn.transaction():
            if self.generation is None:
                generation = await schema.lock_current(conn)
            else:
                generation = self.generation
                await schema.lock(conn, generation)
            await conn.execute(f"UPDATE {schema.name(generation)}.meta SET hwm = $2, updated_at = now() "
                               "WHERE hwm = $1", seen, to)

    def prepare(self, batch: Batch) -> list[Item]:
        zone = self.zone
        return [decode(msg.data, seq, zone) for seq, _, msg in batch]

    async def apply(self, items: list[Item], after: int | None) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            # A crash may lose the last batches: the mark goes with them and the stream replays them.
            await conn.execute("SET LOCAL synchronous_commit TO off")
            if self.generation is None:
                generation = await schema.lock_current(conn)
            else:
                generation = self.generation
                await schema.lock(conn, generation)
            s = schema.name(generation)
            stored = await conn.fetchval(f"SELECT hwm FROM {s}.meta")
            if after is not None and stored < after:
                raise Reposition(stored)
            items = [i for i in items if i.seq > stored]
            if not items:
                return stored
            fresh = await _claim(conn, s, items)
            await _write(conn, s, fresh)
            undecodable = sum(1 for i in items if i.event_id is None)
            duplicates = len(items) - undecodable - len(fresh)
            await conn.execute(
                f"UPDATE {s}.meta SET hwm = $1, applied = applied + $2, duplicates = duplicates + $3, "
                "undecodable = undecodable + $4, updated_at = now()",
                items[-1].seq, len(fresh), duplicates, undecodable)
        self.applied += len(fresh)
        self.duplicates += duplicates
        self.undecodable += undecodable
        if undecodable:
            log.warning("views.undecodable", count=undecodable, last_seq=items[-1].seq)
        return items[-1].seq


async def _claim(conn, s: str, items: list[Item]) -> list[Item]:
    """The items whose event id is new to the inbox, once each, in stream order."""
    ids = [i.event_id for i in items if i.event_id is not None]
    if not ids:
        return []
    if len(set(ids)) == len(ids):
        # The usual case, no replay: counting the rows inserted is cheaper than returning them.
        try:
            async with conn.transaction():  # a savepoint, undone if some were applied before
                status = await conn.execute(
                    f"INSERT INTO {s}.seen SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING", ids)
                if status != f"INSERT 0 {len(ids)}":
                    raise _Replayed
            return [i for i in items if i.event_id is not None]
        except _Replayed:
            pass
    rows = await conn.fetch(
        f"INSERT INTO {s}.seen SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING RETURNING event_id::text",
        ids)
    new = {r[0] for r in rows}
    fresh = []
    for item in items:
        if item.event_id in new:
            new.discard(item.event_id)  # a second copy in the same batch is a duplicate
            fresh.append(item)
    return fresh


class _Replayed(Exception):
    """Some event ids of a batch were applied before: take the path that says which."""


async def _write(conn, s: str, items: list[Item]) -> None:
    if not items:
        return
    batch = [(i.community, i.day, i.ops) for i in items if i.ops]
    keys = fold.member_keys(batch)
    members = await _members(conn, s, keys) if keys else {}
    folded = fold.fold(batch, members)
    if folded.deltas:
        (cs, ms, ds), ns = zip(*folded.deltas), list(folded.deltas.values())
        await conn.execute(
            f"""INSERT INTO {s}.figures (community, metric, day, n)
                SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[])
                ON CONFLICT (community, metric, day) DO UPDATE SET n = figures.n + excluded.n""",
            cs, ms, ds, ns)
        (ss, ms, ds), ns = zip(*(rolled := rollup_deltas(folded.deltas))), list(rolled.values())
        await conn.execute(
            f"""INSERT INTO {s}.rollups (scope, metric, day, n)
                SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[])
                ON CONFLICT (scope, metric, day) DO UPDATE SET n = rollups.n + excluded.n""",
            ss, ms, ds, ns)
    if folded.upserts:
        (sets, ks), vals = zip(*folded.upserts), list(folded.upserts.values())
        await conn.execute(
            f"""INSERT INTO {s}.members (set, key, community, metric, value)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
                ON CONFLICT (set, key) DO UPDATE
                SET community = excluded.community, metric = excluded.metric, value = excluded.value""",
            sets, ks, [v.community for v in vals], [v.metric for v in vals], [v.value for v in vals])
    if folded.drops:
        sets, ks = zip(*folded.drops)
        await conn.execute(
            f"DELETE FROM {s}.members m USING unnest($1::text[], $2::text[]) AS d(set, key) "
            "WHERE m.set = d.set AND m.key = d.key", list(sets), list(ks))
    timeline = [(i.resident, i.seq, i.event_id, i.type, i.occurred_at, i.actor, i.community, i.data)
                for i in items if i.resident is not None]
    if timeline:
        await conn.copy_records_to_table("timeline", schema_name=s, records=timeline)
    first_seen: dict[str, int] = {}
    for i in items:
        if i.viewed:
            first_seen.setdefault(i.community, i.seq)
    await conn.execute(
        f"INSERT INTO {s}.communities SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING",
        list(first_seen), list(first_seen.values()))
    unknown = Counter(i.type for i in items if not i.registered)
    if unknown:
        await conn.execute(
            f"""INSERT INTO {s}.ignored SELECT * FROM unnest($1::text[], $2::bigint[])
                ON CONFLICT (type) DO UPDATE SET n = ignored.n + excluded.n""",
            list(unknown), list(unknown.values()))


def rollup_deltas(deltas: dict[fold.FigureKey, int]) -> dict[fold.FigureKey, int]:
    """A batch's figure deltas summed per scope above each community: the city (``''``), its
    district and its street. A sum of zero is kept: a scope shows a figure (as 0) exactly when one
    of its communities has a row of it."""
    out: dict[fold.FigureKey, int] = {}
    for (community, metric, day), n in deltas.items():
        district, _, rest = community.partition(".")
        street = f"{district}.{rest.partition('.')[0]}"
        for scope in ("", district, street):
            out[(scope, metric, day)] = out.get((scope, metric, day), 0) + n
    return out


async def _members(conn, s: str, keys: set) -> dict:
    sets, ks = zip(*keys)
    rows = await conn.fetch(
        f"SELECT m.set, m.key, m.community, m.metric, m.value FROM {s}.members m "
        "JOIN unnest($1::text[], $2::text[]) AS k(set, key) ON m.set = k.set AND m.key = k.key",
        list(sets), list(ks))
    return {(r[0], r[1]): fold.Member(r[2], r[3], r[4]) for r in rows}
