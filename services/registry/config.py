"""The registry's settings, and the one place that would read them from the environment."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True, kw_only=True)
class Config:
    """The registry has no settings of its own today: none of its rules reads one. It is here so
    that the registry is wired like every command service (``CommandSpec.config``, ``ctx.config``)
    and a first setting has its place."""


def from_env(env: Mapping[str, str] | None = None) -> Config:
    """The registry's :class:`Config` from ``env`` (None: the process environment, as for
    ``shared.config.city_zone``). The registry reads nothing from either today."""
    return Config()
