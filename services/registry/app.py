"""The registry's composition root: what the service is, wired explicitly."""
from __future__ import annotations

from services.registry import commands, config as settings, domain, handlers, tables
from shared.runtime import CommandSpec
from shared.service import ServiceSpec


def spec(config: settings.Config | None = None) -> ServiceSpec:
    """The registry service; ``config`` defaults to the process environment's (``config.from_env``)."""
    if config is None:
        config = settings.from_env()
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
            scratch=handlers.Scratch,
            config=config,
        ),
        extra_ddl=tables.DDL,
    )
