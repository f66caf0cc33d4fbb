"""Hosting a service: its PostgreSQL pool and schema, NATS connections, command subscriber,
outbox relay, consumers and health. Each service's ``app.py`` describes itself with a
:class:`ServiceSpec`; :class:`ServiceHost` wires it, explicitly, in one place.
"""
from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Awaitable, Callable, Protocol

import asyncpg
import msgspec
import structlog
from faststream.nats import NatsBroker, NatsCredentials

from shared import access, bus, dead_letters, pgpool, store
from shared import envelope as env
from shared import log as logging
from shared.runtime import CommandRuntime, CommandSpec, encode_error
from shared.config import Config
from shared.consumer import Consumer, Handle, HandleMany
from shared.contracts import queries  # importing shared.contracts registers every public event type
from shared.errors import CommandError, Invalid, TooLarge, UnknownCommand
from shared import wire
from shared.metrics import ServiceMetrics
from shared.probes import ProbeServer
from shared.relay import Relay
from shared.subjects import HEALTH_FANOUT, command_filter, command_name, query_subject
from shared.tasks import cancel

log = logging.get("service")



#: apply(conn, schema, envelope, event): one event's effect on the copy's tables in ``schema``.
CopyApply = Callable[[asyncpg.Connection, str, env.RawEnvelope, env.Event], Awaitable[None]]


@dataclass(frozen=True)
class LocalCopy:
    """What a durable consumer keeps as a copy of another service's facts, declared so that
    ``cordon reconcile`` can check it: it creates ``tables`` with ``ddl(schema)`` in a scratch
    schema, replays there, through the same ``apply``, exactly the events the consumer's inbox says
    it applied, and compares the tables with the live ones row for row (see
    :mod:`services.ops.effects`). The consumer's handler must write these tables only through
    ``apply`` (with its service's schema), and nothing else may write them.
    """

    tables: tuple[str, ...]
    ddl: Callable[[str], str]
    apply: CopyApply


@dataclass(frozen=True)
class ConsumerSpec:
    name: str
    subjects: list[str]
    handle: Callable[["ServiceHost"], Handle]
    #: the local copy this consumer keeps, when it keeps one (checked by ``cordon reconcile``)
    copy: LocalCopy | None = None
    #: (host) -> a handle of a batch's new events at once, in stream order (a few set-based
    #: statements instead of one per event); ``handle`` still applies one event alone (the
    #: batch's fallback when it fails, dead letters' replay)
    handle_many: Callable[["ServiceHost"], HandleMany] | None = None


@dataclass(frozen=True)
class ReactionSpec:
    """A reaction to other services' events: a pure ``react(envelope, event)`` returns this
    service's own commands, run through the command runtime (a service's ``reactions.py``).

    ``react`` sees only the event: a reaction that needs to look something up (e.g. the
    households of a sealed building in the service's directory) is a :class:`ConsumerSpec` whose
    handle runs the look-up and then ``host.execute``. Commands must carry a deterministic
    ``command_id`` (e.g. ``f"{reaction}:{event_id}"``) so that a
    redelivered or replayed event yields the stored reply and writes nothing new. A refusal
    (rejected, conflict, not_found, invalid) is final and logged; ``unavailable`` is retried.
    """

    name: str
    subjects: list[str]
    react: Callable[[env.RawEnvelope, env.Event], list[tuple[str, Any]]]


class Follower(Protocol):
    """A long-running reader of the stream that is not a durable consumer (the views' projector,
    the audit appender): the host runs it and reports it on health like a consumer."""

    name: str
    applied: int
    parked: int
    last_error: str | None
    #: following the stream now (readiness, ``cordon_consumer_attached``)
    attached: bool

    async def lag(self) -> int | None: ...

    async def run(self) -> None: ...


GC_THRESHOLD = 50_000


@dataclass(frozen=True)
class ServiceSpec:
    """What a service is: its name, its commands (none for views and audit), extra tables,
    consumers, reactions, queries and background work."""

    name: str
    #: the command side; None for a service that only consumes (no relay, no command subjects)
    commands: CommandSpec | None = None
    extra_ddl: str = ""
    consumers: list[ConsumerSpec] = field(default_factory=list)
    reactions: list[ReactionSpec] = field(default_factory=list)
    #: query name -> async (host, payload, identity) -> reply dict, answered on cordon.qry.<name>;
    #: ``identity`` is who asks (None: from inside CORDON), already allowed the query and the
    #: community or scope its payload names (shared.access.check_query); a query that names no
    #: place (a resident, a volunteer) narrows its answer to what the identity reads
    queries: dict[str, Callable[["ServiceHost", bytes, Any], Awaitable[dict]]] = field(default_factory=dict)
    #: async (host) -> None, awaited at start once the service's tables exist, before it takes any
    #: command or event (e.g. the registry opens its key store): what commands need ready
    on_start: list[Callable[["ServiceHost"], Awaitable[None]]] = field(default_factory=list)
    #: long-running tasks (e.g. a scheduler): async (host) -> None, cancelled at stop
    background: list[Callable[["ServiceHost"], Awaitable[None]]] = field(default_factory=list)
    #: (host) -> a follower of the stream, run by the host and shown on health with the consumers
    followers: list[Callable[["ServiceHost"], Follower]] = field(default_factory=list)

    @property
    def command_types(self) -> dict[str, type]:
        """Command name -> wire type (none for a service without commands)."""
        return self.commands.types if self.commands else {}


class ServiceHost:
    def __init__(self, spec: ServiceSpec, config: Config, clock: Callable[[], Any] = env.utcnow):
        if not config.nats_url or not config.pg_dsn:
            raise ValueError("a service needs CORDON_NATS_URL and CORDON_PG_DSN")
        self.spec = spec
        self.config = config
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.pool: asyncpg.Pool | None = None
        self.nc = None
        self.broker: NatsBroker | None = None
        self.runtime: CommandRuntime | None = None
        self.relay: Relay | None = None
        self.consumers: list[Consumer] = []
        #: consumer name -> its handler (consumers and reactions): what a dead letter replays through
        self.handles: dict[str, Handle] = {}
        self.followers: list[Follower] = []
        self.tasks: list[asyncio.Task] = []
        self.cmd_nc = None
        self.cmd_sub = None
        self._inflight: set[asyncio.Task] = set()
        self._slots = asyncio.Semaphore(2048)
        #: The service's time: commands without occurred_at, schedulers, "today"; tests inject one.
        self.clock = clock
        #: Prometheus figures (shared.metrics), served with /livez and /readyz on the metrics port.
        self.metrics = ServiceMetrics(spec.name, frozenset(spec.commands.handlers) if spec.commands else frozenset())
        self.metrics.watch(self)
        self.probes: ProbeServer | None = None
        #: start() completed; stop() begun (readiness says so)
        self.started = False
        self.stopping = False

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            if self.probes:  # a process that could not start must not keep its port
                await self.probes.stop()
            raise

    async def _start(self) -> None:
        spec, config = self.spec, self.config
        # A batch keeps thousands of small objects alive until it commits; with the default
        # threshold (700) the collector walked them again and again: ~0.5 s of a 100,000-case sweep.
        # Cycles are rare here (reference counting frees the rest), so collect less often.
        gc.set_threshold(GC_THRESHOLD, 20, 20)
        if config.metrics_port:  # first: /livez answers while the rest starts (it may wait for servers)
            self.probes = ProbeServer(self)
            await self.probes.start(config.metrics_host, config.metrics_port)
        self.pool = await pgpool.create_pool(config.pg_dsn, min_size=2, max_size=config.pg_pool_max)
        async with self.pool.acquire() as conn:
            await store.migrate(conn, spec.name, spec.extra_ddl, record=spec.commands is not None,
                                consumers=bool(spec.consumers or spec.reactions))
        for hook in spec.on_start:
            await hook(self)
        self.nc = await bus.connect(config.nats_url, f"{spec.name}.relay", config.nats_creds)
        await bus.ensure_stream(self.nc.jetstream(), config.dedupe_window_s, config.stream_replicas)
        if spec.commands is not None:
            self.relay = Relay(service=spec.name, pool=self.pool, nc=self.nc)
            self.runtime = CommandRuntime(service=spec.name, pool=self.pool, spec=spec.commands,
                                          batch_max=config.batch_max, on_commit=self.relay.wake,
                                          clock=lambda: self.clock(),
                                          clock_skew=timedelta(seconds=config.clock_skew_s),
                                          backdate_limit=timedelta(days=config.backdate_days)
                                          if config.backdate_days else None)
            await self.runtime.start()
            await self.relay.start()
        handles = [(c.name, c.subjects, c.handle(self), c.handle_many and c.handle_many(self))
                   for c in spec.consumers]
        handles += [(r.name, r.subjects, self._reaction_handle(r), None) for r in spec.reactions]
        for name, subjects, handle, handle_many in handles:
            self.handles[name] = handle
            consumer = Consumer(name=name, schema=spec.name, subjects=subjects, handle=handle,
                                handle_many=handle_many, pool=self.pool, nc=self.nc, park_after=config.park_after)
            await consumer.start()
            self.consumers.append(consumer)
        for make in spec.followers:
            follower = make(self)
            self.followers.append(follower)
            self.tasks.append(asyncio.create_task(follower.run(), name=f"{spec.name}.{follower.name}"))
        for task in spec.background:
            self.tasks.append(asyncio.create_task(task(self), name=f"{spec.name}.{task.__name__}"))
        if spec.commands is not None:
            # Commands, the hot path, on a plain nats-py subscription: through faststream the same
            # service sustained 1,700-1,900 commands/s, through this 5,000-5,400 (bench/backbone.py,
            # same run). Queries and health stay on faststream.
            self.cmd_nc = await bus.connect(config.nats_url, f"{spec.name}.commands", config.nats_creds)
            self.cmd_sub = await self.cmd_nc.subscribe(
                command_filter(spec.name), queue=spec.name, cb=self._on_msg,
                pending_msgs_limit=100_000, pending_bytes_limit=256 * 1024 * 1024)
            # Started means answering: a request right after start must not meet "no responders".
            await self.cmd_nc.flush()
        # Health last: `cordon up` says ready when health answers, so by then the server must know
        # the command subscription (tests/integration/test_service_start.py).
        self.broker = self._build_broker()
        await self.broker.start()
        await self.broker._connection.flush()  # subscriptions reach the server before we say started
        self.started = True
        log.info("service.started", service=spec.name, instance=self.instance)

    async def stop(self) -> None:
        self.stopping = True  # not ready from now on; alive until the end
        if self.cmd_sub is not None:
            await self.cmd_sub.unsubscribe()  # take no more; finish what was taken
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=10)
        if self.cmd_nc is not None:
            await self.cmd_nc.close()
        if self.broker:
            await self.broker.stop()
        for task in self.tasks:
            await cancel(task)
        for consumer in self.consumers:
            await consumer.stop()
        if self.runtime:
            await self.runtime.stop()
        if self.relay:
            await self.relay.stop()
        if self.nc:
            await self.nc.drain()
        if self.pool:
            await self.pool.close()
        if self.probes:
            await self.probes.stop()
        log.info("service.stopped", service=self.spec.name)

    def nats_connections(self) -> dict:
        """This instance's NATS connections by what they carry (None: not made yet)."""
        connections = {"events": self.nc, "queries": self.broker._connection if self.broker else None}
        if self.spec.commands is not None:
            connections["commands"] = self.cmd_nc
        return connections

    def _build_broker(self) -> NatsBroker:
        broker = NatsBroker(
            bus.servers(self.config.nats_url),
            apply_types=False,
            logger=None,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            name=f"{self.spec.name}.commands",
            security=NatsCredentials(self.config.nats_creds) if self.config.nats_creds else None,
        )

        async def raw(msg):
            return msg.raw_message

        name = self.spec.name
        broker.subscriber(HEALTH_FANOUT, decoder=raw)(self.on_health_ping)
        broker.subscriber(query_subject("health"), queue="health", decoder=raw)(self.on_health_query)
        for query in self.spec.queries:
            broker.subscriber(query_subject(query), queue=f"{name}.qry", decoder=raw,
                              max_workers=64)(self._query_handler(query))
        if self.handles:  # one replay at a time per instance: dead letters go in the order asked
            broker.subscriber(dead_letters.replay_subject(name), queue=f"{name}.sys",
                              decoder=raw)(self.on_replay)
        return broker

    async def on_command(self, raw, name: str, community: str | None) -> bytes:
        """The reply to a command from the bus; ``name`` and ``community`` as its subject says."""
        structlog.contextvars.bind_contextvars(service=self.spec.name, command=name)
        commands = self.spec.commands
        try:
            identity = access.identity_of(raw.headers)
            if name not in commands.handlers:
                raise UnknownCommand(
                    f"{self.spec.name} has no command {name!r}; it accepts: "
                    + ", ".join(sorted(commands.handlers)), field="subject")
            if len(raw.data) > self.config.max_payload:
                raise TooLarge(f"the payload is {len(raw.data)} bytes; the limit is "
                               f"{self.config.max_payload}")
            community = access.scoped_community(community)
            access.check_command(identity, self.spec.name, name, community)
            cmd = self._decode(name, raw.data)
            access.check_payload(identity, community, cmd)
        except CommandError as err:
            log.info("command.refused", code=err.code, error=err.message)
            return encode_error(err)
        structlog.contextvars.bind_contextvars(
            command_id=cmd.command_id, correlation_id=cmd.correlation_id or cmd.command_id)
        caller = access.Caller(identity, community) if identity is not None or community is not None else None
        return await self.runtime.execute(name, cmd, caller=caller)

    def _decode(self, name: str, payload: bytes) -> Any:
        commands = self.spec.commands
        if commands.decode is not None:
            return commands.decode(name, payload)
        return wire.decode(self.spec.name, commands.types, name, payload)

    async def _on_msg(self, msg) -> None:
        # nats-py awaits one callback at a time: each command gets its own task so that commands
        # arriving together reach the runtime together (and commit together). The semaphore
        # bounds the work in flight; past it, messages wait in the subscription's queue.
        received = time.perf_counter()
        await self._slots.acquire()
        task = asyncio.create_task(self._serve(msg, received))
        self._inflight.add(task)
        task.add_done_callback(self._served)

    def _served(self, task: asyncio.Task) -> None:
        self._inflight.discard(task)
        self._slots.release()

    async def _serve(self, msg, received: float) -> None:
        name, community = command_name(self.spec.name, msg.subject)
        try:
            reply = await self.on_command(msg, name, community)
        except Exception:  # a bug must still get the caller a reply
            log.exception("command.crashed", subject=msg.subject)
            reply = encode_error(CommandError("internal error; the command was not applied"))
        if msg.reply:
            try:
                await self.cmd_nc.publish(msg.reply, reply)
            except Exception as exc:  # NATS down: the caller times out; the record is intact
                log.warning("reply.lost", subject=msg.subject, error=str(exc))
        self.metrics.command(name, reply, received)

    def _reaction_handle(self, reaction: ReactionSpec) -> Handle:
        async def handle(conn, raw: env.RawEnvelope, event: env.Event) -> None:
            for name, cmd in reaction.react(raw, event):
                reply = await self.execute(name, cmd)
                if reply["ok"]:
                    continue
                code = reply["error"]["code"]
                if code in ("unavailable", "internal"):
                    raise RuntimeError(f"reaction {reaction.name}: {name} failed: {reply['error']}")
                log.info("reaction.refused", reaction=reaction.name, command=name, event_id=raw.event_id,
                         code=code, error=reply["error"]["message"])

        return handle

    async def execute(self, name: str, cmd: Any) -> dict:
        """Run one of this service's own commands in process (reactions, schedulers); the reply.
        The runtime completes it as it does a command from the bus; its command_id is kept apart
        from callers' ids, so no caller can take it first."""
        return msgspec.json.decode(await self.runtime.execute(name, cmd, internal=True))

    def _query_handler(self, query: str):
        handler = self.spec.queries[query]

        async def on_query(raw) -> bytes:
            try:
                identity = access.identity_of(raw.headers)
                if len(raw.data) > self.config.max_payload:
                    raise TooLarge("the query payload is too large")
                access.check_query(identity, query, raw.data)
                return env.encode(await handler(self, raw.data, identity))
            except CommandError as err:
                return encode_error(err)
            except Exception:  # a caller waits for an answer: a bug answers `internal`, never silence
                log.exception("query.failed", service=self.spec.name, query=query)
                return encode_error(CommandError(f"the query {query} failed: a bug; report it with the "
                                                 "time it happened (the service logged it as query.failed)"))

        return on_query

    async def on_replay(self, raw) -> bytes:
        """``cordon.sys.<service>.replay`` {ids: [dead letter id, ...]}: apply each again through its
        consumer's handler (see :mod:`shared.dead_letters`); one result per id, in order."""
        try:
            ids = parse_json_object(raw.data).get("ids")
            if (not isinstance(ids, list) or not 1 <= len(ids) <= dead_letters.MAX_IDS
                    or not all(type(i) is int for i in ids)):
                raise Invalid(f"ids must be a list of 1 to {dead_letters.MAX_IDS} dead letter ids",
                              field="ids")
        except CommandError as err:
            return encode_error(err)
        results: list[dict] = []
        try:
            for letter_id in ids:
                result = await dead_letters.replay(self.pool, self.spec.name, self.handles, letter_id)
                log.info("dead_letter.replay", **result)
                results.append(result)
        except Exception as exc:  # PostgreSQL away: say how far it went
            code = "unavailable" if isinstance(exc, store.TRANSIENT) else "internal"
            return env.encode({"ok": False, "error": {"code": code, "message": f"{type(exc).__name__}: {exc}"},
                               "results": results})
        return env.encode({"ok": True, "results": results})

    async def status(self) -> dict:
        consumers = {}
        for c in [*self.consumers, *self.followers]:
            consumers[c.name] = {"lag": await c.lag(), "applied": c.applied, "parked": c.parked,
                                 "last_error": c.last_error, "standby": getattr(c, "standby", False)}
        status: dict = {"service": self.spec.name, "instance": self.instance}
        if self.relay is not None:
            status.update(outbox_depth=await self.relay.depth(), committed=self.runtime.committed,
                          published=self.relay.published, relay_error=self.relay.last_error)
        return {**status, "consumers": consumers}

    async def on_health_ping(self, raw) -> bytes:
        try:
            status = await self.status()
            problems = [p for f in self.followers if (p := getattr(f, "stream_reset", None))]
            return env.encode({"ok": not problems, **status, **({"problems": problems} if problems else {})})
        except Exception as exc:  # PostgreSQL down: still say we are alive and what fails
            return env.encode({"ok": False, "service": self.spec.name, "instance": self.instance,
                               "error": f"{type(exc).__name__}: {exc}"})

    async def on_health_query(self, raw) -> bytes:
        """``cordon.qry.health`` {}: every running instance's status (``HealthReply``)."""
        try:
            queries.decode("health", raw.data)
        except CommandError as err:
            return encode_error(err)
        return env.encode(await gather_health(self.broker._connection))


async def gather_health(nc, wait: float = 0.3) -> dict:
    """Ask every running service instance for its status; collect for ``wait`` seconds."""
    inbox = nc.new_inbox()
    replies: list[dict] = []
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(HEALTH_FANOUT, b"{}", reply=inbox)
        deadline = asyncio.get_running_loop().time() + wait
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except (asyncio.TimeoutError, Exception):
                break
            try:
                replies.append(msgspec.json.decode(msg.data))
            except msgspec.DecodeError:
                continue
    finally:
        await sub.unsubscribe()
    services: dict[str, list] = {}
    for reply in replies:
        services.setdefault(reply.get("service", "?"), []).append(reply)
    return {"ok": all(r.get("ok") for r in replies), "services": services}


def parse_json_object(payload: bytes) -> dict:
    """Decode a query payload that must be a JSON object, with a clear ``invalid`` otherwise."""
    try:
        value = msgspec.json.decode(payload) if payload else None
    except msgspec.DecodeError:
        raise Invalid("the payload is not JSON") from None
    if not isinstance(value, dict):
        raise Invalid("the payload must be a JSON object")
    return value
