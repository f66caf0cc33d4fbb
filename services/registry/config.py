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
    #: Days a resident who moved out, with every quarantine case closed, is kept before their
    #: personal data is shredded (``CORDON_RESIDENT_RETENTION_DAYS``). 180: well past any episode's
    #: follow-up (a 14-day quarantine, 7 days of monitoring, a 28-day tracing window, an appeal or a
    #: return after a temporary move), short of keeping a register of everyone who ever lived here.
    resident_retention_days: int = 180
    #: How often the retention scheduler looks at the clock (it shreds once a city day).
    retention_interval_s: float = 3600.0

    def day(self, at):
        """The city's calendar day of an instant."""
        return at.astimezone(self.zone).date()


def from_env(env: Mapping[str, str] | None = None) -> Config:
    """The registry's :class:`Config` from ``env`` (None: the process environment)."""
    env = os.environ if env is None else env
    return Config(zone=city_zone(env), resident_retention_days=_days(env, "CORDON_RESIDENT_RETENTION_DAYS", 180))


def _days(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or ""
    if not raw.strip():
        return default
    try:
        days = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a whole number of days") from None
    if days < 1:
        raise SystemExit(f"{name}={raw!r}: at least 1 day")
    return days

