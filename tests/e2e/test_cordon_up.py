"""`cordon up` as an operator runs it: ready line, health, data kept across restarts, clean stop;
secure by default (operator-mode NATS, the services' own credentials, the operators' admin.creds
that the CLI uses by default)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys

import asyncpg
import httpx
import nats
import psutil
import pytest

from shared.auth import Authority
from shared.embedded import free_port
from tests.support.bus import connect, remember
from tests.support.cordon import COMMUNITY

pytestmark = pytest.mark.integration


async def start_up(data_dir, nats_port, pg_port, web_port=0, metrics_port=0):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORDON_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "up", "--data-dir", str(data_dir),
        "--nats-port", str(nats_port), "--pg-port", str(pg_port), "--web-port", str(web_port),
        "--metrics-port", str(metrics_port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
    )
    lines = []
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line, f"cordon up exited early: {lines}"
        lines.append(line)
        if line.startswith("cordon: ready"):
            return proc, lines


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive TCP ports free on the loopback now."""
    for _ in range(100):
        base = free_port()
        if base + count <= 65535 and all(_free(base + i) for i in range(1, count)):
            return base
    raise AssertionError(f"no {count} consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


async def stop(proc, sig=signal.SIGINT) -> list[str]:
    children = descendants(proc.pid)
    assert {c.name() for c in children} >= {"nats-server", "postgres"}
    proc.send_signal(sig)
    rest = (await asyncio.wait_for(proc.stdout.read(), 60)).decode()
    assert await proc.wait() == 0
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
    return rest.splitlines()


async def request(url: str, subject: str, body: dict) -> dict:
    nc = await connect(url)
    try:
        return json.loads((await nc.request(subject, json.dumps(body).encode(), timeout=5)).data)
    finally:
        await nc.close()


async def cli(*argv: str, data_dir, **more: str) -> tuple[int, str]:
    """A `cordon` command as an operator types it: no CORDON_* variable but the data dir (and ``more``)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CORDON_")}, "CORDON_DATA_DIR": str(data_dir),
           **more}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", *argv, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode()


async def each_service_is_its_own_role(admin_dsn: str, auth) -> None:
    """Least privilege in PostgreSQL: each service connected as its own role (its password kept
    0600 under auth/pg), the registry's schema its own, the residents unreadable by another role."""
    assert {p.name: p.stat().st_mode & 0o777 for p in (auth / "pg").iterdir()} == {
        f"{name}.password": 0o600 for name in ("registry", "checkpoint", "quarantine", "logistics", "views", "audit")}
    conn = await asyncpg.connect(admin_dsn)
    try:
        users = {r[0] for r in await conn.fetch("SELECT usename FROM pg_stat_activity WHERE datname = 'cordon'")}
        assert {f"cordon_{name}" for name in ("registry", "checkpoint", "quarantine", "logistics", "views",
                                              "audit")} <= users, users
        assert await conn.fetchval("SELECT tableowner FROM pg_tables WHERE schemaname = 'registry' "
                                   "AND tablename = 'residents'") == "cordon_registry"
        await conn.execute("SET ROLE cordon_checkpoint")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT count(*) FROM registry.residents")
    finally:
        await conn.close()


async def test_cordon_up_serves_keeps_its_data_and_stops_cleanly(tmp_path):
    nats_port, pg_port, web_port, metrics_port = free_port(), free_port(), free_port(), free_ports(6)
    url = f"nats://127.0.0.1:{nats_port}"
    proc, lines = await start_up(tmp_path / "data", nats_port, pg_port, web_port, metrics_port)
    assert any(url in line for line in lines)
    # Each service's metrics and probes on a port of its own, said where
    assert f"cordon: metrics    http://127.0.0.1:{metrics_port}/metrics (registry) … {metrics_port + 5} (audit); " \
           "/livez, /readyz\n" in lines
    async with httpx.AsyncClient(timeout=10) as http:
        figures = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert figures.status_code == 200 and 'cordon_commands_total{' in figures.text
        audit = await http.get(f"http://127.0.0.1:{metrics_port + 5}/readyz")
        assert audit.status_code == 200 and audit.json()["service"] == "audit", audit.text
    assert any(f"http://127.0.0.1:{web_port}/" in line for line in lines)
    assert "web" in lines[-1]  # ready waits for the gateway too
    assert any(f"127.0.0.1:{pg_port}" in line for line in lines)
    # Secure by default: the operators' credentials are written (0600) and said where
    auth = tmp_path / "data" / "auth"
    admin = auth / "admin.creds"
    assert any(str(admin) in line for line in lines)
    assert admin.stat().st_mode & 0o777 == 0o600 and auth.stat().st_mode & 0o777 == 0o700
    assert {p.name for p in (auth / "services").iterdir()} == {
        f"{name}.creds" for name in ("registry", "checkpoint", "quarantine", "logistics", "views", "audit", "web")}
    remember(url, Authority.open(auth))
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):  # no credentials, no connection
        await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
    # The CLI connects with admin.creds by default
    code, out = await cli("health", "--nats-url", url, data_dir=tmp_path / "data")
    assert code == 0 and '"registry"' in out, out

    compound = {"command_id": "c-1", "actor": "staff:li-wei", "community": COMMUNITY,
                "compound": "nangong-1", "name": "南宫小区", "buildings": ["b1"], "gates": ["g1"]}
    first = await request(url, "cordon.cmd.registry.register_compound", compound)
    assert first["ok"]
    health = await request(url, "cordon.qry.health", {})
    [registry] = health["services"]["registry"]
    assert health["ok"] and "outbox_depth" in registry
    # A committee's staff, issued creds by the operators, send a command over HTTP
    code, out = await cli("identity", "add", "--role", "staff", "--community", COMMUNITY, "--name", "li-wei",
                          "--out", str(tmp_path / "li-wei.creds"), data_dir=tmp_path / "data", CORDON_NATS_URL=url)
    assert code == 0, out
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=10) as http:
        token = await http.post("/v1/tokens", content=(tmp_path / "li-wei.creds").read_text(),
                                headers={"content-type": "text/plain"})
        assert token.status_code == 201, token.text
        household = await http.post("/v1/commands/registry/register_household", json={
            "community": COMMUNITY, "compound": "nangong-1", "building": "b1", "address": "b1-101"},
            headers={"authorization": f"Bearer {token.json()['token']}", "idempotency-key": "h-1"})
        assert household.status_code == 200, household.text
        assert household.json()["events"][0]["actor"] == "staff:li-wei"
    await each_service_is_its_own_role(f"postgresql://postgres@127.0.0.1:{pg_port}/cordon", auth)
    assert any("each service connects as its own role" in line and str(auth / "pg") in line for line in lines)
    assert "cordon: stopped" in await stop(proc)

    proc, _ = await start_up(tmp_path / "data", nats_port, pg_port)
    assert await request(url, "cordon.cmd.registry.register_compound", compound) == first
    again = await request(url, "cordon.cmd.registry.register_compound", {**compound, "command_id": "c-2"})
    assert again["error"]["code"] == "conflict"  # the compound is still registered
    await stop(proc, signal.SIGTERM)
