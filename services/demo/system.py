"""Start a whole Cordon for the demo: embedded NATS + PostgreSQL (unless configured) and every
service as a child process, the way ``cordon up`` does, then stop it all. As ``cordon up`` does, the
embedded NATS runs in operator mode (the authority in ``<data dir>/auth``), each service has its
own credentials, and the demo talks to it as an operator (``admin.creds``).

This module STARTS the system, so it may use the start-up helpers (``shared.embedded``,
``shared.config``, ``services.supervisor.wait_ready``); what the demo then does goes through the
public message API only (see :mod:`services.demo.client`).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import AsyncIterator

from services.demo.client import Api
from shared.log import to_file
from services.supervisor import master_key_env, pg_env, service_env, service_roles, wait_ready
from shared.auth import Authority
from shared.embedded import EmbeddedNats, EmbeddedPostgres, ensure_database

DATABASE = "cordon"
#: Every service the demo needs, in start order; ``views`` answers the board and the report.
NAMES = ("registry", "checkpoint", "quarantine", "logistics", "views")
#: Until ``views`` is listed in ``services.cli.SERVICES``, ``cordon service views`` cannot start it:
#: this one-liner registers it first (the same spec function ``cordon up`` would call).
_BOOT = ("import sys; from services import cli; cli.SERVICES.setdefault(sys.argv[1], "
         "'services.' + sys.argv[1] + '.app:spec'); sys.exit(cli.main(['service', sys.argv[1]]))")


def service_argv(name: str) -> list[str]:
    from services.cli import SERVICES

    if name in SERVICES:
        return [sys.executable, "-m", "services.cli", "service", name]
    return [sys.executable, "-c", _BOOT, name]


async def _spawn(name: str, env: dict[str, str], log_dir: Path,
                 log_name: str | None = None) -> asyncio.subprocess.Process:
    """``cordon service NAME`` with ``env``; no metrics port unless ``env`` names one (several
    services on one machine would each claim the default)."""
    out = open(log_dir / f"{log_name or name}.log", "ab")
    try:
        return await asyncio.create_subprocess_exec(
            *service_argv(name), env={"CORDON_METRICS_PORT": "0", **env}, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            start_new_session=True)  # a terminal's Ctrl-C reaches the demo, which stops them
    finally:
        out.close()


async def _stop(proc: asyncio.subprocess.Process, timeout: float = 15.0) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def services(nats_url: str, pg_dsn: str, log_dir: Path, names=NAMES,
                   env: dict[str, str] | None = None, *, creds: str | None = None,
                   authority: Authority | None = None) -> AsyncIterator[None]:
    """Every service in ``names`` as a child process on the given servers, answering health. With
    ``authority`` (the NATS server's: Cordon's own servers), each service connects with its own
    credentials and as its own PostgreSQL role (as under `cordon up`; passwords beside the
    authority), else with ``creds`` and ``pg_dsn``; ``creds`` is what this process watches them with."""
    log_dir.mkdir(parents=True, exist_ok=True)
    # The demo replays 2020-02-17: its commands are years behind the services' clock. No metrics
    # ports: nothing scrapes the demo's services, and a `cordon up` may hold the default ones.
    child_env = {"CORDON_BACKDATE_DAYS": "0", **os.environ, "CORDON_METRICS_PORT": "0", **(env or {}),
                 "CORDON_NATS_URL": nats_url,
                 "CORDON_PG_DSN": pg_dsn, "CORDON_LOG_FORMAT": "json",
                 **({"CORDON_NATS_CREDS": creds} if creds else {}),
                 # the registry's master key, as cordon up makes it (beside the logs' data dir)
                 **master_key_env(log_dir.parent)}
    roles = await service_roles(pg_dsn, authority.path, list(names), True) if authority is not None else None
    procs = [await _spawn(name, pg_env(service_env(child_env, name, authority), name, roles), log_dir)
             for name in names]
    try:
        ready = asyncio.ensure_future(wait_ready(nats_url, list(names), timeout=90.0, creds=creds))
        died = [asyncio.ensure_future(p.wait()) for p in procs]
        done, _ = await asyncio.wait({ready, *died}, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            dead = [n for n, p in zip(names, procs) if p.returncode is not None]
            raise RuntimeError(f"service {', '.join(dead)} exited while starting; see {log_dir}")
        for task in died:
            task.cancel()
        ready.result()
        yield
    finally:
        await asyncio.gather(*(_stop(p) for p in procs), return_exceptions=True)


@contextlib.asynccontextmanager
async def embedded(data_dir: Path | None, log_name: str = "demo") -> AsyncIterator[tuple[EmbeddedNats, str, Path]]:
    """Embedded NATS (operator mode, the authority in ``data_dir/auth``) and PostgreSQL under
    ``data_dir`` (a temporary folder if None), on free ports: yields (nats_server, pg_dsn, data_dir).
    This process's log goes to ``data_dir/logs/<log_name>.log`` (see :func:`cordon`)."""
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="cordon-demo-")
        data_dir = Path(tmp.name)
    to_file(data_dir / "logs" / f"{log_name}.log")  # before the servers log that they started
    nats_server = EmbeddedNats(data_dir / "nats", authority=Authority.open(data_dir / "auth"))
    pg_server = EmbeddedPostgres(data_dir / "postgres")
    try:
        await nats_server.start()
        await pg_server.start()
        yield nats_server, await ensure_database(pg_server.dsn, DATABASE), data_dir
    finally:
        await pg_server.stop()
        await nats_server.stop()
        if tmp is not None:
            tmp.cleanup()


@contextlib.asynccontextmanager
async def cordon(nats_url: str | None, pg_dsn: str | None, data_dir: Path | None,
                 note=lambda line: None, creds: str | None = None,
                 log_name: str = "demo") -> AsyncIterator[tuple[str, str | None]]:
    """A Cordon to talk to: the running one at ``nats_url`` (reached with ``creds``), or a whole
    one started here; yields (its NATS URL, the credentials to talk to it with).

    With ``nats_url`` the services answering there are used; those of :data:`NAMES` that do not
    answer are started on ``nats_url`` and ``pg_dsn`` (an error without ``pg_dsn``). With neither,
    embedded servers are started too. Whatever was started here is stopped on exit. When it starts
    anything, this process's own log goes to ``<log_name>.log`` beside the services' logs (where a
    user-facing command logs rather than on the terminal, see :mod:`shared.log`)."""
    if nats_url:
        missing = await _missing(nats_url, creds)
        if not missing:
            note(f"using the running Cordon at {nats_url}")
            yield nats_url, creds
            return
        if not pg_dsn:
            raise RuntimeError(f"no {', '.join(missing)} service answers at {nats_url}: run `cordon up`, "
                               "or set CORDON_PG_DSN too and the demo starts them")
        note(f"starting {', '.join(missing)} on {nats_url}")
        to_file((data_dir or Path(".cordon")) / "logs" / f"{log_name}.log")
        async with services(nats_url, pg_dsn, (data_dir or Path(".cordon")) / "logs", missing, creds=creds):
            yield nats_url, creds
        return
    async with embedded(data_dir, log_name) as (server, dsn, folder):
        note(f"embedded NATS {server.url}, PostgreSQL under {folder}; starting {', '.join(NAMES)}")
        admin = str(server.authority.admin_creds())
        async with services(server.url, dsn, folder / "logs", creds=admin, authority=server.authority):
            yield server.url, admin


async def _missing(nats_url: str, creds: str | None) -> tuple[str, ...]:
    """The services of the demo that do not answer the health fan-out at ``nats_url``."""
    api = await Api.connect(nats_url, creds)
    try:
        answering = {status.get("service") for status in await api.health(wait=0.5)}
        return tuple(n for n in NAMES if n not in answering)
    finally:
        await api.close()
