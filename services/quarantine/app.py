"""The quarantine service's composition root: what the service is, wired explicitly. Its settings
(the city's policy, time zone and the scheduler's pace) are :mod:`services.quarantine.config`."""
from __future__ import annotations

from services.quarantine import commands, domain, handlers, queries, reactions, scheduler, tables, worklists
from services.quarantine.config import Config, from_env
from shared import directory
from shared.runtime import CommandSpec
from shared.service import ServiceSpec

NAME = "quarantine"


def spec(config: Config | None = None) -> ServiceSpec:
    """The quarantine service with ``config`` (None: the settings of the process environment)."""
    config = from_env() if config is None else config
    return ServiceSpec(
        name=NAME,
        commands=CommandSpec.of(
            commands, handlers, domain, config,
            # The sweep's chunks are disjoint sets of cases, four in flight (Scheduler.in_flight):
            # some are decided while others commit. Measured: 2 writers 5.1–5.5 s, 4 writers 4.4–4.5 s
            # for 100,000 missed check-ins, alternating in one run.
            lanes={"record_missed_checkins": 4},
        ),
        extra_ddl=directory.ddl(NAME) + tables.DDL,
        consumers=[directory.consumer(NAME)],
        reactions=[reactions.arrivals(config), reactions.fevers(config)],
        queries={**queries.QUERIES, **worklists.queries_of(config)},
        background=[scheduler.background(config)],
    )
