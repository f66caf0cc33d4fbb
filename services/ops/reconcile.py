"""`cordon reconcile`: does the stream say what the record says, and do the effects?

For each service that records events, its ``events`` table (the record) is compared with what the
``CORDON`` stream holds on that service's subjects: every recorded event published once (those
still in the outbox are only *pending*), nothing on the stream the record does not know, and each
stream's events in version order. Every durable consumer must hold in its inbox (applied or
parked) each event of its subjects up to the sequence it acknowledged, and the audit log every
event of the stream once. Then the effects: each local copy a consumer keeps is compared with a
replay of the events it applied (:mod:`services.ops.effects`), and the views with a shadow
generation built to the same position (:mod:`services.ops.shadow`). Each difference is printed;
the exit code is 0 only when there is none.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import tzinfo
from functools import partial
from typing import Callable

import asyncpg
import msgspec
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.ops import effects, scratch, shadow
from shared.subjects import EVENTS_ROOT, STREAM

RECORDING = ("registry", "checkpoint", "quarantine", "logistics")
#: What ``--service`` may name: the services that record events, and the views.
CHECKED = RECORDING + ("views",)


class _Head(msgspec.Struct):
    event_id: str
    stream_id: str
    stream_version: int


_head = msgspec.json.Decoder(_Head)


@dataclass
class Report:
    """Differences found, by what they are about; empty lists when all agrees."""

    checked: Counter = field(default_factory=Counter)
    pending: Counter = field(default_factory=Counter)
    differences: list[str] = field(default_factory=list)
    #: one summary line per effect check (a copy, the views)
    effects: list[str] = field(default_factory=list)
    #: what could not be checked, and why (not differences)
    notes: list[str] = field(default_factory=list)


async def stream_events(nc: Client, subject: str = f"{EVENTS_ROOT}.>", batch: int = 1000,
                        progress: Callable[[int, int], None] | None = None) -> list[tuple[int, str, _Head]]:
    """Every message of the stream on ``subject``: (sequence, subject, envelope head), in order;
    ``progress(read, last sequence)`` after each batch."""
    js = nc.jetstream()
    info = await js.stream_info(STREAM)
    last = info.state.last_seq
    out: list[tuple[int, str, _Head]] = []
    if info.state.messages == 0:
        return out
    sub = await js.pull_subscribe(subject, stream=STREAM, config=ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=30.0))
    try:
        while not out or out[-1][0] < last:
            try:
                msgs = await sub.fetch(batch, timeout=1.0)
            except asyncio.TimeoutError:
                break  # nothing more on this subject up to the end
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                try:
                    out.append((seq, msg.subject, _head.decode(msg.data)))
                except msgspec.DecodeError:
                    out.append((seq, msg.subject, _Head(event_id="", stream_id="", stream_version=0)))
            if progress:
                progress(len(out), last)
    finally:
        await sub.unsubscribe()
    return out


async def reconcile(conn: asyncpg.Connection, nc: Client, services=CHECKED, *, pool: asyncpg.Pool | None = None,
                    zone: tzinfo | None = None, progress: effects.Progress | None = None) -> Report:
    """Everything above, for ``services`` (the views' effects are checked when ``views`` is one of
    them and a ``pool`` is given: the shadow generation is written through it, in the city's
    ``zone``)."""
    report = Report()
    # The record is read before the stream, so that on a Cordon at work an event it holds and no
    # longer counts as pending has been published by the time the stream is read; and only what
    # the stream held before the record was read must be in the record (what came after may be
    # newer than the record as read).
    known = (await nc.jetstream().stream_info(STREAM)).state.last_seq
    records = {}
    for service in services:
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{service}.events"):
            continue
        recorded = {r["event_id"]: (r["stream_id"], r["version"]) for r in await conn.fetch(
            f"SELECT event_id::text, stream_id, version FROM {service}.events")}
        pending = {r[0] for r in await conn.fetch(
            f"SELECT e.event_id::text FROM {service}.outbox o JOIN {service}.events e USING (position)")}
        records[service] = recorded, pending
    on_stream = await stream_events(nc)
    for service, (recorded, pending) in records.items():
        mine = [(seq, head) for seq, subject, head in on_stream if subject.split(".")[5] == service]
        report.checked[service] = len(recorded)
        report.pending[service] = len(pending)
        _compare(service, recorded, pending, mine, report.differences, known)
    await _consumers(conn, nc, on_stream, report)
    if await conn.fetchval("SELECT to_regclass('audit.log') IS NOT NULL"):
        await _audit(conn, on_stream, report)
    await _effects(conn, nc, services, pool, zone, progress, report)
    return report


async def _audit(conn: asyncpg.Connection, on_stream: list, report: Report) -> None:
    """The audit log holds each message of the stream once, up to where it has got (its ``hwm``,
    read with the log in one snapshot): beyond it the log has simply not caught up yet."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        upto = await conn.fetchval("SELECT hwm FROM audit.head")
        logged = Counter(r[0] for r in await conn.fetch("SELECT event_id::text FROM audit.log"))
    report.checked["audit"] = sum(logged.values())
    for seq, _, head in on_stream:
        if seq <= upto and logged[head.event_id] != 1:
            report.differences.append(f"audit: event {head.event_id} (stream sequence {seq}) is in the log "
                                      f"{logged[head.event_id]} times, not once")


async def _effects(conn, nc, services, pool, zone, progress, report: Report) -> None:
    for name in await scratch.sweep(conn):
        report.notes.append(f"dropped {name}, left behind by a reconcile that did not finish")
    checks = [(f"copy {c.name}", partial(effects.check_copy, conn, nc, schema, c, progress))
              for schema, c in effects.copy_consumers(services)]
    if "views" in services and pool is not None:
        from shared.config import city_zone

        checks.append(("views", partial(shadow.check_views, conn, pool, nc, zone or city_zone(), progress)))
    for what, check in checks:
        try:
            outcome = await check()
        except Exception as exc:  # this check only: the others still run
            report.differences.append(f"{what}: could not be checked: {type(exc).__name__}: {exc}")
            continue
        if outcome is not None:
            report.effects.append(outcome.summary)
            report.differences.extend(outcome.differences)
            report.notes.extend(outcome.notes)


def _compare(service: str, recorded: dict, pending: set, mine: list, differences: list[str],
             known: int | None = None) -> None:
    """``recorded`` (event id -> stream id, version) against ``mine``, the stream's messages of the
    service; the stream beyond sequence ``known`` may hold events recorded after ``recorded`` was
    read."""
    seen = Counter(head.event_id for _, head in mine)
    for event_id, (stream_id, version) in recorded.items():
        if event_id not in pending and seen[event_id] == 0:
            differences.append(f"{service}: event {event_id} ({stream_id} v{version}) is recorded but not on "
                               "the stream (cordon republish puts it back)")
    reported, last = set(), {}
    for seq, head in mine:
        if head.event_id not in recorded:
            if known is not None and seq > known:
                continue  # recorded since the record was read, perhaps
            differences.append(f"{service}: stream sequence {seq} ({head.event_id or 'undecodable'}) is not in "
                               "the record")
            continue
        if head.event_id in reported:
            continue  # a copy: said once below, and not an order question
        reported.add(head.event_id)
        if seen[head.event_id] > 1:
            differences.append(f"{service}: event {head.event_id} is on the stream {seen[head.event_id]} times "
                               "(consumers drop the copies by id)")
        if head.stream_version <= last.get(head.stream_id, 0):
            differences.append(f"{service}: {head.stream_id} v{head.stream_version} (sequence {seq}) comes after "
                               f"v{last[head.stream_id]} on the stream")
        last[head.stream_id] = max(head.stream_version, last.get(head.stream_id, 0))


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` the rest."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(want) == len(got)


async def _consumers(conn: asyncpg.Connection, nc: Client, on_stream: list, report: Report) -> None:
    """Each service's durable consumers (named ``<schema>-…``): what they acknowledged is in their inbox."""
    for info in await nc.jetstream().consumers_info(STREAM):
        name, config = info.name, info.config
        schema = name.split("-", 1)[0]
        if not config.durable_name or not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.inbox"):
            continue
        subjects = config.filter_subjects or ([config.filter_subject] if config.filter_subject else [">"])
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        held = {r[0] for r in await conn.fetch(
            f"SELECT event_id::text FROM {schema}.inbox WHERE consumer = $1", name)}
        expected = [(seq, head) for seq, subject, head in on_stream
                    if seq <= floor and any(matches(p, subject) for p in subjects)]
        report.checked[f"consumer {name}"] = len(expected)
        for seq, head in expected:
            if head.event_id and head.event_id not in held:
                report.differences.append(f"consumer {name}: acknowledged stream sequence {seq} ({head.event_id}) "
                                          "but its inbox does not hold it: its effect is missing")
