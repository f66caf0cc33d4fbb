"""The logistics service's composition root: what the service is, wired explicitly."""
from __future__ import annotations

from functools import partial

from services.logistics import domain, queries, reactions, tables
from services.logistics import commands
from services.logistics.handlers import Handlers
from services.logistics.rules import Rules
from services.logistics.scheduler import daily_requests
from shared import directory
from shared.runtime import CommandSpec
from shared.service import ServiceSpec

#: How often the scheduler looks for households whose food for today is not yet requested.
DAILY_INTERVAL_S = 60.0


def spec(rules: Rules | None = None, daily_interval_s: float = DAILY_INTERVAL_S) -> ServiceSpec:
    rules = rules or Rules()
    handlers = Handlers(rules)
    return ServiceSpec(
        name=tables.SCHEMA,
        commands=CommandSpec(
            types=commands.COMMANDS,
            decode=commands.decode,
            validate=partial(commands.validate, rules=rules),
            creates=commands.CREATES,
            handlers=handlers.table(),
            evolve=domain.evolve,
            prefetch=handlers.prefetch,
            scratch=dict,
        ),
        extra_ddl=tables.DDL,
        consumers=[directory.consumer(tables.SCHEMA), reactions.seal_consumer()],
        reactions=[reactions.case_reaction()],
        queries=queries.queries(rules),
        background=[daily_requests(rules, daily_interval_s)],
    )
