"""The registry's composition root: what the service is, wired explicitly."""
from __future__ import annotations

from functools import partial

from services.registry import commands, domain, handlers, queries, tables
from services.registry.config import Config, from_env
from shared.runtime import CommandSpec
from shared.service import ServiceSpec


def spec(config: Config | None = None) -> ServiceSpec:
    """The registry service with ``config`` (None: the settings of the process environment)."""
    config = from_env() if config is None else config
    return ServiceSpec(
        name="registry",
        commands=CommandSpec.of(
            commands, handlers, domain, config,
            validate=partial(commands.validate, config=config),
        ),
        extra_ddl=tables.DDL,
        queries=queries.QUERIES,
    )
