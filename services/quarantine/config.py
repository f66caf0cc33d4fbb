"""The quarantine service's settings as one value: the city's quarantine policy (durations, the
check-in hour, the fever threshold, where a positive test goes), the city's time zone, and the
scheduler's pace. Pure apart from :func:`from_env`, the one place the service reads its settings.

Days are the city's calendar days: "today" is the command's ``occurred_at`` in ``Config.zone``.

Environment: ``CORDON_QUARANTINE_DAYS`` (14), ``CORDON_MONITORING_DAYS`` (7),
``CORDON_CHECKIN_HOUR`` (18), ``CORDON_FEVER_C`` (37.3), ``CORDON_POSITIVE_KIND`` (centralized),
``CORDON_SEAL_DAYS_AFTER_SCREENING`` (2), the days a round keeps a sealed compound's seals after
its day, ``CORDON_AUTO_RELEASE`` (off; 1 turns it on) and ``CORDON_AUTO_RELEASE_CHECKINS`` (3), the
policy that releases a home case on its planned last day when that many last check-ins were normal,
``CORDON_TIMEZONE`` (Asia/Shanghai), ``CORDON_SCHEDULER_INTERVAL_S`` (30), how often the
scheduler looks at the clock, and ``CORDON_SWEEP_CHUNK`` (1000), the cases per transaction of the
missed-check-in sweep. Smaller chunks hold staff's late check-ins behind the sweep for less time
and make the sweep longer (100,000 cases, same machine and hour, late check-ins at 200/s: chunks
of 1,000 — sweep 4.7 s, late check-ins p50 117 ms, p99 400 ms; of 250 — 5.4 s, 46 ms, 118 ms).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Mapping
from zoneinfo import ZoneInfo

from services.quarantine.commands import MAX_MISSED_CASES
from shared.config import DEFAULT_ZONE, city_zone
from shared.contracts.quarantine import DEFAULT_FEVER_C


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    #: Days of home or centralized quarantine, the start day included (ends_on = start + days - 1).
    quarantine_days: int = 14
    #: Days of health monitoring after release, or of a monitoring case.
    monitoring_days: int = 7
    #: Local hour by which the day's check-in is due; after it a missing one is CheckinMissed.
    checkin_hour: int = 18
    #: A check-in at or over this temperature (°C) is abnormal: SymptomsReported.
    fever_c: float = DEFAULT_FEVER_C
    #: Where a positive test sends the resident when no case is open.
    positive_kind: str = "centralized"
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_ZONE))
    #: Seconds between the scheduler's looks at the clock.
    scheduler_interval_s: float = 30.0
    #: Cases per ``record_missed_checkins`` of the sweep (at most what the command accepts).
    sweep_chunk: int = 1000
    #: A screening round on a sealed compound keeps its seals until this many days after the
    #: round's day (its results are back by then): the seals' planned last day moves there.
    seal_days_after_screening: int = 2
    #: The scheduler releases a home case on its planned last day when its last check-ins were
    #: normal (:mod:`services.quarantine.autorelease`); off, every release is a staff decision.
    auto_release: bool = False
    #: How many last daily check-ins (the planned last day's included) must have been normal.
    auto_release_checkins: int = 3

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
        if not self.scheduler_interval_s > 0:
            raise ValueError(f"scheduler_interval_s must be more than 0, got {self.scheduler_interval_s}")
        if not 1 <= self.sweep_chunk <= MAX_MISSED_CASES:
            raise ValueError(f"sweep_chunk must be 1 to {MAX_MISSED_CASES}, got {self.sweep_chunk}")
        if not 0 <= self.seal_days_after_screening <= 30:
            raise ValueError(f"seal_days_after_screening must be 0 to 30, got {self.seal_days_after_screening}")
        if not 1 <= self.auto_release_checkins <= 14:
            raise ValueError(f"auto_release_checkins must be 1 to 14, got {self.auto_release_checkins}")

    def day(self, at: datetime) -> date:
        """The city's calendar day of an instant."""
        return at.astimezone(self.zone).date()

    def past_checkin_hour(self, at: datetime) -> bool:
        return at.astimezone(self.zone).time() >= time(self.checkin_hour)

    def deadline(self, day: date) -> datetime:
        """The instant the check-in of ``day`` is due."""
        return datetime.combine(day, time(self.checkin_hour), tzinfo=self.zone)

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


POLICY_ENV = {
    "quarantine_days": ("CORDON_QUARANTINE_DAYS", int),
    "monitoring_days": ("CORDON_MONITORING_DAYS", int),
    "checkin_hour": ("CORDON_CHECKIN_HOUR", int),
    "fever_c": ("CORDON_FEVER_C", float),
    "positive_kind": ("CORDON_POSITIVE_KIND", str),
    "seal_days_after_screening": ("CORDON_SEAL_DAYS_AFTER_SCREENING", int),
}


def from_env(env: Mapping[str, str] | None = None) -> Config:
    """The settings configured for this city (``env``, else the process environment); a bad value
    stops the service with a message naming the variable."""
    env = os.environ if env is None else env
    values: dict = {}
    for key, (name, conv) in POLICY_ENV.items():
        if env.get(name):
            try:
                values[key] = conv(env[name])
            except ValueError:
                raise SystemExit(f"{name}={env[name]!r} is not a valid {conv.__name__}") from None
    values["zone"] = city_zone(env)
    values["scheduler_interval_s"] = _number(env, "CORDON_SCHEDULER_INTERVAL_S", 30.0, float)
    values["sweep_chunk"] = _number(env, "CORDON_SWEEP_CHUNK", 1000, int, most=MAX_MISSED_CASES)
    values["auto_release"] = _switch(env, "CORDON_AUTO_RELEASE")
    values["auto_release_checkins"] = _number(env, "CORDON_AUTO_RELEASE_CHECKINS", 3, int, most=14)
    try:
        return Config(**values)
    except ValueError as exc:
        raise SystemExit(f"quarantine policy: {exc}") from None


def _number(env: Mapping[str, str], name: str, default, kind, most=None):
    try:
        value = kind(env.get(name) or default)
    except ValueError:
        raise SystemExit(f"{name} must be a number, not {env.get(name)!r}") from None
    if value <= 0 or (most is not None and value > most):
        raise SystemExit(f"{name} must be more than 0" + (f" and at most {most}" if most else ""))
    return value


def _switch(env: Mapping[str, str], name: str) -> bool:
    """An on/off setting: 1, true, yes or on; 0, false, no, off or unset."""
    value = (env.get(name) or "0").strip().lower()
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise SystemExit(f"{name} must be 1 (on) or 0 (off), not {env.get(name)!r}")
    return value in ("1", "true", "yes", "on")
