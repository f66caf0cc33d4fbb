"""Hosting a service: its PostgreSQL pool and schema, NATS connections, command subscriber,
outbox relay, consumers and health. Each service's ``app.py`` describes itself with a
:class:`ServiceSpec`; :class:`ServiceHost` wires it, explicitly, in one place.
"""
from __future__ import annotations

import asyncio
import gc
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import asyncpg
import msgspec
import structlog
from faststream.nats import NatsBroker

import shared.contracts  # noqa: F401  (registers every public event type)
from shared import bus, store
from shared import envelope as env
from shared import log as logging
from shared.commands import CommandRuntime, Evolve, Handler, encode_error
from shared.config import Config
from shared.consumer import Consumer, Handle
from shared.errors import CommandError, Invalid, TooLarge, UnknownCommand
from shared.relay import Relay
from shared.tasks import cancel

log = logging.get("service")

HEALTH_FANOUT = "cordon.sys.health"


@dataclass(frozen=True)
class ConsumerSpec:
    name: str
    subjects: list[str]
    handle: Callable[["ServiceHost"], Handle]


@dataclass(frozen=True)
class PolicySpec:
    """A reaction to other services' events: a pure ``react(envelope, event)`` returns this
    service's own commands, run through the command runtime.

    ``react`` sees only the event: a reaction that needs to look something up (e.g. the
    households of a sealed building in the service's directory) is a :class:`ConsumerSpec` whose
    handle runs the look-up and then ``host.execute``. Commands must carry a deterministic
    ``command_id`` (e.g. ``f"{policy}:{event_id}"``) so that a
    redelivered or replayed event yields the stored reply and writes nothing new. A refusal
    (rejected, conflict, not_found, invalid) is final and logged; ``unavailable`` is retried.
    """

    name: str
    subjects: list[str]
    react: Callable[[env.RawEnvelope, env.Event], list[tuple[str, Any]]]


GC_THRESHOLD = 50_000


@dataclass(frozen=True)
class ServiceSpec:
    """What a service is: its name, commands, state evolution, extra tables and consumers."""

    name: str
    #: command name -> its wire type (documentation, AsyncAPI)
    commands: dict[str, type]
    #: command name -> parse(payload bytes) -> command struct (raises CommandError)
    parsers: dict[str, Callable[[bytes], Any]]
    handlers: dict[str, Handler]
    evolve: Evolve
    #: cmd -> streams it will read: loaded for the whole batch in one query
    prefetch: Callable[[Any], list[str]] | None = None
    #: async (conn, cmds, local) -> None: one look-up for the whole batch, results in ctx.local
    prepare_batch: Callable[[Any, list[Any], dict], Awaitable[None]] | None = None
    #: (cmd, now) -> cmd with the receive time and the ids it creates filled in, before the batch
    complete: Callable[[Any, Any], Any] | None = None
    extra_ddl: str = ""
    consumers: list[ConsumerSpec] = field(default_factory=list)
    policies: list[PolicySpec] = field(default_factory=list)
    #: query name -> async (host, payload) -> reply dict, answered on cordon.qry.<name>
    queries: dict[str, Callable[["ServiceHost", bytes], Awaitable[dict]]] = field(default_factory=dict)
    #: long-running tasks (e.g. a scheduler): async (host) -> None, cancelled at stop
    background: list[Callable[["ServiceHost"], Awaitable[None]]] = field(default_factory=list)
    #: command name -> writers of its own, one command per transaction (see CommandRuntime)
    lanes: dict[str, int] = field(default_factory=dict)


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
        self.tasks: list[asyncio.Task] = []
        self.cmd_nc = None
        self.cmd_sub = None
        self._inflight: set[asyncio.Task] = set()
        self._slots = asyncio.Semaphore(2048)
        #: The time commands are stamped with when they carry no occurred_at; tests inject one.
        self.clock = clock

    async def start(self) -> None:
        spec, config = self.spec, self.config
        # A batch keeps thousands of small objects alive until it commits; with the default
        # threshold (700) the collector walked them again and again: ~0.5 s of a 100,000-case sweep.
        # Cycles are rare here (reference counting frees the rest), so collect less often.
        gc.set_threshold(GC_THRESHOLD, 20, 20)
        self.pool = await asyncpg.create_pool(config.pg_dsn, min_size=2, max_size=config.pg_pool_max)
        async with self.pool.acquire() as conn:
            await store.migrate(conn, spec.name, spec.extra_ddl)
        self.nc = await bus.connect(config.nats_url, f"{spec.name}.relay")
        await bus.ensure_stream(self.nc.jetstream(), config.dedupe_window_s, config.stream_replicas)
        self.relay = Relay(service=spec.name, pool=self.pool, nc=self.nc)
        self.runtime = CommandRuntime(
            service=spec.name,
            pool=self.pool,
            handlers=spec.handlers,
            evolve=spec.evolve,
            prefetch=spec.prefetch,
            prepare_batch=spec.prepare_batch,
            batch_max=config.batch_max,
            on_commit=self.relay.wake,
            lanes=spec.lanes,
        )
        await self.runtime.start()
        await self.relay.start()
        handles = [(c.name, c.subjects, c.handle(self)) for c in spec.consumers]
        handles += [(p.name, p.subjects, self._policy_handle(p)) for p in spec.policies]
        for name, subjects, handle in handles:
            consumer = Consumer(name=name, schema=spec.name, subjects=subjects, handle=handle,
                                pool=self.pool, nc=self.nc, park_after=config.park_after)
            await consumer.start()
            self.consumers.append(consumer)
        for task in spec.background:
            self.tasks.append(asyncio.create_task(task(self), name=f"{spec.name}.{task.__name__}"))
        self.broker = self._build_broker()
        await self.broker.start()
        await self.broker._connection.flush()  # subscriptions reach the server before we say started
        # Commands, the hot path, on a plain nats-py subscription: through faststream the same
        # service sustained 1,700-1,900 commands/s, through this 5,000-5,400 (bench/backbone.py,
        # same run). Queries and health stay on faststream.
        self.cmd_nc = await bus.connect(config.nats_url, f"{spec.name}.commands")
        self.cmd_sub = await self.cmd_nc.subscribe(
            f"cordon.cmd.{spec.name}.>", queue=spec.name, cb=self._on_msg,
            pending_msgs_limit=100_000, pending_bytes_limit=256 * 1024 * 1024)
        log.info("service.started", service=spec.name, instance=self.instance)

    async def stop(self) -> None:
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
        log.info("service.stopped", service=self.spec.name)

    def _build_broker(self) -> NatsBroker:
        broker = NatsBroker(
            self.config.nats_url,
            apply_types=False,
            logger=None,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            name=f"{self.spec.name}.commands",
        )

        async def raw(msg):
            return msg.raw_message

        name = self.spec.name
        broker.subscriber(HEALTH_FANOUT, decoder=raw)(self.on_health_ping)
        broker.subscriber("cordon.qry.health", queue="health", decoder=raw)(self.on_health_query)
        for query in self.spec.queries:
            broker.subscriber(f"cordon.qry.{query}", queue=f"{name}.qry", decoder=raw,
                              max_workers=64)(self._query_handler(query))
        return broker

    async def on_command(self, raw) -> bytes:
        name = raw.subject[len(f"cordon.cmd.{self.spec.name}."):]
        structlog.contextvars.bind_contextvars(service=self.spec.name, command=name)
        try:
            parse = self.spec.parsers.get(name)
            if parse is None:
                raise UnknownCommand(
                    f"{self.spec.name} has no command {name!r}; it accepts: "
                    + ", ".join(sorted(self.spec.parsers)), field="subject")
            if len(raw.data) > self.config.max_payload:
                raise TooLarge(f"the payload is {len(raw.data)} bytes; the limit is "
                               f"{self.config.max_payload}")
            cmd = self._complete(parse(raw.data))
        except CommandError as err:
            log.info("command.refused", code=err.code, error=err.message)
            return encode_error(err)
        structlog.contextvars.bind_contextvars(
            command_id=cmd.command_id, correlation_id=cmd.correlation_id or cmd.command_id)
        return await self.runtime.execute(name, cmd)

    async def _on_msg(self, msg) -> None:
        # nats-py awaits one callback at a time: each command gets its own task so that commands
        # arriving together reach the runtime together (and commit together). The semaphore
        # bounds the work in flight; past it, messages wait in the subscription's queue.
        await self._slots.acquire()
        task = asyncio.create_task(self._serve(msg))
        self._inflight.add(task)
        task.add_done_callback(self._served)

    def _served(self, task: asyncio.Task) -> None:
        self._inflight.discard(task)
        self._slots.release()

    async def _serve(self, msg) -> None:
        try:
            reply = await self.on_command(msg)
        except Exception:  # a bug must still get the caller a reply
            log.exception("command.crashed", subject=msg.subject)
            reply = encode_error(CommandError("internal error; the command was not applied"))
        if msg.reply:
            try:
                await self.cmd_nc.publish(msg.reply, reply)
            except Exception as exc:  # NATS down: the caller times out; the record is intact
                log.warning("reply.lost", subject=msg.subject, error=str(exc))

    def _policy_handle(self, policy: PolicySpec) -> Handle:
        async def handle(conn, raw: env.RawEnvelope, event: env.Event) -> None:
            for name, cmd in policy.react(raw, event):
                reply = await self.execute(name, cmd)
                if reply["ok"]:
                    continue
                code = reply["error"]["code"]
                if code in ("unavailable", "internal"):
                    raise RuntimeError(f"policy {policy.name}: {name} failed: {reply['error']}")
                log.info("policy.refused", policy=policy.name, command=name, event_id=raw.event_id,
                         code=code, error=reply["error"]["message"])

        return handle

    def _complete(self, cmd: Any) -> Any:
        now = self.clock()
        if cmd.occurred_at is None:
            cmd = msgspec.structs.replace(cmd, occurred_at=now)
        return self.spec.complete(cmd, now) if self.spec.complete else cmd

    async def execute(self, name: str, cmd: Any) -> dict:
        """Run one of this service's own commands in process (policies, schedulers); the reply."""
        try:
            cmd = self._complete(cmd)
        except CommandError as err:
            return err.to_reply()
        return msgspec.json.decode(await self.runtime.execute(name, cmd))

    def _query_handler(self, query: str):
        handler = self.spec.queries[query]

        async def on_query(raw) -> bytes:
            try:
                if len(raw.data) > self.config.max_payload:
                    raise TooLarge("the query payload is too large")
                return env.encode(await handler(self, raw.data))
            except CommandError as err:
                return encode_error(err)

        return on_query

    async def status(self) -> dict:
        consumers = {}
        for c in self.consumers:
            consumers[c.name] = {"lag": await c.lag(), "applied": c.applied, "parked": c.parked,
                                 "last_error": c.last_error}
        return {
            "service": self.spec.name,
            "instance": self.instance,
            "outbox_depth": await self.relay.depth(),
            "committed": self.runtime.committed,
            "published": self.relay.published,
            "relay_error": self.relay.last_error,
            "consumers": consumers,
        }

    async def on_health_ping(self, raw) -> bytes:
        try:
            return env.encode({"ok": True, **await self.status()})
        except Exception as exc:  # PostgreSQL down: still say we are alive and what fails
            return env.encode({"ok": False, "service": self.spec.name, "instance": self.instance,
                               "error": f"{type(exc).__name__}: {exc}"})

    async def on_health_query(self, raw) -> bytes:
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
