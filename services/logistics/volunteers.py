"""Volunteers' teams and hours, and door-to-door visits, pure. :func:`services.logistics.decide.decide`
calls these with the facts it holds.

Hours count for the team the volunteer is in when they are recorded (the board sums them per team
and day). Staff record delivery runs, door-to-door visits and other work; gate shifts come from the
checkpoint's ShiftEnded (:mod:`services.logistics.reactions`), once per shift, and count for no team
(``team`` null) when the volunteer is not registered. Delivery hours are not derived from completed
deliveries: a delivery event says nothing of how long the run took.
"""
from __future__ import annotations

from datetime import date, datetime

from services.logistics.commands import RecordVisit, RecordVolunteerHours, RegisterVolunteer
from services.logistics.domain import HoursLog, Volunteer
from shared.contracts.logistics import VisitRecorded, VolunteerHoursRecorded, VolunteerRegistered
from shared.errors import NotFound, Rejected


def register(cmd: RegisterVolunteer, at: datetime, known: Volunteer | None) -> list[VolunteerRegistered]:
    if known is not None and (known.community, known.team, known.unit_kind) == (
            cmd.community, cmd.team, cmd.unit_kind):
        raise Rejected(f"{cmd.volunteer} is registered in team {cmd.team} already", reason="already_registered")
    moved = known.team if known is not None and known.team != cmd.team else None
    return [VolunteerRegistered(community=cmd.community, volunteer=cmd.volunteer, team=cmd.team,
                                unit_kind=cmd.unit_kind, previous_team=moved, registered_at=at,
                                registered_by=cmd.actor)]


def record_hours(cmd: RecordVolunteerHours, at: datetime, today: date, volunteer: Volunteer | None,
                 log: HoursLog | None) -> list[VolunteerHoursRecorded]:
    """``today``: the city's day of ``at``; hours are for a day that has begun."""
    if cmd.on > today:
        raise Rejected(f"hours for {cmd.on} cannot be recorded on {today}: that day has not begun",
                       field="on", reason="future_day")
    if volunteer is None and cmd.kind != "gate_shift":
        raise NotFound(f"volunteer {cmd.volunteer} is not registered: register_volunteer first (their team "
                       "and unit)", field="volunteer")
    if cmd.shift is not None and log is not None and cmd.shift in log.shifts:
        raise Rejected(f"the hours of shift {cmd.shift} are recorded already", field="shift",
                       reason="already_recorded")
    return [VolunteerHoursRecorded(
        community=cmd.community, volunteer=cmd.volunteer, on=cmd.on, kind=cmd.kind,
        hours=round(cmd.hours * 60) / 60, team=volunteer.team if volunteer else None,
        unit_kind=volunteer.unit_kind if volunteer else None, shift=cmd.shift,
        recorded_at=at, recorded_by=cmd.actor)]


def visit(cmd: RecordVisit, at: datetime, where: tuple[str, str, str] | None) -> list[VisitRecorded]:
    """``where``: the household's (community, compound, building), None when it is unknown."""
    if where is None:
        raise NotFound(f"household {cmd.household} is not registered (or not yet known to logistics)",
                       field="household")
    community, compound, building = where
    return [VisitRecorded(community=community, household=cmd.household, compound=compound, building=building,
                          outcome=cmd.outcome, volunteer=cmd.volunteer, visited_at=at, visited_by=cmd.actor)]
