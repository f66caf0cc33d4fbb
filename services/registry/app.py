"""The registry's composition root: what the service is, wired explicitly."""
from __future__ import annotations

from functools import partial

from services.registry import domain, handlers
from services.registry.commands import COMMANDS, complete, parse
from shared.envelope import new_id
from shared.service import ServiceSpec


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="registry",
        commands=COMMANDS,
        parsers={name: partial(parse, name) for name in COMMANDS},
        handlers=handlers.HANDLERS,
        evolve=domain.evolve,
        prefetch=handlers.prefetch,
        prepare_batch=handlers.prepare_batch,
        complete=lambda cmd, now: complete(cmd, now=now, new_id=new_id),
        extra_ddl=handlers.PII_DDL,
    )
