"""The figures' rules that need no server: a reply's outcome code, labels a caller cannot grow,
where `cordon up` says the metrics are, and a metrics port already taken."""
from __future__ import annotations

import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client import generate_latest

from services.registry.app import spec as registry_spec
from services.supervisor import metrics_line, run_up
from shared.config import Config
from shared.context import Reply, encode_error, encode_ok
from shared.embedded import free_port
from shared.errors import CODES, CommandError
from shared.metrics import ServiceMetrics, outcome
from shared.probes import PortTaken
from shared.service import ServiceHost


@pytest.mark.parametrize("code", sorted(CODES))
def test_a_refusal_counts_under_its_error_code(code: str) -> None:
    refusal = type("Refusal", (CommandError,), {"code": code})
    assert outcome(encode_error(refusal("no", field="f", reason="r"))) == code


def test_an_accepted_reply_is_ok_and_anything_unreadable_internal() -> None:
    assert outcome(encode_ok(Reply(stream_id="s", version=1, events=[], extra=None))) == "ok"
    assert outcome(b'{"ok":false,"error":{"code":"made_up"}}') == "internal"
    assert outcome(b"") == "internal"


def test_commands_the_service_does_not_have_share_one_label() -> None:
    # Given a service's figures
    metrics = ServiceMetrics("registry", frozenset({"register_compound"}))
    # When callers send a hundred made-up command names
    for n in range(100):
        metrics.command(f"made-up-{n}", encode_error(CommandError("x")), time.perf_counter())
    # Then they count under one label, beside the commands the service has
    samples = [s for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
               if family.name == "cordon_commands" for s in family.samples]
    assert {(s.labels["command"], s.labels["code"], s.value) for s in samples} == {
        ("unknown", "internal", 100.0), ("register_compound", "ok", 0.0)}


def test_cordon_up_says_where_each_service_s_metrics_are() -> None:
    ports = {name: 9300 + i for i, name in enumerate(("registry", "checkpoint", "quarantine", "logistics",
                                                      "views", "audit"))}
    assert metrics_line("127.0.0.1", ports) == (
        "cordon: metrics    http://127.0.0.1:9300/metrics (registry) … 9305 (audit); /livez, /readyz")
    assert metrics_line("0.0.0.0", {"views": 9304}) == (
        "cordon: metrics    http://127.0.0.1:9304/metrics (views); /livez, /readyz")
    assert metrics_line("127.0.0.1", {"registry": 9300, "views": 9304}) == (
        "cordon: metrics    http://127.0.0.1:9300/metrics (registry), 9304 (views); /livez, /readyz")


def test_the_metrics_port_is_9300_from_the_environment_and_off_in_code() -> None:
    assert Config.from_env({}).metrics_port == 9300
    assert Config.from_env({"CORDON_METRICS_PORT": "0"}).metrics_port == 0
    assert Config.from_env({"CORDON_METRICS_PORT": "9400"}, metrics_port=9500).metrics_port == 9500
    assert Config().metrics_port == 0  # hosts a test starts in one process serve none unless told


@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


async def test_a_service_whose_metrics_port_is_taken_stops_saying_so(busy_port: int) -> None:
    # Given another process listening on the port (and no servers at all: the port comes first)
    host = ServiceHost(registry_spec(), Config(nats_url="nats://127.0.0.1:1", pg_dsn="postgresql://127.0.0.1:1/x",
                                               metrics_port=busy_port, metrics_host="127.0.0.1"))
    # When the service starts, then it stops at once, naming the port and the setting
    with pytest.raises(PortTaken, match=f"127.0.0.1:{busy_port} is in use.*CORDON_METRICS_PORT"):
        await host.start()


async def test_cordon_up_refuses_metrics_ports_in_use_before_starting_anything(busy_port: int, capsys,
                                                                              tmp_path) -> None:
    code = await run_up(Config(data_dir=tmp_path), 0, 0, ["registry", "checkpoint"], web_port=0,
                        metrics_ports={"registry": free_port(), "checkpoint": busy_port})
    assert code == 1
    err = capsys.readouterr().err
    assert f"metrics port {busy_port} on 127.0.0.1 in use" in err and "--metrics-port" in err, err
