"""The registry's composition root: what the service is, wired explicitly."""
from __future__ import annotations

import asyncio
from functools import partial

from services.registry import commands, copies, domain, handlers, migrate, queries, retention, tables
from services.registry.config import Config, from_env
from services.registry.keys import KeyStore
from shared.runtime import CommandSpec
from shared.service import ServiceSpec


def spec(config: Config | None = None, keys: KeyStore | None = None) -> ServiceSpec:
    """The registry service with ``config`` and ``keys`` (None: from the process environment, when
    the service starts: ``CORDON_MASTER_KEY`` / ``CORDON_MASTER_KEY_FILE``, ``CORDON_KEYS_DSN``)."""
    config = from_env() if config is None else config
    keys = KeyStore() if keys is None else keys  # the master key is read when the service starts
    return ServiceSpec(
        name="registry",
        commands=CommandSpec.of(
            commands, handlers, domain, config,
            validate=partial(commands.validate, config=config),
            scratch=partial(handlers.Scratch, keys=keys),
        ),
        extra_ddl=tables.DDL + copies.DDL,
        consumers=[copies.consumer()],  # the quarantine's cases, for the retention of residents
        queries={**queries.QUERIES, "registry.contact": queries.contact(keys)},
        on_start=[_open_key_store(keys)],
        background=[_close_key_store(keys), retention.background(config)],
    )


def _open_key_store(keys: KeyStore):
    async def open_key_store(host) -> None:
        """Before the registry takes commands: open the key store, seal what an older registry
        left in plaintext, re-wrap what an earlier master key wrapped (a rotation). A key store
        that cannot open leaves the registry up, answering what needs a key ``unavailable``."""
        try:
            await keys.open(host.config.pg_dsn)
        except Exception:  # kept by the store, logged, said in every refusal
            return
        await migrate.seal_plaintext(host.pool, keys)
        await keys.rotate()

    return open_key_store


def _close_key_store(keys: KeyStore):
    async def close_key_store(host) -> None:
        """Close the key store's pool when the service stops."""
        try:
            await asyncio.Event().wait()
        finally:
            await keys.close()

    return close_key_store
