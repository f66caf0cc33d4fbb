"""Policy values of logistics: the item catalogue, priority weights, the mask limit, the day.

These are the committee's choices, not laws of nature: :class:`Rules` is passed to ``spec()`` (and
from there to every decision), so a city can set its own limit and period without touching code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo

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

#: Priority bit weights, summed: each reason outranks all the ones below it together.
WEIGHTS: dict[str, int] = {
    "confined": 32,  # quarantined at home or in a sealed building: cannot go out at all
    "elderly_alone": 16,
    "limited_mobility": 8,
    "medical_device": 4,
    "chronic_illness": 2,
    "urgent_kind": 1,  # a medicine refill or help with a medical device
}
VULNERABILITIES = ("elderly_alone", "limited_mobility", "medical_device", "chronic_illness")
URGENT_KINDS = ("medicine", "device_help")

#: China Standard Time has no daylight saving: a fixed offset is exact and needs no tz database.
CHINA = timezone(timedelta(hours=8), "CST")
#: A Monday: mask periods are counted from it, so a 7-day period is a calendar week.
PERIOD_EPOCH = date(2020, 1, 6)


@dataclass(frozen=True, kw_only=True)
class Rules:
    #: Masks one household may reserve per period.
    mask_limit: int = 10
    #: Length of the mask period in days (7: Monday to Sunday).
    mask_period_days: int = 7
    #: What one day's food request of a confined household holds.
    daily_food: tuple[tuple[str, int], ...] = (("vegetable-pack", 1),)
    #: The zone whose calendar day "daily" means.
    zone: tzinfo = CHINA
    catalogue: dict[str, bool] = field(default_factory=lambda: dict(CATALOGUE))

    def __post_init__(self) -> None:
        if self.mask_limit < 1 or self.mask_period_days < 1:
            raise ValueError("mask_limit and mask_period_days must be at least 1")
        for item, qty in self.daily_food:
            if not self.catalogue.get(item) or qty < 1:
                raise ValueError(f"daily_food: {item} x{qty} is not a stocked catalogue item")

    def day(self, instant: datetime) -> date:
        """The calendar day of an instant in the committee's zone."""
        return instant.astimezone(self.zone).date()

    def period(self, day: date) -> tuple[date, date]:
        """First and last day of the mask period that contains ``day``."""
        n = self.mask_period_days
        start = PERIOD_EPOCH + timedelta(days=(day - PERIOD_EPOCH).days // n * n)
        return start, start + timedelta(days=n - 1)

    def stocked(self, item: str) -> bool:
        return self.catalogue.get(item, False)
