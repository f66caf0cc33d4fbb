"""Publishing a service's recorded events to JetStream again, from its ``events`` table (the record).

What for: on a single node, JetStream syncs its file store every 2 minutes by default, so events it
acknowledged just before an OS crash can be lost from the stream while the relay had already
deleted their outbox rows. PostgreSQL still has them. This publishes the events a service recorded
in a time range (``recorded_at``, the service's own clock), in position order, exactly as the relay
did: subject ``cordon.evt.<community>.<service>.<EventType>``, ``Nats-Msg-Id`` = event id, every
PubAck checked (the relay's own publisher, :meth:`shared.relay.Relay.publish`).

What JetStream does with each: within its duplicate window (``CORDON_DEDUPE_WINDOW_S``, 20 min) an
event it still has is dropped by its message id (the PubAck says ``duplicate``); an event it lost
is stored again. Beyond the window an event it still has is stored a second time, under a new
sequence: the durable consumers drop it by their inbox, the views and the audit log by event id
(``seen``, ``audit.log.event_id``); each counts it as a duplicate.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import asyncpg
import msgspec
from nats.aio.client import Client

from shared import envelope as env
from shared.relay import Relay
from shared.store import _check
from shared.subjects import event_subject

#: The services with an events table.
RECORDING = ("registry", "checkpoint", "quarantine", "logistics")


class _Schema(msgspec.Struct):
    schema: int = 1


_schema = msgspec.json.Decoder(_Schema)


@dataclass
class Result:
    total: int
    published: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    first_position: int | None = None
    last_position: int | None = None
    #: Why it stopped before the end, and at which event (position, event id, subject).
    error: str | None = None
    stopped_at: dict = field(default_factory=dict)

    @property
    def stored(self) -> int:
        return self.published - self.duplicates

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds > 0 else 0.0


def _range(since: datetime, until: datetime | None) -> tuple[str, list]:
    if until is None:
        return "recorded_at >= $1", [since]
    return "recorded_at >= $1 AND recorded_at < $2", [since, until]


def subject_of(service: str, community: str, event_type: str, envelope: bytes) -> str:
    """The subject the relay published the event on (``shared.context``: the event's own service)."""
    try:
        owner = env.lookup(event_type, _schema.decode(envelope).schema).service
    except (env.UnknownEventType, msgspec.DecodeError):
        owner = service  # a type this code no longer knows: the service recorded it, it owns it
    return event_subject(community, owner, event_type)


async def count(conn: asyncpg.Connection, service: str, since: datetime, until: datetime | None) -> Result:
    where, args = _range(since, until)
    total, first, last = await conn.fetchrow(
        f"SELECT count(*), min(position), max(position) FROM {_check(service)}.events WHERE {where}", *args)
    return Result(total=total, first_position=first, last_position=last)


async def republish(conn: asyncpg.Connection, nc: Client, service: str, since: datetime,
                    until: datetime | None = None, *, batch: int = 1000,
                    progress: Callable[[int, int, float], None] | None = None) -> Result:
    """Publish the events ``service`` recorded in [since, until), in position order; stops at the
    first PubAck that is an error (``Result.error``: the rest is not published)."""
    s = _check(service)
    result = await count(conn, service, since, until)
    if not result.total:
        return result
    where, args = _range(since, until)
    n = len(args)
    query = (f"SELECT position, event_id::text AS event_id, type, community, envelope FROM {s}.events "
             f"WHERE position > ${n + 1} AND {where} ORDER BY position LIMIT ${n + 2}")
    publisher = Relay(service=service, pool=None, nc=nc, batch=batch)
    after, started = 0, time.monotonic()
    while True:
        rows = await conn.fetch(query, *args, after, batch)
        if not rows:
            break
        items = [{"position": r["position"], "event_id": r["event_id"], "envelope": r["envelope"],
                  "subject": subject_of(service, r["community"], r["type"], r["envelope"])} for r in rows]
        if not await publish_page(publisher, items, result, started, progress):
            break
        after = rows[-1]["position"]
    return result


async def publish_page(publisher: Relay, items: list[dict], result: Result, started: float,
                       progress: Callable[[int, int, float], None] | None = None) -> bool:
    """Publish ``items`` (``position``, ``event_id``, ``envelope``, ``subject``) in order with the
    relay's publisher and count them in ``result``; False, with ``result.error`` and
    ``result.stopped_at`` set, if a PubAck stopped it (the rest of the page is not published).
    ``cordon restore`` publishes a whole record this way too (:mod:`services.ops.restore`)."""
    before = publisher.duplicates
    acked, error = await publisher.publish(items)
    result.published += len(acked)
    result.duplicates += publisher.duplicates - before
    result.seconds = time.monotonic() - started
    if progress:
        progress(result.published, result.total, result.seconds)
    if error is None:
        return True
    stop = items[len(acked)]
    result.error = f"{type(error).__name__}: {error}"
    result.stopped_at = {k: stop[k] for k in ("position", "event_id", "subject")}
    return False
