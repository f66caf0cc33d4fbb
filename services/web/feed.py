"""``GET /v1/feed``: a community's events as server-sent events, from a durable JetStream consumer
the gateway keeps for each device of an identity (``cordon feed`` reads it).

Why in the gateway: a CITY identity's JWT allows it exactly one JetStream consumer of its own,
``feed-<name>`` (NATS permissions cannot wildcard part of a consumer name), and a person has a
phone, a laptop, a duty-room screen. So the gateway holds one consumer per device on its own
connection (the service identity ``web``, account CORDON): ``webfeed-<identity>-<durable>``,
filtered to ``cordon.evt.<community>.>``. Because that connection may read everything, the
gateway checks first what the bus would check: the identity reads the community
(``Identity.reads``), and its JWT lets it subscribe to every subject of the filter (``sub.allow``).

Positions are stream sequences. Each event goes out as ``id: <sequence>``, ``event: <type>``,
``data: <envelope>`` and is acknowledged once handed to the connection. A client resumes with
``Last-Event-ID`` (the last sequence it *handled*): every stream begins by resetting the consumer
to the sequence after it (JetStream's consumer reset, nats-server 2.14+), so events sent but never
handled (the client died with them) come again and events handled never do. Without it, the
stream begins at the consumer's ack floor. Consumers are created ``by_start_sequence`` even for
"deliver new" (the stream's next sequence), because JetStream refuses a reset to a sequence on a
``deliver new`` consumer.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from typing import AsyncIterator
from zoneinfo import ZoneInfo

from nats.aio.client import Client
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import APIError, NotFoundError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.web import sse
from services.web.sessions import Session
from shared import log as logging
from shared.config import city_zone
from shared.errors import CommandError, Conflict, Invalid, Unavailable
from shared.identity import Forbidden
from shared.pull import ConsumerGone, Interrupted, Puller
from shared.subjects import STREAM, check_scope, community_filter
from shared.tasks import cancel

log = logging.get("web.feed")

DURABLE = re.compile(r"^[a-z0-9-]{1,40}$")
#: A device away this long loses its consumer (JetStream deletes it); it starts again from its
#: Last-Event-ID, or anew.
INACTIVE_S = 30 * 24 * 3600.0
BATCH = 64
#: A pull request of the feed lives this long at the server: one left by a stream that ended
#: holds nothing longer (and every new stream resets the consumer, which drops it at once).
PULL_EXPIRES_S = 5.0
OWNER = "cordon.identity"


@dataclass(frozen=True)
class FeedRequest:
    """What a client asked for: ``scope`` (a community; a street or district for an officer),
    the device's ``durable`` name, ``since`` (for a consumer created now), ``last`` (Last-Event-ID)."""

    scope: str
    durable: str
    since: datetime | None = None
    last: int | None = None

    @property
    def filter(self) -> str:
        return community_filter(self.scope)


def read_request(params: dict[str, str], last_event_id: str | None, zone: ZoneInfo) -> FeedRequest:
    """The request's parameters, checked; raises :class:`Invalid` naming the field."""
    scope = params.get("community")
    if not scope:
        raise Invalid("give the community to follow: ?community=district.street.committee", field="community")
    check_scope(scope, "community")
    durable = params.get("durable") or "default"
    if not DURABLE.match(durable):
        raise Invalid(f"durable {durable!r} must be 1 to 40 characters of a-z, 0-9 and '-' "
                      "(one name per device)", field="durable")
    since = parse_since(params["since"], zone) if params.get("since") else None
    last = None
    if last_event_id is not None and last_event_id.strip():
        if not last_event_id.strip().isdigit():
            raise Invalid("Last-Event-ID must be the stream sequence of the last event handled",
                          field="Last-Event-ID")
        last = int(last_event_id)
    return FeedRequest(scope=scope, durable=durable, since=since, last=last)


def parse_since(value: str, zone: ZoneInfo) -> datetime:
    """A day (midnight, in the city's time zone) or an RFC 3339 time with its offset."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(0), zone)
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise Invalid(f"since {value!r} must be a day (2026-11-30) or an RFC 3339 time with its offset "
                      "(2026-11-30T08:00:00+08:00)", field="since")
    return moment


def authorize(session: Session, request: FeedRequest) -> None:
    """Refuse, with :class:`Forbidden`, a feed the identity could not read on the bus itself."""
    identity = session.identity
    if identity.role == "gate":
        raise Forbidden("a gate device has no feed")
    if not identity.reads(request.scope):
        raise Forbidden(f"{identity.name!r} does not read {request.scope}: follow your own community")
    if not session.may_subscribe(request.filter):
        raise Forbidden(f"the credentials of {identity.name!r} do not allow subscribing to {request.filter}")


def consumer_name(identity: str, durable: str) -> str:
    return f"webfeed-{identity}-{durable}"


# -- the consumer ---------------------------------------------------------------------------


async def ensure_consumer(nc: Client, name: str, identity: str, request: FeedRequest) -> ConsumerInfo:
    """The device's consumer, created on first use; :class:`Conflict` if the name follows another
    community (or, names being joined with '-', another identity's device)."""
    js = nc.jetstream()
    try:
        info = await js.consumer_info(STREAM, name)
    except NotFoundError:
        info = await _create(nc, name, identity, request)
    metadata = info.config.metadata or {}
    if metadata.get(OWNER) != identity:  # "a-b" + "c" and "a" + "b-c" make one name
        raise Conflict(f"the durable name {request.durable!r} is taken: give another", field="durable")
    if info.config.filter_subject != request.filter:
        raise Conflict(f"the durable {request.durable!r} follows {metadata.get('cordon.scope')}: give another "
                       f"durable for {request.scope}", field="durable")
    return info


async def _create(nc: Client, name: str, identity: str, request: FeedRequest) -> ConsumerInfo:
    config = ConsumerConfig(
        name=name, durable_name=name, description=f"cordon feed of {identity} ({request.durable})",
        ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=await first_sequence(nc, request), filter_subject=request.filter,
        ack_wait=30.0, max_deliver=-1, max_ack_pending=BATCH * 4, inactive_threshold=INACTIVE_S,
        metadata={OWNER: identity, "cordon.scope": request.scope})
    # "create", not create-or-update: a device of the same name asking at the same moment for
    # another community must not move this one's filter.
    body = {"stream_name": STREAM, "config": config.as_dict(), "action": "create"}
    subject = f"$JS.API.CONSUMER.CREATE.{STREAM}.{name}.{request.filter}"
    reply = json.loads((await nc.request(subject, json.dumps(body).encode(), timeout=5)).data)
    if "error" in reply:
        if reply["error"].get("err_code") == 10148:  # exists already: created by the other device
            return await nc.jetstream().consumer_info(STREAM, name)
        APIError.from_error(reply["error"])
    log.info("feed.created", consumer=name, scope=request.scope, start=config.opt_start_seq)
    return ConsumerInfo.from_response(reply)


async def first_sequence(nc: Client, request: FeedRequest) -> int:
    """Where a new consumer starts: after Last-Event-ID when the client gives one (its consumer
    expired, or another gateway held it), else the first event of the filter stored at or after
    ``since``, else the stream's next sequence ("deliver new", as a sequence so it can be reset)."""
    last_stored = (await nc.jetstream().stream_info(STREAM)).state.last_seq
    if request.last is not None:
        return min(request.last + 1, last_stored + 1)  # a position past the stream's end is not one of it
    if request.since is None:
        return last_stored + 1
    ask = {"start_time": request.since.astimezone(timezone.utc).isoformat(), "next_by_subj": request.filter}
    reply = json.loads((await nc.request(f"$JS.API.STREAM.MSG.GET.{STREAM}", json.dumps(ask).encode(),
                                         timeout=5)).data)
    return reply["message"]["seq"] if "message" in reply else last_stored + 1


async def rewind(nc: Client, name: str, info: ConsumerInfo, to: int | None) -> int:
    """Reset the consumer so that its next delivery is the first event at or after ``to`` (never
    before where it starts), or after its ack floor when ``to`` is None; its pull requests of a
    stream that ended are dropped with it. Returns its delivery number after the reset (0)."""
    if to is not None:
        to = max(to, info.config.opt_start_seq or 1)
    reset = await nc.jetstream().reset_consumer(STREAM, name, seq=to)
    return reset.info.delivered.consumer_seq if reset.info.delivered else 0


# -- one device's stream at a time ------------------------------------------------------------


class Devices:
    """The feed streams open in this gateway, one per consumer. A device that reconnects while
    its old stream still looks open (a dropped network: the server learns of it only when a write
    fails) takes over: the old stream is cancelled and has stopped its pull before the new one
    resets the consumer, so two streams never pull the same consumer."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[asyncio.Task, asyncio.Event]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """Held by the task that streams ``name``'s events."""
        previous = self._open.get(name)
        if previous is not None:
            task, done = previous
            await cancel(task, grace=0.05)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 5.0)
        mine = (asyncio.current_task(), asyncio.Event())
        self._open[name] = mine
        try:
            yield
        finally:
            if self._open.get(name) is mine:
                del self._open[name]
            mine[1].set()


def devices(request: Request) -> Devices:
    state = request.app.state
    if not hasattr(state, "feeds"):
        state.feeds = Devices()
    return state.feeds


class Stream:
    """One client's stream: pulls the consumer, writes each event, acknowledges it once written."""

    def __init__(self, nc: Client, session: Session, name: str, info: ConsumerInfo, last: int | None,
                 keepalive_s: float) -> None:
        self.nc, self.session, self.name, self.info = nc, session, name, info
        self.keepalive_s = keepalive_s
        #: The sequence of the last event written (the client's Last-Event-ID to begin with).
        self.sent = last
        self.puller: Puller | None = None

    async def frames(self, devices: Devices) -> AsyncIterator[bytes]:
        async with devices.hold(self.name):
            yield sse.comment(f"feed {self.name}")
            why = "another stream of this durable took over, or the client is gone"
            try:
                await self._start()
                async for chunk in self._events():
                    yield chunk
                why = f"session over ({self.session.ended or 'expired'})"
            except ConsumerGone:
                why = "consumer deleted"
            except Exception as exc:  # noqa: BLE001 - NATS away, a bug: the client reconnects
                why = f"{type(exc).__name__}: {exc}"
                log.warning("feed.failed", consumer=self.name, error=why)
            finally:
                await self._stop()
                log.info("feed.closed", consumer=self.name, last=self.sent, why=why)

    async def _events(self) -> AsyncIterator[bytes]:
        """Each event's frame, acknowledged once written, until the session ends; a keep-alive
        comment after ``keepalive_s`` without one."""
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while self.session.alive:
            try:
                msgs = await self.puller.next_batch(timeout=1.0)
            except Interrupted as exc:  # deliveries may be missing: start again after the last sent
                log.info("feed.interrupted", consumer=self.name, why=str(exc), after=self.sent)
                await self._stop()
                await self._start()
                continue
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if self.sent is not None and seq <= self.sent:
                    await msg.ack()  # a redelivery of what this stream wrote already (an ack lost)
                    continue
                if not self.session.alive:
                    return  # not acknowledged: a later stream starts after the last one written
                yield sse.frame(msg.data, event=msg.subject.rsplit(".", 1)[-1], id=seq)
                # Resumed here only once the frame was handed to the connection.
                await msg.ack()
                self.sent, quiet_since = seq, loop.time()
            if loop.time() - quiet_since >= self.keepalive_s:
                yield sse.comment("keep-alive")
                quiet_since = loop.time()

    async def _start(self) -> None:
        """Reset the consumer to just after the last event written (or its ack floor) and pull."""
        after = None if self.sent is None else self.sent + 1
        delivered = await rewind(self.nc, self.name, self.info, after)
        self.puller = Puller(self.nc, self.name, batch=BATCH, expires=PULL_EXPIRES_S, heartbeat=1.0,
                             delivered=delivered)
        await self.puller.start()

    async def _stop(self) -> None:
        if self.puller is not None:
            await self.puller.stop()
            self.puller = None


# -- the route ------------------------------------------------------------------------------


async def get_feed(request: Request) -> Response:
    from services.web.app import refused, session_of, state  # app.py imports this module for its routes

    try:
        session = session_of(request)
        wanted = read_request(dict(request.query_params), request.headers.get("last-event-id"), city_zone())
        authorize(session, wanted)
        name = consumer_name(session.identity.name, wanted.durable)
        nc = state(request).nc
        info = await _jetstream(ensure_consumer(nc, name, session.identity.name, wanted))
    except CommandError as exc:
        return refused(exc)
    log.info("feed.opened", consumer=name, identity=session.identity.name, scope=wanted.scope, after=wanted.last)
    stream = Stream(nc, session, name, info, wanted.last, state(request).config.feed_keepalive_s)
    return sse.EventStream(stream.frames(devices(request)))


async def _jetstream(call):
    try:
        return await call
    except (NatsTimeout, NoRespondersError, asyncio.TimeoutError):
        raise Unavailable("JetStream did not answer the gateway: retry in a moment") from None


ROUTES = [Route("/v1/feed", get_feed, methods=["GET"])]
