"""The auto-release policy as stories: given a home case and what its last check-in days recorded,
when the scheduler looks on a day, then it releases the case or leaves it to staff, saying why.
Also how the policy is switched on (``CORDON_AUTO_RELEASE``)."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.quarantine import domain
from services.quarantine.autorelease import CheckinDay, leave_to_staff, window
from services.quarantine.config import Config, from_env
from shared.contracts.quarantine import CaseOpened, CaseReleased, CheckinMissed, CheckinRecorded, SymptomsReported

COMMUNITY = "changning.chengjiaqiao.nangong"
CITY = ZoneInfo("Asia/Shanghai")
DAY1 = date(2026, 11, 2)
ON = Config(auto_release=True)  # 14 days of quarantine, the last 3 check-ins looked at


def day(n: int) -> date:
    return DAY1 + timedelta(days=n - 1)


def home_case(kind: str = "home", due_from: int = 1) -> domain.Case:
    """Given a case opened on day 1 (planned last day: day 14)."""
    return domain.replay([CaseOpened(
        community=COMMUNITY, case="case-1", resident="r-wang", household="h-1", kind=kind, reason="arrival",
        starts_on=day(1), ends_on=day(14), opened_at=datetime.combine(day(1), datetime.min.time(), CITY),
        opened_by="staff:li-wei", checkins_due_from=day(due_from))])


def checked_in(n: int, *, fever: bool = False) -> list:
    at = datetime.combine(day(n), datetime.min.time(), CITY).replace(hour=9)
    events = [CheckinRecorded(community=COMMUNITY, case="case-1", resident="r-wang", on=day(n), recorded_at=at,
                              recorded_by="staff:li-wei")]
    if fever:
        events.append(SymptomsReported(community=COMMUNITY, case="case-1", resident="r-wang", on=day(n), fever=True,
                                       symptomatic=False, reported_at=at, reported_by="staff:li-wei"))
    return events


def missed(n: int) -> list:
    at = datetime.combine(day(n), datetime.min.time(), CITY).replace(hour=18, minute=30)
    return [CheckinMissed(community=COMMUNITY, case="case-1", resident="r-wang", on=day(n), missed_at=at,
                          missed_by="system:checkin-scheduler")]


def recorded(days: dict[int, list]) -> dict[date, CheckinDay]:
    """What the days' streams hold, read as the scheduler reads them: by their events' types."""
    return {day(n): CheckinDay.of({type(e).__name__ for e in events}) for n, events in days.items()}


NORMAL = {12: checked_in(12), 13: checked_in(13), 14: checked_in(14)}


def test_three_normal_check_ins_up_to_the_planned_last_day_release_the_case_that_day():
    assert window(home_case(), ON) == [day(12), day(13), day(14)]
    assert leave_to_staff(home_case(), recorded(NORMAL), day(14), ON) is None


def test_what_happened_before_the_last_check_ins_does_not_count():
    # a fever on day 5 and a missed day 11: the last three days were normal
    days = {5: checked_in(5, fever=True), 11: missed(11), **NORMAL}
    assert leave_to_staff(home_case(), recorded(days), day(14), ON) is None


@pytest.mark.parametrize("days, why", [
    ({**NORMAL, 13: checked_in(13, fever=True)}, "abnormal"),
    ({**NORMAL, 12: missed(12)}, "missed"),
    ({**NORMAL, 14: []}, "not_checked_in"),  # today's not recorded yet: a later tick looks again
    ({12: checked_in(12), 13: checked_in(13)}, "not_checked_in"),
])
def test_one_fever_one_missed_day_or_a_day_without_a_check_in_leave_the_release_to_staff(days, why):
    assert leave_to_staff(home_case(), recorded(days), day(14), ON) == why


def test_with_the_policy_off_nothing_is_released():
    assert Config().auto_release is False
    assert leave_to_staff(home_case(), recorded(NORMAL), day(14), Config()) == "policy_off"


def test_only_home_quarantine_on_its_planned_last_day_is_released():
    centralized = home_case(kind="centralized")
    assert leave_to_staff(centralized, recorded(NORMAL), day(14), ON) == "not_home_quarantine"
    # overdue: a person decides, not a late tick
    assert leave_to_staff(home_case(), recorded(NORMAL), day(15), ON) == "not_the_planned_last_day"
    assert leave_to_staff(home_case(), recorded(NORMAL), day(13), ON) == "not_the_planned_last_day"
    released = domain.evolve(home_case(), CaseReleased(
        community=COMMUNITY, case="case-1", resident="r-wang", on=day(14), monitoring_until=day(21),
        released_at=datetime(2026, 11, 15, 10, tzinfo=CITY), released_by="staff:li-wei"))
    assert leave_to_staff(released, recorded(NORMAL), day(14), ON) == "not_home_quarantine"


def test_a_case_with_fewer_check_in_days_than_the_policy_asks_is_left_to_staff():
    late = replace(home_case(), due_from=day(13))  # check-ins started on day 13: two days to judge
    assert leave_to_staff(late, recorded(NORMAL), day(14), ON) == "too_few_checkins"
    one = Config(auto_release=True, auto_release_checkins=1)
    assert leave_to_staff(late, recorded(NORMAL), day(14), one) is None


def test_the_policy_is_switched_on_and_sized_from_the_environment():
    assert (from_env({}).auto_release, from_env({}).auto_release_checkins) == (False, 3)
    config = from_env({"CORDON_AUTO_RELEASE": "1", "CORDON_AUTO_RELEASE_CHECKINS": "5"})
    assert (config.auto_release, config.auto_release_checkins) == (True, 5)
    assert from_env({"CORDON_AUTO_RELEASE": "off"}).auto_release is False
    for env in ({"CORDON_AUTO_RELEASE": "sometimes"}, {"CORDON_AUTO_RELEASE_CHECKINS": "0"},
                {"CORDON_AUTO_RELEASE_CHECKINS": "15"}):
        with pytest.raises(SystemExit, match=list(env)[0]):
            from_env(env)
