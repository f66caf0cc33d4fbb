"""The auto-release policy (``CORDON_AUTO_RELEASE``, off by default): pure, no I/O, no clock.

A home case is released by the scheduler, on its planned last day, when each of its last
``auto_release_checkins`` days (that last day included) has a check-in recorded and nothing
abnormal: no SymptomsReported (fever or symptoms) and no CheckinMissed. Anything else is left to
staff, and the case stays on the committee's due-for-release list (``quarantine.due_for_release``):

- centralized quarantine (the site's staff release), monitoring (the scheduler closes it after
  its last day anyway), hospital;
- a case past its planned last day: someone already decided to keep it, or nobody looked; a
  person decides, not a late tick;
- fewer check-in days than the policy asks (a case whose check-ins started late).

Today's check-in not recorded yet is "not yet": the next tick looks again, and after the day's
check-in hour the sweep records it missed, which settles it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Mapping

from services.quarantine.config import Config
from services.quarantine.domain import Case

#: The actor of the releases the policy makes: the audit log shows them as the system's, not staff's.
ACTOR = "system:auto-release"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckinDay:
    """What one day's check-in stream of a case holds, by its events' types."""

    checked_in: bool = False
    abnormal: bool = False
    missed: bool = False

    @classmethod
    def of(cls, types: set[str]) -> "CheckinDay":
        return cls(checked_in="CheckinRecorded" in types, abnormal="SymptomsReported" in types,
                   missed="CheckinMissed" in types)


def window(case: Case, config: Config) -> list[date]:
    """The check-in days the policy looks at: the last ``auto_release_checkins`` up to the planned end."""
    n = config.auto_release_checkins
    return [case.ends_on - timedelta(days=n - 1 - i) for i in range(n)]


def leave_to_staff(case: Case, days: Mapping[date, CheckinDay], today: date, config: Config) -> str | None:
    """Why the policy does not release ``case`` today (a short reason, logged), or None to release it
    on ``today``. ``days`` maps the :func:`window` days to what their streams hold (a day absent:
    nothing recorded)."""
    if not config.auto_release:
        return "policy_off"
    if case.closed or case.stage != "home":
        return "not_home_quarantine"
    if today != case.ends_on:
        return "not_the_planned_last_day"
    looked_at = window(case, config)
    if looked_at[0] < case.due_from:
        return "too_few_checkins"
    for day in looked_at:
        record = days.get(day, CheckinDay())
        if record.missed:
            return "missed"
        if record.abnormal:
            return "abnormal"
        if not record.checked_in:
            return "not_checked_in"
    return None
