"""What an operator sees from outside over HTTP: a service's Prometheus figures move as commands
flow and its consumers apply them; readiness follows PostgreSQL while liveness holds; the web
gateway counts its own requests."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.checkpoint.app import spec as checkpoint_spec
from services.registry.app import spec as registry_spec
from services.views.app import spec as views_spec
from shared.embedded import EmbeddedPostgres, ensure_database, free_port
from shared.identity import Identity
from tests.conftest import FAST_PG_SETTINGS
from tests.support.bus import connect
from tests.support.cordon import COMMUNITY, Client, community, eventually, household, running
from tests.support.identities import NANGONG
from tests.support.web import creds, gateway, login

pytestmark = pytest.mark.integration
README = Path(__file__).parents[2] / "README.md"


def metrics_on(port: int) -> dict:
    """A host's settings to serve its metrics on ``port`` of the loopback address."""
    return {"metrics_port": port, "metrics_host": "127.0.0.1"}


async def scrape(base: str) -> dict[tuple, float]:
    """Every sample of ``base``/metrics: (name, sorted labels) -> value."""
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        reply = await http.get("/metrics")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(reply.text) for s in family.samples}


def figure(figures: dict[tuple, float], name: str, **labels) -> float | None:
    return figures.get((name, tuple(sorted(labels.items()))))


def undocumented(figures: dict[tuple, float]) -> set[str]:
    """Cordon's figures that README.md does not name."""
    names = {re.sub(r"_(bucket|count|sum)$", "", name) for name, _ in figures if name.startswith("cordon_")}
    text = README.read_text(encoding="utf-8")
    return {name for name in names if f"`{name}`" not in text}


def moved(before: dict, after: dict, name: str, **labels) -> float:
    return (figure(after, name, **labels) or 0) - (figure(before, name, **labels) or 0)


async def test_a_running_service_figures_move_with_the_commands_it_answers(nats_url, pg_dsn):
    # Given the registry, the checkpoint (whose directory consumer follows the registry's events)
    # and the views (a follower of the whole stream) running, each with a metrics port
    ports = {"registry": free_port(), "checkpoint": free_port(), "views": free_port()}
    registry_url, checkpoint_url, views_url = (f"http://127.0.0.1:{port}" for port in ports.values())
    async with (running(registry_spec(), nats_url, pg_dsn, **metrics_on(ports["registry"])),
                running(checkpoint_spec(), nats_url, pg_dsn, **metrics_on(ports["checkpoint"])),
                running(views_spec(), nats_url, pg_dsn, **metrics_on(ports["views"]))):
        nc = await connect(nats_url)
        try:
            client = Client(nc, "registry")
            await community(client)  # one event before the first scrape: the figures exist
            await eventually(lambda: applied(checkpoint_url, DIRECTORY, 1), what="the directory's first event")
            await eventually(lambda: applied(views_url, VIEWS, 1), what="the views' first event")
            registry_before, checkpoint_before, views_before = [await scrape(url) for url in (
                registry_url, checkpoint_url, views_url)]
            # When three households are registered, a compound is registered again (refused:
            # conflict), one household names no compound (invalid) and a command does not exist
            for _ in range(3):
                await household(client)
            taken = await client.send("register_compound", community=COMMUNITY, compound="nangong-1",
                                      name="南宫小区", buildings=["b1"], gates=["g1"])
            assert taken["error"]["code"] == "conflict", taken
            assert (await client.send("register_household", community=COMMUNITY))["error"]["code"] == "invalid"
            assert (await client.send("no_such_thing"))["error"]["code"] == "unknown_command"
            await eventually(lambda: drained(registry_url), what="the outbox drained")
            await eventually(lambda: applied(checkpoint_url, DIRECTORY, 4), what="the directory applied the households")
            await eventually(lambda: applied(views_url, VIEWS, 4), what="the views applied the households")
            for url, consumer in ((checkpoint_url, DIRECTORY), (views_url, VIEWS)):  # sampled: a second late
                await eventually(lambda: caught_up(url, consumer), what=f"{consumer} at lag 0")
            registry_after, checkpoint_after, views_after = [await scrape(url) for url in (
                registry_url, checkpoint_url, views_url)]
        finally:
            await nc.close()
    # Then the registry counted each command under its outcome and timed it
    service = {"service": "registry"}
    assert moved(registry_before, registry_after, "cordon_commands_total", **service,
                 command="register_household", code="ok") == 3
    assert moved(registry_before, registry_after, "cordon_command_duration_seconds_count", **service,
                 command="register_household") == 4  # the invalid one too
    assert moved(registry_before, registry_after, "cordon_commands_total", **service,
                 command="register_compound", code="conflict") == 1
    assert moved(registry_before, registry_after, "cordon_commands_total", **service,
                 command="register_household", code="invalid") == 1
    assert moved(registry_before, registry_after, "cordon_commands_total", **service,
                 command="unknown", code="unknown_command") == 1
    # And its relay published the three households' events, the outbox is empty
    assert moved(registry_before, registry_after, "cordon_relay_published_events_total", **service) == 3
    assert moved(registry_before, registry_after, "cordon_relay_publish_batches_total", **service) >= 1
    assert figure(registry_after, "cordon_outbox_depth", **service) == 0
    assert figure(registry_after, "cordon_pg_pool_connections", **service) >= 1
    assert figure(registry_after, "cordon_process_start_time_seconds", **service) > 0
    # And the checkpoint's directory consumer and the views applied them, attached, nothing left
    for before, after, consumer in ((checkpoint_before, checkpoint_after, DIRECTORY),
                                    (views_before, views_after, VIEWS)):
        assert moved(before, after, "cordon_consumer_applied_events_total", **consumer) == 3, consumer
        assert figure(after, "cordon_consumer_attached", **consumer) == 1, consumer
        assert figure(after, "cordon_consumer_parked_events_total", **consumer) == 0, consumer
    # And README.md explains every one of them
    assert not undocumented(registry_after) | undocumented(checkpoint_after) | undocumented(views_after)


DIRECTORY = {"service": "checkpoint", "consumer": "checkpoint-directory"}
VIEWS = {"service": "views", "consumer": "views"}


async def applied(base: str, consumer: dict, at_least: int) -> bool:
    return (figure(await scrape(base), "cordon_consumer_applied_events_total", **consumer) or 0) >= at_least


async def caught_up(base: str, consumer: dict) -> bool:
    return figure(await scrape(base), "cordon_consumer_lag_events", **consumer) == 0


async def drained(base: str) -> bool:
    return figure(await scrape(base), "cordon_outbox_depth", service="registry") == 0


@pytest.mark.timeout(90)
async def test_readiness_follows_postgresql_while_liveness_holds(nats_url, tmp_path):
    # Given a PostgreSQL of the test's own (it is stopped) and the checkpoint on it, with its consumers
    postgres = EmbeddedPostgres(tmp_path / "pg", extra_settings=FAST_PG_SETTINGS)
    await postgres.start()
    try:
        dsn = await ensure_database(postgres.dsn, "cordon")
        port = free_port()
        async with (running(checkpoint_spec(), nats_url, dsn, **metrics_on(port)),
                    httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http):
            probe = Probe(http)
            ready = await probe.readyz()
            assert ready.status_code == 200, ready.text
            assert ready.json()["ok"] and ready.json()["service"] == "checkpoint"
            # When PostgreSQL stops
            await postgres.stop()
            # Then within a few seconds the service is not ready, and says it is PostgreSQL
            down = await eventually(probe.not_ready, timeout=5, what="readiness to go false")
            assert "postgresql" in down["not_ready"], down
            # And Prometheus still gets an answer (what needs PostgreSQL left out)
            assert (await http.get("/metrics")).status_code == 200
            # When PostgreSQL is back
            await postgres.start()
            # Then the service is ready again: PostgreSQL answers, NATS connected, consumers attached
            await eventually(probe.ready, timeout=20, what="readiness to come back")
            # And it was alive throughout
            assert probe.alive == probe.asked and probe.asked > 2
    finally:
        await postgres.stop()


class Probe:
    """An orchestrator's probes: each readiness look asks liveness too."""

    def __init__(self, http: httpx.AsyncClient):
        self.http = http
        self.asked = self.alive = 0

    async def readyz(self) -> httpx.Response:
        ready, live = await asyncio.gather(self.http.get("/readyz"), self.http.get("/livez"))
        self.asked += 1
        self.alive += live.status_code == 200
        return ready

    async def not_ready(self) -> dict | None:
        reply = await self.readyz()
        return reply.json() if reply.status_code == 503 else None

    async def ready(self) -> bool:
        return (await self.readyz()).status_code == 200


async def test_the_gateway_counts_its_requests_by_route_and_status(nats_url):
    # Given the web gateway
    async with gateway(nats_url) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        # When staff log in, someone sends a token that is not one, and someone asks for a path
        # that does not exist
        headers = await login(http, creds(nats_url, Identity(name="li-wei", role="staff", scope=NANGONG))[1])
        refused = await http.post("/v1/commands/registry/register_compound", json={},
                                  headers={"authorization": "Bearer not-a-token"})
        assert refused.status_code == 401
        assert (await http.get("/v1/nothing/here")).status_code == 404
        # Then its /metrics counts each by route and status, times them and counts the session
        reply = await http.get("/metrics")
        assert reply.status_code == 200 and headers
        figures = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(reply.text) for s in family.samples}
    assert figure(figures, "cordon_web_requests_total", route="/v1/tokens", status="201") == 1
    assert figure(figures, "cordon_web_requests_total", route="/v1/commands/{service}/{command}", status="401") == 1
    assert figure(figures, "cordon_web_requests_total", route="unmatched", status="404") == 1
    assert figure(figures, "cordon_web_request_duration_seconds_count", route="/v1/tokens") == 1
    assert figure(figures, "cordon_web_sessions") == 1
    assert not undocumented(figures)
