"""The checkpoint's settings, read from the environment here and nowhere else.

| variable | default | meaning |
| --- | --- | --- |
| ``CORDON_FEVER_C`` | 37.3 | a temperature at or above it is a fever |
| ``CORDON_VISITORS_ADMITTED`` | open | control levels at which visitors may come in (``open``, ``open,closed``, or empty) |
| ``CORDON_TIMEZONE`` | Asia/Shanghai | the city's time zone: the local day of the shift figures |
"""
from __future__ import annotations

import os
from dataclasses import dataclass
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
    #: The city's time zone: the day a shift counts on.
    zone: ZoneInfo = ZoneInfo(DEFAULT_ZONE)

    def __post_init__(self):
        if not 35.0 <= self.fever_c <= 42.0:
            raise ValueError(f"fever threshold {self.fever_c} °C is not a plausible threshold (35 to 42)")
        if not self.visitors_admitted <= {"open", "closed"}:
            raise ValueError("visitors may be admitted at levels open and closed only, never sealed")


def from_env(env: Mapping[str, str] | None = None) -> Config:
    """The settings in ``env`` (None: the process environment); SystemExit on a bad value."""
    env = os.environ if env is None else env
    zone = city_zone(env)
    try:
        fever = float(env.get("CORDON_FEVER_C") or 37.3)
        levels = env.get("CORDON_VISITORS_ADMITTED", "open")
        admitted = frozenset(x.strip() for x in levels.split(",") if x.strip())
        return Config(fever_c=fever, visitors_admitted=admitted, zone=zone)
    except ValueError as exc:
        raise SystemExit(f"checkpoint policy: {exc}") from None
