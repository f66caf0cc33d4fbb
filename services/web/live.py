"""The live part of the board: one JetStream consumer per gateway process, fanned out to the open
pages.

Every page could have a consumer of its own, but a consumer is state on the server for each open
tab, and a CITY identity's JWT allows exactly one (its feed). So the gateway pulls the whole event
stream once, on its own connection (account CORDON), and tells each open page whose identity
*reads* the event's community that something changed. The page then asks its board again *as its
identity* (services/web/board.py): what anyone sees is still decided by the bus and the services;
the hub only says when to look, and what it passes on is a stream sequence and an event type.

The consumer is a durable one named ``web-live-<random>`` (one per process: two gateways must not
share deliveries), delivering only new events, with no acknowledgements (a page that misses one is
refreshed by the next, and a gap or a reconnect refreshes every page), kept in memory, and dropped
by the server an hour after the process stops pulling it (``inactive_threshold``).
"""
from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from shared import log as logging
from shared.identity import Identity
from shared.pull import ConsumerGone, Interrupted, Puller
from shared.subjects import STREAM

log = logging.get("web.live")

#: Seconds the server keeps the consumer of a gateway that stopped pulling.
INACTIVE_S = 3600.0
#: The subjects of every event (``cordon.evt.<district>.<street>.<committee>.<service>.<Type>``).
EVENTS = "cordon.evt.>"


@dataclass(eq=False)
class Page:
    """One open live page: who looks at it, and what it was told since it last refreshed."""

    identity: Identity
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: The newest stream sequence the page was told of (0: none yet).
    seq: int = 0
    #: Event type -> the newest sequence of that type told since the last :meth:`take`.
    types: dict[str, int] = field(default_factory=dict)

    def tell(self, seq: int, types: dict[str, int]) -> None:
        self.seq = max(self.seq, seq)
        for kind, n in types.items():
            self.types[kind] = max(self.types.get(kind, 0), n)
        self.wake.set()

    def take(self) -> tuple[int, dict[str, int]]:
        """What to refresh for, and forget it: ``(newest sequence, {type: newest sequence})``."""
        self.wake.clear()
        types, self.types = self.types, {}
        return self.seq, types


def community_of(subject: str) -> str | None:
    """``cordon.evt.d.s.c.service.Type`` -> ``d.s.c``."""
    parts = subject.split(".")
    return ".".join(parts[2:5]) if len(parts) >= 7 else None


class Hub:
    """The process's live consumer and its open pages."""

    def __init__(self, nc, name: str | None = None, stream: str = STREAM) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.stream = stream
        self.name = name or f"web-live-{secrets.token_hex(4)}"
        self.pages: set[Page] = set()
        #: The newest stream sequence fanned out (0: none yet).
        self.position = 0
        self._task: asyncio.Task | None = None

    def join(self, identity: Identity) -> Page:
        page = Page(identity)
        self.pages.add(page)
        return page

    def leave(self, page: Page) -> None:
        self.pages.discard(page)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        with contextlib.suppress(Exception):  # else the server drops it after INACTIVE_S
            await asyncio.wait_for(self.js.delete_consumer(self.stream, self.name), 2.0)

    def fan_out(self, events: list[tuple[int, str]]) -> None:
        """Tell each page of the events ``(stream sequence, subject)`` of the communities it reads."""
        told: dict[str, tuple[int, dict[str, int]]] = {}
        for seq, subject in events:
            community = community_of(subject)
            if community is None:
                continue
            newest, types = told.setdefault(community, (0, {}))
            kind = subject.rsplit(".", 1)[1]
            types[kind] = max(types.get(kind, 0), seq)
            told[community] = (max(newest, seq), types)
        for page in self.pages:
            for community, (seq, types) in told.items():
                if page.identity.reads(community):
                    page.tell(seq, types)
        if events:
            self.position = max(self.position, max(seq for seq, _ in events))

    def refresh_all(self) -> None:
        """Events may have gone by unseen: every page asks again."""
        for page in self.pages:
            page.tell(self.position, {})

    async def _run(self) -> None:
        backoff = 0.25
        while True:
            puller = None
            try:
                await self._consumer()
                puller = Puller(self.nc, self.name, heartbeat=5.0)
                await puller.start()
                backoff = 0.25
                self.refresh_all()  # what went by while it was not pulling
                while True:
                    msgs = await puller.next_batch(timeout=5.0)
                    self.fan_out([(m.metadata.sequence.stream, m.subject) for m in msgs])
            except asyncio.CancelledError:
                raise
            except (Interrupted, ConsumerGone) as exc:
                log.info("live.restart", consumer=self.name, why=str(exc))
            except NotFoundError:
                log.info("live.waiting", why="no CORDON stream yet")  # the services create it
            except Exception as exc:  # noqa: BLE001 - NATS away, a timeout: the pages live on, stale
                log.warning("live.failed", consumer=self.name, error=str(exc) or type(exc).__name__)
            finally:
                if puller is not None:
                    await puller.stop()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _consumer(self) -> None:
        """Create the consumer, or find it as it was (the same config again is no change)."""
        await self.js.add_consumer(self.stream, ConsumerConfig(
            name=self.name, durable_name=self.name, filter_subject=EVENTS,
            deliver_policy=DeliverPolicy.NEW, ack_policy=AckPolicy.NONE,
            inactive_threshold=INACTIVE_S, mem_storage=True, num_replicas=1))
