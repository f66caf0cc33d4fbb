"""A service's Prometheus figures (prometheus-client), one registry per :class:`~shared.service.ServiceHost`.

Two kinds, kept apart by what they cost:

- Per command, on the hot path: a counter by command and outcome code, and a latency histogram
  (receive to reply). The labelled children are looked up once per command name and kept
  (``.labels()`` costs a dict build and a lock each call); a name the service does not know
  counts as ``unknown``, so a caller cannot grow the label set.
- Everything else is read when Prometheus scrapes (:class:`HostFigures`): the counters the relay,
  the consumers and the followers keep anyway as plain ints, the pool's size, and the gauges that
  cost a round trip (outbox depth, each consumer's lag), sampled once per scrape
  (:meth:`ServiceMetrics.sample`) with a time limit, never per command.

A registry per host rather than prometheus-client's global one: the tests run several hosts in one
process, and each must show only its own figures.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from shared.errors import CODES

if TYPE_CHECKING:
    from shared.service import ServiceHost

#: Seconds; a command takes ~1-20 ms when all is well, a PostgreSQL outage makes it seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The label of a command the service does not have.
UNKNOWN = "unknown"
#: How long one scrape waits for the sampled gauges (a down PostgreSQL or NATS leaves them out).
SAMPLE_TIMEOUT = 2.0
#: Scrapes closer together than this share one sample (two Prometheus servers, a curl loop).
SAMPLE_REUSE = 1.0

# A ``…_created`` series beside every counter and histogram child doubles what is scraped for a
# figure Prometheus does not need (a counter's reset shows as a drop).
disable_created_metrics()

_OK = b'{"ok":true'
_ERROR = b'{"ok":false,"error":{"code":"'


def outcome(reply: bytes) -> str:
    """``ok`` or the error code of an encoded command reply, read from its first bytes (the
    encoder writes ``ok`` then ``error.code`` first: no decoding of a large reply)."""
    if reply.startswith(_OK):
        return "ok"
    if reply.startswith(_ERROR):
        end = reply.find(b'"', len(_ERROR))
        code = reply[len(_ERROR):end].decode("ascii", "replace")
        if code in CODES:
            return code
    return "internal"


class ServiceMetrics:
    """The figures of one service instance; ``registry`` is what ``/metrics`` exposes."""

    def __init__(self, service: str, commands: frozenset[str] = frozenset()):
        self.service = service
        self.commands = commands
        self.registry = CollectorRegistry()
        self._commands = Counter("cordon_commands", "Commands answered, by command and outcome code "
                                 "(ok, or the error code of the reply)", ["service", "command", "code"],
                                 registry=self.registry)
        self._latency = Histogram("cordon_command_duration_seconds", "Commands from receipt to reply sent",
                                  ["service", "command"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._counted: dict[tuple[str, str], object] = {}
        self._timed: dict[str, object] = {}
        for name in commands:  # at 0 from the start, so that a rate() sees the first command
            self._child(name, "ok")
        #: The last sample of the gauges that cost a round trip (see :meth:`sample`).
        self.sampled: dict[str, int | None] = {}
        self._sampled_at = float("-inf")
        self._sampling = asyncio.Lock()
        self.started_at = time.time()
        ProcessCollector(registry=self.registry)  # CPU, memory, open files: read from /proc at scrape

    def command(self, name: str, reply: bytes, received: float) -> None:
        """Count one command answered with ``reply``; ``received``: its ``time.perf_counter()`` on
        receipt."""
        if name not in self.commands:
            name = UNKNOWN
        code = outcome(reply)
        counter = self._counted.get((name, code)) or self._child(name, code)
        counter.inc()
        self._timed[name].observe(time.perf_counter() - received)

    def _child(self, name: str, code: str):
        """The counter of (name, code), bound once; and the command's histogram."""
        if name not in self._timed:
            self._timed[name] = self._latency.labels(self.service, name)
        counter = self._counted[(name, code)] = self._commands.labels(self.service, name, code)
        return counter

    def watch(self, host: "ServiceHost") -> None:
        """Expose ``host``'s own counters and gauges, read at each scrape."""
        self.registry.register(HostFigures(host, self))

    async def sample(self, host: "ServiceHost") -> None:
        """Take the gauges that cost a round trip: the outbox depth (PostgreSQL) and each consumer's
        lag (JetStream for a durable consumer; the stream's head and the stored position for a
        follower). Those that do not answer within ``SAMPLE_TIMEOUT`` are left out of this scrape."""
        async with self._sampling:
            if time.monotonic() - self._sampled_at < SAMPLE_REUSE:
                return
            probes = {f"lag:{c.name}": c.lag() for c in [*host.consumers, *host.followers]}
            if host.relay is not None:
                probes["outbox"] = host.relay.depth()
            tasks = {key: asyncio.ensure_future(probe) for key, probe in probes.items()}
            if tasks:
                await asyncio.wait(tasks.values(), timeout=SAMPLE_TIMEOUT)
            self.sampled = {key: _result(task) for key, task in tasks.items()}
            self._sampled_at = time.monotonic()


def _result(task: asyncio.Future) -> int | None:
    if not task.done():
        task.cancel()
        return None
    if task.cancelled() or task.exception() is not None:
        return None
    return task.result()


class HostFigures:
    """What a host knows without asking anyone, and the last sample: read at each scrape."""

    def __init__(self, host: "ServiceHost", metrics: ServiceMetrics):
        self.host = host
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        host, service = self.host, self.metrics.service
        started = GaugeMetricFamily("cordon_process_start_time_seconds",
                                    "When this service process started, Unix time", labels=["service"])
        started.add_metric([service], self.metrics.started_at)
        yield started
        yield from self._pool(host, service)
        yield from self._relay(host, service)
        yield from self._consumers(host, service)

    def _pool(self, host, service: str) -> Iterator[Metric]:
        if host.pool is None:
            return
        size = host.pool.get_size()
        for name, doc, value in (
                ("cordon_pg_pool_connections", "PostgreSQL connections the pool holds open", size),
                ("cordon_pg_pool_connections_in_use", "PostgreSQL connections taken from the pool now",
                 size - host.pool.get_idle_size()),
                ("cordon_pg_pool_max_connections", "The pool's limit (CORDON_PG_POOL_MAX)",
                 host.pool.get_max_size())):
            family = GaugeMetricFamily(name, doc, labels=["service"])
            family.add_metric([service], value)
            yield family

    def _relay(self, host, service: str) -> Iterator[Metric]:
        if host.relay is None:
            return
        depth = self.metrics.sampled.get("outbox")
        if depth is not None:
            gauge = GaugeMetricFamily("cordon_outbox_depth", "Events committed and not yet acknowledged "
                                      "by JetStream (sampled at scrape)", labels=["service"])
            gauge.add_metric([service], depth)
            yield gauge
        for name, doc, value in (
                ("cordon_commands_committed", "Commands committed, callers' and Cordon's own "
                 "(reactions, schedulers)", host.runtime.committed),
                ("cordon_relay_published_events", "Events the relay published and JetStream acknowledged",
                 host.relay.published),
                ("cordon_relay_publish_batches", "Batches of outbox rows the relay published",
                 host.relay.batches),
                ("cordon_relay_duplicate_events", "Events JetStream acknowledged as already stored "
                 "(published again after a crash or a lost acknowledgement)", host.relay.duplicates)):
            family = CounterMetricFamily(name, doc, labels=["service"])
            family.add_metric([service], value)
            yield family

    def _consumers(self, host, service: str) -> Iterator[Metric]:
        readers = [*host.consumers, *host.followers]
        if not readers:
            return
        labels = ["service", "consumer"]
        lag = GaugeMetricFamily("cordon_consumer_lag_events", "Events of the stream the consumer has not "
                                "applied yet: pending on the server for a durable consumer, behind the "
                                "stream's head for the views and the audit log (sampled at scrape)", labels=labels)
        attached = GaugeMetricFamily("cordon_consumer_attached", "1 while the consumer runs (leading or "
                                     "on standby), else 0", labels=labels)
        applied = CounterMetricFamily("cordon_consumer_applied_events", "Events the consumer applied",
                                      labels=labels)
        parked = CounterMetricFamily("cordon_consumer_parked_events", "Events the consumer parked as dead "
                                     "letters (or, for the views, could not read)", labels=labels)
        redelivered = CounterMetricFamily("cordon_consumer_redelivered_events", "Messages JetStream "
                                          "delivered to the durable consumer again", labels=labels)
        for reader in readers:
            key = [service, reader.name]
            value = self.metrics.sampled.get(f"lag:{reader.name}")
            if value is not None:
                lag.add_metric(key, value)
            attached.add_metric(key, 1 if reader.attached else 0)
            applied.add_metric(key, reader.applied)
            parked.add_metric(key, reader.parked)
            if hasattr(reader, "redelivered"):
                redelivered.add_metric(key, reader.redelivered)
        yield from (lag, attached, applied, parked, redelivered)
