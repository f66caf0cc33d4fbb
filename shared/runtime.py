"""The command runtime: parse → load → decide → append, with group commit.

Commands that arrive together are decided one after another against a batch-wide cache of stream
states, then committed in ONE PostgreSQL transaction (events, outbox rows, replies, and any rows a
handler writes). A command that fails validation or a domain rule gets its error reply and writes
nothing; the others in the batch are unaffected. If another writer won a race on a stream, the
commands reading that stream are decided again alone and the rest of the batch goes again
together; when the culprit is unknown (a command id, a broken row), each command is retried in a
transaction of its own. Lanes (see :class:`CommandRuntime`) give bulk commands writers of their own.
"""
from __future__ import annotations

import asyncio
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable

import asyncpg
import msgspec

from shared import envelope as env
from shared import log as logging
from shared.tasks import cancel
from shared import pgpool, store
from shared import wire
from shared.access import Caller
from shared.context import Batch, Context, Evolve, Pending, Reply, encode_error, encode_ok
from shared.errors import CommandError, Conflict, Invalid, Unavailable

log = logging.get("commands")

Handler = Callable[[Any, Context], Awaitable[None]]
#: Another transaction got there first: decide again alone, then answer ``conflict``.
RACES = (asyncpg.UniqueViolationError, asyncpg.SerializationError, asyncpg.DeadlockDetectedError,
         asyncpg.LockNotAvailableError)
#: The stream a lost append names: "Key (stream_id, version)=(case:c-1, 1) already exists."
_TAKEN = re.compile(r"^Key \(stream_id, version\)=\((.*), \d+\) already exists")
UNREACHABLE = store.TRANSIENT
UNAVAILABLE = Unavailable("the record (PostgreSQL) is unreachable; retry with the same command_id")


@dataclass(frozen=True, kw_only=True)
class CommandSpec:
    """A command service's commands: how they are read, completed, decided and committed.

    Each command service builds one in its ``app.py`` from its rooms: ``commands.py`` (``types``,
    ``creates``, ``decode``, ``validate``), ``handlers.py`` (``handlers``, ``prefetch``,
    ``prepare_batch``, ``Scratch``), ``domain.py`` (``evolve``) and ``config.py`` (``config``).
    """

    #: command name -> its wire type (strict decoding, AsyncAPI)
    types: dict[str, type]
    #: command name -> ``async handler(cmd, ctx)``; ``cmd`` arrives completed
    handlers: dict[str, Handler]
    #: ``evolve(state, event) -> state`` of every stream the service writes
    evolve: Evolve
    #: (name, payload) -> decoded command, strictly, no rule checks (raises CommandError).
    #: Default: :func:`shared.wire.decode` over ``types``.
    decode: Callable[[str, bytes], Any] | None = None
    #: command -> command, the rules a decoder cannot check; runs once, after completion
    validate: Callable[[Any], Any] = wire.validate_common
    #: command type -> the id field it creates, filled with ``new_id()`` when the caller left it out
    creates: dict[type, str] = field(default_factory=dict)
    new_id: Callable[[], str] = env.new_id
    #: completed command -> streams it will surely read, loaded for the whole batch in one query
    prefetch: Callable[[Any], list[str]] | None = None
    #: ``async (conn, cmds, scratch)``: one look-up for the whole batch, kept in the scratch
    prepare_batch: Callable[[asyncpg.Connection, list[Any], Any], Awaitable[None]] | None = None
    #: a new per-batch scratch object (``ctx.scratch``): what earlier commands of a batch did that
    #: the record does not show yet (an ID number claimed, a pass issued, stock taken)
    scratch: Callable[[], Any] = lambda: None
    #: the service's settings (its ``config.py``), seen by handlers as ``ctx.config``
    config: Any = None
    #: command name -> writers of its own, one command per transaction (see CommandRuntime)
    lanes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, commands: Any, handlers: Any, domain: Any, config: Any, **instead: Any) -> "CommandSpec":
        """A command service's spec from its rooms, as the template names them: ``commands``
        (COMMANDS, CREATES, decode, validate), ``handlers`` (HANDLERS, prefetch, prepare_batch if
        any, Scratch), ``domain`` (evolve). ``instead`` replaces any field: a ``validate`` bound to
        the config, the ``lanes``."""
        rooms = dict(types=commands.COMMANDS, creates=commands.CREATES, decode=commands.decode,
                     validate=commands.validate, handlers=handlers.HANDLERS, evolve=domain.evolve,
                     prefetch=handlers.prefetch, prepare_batch=getattr(handlers, "prepare_batch", None),
                     scratch=handlers.Scratch, config=config)
        return cls(**{**rooms, **instead})


@dataclass
class _Item:
    name: str
    cmd: Any
    future: asyncio.Future
    #: The command's key in the ``commands`` table: its command_id, or for Cordon's own commands
    #: (reactions, schedulers) ``system:`` + command_id, a key no caller can send.
    key: str = ""
    #: What the command said (name and payload as received, before completion): the same
    #: command_id with another command, payload or actor is refused. None for Cordon's own.
    fingerprint: bytes | None = None
    #: Who sent it (identity and scoped subject); None for Cordon's own commands and for callers
    #: from inside the CORDON account with nothing to check.
    caller: Caller | None = None


#: Command ids of Cordon's own commands are stored under this prefix; callers may not use it.
SYSTEM_PREFIX = "system:"
_fingerprint_encoder = msgspec.json.Encoder()


def fingerprint(name: str, cmd: Any) -> bytes:
    """A digest of what a command says: its name and every field as received."""
    return hashlib.sha256(name.encode() + b"\0" + _fingerprint_encoder.encode(cmd)).digest()


def _reused(item: _Item) -> bytes:
    return encode_error(Conflict(
        f"command_id {item.cmd.command_id!r} was already used for another command (another command, "
        "payload or actor); the same command_id only repeats the same command: send a new one",
        field="command_id"))


def _without(items: list[_Item], some: list[_Item]) -> list[_Item]:
    gone = {id(i) for i in some}
    return [i for i in items if id(i) not in gone]


def _answer(items: list[_Item], reply: bytes) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_result(reply)


def _stored_reply(item: _Item, stored) -> bytes:
    """The first reply to this command_id, if this is the same command again."""
    said = stored["fingerprint"]
    if said is not None and item.fingerprint is not None and bytes(said) != item.fingerprint:
        return _reused(item)  # (None: Cordon's own command, or a reply stored before fingerprints)
    return bytes(stored["reply"])


class CommandRuntime:
    """Runs a service's commands with group commit: one writer task per process, plus the writers
    of any *lanes*.

    A lane (``lanes={"record_missed_checkins": 2}``) gives a command writers of its own that take
    one command per transaction, so one lane command is decided while another commits. They run
    beside the main writer exactly as another replica of the service would (each batch its own
    transaction; a lost race is decided again), so a lane is safe wherever replicas are. Meant for
    bulk commands over disjoint streams, such as the scheduler's chunks of cases.

    Staff's commands keep priority: a main-writer command reading a stream a lane is writing is
    set aside (with any later command sharing its streams) and run, in order, once the lane is
    done, instead of waiting inside PostgreSQL on the lane's uncommitted rows; and a lane waits at
    most ``lane_lock_timeout`` for a lock before its command is decided again, alone.
    """

    def __init__(
        self,
        *,
        service: str,
        pool: asyncpg.Pool,
        spec: CommandSpec,
        batch_max: int = 256,
        on_commit: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = env.utcnow,
        clock_skew: timedelta = timedelta(minutes=5),
        backdate_limit: timedelta | None = None,
    ):
        self.service = service
        self.pool = pool
        self.spec = spec
        self.handlers = spec.handlers
        self.evolve = spec.evolve
        self.prefetch = spec.prefetch
        self.prepare_batch = spec.prepare_batch
        self.batch_max = batch_max
        self.on_commit = on_commit
        #: The time commands are stamped with when they carry no occurred_at; tests inject one.
        self.clock = clock
        #: How far ahead of ``clock`` a caller's occurred_at may be, and how far behind (None: any).
        self.clock_skew = clock_skew
        self.backdate_limit = backdate_limit
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.lanes = dict(spec.lanes)
        self._lane_queue: asyncio.Queue[_Item] = asyncio.Queue()
        #: A lane waits this long for a lock before it gives way (its command is then decided
        #: again, alone). Lanes take their rows in stream order and the main writer in arrival
        #: order, so the two can deadlock; PostgreSQL would notice only after deadlock_timeout
        #: (1 s), holding the staff's commands of the main writer that long.
        self.lane_lock_timeout = "100ms"
        self._tasks: list[asyncio.Task] = []
        self.committed = 0
        # Streams lanes are writing, and streams of main commands set aside until they are free:
        # a main command never waits inside PostgreSQL on a lane's uncommitted rows.
        self._lane_streams: Counter[str] = Counter()
        self._deferred_streams: Counter[str] = Counter()
        self._deferred: asyncio.Queue[list[_Item]] = asyncio.Queue()
        self._lanes_moved = asyncio.Condition()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._writer(self._queue, self.batch_max), name=f"{self.service}.writer")]
        self._tasks += [asyncio.create_task(self._writer(self._lane_queue, 1, self.lane_lock_timeout),
                                            name=f"{self.service}.lane-{name}-{i}")
                        for name, writers in self.lanes.items() for i in range(writers)]
        if self.lanes:
            self._tasks.append(asyncio.create_task(self._deferred_writer(), name=f"{self.service}.deferred"))

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel(task)
        self._tasks = []
        for queue in (self._queue, self._lane_queue, self._deferred):
            while not queue.empty():
                got = queue.get_nowait()
                _answer(got if isinstance(got, list) else [got], encode_error(Unavailable("the service is stopping; retry")))

    async def execute(self, name: str, cmd: Any, *, internal: bool = False, caller: Caller | None = None) -> bytes:
        """Complete a decoded command (:meth:`complete`) and queue it; returns the encoded reply
        once committed (or refused). ``internal``: one of the service's own commands (a
        reaction's, a scheduler's), whose command_id lives apart from every caller's. ``caller``:
        who sent it (:class:`shared.access.Caller`); an event it may not record makes the command
        ``forbidden`` and nothing of it is written (nor its reply: the command_id stays free)."""
        if not self._tasks:
            raise RuntimeError("CommandRuntime.start() first")
        if not internal and getattr(cmd, "command_id", "").startswith(SYSTEM_PREFIX):
            return encode_error(Invalid(f"command_id must not start with {SYSTEM_PREFIX!r}: it is kept for "
                                        "Cordon's own commands", field="command_id"))
        # Cordon's own ids name one action however often it is sent (a sweep resent after a
        # restart carries a later occurred_at): only callers' commands are held to their payload.
        said = None if internal else fingerprint(name, cmd)
        try:
            cmd = self.complete(cmd, internal=internal)
        except CommandError as err:
            log.info("command.refused", code=err.code, error=err.message)
            return encode_error(err)
        future = asyncio.get_running_loop().create_future()
        key = SYSTEM_PREFIX + cmd.command_id if internal else cmd.command_id
        item = _Item(name, cmd, future, key, said, None if internal else caller)
        (self._lane_queue if name in self.lanes else self._queue).put_nowait(item)
        return await future

    def complete(self, cmd: Any, *, internal: bool = False) -> Any:
        """The command as handlers see it: ``occurred_at`` (the receive time when absent) and the
        id it creates (``CommandSpec.creates``) filled in, then validated. Done once, before the
        batch, so that ``prefetch`` covers the created streams and every handler reads a
        completed command.

        The service's clock is the authority on time: a caller's ``occurred_at`` may not lie ahead
        of it by more than ``clock_skew`` (a future-dated release would end a quarantine early),
        nor behind by more than ``backdate_limit`` (None: no limit). Cordon's own commands carry
        the time of the event they react to, checked when that event's command came in.
        """
        if not internal and cmd.occurred_at is not None:
            self._check_time(cmd.occurred_at)
        return self.spec.validate(wire.complete(cmd, now=self.clock, new_id=self.spec.new_id,
                                                creates=self.spec.creates))

    def _check_time(self, occurred_at: datetime) -> None:
        if occurred_at.utcoffset() is None:
            return  # validate says what is wrong with it
        now = self.clock()
        if occurred_at - now > self.clock_skew:
            raise Invalid(f"occurred_at {occurred_at.isoformat()} is in the future: the service's clock says "
                          f"{now.isoformat()}; send when it happened, or leave occurred_at out",
                          field="occurred_at")
        if self.backdate_limit is not None and now - occurred_at > self.backdate_limit:
            raise Invalid(f"occurred_at {occurred_at.isoformat()} is more than {self.backdate_limit.days} days ago "
                          "(CORDON_BACKDATE_DAYS): record it with a note instead, or ask the operator",
                          field="occurred_at")

    async def _writer(self, queue: asyncio.Queue, batch_max: int, lock_timeout: str | None = None) -> None:
        while True:
            items = [await queue.get()]
            while len(items) < batch_max and not queue.empty():
                items.append(queue.get_nowait())
            if lock_timeout is not None:
                await self._answered(items, self._run_lane(items, lock_timeout))
            elif items := self._defer_blocked(items):
                await self._answered(items, self._run_batch(items))

    async def _answered(self, items: list[_Item], work: Awaitable[None]) -> None:
        """Run ``work`` for ``items``; whatever happens, every caller gets a reply."""
        try:
            await work
        except asyncio.CancelledError:
            _answer(items, encode_error(Unavailable("the service is stopping; retry")))
            raise
        except Exception:  # a bug must not kill a writer
            log.exception("batch.failed", size=len(items))
            _answer(items, encode_error(CommandError("internal error; the command was not applied")))

    def _streams(self, items: list[_Item]) -> Counter[str]:
        return Counter(s for i in items for s in set(self.prefetch(i.cmd))) if self.prefetch else Counter()

    async def _run_lane(self, items: list[_Item], lock_timeout: str) -> None:
        streams = self._streams(items)
        self._lane_streams += streams
        try:
            await self._run_batch(items, lock_timeout)
        finally:
            self._lane_streams -= streams
            async with self._lanes_moved:
                self._lanes_moved.notify_all()

    def _defer_blocked(self, items: list[_Item]) -> list[_Item]:
        """Set aside the commands reading a stream a lane is writing (or that an earlier command
        set aside reads); the deferred writer runs them, in order, once the lanes let go."""
        if not self.prefetch or not (self._lane_streams or self._deferred_streams):
            return items
        blocked = self._sharing(items, set(self._lane_streams) | set(self._deferred_streams))
        if not blocked:
            return items
        self._deferred_streams += self._streams(blocked)
        self._deferred.put_nowait(blocked)
        return _without(items, blocked)

    async def _deferred_writer(self) -> None:
        while True:
            items = await self._deferred.get()
            streams = self._streams(items)
            try:
                await self._answered(items, self._run_when_free(items, streams))
            finally:
                self._deferred_streams -= streams

    async def _run_when_free(self, items: list[_Item], streams: Counter[str]) -> None:
        try:
            async with asyncio.timeout(10.0), self._lanes_moved:  # a lane chunk takes ~0.1 s
                await self._lanes_moved.wait_for(lambda: not streams.keys() & self._lane_streams.keys())
        except TimeoutError:
            pass  # go anyway: PostgreSQL orders it, the race logic answers
        await self._run_batch(items)

    async def _run_batch(self, items: list[_Item], lock_timeout: str | None = None) -> None:
        pending, aside, replies = list(items), [], {}
        try:
            for attempt in range(4):
                try:
                    replies.update(await self._attempt(pending, lock_timeout if attempt == 0 else None))
                    pending = []
                    break
                except RACES as exc:
                    # Another writer committed first; its rows are visible now. The command that
                    # met them (and any sharing its streams) is decided alone afterwards; the rest
                    # go again as a batch, rather than one by one (a batch of check-ins that met
                    # the scheduler's lanes took ~60 ms a command that way).
                    culprits = self._culprits(pending, exc)
                    aside += culprits
                    pending = _without(pending, culprits)
                    if not pending:
                        break
        except UNREACHABLE as exc:
            log.warning("batch.unavailable", error=str(exc))
            replies.update({id(i): encode_error(UNAVAILABLE) for i in pending + aside})
            pending, aside = [], []
        except Exception as exc:
            # One command's rows broke the batch: decide each command again, alone, so only the
            # culprit fails.
            log.warning("batch.split", size=len(pending), error=f"{type(exc).__name__}: {exc}")
        order = {id(item): n for n, item in enumerate(items)}
        for item in sorted(pending + aside, key=lambda i: order[id(i)]):
            replies[id(item)] = await self._alone(item)
        self._resolve(items, replies)

    def _culprits(self, items: list[_Item], exc: Exception) -> list[_Item]:
        """The commands of a batch that lost a race: those reading the stream the unique
        violation names, and those sharing a stream with them. All of them when unknown."""
        found = _TAKEN.search(getattr(exc, "detail", None) or "")
        if not found or self.prefetch is None:
            return list(items)
        return self._sharing(items, {found.group(1)}) or list(items)

    def _sharing(self, items: list[_Item], streams: set[str]) -> list[_Item]:
        """The commands reading any of ``streams``, and those sharing a stream with them."""
        hit = [i for i in items if streams.intersection(self.prefetch(i.cmd))]
        if not hit:
            return []
        streams = streams | {s for i in hit for s in self.prefetch(i.cmd)}
        return [i for i in items if streams.intersection(self.prefetch(i.cmd))]

    async def _alone(self, item: _Item) -> bytes:
        # A lost race is decided again: the winner's rows are visible now, so the domain answers
        # (e.g. "already open") instead of a bare conflict. Only a race lost three times running
        # is answered `conflict`.
        for attempt in range(3):
            try:
                return (await self._attempt([item]))[id(item)]
            except RACES as exc:
                if attempt == 2:
                    return await self._race_reply(item, exc)
            except UNREACHABLE:
                return encode_error(UNAVAILABLE)
            except CommandError as err:  # from prepare_batch (e.g. the registry's key store is down): its own code
                return encode_error(err)
            except Exception:
                log.exception("command.failed", command=item.name, command_id=item.cmd.command_id)
                return encode_error(CommandError("internal error; the command was not applied"))
        raise AssertionError("unreachable")

    async def _race_reply(self, item: _Item, exc: Exception) -> bytes:
        async with self.pool.acquire() as conn:
            stored = await conn.fetchrow(
                f"SELECT reply, fingerprint FROM {self.service}.commands WHERE command_id = $1", item.key
            )
        if stored is not None:
            return _stored_reply(item, stored)
        return encode_error(Conflict(f"another command changed the same record at the same time; "
                                     f"retry ({getattr(exc, 'constraint_name', '')})"))

    async def _attempt(self, items: list[_Item], lock_timeout: str | None = None) -> dict[int, bytes]:
        replies: dict[int, bytes] = {}
        accepted: list[tuple[_Item, Pending, bytes]] = []
        async with pgpool.stateless(self.pool) as conn:
            async with conn.transaction():
                if lock_timeout:
                    await conn.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
                await self._decide(conn, items, replies, accepted)
            # Committed: answer now, not after the pool's reset round trip on release.
            self._resolve(items, replies)
        if accepted:
            self.committed += len(accepted)
            if self.on_commit:
                self.on_commit()
        return replies

    @staticmethod
    def _resolve(items: list[_Item], replies: dict[int, bytes]) -> None:
        for item in items:
            if id(item) in replies and not item.future.done():
                item.future.set_result(replies[id(item)])

    async def _decide(self, conn, items: list[_Item], replies: dict, accepted: list) -> None:
        batch = Batch(self.service, self.evolve, conn, env.utcnow(), self.spec.scratch(), self.spec.config)
        keys = list({i.key for i in items})
        seen = {
            r["command_id"]: r
            for r in await conn.fetch(
                f"SELECT command_id, reply, fingerprint FROM {self.service}.commands WHERE command_id = ANY($1)",
                keys)
        }
        fresh = [i.cmd for i in items if i.key not in seen]
        if self.prefetch:
            await batch.prefetch([s for cmd in fresh for s in self.prefetch(cmd)])
        if self.prepare_batch and fresh:
            await self.prepare_batch(conn, fresh, batch.scratch)
        for item in items:
            if item.key in seen:
                replies[id(item)] = _stored_reply(item, seen[item.key])
                continue
            ctx = Context(batch, item.cmd, item.caller)
            try:
                await self.handlers[item.name](item.cmd, ctx)
                ctx.check_caller()
            except CommandError as err:
                replies[id(item)] = encode_error(err)
                continue
            pending = ctx.pending
            batch.cache.update(pending.states)
            reply = encode_ok(Reply(stream_id=pending.first_stream, version=pending.last_version,
                                    events=pending.envelopes, extra=pending.extra))
            seen[item.key] = {"reply": reply, "fingerprint": item.fingerprint}
            replies[id(item)] = reply
            accepted.append((item, pending, reply))
        if accepted:
            await self._commit(conn, batch, accepted)

    async def _commit(self, conn, batch: Batch, accepted) -> None:
        events = [e for _, p, _ in accepted for e in p.events]
        replies = [(i.key, i.name, r, batch.recorded_at, i.fingerprint) for i, _, r in accepted]
        await store.append(conn, self.service, events, replies)
        writes: dict[str, list[tuple]] = {}
        for _, pending, _ in accepted:
            for sql, args in pending.writes:
                writes.setdefault(sql, []).append(args)
        for sql, rows in writes.items():
            await conn.executemany(sql, rows)
