"""The registry's settings, and the one place that reads them from the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping
from zoneinfo import ZoneInfo

from shared.config import DEFAULT_ZONE, city_zone


@dataclass(frozen=True, kw_only=True)
class Config:
    """The registry's settings."""

    #: The city's zone (``CORDON_TIMEZONE``): the day of a command, against which an arrival date
    #: is checked.
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_ZONE))

    def day(self, at):
        """The city's calendar day of an instant."""
        return at.astimezone(self.zone).date()


def from_env(env: Mapping[str, str] | None = None) -> Config:
    """The registry's :class:`Config` from ``env`` (None: the process environment)."""
    return Config(zone=city_zone(os.environ if env is None else env))

