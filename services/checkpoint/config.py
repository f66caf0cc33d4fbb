"""The checkpoint's settings, read from the environment here and nowhere else.

| variable | default | meaning |
| --- | --- | --- |
| ``CORDON_FEVER_C`` | 37.3 | a temperature at or above it is a fever |
| ``CORDON_VISITORS_ADMITTED`` | open | control levels at which visitors may come in (``open``, ``open,closed``, or empty) |
| ``CORDON_TIMEZONE`` | Asia/Shanghai | the city's time zone: the local day of the shift figures |
| ``CORDON_VISITOR_TRACING_DAYS`` | 28 | days a visitor's name and phone are kept for contact tracing: read only within them, shredded after |

The master key and the key database (``CORDON_MASTER_KEY`` / ``CORDON_MASTER_KEY_FILE``,
``CORDON_KEYS_DSN``) are the registry's too: :func:`shared.keystore.key_settings` reads them when
the service starts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Mapping
from zoneinfo import ZoneInfo

from shared.config import DEFAULT_ZONE, city_zone


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """What a deployment may set; the passage decision reads it as ``facts.config``."""

    #: At or above this, a fever (°C).
    fever_c: float = 37.3
    #: Control levels at which visitors may come in. Never ``sealed``.
    visitors_admitted: frozenset[str] = frozenset({"open"})
    #: The city's time zone: the day a shift counts on, the day the retention runs for.
    zone: ZoneInfo = ZoneInfo(DEFAULT_ZONE)
    #: Days a visitor's contact is kept for tracing: readable while the visit is that recent,
    #: shredded by the daily retention once a whole day of the city is older.
    tracing_days: int = 28
    #: How often the retention scheduler looks at the clock (s): it shreds once a day.
    retention_interval_s: float = 300.0

    def __post_init__(self):
        if not 35.0 <= self.fever_c <= 42.0:
            raise ValueError(f"fever threshold {self.fever_c} °C is not a plausible threshold (35 to 42)")
        if not self.visitors_admitted <= {"open", "closed"}:
            raise ValueError("visitors may be admitted at levels open and closed only, never sealed")
        if not 1 <= self.tracing_days <= 366:
            raise ValueError(f"CORDON_VISITOR_TRACING_DAYS {self.tracing_days} is not 1 to 366 days")

    def tracing_start(self, now: datetime) -> datetime:
        """The earliest visit whose contact may be read at ``now``."""
        return now - timedelta(days=self.tracing_days)

    def shred_before(self, now: datetime) -> datetime:
        """What the day's retention shreds: visits before the start of the city's day
        ``tracing_days`` ago (a whole day at a time, so a day's run is the same whenever it runs)."""
        today = now.astimezone(self.zone).date()
        return datetime.combine(today - timedelta(days=self.tracing_days), time(0), self.zone)


def from_env(env: Mapping[str, str] | None = None) -> Config:
    """The settings in ``env`` (None: the process environment); SystemExit on a bad value."""
    env = os.environ if env is None else env
    zone = city_zone(env)
    try:
        fever = float(env.get("CORDON_FEVER_C") or 37.3)
        levels = env.get("CORDON_VISITORS_ADMITTED", "open")
        admitted = frozenset(x.strip() for x in levels.split(",") if x.strip())
        tracing = int(env.get("CORDON_VISITOR_TRACING_DAYS") or 28)
        return Config(fever_c=fever, visitors_admitted=admitted, zone=zone, tracing_days=tracing)
    except ValueError as exc:
        raise SystemExit(f"checkpoint policy: {exc}") from None
