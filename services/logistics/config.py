"""The logistics service's settings: the item catalogue, the mask limit and period, what a day's food
holds, the city's day, and how often the daily food is looked at.

These are the committee's choices, not laws of nature: a city sets its own limit and period by
passing a :class:`Config` to ``app.spec()`` (and from there to every decision) without touching
code. :func:`from_env` is the only place the service reads its environment.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Mapping
from zoneinfo import ZoneInfo

from shared.config import DEFAULT_ZONE, city_zone

#: Every item a request or a stock receipt may name -> whether the community keeps it in stock.
#: Medicine refills (配药) are fetched from the pharmacy for each request, and device help is a
#: visit, so neither comes out of (or goes into) the community's store.
CATALOGUE: dict[str, bool] = {
    "vegetable-pack": True,
    "food-set": True,
    "rice": True,
    "cooking-oil": True,
    "eggs": True,
    "milk": True,
    "masks": True,
    "disinfectant": True,
    "thermometer": True,
    "heater": True,
    "tent": True,
    "medicine": False,
    "device-help": False,
}
MASKS = "masks"

#: A Monday: mask periods are counted from it, so a 7-day period is a calendar week.
PERIOD_EPOCH = date(2020, 1, 6)


@dataclass(frozen=True, kw_only=True)
class Config:
    #: Masks one household may reserve per period.
    mask_limit: int = 10
    #: Length of the mask period in days (7: Monday to Sunday).
    mask_period_days: int = 7
    #: What one day's food request of a confined household holds.
    daily_food: tuple[tuple[str, int], ...] = (("vegetable-pack", 1),)
    #: The city's zone (``CORDON_TIMEZONE``): whose calendar day "daily" and the mask period mean.
    zone: tzinfo = ZoneInfo(DEFAULT_ZONE)
    catalogue: dict[str, bool] = field(default_factory=lambda: dict(CATALOGUE))
    #: How often the scheduler looks for households whose food for today is not yet requested
    #: (``CORDON_DAILY_INTERVAL_S``).
    daily_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if self.mask_limit < 1 or self.mask_period_days < 1:
            raise ValueError("mask_limit and mask_period_days must be at least 1")
        for item, qty in self.daily_food:
            if not self.catalogue.get(item) or qty < 1:
                raise ValueError(f"daily_food: {item} x{qty} is not a stocked catalogue item")
        if not self.daily_interval_s > 0:
            raise ValueError(f"daily_interval_s (CORDON_DAILY_INTERVAL_S) must be more than 0 seconds, "
                             f"not {self.daily_interval_s}")

    def day(self, instant: datetime) -> date:
        """The calendar day of an instant in the city's zone."""
        return instant.astimezone(self.zone).date()

    def period(self, day: date) -> tuple[date, date]:
        """First and last day of the mask period that contains ``day``."""
        n = self.mask_period_days
        start = PERIOD_EPOCH + timedelta(days=(day - PERIOD_EPOCH).days // n * n)
        return start, start + timedelta(days=n - 1)

    def stocked(self, item: str) -> bool:
        return self.catalogue.get(item, False)


def from_env(env: Mapping[str, str] | None = None) -> Config:
    """The settings configured for this city (``env``: the process environment when None):
    ``CORDON_TIMEZONE`` (Asia/Shanghai) and ``CORDON_DAILY_INTERVAL_S`` (60). A bad value stops
    the service with a clear message."""
    env = os.environ if env is None else env
    values: dict = {"zone": city_zone(env)}
    if env.get("CORDON_DAILY_INTERVAL_S"):
        try:
            values["daily_interval_s"] = float(env["CORDON_DAILY_INTERVAL_S"])
        except ValueError:
            raise SystemExit(f"CORDON_DAILY_INTERVAL_S={env['CORDON_DAILY_INTERVAL_S']!r} is not a number "
                             "of seconds") from None
    try:
        return Config(**values)
    except ValueError as exc:
        raise SystemExit(f"logistics configuration: {exc}") from None
