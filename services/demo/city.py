"""`cordon load --committees N`: a city's traffic, N residential committees at their real daily rate.

A committee of the demo's street sends about 15,000 commands a day (the demo plays 46,000 for its
three committees: gate checks above all, registrations, arrivals, requests, masks). N committees
are N × 15,000 / 86,400 commands a second, averaged over the day; Shanghai's 6,000 committees make
about 1,040/s (3,000-5,000/s in the peak hours). So that a small N can stand for a long stretch, or a
box be tried beyond real time, time may be *compressed*: ``speed`` F sends F seconds of the city's
traffic each second, stamped with simulated times that run F times faster than the clock. The
simulated stretch ends now (a service refuses a command dated in its future), so it starts
``duration × F`` seconds ago; ``days`` D gives F for D simulated days in ``duration``.

Committees are laid out as a city is: 28 committees to a street, streets spread over 16 districts,
so a city-wide rollup sums over every level of the tree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from services.demo import load

#: Commands a committee sends a day (the demo's street mix).
COMMITTEE_DAY = 15_000
DAY_SECONDS = 86_400
COMMITTEES_PER_STREET = 28
DISTRICTS = 16
#: Households per committee's set-up compound unless told: enough targets to spread the gate checks.
HOUSEHOLDS = 100


def community(i: int) -> str:
    """The ``i``-th committee's community (0-based): ``load-d03.s0007.c12``."""
    street = i // COMMITTEES_PER_STREET
    return f"load-d{street % DISTRICTS + 1:02d}.s{street + 1:04d}.c{i % COMMITTEES_PER_STREET + 1:02d}"


def sites(seed: int, committees: int, households: int = HOUSEHOLDS) -> list[load.Site]:
    """One set-up compound per committee."""
    return [load.site_for(seed, households, community(i), name=f"c{i + 1:05d}") for i in range(committees)]


@dataclass(frozen=True)
class Plan:
    """How many commands a second stand for N committees, and how simulated time runs."""

    committees: int
    duration: float  # seconds of the run
    speed: float  # simulated seconds per second (the time compression)

    @classmethod
    def of(cls, committees: int, duration: float, speed: float | None = None, days: float | None = None) -> "Plan":
        if committees < 1 or duration <= 0:
            raise ValueError("committees and duration must be above 0")
        if speed is not None and days is not None:
            raise ValueError("give the time compression (--speed) or the simulated days (--days), not both")
        if days is not None:
            if days <= 0:
                raise ValueError("--days must be above 0")
            speed = days * DAY_SECONDS / duration
        speed = 1.0 if speed is None else speed
        if speed <= 0:
            raise ValueError("--speed must be above 0")
        return cls(committees, duration, speed)

    @property
    def real_rate(self) -> float:
        """The committees' commands a second in real time, averaged over the day."""
        return self.committees * COMMITTEE_DAY / DAY_SECONDS

    @property
    def rate(self) -> float:
        """What the generator offers: the real rate, compressed."""
        return self.real_rate * self.speed

    @property
    def simulated(self) -> timedelta:
        return timedelta(seconds=self.duration * self.speed)

    def clock(self, now: Callable[[], datetime], monotonic: Callable[[], float]) -> Callable[[], datetime]:
        """Simulated time: ``duration × speed`` ago at the start, now at the end, never ahead of now."""
        end = now()
        start, t0 = end - self.simulated, monotonic()

        def simulated() -> datetime:
            return min(start + timedelta(seconds=(monotonic() - t0) * self.speed), now())
        return simulated

    def describe(self) -> str:
        days = self.simulated.total_seconds() / DAY_SECONDS
        return (f"{self.committees:,} committees × {COMMITTEE_DAY:,} commands a day = {self.real_rate:,.1f}/s "
                f"in real time; time compressed {self.speed:,.4g}× -> {self.rate:,.1f}/s offered for "
                f"{self.duration:g} s, {days:,.3g} simulated days ending now")


def committees_for(rate: float) -> int:
    """How many committees a sustained ``rate`` (commands/s, real time, averaged) serves."""
    return math.floor(rate * DAY_SECONDS / COMMITTEE_DAY)
