"""Following the whole ``CORDON`` stream in order, from a position kept in PostgreSQL, in batches.

Why not :class:`shared.consumer.Consumer`: a read model of *every* event must rebuild at tens of
thousands of events a second, and a durable pull consumer with an ack per message manages ~20,000
messages/s in nats-py before any work is done. Here an ephemeral, unacknowledged pull consumer
delivers into a plain callback (no task per message), asked for ``batch_max`` messages at a time
and never for more than two batches beyond what is buffered: memory stays flat however long the
stream (an ordered push consumer does not: its flow control let 500,000 messages pile up in the
client and be dropped as a slow consumer). Exactly-once comes from PostgreSQL instead of acks:
``apply`` commits a batch together with the last stream sequence it applied (the *high-water
mark*) and returns it; after any error or restart the tail resumes at ``position() + 1``.

``prepare(batch)`` (plain CPU work: decoding) turns a batch into what ``apply(prepared, after)``
commits; the tail prepares the next batch while the previous one commits, so Python and PostgreSQL
work side by side. ``apply`` gets the position the tail believes applied; if the stored position is
behind that (a rebuilt generation was swapped in), it raises :class:`Reposition` and the tail
re-subscribes from the stored position.

A stored position beyond the stream's last sequence means the stream lost its last messages (a
single node's power loss: JetStream then gives the next messages the lost sequences again) or was
created anew. Followed from the stored position, those next messages would be skipped. So before
following, the tail lowers the stored position to the stream's last sequence (``rewind(seen, to)``);
what it then meets again is dropped by the follower's own inbox (by event id).

A tail given ``until`` applies nothing beyond that stream sequence and returns from ``run`` once it
has applied everything up to it (or up to the stream's end, if that comes first): a copy built to
exactly the position another one holds (``cordon reconcile``'s shadow of the views). Such a tail
does not retry: its first error is raised to the caller.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared import log as logging
from shared.subjects import EVENTS_ROOT, STREAM

log = logging.get("tail")

#: Seconds a pull request waits for messages; idle heartbeats within it; idle consumer removal.
EXPIRES, HEARTBEAT, INACTIVE = 30.0, 2.0, 60.0

#: A batch as the tail hands it over: (stream sequence, messages left after it, message).
Batch = list[tuple[int, int, Msg]]
Prepare = Callable[[Batch], Any]
Apply = Callable[[Any, int | None], Awaitable[int]]
#: (the stored position seen, the stream's last sequence): lower the stored position, if unchanged.
Rewind = Callable[[int, int], Awaitable[None]]


class Reposition(Exception):
    """The stored position moved behind the tail's: follow again from ``position + 1``."""

    def __init__(self, position: int):
        super().__init__(f"stored position is {position}")
        self.position = position


def sequences(msg: Msg) -> tuple[int, int, int]:
    """Stream sequence, consumer sequence and messages left after it, from the reply subject."""
    tokens = msg.reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return int(tokens[5]), int(tokens[6]), int(tokens[8])
    meta = msg.metadata  # the longer form with domain and account hash
    return meta.sequence.stream, meta.sequence.consumer, meta.num_pending


class Broken(Exception):
    """The delivery can no longer be trusted in order (a gap, a lost consumer): follow again."""


class _Flow:
    """Credit (messages asked for and not yet delivered), order and liveness of one pull consumer."""

    def __init__(self, now: float, reconnects: int = 0):
        self.credit = 0
        self.consumer_seq = 0
        self.heard = now
        self.reconnects = reconnects
        self.error: str | None = None

    def receive(self, msg: Msg, buffer: list, now: float) -> None:
        self.heard = now
        headers = msg.headers
        if headers and not msg.data and "Status" in headers:
            status = headers["Status"]
            if status == "408":  # a pull request expired: what it did not deliver is not coming
                self.credit -= int(headers.get("Nats-Pending-Messages", 0))
            elif status != "100":  # 100 is an idle heartbeat; anything else ends this consumer
                self.error = f"{status} {headers.get('Description', '')}".strip()
            return
        seq, consumer_seq, pending = sequences(msg)
        if consumer_seq != self.consumer_seq + 1:
            self.error = f"delivery {consumer_seq} after {self.consumer_seq}"
            return
        self.consumer_seq = consumer_seq
        self.credit -= 1
        buffer.append((seq, pending, msg))

    def check(self, now: float, reconnects: int = 0) -> None:
        if self.error:
            raise Broken(self.error)
        if reconnects != self.reconnects:  # the server may have restarted and lost our consumer
            raise Broken("reconnected to NATS")
        if self.credit > 0 and now - self.heard > 3 * HEARTBEAT:
            raise Broken(f"no message and no heartbeat for {now - self.heard:.1f} s")


class Tail:
    def __init__(self, nc: Client, *, name: str, position: Callable[[], Awaitable[int]], prepare: Prepare,
                 apply: Apply, rewind: Rewind, batch_max: int = 2000, subject: str = f"{EVENTS_ROOT}.>",
                 until: int | None = None):
        self.nc = nc
        self.js = nc.jetstream()
        self.name = name
        self.position = position
        self.prepare = prepare
        self.apply = apply
        self.rewind = rewind
        self.batch_max = batch_max
        self.subject = subject
        #: Stop after this stream sequence (None: follow forever).
        self.until = until
        #: The last stream sequence applied, as far as this tail knows (None before the first read).
        self.hwm: int | None = None
        #: Messages left in the stream after the last one received (0: caught up, as of then).
        self.behind: int | None = None
        self.batches = 0
        #: Its pull consumer is in place and delivering (False while it starts again after an error).
        self.following = False
        self.last_error: str | None = None
        #: What happened when the stream restarted its sequences under this tail (recreated or
        #: truncated), for health: the tail rewound and follows on; lost events need a republish.
        self.stream_reset: str | None = None
        self._stream_created = None

    async def run(self) -> None:
        """Follow forever (cancel to stop), or up to ``until``; errors are logged and the tail
        resumes from PostgreSQL (with ``until``, raised)."""
        backoff = 0.1
        while True:
            batches = self.batches
            try:
                self.hwm = await self._start()
                if self.until is not None and (self.hwm >= self.until or await self.head() <= self.hwm):
                    return  # nothing to apply up to ``until``
                await self._follow(self.hwm)
                return  # only a tail with ``until`` gets here, at it
            except asyncio.CancelledError:
                raise
            except Reposition as r:
                log.info("tail.reposition", tail=self.name, position=r.position)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self.until is not None:
                    raise
                log.warning("tail.retry", tail=self.name, error=self.last_error)
                backoff = 0.1 if self.batches > batches else min(backoff * 2, 5.0)
                await asyncio.sleep(backoff)

    async def _start(self) -> int:
        """The stored position, lowered first when the stream is not the one it counts in: the
        stream lost its last messages (it ends below the position: its next messages reuse those
        sequences), or it was created anew since this tail first saw it (every sequence is new)."""
        hwm = await self.position()
        info = await self.js.stream_info(STREAM)
        head, created = info.state.last_seq, getattr(info, "created", None)
        if self._stream_created is None:
            self._stream_created = created
        recreated = created is not None and created != self._stream_created
        if head < hwm or (recreated and hwm):
            to = 0 if recreated else head
            why = ("created anew" if recreated else "lost its last messages or was created anew") + (
                f": its last sequence is {head}, this tail's position was {hwm}")
            log.error("tail.rewound", tail=self.name, position=hwm, to=to, why=why)
            await self.rewind(hwm, to)
            hwm = await self.position()
            # Said on health until the process restarts: what JetStream lost is only back once an
            # operator republishes it from the record (cordon republish --service … --since …).
            self.stream_reset = (f"the {STREAM} stream {why}; followed again from {hwm} (events seen before "
                                 "are dropped by id): if it lost events, republish them (cordon republish)")
        self._stream_created = created
        return hwm

    async def head(self) -> int:
        """The last sequence in the stream now."""
        return (await self.js.stream_info(STREAM)).state.last_seq

    async def _follow(self, after: int) -> None:
        loop = asyncio.get_running_loop()
        buffer: Batch = []
        wake = asyncio.Event()
        flow = _Flow(loop.time(), self.nc.stats["reconnects"])

        async def on_msg(msg: Msg) -> None:
            flow.receive(msg, buffer, loop.time())
            wake.set()

        inbox = self.nc.new_inbox()
        pull = json.dumps({"batch": self.batch_max, "expires": int(EXPIRES * 1e9),
                           "idle_heartbeat": int(HEARTBEAT * 1e9)}).encode()
        sub = await self.nc.subscribe(inbox, cb=on_msg)
        consumer: str | None = None
        committing: asyncio.Task | None = None
        try:
            consumer = await self._consumer(after)
            self.following = True
            request = f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{consumer}"
            while True:
                while not buffer:  # idle: still surface a failed commit at once (we restart)
                    flow.check(loop.time(), self.nc.stats["reconnects"])
                    if committing is not None and committing.done():
                        committing, done = None, committing
                        done.result()
                    while flow.credit + len(buffer) < 2 * self.batch_max:
                        await self.nc.publish(request, pull, reply=inbox)
                        flow.credit += self.batch_max
                    wake.clear()
                    waiting = asyncio.ensure_future(wake.wait())
                    await asyncio.wait([waiting, *([committing] if committing else [])],
                                       timeout=HEARTBEAT, return_when=asyncio.FIRST_COMPLETED)
                    waiting.cancel()
                batch = buffer[:self.batch_max]
                del buffer[:self.batch_max]
                # At ``until``, or at the end of the stream (nothing up to it can come any more)
                reached = self.until is not None and (batch[-1][0] >= self.until or
                                                      (batch[-1][1] == 0 and not buffer))
                if self.until is not None:
                    batch = [m for m in batch if m[0] <= self.until]
                if batch:
                    prepared = self.prepare(batch)  # while the previous batch commits
                    if committing is not None:
                        await committing  # batches commit in stream order, one at a time
                    behind = batch[-1][1] + len(buffer)
                    committing = asyncio.create_task(self._commit(prepared, behind))
                if reached:
                    if committing is not None:
                        committing, last = None, committing
                        await last
                    return
                while flow.credit + len(buffer) < 2 * self.batch_max:  # keep the server streaming
                    await self.nc.publish(request, pull, reply=inbox)
                    flow.credit += self.batch_max
        finally:
            self.following = False
            if committing is not None:
                committing.cancel()
                with contextlib.suppress(BaseException):
                    await committing
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sub.unsubscribe(), 2.0)
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.js.delete_consumer(STREAM, consumer), 2.0)

    async def _consumer(self, after: int) -> str:
        """An ephemeral pull consumer from ``after + 1``; the server drops it when left idle."""
        info = await self.js.add_consumer(STREAM, ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1,
            ack_policy=AckPolicy.NONE, filter_subject=self.subject, inactive_threshold=INACTIVE,
            mem_storage=True, num_replicas=1, max_waiting=16))
        return info.name

    async def _commit(self, prepared: Any, behind: int) -> None:
        self.hwm = await self.apply(prepared, self.hwm)
        self.behind = behind
        self.batches += 1


class TailFollower:
    """A :class:`Tail` as the host runs and reports it (``shared.service.Follower``): lag behind the
    stream's head, the tail's last error and whether the stream restarted under it. Subclasses
    build ``self.tail`` over their read model and say what ``applied`` and ``parked`` count."""

    name = "tail"
    tail: Tail
    applied = 0
    parked = 0

    @property
    def last_error(self) -> str | None:
        return self.tail.last_error

    @property
    def stream_reset(self) -> str | None:
        return self.tail.stream_reset

    @property
    def attached(self) -> bool:
        return self.tail.following

    async def lag(self) -> int | None:
        try:
            return max(0, await self.tail.head() - await self.tail.position())
        except Exception:
            return None

    async def run(self) -> None:
        await self.tail.run()

