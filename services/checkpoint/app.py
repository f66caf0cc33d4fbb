"""The checkpoint's composition root: what the service is, wired explicitly.

Policy values from the environment (read here, once, and handed to the pure decision):

| variable | default | meaning |
| --- | --- | --- |
| ``CORDON_FEVER_C`` | 37.3 | a temperature at or above it is a fever |
| ``CORDON_VISITORS_ADMITTED`` | open | control levels at which visitors may come in (``open``, ``open,closed``, or empty) |
| ``CORDON_TZ`` | Asia/Shanghai | the local day of the shift figures |
"""
from __future__ import annotations

import os
from zoneinfo import ZoneInfo

from services.checkpoint import copies, domain, lookups, queries
from services.checkpoint import commands
from services.checkpoint.handlers import Checkpoint
from services.checkpoint.tables import DDL, SCHEMA
from services.checkpoint.passage import Policy
from shared import directory
from shared.runtime import CommandSpec
from shared.service import ServiceSpec


def policy_from_env(env: dict[str, str] | None = None) -> tuple[Policy, ZoneInfo]:
    env = dict(os.environ if env is None else env)
    try:
        fever = float(env.get("CORDON_FEVER_C") or 37.3)
        levels = env.get("CORDON_VISITORS_ADMITTED", "open")
        admitted = frozenset(x.strip() for x in levels.split(",") if x.strip())
        policy = Policy(fever_c=fever, visitors_admitted=admitted)
        tz = ZoneInfo(env.get("CORDON_TZ") or "Asia/Shanghai")
    except (ValueError, KeyError) as exc:
        raise SystemExit(f"checkpoint policy: {exc}") from None
    return policy, tz


def spec(policy: Policy | None = None, tz: ZoneInfo | None = None) -> ServiceSpec:
    env_policy, env_tz = policy_from_env()
    checkpoint = Checkpoint(policy or env_policy)
    return ServiceSpec(
        name=SCHEMA,
        commands=CommandSpec(
            types=commands.COMMANDS,
            decode=commands.decode,
            validate=commands.validate,
            creates=commands.CREATES,
            new_id=checkpoint.make_id,
            handlers=checkpoint.handlers(),
            evolve=domain.evolve,
            prefetch=checkpoint.prefetch,
            prepare_batch=lookups.prepare,
            scratch=dict,
        ),
        extra_ddl=directory.ddl(SCHEMA) + copies.DDL + DDL,
        consumers=[directory.consumer(SCHEMA), copies.consumer()],
        queries={"checkpoint.shifts": queries.shifts(tz or env_tz)},
    )
