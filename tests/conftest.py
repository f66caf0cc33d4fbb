"""Shared fixtures: embedded PostgreSQL (one per session), NATS and a 3-node NATS cluster (one per test), real servers."""
from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.embedded import EmbeddedNats, EmbeddedPostgres, ensure_database
from shared.embedded_cluster import EmbeddedNatsCluster
from tests.support.bus import creds_for, start_secure_cluster, start_secure_nats

# The registry seals personal data with a master key (shared/pii.py): one fixed test key for the
# services the tests start in process; `cordon up` makes its own under <data dir>/auth.
os.environ.setdefault("CORDON_MASTER_KEY", "Y29yZG9uLXRlc3QtbWFzdGVyLWtleS0zMi1ieXRlcyE=")

FAST_PG_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@pytest.fixture(scope="session")
async def pg_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedPostgres]:
    """One PostgreSQL for the whole session (fsync off: fast, not crash-safe)."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", extra_settings=FAST_PG_SETTINGS)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def pg_dsn(pg_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """DSN of a fresh, uniquely named database on `pg_server`; dropped afterwards (best effort)."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    dsn = await ensure_database(pg_server.dsn, name)
    yield dsn
    try:
        conn = await asyncpg.connect(pg_server.dsn)
        try:
            await conn.execute(f'drop database if exists "{name}" with (force)')
            await conn.execute(f'drop database if exists "{name}_keys" with (force)')  # the registry's keys
        finally:
            await conn.close()
    except Exception:
        pass


@pytest.fixture
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedNats]:
    """A fresh nats-server with JetStream per test, in operator mode with an authority of its own
    (``nats_server.authority``): no connection without credentials. The test may stop/kill/start it
    (same port, same store, same keys)."""
    server = await start_secure_nats(tmp_path_factory.mktemp("nats"))
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def nats_url(nats_server: EmbeddedNats) -> str:
    """URL of the per-test `nats_server`."""
    return nats_server.url


@pytest.fixture
def nats_creds(nats_server: EmbeddedNats) -> str:
    """Path of an operator identity's creds on `nats_server` (account CORDON, no limits)."""
    return creds_for(nats_server.url)


@pytest.fixture
async def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedNatsCluster]:
    """A fresh 3-node NATS cluster with JetStream per test, meta leader elected, in operator mode with
    an authority of its own (``nats_cluster.authority``); the test may kill and bring back nodes
    (same ports, same stores, same keys)."""
    cluster = await start_secure_cluster(tmp_path_factory.mktemp("nats-cluster"))
    try:
        yield cluster
    finally:
        await cluster.stop()
