"""What a command handler works with: :class:`Context` over one :class:`Batch` (a transaction's
cache of stream states), and the encoded replies. The runtime that runs batches is
:mod:`shared.runtime`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import asyncpg
import msgspec

from shared import envelope as env
from shared import store
from shared.access import Caller
from shared.errors import CommandError, Conflict
from shared.subjects import event_subject

Evolve = Callable[[Any, env.Event], Any]


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True):
    ok: bool = True
    stream_id: str | None = None
    version: int | None = None
    events: list[msgspec.Raw] = []
    extra: dict | None = None


_reply_encoder = msgspec.json.Encoder()


def encode_ok(reply: Reply) -> bytes:
    body = {"ok": True, "stream_id": reply.stream_id, "version": reply.version, "events": reply.events}
    if reply.extra:
        body.update(reply.extra)
    return _reply_encoder.encode(body)


def encode_error(err: CommandError) -> bytes:
    return _reply_encoder.encode(err.to_reply())


@dataclass
class Pending:
    """What one command's handler has added so far; written only if the command is accepted."""

    events: list[store.NewEvent] = field(default_factory=list)
    envelopes: list[msgspec.Raw] = field(default_factory=list)
    states: dict[str, tuple[Any, int]] = field(default_factory=dict)
    writes: list[tuple[str, tuple]] = field(default_factory=list)
    first_stream: str | None = None
    last_version: int | None = None
    extra: dict | None = None


class Context:
    """What a command handler sees: stream loads through the batch cache, appends, extra writes,
    the service's settings (``config``) and the batch's typed scratch (``scratch``)."""

    def __init__(self, batch: Batch, cmd: Any, caller: Caller | None = None):
        self._batch = batch
        self._cmd = cmd
        #: Who sent the command (None: one of the service's own, trusted): every record loaded and
        #: every event appended is checked against it, before anything of the command is kept.
        self._caller = caller
        #: The first refusal of those checks: it stands even if the handler catches it.
        self._refusal: CommandError | None = None
        #: What this command has added so far; the runtime commits it if the handler returns.
        self.pending = Pending()
        self.conn: asyncpg.Connection = batch.conn
        #: The service's settings (``CommandSpec.config``).
        self.config: Any = batch.config
        #: The batch's scratch object (``CommandSpec.scratch``): what earlier commands of the batch
        #: did that the tables do not show yet (an ID number claimed, a pass issued).
        self.scratch: Any = batch.scratch

    async def load(self, stream_id: str) -> tuple[Any, int]:
        """The state and version of a stream, including what earlier commands of the batch did."""
        if stream_id in self.pending.states:
            return self.pending.states[stream_id]
        loaded = await self._batch.load(stream_id)
        if self._caller is not None:
            self._check(self._caller.check_state, stream_id, loaded[0])
        return loaded

    async def state(self, stream_id: str) -> Any:
        """The state of a stream, as :meth:`load` gives it, without its version."""
        return (await self.load(stream_id))[0]

    def held(self, stream_id: str) -> tuple[Any, int] | None:
        """The state and version of a stream if the batch already holds it (loaded, or changed by
        an earlier command), else None — without a query. For handlers that can read a stream
        from a snapshot of their own when the batch has not loaded it."""
        if stream_id in self.pending.states:
            return self.pending.states[stream_id]
        held = self._batch.cache.get(stream_id)
        if held is not None and self._caller is not None:
            self._check(self._caller.check_state, stream_id, held[0])
        return held

    def vet(self, what: str, state: Any) -> Any:
        """``state``, read by the handler from a table of its own rather than through :meth:`load`
        (a directory's household, a snapshot's case), checked against the caller as ``load`` checks
        what it loads: another community's record is refused before the rules look at it."""
        if self._caller is not None and state is not None:
            self._check(self._caller.check_state, what, state)
        return state

    async def load_many(self, stream_ids: list[str]) -> list[tuple[Any, int]]:
        """Like :meth:`load` for many streams, with one query for those not loaded yet."""
        await self._batch.prefetch([s for s in stream_ids if s not in self.pending.states])
        return [await self.load(s) for s in stream_ids]

    async def expect(self, stream_id: str) -> tuple[Any, int]:
        """Load the command's target stream and check the caller's ``expected_version``.

        Call it before deciding, so a stale caller hears ``conflict`` rather than a domain error
        about a state it has not seen.
        """
        state, version = await self.load(stream_id)
        expected = getattr(self._cmd, "expected_version", None)
        if expected is not None and expected != version:
            raise Conflict(
                f"{stream_id} is at version {version}, not {expected}: reload and decide again",
                field="expected_version",
            )
        return state, version

    def append(self, stream_id: str, version: int, events: list[env.Event]) -> None:
        """Append events to a stream read at ``version``. Checks ``expected_version`` if given."""
        expected = getattr(self._cmd, "expected_version", None)
        if expected is not None and self.pending.first_stream is None and expected != version:
            raise Conflict(
                f"{stream_id} is at version {version}, not {expected}: reload and decide again",
                field="expected_version",
            )
        if self._caller is not None:
            for event in events:
                self._check(self._caller.check_event, event.community, type(event).__name__)
        state = self.pending.states.get(stream_id, (None, None))[0]
        if stream_id not in self.pending.states:
            state = self._batch.cached_state(stream_id)
        cmd = self._cmd
        for event in events:
            version += 1
            envelope = env.wrap(
                event,
                stream_id=stream_id,
                stream_version=version,
                occurred_at=cmd.occurred_at,
                actor=cmd.actor,
                correlation_id=getattr(cmd, "correlation_id", None) or cmd.command_id,
                causation_id=getattr(cmd, "causation_id", None) or cmd.command_id,
                recorded_at=self._batch.recorded_at,
            )
            payload = env.encode(envelope)
            self.pending.events.append(
                store.NewEvent(
                    event_id=envelope.event_id,
                    stream_id=stream_id,
                    version=version,
                    type=envelope.type,
                    community=envelope.community,
                    recorded_at=envelope.recorded_at,
                    envelope=payload,
                    subject=event_subject(event.community, type(event).service, envelope.type),
                )
            )
            self.pending.envelopes.append(msgspec.Raw(payload))
            state = self._batch.evolve(state, event)
        self.pending.states[stream_id] = (state, version)
        if self.pending.first_stream is None:
            self.pending.first_stream = stream_id
            self.pending.last_version = version
        elif stream_id == self.pending.first_stream:
            self.pending.last_version = version

    def _check(self, check: Callable[..., None], *args: Any) -> None:
        try:
            check(*args)
        except CommandError as err:
            self._refusal = self._refusal or err
            raise

    def check_caller(self) -> None:
        """After the handler returned: raise the caller's refusal if any check refused (a handler
        that caught it does not get the command through), and check every event it decided once
        more."""
        if self._refusal is not None:
            raise self._refusal
        if self._caller is not None:
            for event in self.pending.events:
                self._caller.check_event(event.community, event.type)

    def write(self, sql: str, *args: Any) -> None:
        """Run ``sql`` in the command's transaction, only if the command is accepted.

        The batch runs each distinct statement once, with ``executemany`` over every accepted
        command's arguments, in the order statements first appeared. So the order between two
        *different* statements holds within a command, not across commands: write one statement
        per table, or make statements independent of each other's order.
        """
        self.pending.writes.append((sql, args))

    def reply_with(self, **extra: Any) -> None:
        """Add fields to the success reply (e.g. checkpoint's ``decision``).

        They override the defaults: a bulk command whose envelopes would not fit in one NATS
        message replies ``events=[]`` with a count and a compact list of its own.
        """
        self.pending.extra = {**(self.pending.extra or {}), **extra}



class Batch:
    """One transaction's worth of commands: the connection, the stream states they have loaded or
    changed, the batch's scratch object and the service's settings."""

    def __init__(self, service: str, evolve: Evolve, conn: asyncpg.Connection, recorded_at: datetime,
                 scratch: Any = None, config: Any = None):
        self.service = service
        self.evolve = evolve
        self.conn = conn
        self.recorded_at = recorded_at
        self.cache: dict[str, tuple[Any, int]] = {}
        self.scratch = scratch
        self.config = config

    def cached_state(self, stream_id: str) -> Any:
        return self.cache.get(stream_id, (None, 0))[0]

    async def load(self, stream_id: str) -> tuple[Any, int]:
        if stream_id not in self.cache:
            await self.prefetch([stream_id])
        return self.cache[stream_id]

    async def prefetch(self, stream_ids: list[str]) -> None:
        missing = [s for s in dict.fromkeys(stream_ids) if s not in self.cache]
        if not missing:
            return
        for s in missing:
            self.cache[s] = (None, 0)
        for row in await store.load_streams(self.conn, self.service, missing):
            _, event = env.decode(row["envelope"])
            state, _ = self.cache[row["stream_id"]]
            self.cache[row["stream_id"]] = (self.evolve(state, event), row["version"])
