"""A continuous pull from a durable JetStream consumer: messages flow as they arrive, in batches
of whatever is there.

nats-py's ``fetch(n)`` waits, when the stream is idle, until ``n`` messages are there or the
request expires: at 1,000 events/s and batches of 256 that holds every event for a quarter of a
second. Here, as in nats.go's ``Consume``, pull requests only grant credit; the server pushes
messages the moment they are stored, and :meth:`Puller.next_batch` hands over the first one at
once together with everything else already received.

The server numbers each delivery of a consumer (1, 2, 3, …, redeliveries included) and one puller
takes all of them, so a number skipped means a message lost on its way: the node leading the
consumer died with it in its buffers, or an earlier puller's request took it. Handing on what
came after would apply a stream's later event first (the lost one returns after ``ack_wait``),
so the puller stops with :class:`Interrupted` instead, as it does when the server stops
answering its requests (no heartbeat: they died with the node that held them) and when the
connection was lost and made again (deliveries and acknowledgements on their way through the node
that died are gone; without this, what was applied but whose acknowledgement was lost waits
``ack_wait`` to come again). The consumer then starts again from its ack floor.
"""
from __future__ import annotations

import asyncio
import json
import time

from nats.aio.client import Client
from nats.aio.msg import Msg

from shared.subjects import STREAM


class ConsumerGone(Exception):
    """The durable consumer was deleted on the server: create it again."""


class Interrupted(Exception):
    """Deliveries can no longer be trusted to be complete (a delivery number skipped, or no
    heartbeat): what is unacknowledged must come again, first, in order."""


class Puller:
    def __init__(self, nc: Client, consumer: str, batch: int = 256, expires: float = 30.0,
                 heartbeat: float = 5.0, stream: str = STREAM, delivered: int | None = None):
        """``delivered``: the consumer's last delivery number when this puller starts (its info's
        ``delivered.consumer_seq``), so that even the first message shows a gap; None: unknown."""
        self.nc = nc
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.batch = batch
        self.expires = expires
        self.heartbeat = heartbeat
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._inbox = ""
        self._sub = None
        self._credit = 0
        self._last_heard = 0.0
        self._delivered = delivered
        self._reconnects = nc.stats["reconnects"]

    async def start(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(self._inbox, cb=self._received)
        await self._top_up()

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
            self._sub = None

    async def _received(self, msg: Msg) -> None:
        self._queue.put_nowait(msg)

    async def _top_up(self) -> None:
        """Keep about two batches of credit outstanding on the server."""
        if self._credit < self.batch:
            want = 2 * self.batch - self._credit
            request = {"batch": want, "expires": int(self.expires * 1e9),
                       "idle_heartbeat": int(self.heartbeat * 1e9)}
            await self.nc.publish(self.subject, json.dumps(request).encode(), reply=self._inbox)
            self._credit += want
            self._last_heard = time.monotonic()

    async def next_batch(self, timeout: float = 1.0) -> list[Msg]:
        """The next messages (at least one, at most ``batch``), or [] after ``timeout``;
        :class:`Interrupted` (dropping what this call received) if a delivery went missing."""
        msgs: list[Msg] = []
        deadline = time.monotonic() + timeout
        while not msgs:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                async with asyncio.timeout(left):
                    first = await self._queue.get()
            except TimeoutError:
                break
            self._take(first, msgs)
            while len(msgs) < self.batch and not self._queue.empty():
                self._take(self._queue.get_nowait(), msgs)
        if self.nc.stats["reconnects"] != self._reconnects:
            raise Interrupted("reconnected to NATS")
        if time.monotonic() - self._last_heard > 2 * self.heartbeat + 1:
            # Our requests are gone (the consumer's leader moved to another node, or NATS restarted),
            # maybe with deliveries and acknowledgements on their way: start again from the floor.
            raise Interrupted(f"no message and no heartbeat for {time.monotonic() - self._last_heard:.1f} s")
        await self._top_up()
        return msgs

    def _take(self, msg: Msg, into: list[Msg]) -> None:
        self._last_heard = time.monotonic()
        status = msg.headers.get("Status") if msg.headers else None
        if status is None and msg.reply:
            delivery = msg.metadata.sequence.consumer
            if self._delivered is not None and delivery != self._delivered + 1:
                raise Interrupted(f"delivery {delivery} came after {self._delivered}: "
                                  f"{'some went missing' if delivery > self._delivered else 'numbered again'}")
            self._delivered = delivery
            self._credit -= 1
            into.append(msg)
        elif status == "100":
            return  # idle heartbeat (or flow control)
        elif status in ("408", "409") and "Consumer Deleted" in (msg.headers.get("Description") or ""):
            raise ConsumerGone(msg.headers.get("Description"))
        elif status in ("404", "408", "409"):
            # A request ended (expired, or the server's limits): what it had not delivered is
            # credit no longer there.
            pending = msg.headers.get("Nats-Pending-Messages")
            self._credit -= int(pending) if pending and pending.isdigit() else self._credit
            self._credit = max(self._credit, 0)
