"""The quarantine service's composition root: what the service is, wired explicitly.

Configuration (environment): the policy — ``CORDON_QUARANTINE_DAYS`` (14), ``CORDON_MONITORING_DAYS``
(7), ``CORDON_CHECKIN_HOUR`` (18), ``CORDON_FEVER_C`` (37.3), ``CORDON_POSITIVE_KIND`` (centralized),
``CORDON_TIMEZONE`` (Asia/Shanghai) — ``CORDON_SCHEDULER_INTERVAL_S`` (30), how often the
scheduler looks at the clock, and ``CORDON_SWEEP_CHUNK`` (1000), the cases per transaction of the
missed-check-in sweep. Smaller chunks hold staff's late check-ins behind the sweep for less time
and make the sweep longer (100,000 cases, same machine and hour, late check-ins at 200/s: chunks
of 1,000 — sweep 4.7 s, late check-ins p50 117 ms, p99 400 ms; of 250 — 5.4 s, 46 ms, 118 ms).
"""
from __future__ import annotations

import os
from typing import Mapping

from services.quarantine import domain, handlers, policies, queries, rules, scheduler, tables
from services.quarantine import commands
from shared import directory
from shared.runtime import CommandSpec
from shared.service import ServiceSpec

NAME = "quarantine"


def spec(policy: rules.Policy | None = None, interval: float | None = None,
         env: Mapping[str, str] | None = None) -> ServiceSpec:
    env = os.environ if env is None else env
    policy = policy or rules.from_env(env)
    if interval is None:
        interval = _number(env, "CORDON_SCHEDULER_INTERVAL_S", 30.0, float)
    chunk = _number(env, "CORDON_SWEEP_CHUNK", 1000, int, most=1000)  # record_missed_checkins' limit
    return ServiceSpec(
        name=NAME,
        commands=CommandSpec(
            types=commands.COMMANDS,
            decode=commands.decode,
            validate=commands.validate,
            handlers=handlers.build(policy),
            evolve=domain.evolve,
            prefetch=handlers.prefetch,
            prepare_batch=handlers.prepare_batch,
            scratch=dict,
            # The sweep's chunks are disjoint sets of cases, four in flight (Scheduler.in_flight):
            # some are decided while others commit. Measured: 2 writers 5.1–5.5 s, 4 writers 4.4–4.5 s
            # for 100,000 missed check-ins, alternating in one run.
            lanes={"record_missed_checkins": 4},
        ),
        extra_ddl=directory.ddl(NAME) + tables.DDL,
        consumers=[directory.consumer(NAME)],
        reactions=policies.build(policy),
        queries=queries.QUERIES,
        background=[scheduler.background(policy, interval, chunk)],
    )


def _number(env: Mapping[str, str], name: str, default, kind, most=None):
    try:
        value = kind(env.get(name) or default)
    except ValueError:
        raise SystemExit(f"{name} must be a number, not {env.get(name)!r}") from None
    if value <= 0 or (most is not None and value > most):
        raise SystemExit(f"{name} must be more than 0" + (f" and at most {most}" if most else ""))
    return value
