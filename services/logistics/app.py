"""The logistics service's composition root: what the service is, wired explicitly."""
from __future__ import annotations

from functools import partial

from services.logistics import commands, domain, handlers, queries, reactions, tables
from services.logistics.config import Config, from_env
from services.logistics.scheduler import daily_requests
from shared import directory
from shared.runtime import CommandSpec
from shared.service import ServiceSpec


def spec(config: Config | None = None) -> ServiceSpec:
    """The logistics service with ``config`` (None: the settings of the process environment)."""
    config = from_env() if config is None else config
    return ServiceSpec(
        name=tables.SCHEMA,
        commands=CommandSpec.of(
            commands, handlers, domain, config,
            validate=partial(commands.validate, config=config),
            prefetch=partial(handlers.prefetch, config=config),
        ),
        extra_ddl=tables.DDL,
        consumers=[directory.consumer(tables.SCHEMA), reactions.seal_consumer()],
        reactions=[reactions.case_reaction(), reactions.shift_reaction(config.zone)],
        queries={
            "logistics.requests": partial(queries.open_requests, config=config),
            "logistics.assignments": queries.assignments,
            "logistics.stock": queries.stock,
            "logistics.welfare": queries.welfare,
            "logistics.group_orders": queries.group_orders,
            "logistics.volunteer_hours": partial(queries.volunteer_hours, zone=config.zone),
            "logistics.vulnerable": partial(queries.vulnerable, zone=config.zone),
        },
        background=[daily_requests(config)],
    )
