"""The city's quarantine policy as one value: durations, the check-in hour, the fever threshold and
the city's time zone. Pure: the domain receives it, ``from_env`` is for the composition root.

Days are the city's calendar days: "today" is the command's ``occurred_at`` in ``Policy.tz``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TZ = "Asia/Shanghai"


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    #: Days of home or centralized quarantine, the start day included (ends_on = start + days - 1).
    quarantine_days: int = 14
    #: Days of health monitoring after release, or of a monitoring case.
    monitoring_days: int = 7
    #: Local hour by which the day's check-in is due; after it a missing one is CheckinMissed.
    checkin_hour: int = 18
    #: A check-in at or over this temperature (°C) is abnormal: SymptomsReported.
    fever_c: float = 37.3
    #: Where a positive test sends the resident when no case is open.
    positive_kind: str = "centralized"
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TZ))

    def __post_init__(self) -> None:
        if not 1 <= self.quarantine_days <= 90:
            raise ValueError(f"quarantine_days must be 1 to 90, got {self.quarantine_days}")
        if not 1 <= self.monitoring_days <= 90:
            raise ValueError(f"monitoring_days must be 1 to 90, got {self.monitoring_days}")
        if not 0 <= self.checkin_hour <= 23:
            raise ValueError(f"checkin_hour must be 0 to 23, got {self.checkin_hour}")
        if not 35.0 <= self.fever_c <= 42.0:
            raise ValueError(f"fever_c must be 35.0 to 42.0, got {self.fever_c}")
        if self.positive_kind not in ("home", "centralized"):
            raise ValueError(f"positive_kind must be home or centralized, got {self.positive_kind}")

    def day(self, at: datetime) -> date:
        """The city's calendar day of an instant."""
        return at.astimezone(self.tz).date()

    def past_checkin_hour(self, at: datetime) -> bool:
        return at.astimezone(self.tz).time() >= time(self.checkin_hour)

    def deadline(self, day: date) -> datetime:
        """The instant the check-in of ``day`` is due."""
        return datetime.combine(day, time(self.checkin_hour), tzinfo=self.tz)

    def quarantine_end(self, start: date) -> date:
        return start + timedelta(days=self.quarantine_days - 1)

    def monitoring_end(self, start: date) -> date:
        return start + timedelta(days=self.monitoring_days - 1)

    def end_for(self, kind: str, start: date) -> date:
        return self.monitoring_end(start) if kind == "monitoring" else self.quarantine_end(start)

    def first_due_day(self, starts_on: date, opened_at: datetime) -> date:
        """The first day a check-in is due: not before the start, and not on a day whose check-in
        hour had passed when the case was opened (the resident had no chance to report)."""
        opened = self.day(opened_at) + timedelta(days=1 if self.past_checkin_hour(opened_at) else 0)
        return max(starts_on, opened)


ENV = {
    "quarantine_days": ("CORDON_QUARANTINE_DAYS", int),
    "monitoring_days": ("CORDON_MONITORING_DAYS", int),
    "checkin_hour": ("CORDON_CHECKIN_HOUR", int),
    "fever_c": ("CORDON_FEVER_C", float),
    "positive_kind": ("CORDON_POSITIVE_KIND", str),
}


def from_env(env: Mapping[str, str]) -> Policy:
    """The policy configured for this city; a bad value stops the service with a clear message."""
    values: dict = {}
    for key, (name, conv) in ENV.items():
        if env.get(name):
            try:
                values[key] = conv(env[name])
            except ValueError:
                raise SystemExit(f"{name}={env[name]!r} is not a valid {conv.__name__}") from None
    if env.get("CORDON_TIMEZONE"):
        try:
            values["tz"] = ZoneInfo(env["CORDON_TIMEZONE"])
        except (ZoneInfoNotFoundError, ValueError):
            raise SystemExit(f"CORDON_TIMEZONE={env['CORDON_TIMEZONE']!r} is not a known time zone") from None
    try:
        return Policy(**values)
    except ValueError as exc:
        raise SystemExit(f"quarantine policy: {exc}") from None
