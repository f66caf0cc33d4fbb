"""`cordon up`: embedded servers (unless configured), every service as a child process, a ready
line once every service answers health, and a clean stop on SIGINT/SIGTERM with no orphans.

Each service serves /metrics, /livez and /readyz on a port of its own (``metrics_ports``), on
127.0.0.1 unless ``CORDON_METRICS_HOST`` says otherwise.

Secure by default: the embedded NATS runs in operator mode with the authority under
``<data dir>/auth`` (created on first start), each service connects with its own credentials
(``CORDON_NATS_CREDS`` in its environment) and ``<data dir>/auth/admin.creds`` is the operators'.
Likewise in PostgreSQL: each service connects as its own role, owning its schema alone
(:mod:`shared.pgroles`), with its password in ``<data dir>/auth/pg/<service>.password`` (0600,
made on first start); the DSN ``cordon up`` prints and uses itself is the administrator's."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import asyncpg
import nats

from shared import bus, pgroles, pii
from shared import log as logging
from shared.auth import Authority
from shared.config import Config, shown_dsn
from shared.embedded import EmbeddedNats, EmbeddedPostgres, ensure_database
from shared.service import gather_health

log = logging.get("up")
DATABASE = "cordon"


class Child:
    """One service process, restarted with backoff if it dies."""

    def __init__(self, name: str, env: dict[str, str], argv: list[str] | None = None):
        self.name = name
        self.env = env
        #: what ``cordon`` runs: ``service NAME`` unless given (the web gateway: ``web --port P``)
        self.argv = argv or ["service", name]
        self.proc: asyncio.subprocess.Process | None = None
        self.stopping = False
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        backoff = 0.5
        while not self.stopping:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.cli", *self.argv, env=self.env,
                start_new_session=True,  # Ctrl-C reaches us; we decide when children stop
            )
            code = await self.proc.wait()
            if self.stopping:
                return
            log.error("service.exited", service=self.name, code=code, restart_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    async def stop(self, timeout: float = 15.0) -> None:
        self.stopping = True
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.task:
            await asyncio.gather(self.task, return_exceptions=True)


async def wait_ready(url: str, names: list[str], timeout: float = 60.0, creds: str | None = None) -> dict:
    """Until every service in ``names`` answers health at ``url`` (connecting with ``creds``)."""
    nc = await nats.connect(bus.servers(url), max_reconnect_attempts=-1, **bus.credentials(creds))
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            health = await gather_health(nc, wait=0.3)
            if all(health["services"].get(n) for n in names):
                return health
            if asyncio.get_running_loop().time() > deadline:
                missing = [n for n in names if not health["services"].get(n)]
                raise RuntimeError(f"services not ready after {timeout}s: {', '.join(missing)}")
    finally:
        await nc.close()


def master_key_env(data_dir: Path) -> dict[str, str]:
    """The registry's master key (``shared.pii``): the environment's if it names one, else
    ``<data dir>/auth/master.key``, made (0600, random) on first start."""
    if os.environ.get("CORDON_MASTER_KEY") or os.environ.get("CORDON_MASTER_KEY_FILE"):
        return {}
    return {"CORDON_MASTER_KEY_FILE": str(pii.ensure_key_file(data_dir / "auth" / "master.key"))}


def service_env(env: dict[str, str], name: str, authority: Authority | None) -> dict[str, str]:
    """A service's environment: its own credentials when Cordon runs its own NATS (with external
    servers, whatever ``CORDON_NATS_CREDS`` the environment has)."""
    if authority is None:
        return env
    return {**env, "CORDON_NATS_CREDS": str(authority.service_creds(name))}


def pg_env(env: dict[str, str], name: str, roles: dict[str, Path] | None) -> dict[str, str]:
    """A child's PostgreSQL settings: its own role's DSN and password file when roles are on; the
    web gateway (no PostgreSQL) gets none; without roles, the one DSN as before."""
    if name not in pgroles.SERVICES:
        return {k: v for k, v in env.items() if k not in ("CORDON_PG_DSN", "CORDON_PG_PASSWORD_FILE")}
    if roles is None:
        return env
    return {**env, "CORDON_PG_DSN": pgroles.role_dsn(env["CORDON_PG_DSN"], name),
            "CORDON_PG_PASSWORD_FILE": str(roles[name])}


async def service_roles(pg_dsn: str, auth_dir: Path, names: list[str], embedded: bool) -> dict[str, Path] | None:
    """Provision every service's role (passwords kept in ``auth_dir/pg``); {service: password file}.
    With a server of its own it must work; with a configured one whose user may not create roles,
    `cordon up` says so and keeps the one DSN (None)."""
    services = [n for n in names if n in pgroles.SERVICES]
    passwords = pgroles.ensure_passwords(auth_dir, services)
    try:
        await pgroles.provision(pg_dsn, passwords, services)
    except asyncpg.InsufficientPrivilegeError as exc:
        if embedded:
            raise
        print(f"cordon: PostgreSQL roles not created ({exc}): every service connects with "
              f"CORDON_PG_DSN's user; give it CREATEROLE (or run `cordon db roles` as an "
              f"administrator) for a role per service", file=sys.stderr, flush=True)
        return None
    return {name: pgroles.password_file(auth_dir, name) for name in services}


async def wait_web(port: int, timeout: float = 60.0) -> None:
    """Until the web gateway answers ``/readyz`` (its NATS connection up)."""
    import httpx

    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"the web gateway did not answer on port {port} after {timeout}s")
            await asyncio.sleep(0.2)


def metrics_env(env: dict[str, str], port: int | None) -> dict[str, str]:
    """A service's environment with its metrics port (0: none) and address (loopback unless set)."""
    return {**env, "CORDON_METRICS_PORT": str(port or 0),
            "CORDON_METRICS_HOST": env.get("CORDON_METRICS_HOST") or "127.0.0.1"}


def taken(address: str, ports: list[int]) -> list[int]:
    """Those of ``ports`` another process listens on (checked before anything starts, so that
    `cordon up` says so once instead of a service failing to start again and again)."""
    busy = []
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError:
                busy.append(port)
    return busy


def metrics_line(address: str, ports: dict[str, int]) -> str:
    """``cordon: metrics    http://127.0.0.1:9300/metrics (registry) … 9305 (audit); /livez, /readyz``."""
    address = "127.0.0.1" if address in ("0.0.0.0", "") else address
    (first, port), *rest = ports.items()
    where = f"http://{address}:{port}/metrics ({first})"
    numbers = list(ports.values())
    if len(rest) > 1 and numbers == list(range(port, port + len(numbers))):
        where += f" … {numbers[-1]} ({rest[-1][0]})"
    else:
        where += "".join(f", {p} ({name})" for name, p in rest)
    return f"cordon: metrics    {where}; /livez, /readyz"


async def run_up(config: Config, nats_port: int, pg_port: int, names: list[str], web_port: int = 8080,
                 metrics_ports: dict[str, int] | None = None) -> int:
    """``metrics_ports``: each service's metrics port (services missing from it serve none)."""
    ports = {name: metrics_ports[name] for name in names if metrics_ports and name in metrics_ports}
    address = os.environ.get("CORDON_METRICS_HOST") or "127.0.0.1"
    if busy := taken(address, list(ports.values())):
        print(f"cordon: the metrics port{'s' if len(busy) > 1 else ''} {', '.join(map(str, busy))} on {address} "
              "in use by another process: choose other ports with --metrics-port BASE (or 0: none)",
              file=sys.stderr, flush=True)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    servers = []
    children: list[Child] = []
    try:
        nats_url, pg_dsn = config.nats_url, config.pg_dsn
        creds, authority = config.nats_creds, None
        if not nats_url:
            authority = Authority.open(config.data_dir / "auth")
            server = EmbeddedNats(config.data_dir / "nats", port=nats_port, authority=authority)
            await server.start()
            servers.append(server)
            nats_url, creds = server.url, str(authority.admin_creds())
        embedded_pg = not pg_dsn
        if embedded_pg:
            server = EmbeddedPostgres(config.data_dir / "postgres", port=pg_port)
            await server.start()
            servers.append(server)
            pg_dsn = await ensure_database(server.dsn, DATABASE)
        roles = await service_roles(pg_dsn, config.data_dir / "auth", names, embedded_pg)
        print(f"cordon: NATS       {nats_url}", flush=True)
        print(f"cordon: PostgreSQL {shown_dsn(pg_dsn)}", flush=True)
        if roles is not None:
            print(f"cordon: each service connects as its own role, cordon_<service> (passwords in "
                  f"{config.data_dir / 'auth' / 'pg'}); the DSN above is the administrator's", flush=True)
        if authority is not None:
            print(f"cordon: operator credentials {creds} (the cordon CLI's default; keep it secret)", flush=True)
        env = {**os.environ, "CORDON_NATS_URL": nats_url, "CORDON_PG_DSN": pg_dsn, **master_key_env(config.data_dir)}
        if ports:
            print(metrics_line(address, ports), flush=True)
        for name in names:
            child = Child(name, metrics_env(pg_env(service_env(env, name, authority), name, roles), ports.get(name)))
            child.task = asyncio.create_task(child.run())
            children.append(child)
        if web_port:
            print(f"cordon: web        http://127.0.0.1:{web_port}/ (the committee's live board; "
                  f"the HTTP API under /v1, described at /v1/openapi.json)", flush=True)
            web = Child("web", {**pg_env(service_env(env, "web", authority), "web", roles),
                                "CORDON_WEB_PORT": str(web_port)},
                        argv=["web"])
            web.task = asyncio.create_task(web.run())
            children.append(web)

        async def all_ready() -> None:
            await wait_ready(nats_url, names, creds=creds)
            if web_port:
                await wait_web(web_port)

        ready = asyncio.create_task(all_ready())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            ready.result()
            print(f"cordon: ready — {', '.join(names + (['web'] if web_port else []))} answering; Ctrl-C stops",
                  flush=True)
        else:
            ready.cancel()
        await stop.wait()
        print("cordon: stopping", flush=True)
        return 0
    except Exception as exc:
        log.exception("up.failed")
        print(f"cordon: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        await asyncio.gather(*(c.stop() for c in children), return_exceptions=True)
        for server in reversed(servers):
            await server.stop()
        print("cordon: stopped", flush=True)
