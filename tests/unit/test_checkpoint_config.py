"""The checkpoint's settings come from the environment through config.py alone: the fever
threshold, the levels that admit visitors, and the city's time zone (``CORDON_TIMEZONE``, as every
other service reads it) that decides which day a shift counts on."""
from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from services.checkpoint.app import spec
from services.checkpoint.config import Config, from_env

COMMUNITY = "changning.chengjiaqiao.nangong"
#: 19:30 on 2 April in New York, already 3 April in Shanghai and Tokyo.
NOW = datetime(2022, 4, 2, 23, 30, tzinfo=timezone.utc)


def test_without_settings_the_defaults_hold():
    assert from_env({}) == Config()
    assert Config().zone == ZoneInfo("Asia/Shanghai")


def test_the_fever_threshold_and_the_levels_admitting_visitors_are_read():
    config = from_env({"CORDON_FEVER_C": "37.5", "CORDON_VISITORS_ADMITTED": "open, closed"})
    assert config.fever_c == 37.5 and config.visitors_admitted == frozenset({"open", "closed"})
    assert from_env({"CORDON_VISITORS_ADMITTED": ""}).visitors_admitted == frozenset()


@pytest.mark.parametrize("env", [{"CORDON_FEVER_C": "hot"}, {"CORDON_FEVER_C": "80"},
                                 {"CORDON_VISITORS_ADMITTED": "open,sealed"},
                                 {"CORDON_TIMEZONE": "Mars/Olympus"}])
def test_a_bad_setting_stops_the_service(env):
    with pytest.raises(SystemExit):
        from_env(env)


@dataclass
class Conn:
    calls: list = field(default_factory=list)

    async def fetch(self, sql, *args):
        self.calls.append(args)
        return []


@dataclass
class Host:
    conn: Conn = field(default_factory=Conn)

    def clock(self) -> datetime:
        return NOW

    @property
    def pool(self):
        host = self

        class Pool:
            @asynccontextmanager
            async def acquire(self):
                yield host.conn

        return Pool()


async def shifts_today(config: Config | None = None) -> tuple[dict, tuple]:
    host = Host()
    query = spec(config).queries["checkpoint.shifts"]
    reply = await query(host, json.dumps({"community": COMMUNITY}).encode(), None)
    [args] = host.conn.calls
    return reply, args


async def test_cordon_timezone_sets_the_shift_querys_day_and_cordon_tz_is_not_read(monkeypatch):
    reply, (_, start, _, zone) = await shifts_today(
        from_env({"CORDON_TIMEZONE": "America/New_York", "CORDON_TZ": "Asia/Tokyo"}))
    assert (reply["time_zone"], reply["from"], reply["to"], zone) == (
        "America/New_York", "2022-04-02", "2022-04-02", "America/New_York")
    assert start == datetime(2022, 4, 2, tzinfo=ZoneInfo("America/New_York"))

    reply, _ = await shifts_today(from_env({"CORDON_TZ": "Asia/Tokyo"}))
    assert (reply["time_zone"], reply["from"]) == ("Asia/Shanghai", "2022-04-03")

    monkeypatch.setenv("CORDON_TIMEZONE", "America/New_York")
    monkeypatch.setenv("CORDON_TZ", "Asia/Tokyo")
    reply, _ = await shifts_today()  # spec() without a config reads the process's environment
    assert reply["time_zone"] == "America/New_York"
