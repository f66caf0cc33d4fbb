"""The logistics service's composition root: what the service is, wired explicitly."""
from __future__ import annotations

from functools import partial

from services.logistics import domain, policies, queries, tables
from services.logistics.commands import COMMANDS, parse
from services.logistics.handlers import Handlers
from services.logistics.rules import Rules
from services.logistics.scheduler import daily_requests
from shared import directory
from shared.service import ServiceSpec

#: How often the scheduler looks for households whose food for today is not yet requested.
DAILY_INTERVAL_S = 60.0


def spec(rules: Rules | None = None, daily_interval_s: float = DAILY_INTERVAL_S) -> ServiceSpec:
    rules = rules or Rules()
    handlers = Handlers(rules)
    return ServiceSpec(
        name=tables.SCHEMA,
        commands=COMMANDS,
        parsers={name: partial(parse, name, rules=rules) for name in COMMANDS},
        handlers=handlers.table(),
        evolve=domain.evolve,
        prefetch=handlers.prefetch,
        extra_ddl=tables.DDL,
        consumers=[directory.consumer(tables.SCHEMA), policies.seal_consumer()],
        policies=[policies.case_policy()],
        queries=queries.queries(rules),
        background=[daily_requests(rules, daily_interval_s)],
    )
