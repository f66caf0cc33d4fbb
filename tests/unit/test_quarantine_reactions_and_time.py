"""Reactions and time: ArrivalVerified and FeverDetected become open_case commands that are the same
every time the event comes; the city's policy and calendar (the service's config); the days the
scheduler owes."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.quarantine.config import Config, from_env
from services.quarantine.reactions import arrivals, case_for, fevers
from services.quarantine.scheduler import days_due
from shared.contracts.checkpoint import FeverDetected
from shared.contracts.registry import ArrivalVerified
from shared.envelope import wrap

COMMUNITY = "changning.chengjiaqiao.nangong"
UTC = timezone.utc
CONFIG = Config()


def envelope(event, at: datetime):
    return wrap(event, stream_id="s", stream_version=1, occurred_at=at, actor="staff:li-na",
                correlation_id="corr-1", event_id="7d6f0e38-8f5e-4c8a-bb0c-0d8f0f7b3a10")


def verified(outcome: str, at: datetime) -> ArrivalVerified:
    return ArrivalVerified(community=COMMUNITY, arrival="a-1", resident="r-wang", household="h-201",
                           compound="sunny-garden", building="b2", outcome=outcome, documents_checked=True,
                           verified_at=at, verified_by="staff:li-na")


@pytest.mark.parametrize("outcome, kind", [("home_quarantine", "home"), ("centralized_quarantine", "centralized"),
                                           ("cleared", None), ("returned_home", None)])
def test_an_arrival_verified_into_quarantine_opens_a_case(outcome, kind):
    at = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
    event = verified(outcome, at)
    commands = arrivals(CONFIG).react(envelope(event, at), event)
    if kind is None:
        assert commands == []
        return
    [(name, cmd)] = commands
    assert name == "open_case"
    assert (cmd.kind, cmd.reason, cmd.resident, cmd.starts_on) == (kind, "arrival", "r-wang", date(2026, 11, 2))
    assert (cmd.household, cmd.compound, cmd.building) == ("h-201", "sunny-garden", "b2")
    assert cmd.command_id == "arrival-quarantine:7d6f0e38-8f5e-4c8a-bb0c-0d8f0f7b3a10"
    assert cmd.actor == "system:arrival-quarantine" and cmd.causation_id == envelope(event, at).event_id
    assert cmd.correlation_id == "corr-1" and cmd.occurred_at == at
    assert cmd.case == case_for("7d6f0e38-8f5e-4c8a-bb0c-0d8f0f7b3a10")


def test_the_same_event_gives_the_same_command_every_time():
    at = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
    event = verified("home_quarantine", at)
    reaction = arrivals(CONFIG)
    assert reaction.react(envelope(event, at), event) == reaction.react(envelope(event, at), event)
    assert case_for("a") != case_for("b")


def test_the_case_starts_on_the_city_day_of_the_verification():
    at = datetime(2026, 11, 2, 17, 0, tzinfo=UTC)  # 01:00 on Nov 3 in Shanghai
    event = verified("home_quarantine", at)
    [(_, cmd)] = arrivals(CONFIG).react(envelope(event, at), event)
    assert cmd.starts_on == date(2026, 11, 3)
    [(_, cmd)] = arrivals(Config(zone=ZoneInfo("UTC"))).react(envelope(event, at), event)
    assert cmd.starts_on == date(2026, 11, 2)


def fever(resident: str | None, household: str | None = "h-201") -> FeverDetected:
    return FeverDetected(community=COMMUNITY, passage="p-1", compound="sunny-garden", gate="north",
                         temperature_c=38.2, resident=resident, household=household if resident else None,
                         visitor=None if resident else "张*", detected_at=datetime(2026, 11, 2, 1, tzinfo=UTC),
                         detected_by="staff:guard")


def test_a_fever_of_a_resident_opens_a_monitoring_case_and_a_visitors_does_not():
    event = fever("r-wang")
    [(name, cmd)] = fevers(CONFIG).react(envelope(event, event.detected_at), event)
    assert (name, cmd.kind, cmd.reason, cmd.starts_on) == ("open_case", "monitoring", "fever", date(2026, 11, 2))
    assert (cmd.household, cmd.compound, cmd.building) == ("h-201", "sunny-garden", None)
    assert cmd.command_id.startswith("fever-monitoring:") and cmd.actor == "system:fever-monitoring"
    event = fever(None)
    assert fevers(CONFIG).react(envelope(event, event.detected_at), event) == []
    event = fever("r-wang", household=None)
    [(_, cmd)] = fevers(CONFIG).react(envelope(event, event.detected_at), event)
    assert (cmd.household, cmd.compound) == (None, None)


def test_an_event_with_ids_the_service_cannot_use_is_skipped_not_retried_forever():
    event = fever("R WANG")
    assert fevers(CONFIG).react(envelope(event, event.detected_at), event) == []


# -- policy and calendar -------------------------------------------------------------------------


def test_the_policy_is_read_from_the_environment():
    config = from_env({"CORDON_QUARANTINE_DAYS": "7", "CORDON_MONITORING_DAYS": "3", "CORDON_CHECKIN_HOUR": "12",
                       "CORDON_FEVER_C": "37.5", "CORDON_TIMEZONE": "Asia/Urumqi"})
    assert (config.quarantine_days, config.monitoring_days, config.checkin_hour, config.fever_c) == (7, 3, 12, 37.5)
    assert str(config.zone) == "Asia/Urumqi"
    assert from_env({}) == Config()


@pytest.mark.parametrize("env", [{"CORDON_QUARANTINE_DAYS": "two weeks"}, {"CORDON_QUARANTINE_DAYS": "0"},
                                 {"CORDON_CHECKIN_HOUR": "24"}, {"CORDON_TIMEZONE": "Mars/Olympus"},
                                 {"CORDON_POSITIVE_KIND": "hotel"}, {"CORDON_FEVER_C": "45"}])
def test_a_bad_policy_stops_the_service_with_a_message(env):
    with pytest.raises(SystemExit) as info:
        from_env(env)
    assert list(env)[0] in str(info.value) or "quarantine policy" in str(info.value)


def test_first_due_day_and_deadline():
    shanghai = ZoneInfo("Asia/Shanghai")
    morning = datetime(2026, 11, 2, 9, tzinfo=shanghai)
    evening = datetime(2026, 11, 2, 18, tzinfo=shanghai)
    assert CONFIG.first_due_day(date(2026, 11, 2), morning) == date(2026, 11, 2)
    assert CONFIG.first_due_day(date(2026, 11, 2), evening) == date(2026, 11, 3)
    assert CONFIG.first_due_day(date(2026, 11, 5), morning) == date(2026, 11, 5)
    assert CONFIG.deadline(date(2026, 11, 2)) == evening


# -- the days the scheduler owes ------------------------------------------------------------------


def t(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=ZoneInfo("Asia/Shanghai"))


def d(day: int) -> date:
    return date(2026, 11, day)


@pytest.mark.parametrize("last, now, days", [
    (None, t(5, 9), [d(4)]),                 # first start, before the hour: yesterday
    (None, t(5, 19), [d(5)]),                # first start, after the hour: today
    (d(4), t(5, 9), []),                     # nothing new before today's hour
    (d(4), t(5, 18), [d(5)]),
    (d(5), t(5, 23), []),                    # swept already
    (d(1), t(5, 19), [d(4), d(5)]),          # after downtime: at most two days back
    (d(3), t(5, 19), [d(4), d(5)]),
])
def test_the_days_due_for_a_sweep(last, now, days):
    assert days_due(last, now, CONFIG, catchup_days=2) == days


def test_the_days_due_follow_the_city_clock_not_utc():
    now = datetime(2026, 11, 5, 10, 30, tzinfo=UTC)  # 18:30 in Shanghai
    assert days_due(d(4), now, CONFIG, 2) == [d(5)]
    assert days_due(d(4), now - timedelta(hours=1), CONFIG, 2) == []


# -- the service's own settings -----------------------------------------------------------------


def test_the_sweep_chunk_is_set_from_the_environment_within_the_commands_limit():
    from services.quarantine.app import spec

    def chunk(env: dict) -> int:
        [task] = spec(from_env(env)).background
        return task.chunk

    assert (chunk({}), chunk({"CORDON_SWEEP_CHUNK": "250"})) == (1000, 250)
    for bad in ("0", "1001", "many"):
        with pytest.raises(SystemExit, match="CORDON_SWEEP_CHUNK"):
            spec(from_env({"CORDON_SWEEP_CHUNK": bad}))


def test_the_scheduler_interval_is_set_from_the_environment():
    assert (from_env({}).scheduler_interval_s, from_env({"CORDON_SCHEDULER_INTERVAL_S": "0.5"}).scheduler_interval_s) \
        == (30.0, 0.5)
    for bad in ("0", "-1", "often"):
        with pytest.raises(SystemExit, match="CORDON_SCHEDULER_INTERVAL_S"):
            from_env({"CORDON_SCHEDULER_INTERVAL_S": bad})
