"""The gateway's own Prometheus figures, served at ``/metrics``: HTTP requests by route and status,
their latency, the sessions open. A pure ASGI middleware measures every HTTP request; the route is
the path template the request matched (``/v1/commands/{service}/{command}``), ``unmatched`` for
any other path, so the labels stay few whatever clients send.

A registry per application (not prometheus-client's global one): tests run several gateways in
one process.
"""
from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from shared.metrics import LATENCY_BUCKETS

UNMATCHED = "unmatched"


class GatewayMetrics:
    def __init__(self, app: Starlette):
        self.app = app
        self.registry = registry = CollectorRegistry()
        self._requests = Counter("cordon_web_requests", "HTTP requests answered, by route and status",
                                 ["route", "status"], registry=registry)
        self._latency = Histogram("cordon_web_request_duration_seconds", "HTTP requests from receipt to the "
                                  "last byte of the response, by route", ["route"], buckets=LATENCY_BUCKETS,
                                  registry=registry)
        Gauge("cordon_web_sessions", "Logged-in sessions (each holds a NATS connection as its identity)",
              registry=registry).set_function(self._sessions)
        Gauge("cordon_process_start_time_seconds", "When this process started, Unix time", ["service"],
              registry=registry).labels("web").set(time.time())
        ProcessCollector(registry=registry)
        self._counted: dict[tuple[str, int], object] = {}
        self._timed: dict[str, object] = {}
        self._routes: dict[object, str] = {}

    def _sessions(self) -> int:
        state = getattr(self.app.state, "cordon", None)  # set once the lifespan has started
        return len(state.sessions) if state is not None else 0

    def route(self, scope) -> str:
        """The path template of the route the request matched (``scope["endpoint"]``, set by the router)."""
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return UNMATCHED
        if endpoint not in self._routes:
            for route in self.app.routes:
                self._routes.setdefault(getattr(route, "endpoint", None) or getattr(route, "app", None),
                                        getattr(route, "path", UNMATCHED))
        return self._routes.get(endpoint, UNMATCHED)

    def observe(self, route: str, status: int, seconds: float) -> None:
        counter = self._counted.get((route, status))
        if counter is None:
            counter = self._counted[(route, status)] = self._requests.labels(route, str(status))
        timer = self._timed.get(route)
        if timer is None:
            timer = self._timed[route] = self._latency.labels(route)
        counter.inc()
        timer.observe(seconds)


class Measure:
    """ASGI middleware: every HTTP request counted by route and status, and timed."""

    def __init__(self, app, metrics: GatewayMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500  # no response started: the server answers 500

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.observe(self.metrics.route(scope), status, time.perf_counter() - started)


async def endpoint(request: Request) -> Response:
    """``GET /metrics``: the Prometheus exposition (text, or OpenMetrics when asked)."""
    encode, kind = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(request.app.state.metrics.registry), media_type=kind)


def install(app: Starlette) -> Starlette:
    """Measure ``app``'s requests and keep the figures for :func:`endpoint`."""
    app.state.metrics = GatewayMetrics(app)
    app.add_middleware(Measure, metrics=app.state.metrics)
    return app
