"""Every command service has the same rooms, and the same shape in each (README: "One shape for
every command service"). A newcomer who has read one service finds any rule in the others where
the template says it is; this fails when a service drifts from it."""
from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

from shared.runtime import CommandSpec
from shared.service import ServiceSpec

COMMAND_SERVICES = ("registry", "checkpoint", "quarantine", "logistics")
SERVICES = Path(__file__).resolve().parents[2] / "services"

#: room -> what must be in it
REQUIRED = {
    "commands": ("COMMANDS", "CREATES", "decode", "validate", "parse"),
    "domain": ("evolve",),
    "decide": ("Facts", "decide"),
    "handlers": ("HANDLERS", "prefetch"),
    "tables": ("DDL",),
    "config": ("Config", "from_env"),
    "app": ("spec",),
}
#: Optional rooms, each with one role: reactions to other services' events, queries, background
#: work on the clock, local copies of other services' facts (beside the shared directory).
OPTIONAL = ("reactions", "queries", "scheduler", "copies")
#: Names that misled: "policies" were reactions, "rules" configuration, "views" a local copy.
FORBIDDEN = ("policies", "rules", "views")


def room(service: str, name: str):
    return importlib.import_module(f"services.{service}.{name}")


@pytest.mark.parametrize("service", COMMAND_SERVICES)
def test_every_required_room_is_there_with_what_it_holds(service):
    for name, members in REQUIRED.items():
        assert (SERVICES / service / f"{name}.py").is_file(), f"services/{service}/{name}.py is missing"
        module = room(service, name)
        for member in members:
            assert hasattr(module, member), f"services/{service}/{name}.py has no {member}"


@pytest.mark.parametrize("service", COMMAND_SERVICES)
def test_no_room_has_a_misleading_name(service):
    for name in FORBIDDEN:
        assert not (SERVICES / service / f"{name}.py").exists(), (
            f"services/{service}/{name}.py: use the template's rooms ({', '.join([*REQUIRED, *OPTIONAL])})")


@pytest.mark.parametrize("service", COMMAND_SERVICES)
def test_the_handler_table_is_module_functions_one_per_command(service):
    commands, handlers = room(service, "commands"), room(service, "handlers")
    assert list(handlers.HANDLERS) == list(commands.COMMANDS), "one handler per command, in the same order"
    for name, handler in handlers.HANDLERS.items():
        assert inspect.iscoroutinefunction(handler), f"{name}: not an async function"
        assert handler.__module__ == handlers.__name__, f"{name}: defined outside handlers.py"
        assert "." not in handler.__qualname__, f"{name}: a method or closure ({handler.__qualname__}), not a module function"
        assert list(inspect.signature(handler).parameters) == ["cmd", "ctx"], f"{name}: takes (cmd, ctx)"


@pytest.mark.parametrize("service", COMMAND_SERVICES)
def test_the_composition_root_wires_the_rooms(service):
    app, commands, handlers = room(service, "app"), room(service, "commands"), room(service, "handlers")
    config, domain = room(service, "config"), room(service, "domain")
    spec = app.spec(config.from_env({}))
    assert isinstance(spec, ServiceSpec) and spec.name == service
    assert isinstance(spec.commands, CommandSpec)
    assert spec.commands.types is commands.COMMANDS
    assert spec.commands.creates is commands.CREATES
    assert spec.commands.handlers is handlers.HANDLERS
    assert spec.commands.evolve is domain.evolve
    assert isinstance(spec.commands.config, config.Config)
    scratch = spec.commands.scratch()
    assert scratch is None or type(scratch) is getattr(handlers, "Scratch", None), (
        "the per-batch scratch is a typed object (handlers.Scratch), not a dict of string keys")


READS_SETTINGS = re.compile(r"""os\.environ|os\.getenv|city_zone\(|(\.get\(|\[)\s*["']CORDON_""")


@pytest.mark.parametrize("service", COMMAND_SERVICES)
def test_settings_are_read_in_config_py_only(service):
    for path in (SERVICES / service).glob("*.py"):
        if path.name != "config.py":
            found = READS_SETTINGS.search(path.read_text(encoding="utf-8"))
            assert found is None, f"services/{service}/{path.name} reads settings ({found[0]}); config.py is the one place"
