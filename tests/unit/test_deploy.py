"""The deployment files agree with the code: every service is deployed, NATS configs are valid."""
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import SERVICES

DEPLOY = Path(__file__).parents[2] / "deploy"


@pytest.mark.parametrize("conf", sorted((DEPLOY / "nats").glob("*.conf")), ids=lambda p: p.name)
def test_each_nats_config_is_valid(conf):
    nats_server = Path(sys.executable).parent / "nats-server"
    result = subprocess.run([str(nats_server), "-t", "-c", str(conf)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_is_in_the_compose_file_and_has_a_kubernetes_deployment(service):
    compose = (DEPLOY / "compose.yaml").read_text()
    assert f'command: ["service", "{service}"]' in compose
    manifest = DEPLOY / "k8s" / f"{service}.yaml"
    assert manifest.exists() and f'args: ["service", "{service}"]' in manifest.read_text()
