"""The checkpoint's composition root: what the service is, wired explicitly. Its settings are
:mod:`services.checkpoint.config`."""
from __future__ import annotations

from functools import partial

from services.checkpoint import commands, copies, domain, handlers, migrate, queries, scheduler
from services.checkpoint.config import Config, from_env
from services.checkpoint.tables import DDL, SCHEMA
from shared import directory, keystore
from shared.keystore import KeyStore
from shared.runtime import CommandSpec
from shared.service import ServiceSpec


def spec(config: Config | None = None, keys: KeyStore | None = None) -> ServiceSpec:
    """The checkpoint service with ``config`` (None: the settings of the process environment) and
    the visitors' key store ``keys`` (None: the schema ``checkpoint`` of the key database, with the
    master key and ``CORDON_KEYS_DSN`` of the environment, read when the service starts)."""
    config = from_env() if config is None else config
    keys = KeyStore(SCHEMA) if keys is None else keys
    return ServiceSpec(
        name=SCHEMA,
        commands=CommandSpec.of(commands, handlers, domain, config, scratch=partial(handlers.Scratch, keys=keys)),
        extra_ddl=directory.ddl(SCHEMA) + copies.DDL + DDL,
        consumers=[directory.consumer(SCHEMA), copies.consumer()],
        queries={"checkpoint.shifts": partial(queries.shifts, zone=config.zone),
                 "checkpoint.visitor_contact": queries.visitor_contact(keys, config),
                 "checkpoint.parcels": queries.parcels},
        # the visitors' keys, and the plaintext of a checkpoint of before sealed, before any command
        on_start=[keystore.opener(keys, migrate.seal_plaintext)],
        background=[keystore.closer(keys), scheduler.background(config)],
    )

