"""The registry's composition root: what the service is, wired explicitly."""
from __future__ import annotations

from services.registry import commands, domain, handlers
from shared.runtime import CommandSpec
from shared.service import ServiceSpec


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="registry",
        commands=CommandSpec(
            types=commands.COMMANDS,
            decode=commands.decode,
            validate=commands.validate,
            creates=commands.CREATES,
            handlers=handlers.HANDLERS,
            evolve=domain.evolve,
            prefetch=handlers.prefetch,
            prepare_batch=handlers.prepare_batch,
            scratch=dict,
        ),
        extra_ddl=handlers.PII_DDL,
    )
