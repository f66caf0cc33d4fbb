"""The logistics settings: the mask period, sane values, and the city's day from the environment
(``CORDON_TIMEZONE`` decides what "today" means for the daily food and the mask period)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.logistics.commands import ReserveMasks, StartDailySupply
from services.logistics.config import Config, from_env
from services.logistics.decide import Facts, Household, decide
from services.logistics.domain import daily_request_id, plan_stream, request_stream
from services.logistics.handlers import prefetch

CST = timezone(timedelta(hours=8))
COMMUNITY = "changning.chengjiaqiao.nangong"
#: 21:30 on 1 April in New York, 09:30 on 2 April in Shanghai.
AT = datetime(2022, 4, 2, 9, 30, tzinfo=CST)


def home() -> Household:
    return Household(household="h-201", community=COMMUNITY, compound="sunny-garden", building="b2")


# -- the day and the period ---------------------------------------------------------------------


def test_a_period_of_seven_days_is_a_monday_to_sunday_week():
    config = Config()
    for day in (date(2022, 3, 28), date(2022, 4, 1), date(2022, 4, 3)):
        assert config.period(day) == (date(2022, 3, 28), date(2022, 4, 3))
    assert config.period(date(2022, 4, 4)) == (date(2022, 4, 4), date(2022, 4, 10))


def test_a_one_day_period_is_the_day():
    assert Config(mask_period_days=1).period(date(2022, 4, 2)) == (date(2022, 4, 2), date(2022, 4, 2))


def test_config_refuses_nonsense():
    with pytest.raises(ValueError):
        Config(mask_limit=0)
    with pytest.raises(ValueError):
        Config(daily_food=(("medicine", 1),))
    with pytest.raises(ValueError):
        Config(daily_interval_s=0)


# -- from the environment -----------------------------------------------------------------------


def test_by_default_the_day_is_shanghais_and_the_scheduler_looks_every_minute():
    config = from_env({})
    assert config.zone == ZoneInfo("Asia/Shanghai") and config.daily_interval_s == 60.0
    assert config.day(AT) == date(2022, 4, 2)


def test_the_environment_sets_the_zone_and_the_interval():
    config = from_env({"CORDON_TIMEZONE": "America/New_York", "CORDON_DAILY_INTERVAL_S": "0.5"})
    assert config.zone == ZoneInfo("America/New_York") and config.daily_interval_s == 0.5


@pytest.mark.parametrize("env, says", [
    ({"CORDON_TIMEZONE": "Mars/Olympus"}, "CORDON_TIMEZONE"),
    ({"CORDON_DAILY_INTERVAL_S": "often"}, "CORDON_DAILY_INTERVAL_S"),
    ({"CORDON_DAILY_INTERVAL_S": "-5"}, "CORDON_DAILY_INTERVAL_S"),
])
def test_a_bad_value_stops_the_service_with_a_clear_message(env, says):
    with pytest.raises(SystemExit) as stopped:
        from_env(env)
    assert says in str(stopped.value)


def test_cordon_timezone_decides_the_day_of_the_daily_food():
    new_york = from_env({"CORDON_TIMEZONE": "America/New_York"})
    cmd = StartDailySupply(command_id="c-1", actor="staff:li-na", occurred_at=AT, household="h-201",
                           cause="case:c-1")
    for config, day in ((from_env({}), date(2022, 4, 2)), (new_york, date(2022, 4, 1))):
        _, food = decide(Facts(config=config, household=home()), cmd)
        assert food.daily_on == day and food.request == daily_request_id("h-201", day)
        # The batch loads the same day's request the decision looks at.
        assert prefetch(cmd, config) == [plan_stream("h-201"), request_stream(daily_request_id("h-201", day))]


def test_cordon_timezone_decides_the_mask_period():
    monday_morning = datetime(2022, 4, 4, 7, 0, tzinfo=CST)  # still Sunday evening in New York
    cmd = ReserveMasks(command_id="c-1", actor="staff:li-na", occurred_at=monday_morning,
                       community=COMMUNITY, household="h-201", qty=2, voucher="0000026")
    [shanghai] = decide(Facts(config=from_env({}), household=home(), number="0000026"), cmd)
    [new_york] = decide(Facts(config=from_env({"CORDON_TIMEZONE": "America/New_York"}), household=home(),
                              number="0000026"), cmd)
    assert (shanghai.period_start, shanghai.period_end) == (date(2022, 4, 4), date(2022, 4, 10))
    assert (new_york.period_start, new_york.period_end) == (date(2022, 3, 28), date(2022, 4, 3))
