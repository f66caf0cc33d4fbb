"""The checkpoint's composition root: what the service is, wired explicitly. Its settings are
:mod:`services.checkpoint.config`."""
from __future__ import annotations

from functools import partial

from services.checkpoint import commands, copies, domain, handlers, queries
from services.checkpoint.config import Config, from_env
from services.checkpoint.tables import DDL, SCHEMA
from shared import directory
from shared.runtime import CommandSpec
from shared.service import ServiceSpec


def spec(config: Config | None = None) -> ServiceSpec:
    """The checkpoint service with ``config`` (None: the settings of the process environment)."""
    config = from_env() if config is None else config
    return ServiceSpec(
        name=SCHEMA,
        commands=CommandSpec.of(commands, handlers, domain, config),
        extra_ddl=directory.ddl(SCHEMA) + copies.DDL + DDL,
        consumers=[directory.consumer(SCHEMA), copies.consumer()],
        queries={"checkpoint.shifts": partial(queries.shifts, zone=config.zone)},
    )
