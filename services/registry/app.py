"""The registry's composition root: what the service is, wired explicitly."""
from __future__ import annotations

from functools import partial

from services.registry import commands, copies, domain, handlers, migrate, queries, retention, tables, worklists
from services.registry.config import Config, from_env
from services.registry.keys import KeyStore
from shared import keystore
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
        queries={**queries.QUERIES, "registry.contact": queries.contact(keys), **worklists.QUERIES},
        # before the registry takes commands: its keys, the plaintext of a registry of before sealed
        on_start=[keystore.opener(keys, migrate.seal_plaintext)],
        background=[keystore.closer(keys), retention.background(config)],
    )

